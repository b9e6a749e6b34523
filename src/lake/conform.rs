//! Rebuilding an incoming record batch into exactly the Arrow shape iceberg-rust's writers need
//! for a table: the table's column order, its physical types (Utf8View → Utf8, tz "UTC" →
//! "+00:00", ...), and `PARQUET:field_id` metadata on every field down to struct children and
//! list elements. Columns are matched by name, at every nesting level.

use std::sync::Arc;

use ::iceberg::arrow::arrow_type_to_type;
use arrow::array::{
    Array, ArrayRef, AsArray, ListArray, RecordBatch, RecordBatchOptions, StructArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use arrow::datatypes::{DataType, Field, FieldRef, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::schema::type_name;
use crate::{Error, Result};

/// Conforms batches to one table's Arrow schema.
#[derive(Debug, Clone)]
pub(crate) struct Conformer {
    /// `schema_to_arrow_schema` of the table's current schema.
    target: SchemaRef,
    /// The table's name, for messages.
    table: String,
    /// The key column (first identifier field), to name rows in value errors.
    key: Option<String>,
}

/// Where an array sits in the batch, to map an index in it back to a row of the batch.
#[derive(Clone, Copy)]
enum Position<'a> {
    /// A top-level column: index = row.
    Top,
    /// The values of a list whose rows are at `parent`.
    ListValues { parent: &'a Position<'a>, offsets: &'a OffsetBuffer<i32> },
}

impl Position<'_> {
    fn row(&self, index: usize) -> usize {
        match self {
            Position::Top => index,
            Position::ListValues { parent, offsets } => {
                // The list row whose range [offsets[r], offsets[r + 1]) holds `index`.
                let r = offsets.partition_point(|&o| o as usize <= index).saturating_sub(1);
                parent.row(r)
            }
        }
    }
}

/// The batch being conformed, to name rows in errors.
struct Input<'a> {
    key: Option<&'a ArrayRef>,
}

impl Input<'_> {
    /// The key of `row` as text, or `<missing>`.
    fn key_of(&self, row: usize) -> String {
        self.key
            .filter(|k| row < k.len() && k.is_valid(row))
            .and_then(|k| format_value(k.as_ref(), row))
            .unwrap_or_else(|| "<missing>".to_string())
    }
}

fn format_value(array: &dyn Array, index: usize) -> Option<String> {
    let options = FormatOptions::default();
    let formatter = ArrayFormatter::try_new(array, &options).ok()?;
    Some(formatter.value(index).to_string())
}

/// A data type as users read it: the Iceberg name if there is one, else Arrow's.
fn describe(data_type: &DataType) -> String {
    arrow_type_to_type(data_type).map(|t| type_name(&t)).unwrap_or_else(|_| data_type.to_string())
}

impl Conformer {
    /// A conformer to `target` (with field ids), for the table named `table` whose key column is
    /// `key`.
    pub(crate) fn new(target: SchemaRef, table: String, key: Option<String>) -> Self {
        Self { target, table, key }
    }

