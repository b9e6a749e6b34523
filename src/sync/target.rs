//! The target table of a sync: created if absent (format v2, partition spec from PARTITION BY,
//! file size and compression from WITH), or checked against the plan and its checkpoint.

use std::collections::HashMap;

use iceberg::spec::{TableProperties, Transform as IcebergTransform};
use iceberg::table::Table;
use iceberg::{NamespaceIdent, TableIdent, TableRequirement, TableUpdate};

use super::checkpoint::Checkpoint;
use super::plan::SyncPlan;
use crate::lake::catalog::IcebergConnection;
use crate::lake::commit::{Change, DELETE_AFTER_COMMIT_PROPERTY, commit};
use crate::lake::schema::{check_compatible, iceberg_schema};
use crate::lake::table::create_table;
use crate::sql::{CreateSync, SyncOption, Transform};
use crate::{Error, Result};

/// Table property: the size data files are rolled at.
const TARGET_FILE_SIZE: &str = "write.target-file-size-bytes";
/// Table property: the Parquet compression codec.
const COMPRESSION: &str = "write.parquet.compression-codec";

/// The table `catalog.namespace.table` of a sync's INTO, as an Iceberg identifier.
pub fn table_ident(create: &CreateSync) -> TableIdent {
    let parts: Vec<String> =
        create.target.0.iter().filter_map(|p| p.as_ident()).map(|i| i.value.clone()).collect();
    TableIdent::new(NamespaceIdent::new(parts[1].clone()), parts[2].clone())
}

/// Opens or creates the target; returns it with its checkpoint (if the table was written by
/// this sync before).
pub async fn prepare(
    conn: &IcebergConnection,
    create: &CreateSync,
    plan: &SyncPlan,
) -> Result<(Table, Option<Checkpoint>)> {
    let catalog = conn.catalog.as_ref();
    let ident = table_ident(create);
    let name = format!("{}", create.target);
    let wanted = iceberg_schema(&plan.output_schema, &plan.key)?;
    let partition = partition_spec(create, plan)?;
    let exists = catalog
        .table_exists(&ident)
        .await
        .map_err(|e| Error::iceberg(format!("looking up {name}"), e))?;
    if exists && create.or_replace {
        catalog
            .drop_table(&ident)
            .await
            .map_err(|e| Error::iceberg(format!("dropping {name} to replace it"), e))?;
    } else if exists {
        let table = catalog
            .load_table(&ident)
            .await
            .map_err(|e| Error::iceberg(format!("loading {name}"), e))?;
        // A `SELECT *` sync's table may have more columns, or wider ones: reconciled later.
        if !plan.evolving {
            check_compatible(&name, table.metadata().current_schema(), &wanted)
                .map_err(|e| with_replace_hint(e, create))?;
        }
        let checkpoint = Checkpoint::of_table(&table)?;
        check_checkpoint(create, plan, &name, checkpoint.as_ref())?;
        let table = apply_write_options(conn, create, table).await?;
        return Ok((table, checkpoint));
    }
    let mut properties = write_properties(create, |_| true);
    properties.extend(METADATA_PROPERTIES.map(|(k, v)| (k.to_string(), v.to_string())));
    let table = create_table(catalog, &ident, wanted, &partition, properties).await?;
    Ok((table, None))
}

/// Table properties of the tables a sync creates: a streaming sync commits every
/// `flush_interval`, so each commit deletes the metadata files that leave the log instead of
/// leaving thousands an hour for VACUUM. The log keeps 5 versions: time travel goes through
/// snapshots (kept for `retain_snapshots`), and every logged version adds to the metadata file
/// each reader loads.
const METADATA_PROPERTIES: [(&str, &str); 2] = [
    (DELETE_AFTER_COMMIT_PROPERTY, "true"),
    (TableProperties::PROPERTY_METADATA_PREVIOUS_VERSIONS_MAX, "5"),
];

