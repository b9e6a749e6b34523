//! Planning a sync: its `SELECT ... WHERE ...` over a collection becomes a DataFusion logical
//! plan, which is checked (plain projection of one collection, `_id` in the output) and compiled
//! once into physical expressions that every batch of documents runs through — snapshot and
//! stream alike, so they can never disagree with a preview.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use bson::Document;
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::DFSchema;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNode;
use datafusion::datasource::TableProvider;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use sha2::{Digest, Sha256};
use sqlparser::ast::{Ident, ObjectName, SelectItem};

use crate::mongo::provider::MongoTable;
use crate::sql::CreateSync;
use crate::{Error, Result};

/// A compiled sync: what to read from MongoDB and how each batch becomes target rows.
#[derive(Debug)]
pub struct SyncPlan {
    /// The DataFusion logical plan of the sync's SELECT (for EXPLAIN).
    pub logical_plan: LogicalPlan,
    /// The columns read from each document (the ones the SELECT and WHERE use, and `_id`).
    pub input_schema: SchemaRef,
    /// The rows written to the target.
    pub output_schema: SchemaRef,
    /// The output column holding the key (computed from `_id` alone).
    pub key: String,
    /// The part of the WHERE clause MongoDB can apply (a superset of the rows; the compiled
    /// filter decides).
    pub mongo_filter: Document,
    /// The MongoDB projection for the input columns (`None` = whole documents).
    pub mongo_projection: Option<Document>,
    /// A hash of what defines the target's contents (source, target, SELECT, WHERE, PARTITION BY).
    pub definition_hash: String,
    /// Whether the SELECT is `*` (or absent): the target's schema follows the documents, and
    /// the plan is made again over a grown input schema ([`Self::with_input_schema`]).
    pub evolving: bool,
    /// The collection as planned over, and its name in the plan.
    source: Arc<MongoTable>,
    source_name: TableReference,
    projection: Vec<Arc<dyn PhysicalExpr>>,
    filter: Option<Arc<dyn PhysicalExpr>>,
}

/// A row that failed the projection (a cast that does not fit, say).
#[derive(Debug, Clone)]
pub struct RowError {
    /// Index of the row in the input batch.
    pub row: usize,
    /// The output column whose expression failed.
    pub column: String,
    /// What failed.
    pub reason: String,
}

impl SyncPlan {
    /// Plans `create` in `ctx`, where its source must resolve to a MongoDB collection.
    pub async fn new(ctx: &SessionContext, create: &CreateSync) -> Result<Self> {
        let projection = create.projection_text.as_deref().unwrap_or("*");
        let mut sql = format!("SELECT {projection} FROM {}", create.source);
        if let Some(selection) = &create.selection {
            sql.push_str(&format!(" WHERE {selection}"));
        }
        let logical_plan = ctx.sql(&sql).await?.logical_plan().clone();
        let parts = split_plan(&logical_plan, &create.name.value)?;
        let provider = source_as_provider(&parts.scan.source)?;
        let table = provider.as_any().downcast_ref::<MongoTable>().ok_or_else(|| {
            Error::user(format!("the source of sync {} is not a MongoDB collection", create.name))
                .with_hint("FROM must name catalog.database.collection of an attached MongoDB")
        })?;
        let input_schema = input_schema(&TableProvider::schema(table), &parts)?;
        let df_schema =
            DFSchema::try_from_qualified_schema(parts.scan.table_name.clone(), &input_schema)?;
        let state = ctx.state();
        let projection = parts
            .exprs
            .iter()
            .map(|e| state.create_physical_expr(e.clone(), &df_schema))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let filter = parts
            .filter
            .as_ref()
            .map(|f| state.create_physical_expr(f.clone(), &df_schema))
            .transpose()?;
        let evolving = is_select_star(create);
        let (output_schema, key) = output_schema(&logical_plan, &parts, create, evolving)?;
        let pushed: Vec<Expr> = parts.filter.iter().cloned().collect();
        let input_indices: Vec<usize> = input_schema
            .fields()
            .iter()
            .map(|f| TableProvider::schema(table).index_of(f.name()))
            .collect::<std::result::Result<_, _>>()?;
        let request = table.find_request(Some(&input_indices), &pushed, None);
        let source_name = parts.scan.table_name.clone();
        Ok(Self {
            logical_plan,
            input_schema,
            output_schema,
            key,
            mongo_filter: request.filter,
            // An evolving sync reads whole documents, to see the fields that appear later.
            mongo_projection: if evolving { None } else { request.projection },
            definition_hash: definition_hash(create),
            evolving,
            source: Arc::new(table.with_schema(TableProvider::schema(table))),
            source_name,
            projection,
            filter,
        })
    }

