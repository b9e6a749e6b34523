//! The baseline of `benches/snapshot.sh`: a full read of one collection with the official Rust
//! `mongodb` driver and nothing else — raw BSON batches (`find(...).batch()`, as the misql scan
//! reads them), documents counted, not converted.
//!
//! ```sh
//! cargo run --release --example raw_read -- URI DB COLLECTION [--sort-id] [--fields=a,b,c]
//! ```
//!
//! `--sort-id` asks for `_id` order, as the snapshot phase of a sync does; `--fields` projects
//! those top-level fields, as a sync's pushed-down projection does. Prints one line:
//! `documents=N bytes=B seconds=S docs_per_s=R` (S from before connecting to the last batch).

use std::process::ExitCode;
use std::time::Instant;

use bson::{Document, RawDocumentBuf, doc};
use futures::TryStreamExt;
use mongodb::Client;
use mongodb::options::FindOptions;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sort_id = args.iter().any(|a| a == "--sort-id");
    let fields = args.iter().find_map(|a| a.strip_prefix("--fields="));
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [uri, db, collection] = positional[..] else {
        eprintln!("usage: raw_read URI DB COLLECTION [--sort-id] [--fields=a,b,c]");
        return ExitCode::from(2);
    };
    let projection = fields.map(|fields| {
        let mut projection = Document::new();
        for field in fields.split(',').filter(|f| !f.is_empty()) {
            projection.insert(field, 1);
        }
        projection
    });
    match read(uri, db, collection, sort_id, projection).await {
        Ok((documents, bytes, seconds)) => {
            println!(
                "documents={documents} bytes={bytes} seconds={seconds:.3} docs_per_s={:.0}",
                documents as f64 / seconds.max(1e-9)
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Reads every document; returns the count, the BSON bytes and the seconds it took.
async fn read(
    uri: &str,
    db: &str,
    collection: &str,
    sort_id: bool,
    projection: Option<Document>,
) -> Result<(u64, u64, f64), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let client = Client::with_uri_str(uri).await?;
    let coll = client.database(db).collection::<RawDocumentBuf>(collection);
    let options = FindOptions::builder()
        .sort(sort_id.then(|| doc! { "_id": 1 }))
        .projection(projection)
        .build();
    let mut cursor = coll.find(Document::new()).with_options(options).batch().await?;
    let (mut documents, mut bytes) = (0u64, 0u64);
    while let Some(batch) = cursor.try_next().await? {
        for doc in batch.doc_slices()? {
            let doc = doc?;
            let doc = doc.as_document().ok_or("the server returned a non-document")?;
            bytes += doc.as_bytes().len() as u64;
            documents += 1;
        }
    }
    Ok((documents, bytes, started.elapsed().as_secs_f64()))
}