    /// `batch` rebuilt against the table's schema; see the module docs.
    pub(crate) fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let input_schema = batch.schema();
        for field in input_schema.fields() {
            if self.target.field_with_name(field.name()).is_err() {
                return Err(self.unknown_column(field.name()));
            }
        }
        let input = Input { key: self.key.as_deref().and_then(|k| batch.column_by_name(k)) };
        let rows = batch.num_rows();
        let mut columns = Vec::with_capacity(self.target.fields().len());
        for target in self.target.fields() {
            let column = match batch.column_by_name(target.name()) {
                Some(column) => {
                    self.conform_array(column, target, target.name(), Position::Top, &input)?
                }
                None if target.is_nullable() => {
                    arrow::array::new_null_array(target.data_type(), rows)
                }
                None => return Err(self.missing_required(target.name())),
            };
            self.check_required(&column, target, None, target.name(), Position::Top, &input)?;
            columns.push(column);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(self.target.clone(), columns, &options)?)
    }

    fn unknown_column(&self, path: &str) -> Error {
        Error::user(format!("column `{path}` is not in table {}", self.table)).with_hint(format!(
            "leave `{path}` out of the SELECT, or add the column to {}",
            self.table
        ))
    }

    fn missing_required(&self, path: &str) -> Error {
        Error::user(format!(
            "required column `{path}` of table {} is missing from the data written",
            self.table
        ))
        .with_hint(format!("include `{path}` in the SELECT"))
    }

    /// `array` (a column or nested child at `path`) converted to `target`'s type.
    fn conform_array(
        &self,
        array: &ArrayRef,
        target: &FieldRef,
        path: &str,
        position: Position<'_>,
        input: &Input<'_>,
    ) -> Result<ArrayRef> {
        if array.data_type() == &DataType::Null {
            return Ok(arrow::array::new_null_array(target.data_type(), array.len()));
        }
        match target.data_type() {
            DataType::Struct(children) => {
                let Some(structs) = array.as_struct_opt() else {
                    return Err(self.mismatch(path, array.data_type(), target.data_type()));
                };
                self.conform_struct(structs, children, path, position, input)
            }
            DataType::List(element) => {
                let lists: ArrayRef = match array.data_type() {
                    DataType::List(_) => array.clone(),
                    DataType::LargeList(f)
                    | DataType::FixedSizeList(f, _)
                    | DataType::ListView(f)
                    | DataType::LargeListView(f) => {
                        let as_list = DataType::List(f.clone());
                        self.cast(array, &as_list, path, position, input)?
                    }
                    other => return Err(self.mismatch(path, other, target.data_type())),
                };
                self.conform_list(lists.as_list::<i32>(), element, path, position, input)
            }
            wanted => self.cast(array, wanted, path, position, input),
        }
    }

    /// A struct column in the table's child order: every child it has must be in the table,
    /// and a required child it lacks is an error.
    fn conform_struct(
        &self,
        structs: &StructArray,
        children: &arrow::datatypes::Fields,
        path: &str,
        position: Position<'_>,
        input: &Input<'_>,
    ) -> Result<ArrayRef> {
        let DataType::Struct(input_children) = structs.data_type() else { unreachable!() };
        for child in input_children {
            if children.find(child.name()).is_none() {
                return Err(self.unknown_column(&format!("{path}.{}", child.name())));
            }
        }
        let mut columns = Vec::with_capacity(children.len());
        for child in children {
            let child_path = format!("{path}.{}", child.name());
            let column = match structs.column_by_name(child.name()) {
                Some(column) => self.conform_array(column, child, &child_path, position, input)?,
                None if child.is_nullable() => {
                    arrow::array::new_null_array(child.data_type(), structs.len())
                }
                None => return Err(self.missing_required(&child_path)),
            };
            let parent_nulls = structs.nulls();
            self.check_required(&column, child, parent_nulls, &child_path, position, input)?;
            columns.push(column);
        }
        let rebuilt = if columns.is_empty() {
            StructArray::new_empty_fields(structs.len(), structs.nulls().cloned())
        } else {
            StructArray::try_new(children.clone(), columns, structs.nulls().cloned())?
        };
        Ok(Arc::new(rebuilt))
    }

    /// A list column whose elements are conformed to the table's element type.
    fn conform_list(
        &self,
        lists: &ListArray,
        element: &FieldRef,
        path: &str,
        position: Position<'_>,
        input: &Input<'_>,
    ) -> Result<ArrayRef> {
        let element_path = format!("{path}.element");
        let element_position = Position::ListValues { parent: &position, offsets: lists.offsets() };
        let values =
            self.conform_array(lists.values(), element, &element_path, element_position, input)?;
        self.check_required(&values, element, None, &element_path, element_position, input)?;
        let rebuilt = ListArray::try_new(
            element.clone(),
            lists.offsets().clone(),
            values,
            lists.nulls().cloned(),
        )?;
        Ok(Arc::new(rebuilt))
    }

    /// A cast that fails on values that do not fit, naming the first one.
    fn cast(
        &self,
        array: &ArrayRef,
        to: &DataType,
        path: &str,
        position: Position<'_>,
        input: &Input<'_>,
    ) -> Result<ArrayRef> {
        if array.data_type() == to {
            return Ok(array.clone());
        }
        if !can_cast_types(array.data_type(), to) {
            return Err(self.mismatch(path, array.data_type(), to));
        }
        let strict = CastOptions { safe: false, ..Default::default() };
        match cast_with_options(array, to, &strict) {
            Ok(cast) => Ok(cast),
            Err(error) => {
                // Find the first value that did not fit: a lenient cast turns it into null.
                let lenient = cast_with_options(array, to, &CastOptions::default()).ok();
                let index = lenient.and_then(|cast| {
                    (0..array.len()).find(|&i| array.is_valid(i) && cast.is_null(i))
                });
                let (row, value) = match index {
                    Some(i) => (Some(position.row(i)), format_value(array.as_ref(), i)),
                    None => (None, None),
                };
                let value = value.map(|v| format!("value {v:?}")).unwrap_or("a value".into());
                Err(Error::Convert {
                    id: row.map(|r| input.key_of(r)).unwrap_or_else(|| "<unknown>".into()),
                    field: path.to_string(),
                    reason: format!(
                        "{value} does not fit {} (column type in {}): {error}",
                        describe(to),
                        self.table
                    ),
                })
            }
        }
    }

    /// Fails when `array` holds a null (where its parent is valid) although `field` is required.
    fn check_required(
        &self,
        array: &ArrayRef,
        field: &Field,
        parent_nulls: Option<&NullBuffer>,
        path: &str,
        position: Position<'_>,
        input: &Input<'_>,
    ) -> Result<()> {
        if field.is_nullable() || array.null_count() == 0 {
            return Ok(());
        }
        let Some(nulls) = array.logical_nulls() else { return Ok(()) };
        let first = (0..array.len())
            .find(|&i| nulls.is_null(i) && parent_nulls.is_none_or(|p| p.is_valid(i)));
        match first {
            None => Ok(()),
            Some(i) => Err(Error::Convert {
                id: input.key_of(position.row(i)),
                field: path.to_string(),
                reason: format!("is null, but the column is required in {}", self.table),
            }),
        }
    }

    fn mismatch(&self, path: &str, have: &DataType, want: &DataType) -> Error {
        let (have, want) = (describe(have), describe(want));
        Error::user(format!(
            "column `{path}` is {have} in the data written, but {want} in table {}, and the one \
             cannot be converted to the other",
            self.table
        ))
        .with_hint(format!("cast `{path}` in the SELECT to {want}"))
    }
}
