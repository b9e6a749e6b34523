//! Reading an Iceberg table whose schema evolved, for SQL queries.
//!
//! iceberg-rust 0.10.1 cannot read a data file written before a struct column gained fields: it
//! casts the file's struct to the table's by position, which fails
//! (apache/iceberg-rust#2617, open upstream), and it cannot fill a column added later whose type
//! nests lists or structs in structs. `SELECT *` syncs do both. So each data file is read with
//! the table's schema narrowed to the fields the file has (its Parquet field ids), and the
//! batches are widened to the table's schema by name (the writer's [`Conformer`]), with nulls
//! for what the file lacks.
//! Deletes, type promotions (int → long) and the file pruning by filters stay the library's.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::{StreamExt, TryStreamExt, stream};
use iceberg::expr::Predicate;
use iceberg::scan::FileScanTask;
use iceberg::spec::{NestedField, NestedFieldRef, Schema, StructType, Type};
use iceberg::table::Table;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use parquet::schema::types::Type as ParquetType;

use crate::lake::conform::Conformer;

/// Data files opened (footer read) and read at the same time; rows come in no particular order.
const FILES_AT_ONCE: usize = 4;

/// An Iceberg table with more than one schema in its history, as a DataFusion table.
#[derive(Debug)]
pub struct EvolvedTable {
    table: Table,
    schema: SchemaRef,
    snapshot_id: Option<i64>,
}

impl EvolvedTable {
    /// The table at snapshot `snapshot_id` (its current one when `None`), with that snapshot's
    /// schema (a schema committed after the last snapshot, which no data uses yet, is not the
    /// scan's: iceberg-rust scans a snapshot with the schema it was written with).
    pub fn try_new(table: Table, snapshot_id: Option<i64>) -> iceberg::Result<Self> {
        let metadata = table.metadata();
        let snapshot = match snapshot_id {
            Some(id) => Some(metadata.snapshot_by_id(id).ok_or_else(|| {
                iceberg::Error::new(
                    iceberg::ErrorKind::DataInvalid,
                    format!("the table has no snapshot {id}"),
                )
            })?),
            None => metadata.current_snapshot(),
        };
        let schema = match snapshot {
            Some(snapshot) => snapshot.schema(metadata)?,
            None => metadata.current_schema().clone(),
        };
        let schema = iceberg::arrow::schema_to_arrow_schema(&schema)?;
        Ok(Self { table, schema: Arc::new(schema), snapshot_id })
    }
}

#[async_trait]
impl TableProvider for EvolvedTable {
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
        // The filters prune files only; DataFusion applies them to the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
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
        let partition = Arc::new(Files {
            table: self.table.clone(),
            schema: schema.clone(),
            predicate: convert_filters_to_predicate(filters),
            snapshot_id: self.snapshot_id,
        });
        let exec = StreamingTableExec::try_new(schema, vec![partition], None, [], false, limit)?;
        Ok(Arc::new(exec))
    }
}

/// The data files of the scan, up to [`FILES_AT_ONCE`] at a time.
#[derive(Debug)]
struct Files {
    table: Table,
    /// The projected columns.
    schema: SchemaRef,
    predicate: Option<Predicate>,
    snapshot_id: Option<i64>,
}

impl PartitionStream for Files {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (table, schema, predicate) =
            (self.table.clone(), self.schema.clone(), self.predicate.clone());
        let snapshot_id = self.snapshot_id;
        let target = schema.clone();
        let batches = stream::once(async move {
            let columns: Vec<String> = target.fields().iter().map(|f| f.name().clone()).collect();
            let mut scan = table.scan().select(columns);
            if let Some(id) = snapshot_id {
                scan = scan.snapshot_id(id);
            }
            if let Some(predicate) = predicate {
                scan = scan.with_filter(predicate);
            }
            let tasks = scan.build()?.plan_files().await?;
            let files = tasks
                .map_ok(move |task| {
                    let (table, target) = (table.clone(), target.clone());
                    async move { read_file(&table, task, target).await }
                })
                .try_buffer_unordered(FILES_AT_ONCE);
            Ok::<_, iceberg::Error>(files.try_flatten_unordered(FILES_AT_ONCE))
        })
        .try_flatten()
        .map_err(|e| DataFusionError::External(Box::new(e)));
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }
}

