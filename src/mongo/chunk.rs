//! One chunk of a collection, read in `_id` order at a known cluster time, so that a copy can
//! run beside the change stream: the chunk's rows are merged once the stream has passed that
//! time, and a row whose key the stream changed after it is left to the stream.
//!
//! The preferred read is a snapshot read (`readConcern: {level: "snapshot"}` in a snapshot
//! session): the server answers with `atClusterTime` = Tc and every row is its document as of
//! Tc exactly. A snapshot read must end inside the server's snapshot window
//! (`minSnapshotHistoryWindowInSeconds`, 300 s by default on mongod), so a chunk stops after
//! [`ChunkLimits`] rows, bytes or seconds and the next one continues after its last `_id` at a
//! new Tc. A server that refuses snapshot reads gets a plain read between two watermarks
//! (DBLog): the cluster time before the read and the one after it; the stream wins for any key
//! it changed inside that window.

use std::time::{Duration, Instant};

use bson::{RawDocumentBuf, Timestamp, doc};
use futures::StreamExt;
use mongodb::options::FindOptions;
use mongodb::raw_batch_cursor::RawBatch;

use super::change_stream::cluster_time;
use super::client::MongoSource;
use super::scan::FindRequest;
use crate::{Error, Result};

/// How big a chunk may grow before it ends.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// Documents.
    pub rows: usize,
    /// BSON bytes.
    pub bytes: u64,
    /// Reading time: well inside mongod's default 300 s snapshot window.
    pub time: Duration,
}

/// The longest a chunk is read: a fifth of mongod's default snapshot window.
pub const CHUNK_TIME: Duration = Duration::from_secs(60);

/// When a chunk's rows were read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadAt {
    /// Every row shows its document as of this cluster time or later: a change after it may
    /// be newer than the row, so the row of a key changed after it is left out.
    pub since: Timestamp,
    /// Every row shows its document as of this cluster time or earlier: once the stream has
    /// handed over every change up to it, the chunk can be merged.
    pub until: Timestamp,
    /// When `until` was known: an empty answer of the stream asked for after this instant
    /// means the stream has passed `until`.
    pub known: Instant,
}

/// A chunk: documents in `_id` order, when they were read, and whether the range ended.
#[derive(Debug)]
pub struct Chunk {
    /// The documents.
    pub docs: Vec<RawDocumentBuf>,
    /// When they were read.
    pub at: ReadAt,
    /// The range has no documents after these.
    pub end: bool,
}

/// How a chunk is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// A snapshot read at the server's `atClusterTime`.
    Snapshot,
    /// A plain read between two watermarks (the server refuses snapshot reads).
    Watermarks,
}

/// Reads the first chunk of `request` (whose filter holds the range's bounds) in `_id` order.
/// In [`ReadMode::Snapshot`], a server that refuses snapshot reads gets a watermark read, and
/// the mode to use from then on is returned.
pub async fn read(
    source: &MongoSource,
    request: &FindRequest,
    limits: ChunkLimits,
    mode: ReadMode,
) -> Result<(Chunk, ReadMode)> {
    if mode == ReadMode::Snapshot {
        match read_snapshot(source, request, limits).await {
            Ok(chunk) => return Ok((chunk, ReadMode::Snapshot)),
            Err(Refused(reason)) => {
                tracing::warn!(
                    "{}: the server refuses snapshot reads ({reason}); the copy reads between \
                     watermarks instead",
                    request.context()
                );
            }
            Err(Failed(err)) => return Err(err),
        }
    }
    Ok((read_between_watermarks(source, request, limits).await?, ReadMode::Watermarks))
}

/// Why a snapshot read did not give a chunk.
enum SnapshotError {
    /// The server does not do snapshot reads (or gave no `atClusterTime`).
    Refused(String),
    /// Anything else.
    Failed(Error),
}
use SnapshotError::{Failed, Refused};

fn options(request: &FindRequest, limits: ChunkLimits) -> FindOptions {
    FindOptions::builder()
        .sort(doc! { "_id": 1 })
        .projection(request.projection.clone())
        .limit(i64::try_from(limits.rows).ok())
        .build()
}

