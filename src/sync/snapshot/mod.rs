//! The snapshot phase: the collection is read in `_id` order — in one range, or in several
//! `_id` ranges read concurrently (`snapshot_parallelism`) — and handed to the sink, which
//! commits every `max_batch_rows` / `max_batch_bytes` / `flush_interval`, each commit carrying
//! the last `_id` copied from every range. A restart resumes each range after its mark, so a
//! crash loses nothing and duplicates nothing.

mod readers;

use std::time::Instant;

use bson::{RawBson, RawDocument, RawDocumentBuf};
use futures::TryStreamExt;
use iceberg::table::Table;

use super::Sync;
use super::checkpoint::{Checkpoint, Phase, RangeMark};
use super::feed::Position;
use super::progress::Progress;
use super::sink::Sink;
use crate::iceberg::key_index::{KeyIndex, RowLocation};
use crate::mongo::id_range;
use crate::mongo::scan::FindRequest;
use crate::{Error, Result};
use readers::{Read, Readers};

/// Copies the collection into `table`, starting after `checkpoint`'s marks; the last commit
/// marks the snapshot complete. Returns the table after the last commit.
pub async fn run(sync: &Sync, table: Table, checkpoint: Option<Checkpoint>) -> Result<Table> {
    let (ranges, resume, rows) = match checkpoint {
        Some(cp) => {
            let resume = cp.resume_token.map(|token| Position { token, time: cp.resume_time });
            (cp.ranges, resume, cp.rows)
        }
        None => (Vec::new(), sync.start_position().await?, 0),
    };
    copy(sync, table, ranges, resume, rows, None).await
}

/// Copies the whole collection again and replaces the table's contents with it in one commit at
/// the end: new data files, position deletes for every row that was live, and a checkpoint
/// whose resume token was taken before the copy began.
pub async fn replace(sync: &Sync, table: Table) -> Result<Table> {
    let resume = sync.start_position().await?;
    let mut index = KeyIndex::build(&table, &sync.plan().key).await?;
    let mut live = Vec::with_capacity(index.len());
    let keys = table
        .scan()
        .select([sync.plan().key.as_str()])
        .build()
        .map_err(|e| Error::iceberg("reading the keys to replace", e))?
        .to_arrow()
        .await
        .map_err(|e| Error::iceberg("reading the keys to replace", e))?;
    let batches: Vec<arrow::array::RecordBatch> =
        keys.try_collect().await.map_err(|e| Error::iceberg("reading the keys to replace", e))?;
    for batch in batches {
        let column = batch.column(0);
        for i in 0..column.len() {
            let key = arrow::util::display::array_value_to_string(column, i)?;
            live.extend(index.remove(&key));
        }
    }
    copy(sync, table, Vec::new(), resume, 0, Some(live)).await
}

/// A snapshot in progress: where it is, and the sink its documents go to.
struct SnapshotCopy<'a> {
    sync: &'a Sync,
    sink: Sink<'a>,
    /// How far each range is copied.
    ranges: Vec<RangeMark>,
    resume: Option<Position>,
    /// Rows copied before this run.
    rows_before: u64,
    /// When the oldest row not committed yet was read: `flush_interval` counts from there, not
    /// from a wait for the server's first batch.
    pending_since: Option<Instant>,
    progress: Progress,
    /// Copying again over existing contents: the one commit at the end replaces the table's
    /// rows (so readers never see the table half replaced).
    replacing: bool,
}

