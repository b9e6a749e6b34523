//! The Iceberg schema of a sync's output, derived from the Arrow schema of its projection, and
//! the check that an existing table can take that output.

use std::sync::Arc;

use ::iceberg::spec::{
    ListType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};
use arrow::datatypes::{DataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit};

use crate::{Error, Result};

/// How deep a column of a table misql writes may nest: at most this many struct and list types
/// along any path from the column down (`{a: 1}` and `[1]` are 1 deep, `[{a: 1}]` is 2).
/// Schema inference turns a document or array that would nest deeper into a Utf8 column holding
/// its relaxed Extended JSON, so the deepest MongoDB document (100 levels) still makes a
/// loadable table.
///
/// Why 32: iceberg-rust parses table metadata JSON with serde_json's default recursion limit,
/// which refuses a 128th level of JSON nesting (127 load). In the Iceberg schema JSON a struct
/// costs 3 levels (the type object, its `fields` array, the field object) and a list 1 (its
/// type object), so a column nesting `d` structs sits 5 + 3d levels deep in the metadata file
/// (metadata object, `schemas`, schema, `fields`, the column's field object) and 6 + 3d in a
/// REST catalog's load and commit responses and in a commit request (one wrapping object more).
/// The deepest loadable column is therefore 40 structs (125 levels, 126 over REST; 41 structs
/// give 128 and 129 and fail), as `tests/it/deep_nesting.rs` measures: it serializes the
/// metadata of such schemas with iceberg-rust and parses it back. At 32 structs the metadata
/// nests 101 levels (102 over REST): 25 levels, 8 structs, of margin for readers and writers
/// that wrap the schema deeper.
pub const MAX_NESTING_DEPTH: usize = 32;

/// How many struct, list and map types nest along the deepest path of `t` (0 for a primitive).
pub fn nesting_depth(t: &Type) -> usize {
    match t {
        Type::Primitive(_) => 0,
        Type::List(list) => 1 + nesting_depth(&list.element_field.field_type),
        Type::Map(map) => {
            1 + nesting_depth(&map.key_field.field_type)
                .max(nesting_depth(&map.value_field.field_type))
        }
        Type::Struct(s) => {
            1 + s.fields().iter().map(|f| nesting_depth(&f.field_type)).max().unwrap_or(0)
        }
    }
}

/// Fails, naming the column, when a column of `schema` nests deeper than
/// [`MAX_NESTING_DEPTH`]: Iceberg readers could not load the table's metadata. Inferred MongoDB
/// schemas never do; a SELECT expression that builds structs of structs may.
pub fn check_nesting(schema: &Schema) -> Result<()> {
    for field in schema.as_struct().fields() {
        let depth = nesting_depth(&field.field_type);
        if depth > MAX_NESTING_DEPTH {
            return Err(Error::user(format!(
                "column `{}` nests {depth} levels deep; misql writes Iceberg columns at most \
                 {MAX_NESTING_DEPTH} levels deep (Iceberg readers refuse table metadata nested \
                 much deeper)",
                field.name
            ))
            .with_hint(
                "build it with fewer levels of structs and lists (fields of MongoDB documents \
                 nested deeper become Extended JSON text by themselves)",
            ));
        }
    }
    Ok(())
}

