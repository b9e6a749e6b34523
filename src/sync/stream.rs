//! The stream phase: change events after the checkpoint's resume token are batched (last change
//! per key wins), run through the sync's compiled plan, and committed as new data files plus
//! position deletes for the rows they replace, in one snapshot with the new resume token.
//! Nothing is applied twice and nothing is lost: the token moves only with the data it covers.

use std::collections::HashMap;
use std::time::Instant;

use arrow::array::{Array, ArrayRef};
use bson::{RawBson, RawDocument, RawDocumentBuf, rawdoc};
use iceberg::table::Table;
use mongodb::change_stream::event::OperationType;

use super::Sync;
use super::checkpoint::{Checkpoint, Phase};
use super::feed::Position;
use super::lease;
use super::sink::Sink;
use super::status::SyncPhase;
use crate::iceberg::key_index::KeyIndex;
use crate::iceberg::lineage::rows_moved_since;
use crate::mongo::bson_arrow::BatchBuilder;
use crate::mongo::change_stream::{
    Event, Read, Reader, SILENT_LIMIT, cluster_time, token_to_raw, watch,
};
use crate::{Error, Result};

/// The changes of one batch: per `_id`, the document after the last change, or `None` when
/// the document is gone. Order of first appearance is kept.
#[derive(Default)]
struct Changes {
    order: Vec<(RawBson, Option<RawDocumentBuf>)>,
    by_id: HashMap<Vec<u8>, usize>,
    /// The cluster time of the latest change in the batch.
    latest: Option<bson::Timestamp>,
    /// A change was read (the status says since when it waits).
    pending: bool,
}

impl Changes {
    fn len(&self) -> usize {
        self.order.len()
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn set(&mut self, id: RawBson, document: Option<RawDocumentBuf>) {
        let key = rawdoc! { "_id": id.clone() }.into_bytes();
        match self.by_id.get(&key) {
            Some(&i) => self.order[i].1 = document,
            None => {
                self.by_id.insert(key, self.order.len());
                self.order.push((id, document));
            }
        }
    }
}

/// Why the stream phase ended.
#[derive(Debug)]
pub enum StreamEnd {
    /// Every change up to now is applied (`--once`).
    Drained,
    /// The stream cannot continue (collection dropped or renamed, resume point gone): the
    /// collection must be copied again.
    Resnapshot(String),
    /// The sync was stopped; what it had read is committed.
    Stopped,
    /// The collection of a database sync was dropped or renamed: its table is kept as it is.
    Dropped(String),
}

/// Server error codes meaning the resume point is gone: ChangeStreamHistoryLost,
/// ChangeStreamFatalError, InvalidResumeToken.
const HISTORY_LOST: [i32; 3] = [286, 280, 260];

/// Whether `err` says the change stream cannot be resumed from its token.
fn history_lost(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        mongodb::error::ErrorKind::Command(command) => HISTORY_LOST.contains(&command.code),
        _ => false,
    }
}

