//! Naming the document behind a failed expression. A cast or function that fails on one value
//! (`total::DECIMAL(5,2)` of 12345.678) makes DataFusion fail the whole batch with a message
//! about the value alone. For a plain query over a collection, each projection over a MongoDB
//! scan is run by [`BlameExec`] instead, which evaluates the same expressions and, when a batch
//! fails, finds the first failing row and reports it as [`Error::Convert`]: the document's
//! `_id`, the field the expression reads, and DataFusion's reason. The happy path costs nothing
//! but the `_id` column, which a scan whose output lacks it reads as an extra last column.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::projection::Projector;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use crate::Error;
use crate::mongo::bson_arrow::{ENCODING_KEY, EXTJSON};
use crate::mongo::ext_json;
use crate::mongo::scan::MongoScanExec;

/// Replaces each projection that reads (through any operators) from a MongoDB scan by a
/// [`BlameExec`]; a scan right below one that lacks `_id` gets it as an extra last column.
pub fn wrap(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    let wrapped = plan.transform_up(|node| {
        let Some(projection) = node.as_any().downcast_ref::<ProjectionExec>() else {
            return Ok(Transformed::no(node));
        };
        if !reads_mongo(projection.input()) {
            return Ok(Transformed::no(node));
        }
        let input = match with_id_below(projection.input()) {
            Some((input, _)) => input,
            None => projection.input().clone(),
        };
        let projector =
            projection.projection_expr().make_projector(&projection.input().schema())?;
        Ok(Transformed::yes(Arc::new(BlameExec {
            projection: Arc::new(projection.clone()),
            projector: Arc::new(projector),
            input,
        }) as Arc<dyn ExecutionPlan>))
    })?;
    Ok(wrapped.data)
}

/// `plan`, or the same plan changed to carry `_id` as an extra last column, with the position
/// of `_id` in its output: for a MongoDB scan, and for nodes that pass their input's columns
/// through (repartitioning, filters) down to one. `None` when `_id` cannot be had.
fn with_id_below(plan: &Arc<dyn ExecutionPlan>) -> Option<(Arc<dyn ExecutionPlan>, usize)> {
    if let Some(scan) = plan.as_any().downcast_ref::<MongoScanExec>() {
        if let Ok(i) = scan.schema().index_of("_id") {
            return Some((plan.clone(), i));
        }
        let scan = scan.with_id()?;
        let last = scan.schema().fields().len() - 1;
        return Some((Arc::new(scan), last));
    }
    if let Some(filter) = plan.as_any().downcast_ref::<FilterExec>()
        && let Some(projection) = filter.projection()
    {
        // A filter that also drops columns: keep `_id` in its projection.
        let (child, id) = with_id_below(filter.input())?;
        if let Some(at) = projection.iter().position(|&i| i == id)
            && Arc::ptr_eq(&child, filter.input())
        {
            return Some((plan.clone(), at));
        }
        let mut indices = projection.to_vec();
        indices.push(id);
        let widened = FilterExecBuilder::new(filter.predicate().clone(), child)
            .with_default_selectivity(filter.default_selectivity())
            .with_batch_size(filter.batch_size())
            .with_fetch(filter.fetch())
            .apply_projection(Some(indices.clone()))
            .and_then(FilterExecBuilder::build)
            .ok()?;
        return Some((Arc::new(widened), indices.len() - 1));
    }
    let [child] = plan.children()[..] else { return None };
    if plan.schema().fields() != child.schema().fields() {
        return None;
    }
    let (widened_child, id) = with_id_below(child)?;
    if Arc::ptr_eq(&widened_child, child) {
        return Some((plan.clone(), id));
    }
    let widened = plan.clone().with_new_children(vec![widened_child.clone()]).ok()?;
    // Only if the node passed the new column through.
    (widened.schema().fields() == widened_child.schema().fields()).then_some((widened, id))
}

/// Whether `plan` or a node below it scans MongoDB.
fn reads_mongo(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.as_any().is::<MongoScanExec>() || plan.children().into_iter().any(reads_mongo)
}

