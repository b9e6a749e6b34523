//! The snapshot phase: the collection is read in `_id` order and handed to the sink, which
//! commits every `max_batch_rows` / `max_batch_bytes` / `flush_interval`, each commit carrying
//! the last `_id` it holds. A restart resumes after that `_id`, so a crash loses nothing and
//! duplicates nothing.

use std::time::Instant;

use bson::{Document, RawBson, RawDocument, RawDocumentBuf, doc};
use futures::{StreamExt, TryStreamExt};
use iceberg::table::Table;
use mongodb::options::FindOptions;

use super::Sync;
use super::checkpoint::{Checkpoint, Phase};
use super::feed::Position;
use super::progress::Progress;
use super::sink::Sink;
use crate::iceberg::key_index::{KeyIndex, RowLocation};
use crate::{Error, Result};

/// Copies the collection into `table`, starting after `checkpoint`'s high-water mark; the last
/// commit marks the snapshot complete. Returns the table after the last commit.
pub async fn run(sync: &Sync, table: Table, checkpoint: Option<Checkpoint>) -> Result<Table> {
    let (high_water, resume, rows) = match checkpoint {
        Some(cp) => {
            let resume = cp.resume_token.map(|token| Position { token, time: cp.resume_time });
            (cp.high_water, resume, cp.rows)
        }
        None => (None, sync.start_position().await?, 0),
    };
    copy(sync, table, high_water, resume, rows, None).await
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
    copy(sync, table, None, resume, 0, Some(live)).await
}

/// A snapshot in progress: where it is, and the sink its documents go to.
struct SnapshotCopy<'a> {
    sync: &'a Sync,
    sink: Sink<'a>,
    high_water: Option<RawBson>,
    resume: Option<Position>,
    /// Rows copied before this run.
    rows_before: u64,
    last_commit: Instant,
    progress: Progress,
    /// Copying again over existing contents: the one commit at the end replaces the table's
    /// rows (so readers never see the table half replaced).
    replacing: bool,
}

/// The copy itself: see [`run`] and [`replace`].
async fn copy(
    sync: &Sync,
    table: Table,
    high_water: Option<RawBson>,
    resume: Option<Position>,
    rows: u64,
    replacing: Option<Vec<RowLocation>>,
) -> Result<Table> {
    let client = sync.source.client().await?;
    let coll = client.database(&sync.database).collection::<RawDocumentBuf>(&sync.collection);
    let total = coll.estimated_document_count().await.unwrap_or(0);
    sync.status(|s| s.snapshot_rows_estimated = total);
    let options = FindOptions::builder()
        .sort(doc! { "_id": 1 })
        .projection(sync.plan().mongo_projection.clone())
        .build();
    let context = format!("reading {}.{}", sync.database, sync.collection);
    let cursor = coll
        .find(filter(&sync.plan().mongo_filter, high_water.as_ref()))
        .with_options(options)
        .batch()
        .await
        .map_err(|e| sync.source.unreachable(&context, e))?;
    let mut cursor = ReadAhead::spawn(cursor);
    let mut sink = Sink::new(sync, table)?;
    let replace = replacing.is_some();
    for location in replacing.into_iter().flatten() {
        sink.delete(location);
    }
    let mut copy = SnapshotCopy {
        sync,
        sink,
        high_water,
        resume,
        rows_before: rows,
        last_commit: Instant::now(),
        progress: Progress::new(&sync.name, total, rows),
        replacing: replace,
    };
    loop {
        let next = tokio::select! {
            next = cursor.next() => next.transpose().map_err(|e| Error::mongo(context.clone(), e))?,
            _ = sync.stop.cancelled() => {
                // Stopped: what was read is committed with its high-water mark (a replacing
                // copy commits nothing: it would replace the table with part of the collection).
                if !copy.replacing {
                    copy.commit(Phase::Snapshot).await?;
                }
                return Ok(copy.sink.into_table());
            }
        };
        let Some(batch) = next else { break };
        let docs = batch.doc_slices().map_err(|e| Error::mongo(context.clone(), e))?;
        let docs = docs
            .into_iter()
            .map(|doc| {
                let doc =
                    doc.map_err(|e| Error::plan(format!("{context}: malformed BSON: {e}")))?;
                doc.as_document().ok_or_else(|| Error::plan(format!("{context}: not a document")))
            })
            .collect::<Result<Vec<_>>>()?;
        copy.add(&docs).await?;
        if copy.due() {
            copy.commit(Phase::Snapshot).await?;
        }
    }
    copy.commit(Phase::Streaming).await?;
    copy.progress.finish(copy.rows());
    Ok(copy.sink.into_table())
}

/// Reads the cursor's next batch while the one before is converted, written and committed:
/// the server's work overlaps misql's. One batch is read ahead, so memory stays bounded.
struct ReadAhead {
    rx: tokio::sync::mpsc::Receiver<mongodb::error::Result<mongodb::raw_batch_cursor::RawBatch>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadAhead {
    fn spawn(mut cursor: mongodb::raw_batch_cursor::RawBatchCursor) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(async move {
            while let Some(batch) = cursor.next().await {
                let failed = batch.is_err();
                if tx.send(batch).await.is_err() || failed {
                    return;
                }
            }
        });
        Self { rx, task }
    }

    /// The next batch; `None` at the end of the cursor. Cancel-safe.
    async fn next(
        &mut self,
    ) -> Option<mongodb::error::Result<mongodb::raw_batch_cursor::RawBatch>> {
        self.rx.recv().await
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The pushed-down WHERE, and `_id` after the high-water mark when resuming.
fn filter(pushed: &Document, high_water: Option<&RawBson>) -> Document {
    let Some(id) = high_water else { return pushed.clone() };
    let after = match bson::Bson::try_from(id.clone()) {
        Ok(id) => doc! { "_id": { "$gt": id } },
        Err(_) => return pushed.clone(),
    };
    if pushed.is_empty() {
        after
    } else {
        doc! { "$and": [pushed.clone(), after] }
    }
}

impl SnapshotCopy<'_> {
    /// Hands a cursor batch to the sink; the last `_id` becomes the high-water mark.
    async fn add(&mut self, docs: &[&RawDocument]) -> Result<()> {
        self.sink.add(docs).await?;
        if let Some(last) = docs.last() {
            self.high_water = last.get("_id").ok().flatten().map(RawBson::from);
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
            || self.last_commit.elapsed() >= options.flush_interval
    }

    /// Commits with the checkpoint; `Streaming` marks the snapshot complete.
    async fn commit(&mut self, phase: Phase) -> Result<()> {
        self.sink.flush_chunk().await?; // the row count below includes the rows still buffered
        let checkpoint = Checkpoint {
            sync: self.sync.name.clone(),
            definition_hash: self.sync.plan().definition_hash.clone(),
            phase,
            high_water: self.high_water.clone(),
            resume_token: self.resume.as_ref().map(|p| p.token.clone()),
            rows: self.rows(),
            resume_time: self.resume.as_ref().and_then(|p| p.time),
        };
        self.sink.commit(&checkpoint).await?;
        if let Some(renewed) = super::lease::renew_if_due(self.sync, self.sink.table()).await? {
            self.sink.continue_on(renewed)?;
        }
        let rows = checkpoint.rows;
        self.sync.status(|s| s.rows_copied = rows);
        tracing::debug!(sync = %self.sync.name, rows, %phase, "committed");
        self.last_commit = Instant::now();
        Ok(())
    }
}
