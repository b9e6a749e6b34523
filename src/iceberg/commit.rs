//! Committing written files to a table in one snapshot whose summary carries the sync
//! checkpoint, reading the checkpoint back, and creating a sync's target table.

use std::collections::HashMap;

use ::iceberg::spec::{DataFile, Schema, SnapshotRef, Transform, UnboundPartitionSpec};
use ::iceberg::table::Table;
use ::iceberg::transaction::{ApplyTransactionAction, Transaction};
use ::iceberg::{Catalog, TableCreation, TableIdent};

use super::schema::type_name;
use crate::{Error, Result};

/// Appends `files` to `table` in one snapshot whose summary also holds `properties` (keys like
/// `misql.checkpoint`), and returns the reloaded table.
///
/// A commit with no files but properties is allowed: it adds a checkpoint-only snapshot. A
/// commit with neither is a no-op that returns the table reloaded. Conflicts with concurrent
/// writers are retried by iceberg's `Transaction::commit` (on a fresh base, per the table's
/// `commit.retry.*` properties). After committing, the table is reloaded and the new snapshot
/// must be on its main branch: the SQL catalog can report success for a COMMIT that SQLite
/// refused.
pub async fn append(
    catalog: &dyn Catalog,
    table: &Table,
    files: Vec<DataFile>,
    properties: HashMap<String, String>,
) -> Result<Table> {
    let name = table.identifier().clone();
    let context = || format!("committing to {name}");
    if files.is_empty() && properties.is_empty() {
        return catalog.load_table(&name).await.map_err(|e| Error::iceberg(context(), e));
    }
    let transaction = Transaction::new(table);
    let action = transaction
        .fast_append()
        // File names carry a fresh UUIDv7 prefix per writer: duplicates cannot happen, and the
        // check would read every manifest of the table on each commit.
        .with_check_duplicate(false)
        .add_data_files(files)
        .set_snapshot_properties(properties);
    let transaction = action.apply(transaction).map_err(|e| Error::iceberg(context(), e))?;
    let committed = transaction.commit(catalog).await.map_err(|e| Error::iceberg(context(), e))?;
    let Some(snapshot_id) = committed.metadata().current_snapshot_id() else {
        return Err(Error::plan(format!("commit to {name} produced no snapshot")));
    };

    let reloaded = catalog
        .load_table(&name)
        .await
        .map_err(|e| Error::iceberg(format!("reloading {name} after a commit"), e))?;
    if !main_lineage(&reloaded).any(|s| s.snapshot_id() == snapshot_id) {
        return Err(Error::plan(format!(
            "the commit of snapshot {snapshot_id} to {name} was reported as successful, but the \
             catalog does not have it (its current metadata is {})",
            reloaded.metadata_location().unwrap_or("unknown")
        ))
        .with_hint(
            "another process may hold the catalog database locked; the data files written are \
             not part of the table, and the sync retries from its last checkpoint",
        ));
    }
    Ok(reloaded)
}

/// The snapshots of the main branch, newest first.
fn main_lineage(table: &Table) -> impl Iterator<Item = &SnapshotRef> {
    let metadata = table.metadata();
    std::iter::successors(metadata.current_snapshot(), move |s| {
        s.parent_snapshot_id().and_then(|id| metadata.snapshot_by_id(id))
    })
}

/// The value of `key` in the summary of the newest snapshot of the main branch that has it
/// (walking back through parents, past snapshots other writers made), or `None`.
pub fn snapshot_property(table: &Table, key: &str) -> Option<String> {
    main_lineage(table).find_map(|s| s.summary().additional_properties.get(key).cloned())
}

/// The conventional Iceberg name of a partition field: the column name for identity, else
/// `<column>_<transform>` (`created_at_day`, `_id_bucket`, `sku_trunc`, ...).
pub fn partition_field_name(column: &str, transform: &Transform) -> String {
    match transform {
        Transform::Identity => column.to_string(),
        Transform::Bucket(_) => format!("{column}_bucket"),
        Transform::Truncate(_) => format!("{column}_trunc"),
        Transform::Year => format!("{column}_year"),
        Transform::Month => format!("{column}_month"),
        Transform::Day => format!("{column}_day"),
        Transform::Hour => format!("{column}_hour"),
        Transform::Void => format!("{column}_null"),
        Transform::Unknown => format!("{column}_unknown"),
    }
}

