//! The commit side of the follow loop: a batch's rows and position deletes in one commit with
//! its checkpoint, the key index kept up to date, and the table's maintenance between batches.

use std::time::Instant;

use arrow::array::ArrayRef;
use bson::{RawDocument, rawdoc};
use iceberg::table::Table;

use super::changes::Changes;
use crate::lake::key_index::KeyIndex;
use crate::lake::lineage::rows_moved_since;
use crate::mongo::bson_arrow::BatchBuilder;
use crate::sync::checkpoint::Checkpoint;
use crate::sync::sink::Sink;
use crate::sync::{SyncTask, lease};
use crate::{Error, Result};

/// Writes one batch: position deletes for every changed key's current row, new rows for the
/// documents that exist and pass WHERE, and the token — in one commit.
pub async fn apply(
    sync: &SyncTask,
    sink: &mut Sink<'_>,
    index: &mut KeyIndex,
    changes: Changes,
    checkpoint: &Checkpoint,
) -> Result<()> {
    let docs: Vec<&RawDocument> =
        changes.order.iter().filter_map(|(_, doc)| doc.as_deref()).collect();
    sink.add(&docs).await?;
    for location in index.remove_keys(&keys(sync, &changes)?)? {
        sink.delete(location);
    }
    let since = sink.table().metadata().current_snapshot_id();
    for written in sink.commit(checkpoint).await? {
        let keys = written.keys.ok_or_else(|| {
            Error::internal(format!(
                "the keys of data file `{}` were not kept",
                written.file.file_path()
            ))
        })?;
        index.add_file(&written.file, &keys)?;
    }
    reindex_if_moved(sync, since, None, sink.table(), index).await?;
    let applied = changes.events;
    let index_bytes = index.heap_bytes() as u64;
    let latest = changes.latest.map(system_time);
    sync.status(|s| {
        s.events_applied += applied;
        s.key_index_bytes = index_bytes;
        s.last_event_time = latest.or(s.last_event_time);
        s.pending_since = None;
        if applied > 0 {
            s.last_event_applied = Some(std::time::SystemTime::now());
        }
    });
    Ok(())
}

/// Between batches: the table's maintenance (after a commit) and the lease's renewal; the sink
/// continues on the table they leave, and the key index is rebuilt when rows moved.
pub async fn between_batches(
    sync: &SyncTask,
    sink: &mut Sink<'_>,
    index: &mut KeyIndex,
    committed: bool,
    recopying: bool,
) -> Result<()> {
    if sync.stop.is_cancelled() {
        return Ok(()); // stopping: maintenance waits for the next run
    }
    // A re-copy tells the rows it did not write again by their files: a compaction would
    // move them, so the table is maintained again once the re-copy is complete.
    let committed = committed && !recopying;
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
pub async fn reindex_if_moved(
    sync: &SyncTask,
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

/// The output key of each changed `_id`, computed by the sync's key expression: the same
/// column the rows are written with, so the key index reads both the same way.
fn keys(sync: &SyncTask, changes: &Changes) -> Result<ArrayRef> {
    let mut builder = BatchBuilder::new(sync.plan().input_schema.clone());
    for (id, _) in &changes.order {
        builder.append(&rawdoc! { "_id": id.clone() })?;
    }
    sync.plan().keys(&builder.finish()?)
}

/// A cluster time as a wall-clock time (second precision).
pub fn system_time(time: bson::Timestamp) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(time.time))
}
