//! The engine's own ceiling: the real sync path fed from BSON held in memory, with no server in
//! the way — conversion to Arrow, the sync's compiled projection, Parquet writing and commits
//! on the embedded catalog (a temporary warehouse) — on one runtime thread.
//!
//! - snapshot path: `Sink::add` of ~1 KB order documents in batches of 10,000, a commit with its
//!   checkpoint every 100,000 (the default `max_batch_rows`), for an explicit SELECT and for
//!   `SELECT *`;
//! - stream path: `follow::run` over change events handed to it as a database sync's router
//!   hands them (a `Feed`): every document updated (full document, as `updateLookup` gives it),
//!   one in ten deleted, in batches of `max_batch_rows`, each batch one commit with position
//!   deletes through the key index.
//!
//! `cargo bench --bench engine_ceiling` (`MISQL_CEILING_DOCS=N`, default 200000;
//! `MISQL_CEILING_PATHS=star` runs one path, e.g. under `perf record`). Prints, per
//! path, documents (or events) per wall second and per CPU second of the process (user +
//! system, from /proc/self/stat): the second is the per-core figure.

#![allow(missing_docs)]

#[path = "support/orders.rs"]
mod orders;

use std::sync::Arc;
use std::time::Instant;

use bson::{RawDocument, RawDocumentBuf, doc};
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::prelude::SessionContext;
use misql::lake::catalog::connect;
use misql::mongo::change_stream::{Event, Read};
use misql::mongo::client::MongoSource;
use misql::mongo::infer::Inference;
use misql::mongo::provider::MongoTable;
use misql::sql::{Statement, parse};
use misql::sync::SyncTask;
use misql::sync::checkpoint::{Checkpoint, Phase};
use misql::sync::database::router::Router;
use misql::sync::feed::{Feed, Position};
use misql::sync::plan::SyncPlan;
use misql::sync::sink::Sink;
use misql::sync::{follow, target};

const BATCH: usize = 10_000;
const COMMIT_EVERY: usize = 100_000;
/// The server this never reaches: the sync path needs a source, and never calls it here.
const NO_SERVER: &str = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=100";