/// The Iceberg schema for a sync's output.
///
/// Every Arrow field is mapped: Utf8/LargeUtf8/Utf8View → string, Int32 (and the smaller
/// integers) → int, UInt32/Int64 → long, Float32 → float, Float64 → double, Boolean → boolean,
/// Decimal128(p,s) → decimal(p,s), Timestamp(any unit, tz) → timestamptz (no tz → timestamp),
/// Date32/Date64 → date, Binary/LargeBinary/BinaryView → binary, FixedSizeBinary(16) → uuid,
/// other FixedSizeBinary(n) → fixed(n), List/LargeList/FixedSizeList → list, Struct → struct,
/// Dictionary → its value type. Anything else is an [`Error::Plan`] naming the column and type.
///
/// The `key` column is required and the identifier field; everything else is optional. Field
/// ids are assigned 1..n, top-level fields first (`create_table` renumbers them anyway). A
/// column nesting deeper than [`MAX_NESTING_DEPTH`] is an [`Error::Plan`] naming it.
pub fn iceberg_schema(arrow: &ArrowSchema, key: &str) -> Result<Schema> {
    if arrow.column_with_name(key).is_none() {
        return Err(Error::user(format!("the key column `{key}` is not in the sync's output"))
            .with_hint(format!("include `{key}` in the SELECT list")));
    }
    let mut ids = IdAssigner::default();
    let top_ids: Vec<i32> = arrow.fields().iter().map(|_| ids.next()).collect();
    let mut fields = Vec::with_capacity(arrow.fields().len());
    for (field, id) in arrow.fields().iter().zip(top_ids) {
        let field_type = map_type(field.name(), field.data_type(), &mut ids)?;
        let required = field.name() == key;
        fields.push(Arc::new(NestedField::new(id, field.name(), field_type, required)));
    }
    let key_field = fields.iter().find(|f| f.name == key).expect("the key column exists");
    let (key_id, key_type) = (key_field.id, key_field.field_type.as_ref());
    let valid_key = match key_type {
        Type::Primitive(p) => !matches!(p, PrimitiveType::Float | PrimitiveType::Double),
        _ => false,
    };
    if !valid_key {
        return Err(Error::user(format!(
            "the key column `{key}` is {}; a key must be a string, number (not floating point), \
             decimal, date, timestamp, uuid or binary value",
            type_name(key_type)
        ))
        .with_hint(format!("cast it, e.g. `CAST({key} AS VARCHAR) AS {key}`")));
    }
    let schema = Schema::builder()
        .with_fields(fields)
        .with_identifier_field_ids([key_id])
        .build()
        .map_err(|e| Error::iceberg("building the Iceberg schema of the sync's output", e))?;
    check_nesting(&schema)?;
    Ok(schema)
}

/// Field ids handed out in order, starting at 1 (or after a table's last column id).
#[derive(Default)]
pub(crate) struct IdAssigner(i32);

impl IdAssigner {
    /// Ids after `last` (a table's last assigned column id).
    pub(crate) fn after(last: i32) -> Self {
        Self(last)
    }

    pub(crate) fn next(&mut self) -> i32 {
        self.0 += 1;
        self.0
    }
}

/// Maps one Arrow type; `path` is the dotted column path, for messages.
pub(crate) fn map_type(path: &str, data_type: &DataType, ids: &mut IdAssigner) -> Result<Type> {
    let primitive = |p: PrimitiveType| Ok(Type::Primitive(p));
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            primitive(PrimitiveType::String)
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 => primitive(PrimitiveType::Int),
        DataType::UInt8 | DataType::UInt16 => primitive(PrimitiveType::Int),
        DataType::Int64 | DataType::UInt32 => primitive(PrimitiveType::Long),
        DataType::Float32 => primitive(PrimitiveType::Float),
        DataType::Float64 => primitive(PrimitiveType::Double),
        DataType::Boolean => primitive(PrimitiveType::Boolean),
        DataType::Decimal128(precision, scale) if *scale >= 0 && *precision >= 1 => {
            primitive(PrimitiveType::Decimal { precision: *precision as u32, scale: *scale as u32 })
        }
        DataType::Timestamp(_, Some(_)) => primitive(PrimitiveType::Timestamptz),
        DataType::Timestamp(_, None) => primitive(PrimitiveType::Timestamp),
        DataType::Date32 | DataType::Date64 => primitive(PrimitiveType::Date),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            primitive(PrimitiveType::Binary)
        }
        DataType::FixedSizeBinary(16) => primitive(PrimitiveType::Uuid),
        DataType::FixedSizeBinary(n) if *n > 0 => primitive(PrimitiveType::Fixed(*n as u64)),
        DataType::Dictionary(_, value) => map_type(path, value, ids),
        DataType::List(element)
        | DataType::LargeList(element)
        | DataType::FixedSizeList(element, _) => {
            let id = ids.next();
            let element_type = map_type(&format!("{path}.element"), element.data_type(), ids)?;
            Ok(Type::List(ListType::new(Arc::new(NestedField::list_element(
                id,
                element_type,
                false,
            )))))
        }
        DataType::Struct(children) => {
            let child_ids: Vec<i32> = children.iter().map(|_| ids.next()).collect();
            let mut fields: Vec<NestedFieldRef> = Vec::with_capacity(children.len());
            for (child, id) in children.iter().zip(child_ids) {
                let child_type =
                    map_type(&format!("{path}.{}", child.name()), child.data_type(), ids)?;
                fields.push(Arc::new(NestedField::optional(id, child.name(), child_type)));
            }
            Ok(Type::Struct(StructType::new(fields)))
        }
        other => Err(Error::user(format!(
            "column `{path}` has type {other}, which has no Iceberg equivalent"
        ))
        .with_hint(unsupported_hint(path, other))),
    }
}

