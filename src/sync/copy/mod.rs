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

mod reader;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bson::{RawBson, RawDocumentBuf, Timestamp, rawdoc};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::SyncTask;
use super::checkpoint::RangeMark;
use super::progress::Progress;
use crate::Result;
use crate::mongo::chunk::ReadAt;
use crate::mongo::id_range;
use crate::mongo::scan::FindRequest;
use merge::{ChangedKeys, StreamPosition, floor_of};
use reader::RangeReader;

/// Server batches waiting to be merged, per range, before the readers wait.
const PENDING_PER_RANGE: usize = 2;

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

/// Rows of one range, read at one time, waiting for the stream to pass it.
struct Piece {
    range: usize,
    docs: Vec<RawDocumentBuf>,
    /// When they were read (`None` for the end of the range).
    at: Option<ReadAt>,
    /// The stream's position when their chunk was opened: every later read of the range is
    /// at or after it.
    floor: u64,
    /// The range ends after these rows.
    end: bool,
}

/// A copy in progress.
pub struct Copy {
    /// How far each range is merged (what the checkpoint says).
    ranges: Vec<RangeMark>,
    pieces: mpsc::Receiver<Result<Piece>>,
    /// Aborted when dropped.
    _readers: JoinSet<()>,
    pending: VecDeque<Piece>,
    /// Per range: the floor of the latest piece received.
    floors: Vec<u64>,
    /// The stream's position, for the readers.
    position: Arc<AtomicU64>,
    changed: ChangedKeys,
    recopy_after: Option<i64>,
    rows: u64,
    progress: Progress,
}

impl Copy {
    /// Starts reading the ranges of `start` (splitting the collection first when it has none).
    pub async fn start(sync: &SyncTask, start: CopyStart) -> Result<Self> {
        let client = sync.source.client().await?;
        let coll = client.database(&sync.database).collection::<RawDocumentBuf>(&sync.collection);
        let total = coll.estimated_document_count().await.unwrap_or(0);
        sync.status(|s| {
            s.snapshot_rows_estimated = total;
            s.rows_copied = start.rows;
        });
        let plan = sync.plan();
        let ranges: Vec<RangeMark> = if start.ranges.is_empty() {
            let parallelism = sync.create.options.snapshot_parallelism;
            let split = id_range::split(&coll, &plan.mongo_filter, total, parallelism).await;
            tracing::debug!(sync = %sync.name, ranges = split.len(), "copy ranges");
            split.into_iter().map(RangeMark::new).collect()
        } else {
            start.ranges
        };
        let request = FindRequest {
            database: sync.database.clone(),
            collection: sync.collection.clone(),
            filter: plan.mongo_filter.clone(),
            projection: plan.mongo_projection.clone(),
            limit: None,
        };
        let position = Arc::new(AtomicU64::new(0));
        let (tx, pieces) = mpsc::channel(ranges.len().max(1));
        let mut readers = JoinSet::new();
        for (index, mark) in ranges.iter().enumerate().filter(|(_, mark)| !mark.done) {
            let reader = RangeReader {
                source: sync.source.clone(),
                request: request.clone(),
                mark: mark.clone(),
                index,
                position: position.clone(),
                tx: tx.clone(),
            };
            readers.spawn(reader.run());
        }
        Ok(Self {
            floors: vec![0; ranges.len()],
            ranges,
            pieces,
            _readers: readers,
            pending: VecDeque::new(),
            position,
            changed: ChangedKeys::default(),
            recopy_after: start.recopy_after,
            progress: Progress::new(&sync.name, total, start.rows),
            rows: start.rows,
        })
    }

    /// Whether the copy takes more rows now (ranges are still read, and few rows wait).
    pub fn reading(&self) -> bool {
        self.pending.len() < PENDING_PER_RANGE * self.ranges.len()
            && !self.ranges.iter().all(|mark| mark.done)
    }

    /// Waits for the next rows read and keeps them until the stream passes their read time.
    /// Cancel-safe. Pending forever once every range is read.
    pub async fn receive(&mut self) -> Result<()> {
        let Some(piece) = self.pieces.recv().await else {
            return std::future::pending().await;
        };
        let piece = piece?;
        self.floors[piece.range] = self.floors[piece.range].max(piece.floor);
        self.pending.push_back(piece);
        Ok(())
    }

    /// Remembers that the stream changed the document `id` at `time`.
    pub fn changed(&mut self, id: &RawBson, time: Option<Timestamp>) {
        self.changed.changed(rawdoc! { "_id": id.clone() }.into_bytes(), time);
    }

    /// Merges the rows the stream has passed, in the order they were read, while fewer than
    /// `room` rows were merged: hands `upsert` each row whose key the stream did not change
    /// after the rows' read time, and moves the ranges' marks. Returns how many rows were
    /// merged.
    pub fn merge_ready(
        &mut self,
        position: &StreamPosition,
        room: usize,
        mut upsert: impl FnMut(RawBson, RawDocumentBuf),
    ) -> u64 {
        if let Some(latest) = position.latest() {
            self.position.fetch_max(latest, Ordering::Relaxed);
        }
        let mut merged = 0;
        while let Some(next) = self.pending.front() {
            let passed = next.at.is_none_or(|at| position.passed(&at));
            if !passed || merged >= room as u64 {
                break;
            }
            let Some(piece) = self.pending.pop_front() else { break };
            let mark = &mut self.ranges[piece.range];
            for doc in piece.docs {
                let Some(id) = doc.get("_id").ok().flatten().map(RawBson::from) else { continue };
                mark.after = Some(id.clone());
                let key = rawdoc! { "_id": id.clone() }.into_bytes();
                if piece.at.is_none_or(|at| !self.changed.newer_than(&key, &at)) {
                    upsert(id, doc);
                    merged += 1;
                }
            }
            mark.done |= piece.end;
        }
        self.rows += merged;
        self.progress.set(self.rows);
        self.forget_old();
        merged
    }

    /// Forgets the changes no rows still to merge (or still to read) were read before.
    fn forget_old(&mut self) {
        let pending = self.pending.iter().filter_map(|p| p.at.map(|at| floor_of(at.since)));
        let reading =
            self.floors.iter().zip(&self.ranges).filter(|(_, m)| !m.done).map(|(f, _)| *f);
        match pending.chain(reading).min() {
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
