//! The reader of one `_id` range of a copy: chunk after chunk, each at a known cluster time, its
//! server batches handed to the follow loop in order, until the range ends. A reader waits when
//! the loop has enough rows waiting (the channel is bounded), so memory stays bounded however
//! far the server runs ahead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bson::{RawBson, doc};
use tokio::sync::mpsc;

use super::Piece;
use crate::Result;
use crate::mongo::chunk::{ChunkCursor, Next, ReadMode};
use crate::mongo::client::MongoSource;
use crate::mongo::scan::FindRequest;
use crate::sync::checkpoint::RangeMark;

/// One range's reader.
pub(super) struct RangeReader {
    pub(super) source: Arc<MongoSource>,
    /// The pushed-down WHERE and projection.
    pub(super) request: FindRequest,
    /// The range and its mark (where reading starts).
    pub(super) mark: RangeMark,
    pub(super) index: usize,
    /// The stream's position, published by the follow loop.
    pub(super) position: Arc<AtomicU64>,
    pub(super) tx: mpsc::Sender<Result<Piece>>,
}

impl RangeReader {
    /// Reads the range to its end; stops at the first error (handed over), or when nobody
    /// listens any more.
    pub(super) async fn run(mut self) {
        if let Err(err) = self.read().await {
            let _ = self.tx.send(Err(err)).await;
        }
    }

    async fn read(&mut self) -> Result<()> {
        let mut mode = ReadMode::Snapshot;
        loop {
            let floor = self.position.load(Ordering::Relaxed);
            let request = self.request_after()?;
            let (mut chunk, used) = ChunkCursor::open(self.source.clone(), &request, mode).await?;
            mode = used;
            loop {
                match chunk.next().await? {
                    Next::Rows(docs, at) => {
                        if let Some(last) = docs.last() {
                            self.mark.after = last.get("_id").ok().flatten().map(RawBson::from);
                        }
                        let piece =
                            Piece { range: self.index, docs, at: Some(at), floor, end: false };
                        if !self.send(piece).await {
                            return Ok(());
                        }
                    }
                    Next::Split => break,
                    Next::End => {
                        let end = Piece {
                            range: self.index,
                            docs: Vec::new(),
                            at: None,
                            floor,
                            end: true,
                        };
                        self.send(end).await;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The find of the range after the last `_id` read.
    fn request_after(&self) -> Result<FindRequest> {
        let pushed = &self.request.filter;
        let filter = match self.mark.range.filter(self.mark.after.as_ref())? {
            None => pushed.clone(),
            Some(bounds) if pushed.is_empty() => bounds,
            Some(bounds) => doc! { "$and": [pushed.clone(), bounds] },
        };
        Ok(FindRequest { filter, ..self.request.clone() })
    }

    /// Hands `piece` over; false when nobody listens any more.
    async fn send(&self, piece: Piece) -> bool {
        self.tx.send(Ok(piece)).await.is_ok()
    }
}
