//! The key index at scale: writes a table of N ObjectId keys (24 hex characters, the form a
//! sync's `_id` column has) through misql's own writer into an embedded catalog in a temporary
//! directory, in data files of 1,000,000 rows, then builds the key index a streaming sync builds
//! at start ([`misql::lake::key_index::KeyIndex::build`]) and prints its figures.
//!
//! ```sh
//! cargo run --release --example key_index_scale -- 10000000
//! ```
//!
//! Prints one line: `keys=N files=F write_seconds=W build_seconds=S heap_bytes=B
//! bytes_per_key=R peak_rss_mb=M` (peak RSS of the process, VmHWM, after the build; the rows
//! are written in batches, so it is the index's).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use iceberg::TableIdent;
use misql::lake::catalog::connect;
use misql::lake::commit::{Change, commit};
use misql::lake::key_index::KeyIndex;
use misql::lake::schema::iceberg_schema;
use misql::lake::table::create_table;
use misql::lake::writer::{TableWriter, WriteOptions};

const FILE_ROWS: usize = 1_000_000;
const BATCH: usize = 100_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let dir = std::env::temp_dir().join(format!("misql-key-index-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(n, dir.to_str().ok_or("a UTF-8 temp dir")?).await;
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", result?);
    Ok(())
}

async fn run(n: usize, warehouse: &str) -> Result<String, Box<dyn std::error::Error>> {
    let conn = connect(warehouse, &[]).await?;
    let schema = Arc::new(Schema::new(vec![Field::new("_id", DataType::Utf8, false)]));
    let ident = TableIdent::from_strs(["bench", "keys"])?;
    let iceberg = iceberg_schema(&schema, "_id")?;
    let mut table =
        create_table(conn.catalog.as_ref(), &ident, iceberg, &[], HashMap::new()).await?;
    let written = Instant::now();
    let mut files = 0;
    for start in (0..n).step_by(FILE_ROWS) {
        let rows = FILE_ROWS.min(n - start);
        let mut writer = TableWriter::new(&table, &WriteOptions::from_table(&table))?;
        for offset in (0..rows).step_by(BATCH) {
            let count = BATCH.min(rows - offset);
            // ObjectIds as a sync writes them: a timestamp, then a counter.
            let ids: Vec<String> = (0..count)
                .map(|i| format!("6560{:020x}", (start + offset + i) as u128 * 7919))
                .collect();
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(ids))])?;
            writer.write(&batch).await?;
        }
        let written_files: Vec<_> = writer.finish().await?.into_iter().map(|w| w.file).collect();
        files += written_files.len();
        table = commit(&conn, &table, Change::append(written_files)).await?;
    }
    let write_seconds = written.elapsed().as_secs_f64();
    let built = Instant::now();
    let index = KeyIndex::build(&table, "_id").await?;
    let build_seconds = built.elapsed().as_secs_f64();
    let heap = index.heap_bytes();
    Ok(format!(
        "keys={} files={files} write_seconds={write_seconds:.1} build_seconds={build_seconds:.1} \
         heap_bytes={heap} bytes_per_key={:.1} peak_rss_mb={}",
        index.len(),
        heap as f64 / index.len().max(1) as f64,
        peak_rss_mb()
    ))
}

/// The process's peak resident memory (VmHWM), in MB.
fn peak_rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}
