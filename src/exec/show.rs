//! SHOW DATABASES and SHOW COLLECTIONS.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use iceberg::NamespaceIdent;

use super::Output;
use crate::catalog::iceberg::LazyIceberg;
use crate::mongo::client::MongoSource;
use crate::{Error, Result};

/// The databases of a deployment, one per row.
pub async fn databases(source: &MongoSource) -> Result<Output> {
    names("database", source.database_names().await?)
}

/// The collections of a database, one per row.
pub async fn collections(source: &MongoSource, database: &str) -> Result<Output> {
    names("collection", source.collection_names(database).await?)
}

/// The tables of an Iceberg catalog (of one namespace, or of every top-level namespace).
pub async fn tables(catalog: &LazyIceberg, namespace: Option<String>) -> Result<Output> {
    let catalog = &catalog.get().await?.catalog;
    let namespaces = match namespace {
        Some(ns) => vec![NamespaceIdent::new(ns)],
        None => catalog
            .list_namespaces(None)
            .await
            .map_err(|e| Error::iceberg("listing namespaces", e))?,
    };
    let (mut spaces, mut names) = (Vec::new(), Vec::new());
    for ns in namespaces {
        let mut tables = catalog
            .list_tables(&ns)
            .await
            .map_err(|e| Error::iceberg(format!("listing the tables of {}", ns.join(".")), e))?;
        tables.sort_by(|a, b| a.name().cmp(b.name()));
        for table in tables {
            spaces.push(ns.join("."));
            names.push(table.name().to_string());
        }
    }
    let spaces: ArrayRef = Arc::new(StringArray::from(spaces));
    let names: ArrayRef = Arc::new(StringArray::from(names));
    rows(RecordBatch::try_from_iter([("namespace", spaces), ("table", names)])?)
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