    /// What the sample saw of each field of the collection.
    pub fn sample_reports(&self) -> &[crate::mongo::infer::FieldReport] {
        self.source.fields()
    }

    /// How many documents the sample had.
    pub fn sampled(&self) -> u64 {
        self.source.sampled()
    }

    /// The same sync planned over the collection with `schema` as its columns (a `SELECT *`
    /// sync whose documents gained fields, or whose table has columns the sample did not see).
    pub async fn with_input_schema(&self, create: &CreateSync, schema: SchemaRef) -> Result<Self> {
        let table = Arc::new(self.source.with_schema(schema));
        let name = &self.source_name;
        let ctx = SessionContext::new();
        let tables = Arc::new(MemorySchemaProvider::new());
        tables.register_table(name.table().to_string(), table)?;
        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog.register_schema(name.schema().unwrap_or("public"), tables)?;
        ctx.register_catalog(name.catalog().unwrap_or("datafusion"), catalog);
        let mut create = create.clone();
        create.source = ObjectName::from(
            [
                name.catalog().unwrap_or("datafusion"),
                name.schema().unwrap_or("public"),
                name.table(),
            ]
            .map(|part| Ident::with_quote('"', part))
            .to_vec(),
        );
        let mut plan = Self::new(&ctx, &create).await?;
        plan.definition_hash = self.definition_hash.clone();
        Ok(plan)
    }

    /// Runs the WHERE filter and the projection over one batch of converted documents (with
    /// [`Self::input_schema`]). Rows whose projection fails are left out and reported; the
    /// returned indices refer to `batch`.
    pub fn apply(&self, batch: &RecordBatch) -> Result<(RecordBatch, Vec<RowError>)> {
        let (kept, rows) = self.filter(batch)?;
        match self.project(&kept) {
            Ok(out) => Ok((out, vec![])),
            Err(_) => self.project_row_by_row(&kept, &rows),
        }
    }

    /// The key column of each row of `batch` (with [`Self::input_schema`]), computed by the
    /// same expression as the output's key; the WHERE filter is not applied. Used for deletes,
    /// where only `_id` is known.
    pub fn keys(&self, batch: &RecordBatch) -> Result<arrow::array::ArrayRef> {
        let index = self.output_schema.index_of(&self.key)?;
        Ok(self.projection[index].evaluate(batch)?.into_array(batch.num_rows())?)
    }

    /// The rows that pass the WHERE filter, with their indices in `batch`.
    fn filter(&self, batch: &RecordBatch) -> Result<(RecordBatch, Vec<usize>)> {
        let Some(filter) = &self.filter else {
            return Ok((batch.clone(), (0..batch.num_rows()).collect()));
        };
        let mask = filter.evaluate(batch)?.into_array(batch.num_rows())?;
        let mask = mask.as_boolean();
        let rows = (0..mask.len()).filter(|&i| mask.is_valid(i) && mask.value(i)).collect();
        Ok((filter_record_batch(batch, mask)?, rows))
    }