/// Creates the table `ident` (format v2) with `schema`, the partition spec given as (source
/// column, transform) pairs, and `properties` (e.g. the target file size and compression
/// codec), unless it exists; returns the table, created or existing. Creates the namespace if
/// it is missing.
///
/// Always use the returned table's schema afterwards: creating a table renumbers field ids.
pub async fn create_table(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    schema: Schema,
    partition: &[(String, Transform)],
    properties: HashMap<String, String>,
) -> Result<Table> {
    let context = || format!("creating table {ident}");
    if catalog.table_exists(ident).await.map_err(|e| Error::iceberg(context(), e))? {
        return catalog
            .load_table(ident)
            .await
            .map_err(|e| Error::iceberg(format!("loading table {ident}"), e));
    }
    let spec = partition_spec(ident, &schema, partition)?;
    let namespace = ident.namespace();
    let exists = catalog
        .namespace_exists(namespace)
        .await
        .map_err(|e| Error::iceberg(format!("looking up namespace {namespace}"), e))?;
    if !exists {
        let created = catalog.create_namespace(namespace, HashMap::new()).await;
        // Another process may have created it in the meantime.
        if let Err(e) = created {
            let now_exists = catalog.namespace_exists(namespace).await.unwrap_or(false);
            if !now_exists {
                return Err(Error::iceberg(format!("creating namespace {namespace}"), e));
            }
        }
    }
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .schema(schema)
        .partition_spec(spec)
        .properties(properties)
        .format_version(::iceberg::spec::FormatVersion::V2)
        .build();
    match catalog.create_table(namespace, creation).await {
        Ok(table) => Ok(table),
        // Lost a race with another creator: use theirs.
        Err(e) => match catalog.load_table(ident).await {
            Ok(table) => Ok(table),
            Err(_) => Err(Error::iceberg(context(), e)),
        },
    }
}

/// The unbound partition spec for `partition` over `schema`, checking each column and transform
/// with messages that name them.
fn partition_spec(
    ident: &TableIdent,
    schema: &Schema,
    partition: &[(String, Transform)],
) -> Result<UnboundPartitionSpec> {
    let mut builder = UnboundPartitionSpec::builder();
    for (column, transform) in partition {
        let Some(field) = schema.field_by_name(column) else {
            let columns: Vec<&str> =
                schema.as_struct().fields().iter().map(|f| f.name.as_str()).collect();
            return Err(Error::plan(format!(
                "PARTITION BY names column `{column}`, which is not in the output of the sync \
                 into {ident}"
            ))
            .with_hint(format!("partition by one of: {}", columns.join(", "))));
        };
        let sql = transform_sql(transform, column);
        if transform.result_type(&field.field_type).is_err() {
            return Err(Error::plan(format!(
                "PARTITION BY {sql}: column `{column}` is {}, which {} does not apply to",
                type_name(&field.field_type),
                transform_sql_name(transform)
            ))
            .with_hint(transform_hint(transform)));
        }
        builder = builder
            .add_partition_field(field.id, partition_field_name(column, transform), *transform)
            .map_err(|e| Error::plan(format!("PARTITION BY {sql} for {ident}: {}", e.message())))?;
    }
    let spec = builder.build();
    // Bind once to surface any remaining problem (name clashes with columns, ...) now.
    spec.clone()
        .bind(std::sync::Arc::new(schema.clone()))
        .map_err(|e| Error::plan(format!("partition spec for {ident}: {}", e.message())))?;
    Ok(spec)
}

/// A transform applied to `column` as written in `PARTITION BY`: `day(created_at)`,
/// `bucket(8, _id)`, `truncate(4, sku)`.
pub fn transform_sql(transform: &Transform, column: &str) -> String {
    match transform {
        Transform::Bucket(n) | Transform::Truncate(n) => {
            format!("{}({n}, {column})", transform_sql_name(transform))
        }
        _ => format!("{}({column})", transform_sql_name(transform)),
    }
}

fn transform_sql_name(transform: &Transform) -> &'static str {
    match transform {
        Transform::Identity => "identity",
        Transform::Bucket(_) => "bucket",
        Transform::Truncate(_) => "truncate",
        Transform::Year => "year",
        Transform::Month => "month",
        Transform::Day => "day",
        Transform::Hour => "hour",
        Transform::Void => "void",
        Transform::Unknown => "unknown",
    }
}

fn transform_hint(transform: &Transform) -> String {
    match transform {
        Transform::Year | Transform::Month | Transform::Day => {
            "year, month and day take a date or timestamp column".to_string()
        }
        Transform::Hour => "hour takes a timestamp column".to_string(),
        Transform::Bucket(_) => {
            "bucket takes an int, long, decimal, date, time, timestamp, string, uuid, fixed or \
             binary column"
                .to_string()
        }
        Transform::Truncate(_) => {
            "truncate takes an int, long, decimal, string or binary column".to_string()
        }
        _ => "identity takes any primitive column".to_string(),
    }
}
