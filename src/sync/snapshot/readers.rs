//! The snapshot's cursors: one per `_id` range not copied yet, each in a task of its own that
//! reads its next server batch while earlier ones are converted, written and committed, so the
//! server's work overlaps misql's and the ranges are read concurrently. The batches of all
//! ranges meet in one bounded queue (about one batch per range in flight), so memory stays
//! bounded however far the server runs ahead.

use std::sync::Arc;

use bson::{Document, RawDocumentBuf, doc};
use futures::StreamExt;
use mongodb::options::FindOptions;
use mongodb::raw_batch_cursor::RawBatch;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::mongo::client::MongoSource;
use crate::sync::checkpoint::RangeMark;
use crate::{Error, Result};

/// What a range's reader hands over.
pub enum Read {
    /// The range's next server batch, in `_id` order.
    Batch(RawBatch),
    /// The range is read to its end.
    End,
}

/// The collection and query every range reads.
pub struct Query {
    /// The deployment.
    pub source: Arc<MongoSource>,
    /// Database name.
    pub database: String,
    /// Collection name.
    pub collection: String,
    /// The pushed-down WHERE.
    pub filter: Document,
    /// The pushed-down projection.
    pub projection: Option<Document>,
}

/// The running readers.
pub struct Readers {
    rx: mpsc::Receiver<(usize, Result<Read>)>,
    /// Aborted when dropped.
    _tasks: JoinSet<()>,
}

impl Readers {
    /// Starts a reader for each range of `ranges` not done, after its mark.
    pub fn spawn(query: Query, ranges: &[RangeMark]) -> Self {
        let query = Arc::new(query);
        let (tx, rx) = mpsc::channel(ranges.len().max(1));
        let mut tasks = JoinSet::new();
        for (index, mark) in ranges.iter().enumerate().filter(|(_, mark)| !mark.done) {
            tasks.spawn(read(query.clone(), range_filter(&query.filter, mark), index, tx.clone()));
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
    query: Arc<Query>,
    filter: Result<Document>,
    index: usize,
    tx: mpsc::Sender<(usize, Result<Read>)>,
) {
    let context = format!("reading {}.{}", query.database, query.collection);
    let opened = async {
        let filter = filter?;
        let client = query.source.client().await?;
        let coll = client.database(&query.database).collection::<RawDocumentBuf>(&query.collection);
        let options = FindOptions::builder()
            .sort(doc! { "_id": 1 })
            .projection(query.projection.clone())
            .build();
        coll.find(filter)
            .with_options(options)
            .batch()
            .await
            .map_err(|e| query.source.unreachable(&context, e))
    };
    let mut cursor = match opened.await {
        Ok(cursor) => cursor,
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
