//! DESCRIBE of a MongoDB collection: the inferred columns with their types and nullability,
//! and what the sample showed for each field (BSON types with counts, presence, the longest
//! array, how deep values nest, and for a type conflict the cast that reads it typed).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::DataType;

use super::Output;
use super::show::rows;
use crate::mongo::client::MongoSource;
use crate::mongo::infer::{BsonKind, FieldReport};
use crate::mongo::provider::MongoTable;
use crate::{Error, Result};

/// Samples `database.collection` and lists its fields.
pub async fn collection(
    source: Arc<MongoSource>,
    database: &str,
    collection: &str,
) -> Result<Output> {
    let sample_size = source.sample_size();
    let table =
        MongoTable::open(source, database, collection, sample_size).await?.ok_or_else(|| {
            Error::user(format!("collection {database}.{collection} does not exist"))
                .with_hint(format!("SHOW COLLECTIONS FROM mongo.{database} lists the collections"))
        })?;
    rows(report(table.fields(), table.sampled())?)
}

/// One row per field: name, type, nullability, BSON types seen, presence in the sample, the
/// longest array (null if no array was seen), the nesting depth below the field, and the
/// suggested cast (null unless the kinds conflict and the field is text).
pub fn report(fields: &[FieldReport], sampled: u64) -> Result<RecordBatch> {
    let column = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
    let names = fields.iter().map(|f| f.path.clone()).collect();
    let types = fields.iter().map(|f| type_name(&f.data_type)).collect();
    let nullable =
        fields.iter().map(|f| if f.nullable { "YES" } else { "NO" }.to_string()).collect();
    let seen = fields.iter().map(types_seen).collect();
    let present = fields.iter().map(|f| presence(f, fields, sampled)).collect();
    let max_array_len: UInt64Array = fields.iter().map(|f| f.max_array_len).collect();
    let max_depth: UInt64Array = fields.iter().map(|f| Some(u64::from(f.max_depth))).collect();
    let casts: StringArray = fields.iter().map(|f| f.suggested_cast.as_deref()).collect();
    Ok(RecordBatch::try_from_iter([
        ("column_name", column(names)),
        ("data_type", column(types)),
        ("is_nullable", column(nullable)),
        ("bson_types", column(seen)),
        ("present", column(present)),
        ("max_array_len", Arc::new(max_array_len) as ArrayRef),
        ("max_depth", Arc::new(max_depth) as ArrayRef),
        ("suggested_cast", Arc::new(casts) as ArrayRef),
    ])?)
}

/// One line per field for EXPLAIN CREATE SYNC: `path: type (bson types; present; max array
/// length; max depth; whether it nests too deep) suggested cast`.
pub fn lines(fields: &[FieldReport], sampled: u64) -> Vec<String> {
    fields
        .iter()
        .map(|f| {
            let mut line = format!(
                "{}: {} ({}; present {}",
                f.path,
                type_name(&f.data_type),
                types_seen(f),
                presence(f, fields, sampled)
            );
            if let Some(len) = f.max_array_len {
                line.push_str(&format!("; max array length {len}"));
            }
            if f.max_depth > 0 {
                line.push_str(&format!("; max depth {}", f.max_depth));
            }
            if f.too_deep {
                line.push_str("; nested too deep: Extended JSON text");
            }
            line.push(')');
            if let Some(cast) = &f.suggested_cast {
                line.push_str(&format!(" suggested cast: {cast}"));
            }
            line
        })
        .collect()
}

/// `int: 990, string: 10`, most frequent first; a conflict is marked so it stands out.
fn types_seen(field: &FieldReport) -> String {
    let list: Vec<String> =
        field.types_seen.iter().map(|(kind, count)| format!("{kind}: {count}")).collect();
    let list = list.join(", ");
    if field.conflict { format!("CONFLICT {list}") } else { list }
}

/// How often the field is present: among sampled documents for a top-level field, among its
/// parent's non-null values for a nested one; list elements show their count instead.
fn presence(field: &FieldReport, fields: &[FieldReport], sampled: u64) -> String {
    if field.path.ends_with("[]") {
        return format!("{} elements", field.present);
    }
    let parent = fields
        .iter()
        .filter(|p| field.path.strip_prefix(p.path.as_str()).is_some_and(|r| r.starts_with('.')))
        .max_by_key(|p| p.path.len());
    let of = match parent {
        Some(parent) => parent.present - null_count(parent),
        None => sampled,
    };
    if of == 0 {
        return "-".to_string();
    }
    format!("{:.1}%", field.present as f64 * 100.0 / of as f64)
}

fn null_count(field: &FieldReport) -> u64 {
    field.types_seen.iter().filter(|(k, _)| *k == BsonKind::Null).map(|(_, n)| n).sum()
}

/// A compact type name: nested struct and list element types are listed on their own rows.
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Struct(fields) => format!("Struct({} fields)", fields.len()),
        DataType::List(item) | DataType::LargeList(item) => {
            format!("List({})", type_name(item.data_type()))
        }
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                arrow::datatypes::TimeUnit::Second => "s",
                arrow::datatypes::TimeUnit::Millisecond => "ms",
                arrow::datatypes::TimeUnit::Microsecond => "µs",
                arrow::datatypes::TimeUnit::Nanosecond => "ns",
            };
            match tz {
                Some(tz) => format!("Timestamp({unit}, {tz})"),
                None => format!("Timestamp({unit})"),
            }
        }
        other => other.to_string(),
    }
}