async fn read_snapshot(
    source: &MongoSource,
    request: &FindRequest,
    limits: ChunkLimits,
) -> std::result::Result<Chunk, SnapshotError> {
    let context = request.context();
    // A server that names a later time than the one it read at would let a change between the
    // two overwrite nothing: the cluster time before the read bounds it from below.
    let before = cluster_time(source).await;
    let client = source.client().await.map_err(Failed)?;
    let mut session = client
        .start_session()
        .snapshot(true)
        .await
        .map_err(|e| refused_or_failed(source, &context, e))?;
    let coll = client.database(&request.database).collection::<RawDocumentBuf>(&request.collection);
    let started = Instant::now();
    let mut cursor = coll
        .find(request.filter.clone())
        .with_options(options(request, limits))
        .session(&mut session)
        .batch()
        .await
        .map_err(|e| refused_or_failed(source, &context, e))?;
    let Some(time) = session.snapshot_time() else {
        return Err(Refused("no atClusterTime in its answer".to_string()));
    };
    let since = before.map_or(time, |before| before.min(time));
    let at = ReadAt { since, until: time, known: Instant::now() };
    let mut docs = Docs::new(limits, started);
    let mut batches = cursor.stream(&mut session);
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| Failed(source.unreachable(&context, e)))?;
        if !docs.take(&batch, &context).map_err(Failed)? {
            return Ok(docs.into_chunk(at, false));
        }
    }
    Ok(docs.into_chunk(at, true))
}

/// A driver error of a snapshot read: refused when the server said no to the read itself.
fn refused_or_failed(
    source: &MongoSource,
    context: &str,
    err: mongodb::error::Error,
) -> SnapshotError {
    match err.kind.as_ref() {
        mongodb::error::ErrorKind::Command(_)
        | mongodb::error::ErrorKind::InvalidArgument { .. } => {
            Refused(crate::error::mongo_reason(&err))
        }
        _ => Failed(source.unreachable(context, err)),
    }
}

async fn read_between_watermarks(
    source: &MongoSource,
    request: &FindRequest,
    limits: ChunkLimits,
) -> Result<Chunk> {
    let context = request.context();
    let watermark = || async {
        cluster_time(source).await.ok_or_else(|| {
            Error::plan(format!(
                "{context}: the server reports no cluster time, so a copy beside the change \
                 stream cannot place its reads"
            ))
        })
    };
    let since = watermark().await?;
    let started = Instant::now();
    let client = source.client().await?;
    let coll = client.database(&request.database).collection::<RawDocumentBuf>(&request.collection);
    let mut cursor = coll
        .find(request.filter.clone())
        .with_options(options(request, limits))
        .batch()
        .await
        .map_err(|e| source.unreachable(&context, e))?;
    let mut docs = Docs::new(limits, started);
    let mut end = true;
    while let Some(batch) = cursor.next().await {
        let batch = batch.map_err(|e| source.unreachable(&context, e))?;
        if !docs.take(&batch, &context)? {
            end = false;
            break;
        }
    }
    drop(cursor);
    let until = watermark().await?;
    Ok(docs.into_chunk(ReadAt { since, until, known: Instant::now() }, end))
}

/// The documents of a chunk being read, and whether it may grow.
struct Docs {
    docs: Vec<RawDocumentBuf>,
    bytes: u64,
    limits: ChunkLimits,
    started: Instant,
}

impl Docs {
    fn new(limits: ChunkLimits, started: Instant) -> Self {
        Self { docs: Vec::new(), bytes: 0, limits, started }
    }

    /// Takes a server batch; returns whether the chunk may take more.
    fn take(&mut self, batch: &RawBatch, context: &str) -> Result<bool> {
        let docs = batch.doc_slices().map_err(|e| Error::mongo(context.to_string(), e))?;
        for doc in docs {
            let doc = doc.map_err(|e| Error::plan(format!("{context}: malformed BSON: {e}")))?;
            let doc = doc
                .as_document()
                .ok_or_else(|| Error::plan(format!("{context}: not a document")))?;
            self.bytes += doc.as_bytes().len() as u64;
            self.docs.push(doc.to_owned());
        }
        Ok(self.docs.len() < self.limits.rows
            && self.bytes < self.limits.bytes
            && self.started.elapsed() < self.limits.time)
    }

    /// The chunk; `exhausted`: the cursor ended (the range ends unless the row limit cut it).
    fn into_chunk(self, at: ReadAt, exhausted: bool) -> Chunk {
        let end = exhausted && self.docs.len() < self.limits.rows;
        Chunk { docs: self.docs, at, end }
    }
}