    fn project(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = self
            .projection
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let options =
            arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(self.output_schema.clone(), columns, &options)?)
    }

    /// The slow path after a failed batch: each row on its own, to name the rows that fail.
    fn project_row_by_row(
        &self,
        batch: &RecordBatch,
        rows: &[usize],
    ) -> Result<(RecordBatch, Vec<RowError>)> {
        let mut good = Vec::new();
        let mut errors = Vec::new();
        for (i, &row) in rows.iter().enumerate() {
            let one = batch.slice(i, 1);
            match self.project(&one) {
                Ok(out) => good.push(out),
                Err(_) => errors.push(self.row_error(&one, row)),
            }
        }
        let out = arrow::compute::concat_batches(&self.output_schema, &good)?;
        Ok((out, errors))
    }

    /// Which output column fails for a one-row batch, and why.
    fn row_error(&self, one: &RecordBatch, row: usize) -> RowError {
        for (expr, field) in self.projection.iter().zip(self.output_schema.fields()) {
            let result = expr.evaluate(one).and_then(|v| v.into_array(1));
            match result {
                Err(err) => {
                    return RowError {
                        row,
                        column: field.name().clone(),
                        reason: short(&err.to_string()),
                    };
                }
                Ok(array) if !field.is_nullable() && array.is_null(0) => {
                    return RowError {
                        row,
                        column: field.name().clone(),
                        reason: "is null".into(),
                    };
                }
                Ok(_) => {}
            }
        }
        RowError {
            row,
            column: String::new(),
            reason: "the row does not fit the output schema".into(),
        }
    }
}

/// DataFusion error text without its "Arrow error: " style prefixes.
fn short(message: &str) -> String {
    message.rsplit(": ").next().unwrap_or(message).to_string()
}

/// The pieces of a plain `SELECT exprs FROM collection [WHERE filter]`.
struct PlanParts<'a> {
    exprs: Vec<Expr>,
    filter: Option<Expr>,
    scan: &'a datafusion::logical_expr::TableScan,
}

/// Takes the plan apart; anything but projection, filter and one scan is an error.
fn split_plan<'a>(plan: &'a LogicalPlan, sync: &str) -> Result<PlanParts<'a>> {
    let not_plain = || {
        Error::user(format!(
            "the SELECT of sync {sync} may only compute columns from one collection's documents"
        ))
        .with_hint("no aggregates, joins, DISTINCT, ORDER BY, LIMIT or window functions in a sync")
    };
    let LogicalPlan::Projection(projection) = plan else { return Err(not_plain()) };
    let (filter, input) = match projection.input.as_ref() {
        LogicalPlan::Filter(filter) => (Some(filter.predicate.clone()), filter.input.as_ref()),
        other => (None, other),
    };
    let LogicalPlan::TableScan(scan) = input else { return Err(not_plain()) };
    if projection.expr.iter().chain(&filter).any(|e| !is_row_wise(e)) {
        return Err(not_plain());
    }
    Ok(PlanParts { exprs: projection.expr.clone(), filter, scan })
}

