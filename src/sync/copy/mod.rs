//! The copy beside the stream. The collection is read in `_id` ranges (one, or
//! `snapshot_parallelism` read concurrently), each in chunks read at a known cluster time
//! ([`crate::mongo::chunk`]); the follow loop merges a chunk into its batch once the stream has
//! passed that time, by the rule of [`merge`], through the same key index and sink as every
//! change. Each range's mark (the last `_id` merged) rides in the checkpoint of every commit
//! with the stream's token, so a restart resumes both.
//!
//! A re-copy (after the stream lost its history, or `REFRESH SYNC`) works the same over the
//! live table: rows are upserted, and at the end every row that neither a chunk nor the stream
//! wrote since the re-copy began (a data file of a sequence number at or before
//! [`CopyStart::recopy_after`]) is deleted: its document was gone at the time its chunk was read
//! and no change brought it back. The table is never emptied or swapped in between.

pub mod merge;

use std::collections::VecDeque;
use std::sync::Arc;

use bson::{RawBson, RawDocumentBuf, Timestamp, doc, rawdoc};
use tokio::task::JoinSet;

use super::Sync;
use super::checkpoint::RangeMark;
use super::progress::Progress;
use crate::mongo::chunk::{self, CHUNK_TIME, Chunk, ChunkLimits, ReadMode};
use crate::mongo::client::MongoSource;
use crate::mongo::id_range;
use crate::mongo::scan::FindRequest;
use crate::{Error, Result};
use merge::{ChangedKeys, StreamPosition, floor_of};

/// The most documents in one chunk.
pub const MAX_CHUNK_ROWS: usize = 50_000;

/// Where a copy starts.
#[derive(Debug, Clone, Default)]
pub struct CopyStart {
    /// The ranges and how far each is merged; empty: split the collection anew.
    pub ranges: Vec<RangeMark>,
    /// A re-copy over existing rows: the table's last sequence number when it began.
    pub recopy_after: Option<i64>,
    /// Rows copied before this run.
    pub rows: u64,
}

/// A chunk waiting for the stream to pass its read time.
struct Pending {
    range: usize,
    chunk: Chunk,
}

type ChunkRead = (usize, Result<(Chunk, ReadMode)>);

/// A copy in progress.
pub struct Copy {
    source: Arc<MongoSource>,
    request: FindRequest,
    limits: ChunkLimits,
    /// How far each range is merged (what the checkpoint says).
    ranges: Vec<RangeMark>,
    /// The last `_id` read from each range (ahead of its mark while a chunk waits).
    read_after: Vec<Option<RawBson>>,
    /// Per range: the stream's position when its read in flight began.
    floors: Vec<Option<u64>>,
    reading: JoinSet<ChunkRead>,
    pending: VecDeque<Pending>,
    changed: ChangedKeys,
    mode: ReadMode,
    recopy_after: Option<i64>,
    rows: u64,
    progress: Progress,
}

impl Copy {
    /// Starts reading the ranges of `start` (splitting the collection first when it has none).
    pub async fn start(sync: &Sync, start: CopyStart) -> Result<Self> {
        let client = sync.source.client().await?;
        let coll = client.database(&sync.database).collection::<RawDocumentBuf>(&sync.collection);
        let total = coll.estimated_document_count().await.unwrap_or(0);
        sync.status(|s| {
            s.snapshot_rows_estimated = total;
            s.rows_copied = start.rows;
        });
        let plan = sync.plan();
        let ranges = if start.ranges.is_empty() {
            let parallelism = sync.create.options.snapshot_parallelism;
            let split = id_range::split(&coll, &plan.mongo_filter, total, parallelism).await;
            tracing::debug!(sync = %sync.name, ranges = split.len(), "copy ranges");
            split.into_iter().map(RangeMark::new).collect()
        } else {
            start.ranges
        };
        let options = &sync.create.options;
        let limits = ChunkLimits {
            rows: options.max_batch_rows.clamp(1, MAX_CHUNK_ROWS),
            bytes: options.max_batch_bytes,
            time: CHUNK_TIME,
        };
        let mut copy = Self {
            source: sync.source.clone(),
            request: FindRequest {
                database: sync.database.clone(),
                collection: sync.collection.clone(),
                filter: plan.mongo_filter.clone(),
                projection: plan.mongo_projection.clone(),
                limit: None,
            },
            limits,
            read_after: ranges.iter().map(|mark| mark.after.clone()).collect(),
            floors: vec![None; ranges.len()],
            ranges,
            reading: JoinSet::new(),
            pending: VecDeque::new(),
            changed: ChangedKeys::default(),
            mode: ReadMode::Snapshot,
            recopy_after: start.recopy_after,
            progress: Progress::new(&sync.name, total, start.rows),
            rows: start.rows,
        };
        for range in 0..copy.ranges.len() {
            if !copy.ranges[range].done {
                copy.read_next(range, None)?;
            }
        }
        Ok(copy)
    }