/// Follows the change stream from `checkpoint`. With `drain`, returns once every change made
/// before the stream phase began is applied: when the stream has no more events, or at the
/// first event after the cluster time at the start (so that a `--once` run ends under a steady
/// stream of writes too); otherwise runs until an error or until the stream cannot continue.
pub async fn run(
    sync: &Sync,
    table: Table,
    checkpoint: Checkpoint,
    drain: bool,
) -> Result<StreamEnd> {
    let Some(token) = checkpoint.resume_token.clone() else {
        tracing::warn!("sync {}: no resume token; changes are not followed", sync.name);
        return Ok(StreamEnd::Drained);
    };
    // A database sync's collection ends its drain when the database stream is idle.
    let stop_after =
        if drain && sync.feed.is_none() { cluster_time(&sync.source).await } else { None };
    let mut index = KeyIndex::build(&table, &sync.plan().key).await?;
    let index_bytes = index.heap_bytes() as u64;
    sync.status(|s| s.key_index_bytes = index_bytes);
    let mut saved_time = checkpoint.resume_time;
    let mut reader = match &sync.feed {
        Some(feed) => feed.reader(Position { token: token.clone(), time: saved_time }),
        None => {
            let stream = watch(&sync.source, &sync.database, &sync.collection, Some(&token)).await;
            match stream {
                Ok(stream) => Reader::spawn(stream),
                Err(err) if history_lost(&err) => return Ok(StreamEnd::Resnapshot(lost(&err))),
                Err(err) => return Err(sync.source.unreachable("opening the change stream", err)),
            }
        }
    };
    // A database stream may start before this table's checkpoint (another table needed it):
    // the events before it are already in the table.
    let skip_before = sync.feed.as_ref().and(saved_time);
    let mut sink = Sink::new(sync, table)?;
    let mut saved_token = token;
    let mut last_commit = Instant::now();
    let options = &sync.create.options;
    sync.status(|s| s.enter(SyncPhase::Streaming));
    // Whether the last read found the stream idle (everything up to now was read).
    let mut idle = false;
    let mut last_heard = Instant::now();
    loop {
        let mut changes = Changes::default();
        let started = Instant::now();
        let mut caught_up = false;
        let mut stopping = false;
        let mut read_token = None;
        while changes.len() < options.max_batch_rows {
            let Some(left) = options.flush_interval.checked_sub(started.elapsed()) else { break };
            let next = tokio::select! {
                next = tokio::time::timeout(left, reader.recv()) => next,
                _ = sync.stop.cancelled() => {
                    stopping = true;
                    break;
                }
            };
            if next.is_ok() {
                last_heard = Instant::now();
            }
            match next {
                Err(_elapsed) if last_heard.elapsed() >= SILENT_LIMIT => {
                    return Err(stalled(sync, last_heard.elapsed()));
                }
                Err(_elapsed) => break,
                Ok(None) => return Err(Error::plan("the change stream reader stopped")),
                Ok(Some(Read::Failed(err))) if history_lost(&err) => {
                    return Ok(StreamEnd::Resnapshot(lost(&err)));
                }
                Ok(Some(Read::Failed(err))) => {
                    return Err(Error::mongo("reading the change stream", err));
                }
                Ok(Some(Read::Event(event, token))) => {
                    read_token = token.or(read_token);
                    if skip_before.is_some_and(|t| event.cluster_time.is_some_and(|c| c < t)) {
                        continue;
                    }
                    idle = !is_change(&event); // a heartbeat: nothing else to read
                    let later =
                        stop_after.is_some_and(|t| event.cluster_time.is_some_and(|c| c > t));
                    if let Some(reason) = add(sync, &mut changes, *event)? {
                        // Apply what came before the end of the stream, then copy again (or,
                        // in a database sync, stop: the collection is gone).
                        if !changes.is_empty() {
                            let token = saved_token.clone();
                            apply(sync, &mut sink, &mut index, changes, &token, saved_time).await?;
                        }
                        if sync.feed.is_some() {
                            return Ok(StreamEnd::Dropped(reason));
                        }
                        return Ok(StreamEnd::Resnapshot(reason));
                    }
                    if later {
                        caught_up = true; // everything before the start is in this batch
                        break;
                    }
                }
                Ok(Some(Read::Idle(token))) => {
                    read_token = token.or(read_token);
                    caught_up = true;
                    idle = true;
                    if drain || !changes.is_empty() {
                        break;
                    }
                }
            }
        }
        let token = match &read_token {
            Some(token) => token_to_raw(token)?,
            None => saved_token.clone(),
        };
        let progress = token != saved_token;
        let mut committed = false;
        sync.status(|s| s.caught_up = idle);
        if !changes.is_empty() {
            saved_time = changes.latest.or(saved_time);
            apply(sync, &mut sink, &mut index, changes, &token, saved_time).await?;
            saved_token = token;
            last_commit = Instant::now();
            committed = true;
        } else if progress && !drain && last_commit.elapsed() >= options.flush_interval {
            // An idle stream still moves its token; save it, but not more often than
            // flush_interval (and not in a --once run, which must commit nothing when nothing
            // changed).
            let since = sink.table().metadata().current_snapshot_id();
            sink.commit(&checkpoint_at(sync, &token, saved_time)).await?;
            reindex_if_moved(sync, since, None, sink.table(), &mut index).await?;
            saved_token = token;
            last_commit = Instant::now();
            committed = true;
        }
        between_batches(sync, &mut sink, &mut index, committed).await?;
        if stopping {
            return Ok(StreamEnd::Stopped);
        }
        if drain && caught_up {
            return Ok(StreamEnd::Drained);
        }
    }
}