/// Whether `expr` computes its value from one row alone.
fn is_row_wise(expr: &Expr) -> bool {
    let mut row_wise = true;
    let _ = expr.apply(|e| {
        if matches!(
            e,
            Expr::AggregateFunction(_)
                | Expr::WindowFunction(_)
                | Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
        ) {
            row_wise = false;
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    row_wise
}

/// The columns the plan reads, in the table's order, `_id` always included.
fn input_schema(table: &SchemaRef, parts: &PlanParts<'_>) -> Result<SchemaRef> {
    let mut used: HashSet<String> = HashSet::from(["_id".to_string()]);
    for expr in parts.exprs.iter().chain(&parts.filter) {
        used.extend(expr.column_refs().into_iter().map(|c| c.name.clone()));
    }
    let fields: Vec<Arc<Field>> =
        table.fields().iter().filter(|f| used.contains(f.name())).cloned().collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// The output schema with the key column found and made non-nullable.
fn output_schema(
    plan: &LogicalPlan,
    parts: &PlanParts<'_>,
    create: &CreateSync,
    select_star: bool,
) -> Result<(SchemaRef, String)> {
    let (exprs, sync) = (&parts.exprs, &create.name.value);
    let arrow = plan.schema().as_arrow();
    let key = exprs
        .iter()
        .position(|e| {
            let refs = e.column_refs();
            refs.len() == 1 && refs.iter().all(|c| c.name == "_id")
        })
        .ok_or_else(|| {
            Error::user(format!("the SELECT of sync {sync} must include the key `_id`"))
                .with_hint("add _id (it may be cast or renamed: _id, _id::VARCHAR AS order_id)")
        })?;
    let mut fields = Vec::with_capacity(arrow.fields().len());
    for (i, field) in arrow.fields().iter().enumerate() {
        let name = field.name();
        // `SELECT *` columns are document fields by their own names; those that cannot name a
        // column are left out when the sync starts (`evolve::leave_out_untyped`).
        if !select_star && !is_simple_name(name) {
            // The item as the user wrote it, when the SELECT list maps one to one to columns.
            let items = create.projection.as_deref().filter(|i| i.len() == arrow.fields().len());
            return Err(unnamed(sync, items.map(|items| &items[i]), name));
        }
        let field = field.as_ref().clone();
        fields.push(if i == key { field.with_nullable(false) } else { field });
    }
    let key_name = arrow.field(key).name().clone();
    Ok((Arc::new(Schema::new(fields)), key_name))
}

/// The error for a column of sync `sync` that has no name of its own (`column`, DataFusion's
/// name for it): it points at `item`, as written, when known, and suggests a name.
fn unnamed(sync: &str, item: Option<&SelectItem>, column: &str) -> Error {
    let Some(item) = item else {
        return Error::user(format!("column `{column}` of sync {sync} needs a name"))
            .with_hint("add AS <name> after it");
    };
    let text = item.to_string();
    let message = format!("column `{text}` of sync {sync} needs a name");
    let hint = format!(
        "add AS {} after `{text}`: a table's column is named by one word",
        suggested_name(&text)
    );
    let start = sqlparser::ast::Spanned::span(item).start;
    match start.line {
        0 => Error::user(message).with_hint(hint),
        _ => Error::sql(message, crate::Location::new(start.line, start.column)).with_hint(hint),
    }
}

/// A column name made of `text` (an expression as written): `customer.name` → `customer_name`.
fn suggested_name(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    let words: Vec<&str> = mapped.split('_').filter(|w| !w.is_empty()).collect();
    if words.is_empty() { "column_name".to_string() } else { words.join("_") }
}

/// Whether the sync's SELECT is `*` alone (or there is no SELECT).
fn is_select_star(create: &CreateSync) -> bool {
    match create.projection.as_deref() {
        None => true,
        Some([SelectItem::Wildcard(options)]) => {
            options.opt_exclude.is_none()
                && options.opt_except.is_none()
                && options.opt_replace.is_none()
                && options.opt_rename.is_none()
                && options.opt_ilike.is_none()
        }
        Some(_) => false,
    }
}

/// A document field name that can name an Iceberg column: not empty and without dots (which
/// Iceberg's name lookups read as nesting).
pub fn is_column_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('.')
}

/// A name that can be an Iceberg column name as written.
fn is_simple_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['.', '[', '(', ')', ' ', '\''])
}

/// A hash of what defines the target table's contents: source, target, SELECT, WHERE and
/// PARTITION BY — not the WITH options, which can change without rebuilding the table.
pub fn definition_hash(create: &CreateSync) -> String {
    let mut hasher = Sha256::new();
    hasher.update(create.source.to_string());
    hasher.update("\0");
    hasher.update(create.target.to_string());
    hasher.update("\0");
    if let Some(projection) = &create.projection {
        let items: Vec<String> = projection.iter().map(|p| p.to_string()).collect();
        hasher.update(items.join(", "));
    }
    hasher.update("\0");
    if let Some(selection) = &create.selection {
        hasher.update(selection.to_string());
    }
    hasher.update("\0");
    let partition: Vec<String> = create.partition_by.iter().map(|p| p.to_string()).collect();
    hasher.update(partition.join(", "));
    let digest = hasher.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
