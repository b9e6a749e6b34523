//! DESCRIBE of an Iceberg table: its current schema, one row per column and nested field
//! (`customer.tier`, list elements as `items[]`, their fields as `items[].sku`), with the
//! Iceberg type, nullability, field id and whether the column is the table's key.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use iceberg::spec::{NestedFieldRef, Type};
use iceberg::{NamespaceIdent, TableIdent};

use super::Output;
use super::show::rows;
use crate::catalog::iceberg::LazyIceberg;
use crate::lake::schema::type_name;
use crate::{Error, Result};

/// One described field.
struct Row {
    path: String,
    data_type: String,
    nullable: bool,
    id: i32,
    key: bool,
}

/// Lists the columns of `namespace.table` in `catalog`.
pub async fn table(catalog: &LazyIceberg, namespace: &str, table: &str) -> Result<Output> {
    let ident = TableIdent::new(NamespaceIdent::new(namespace.to_string()), table.to_string());
    let catalog = &catalog.get().await?.catalog;
    let table = catalog.load_table(&ident).await.map_err(|e| {
        Error::iceberg(format!("loading {namespace}.{table}"), e)
            .with_hint(format!("SHOW TABLES FROM <catalog>.{namespace} lists the tables"))
    })?;
    let schema = table.metadata().current_schema();
    let keys: Vec<i32> = schema.identifier_field_ids().collect();
    let mut out = Vec::new();
    for field in schema.as_struct().fields() {
        describe(field, &field.name, &keys, &mut out);
    }
    let text = |f: &dyn Fn(&Row) -> String| {
        Arc::new(StringArray::from(out.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    let yes_no = |b: bool| if b { "YES" } else { "NO" }.to_string();
    rows(RecordBatch::try_from_iter([
        ("column_name", text(&|r| r.path.clone())),
        ("data_type", text(&|r| r.data_type.clone())),
        ("is_nullable", text(&|r| yes_no(r.nullable))),
        ("field_id", Arc::new(Int32Array::from(out.iter().map(|r| r.id).collect::<Vec<_>>())) as _),
        ("is_key", text(&|r| yes_no(r.key))),
    ])?)
}

/// `field` at `path`, then its nested fields.
fn describe(field: &NestedFieldRef, path: &str, keys: &[i32], out: &mut Vec<Row>) {
    out.push(Row {
        path: path.to_string(),
        data_type: compact(&field.field_type),
        nullable: !field.required,
        id: field.id,
        key: keys.contains(&field.id),
    });
    match field.field_type.as_ref() {
        Type::Struct(s) => {
            for child in s.fields() {
                describe(child, &format!("{path}.{}", child.name), keys, out);
            }
        }
        Type::List(list) if !matches!(*list.element_field.field_type, Type::Primitive(_)) => {
            describe(&list.element_field, &format!("{path}[]"), keys, out);
        }
        Type::Map(map) => {
            describe(&map.key_field, &format!("{path}.key"), keys, out);
            describe(&map.value_field, &format!("{path}.value"), keys, out);
        }
        _ => {}
    }
}

/// A type with its nested fields left to their own rows: `struct`, `list<struct>`,
/// `list<string>`, `decimal(18,2)`.
fn compact(t: &Type) -> String {
    match t {
        Type::Struct(_) => "struct".to_string(),
        Type::List(list) => format!("list<{}>", compact(&list.element_field.field_type)),
        Type::Map(map) => format!(
            "map<{}, {}>",
            compact(&map.key_field.field_type),
            compact(&map.value_field.field_type)
        ),
        primitive => type_name(primitive),
    }
}