/// The table properties of the WITH options that shape written files (`target_file_size`,
/// `compression`), those for which `wanted` is true.
fn write_properties(
    create: &CreateSync,
    wanted: impl Fn(SyncOption) -> bool,
) -> HashMap<String, String> {
    let options = &create.options;
    [
        (SyncOption::TargetFileSize, TARGET_FILE_SIZE, options.target_file_size.to_string()),
        (SyncOption::Compression, COMPRESSION, options.compression.clone()),
    ]
    .into_iter()
    .filter(|(option, _, _)| wanted(*option))
    .map(|(_, key, value)| (key.to_string(), value))
    .collect()
}

/// An existing table takes the file-shaping WITH options given explicitly, as table properties
/// (committed only when they differ), so the files written from now on follow them.
async fn apply_write_options(
    conn: &IcebergConnection,
    create: &CreateSync,
    table: Table,
) -> Result<Table> {
    let current = table.metadata().properties();
    let changed: HashMap<String, String> =
        write_properties(create, |option| create.options.given.contains(&option))
            .into_iter()
            .filter(|(key, value)| current.get(key) != Some(value))
            .collect();
    if changed.is_empty() {
        return Ok(table);
    }
    tracing::info!("{}: table properties set from WITH: {changed:?}", create.target);
    let wanted = changed.clone();
    let change = Change::metadata(
        "new table properties",
        vec![TableRequirement::UuidMatch { uuid: table.metadata().uuid() }],
        vec![TableUpdate::SetProperties { updates: changed }],
        Box::new(move |m| wanted.iter().all(|(k, v)| m.properties().get(k) == Some(v))),
    );
    commit(conn, &table, change).await
}

/// A table written by another sync, or by this one with another definition, is not resumed.
fn check_checkpoint(
    create: &CreateSync,
    plan: &SyncPlan,
    table: &str,
    checkpoint: Option<&Checkpoint>,
) -> Result<()> {
    let Some(checkpoint) = checkpoint else { return Ok(()) };
    let sync = &create.name.value;
    if &checkpoint.sync != sync {
        return Err(Error::user(format!(
            "{table} is written by sync {}, not {sync}",
            checkpoint.sync
        ))
        .with_hint(format!(
            "sync into another table, or CREATE OR REPLACE SYNC {sync} to take it over"
        )));
    }
    if checkpoint.definition_hash != plan.definition_hash {
        return Err(Error::user(format!(
            "sync {sync} changed since {table} was written (its SELECT, WHERE, PARTITION BY, source or target differ)"
        ))
        .with_hint(format!("CREATE OR REPLACE SYNC {sync} ... rebuilds {table} with the new definition")));
    }
    Ok(())
}

fn with_replace_hint(err: Error, create: &CreateSync) -> Error {
    err.with_hint(format!("CREATE OR REPLACE SYNC {} ... replaces the table", create.name))
}

/// `PARTITION BY` as (column, transform); a column that is not in the output is an error.
fn partition_spec(create: &CreateSync, plan: &SyncPlan) -> Result<Vec<(String, IcebergTransform)>> {
    create
        .partition_by
        .iter()
        .map(|field| {
            let column = field.column.value.clone();
            if plan.output_schema.field_with_name(&column).is_err() {
                let columns: Vec<&str> =
                    plan.output_schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(Error::user(format!(
                    "PARTITION BY column `{column}` is not in the output of sync {}",
                    create.name
                ))
                .with_hint(format!("output columns: {}", columns.join(", "))));
            }
            let transform = match field.transform {
                Transform::Identity => IcebergTransform::Identity,
                Transform::Year => IcebergTransform::Year,
                Transform::Month => IcebergTransform::Month,
                Transform::Day => IcebergTransform::Day,
                Transform::Hour => IcebergTransform::Hour,
                Transform::Bucket(n) => IcebergTransform::Bucket(n),
                Transform::Truncate(w) => IcebergTransform::Truncate(w),
            };
            Ok((column, transform))
        })
        .collect()
}
