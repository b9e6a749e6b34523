//! The snapshot's cursors: one per `_id` range not copied yet, each in a task of its own that
//! reads its next server batch while earlier ones are converted, written and committed, so the
//! server's work overlaps misql's and the ranges are read concurrently. The batches of all
//! ranges meet in one bounded queue (about one batch per range in flight), so memory stays
//! bounded however far the server runs ahead.

use std::sync::Arc;

use bson::{Document, doc};
use futures::StreamExt;
use mongodb::raw_batch_cursor::RawBatch;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::mongo::client::MongoSource;
use crate::mongo::scan::FindRequest;
use crate::sync::checkpoint::RangeMark;
use crate::{Error, Result};

/// What a range's reader hands over.
pub enum Read {
    /// The range's next server batch, in `_id` order.
    Batch(RawBatch),
    /// The range is read to its end.
    End,
}

/// The running readers.
pub struct Readers {
    rx: mpsc::Receiver<(usize, Result<Read>)>,
    /// Aborted when dropped.
    _tasks: JoinSet<()>,
}

impl Readers {
    /// Starts a reader of `request` (its filter being the pushed-down WHERE) for each range of
    /// `ranges` not done, after its mark.
    pub fn spawn(source: Arc<MongoSource>, request: FindRequest, ranges: &[RangeMark]) -> Self {
        let (tx, rx) = mpsc::channel(ranges.len().max(1));
        let mut tasks = JoinSet::new();
        for (index, mark) in ranges.iter().enumerate().filter(|(_, mark)| !mark.done) {
            let range = range_filter(&request.filter, mark)
                .map(|filter| FindRequest { filter, ..request.clone() });
            tasks.spawn(read(source.clone(), range, index, tx.clone()));
        }
        Self { rx, _tasks: tasks }
    }

    /// The next batch or end of some range, with the range's index; `None` once every range
    /// has ended (or a reader failed and the error was taken). Cancel-safe.
    pub async fn next(&mut self) -> Option<(usize, Result<Read>)> {
        self.rx.recv().await
    }
}

/// The pushed-down WHERE and the range's `_id` bounds after its mark.
fn range_filter(pushed: &Document, mark: &RangeMark) -> Result<Document> {
    Ok(match mark.range.filter(mark.after.as_ref())? {
        None => pushed.clone(),
        Some(range) if pushed.is_empty() => range,
        Some(range) => doc! { "$and": [pushed.clone(), range] },
    })
}

/// Reads one range to its end, in `_id` order; stops at the first error, or when nobody
/// listens any more.
async fn read(
    source: Arc<MongoSource>,
    request: Result<FindRequest>,
    index: usize,
    tx: mpsc::Sender<(usize, Result<Read>)>,
) {
    let opened = match request {
        Ok(request) => {
            let cursor = request.cursor(&source, Some(doc! { "_id": 1 })).await;
            cursor.map(|cursor| (request.context(), cursor))
        }
        Err(err) => Err(err),
    };
    let (context, mut cursor) = match opened {
        Ok(opened) => opened,
        Err(err) => {
            let _ = tx.send((index, Err(err))).await;
            return;
        }
    };
    while let Some(batch) = cursor.next().await {
        let batch = batch.map_err(|e| Error::mongo(context.clone(), e));
        let failed = batch.is_err();
        if tx.send((index, batch.map(Read::Batch))).await.is_err() || failed {
            return;
        }
    }
    let _ = tx.send((index, Ok(Read::End))).await;
}