/// The error for a change stream that gave nothing for `silent`: transient, so the sync opens
/// it again from its checkpoint.
fn stalled(sync: &Sync, silent: std::time::Duration) -> Error {
    Error::Unavailable {
        message: format!(
            "the change stream of {}.{} gave nothing for {} s (not even an empty answer)",
            sync.database,
            sync.collection,
            silent.as_secs()
        ),
        hint: Some("the sync opens it again from its checkpoint".to_string()),
    }
}

/// Why the resume point is gone, for the log and the status.
fn lost(err: &mongodb::error::Error) -> String {
    format!("the change stream cannot resume from the saved token ({err})")
}

/// Adds one event to the batch; returns why the stream ended when the event ends it.
fn add(sync: &Sync, changes: &mut Changes, event: Event) -> Result<Option<String>> {
    if is_change(&event) {
        if !changes.pending {
            changes.pending = true;
            let read = event.cluster_time.map(system_time);
            sync.status(|s| s.pending_since = read.or(Some(std::time::SystemTime::now())));
        }
        changes.latest = changes.latest.max(event.cluster_time);
    }
    let id = || -> Result<RawBson> {
        let key =
            event.document_key.as_ref().and_then(|k| k.get("_id")).cloned().ok_or_else(|| {
                Error::plan(format!(
                    "a change event of {}.{} has no documentKey._id",
                    sync.database, sync.collection
                ))
            })?;
        RawBson::try_from(key)
            .map_err(|e| Error::plan(format!("unreadable _id in a change event: {e}")))
    };
    match event.operation_type {
        OperationType::Insert | OperationType::Update | OperationType::Replace => {
            changes.set(id()?, event.full_document.clone());
        }
        OperationType::Delete => changes.set(id()?, None),
        OperationType::Invalidate
        | OperationType::Drop
        | OperationType::Rename
        | OperationType::DropDatabase => {
            return Ok(Some(format!(
                "the change stream of {}.{} ended ({:?}): the collection was dropped or renamed",
                sync.database, sync.collection, event.operation_type
            )));
        }
        _ => {}
    }
    Ok(None)
}

/// Whether `event` changes a document (not a heartbeat or another event the sync skips).
fn is_change(event: &Event) -> bool {
    matches!(
        event.operation_type,
        OperationType::Insert
            | OperationType::Update
            | OperationType::Replace
            | OperationType::Delete
    )
}

/// A cluster time as a wall-clock time (second precision).
fn system_time(time: bson::Timestamp) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(time.time))
}

/// The checkpoint of a streaming sync at `token`.
fn checkpoint_at(
    sync: &Sync,
    token: &RawDocumentBuf,
    resume_time: Option<bson::Timestamp>,
) -> Checkpoint {
    Checkpoint {
        sync: sync.name.clone(),
        definition_hash: sync.plan().definition_hash.clone(),
        phase: Phase::Streaming,
        ranges: Vec::new(),
        resume_token: Some(token.clone()),
        rows: sync.registry.all().get(&sync.name).map_or(0, |s| s.rows_copied),
        resume_time,
    }
}