/// The Arrow schema the BSON converter writes for an Iceberg schema (the inverse of
/// [`iceberg_schema`] for the types the converter produces): string → Utf8, int → Int32, long →
/// Int64, float and double → Float64, boolean → Boolean, decimal(p,s) → Decimal128(p,s),
/// timestamptz → Timestamp(µs, UTC), timestamp → Timestamp(µs), binary and fixed → Binary, uuid →
/// FixedSizeBinary(16), list → List, struct → Struct. Date, time and map columns (which misql
/// never creates) are an [`Error::Plan`] naming the column. Required columns are not nullable.
///
/// Not iceberg's `schema_to_arrow_schema`: that gives the writer's physical types (Float32,
/// tz `+00:00`, field-id metadata), which the converter neither produces nor needs.
pub fn arrow_schema(schema: &Schema) -> Result<ArrowSchema> {
    let fields = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| arrow_field(&f.name, f))
        .collect::<Result<Vec<_>>>()?;
    Ok(ArrowSchema::new(fields))
}

fn arrow_field(path: &str, field: &NestedField) -> Result<ArrowField> {
    let data_type = arrow_type(path, &field.field_type)?;
    Ok(ArrowField::new(field.name.clone(), data_type, !field.required))
}

fn arrow_type(path: &str, t: &Type) -> Result<DataType> {
    Ok(match t {
        Type::Primitive(p) => match p {
            PrimitiveType::String => DataType::Utf8,
            PrimitiveType::Int => DataType::Int32,
            PrimitiveType::Long => DataType::Int64,
            PrimitiveType::Float | PrimitiveType::Double => DataType::Float64,
            PrimitiveType::Boolean => DataType::Boolean,
            PrimitiveType::Decimal { precision, scale } => {
                DataType::Decimal128(*precision as u8, *scale as i8)
            }
            PrimitiveType::Timestamptz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            PrimitiveType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PrimitiveType::Binary | PrimitiveType::Fixed(_) => DataType::Binary,
            PrimitiveType::Uuid => DataType::FixedSizeBinary(16),
            other => {
                return Err(Error::user(format!(
                    "column `{path}` is {other}, which misql cannot fill from BSON"
                ))
                .with_hint("sync into a new table, or list the columns in the SELECT"));
            }
        },
        Type::List(list) => {
            let element = &list.element_field;
            let element_type = arrow_type(&format!("{path}.element"), &element.field_type)?;
            DataType::List(Arc::new(ArrowField::new("item", element_type, true)))
        }
        Type::Struct(s) => DataType::Struct(
            s.fields()
                .iter()
                .map(|f| arrow_field(&format!("{path}.{}", f.name), f))
                .collect::<Result<Vec<_>>>()?
                .into(),
        ),
        Type::Map(_) => {
            return Err(Error::user(format!(
                "column `{path}` is a map, which misql cannot fill from BSON"
            ))
            .with_hint("sync into a new table, or list the columns in the SELECT"));
        }
    })
}

/// What to do instead of an unsupported type.
fn unsupported_hint(path: &str, data_type: &DataType) -> String {
    match data_type {
        DataType::UInt64 => {
            format!("cast it: `CAST({path} AS BIGINT)` or `CAST({path} AS DECIMAL(20, 0))`")
        }
        DataType::Null => format!(
            "the column is null in every sampled document: give it a type, e.g. `CAST({path} AS VARCHAR)`"
        ),
        DataType::Decimal256(..) => "cast it to a DECIMAL of precision 38 or less".to_string(),
        _ => format!(
            "cast `{path}` to a supported type (VARCHAR, BIGINT, DOUBLE, DECIMAL, TIMESTAMP, ...)"
        ),
    }
}

