//! Chunks of a collection read in `_id` order at a known cluster time, so that a copy can run
//! beside the change stream: a chunk's rows are merged once the stream has passed that time,
//! and a row whose key the stream changed after it is left to the stream.
//!
//! The preferred read is a snapshot read (`readConcern: {level: "snapshot"}` in a snapshot
//! session): the server answers with `atClusterTime` = Tc and every row is its document as of
//! Tc. A snapshot read must end inside the server's snapshot window
//! (`minSnapshotHistoryWindowInSeconds`, 300 s by default on mongod), so a chunk is read for at
//! most [`CHUNK_TIME`] and the next one continues after its last `_id` at a new Tc. A server
//! that refuses snapshot reads gets plain reads between watermarks (DBLog): the cluster time
//! before the read, and the one after each server batch; the stream wins for any key it changed
//! inside that window. A chunk hands over its rows one server batch at a time ([`ChunkCursor`]),
//! so memory is bounded by batches, not by the chunk's length.

use std::time::{Duration, Instant};

use bson::{RawDocumentBuf, Timestamp, doc};
use futures::StreamExt;
use mongodb::ClientSession;
use mongodb::options::FindOptions;
use mongodb::raw_batch_cursor::{RawBatch, RawBatchCursor, SessionRawBatchCursor};

use super::change_stream::cluster_time;
use super::client::MongoSource;
use super::scan::{FindRequest, batch_documents};
use crate::{Error, ErrorKind, Result};

/// The longest a chunk is read: a fifth of mongod's default snapshot window.
pub const CHUNK_TIME: Duration = Duration::from_secs(60);

/// Server error code: the snapshot a read was at is no longer kept (SnapshotTooOld).
const SNAPSHOT_TOO_OLD: i32 = 239;

/// When a chunk's rows were read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadAt {
    /// Every row shows its document as of this cluster time or later: a change after it may
    /// be newer than the row, so the row of a key changed after it is left out.
    pub since: Timestamp,
    /// Every row shows its document as of this cluster time or earlier: once the stream has
    /// handed over every change up to it, the rows can be merged.
    pub until: Timestamp,
    /// When `until` was known: an empty answer of the stream asked for after this instant
    /// means the stream has passed `until`.
    pub known: Instant,
}

/// How chunks are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Snapshot reads at the server's `atClusterTime`.
    Snapshot,
    /// Plain reads between watermarks (the server refuses snapshot reads).
    Watermarks,
}

/// An open chunk: its cursor and when its rows were read.
pub struct ChunkCursor {
    source: std::sync::Arc<MongoSource>,
    context: String,
    cursor: Cursor,
    at: ReadAt,
    started: Instant,
}

enum Cursor {
    Snapshot(Box<ClientSession>, SessionRawBatchCursor),
    Plain(RawBatchCursor),
}

/// What [`ChunkCursor::next`] hands over.
pub enum Next {
    /// The next documents (one server batch), read at the given time.
    Rows(Vec<RawDocumentBuf>, ReadAt),
    /// The chunk ends here and the range goes on: the next chunk continues after the last
    /// `_id` handed over (the chunk was read for [`CHUNK_TIME`], or its snapshot is too old).
    Split,
    /// The range has no more documents.
    End,
}

