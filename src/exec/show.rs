//! SHOW DATABASES and SHOW COLLECTIONS.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use super::Output;
use crate::Result;
use crate::mongo::client::MongoSource;

/// The databases of a deployment, one per row.
pub async fn databases(source: &MongoSource) -> Result<Output> {
    names("database", source.database_names().await?)
}

/// The collections of a database, one per row.
pub async fn collections(source: &MongoSource, database: &str) -> Result<Output> {
    names("collection", source.collection_names(database).await?)
}

fn names(column: &str, values: Vec<String>) -> Result<Output> {
    let array: ArrayRef = Arc::new(StringArray::from(values));
    rows(RecordBatch::try_from_iter([(column, array)])?)
}

/// One batch as a statement's output.
pub fn rows(batch: RecordBatch) -> Result<Output> {
    let stream = futures::stream::iter([Ok(batch.clone())]);
    Ok(Output::Rows(Box::pin(RecordBatchStreamAdapter::new(batch.schema(), stream))))
}