/// A projection that names the document when an expression fails on one of its values.
#[derive(Debug)]
pub struct BlameExec {
    /// The projection it stands for: its schema, properties and display.
    projection: Arc<ProjectionExec>,
    /// The projection's expressions, over the projection's original input schema.
    projector: Arc<Projector>,
    /// The input: the projection's, or its scan with `_id` appended.
    input: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for BlameExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        self.projection.fmt_as(t, f)
    }
}

impl ExecutionPlan for BlameExec {
    fn name(&self) -> &str {
        "BlameExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.projection.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("BlameExec needs one child".to_string()))?;
        Ok(Arc::new(BlameExec {
            projection: self.projection.clone(),
            projector: self.projector.clone(),
            input,
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema: SchemaRef = self.projection.schema();
        let projector = self.projector.clone();
        let projection = self.projection.clone();
        let input = self.input.execute(partition, context)?;
        let output = input.map(move |batch| {
            let batch = batch?;
            projector.project_batch(&batch).map_err(|err| blame(&projection, &batch, err))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, output)))
    }
}

/// The first row of `batch` on which an expression of `projection` fails, as an error naming
/// its `_id` and field; `err` itself if no single row fails.
fn blame(
    projection: &ProjectionExec,
    batch: &RecordBatch,
    err: DataFusionError,
) -> DataFusionError {
    for item in projection.expr() {
        if evaluate(item, batch).is_ok() {
            continue;
        }
        for row in 0..batch.num_rows() {
            let Err(reason) = evaluate(item, &batch.slice(row, 1)) else { continue };
            let columns = collect_columns(&item.expr);
            let field = match columns.iter().next() {
                Some(column) if columns.len() == 1 => column.name().to_string(),
                _ => item.alias.clone(),
            };
            let schema = batch.schema();
            let id = match schema.index_of("_id") {
                Ok(i)
                    if schema
                        .field(i)
                        .metadata()
                        .get(ENCODING_KEY)
                        .is_some_and(|e| e == EXTJSON) =>
                {
                    id_text(batch.column(i), row, false)
                }
                Ok(i) => id_text(batch.column(i), row, true),
                Err(_) => "<not read>".to_string(),
            };
            let expr = without_positions(&item.expr.to_string());
            let reason = format!("{} (in {expr})", short(&reason.to_string()));
            return DataFusionError::External(Box::new(Error::Convert { id, field, reason }));
        }
    }
    err
}

fn evaluate(
    item: &datafusion::physical_expr::projection::ProjectionExpr,
    batch: &RecordBatch,
) -> DfResult<ArrayRef> {
    item.expr.evaluate(batch)?.into_array(batch.num_rows())
}

/// An `_id` value as the converter shows one: strings quoted (unless `quote` is false: the text
/// is Extended JSON already), other values as Arrow prints them.
fn id_text(column: &ArrayRef, row: usize, quote: bool) -> String {
    if column.is_null(row) {
        return "null".to_string();
    }
    if let (true, Some(strings)) =
        (quote, column.as_any().downcast_ref::<arrow::array::StringArray>())
    {
        let mut out = Vec::new();
        ext_json::write_string(&mut out, strings.value(row));
        return String::from_utf8_lossy(&out).into_owned();
    }
    let options = FormatOptions::default();
    match ArrayFormatter::try_new(column.as_ref(), &options) {
        Ok(formatter) => formatter.value(row).to_string(),
        Err(_) => "<unprintable>".to_string(),
    }
}

/// A physical expression's text without the column positions: `CAST(d AS Decimal128(5, 2))`
/// for `CAST(d@0 AS Decimal128(5, 2))`.
fn without_positions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '@' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// DataFusion error text without its "Arrow error: Invalid argument error: " style prefixes.
fn short(message: &str) -> &str {
    let mut rest = message;
    for prefix in ["Arrow error: ", "Invalid argument error: ", "Cast error: ", "Compute error: "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    rest
}