/// Writes one batch: position deletes for every changed key's current row, new rows for the
/// documents that exist and pass WHERE, and the token — in one commit.
async fn apply(
    sync: &Sync,
    sink: &mut Sink<'_>,
    index: &mut KeyIndex,
    changes: Changes,
    token: &RawDocumentBuf,
    resume_time: Option<bson::Timestamp>,
) -> Result<()> {
    let docs: Vec<&RawDocument> =
        changes.order.iter().filter_map(|(_, doc)| doc.as_deref()).collect();
    sink.add(&docs).await?;
    for key in keys(sync, &changes)? {
        if let Some(location) = index.remove(&key) {
            sink.delete(location);
        }
    }
    let since = sink.table().metadata().current_snapshot_id();
    let files = sink.commit(&checkpoint_at(sync, token, resume_time)).await?;
    for file in &files {
        index.add_written_file(sink.table(), file, &sync.plan().key).await?;
    }
    reindex_if_moved(sync, since, None, sink.table(), index).await?;
    let applied = changes.len() as u64;
    let index_bytes = index.heap_bytes() as u64;
    let latest = changes.latest.map(system_time);
    sync.status(|s| {
        s.events_applied += applied;
        s.key_index_bytes = index_bytes;
        s.last_event_time = latest.or(s.last_event_time);
        s.pending_since = None;
        s.last_event_applied = Some(std::time::SystemTime::now());
    });
    Ok(())
}

/// Between batches: the table's maintenance (after a commit) and the lease's renewal; the sink
/// continues on the table they leave, and the key index is rebuilt when rows moved.
async fn between_batches(
    sync: &Sync,
    sink: &mut Sink<'_>,
    index: &mut KeyIndex,
    committed: bool,
) -> Result<()> {
    if sync.stop.is_cancelled() {
        return Ok(()); // stopping: maintenance waits for the next run
    }
    let since = sink.table().metadata().current_snapshot_id();
    let mut changed = None;
    let mut compaction = None;
    if committed {
        let mut maintenance = *sync.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        let done = maintenance.after_commit(sync, sink.table()).await;
        *sync.maintenance.lock().unwrap_or_else(|e| e.into_inner()) = maintenance;
        if let Some(maintained) = done? {
            changed = Some(maintained.table);
            compaction = maintained.compaction;
        }
    }
    let current = changed.as_ref().unwrap_or(sink.table());
    if let Some(renewed) = lease::renew_if_due(sync, current).await? {
        changed = Some(renewed);
    }
    let Some(table) = changed else { return Ok(()) };
    sink.continue_on(table)?;
    // Rows the sync's own compaction moved: their keys move to the new files (cheaper than
    // reading every file's keys again); any other move (another process's compaction) means a
    // full rebuild.
    let own = compaction.as_ref().map(|(id, _)| *id);
    if reindex_if_moved(sync, since, own, sink.table(), index).await? {
        return Ok(());
    }
    if let Some((_, added)) = compaction {
        let started = Instant::now();
        for file in &added {
            index.add_rewritten_file(sink.table(), file, &sync.plan().key).await?;
        }
        tracing::debug!(
            "sync {}: key index moved to {} compacted files in {} ms",
            sync.name,
            added.len(),
            started.elapsed().as_millis()
        );
    }
    Ok(())
}

/// Rebuilds the key index when rows moved to new files since snapshot `since` by a commit other
/// than `except` (the sync's own compaction, whose moves the caller applies): a compaction that
/// a commit of the sync landed on, or another process's, removed data files the index points
/// into. Returns whether it rebuilt the index.
async fn reindex_if_moved(
    sync: &Sync,
    since: Option<i64>,
    except: Option<i64>,
    table: &Table,
    index: &mut KeyIndex,
) -> Result<bool> {
    if !rows_moved_since(table.metadata(), since, except) {
        return Ok(false);
    }
    let started = Instant::now();
    *index = KeyIndex::build(table, &sync.plan().key).await?;
    tracing::debug!(
        "sync {}: key index rebuilt after a compaction in {} ms",
        sync.name,
        started.elapsed().as_millis()
    );
    Ok(true)
}

/// The output key of each changed `_id`, computed by the sync's key expression.
fn keys(sync: &Sync, changes: &Changes) -> Result<Vec<String>> {
    let mut builder = BatchBuilder::new(sync.plan().input_schema.clone());
    for (id, _) in &changes.order {
        builder.append(&rawdoc! { "_id": id.clone() })?;
    }
    let keys: ArrayRef = sync.plan().keys(&builder.finish()?)?;
    (0..keys.len())
        .map(|i| {
            arrow::util::display::array_value_to_string(&keys, i)
                .map_err(|e| Error::plan(format!("cannot read key {i}: {e}")))
        })
        .collect()
}