/// The rows of one data file, with the scan's columns.
async fn read_file(
    table: &Table,
    mut task: FileScanTask,
    target: SchemaRef,
) -> iceberg::Result<impl futures::Stream<Item = iceberg::Result<RecordBatch>> + use<>> {
    let ids = field_ids(table, &task).await?;
    if !ids.is_empty() {
        task.project_field_ids.retain(|id| ids.contains(id));
        task.schema = Arc::new(narrow(&task.schema, &ids)?);
        // The predicate is bound to the table's schema; DataFusion filters the rows anyway.
        task.predicate = None;
    }
    let reader = table.reader_builder().build();
    let batches = reader.read(Box::pin(stream::iter([Ok(task)])))?.stream();
    // The writer's conformer widens by name too: missing columns and struct fields are nulls.
    let name = table.identifier().to_string();
    let conformer = Conformer::new(target, name, None);
    Ok(batches.map(move |batch| {
        conformer.conform(&batch?).map_err(|e| {
            iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.user_facing().to_string())
        })
    }))
}

/// Every field id in the Parquet schema of the task's file (empty if the file has none).
async fn field_ids(table: &Table, task: &FileScanTask) -> iceberg::Result<HashSet<i32>> {
    let input = table.file_io().new_input(&task.data_file_path)?;
    let reader = input.reader().await?;
    let size = task.file_size_in_bytes;
    let footer = reader.read(size.saturating_sub(8)..size).await?;
    let unreadable = |what: &str| {
        iceberg::Error::new(
            iceberg::ErrorKind::DataInvalid,
            format!("{what} in the Parquet footer of {}", task.data_file_path),
        )
    };
    let length = FooterTail::try_from(footer.as_ref())
        .map_err(|e| unreadable(&e.to_string()))?
        .metadata_length() as u64;
    let start = size.saturating_sub(8 + length);
    let bytes = reader.read(start..size - 8).await?;
    let metadata =
        ParquetMetaDataReader::decode_metadata(&bytes).map_err(|e| unreadable(&e.to_string()))?;
    let mut ids = HashSet::new();
    collect_ids(metadata.file_metadata().schema(), &mut ids);
    Ok(ids)
}

fn collect_ids(node: &ParquetType, ids: &mut HashSet<i32>) {
    let info = node.get_basic_info();
    if info.has_id() {
        ids.insert(info.id());
    }
    if node.is_group() {
        for child in node.get_fields() {
            collect_ids(child, ids);
        }
    }
}

/// `schema` with only the fields (top-level and nested) whose ids are in `ids`.
fn narrow(schema: &Schema, ids: &HashSet<i32>) -> iceberg::Result<Schema> {
    let fields = narrow_fields(schema.as_struct().fields(), ids);
    Schema::builder()
        .with_schema_id(schema.schema_id())
        .with_fields(fields)
        .with_identifier_field_ids(
            schema.identifier_field_ids().filter(|id| ids.contains(id)).collect::<Vec<_>>(),
        )
        .build()
}

fn narrow_fields(fields: &[NestedFieldRef], ids: &HashSet<i32>) -> Vec<NestedFieldRef> {
    fields
        .iter()
        .filter(|f| ids.contains(&f.id))
        .map(|f| {
            let narrowed = match f.field_type.as_ref() {
                Type::Struct(s) => Type::Struct(StructType::new(narrow_fields(s.fields(), ids))),
                Type::List(list) => {
                    let element = narrow_fields(std::slice::from_ref(&list.element_field), ids);
                    match element.into_iter().next() {
                        Some(element) => Type::List(iceberg::spec::ListType::new(element)),
                        None => f.field_type.as_ref().clone(),
                    }
                }
                other => other.clone(),
            };
            let mut field: NestedField = f.as_ref().clone();
            field.field_type = Box::new(narrowed);
            Arc::new(field)
        })
        .collect()
}
