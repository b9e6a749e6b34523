//! A collection as a DataFusion table: the schema inferred by sampling, and scans with
//! projection, filter and limit pushed into the MongoDB query.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bson::{Document, doc};
use datafusion::catalog::Session;
use datafusion::common::Result as DfResult;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::client::MongoSource;
use super::filter::{ColumnKind, FilterTranslator, is_plain_field_name};
use super::infer::{BsonKind, FieldReport, Inference};
use super::scan::{FindRequest, MongoScanExec};
use crate::Result;

/// One MongoDB collection, with the schema inferred when it was opened.
#[derive(Debug)]
pub struct MongoTable {
    source: Arc<MongoSource>,
    database: String,
    collection: String,
    schema: SchemaRef,
    fields: Vec<FieldReport>,
    sampled: u64,
    filters: FilterTranslator,
}

impl MongoTable {
    /// Samples the collection and builds the table; `None` when the collection does not exist.
    pub async fn open(
        source: Arc<MongoSource>,
        database: &str,
        collection: &str,
        sample_size: usize,
    ) -> Result<Option<Self>> {
        let Some(inference) = source.infer(database, collection, sample_size).await? else {
            return Ok(None);
        };
        Ok(Some(Self::from_inference(source, database, collection, &inference)))
    }

    /// A table over `database.collection` with the given inference.
    pub fn from_inference(
        source: Arc<MongoSource>,
        database: &str,
        collection: &str,
        inference: &Inference,
    ) -> Self {
        let fields = inference.fields();
        let schema = inference.schema();
        let filters = FilterTranslator::new(column_kinds(&schema, &fields));
        Self {
            source,
            database: database.to_string(),
            collection: collection.to_string(),
            schema,
            fields,
            sampled: inference.sampled(),
            filters,
        }
    }

    /// The same collection with `schema` as its columns (the sample's statistics stay; filters
    /// on columns the sample did not see are not pushed down).
    pub fn with_schema(&self, schema: SchemaRef) -> Self {
        Self {
            source: self.source.clone(),
            database: self.database.clone(),
            collection: self.collection.clone(),
            filters: FilterTranslator::new(column_kinds(&schema, &self.fields)),
            schema,
            fields: self.fields.clone(),
            sampled: self.sampled,
        }
    }

    /// Per-field statistics of the sample (nested fields included).
    pub fn fields(&self) -> &[FieldReport] {
        &self.fields
    }

    /// Number of documents sampled.
    pub fn sampled(&self) -> u64 {
        self.sampled
    }

    /// The MongoDB request for a scan with these pushed-down parts.
    pub fn find_request(
        &self,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> FindRequest {
        FindRequest {
            database: self.database.clone(),
            collection: self.collection.clone(),
            filter: self.filters.conjunction(filters).unwrap_or_default(),
            projection: projection.and_then(|p| self.projection_document(p)),
            limit: limit.map(|l| l as u64),
        }
    }

    /// `{field: 1, ...}` for the projected columns, or `None` to fetch whole documents (when a
    /// name cannot be used in a MongoDB projection). `_id` always comes along (MongoDB's
    /// default), so that a value that does not convert is reported with its document's `_id`.
    fn projection_document(&self, projection: &[usize]) -> Option<Document> {
        let names: Vec<&str> =
            projection.iter().map(|&i| self.schema.field(i).name().as_str()).collect();
        if names.iter().any(|n| !is_plain_field_name(n)) {
            return None;
        }
        if names.is_empty() {
            return Some(doc! { "_id": 1 });
        }
        Some(names.iter().map(|n| (n.to_string(), 1.into())).collect())
    }
}

/// The comparable kind of each top-level column, from the kinds seen in the sample.
fn column_kinds(schema: &SchemaRef, fields: &[FieldReport]) -> HashMap<String, ColumnKind> {
    schema
        .fields()
        .iter()
        .filter_map(|column| fields.iter().find(|f| &f.path == column.name()))
        .map(|f| (f.path.clone(), column_kind(f)))
        .collect()
}

fn column_kind(field: &FieldReport) -> ColumnKind {
    let kinds: Vec<BsonKind> =
        field.types_seen.iter().map(|(k, _)| *k).filter(|k| *k != BsonKind::Null).collect();
    let numeric = |k: &BsonKind| {
        matches!(k, BsonKind::Int32 | BsonKind::Int64 | BsonKind::Double | BsonKind::Decimal128)
    };
    match kinds.as_slice() {
        [BsonKind::String] => ColumnKind::String,
        [BsonKind::ObjectId] => ColumnKind::ObjectId,
        [BsonKind::Boolean] => ColumnKind::Boolean,
        [BsonKind::DateTime] => ColumnKind::Date,
        ks if !ks.is_empty() && ks.iter().all(numeric) => ColumnKind::Number,
        _ => ColumnKind::Other,
    }
}

#[async_trait]
impl TableProvider for MongoTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.filters.can_push(f) {
                true => TableProviderFilterPushDown::Inexact,
                false => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let request = self.find_request(projection, filters, limit);
        let id_field = Arc::new(self.schema.field(0).clone());
        Ok(Arc::new(
            MongoScanExec::new(self.source.clone(), request, schema).with_id_field(id_field),
        ))
    }
}
