//! Schema evolution of a target table: the table's schema grown to take what a sync now produces
//! (new optional columns, nested ones too, and the type promotions Iceberg allows), committed as
//! a new current schema.
//!
//! iceberg-rust 0.10.1 can add columns (`Transaction::update_schema`) but not promote a type, so
//! the new schema is built here and committed with misql's own compare-and-swap
//! ([`super::commit`]): `AddSchema` + `SetCurrentSchema`, required to apply to the schema it was
//! built from.

use std::sync::Arc;

use ::iceberg::spec::{
    ListType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};
use ::iceberg::table::Table;
use ::iceberg::{TableRequirement, TableUpdate};
use arrow::datatypes::{DataType, Fields, Schema as ArrowSchema};

use super::catalog::IcebergConnection;
use super::commit::{Change, commit};
use super::schema::{IdAssigner, check_nesting, map_type, type_name};
use crate::{Error, Result};

/// A new schema for a table and what changed, for the log (`added column `discount` (double)`,
/// `widened `qty` from int to long`).
#[derive(Debug, Clone)]
pub struct SchemaChange {
    /// The new schema (same field ids for the columns it keeps).
    pub schema: Schema,
    /// One line per change.
    pub changes: Vec<String>,
}

/// `current` grown to take `arrow`: columns (and struct fields) that `arrow` has and `current`
/// lacks are added as optional fields with ids after `last_column_id`, at the end of their
/// struct; int → long, float → double and decimal(P,S) → decimal(P',S) with P' > P are applied
/// where `arrow` has the wider type. Other type differences are left as they are (values that
/// do not fit are the caller's business). `None` when nothing changes. A column that would nest
/// deeper than [`super::schema::MAX_NESTING_DEPTH`] is an error naming it.
pub fn evolve(
    current: &Schema,
    arrow: &ArrowSchema,
    last_column_id: i32,
) -> Result<Option<SchemaChange>> {
    let mut ids = IdAssigner::after(last_column_id);
    let mut changes = Vec::new();
    let fields =
        evolve_struct("", current.as_struct().fields(), arrow.fields(), &mut ids, &mut changes)?;
    if changes.is_empty() {
        return Ok(None);
    }
    let schema = Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_fields(fields)
        .with_identifier_field_ids(current.identifier_field_ids())
        .build()
        .map_err(|e| Error::iceberg("building the evolved schema", e))?;
    check_nesting(&schema)?;
    Ok(Some(SchemaChange { schema, changes }))
}

fn evolve_struct(
    prefix: &str,
    have: &[NestedFieldRef],
    want: &Fields,
    ids: &mut IdAssigner,
    changes: &mut Vec<String>,
) -> Result<Vec<NestedFieldRef>> {
    let mut out = Vec::with_capacity(want.len().max(have.len()));
    for field in have {
        let path = format!("{prefix}{}", field.name);
        let evolved = match want.iter().find(|f| f.name() == &field.name) {
            Some(w) => evolve_type(&path, &field.field_type, w.data_type(), ids, changes)?,
            None => field.field_type.as_ref().clone(),
        };
        if &evolved == field.field_type.as_ref() {
            out.push(field.clone());
        } else {
            let mut field = field.as_ref().clone();
            field.field_type = Box::new(evolved);
            out.push(Arc::new(field));
        }
    }
    for w in want.iter().filter(|w| !have.iter().any(|h| &h.name == w.name())) {
        let path = format!("{prefix}{}", w.name());
        let id = ids.next();
        let field_type = map_type(&path, w.data_type(), ids)?;
        changes.push(format!("added column `{path}` ({})", type_name(&field_type)));
        out.push(Arc::new(NestedField::optional(id, w.name(), field_type)));
    }
    Ok(out)
}

fn evolve_type(
    path: &str,
    have: &Type,
    want: &DataType,
    ids: &mut IdAssigner,
    changes: &mut Vec<String>,
) -> Result<Type> {
    let mut widen = |to: PrimitiveType| {
        let to = Type::Primitive(to);
        changes.push(format!("widened `{path}` from {} to {}", type_name(have), type_name(&to)));
        Ok(to)
    };
    match (have, want) {
        (Type::Struct(s), DataType::Struct(fields)) => Ok(Type::Struct(StructType::new(
            evolve_struct(&format!("{path}."), s.fields(), fields, ids, changes)?,
        ))),
        (Type::List(list), DataType::List(element)) => {
            let field = &list.element_field;
            let element_path = format!("{path}.element");
            let element_type =
                evolve_type(&element_path, &field.field_type, element.data_type(), ids, changes)?;
            let mut field = field.as_ref().clone();
            field.field_type = Box::new(element_type);
            Ok(Type::List(ListType::new(Arc::new(field))))
        }
        (Type::Primitive(PrimitiveType::Int), DataType::Int64) => widen(PrimitiveType::Long),
        (Type::Primitive(PrimitiveType::Float), DataType::Float64) => widen(PrimitiveType::Double),
        (
            Type::Primitive(PrimitiveType::Decimal { precision, scale }),
            DataType::Decimal128(p, s),
        ) if *s >= 0 && *s as u32 == *scale && u32::from(*p) > *precision => {
            widen(PrimitiveType::Decimal { precision: u32::from(*p), scale: *scale })
        }
        _ => Ok(have.clone()),
    }
}

/// Makes `change.schema` the current schema of `table`, provided nobody changed the table's
/// schema since it was loaded; returns the table reloaded.
pub async fn commit_schema(
    conn: &IcebergConnection,
    table: &Table,
    change: &SchemaChange,
) -> Result<Table> {
    let metadata = table.metadata();
    let wanted = change.schema.as_struct().clone();
    let update = Change::metadata(
        "a new schema",
        vec![
            TableRequirement::UuidMatch { uuid: metadata.uuid() },
            TableRequirement::CurrentSchemaIdMatch {
                current_schema_id: metadata.current_schema_id(),
            },
            TableRequirement::LastAssignedFieldIdMatch {
                last_assigned_field_id: metadata.last_column_id(),
            },
        ],
        vec![
            TableUpdate::AddSchema { schema: change.schema.clone() },
            TableUpdate::SetCurrentSchema { schema_id: -1 },
        ],
        Box::new(move |m| m.current_schema().as_struct() == &wanted),
    );
    commit(conn, table, update).await
}