    /// Starts reading the next chunk of `range`; `floor`: the stream's position now.
    fn read_next(&mut self, range: usize, floor: Option<u64>) -> Result<()> {
        let mark =
            RangeMark { after: self.read_after[range].clone(), ..self.ranges[range].clone() };
        let filter = match mark.range.filter(mark.after.as_ref())? {
            None => self.request.filter.clone(),
            Some(bounds) if self.request.filter.is_empty() => bounds,
            Some(bounds) => doc! { "$and": [self.request.filter.clone(), bounds] },
        };
        let request = FindRequest { filter, ..self.request.clone() };
        let (source, limits, mode) = (self.source.clone(), self.limits, self.mode);
        self.floors[range] = Some(floor.unwrap_or(0));
        self.reading
            .spawn(async move { (range, chunk::read(&source, &request, limits, mode).await) });
        Ok(())
    }

    /// Whether chunks are being read.
    pub fn reading(&self) -> bool {
        !self.reading.is_empty()
    }

    /// Waits for the next chunk read and keeps it until the stream passes its read time; the
    /// range's next chunk is read meanwhile. `position`: the stream's, for the memory of
    /// changed keys. Cancel-safe. Pending forever when nothing is being read.
    pub async fn receive(&mut self, position: &StreamPosition) -> Result<()> {
        let Some(joined) = self.reading.join_next().await else {
            return std::future::pending().await;
        };
        let (range, read) = joined
            .map_err(|e| Error::plan(format!("a copy reader of {} failed: {e}", self.request)))?;
        let (chunk, mode) = read?;
        self.mode = mode;
        self.floors[range] = None;
        if let Some(last) = chunk.docs.last() {
            self.read_after[range] = last.get("_id").ok().flatten().map(RawBson::from);
        }
        let end = chunk.end;
        self.pending.push_back(Pending { range, chunk });
        if !end {
            self.read_next(range, position.latest())?;
        }
        Ok(())
    }

    /// Remembers that the stream changed the document `id` at `time`.
    pub fn changed(&mut self, id: &RawBson, time: Option<Timestamp>) {
        self.changed.changed(rawdoc! { "_id": id.clone() }.into_bytes(), time);
    }

    /// Merges the chunks the stream has passed, in the order they were read, while fewer than
    /// `room` rows were merged: hands `upsert` each row whose key the stream did not change
    /// after the chunk's read time, and moves the ranges' marks. Returns how many rows were
    /// merged.
    pub fn merge_ready(
        &mut self,
        position: &StreamPosition,
        room: usize,
        mut upsert: impl FnMut(RawBson, RawDocumentBuf),
    ) -> u64 {
        let mut merged = 0;
        while let Some(next) = self.pending.front() {
            if !position.passed(&next.chunk.at) || merged >= room as u64 {
                break;
            }
            let Some(Pending { range, chunk }) = self.pending.pop_front() else { break };
            let mark = &mut self.ranges[range];
            for doc in chunk.docs {
                let Some(id) = doc.get("_id").ok().flatten().map(RawBson::from) else { continue };
                mark.after = Some(id.clone());
                let key = rawdoc! { "_id": id.clone() }.into_bytes();
                if !self.changed.newer_than(&key, &chunk.at) {
                    upsert(id, doc);
                    merged += 1;
                }
            }
            mark.done |= chunk.end;
        }
        self.rows += merged;
        self.progress.set(self.rows);
        self.forget_old();
        merged
    }

    /// Forgets the changes no chunk still to merge was read before.
    fn forget_old(&mut self) {
        let pending = self.pending.iter().map(|p| floor_of(p.chunk.at.since));
        match pending.chain(self.floors.iter().flatten().copied()).min() {
            Some(floor) => self.changed.forget_until(floor),
            None => self.changed = ChangedKeys::default(),
        }
    }

    /// Whether every range is merged to its end.
    pub fn done(&self) -> bool {
        self.pending.is_empty() && self.ranges.iter().all(|mark| mark.done)
    }

    /// The ranges and their marks, for the checkpoint.
    pub fn ranges(&self) -> &[RangeMark] {
        &self.ranges
    }

    /// A re-copy's start: the table's last sequence number when it began.
    pub fn recopy_after(&self) -> Option<i64> {
        self.recopy_after
    }

    /// Rows copied, this run and before.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Changed keys remembered (for the status and the memory bound).
    pub fn remembered(&self) -> usize {
        self.changed.len()
    }

    /// Logs the end of the copy.
    pub fn finish(&self) {
        self.progress.finish(self.rows);
    }
}