impl ChunkCursor {
    /// Opens a chunk of `request` (whose filter holds the range's bounds, after the last `_id`
    /// copied) in `_id` order. In [`ReadMode::Snapshot`], a server that refuses snapshot reads
    /// gets a watermark read, and the mode to use from then on is returned.
    pub async fn open(
        source: std::sync::Arc<MongoSource>,
        request: &FindRequest,
        mode: ReadMode,
    ) -> Result<(Self, ReadMode)> {
        let context = request.context();
        // A server that names a later time than the one it read at would let a change between
        // the two be overwritten: the cluster time before the read bounds it from below.
        let before = cluster_time(&source).await;
        if mode == ReadMode::Snapshot {
            match open_snapshot(&source, request).await {
                Ok((session, cursor, time)) => {
                    let since = before.map_or(time, |before| before.min(time));
                    let at = ReadAt { since, until: time, known: Instant::now() };
                    let cursor = Cursor::Snapshot(Box::new(session), cursor);
                    let chunk = Self { source, context, cursor, at, started: Instant::now() };
                    return Ok((chunk, ReadMode::Snapshot));
                }
                Err(Refused(reason)) => tracing::warn!(
                    "{context}: the server refuses snapshot reads ({reason}); the copy reads \
                     between watermarks instead"
                ),
                Err(Failed(err)) => return Err(err),
            }
        }
        let since = before.ok_or_else(|| no_cluster_time(&context))?;
        let client = source.client().await?;
        let coll =
            client.database(&request.database).collection::<RawDocumentBuf>(&request.collection);
        let cursor = coll
            .find(request.filter.clone())
            .with_options(options(request))
            .batch()
            .await
            .map_err(|e| source.unreachable(&context, e))?;
        let at = ReadAt { since, until: since, known: Instant::now() };
        let chunk =
            Self { source, context, cursor: Cursor::Plain(cursor), at, started: Instant::now() };
        Ok((chunk, ReadMode::Watermarks))
    }

    /// The next server batch of the chunk, or where it ends.
    pub async fn next(&mut self) -> Result<Next> {
        if self.started.elapsed() >= CHUNK_TIME {
            return Ok(Next::Split);
        }
        let batch = match &mut self.cursor {
            Cursor::Snapshot(session, cursor) => cursor.stream(session).next().await,
            Cursor::Plain(cursor) => cursor.next().await,
        };
        let batch = match batch {
            None => return Ok(Next::End),
            Some(Err(err)) if code(&err) == Some(SNAPSHOT_TOO_OLD) => return Ok(Next::Split),
            Some(Err(err)) => return Err(self.source.unreachable(&self.context, err)),
            Some(Ok(batch)) => batch,
        };
        let docs = documents(&batch, &self.context)?;
        if let Cursor::Plain(_) = self.cursor {
            // The high watermark: every row of this batch was read before now.
            let until = cluster_time(&self.source).await;
            self.at.until = until.ok_or_else(|| no_cluster_time(&self.context))?;
            self.at.known = Instant::now();
        }
        Ok(Next::Rows(docs, self.at))
    }
}

fn no_cluster_time(context: &str) -> Error {
    Error::remote(
        ErrorKind::Permanent,
        format!(
            "{context}: the server reports no cluster time, so a copy beside the change stream \
         cannot place its reads"
        ),
    )
}

fn code(err: &mongodb::error::Error) -> Option<i32> {
    match err.kind.as_ref() {
        mongodb::error::ErrorKind::Command(command) => Some(command.code),
        _ => None,
    }
}

/// Why a snapshot read did not open.
enum SnapshotError {
    /// The server does not do snapshot reads (or gave no `atClusterTime`).
    Refused(String),
    /// Anything else.
    Failed(Error),
}
use SnapshotError::{Failed, Refused};

fn options(request: &FindRequest) -> FindOptions {
    FindOptions::builder().sort(doc! { "_id": 1 }).projection(request.projection.clone()).build()
}

async fn open_snapshot(
    source: &MongoSource,
    request: &FindRequest,
) -> std::result::Result<(ClientSession, SessionRawBatchCursor, Timestamp), SnapshotError> {
    let context = request.context();
    let client = source.client().await.map_err(Failed)?;
    let mut session = client
        .start_session()
        .snapshot(true)
        .await
        .map_err(|e| refused_or_failed(source, &context, e))?;
    let coll = client.database(&request.database).collection::<RawDocumentBuf>(&request.collection);
    let cursor = coll
        .find(request.filter.clone())
        .with_options(options(request))
        .session(&mut session)
        .batch()
        .await
        .map_err(|e| refused_or_failed(source, &context, e))?;
    let Some(time) = session.snapshot_time() else {
        return Err(Refused("no atClusterTime in its answer".to_string()));
    };
    Ok((session, cursor, time))
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

/// The documents of a server batch.
fn documents(batch: &RawBatch, context: &str) -> Result<Vec<RawDocumentBuf>> {
    batch_documents(batch, context)?.map(|doc| Ok(doc?.to_owned())).collect()
}
