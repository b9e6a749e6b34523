//! EXPLAIN SYNC: what a sync would read, plan and write, without running it.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};

use super::unknown_sync;
use crate::Result;
use crate::exec::show::rows;
use crate::exec::{Output, Session};
use crate::lake::schema::iceberg_schema;
use crate::sql::{CreateSync, ExplainSync};
use crate::sync::dead_letter;

impl Session {
    /// EXPLAIN of a database sync: the collections it would take now, and those it leaves out.
    async fn explain_database_sync(&self, create: &CreateSync) -> Result<Output> {
        let database = self.database_sync(create)?;
        let found = database.collections().await?;
        let (taken, excluded, elsewhere) = (found.taken, found.excluded, found.elsewhere);
        let pattern = create.collections.as_ref().map(|p| p.glob.as_str()).unwrap_or("*");
        let list = |names: &[String]| {
            if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
        };
        let tables: Vec<String> = taken.iter().map(|c| format!("{}.{c}", create.target)).collect();
        let sections = [
            ("sync", create.to_string()),
            ("collections", list(&taken)),
            ("excluded", list(&excluded)),
            ("synced_by_other_syncs", list(&elsewhere)),
            ("target_tables", list(&tables)),
            ("each_table", "SELECT * (the table follows its documents; on_type_change, on_error and dead letters apply per table)".to_string()),
            ("change_stream", format!("one for the database: {}.watch(), each event routed to its collection's table", database.database)),
            ("new_collections", format!("a collection created later whose name matches `{pattern}` is copied, then followed")),
        ];
        items(&sections)
    }

    /// EXPLAIN SYNC name / EXPLAIN CREATE SYNC ...
    pub(in crate::exec) async fn explain_sync(&self, explain: &ExplainSync) -> Result<Output> {
        let create = match explain {
            ExplainSync::Create(create) => create.as_ref().clone(),
            ExplainSync::Named(name) => self
                .syncs
                .get(&name.value)
                .map(|e| e.create.clone())
                .ok_or_else(|| unknown_sync(&name.value))?,
        };
        if create.collections.is_some() {
            return self.explain_database_sync(&create).await;
        }
        let sync = self.build_sync(&create).await?;
        if sync.plan().evolving {
            crate::sync::evolve::leave_out_untyped(&sync).await?;
        }
        let plan = sync.plan();
        let schema = iceberg_schema(&plan.output_schema, &plan.key)?;
        let partition: Vec<String> = create.partition_by.iter().map(|p| p.to_string()).collect();
        let mongo = format!(
            "find {}.{} filter={} projection={} sort={{\"_id\":1}}",
            sync.database,
            sync.collection,
            json(&plan.mongo_filter),
            plan.mongo_projection.as_ref().map_or("(all fields)".to_string(), json),
        );
        let fields: Vec<String> = schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| {
                let required = if f.required { " NOT NULL" } else { "" };
                let key = if f.name == plan.key { " (key)" } else { "" };
                format!("{}: {}{required}{key}", f.name, f.field_type)
            })
            .collect();
        let sections = [
            ("sync", create.to_string()),
            ("logical_plan", format!("{}", plan.logical_plan.display_indent())),
            ("mongodb_query", mongo),
            ("target_table", create.target.to_string()),
            ("target_schema", fields.join("\n")),
            (
                "partition_spec",
                if partition.is_empty() { "unpartitioned".into() } else { partition.join(", ") },
            ),
            ("dead_letters", dead_letter::table_ident(&sync.target).to_string()),
            ("schema_changes", schema_policy(&create, plan.evolving)),
            (
                "source_fields",
                crate::exec::describe::lines(plan.sample_reports(), plan.sampled()).join("\n"),
            ),
        ];
        items(&sections)
    }
}

/// An EXPLAIN's sections as rows of `item` and `value`.
fn items(sections: &[(&str, String)]) -> Result<Output> {
    let column = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
    rows(RecordBatch::try_from_iter([
        ("item", column(sections.iter().map(|(k, _)| k.to_string()).collect())),
        ("value", column(sections.iter().map(|(_, v)| v.clone()).collect())),
    ])?)
}

fn json(doc: &bson::Document) -> String {
    crate::mongo::scan::json(doc)
}

/// How the sync's target schema follows the documents, for EXPLAIN.
fn schema_policy(create: &CreateSync, evolving: bool) -> String {
    let options = &create.options;
    if evolving {
        format!(
            "SELECT *: new fields become optional columns (nested ones too), int widens to long \
             and decimals to more digits; a value of another type follows on_type_change = '{}'",
            options.on_type_change.name()
        )
    } else {
        format!(
            "fixed by the SELECT list; a value that does not cast follows on_error = '{}'",
            options.on_error.name()
        )
    }
}
