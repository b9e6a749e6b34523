//! Creating tables, their partition specs and the conventional names of partition fields, and
//! telling which partition spec a written file belongs to.

use std::collections::HashMap;

use ::iceberg::spec::{
    DataFile, DataFileBuilder, Schema, TableMetadata, TableMetadataBuilder, Transform,
    UnboundPartitionSpec,
};
use ::iceberg::table::Table;
use ::iceberg::{Catalog, TableCreation, TableIdent};

use super::commit::check_loads_back;
use super::schema::type_name;
use crate::{Error, Result};

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
    let creation = |location: Option<String>| TableCreation {
        name: ident.name().to_string(),
        location,
        schema: schema.clone(),
        partition_spec: Some(spec.clone()),
        sort_order: None,
        properties: properties.clone(),
        format_version: ::iceberg::spec::FormatVersion::V2,
    };
    // A table is never created in a state that cannot be loaded back (a schema nested too deep
    // for the metadata parser): its metadata is built and parsed here first, at a placeholder
    // location.
    let placeholder = Some(format!("file:///misql-check/{}", ident.name()));
    let built = TableMetadataBuilder::from_table_creation(creation(placeholder))
        .and_then(|b| b.build())
        .map_err(|e| Error::iceberg(context(), e))?;
    check_loads_back(ident, &built.metadata)?;
    let creation = creation(None);
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
            return Err(Error::user(format!(
                "PARTITION BY names column `{column}`, which is not in the output of the sync \
                 into {ident}"
            ))
            .with_hint(format!("partition by one of: {}", columns.join(", "))));
        };
        let sql = transform_sql(transform, column);
        if transform.result_type(&field.field_type).is_err() {
            return Err(Error::user(format!(
                "PARTITION BY {sql}: column `{column}` is {}, which {} does not apply to",
                type_name(&field.field_type),
                transform_sql_name(transform)
            ))
            .with_hint(transform_hint(transform)));
        }
        builder = builder
            .add_partition_field(field.id, partition_field_name(column, transform), *transform)
            .map_err(|e| Error::user(format!("PARTITION BY {sql} for {ident}: {}", e.message())))?;
    }
    let spec = builder.build();
    // Bind once to surface any remaining problem (name clashes with columns, ...) now.
    spec.clone()
        .bind(std::sync::Arc::new(schema.clone()))
        .map_err(|e| Error::user(format!("partition spec for {ident}: {}", e.message())))?;
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

/// The partition spec id of `file`, which iceberg-rust 0.10.1 keeps but does not expose: the
/// spec among `metadata`'s whose id, given to a copy of `file`, makes it equal to `file`.
/// `None` if no spec of the table fits.
pub fn partition_spec_id(file: &DataFile, metadata: &TableMetadata) -> Option<i32> {
    let default = metadata.default_partition_spec_id();
    std::iter::once(default)
        .chain(metadata.partition_specs_iter().map(|s| s.spec_id()).filter(|&id| id != default))
        .find(|&id| with_spec_id(file, id).is_some_and(|copy| copy == *file))
}

/// A copy of `file` with partition spec id `spec_id`.
fn with_spec_id(file: &DataFile, spec_id: i32) -> Option<DataFile> {
    let mut builder = DataFileBuilder::default();
    builder
        .content(file.content_type())
        .file_path(file.file_path().to_string())
        .file_format(file.file_format())
        .partition(file.partition().clone())
        .record_count(file.record_count())
        .file_size_in_bytes(file.file_size_in_bytes())
        .column_sizes(file.column_sizes().clone())
        .value_counts(file.value_counts().clone())
        .null_value_counts(file.null_value_counts().clone())
        .nan_value_counts(file.nan_value_counts().clone())
        .lower_bounds(file.lower_bounds().clone())
        .upper_bounds(file.upper_bounds().clone())
        .key_metadata(file.key_metadata().map(<[u8]>::to_vec))
        .split_offsets(file.split_offsets().map(<[i64]>::to_vec))
        .equality_ids(file.equality_ids())
        .first_row_id(file.first_row_id())
        .partition_spec_id(spec_id)
        .referenced_data_file(file.referenced_data_file())
        .content_offset(file.content_offset())
        .content_size_in_bytes(file.content_size_in_bytes());
    if let Some(order) = file.sort_order_id() {
        builder.sort_order_id(order);
    }
    builder.build().ok()
}