/// The copy itself: see [`run`] and [`replace`]. With no `ranges` (a new copy) the collection
/// is split into `snapshot_parallelism` ranges first.
async fn copy(
    sync: &Sync,
    table: Table,
    ranges: Vec<RangeMark>,
    resume: Option<Position>,
    rows: u64,
    replacing: Option<Vec<RowLocation>>,
) -> Result<Table> {
    let client = sync.source.client().await?;
    let coll = client.database(&sync.database).collection::<RawDocumentBuf>(&sync.collection);
    let total = coll.estimated_document_count().await.unwrap_or(0);
    sync.status(|s| s.snapshot_rows_estimated = total);
    let plan = sync.plan();
    let ranges = if ranges.is_empty() {
        let parallelism = sync.create.options.snapshot_parallelism;
        let split = id_range::split(&coll, &plan.mongo_filter, total, parallelism).await;
        tracing::debug!(sync = %sync.name, ranges = split.len(), "snapshot ranges");
        split.into_iter().map(RangeMark::new).collect()
    } else {
        ranges
    };
    let request = FindRequest {
        database: sync.database.clone(),
        collection: sync.collection.clone(),
        filter: plan.mongo_filter.clone(),
        projection: plan.mongo_projection.clone(),
        limit: None,
    };
    let context = request.context();
    let mut readers = Readers::spawn(sync.source.clone(), request, &ranges);
    let mut sink = Sink::new(sync, table)?;
    let replace = replacing.is_some();
    for location in replacing.into_iter().flatten() {
        sink.delete(location);
    }
    let mut copy = SnapshotCopy {
        sync,
        sink,
        ranges,
        resume,
        rows_before: rows,
        pending_since: None,
        progress: Progress::new(&sync.name, total, rows),
        replacing: replace,
    };
    while !copy.ranges.iter().all(|mark| mark.done) {
        let next = tokio::select! {
            next = readers.next() => next,
            _ = sync.stop.cancelled() => {
                // Stopped: what was read is committed with its marks (a replacing copy commits
                // nothing: it would replace the table with part of the collection).
                if !copy.replacing {
                    copy.commit(Phase::Snapshot).await?;
                }
                return Ok(copy.sink.into_table());
            }
        };
        let Some((range, read)) = next else {
            return Err(Error::plan(format!("{context}: a range's reader stopped early")));
        };
        match read? {
            Read::Batch(batch) => {
                let docs = batch.doc_slices().map_err(|e| Error::mongo(context.clone(), e))?;
                let docs = docs
                    .into_iter()
                    .map(|doc| {
                        let doc = doc
                            .map_err(|e| Error::plan(format!("{context}: malformed BSON: {e}")))?;
                        doc.as_document()
                            .ok_or_else(|| Error::plan(format!("{context}: not a document")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                copy.add(range, &docs).await?;
            }
            Read::End => copy.ranges[range].done = true,
        }
        if copy.due() {
            copy.commit(Phase::Snapshot).await?;
        }
    }
    copy.ranges.clear();
    copy.commit(Phase::Streaming).await?;
    copy.progress.finish(copy.rows());
    Ok(copy.sink.into_table())
}

impl SnapshotCopy<'_> {
    /// Hands a cursor batch of `range` to the sink; its last `_id` becomes the range's mark.
    async fn add(&mut self, range: usize, docs: &[&RawDocument]) -> Result<()> {
        self.sink.add(docs).await?;
        self.pending_since.get_or_insert_with(Instant::now);
        if let Some(last) = docs.last() {
            self.ranges[range].after = last.get("_id").ok().flatten().map(RawBson::from);
        }
        self.progress.set(self.rows());
        Ok(())
    }

    /// Rows copied so far, this run and before.
    fn rows(&self) -> u64 {
        self.rows_before + self.sink.written()
    }

    /// Whether the rows written since the last commit should be committed now.
    fn due(&self) -> bool {
        if self.replacing {
            return false;
        }
        let options = &self.sync.create.options;
        self.sink.pending_rows() >= options.max_batch_rows as u64
            || self.sink.pending_bytes() >= options.max_batch_bytes
            || self.pending_since.is_some_and(|since| since.elapsed() >= options.flush_interval)
    }

    /// Commits with the checkpoint; `Streaming` marks the snapshot complete.
    async fn commit(&mut self, phase: Phase) -> Result<()> {
        self.sink.flush_chunk().await?; // the row count below includes the rows still buffered
        let checkpoint = Checkpoint {
            sync: self.sync.name.clone(),
            definition_hash: self.sync.plan().definition_hash.clone(),
            phase,
            ranges: self.ranges.clone(),
            resume_token: self.resume.as_ref().map(|p| p.token.clone()),
            rows: self.rows(),
            resume_time: self.resume.as_ref().and_then(|p| p.time),
        };
        self.sink.commit(&checkpoint).await?;
        if phase == Phase::Snapshot {
            crate::failpoint::failpoint("after-snapshot-commit");
        }
        if let Some(renewed) = super::lease::renew_if_due(self.sync, self.sink.table()).await? {
            self.sink.continue_on(renewed)?;
        }
        let rows = checkpoint.rows;
        self.sync.status(|s| s.rows_copied = rows);
        tracing::debug!(sync = %self.sync.name, rows, %phase, "committed");
        self.pending_since = None;
        Ok(())
    }
}