/// A type as users read it: `decimal(18,2)`, `list<string>`, `struct<name: string, age: int>`.
pub fn type_name(t: &Type) -> String {
    match t {
        Type::Primitive(PrimitiveType::Decimal { precision, scale }) => {
            format!("decimal({precision},{scale})")
        }
        Type::Primitive(p) => p.to_string(),
        Type::List(list) => format!("list<{}>", type_name(&list.element_field.field_type)),
        Type::Map(map) => format!(
            "map<{}, {}>",
            type_name(&map.key_field.field_type),
            type_name(&map.value_field.field_type)
        ),
        Type::Struct(s) => {
            let fields: Vec<String> = s
                .fields()
                .iter()
                .map(|f| format!("{}: {}", f.name, type_name(&f.field_type)))
                .collect();
            format!("struct<{}>", fields.join(", "))
        }
    }
}

/// Compares an existing table's schema with the wanted one by name and type, ignoring field ids,
/// column order and optional/required — except that the wanted schema's key (identifier) columns
/// must be required in the existing table.
///
/// Returns an [`Error::Plan`] naming the first differing column (nested columns by dotted path),
/// e.g. "column `total` is decimal(18,2) in lake.shop.orders but the sync produces
/// decimal(38,2)", and columns that only one side has.
pub fn check_compatible(table_name: &str, existing: &Schema, wanted: &Schema) -> Result<()> {
    compare_fields(table_name, "", existing.as_struct(), wanted.as_struct())?;
    for id in wanted.identifier_field_ids() {
        let Some(name) = wanted.name_by_field_id(id) else { continue };
        match existing.field_by_name(name) {
            Some(field) if !field.required => {
                return Err(Error::user(format!(
                    "column `{name}` is optional in {table_name} but the sync needs it required, \
                     as its key"
                ))
                .with_hint(format!(
                    "sync into a new table, or drop {table_name} so that the sync creates it"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

fn compare_fields(
    table: &str,
    prefix: &str,
    existing: &StructType,
    wanted: &StructType,
) -> Result<()> {
    for want in wanted.fields() {
        let path = format!("{prefix}{}", want.name);
        let Some(have) = existing.field_by_name(&want.name) else {
            return Err(Error::user(format!(
                "the sync produces column `{path}` ({}) but {table} has no such column",
                type_name(&want.field_type)
            ))
            .with_hint(format!("leave `{path}` out of the SELECT, or sync into a new table")));
        };
        compare_types(table, &path, &have.field_type, &want.field_type)?;
    }
    for have in existing.fields() {
        if wanted.field_by_name(&have.name).is_none() {
            let path = format!("{prefix}{}", have.name);
            return Err(Error::user(format!(
                "column `{path}` ({}) is in {table} but the sync does not produce it",
                type_name(&have.field_type)
            ))
            .with_hint(format!("add `{path}` to the SELECT, or sync into a new table")));
        }
    }
    Ok(())
}

fn compare_types(table: &str, path: &str, have: &Type, want: &Type) -> Result<()> {
    match (have, want) {
        (Type::Struct(h), Type::Struct(w)) => compare_fields(table, &format!("{path}."), h, w),
        (Type::List(h), Type::List(w)) => compare_types(
            table,
            &format!("{path}.element"),
            &h.element_field.field_type,
            &w.element_field.field_type,
        ),
        (Type::Map(h), Type::Map(w)) => {
            compare_types(
                table,
                &format!("{path}.key"),
                &h.key_field.field_type,
                &w.key_field.field_type,
            )?;
            compare_types(
                table,
                &format!("{path}.value"),
                &h.value_field.field_type,
                &w.value_field.field_type,
            )
        }
        (Type::Primitive(h), Type::Primitive(w)) if h == w => Ok(()),
        _ => {
            let (have, want) = (type_name(have), type_name(want));
            Err(Error::user(format!(
                "column `{path}` is {have} in {table} but the sync produces {want}"
            ))
            .with_hint(format!(
                "cast it in the SELECT to the table's type ({have}), or sync into a new table"
            )))
        }
    }
}
