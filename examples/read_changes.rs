//! The source baseline of `benches/stream.sh`: reads a collection's change stream with the
//! official Rust `mongodb` driver and nothing else — opened exactly as a sync opens it
//! (`fullDocument: updateLookup`, `resumeAfter` the token a sync checkpointed, events decoded as
//! `ChangeStreamEvent<RawDocumentBuf>`), drained the way `misql --once` drains it (until a
//! `getMore` comes back empty), events counted, nothing converted or written.
//!
//! ```sh
//! cargo run --release --example read_changes -- URI DB COLLECTION RESUME_TOKEN_HEX
//! ```
//!
//! `RESUME_TOKEN_HEX` is a resume token as hex-encoded BSON, as misql stores it in the snapshot
//! summary property `misql.resume-token`. Prints one line:
//! `events=N seconds=S events_per_s=R` (S from before connecting to the empty `getMore`).

use std::process::ExitCode;
use std::time::Instant;

use bson::RawDocumentBuf;
use mongodb::Client;
use mongodb::change_stream::event::ResumeToken;
use mongodb::options::FullDocumentType;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [uri, db, collection, token] = &args[..] else {
        eprintln!("usage: read_changes URI DB COLLECTION RESUME_TOKEN_HEX");
        return ExitCode::from(2);
    };
    match read(uri, db, collection, token).await {
        Ok((events, seconds)) => {
            println!(
                "events={events} seconds={seconds:.3} events_per_s={:.0}",
                events as f64 / seconds.max(1e-9)
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Reads every change after `token`; returns the count and the seconds it took.
async fn read(
    uri: &str,
    db: &str,
    collection: &str,
    token: &str,
) -> Result<(u64, f64), Box<dyn std::error::Error>> {
    let token = RawDocumentBuf::from_bytes(hex::decode(token)?)?;
    let token: ResumeToken = bson::deserialize_from_slice(token.as_bytes())?;
    let started = Instant::now();
    let client = Client::with_uri_str(uri).await?;
    let coll = client.database(db).collection::<RawDocumentBuf>(collection);
    let mut stream =
        coll.watch().full_document(FullDocumentType::UpdateLookup).resume_after(token).await?;
    let mut events = 0u64;
    while let Some(event) = stream.next_if_any().await? {
        // Touch what a sync uses: the key and the document.
        std::hint::black_box((&event.document_key, &event.full_document));
        events += 1;
    }
    Ok((events, started.elapsed().as_secs_f64()))
}
