//! The key index figure of `benches/stream.sh`: builds the key index a streaming sync keeps for
//! its target table ([`misql::lake::key_index::KeyIndex::build`], as the stream phase does at
//! start) and prints its size.
//!
//! ```sh
//! cargo run --release --example key_index_size -- WAREHOUSE NAMESPACE.TABLE [KEY_COLUMN]
//! ```
//!
//! WAREHOUSE is an embedded catalog's directory (as `ATTACH '…' (TYPE iceberg)` takes it); the
//! key column defaults to `_id`. Prints one line:
//! `keys=N files=F heap_bytes=B bytes_per_key=R build_seconds=S`.

use std::process::ExitCode;
use std::time::Instant;

use iceberg::TableIdent;
use misql::lake::catalog::connect;
use misql::lake::key_index::KeyIndex;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (warehouse, table, key) = match &args[..] {
        [w, t] => (w, t, "_id"),
        [w, t, k] => (w, t, k.as_str()),
        _ => {
            eprintln!("usage: key_index_size WAREHOUSE NAMESPACE.TABLE [KEY_COLUMN]");
            return ExitCode::from(2);
        }
    };
    match measure(warehouse, table, key).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn measure(
    warehouse: &str,
    table: &str,
    key: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let connection = connect(warehouse, &[]).await?;
    let ident = TableIdent::from_strs(table.split('.'))?;
    let table = connection.catalog.load_table(&ident).await?;
    let started = Instant::now();
    let index = KeyIndex::build(&table, key).await?;
    let seconds = started.elapsed().as_secs_f64();
    let (keys, bytes) = (index.len(), index.heap_bytes());
    Ok(format!(
        "keys={keys} files={} heap_bytes={bytes} bytes_per_key={:.1} build_seconds={seconds:.3}",
        index.file_count(),
        if keys == 0 { 0.0 } else { bytes as f64 / keys as f64 }
    ))
}