fn main() {
    let n: usize =
        std::env::var("MISQL_CEILING_DOCS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let docs = orders::orders(n);
    let bytes: usize = docs.iter().map(|d| d.as_bytes().len()).sum();
    println!("{n} order documents held in memory, {} bytes on average\n", bytes / n);
    println!("| path | documents | wall s | docs/s | CPU s | docs per CPU second |");
    println!("| --- | --: | --: | --: | --: | --: |");
    let explicit = "SELECT _id, status, customer.name AS customer, customer.address.city AS city, \
                    total::DECIMAL(18,2) AS total, created_at, paid";
    // MISQL_CEILING_PATHS=explicit,star,stream (the default: all) runs some of them, for a
    // profile of one.
    let paths = std::env::var("MISQL_CEILING_PATHS").unwrap_or("explicit,star,stream".into());
    let runs =
        [("explicit", "snapshot, explicit SELECT", explicit), ("star", "snapshot, SELECT *", "")];
    for (_, label, select) in runs.iter().filter(|(key, _, _)| paths.contains(key)) {
        let (wall, cpu) = runtime.block_on(snapshot(&docs, select)).expect(label);
        report(label, n, wall, cpu);
    }
    if paths.contains("stream") {
        let (events, wall, cpu) = runtime.block_on(changes(&docs, explicit)).expect("stream path");
        report("stream, explicit SELECT (updates, 1 in 10 deleted)", events, wall, cpu);
    }
}

fn report(label: &str, n: usize, wall: f64, cpu: f64) {
    println!(
        "| {label} | {n} | {wall:.2} | {:.0} | {cpu:.2} | {:.0} |",
        n as f64 / wall,
        n as f64 / cpu
    );
}

/// CPU seconds the process has used (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A sync of `bench.orders` (sampled from the first 1,000 documents in memory) into a new
/// warehouse, planned as `CREATE SYNC` plans it.
async fn sync_over(
    docs: &[RawDocumentBuf],
    select: &str,
) -> misql::Result<(SyncTask, tempdir::Dir)> {
    let mut inference = Inference::new();
    for doc in docs.iter().take(1000) {
        inference.observe(doc)?;
    }
    let source = Arc::new(MongoSource::new(NO_SERVER, 1000));
    let table = MongoTable::from_inference(source.clone(), "bench", "orders", &inference);
    let ctx = SessionContext::new();
    let schema = Arc::new(MemorySchemaProvider::new());
    schema.register_table("orders".into(), Arc::new(table))?;
    let catalog = Arc::new(MemoryCatalogProvider::new());
    catalog.register_schema("bench", schema)?;
    ctx.register_catalog("mongo", catalog);
    let select = if select.is_empty() { String::new() } else { format!(" {select}") };
    let sql =
        format!("CREATE SYNC bench FROM mongo.bench.orders INTO iceberg.bench.orders{select}");
    let Statement::CreateSync(create) = parse(&sql)?.remove(0).statement else {
        unreachable!("a CREATE SYNC")
    };
    let plan = SyncPlan::new(&ctx, &create).await?;
    let dir = tempdir::Dir::new();
    let connection = connect(dir.path(), &[]).await?;
    let sync = SyncTask {
        name: "bench".into(),
        create: create.clone(),
        plan: std::sync::RwLock::new(Arc::new(plan)),
        source,
        database: "bench".into(),
        collection: "orders".into(),
        catalog: connection.catalog.clone(),
        connection,
        target: misql::sync::target::table_ident(&create),
        registry: Default::default(),
        maintenance: Default::default(),
        stop: Default::default(),
        refresh: Default::default(),
        feed: None,
    };
    Ok((sync, dir))
}

fn checkpoint(phase: Phase, rows: u64) -> Checkpoint {
    let token = bson::rawdoc! { "_data": "00" };
    Checkpoint {
        sync: "bench".into(),
        definition_hash: String::new(),
        phase,
        ranges: Vec::new(),
        resume_token: Some(token),
        rows,
        resume_time: None,
        recopy_after: None,
        valid_through: None,
        first_change: None,
    }
}

/// The snapshot path over `docs`: wall and CPU seconds.
async fn snapshot(docs: &[RawDocumentBuf], select: &str) -> misql::Result<(f64, f64)> {
    let (sync, _dir) = sync_over(docs, select).await?;
    let (table, _) = target::prepare(&sync.connection, &sync.create, &sync.plan()).await?;
    let hash = sync.plan().definition_hash.clone();
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let mut sink = Sink::new(&sync, table)?;
    let mut since_commit = 0;
    for (i, chunk) in docs.chunks(BATCH).enumerate() {
        let refs: Vec<&RawDocument> = chunk.iter().map(|d| d.as_ref()).collect();
        sink.add(&refs).await?;
        since_commit += chunk.len();
        let last = (i + 1) * BATCH >= docs.len();
        if since_commit >= COMMIT_EVERY || last {
            let phase = if last { Phase::Streaming } else { Phase::Snapshot };
            let mut cp = checkpoint(phase, ((i + 1) * BATCH).min(docs.len()) as u64);
            cp.definition_hash = hash.clone();
            sink.commit(&cp).await?;
            since_commit = 0;
        }
    }
    Ok((wall.elapsed().as_secs_f64(), cpu_seconds() - cpu))
}

/// The stream path: the table holds `docs`; then every document is updated and one in ten
/// deleted, as change events. Returns the events, wall and CPU seconds.
async fn changes(docs: &[RawDocumentBuf], select: &str) -> misql::Result<(usize, f64, f64)> {
    let (mut sync, _dir) = sync_over(docs, select).await?;
    let (table, _) = target::prepare(&sync.connection, &sync.create, &sync.plan()).await?;
    let hash = sync.plan().definition_hash.clone();
    let mut sink = Sink::new(&sync, table)?;
    for chunk in docs.chunks(BATCH) {
        let refs: Vec<&RawDocument> = chunk.iter().map(|d| d.as_ref()).collect();
        sink.add(&refs).await?;
    }
    let mut cp = checkpoint(Phase::Streaming, docs.len() as u64);
    cp.definition_hash = hash;
    sink.commit(&cp).await?;
    let table = sink.into_table();
    // The events, made before the clock starts: what a change stream would have delivered.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut events = 0;
    for (i, doc) in docs.iter().enumerate() {
        let id = doc.get("_id").ok().flatten().map(bson::RawBson::from).unwrap();
        let id = bson::Bson::try_from(id).unwrap();
        let event = if i % 10 == 0 {
            doc! { "_id": { "_data": format!("{i:08}") }, "operationType": "delete",
            "ns": { "db": "bench", "coll": "orders" }, "documentKey": { "_id": id } }
        } else {
            let mut full = bson::Document::try_from(doc.as_ref()).unwrap();
            full.insert("status", "updated");
            doc! { "_id": { "_data": format!("{i:08}") }, "operationType": "update",
            "ns": { "db": "bench", "coll": "orders" }, "documentKey": { "_id": id },
            "fullDocument": full }
        };
        let event: Event = bson::deserialize_from_document(event).unwrap();
        let token = bson::deserialize_from_document(doc! { "_data": format!("{i:08}") }).ok();
        tx.send(Read::Event(Box::new(event), token, None)).unwrap();
        events += 1;
    }
    let end = bson::deserialize_from_document(doc! { "_data": "end" }).ok();
    tx.send(Read::Idle(end, Instant::now(), None)).unwrap();
    let source = sync.source.clone();
    let (router, _) = Router::new(source, "bench", Box::new(|_| false), None);
    let start = Position { token: bson::rawdoc! { "_data": "00" }, time: None };
    sync.feed = Some(Feed::new(router, "orders", start, rx));
    sync.create.options.max_batch_rows = COMMIT_EVERY;
    let checkpoint = misql::sync::sink::checkpoint_of(&table)?.unwrap();
    let token = checkpoint.resume_token.clone().unwrap();
    let position = Some(Position { token, time: None });
    let start = follow::Start { position, copy: None, exact: true };
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    follow::run(&sync, table, start, true).await?;
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let applied = sync.registry.all().get("bench").map_or(0, |s| s.events_applied);
    assert_eq!(applied, events as u64, "every event applied");
    Ok((events, wall, cpu))
}

/// A temporary warehouse, removed when dropped.
mod tempdir {
    pub struct Dir(std::path::PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("misql-ceiling-{}", std::process::id()));
            let path = path.join(format!(
                "{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
