//! One column being built: appending a value (widening as the module documentation of
//! [`super`] says), a null, and truncating back to a row count.

use std::io::Write as _;
use std::sync::Arc;

use arrow::array::{BooleanBufferBuilder, NullBufferBuilder};
use arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use bson::RawBsonRef;

use super::failure::{Failure, Segment, mismatch, type_name};
use super::record::Record;
use super::{ENCODING_KEY, EXTJSON};
use crate::mongo::decimal::{self, RescaleError};
use crate::mongo::ext_json;

/// One column being built: its validity and its values.
pub(super) struct Column {
    pub(super) data_type: DataType,
    pub(super) nullable: bool,
    pub(super) nulls: NullBufferBuilder,
    pub(super) values: Values,
}

/// Value buffers per column type. Variable-size values keep Arrow's offsets layout (starting
/// with a 0) so truncating to `n` rows is `offsets.truncate(n + 1)` plus the bytes they cover.
pub(super) enum Values {
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float64(Vec<f64>),
    Boolean(BooleanBufferBuilder),
    Timestamp {
        values: Vec<i64>,
        unit: TimeUnit,
        tz: Option<Arc<str>>,
    },
    Decimal {
        values: Vec<i128>,
        precision: u8,
        scale: i8,
    },
    Utf8 {
        offsets: Vec<i32>,
        bytes: Vec<u8>,
        /// Every value as relaxed Extended JSON ([`EXTJSON`]).
        extjson: bool,
    },
    Binary {
        offsets: Vec<i32>,
        bytes: Vec<u8>,
    },
    Fixed16(Vec<u8>),
    Struct(Box<Record>),
    List {
        field: FieldRef,
        offsets: Vec<i32>,
        child: Box<Column>,
    },
    /// A type the BSON reader does not produce: only nulls.
    Unsupported,
}

impl Column {
    pub(super) fn for_field(field: &Field) -> Self {
        let extjson = field.metadata().get(ENCODING_KEY).is_some_and(|v| v == EXTJSON);
        Self::new(field.data_type(), field.is_nullable(), extjson)
    }

    fn new(data_type: &DataType, nullable: bool, extjson: bool) -> Self {
        let values = match data_type {
            DataType::Int32 => Values::Int32(Vec::new()),
            DataType::Int64 => Values::Int64(Vec::new()),
            DataType::Float64 => Values::Float64(Vec::new()),
            DataType::Boolean => Values::Boolean(BooleanBufferBuilder::new(0)),
            DataType::Timestamp(unit, tz) => {
                Values::Timestamp { values: Vec::new(), unit: *unit, tz: tz.clone() }
            }
            DataType::Decimal128(precision, scale) => {
                Values::Decimal { values: Vec::new(), precision: *precision, scale: *scale }
            }
            DataType::Utf8 => Values::Utf8 { offsets: vec![0], bytes: Vec::new(), extjson },
            DataType::Binary => Values::Binary { offsets: vec![0], bytes: Vec::new() },
            DataType::FixedSizeBinary(16) => Values::Fixed16(Vec::new()),
            DataType::Struct(fields) => Values::Struct(Box::new(Record::new(fields.clone()))),
            DataType::List(field) => Values::List {
                field: field.clone(),
                offsets: vec![0],
                child: Box::new(Column::for_field(field)),
            },
            _ => Values::Unsupported,
        };
        Self { data_type: data_type.clone(), nullable, nulls: NullBufferBuilder::new(0), values }
    }

    pub(super) fn len(&self) -> usize {
        self.nulls.len()
    }

    /// Appends a null. `checked`: fail if the column is not nullable; unchecked nulls are for
    /// the children of a null struct, which the struct's validity masks.
    pub(super) fn append_null(&mut self, checked: bool) -> Result<(), Failure> {
        if checked && !self.nullable {
            return Err(Failure::new(format!(
                "null or missing, but the {} column is not nullable",
                type_name(&self.data_type)
            )));
        }
        match &mut self.values {
            Values::Int32(v) => v.push(0),
            Values::Int64(v) => v.push(0),
            Values::Float64(v) => v.push(0.0),
            Values::Boolean(v) => v.append(false),
            Values::Timestamp { values, .. } => values.push(0),
            Values::Decimal { values, .. } => values.push(0),
            Values::Utf8 { offsets, bytes, .. } | Values::Binary { offsets, bytes } => {
                offsets.push(bytes.len() as i32)
            }
            Values::Fixed16(v) => v.extend_from_slice(&[0; 16]),
            Values::Struct(record) => {
                for column in &mut record.columns {
                    column.append_null(false)?;
                }
            }
            Values::List { offsets, .. } => offsets.push(*offsets.last().unwrap_or(&0)),
            Values::Unsupported => {}
        }
        self.nulls.append_null();
        Ok(())
    }

    /// Appends one value, widening where the module documentation says so (`strict`: see
    /// [`Record::append`]).
    pub(super) fn append(&mut self, value: RawBsonRef<'_>, strict: bool) -> Result<(), Failure> {
        if strict && self.would_grow(value) {
            return Err(Failure::new("the column's type would grow for this value".into()));
        }
        // A null in a column that cannot hold one is written as the text `null` when the
        // column holds Extended JSON: a mixed-type `_id` can be null.
        if let RawBsonRef::Null = value
            && (self.nullable || !matches!(self.values, Values::Utf8 { extjson: true, .. }))
        {
            return self.append_null(true);
        }
        let wrong = |why: Option<&str>| mismatch(&self.data_type, value, why);
        match (&mut self.values, value) {
            (Values::Utf8 { offsets, bytes, extjson }, value) => {
                append_text(offsets, bytes, *extjson, value)?
            }
            (Values::Int32(v), RawBsonRef::Int32(x)) => v.push(x),
            (Values::Int32(v), RawBsonRef::Int64(x)) => match i32::try_from(x) {
                Ok(x) => v.push(x),
                Err(_) => return Err(wrong(Some("out of int32 range"))),
            },
            (Values::Int64(v), RawBsonRef::Int64(x)) => v.push(x),
            (Values::Int64(v), RawBsonRef::Int32(x)) => v.push(i64::from(x)),
            (Values::Float64(v), RawBsonRef::Double(x)) => v.push(x),
            (Values::Float64(v), RawBsonRef::Int32(x)) => v.push(f64::from(x)),
            (Values::Float64(v), RawBsonRef::Int64(x)) => match exact_double(x) {
                Some(x) => v.push(x),
                None => return Err(wrong(Some("a double would round it"))),
            },
            (Values::Boolean(v), RawBsonRef::Boolean(x)) => v.append(x),
            (Values::Timestamp { values, unit, .. }, RawBsonRef::DateTime(dt)) => {
                match from_millis(dt.timestamp_millis(), *unit) {
                    Some(x) => values.push(x),
                    None => return Err(wrong(Some("out of range for the timestamp unit"))),
                }
            }
            (Values::Decimal { values, precision, scale }, value) => {
                match to_decimal(value, *precision, *scale) {
                    Ok(x) => values.push(x),
                    Err(why) => return Err(wrong(why.as_deref())),
                }
            }
            (Values::Binary { offsets, bytes }, RawBsonRef::Binary(b)) => {
                bytes.extend_from_slice(b.bytes);
                offsets.push(offset(bytes.len())?);
            }
            (Values::Fixed16(v), RawBsonRef::Binary(b)) if b.bytes.len() == 16 => {
                v.extend_from_slice(b.bytes)
            }
            (Values::Struct(record), RawBsonRef::Document(doc)) => record.append(doc, strict)?,
            (Values::List { offsets, child, .. }, RawBsonRef::Array(array)) => {
                child.append_items(array, strict)?;
                offsets.push(offset(child.len())?);
            }
            _ => return Err(wrong(None)),
        }
        self.nulls.append_non_null();
        Ok(())
    }

    /// Appends the elements of `array`, each failure naming its index.
    fn append_items(&mut self, array: &bson::RawArray, strict: bool) -> Result<(), Failure> {
        for (i, item) in array.into_iter().enumerate() {
            let item = item.map_err(|e| Failure::from(e).at(Segment::Index(i)))?;
            self.append(item, strict).map_err(|e| e.at(Segment::Index(i)))?;
        }
        Ok(())
    }

    /// Whether a `SELECT *` sync's schema grows this column for `value` (an int32 column meeting
    /// an int64, a decimal column narrower than 38 digits meeting a decimal).
    fn would_grow(&self, value: RawBsonRef<'_>) -> bool {
        match (&self.values, value) {
            (Values::Int32(_), RawBsonRef::Int64(_)) => true,
            (Values::Decimal { precision, .. }, RawBsonRef::Decimal128(_)) => {
                *precision < decimal::MAX_PRECISION
            }
            _ => false,
        }
    }

    /// Drops rows from `len` on, here and in the children.
    pub(super) fn truncate(&mut self, len: usize) {
        self.nulls.truncate(len);
        match &mut self.values {
            Values::Int32(v) => v.truncate(len),
            Values::Int64(v) => v.truncate(len),
            Values::Float64(v) => v.truncate(len),
            Values::Boolean(v) => v.truncate(len),
            Values::Timestamp { values, .. } => values.truncate(len),
            Values::Decimal { values, .. } => values.truncate(len),
            Values::Utf8 { offsets, bytes, .. } | Values::Binary { offsets, bytes } => {
                offsets.truncate(len + 1);
                bytes.truncate(offsets[len] as usize);
            }
            Values::Fixed16(v) => v.truncate(len * 16),
            Values::Struct(record) => record.truncate(len),
            Values::List { offsets, child, .. } => {
                offsets.truncate(len + 1);
                child.truncate(offsets[len] as usize);
            }
            Values::Unsupported => {}
        }
    }

    pub(super) fn byte_size(&self) -> usize {
        let values = match &self.values {
            Values::Int32(v) => v.len() * 4,
            Values::Int64(v) => v.len() * 8,
            Values::Float64(v) => v.len() * 8,
            Values::Boolean(v) => v.len() / 8,
            Values::Timestamp { values, .. } => values.len() * 8,
            Values::Decimal { values, .. } => values.len() * 16,
            Values::Utf8 { offsets, bytes, .. } | Values::Binary { offsets, bytes } => {
                offsets.len() * 4 + bytes.len()
            }
            Values::Fixed16(v) => v.len(),
            Values::Struct(record) => record.columns.iter().map(Column::byte_size).sum(),
            Values::List { offsets, child, .. } => offsets.len() * 4 + child.byte_size(),
            Values::Unsupported => 0,
        };
        values + self.len() / 8
    }
}

/// Appends `value` to a Utf8 column's buffers: strings as they are, ObjectIds as 24 hex digits,
/// decimals as their text, everything else (or everything, with `extjson`) as relaxed Extended
/// JSON.
fn append_text(
    offsets: &mut Vec<i32>,
    bytes: &mut Vec<u8>,
    extjson: bool,
    value: RawBsonRef<'_>,
) -> Result<(), Failure> {
    match value {
        _ if extjson => ext_json::write_value(bytes, value)?,
        RawBsonRef::String(s) => bytes.extend_from_slice(s.as_bytes()),
        RawBsonRef::ObjectId(oid) => ext_json::write_hex(bytes, &oid.bytes()),
        // The decimal's own text, like the other numbers (and castable like them).
        RawBsonRef::Decimal128(d) => {
            let _ = write!(bytes, "{d}");
        }
        other => ext_json::write_value(bytes, other)?,
    }
    offsets.push(offset(bytes.len())?);
    Ok(())
}

/// `value` (a decimal or an int) exactly rescaled to `Decimal128(precision, scale)`; the error
/// says why it does not fit (`None`: not a kind a decimal column reads).
fn to_decimal(value: RawBsonRef<'_>, precision: u8, scale: i8) -> Result<i128, Option<String>> {
    let scaled = match value {
        RawBsonRef::Decimal128(d) => decimal::decode(d.bytes()).to_scaled(precision, scale),
        RawBsonRef::Int32(x) => decimal::int_to_scaled(x.into(), precision, scale),
        RawBsonRef::Int64(x) => decimal::int_to_scaled(x, precision, scale),
        _ => return Err(None),
    };
    scaled.map_err(|e| {
        Some(match e {
            RescaleError::NotFinite => "not a number".to_owned(),
            RescaleError::Scale { needed } => {
                format!("needs {needed} decimal places, would be rounded")
            }
            RescaleError::Precision => format!("more than {precision} digits"),
        })
    })
}

/// An offset into a variable-size buffer, which Arrow's 32-bit offsets limit to 2 GiB per
/// batch.
fn offset(len: usize) -> Result<i32, Failure> {
    i32::try_from(len).map_err(|_| {
        Failure::new("more than 2 GiB of values in one batch; lower the batch size".to_owned())
    })
}

/// `x` as a double, if the double is exactly `x` (always for |x| ≤ 2^53).
fn exact_double(x: i64) -> Option<f64> {
    let d = x as f64;
    // 2^63 (what i64::MAX rounds to) is out of i64 range: compare in i128.
    (d as i128 == i128::from(x)).then_some(d)
}

fn from_millis(millis: i64, unit: TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => (millis % 1000 == 0).then_some(millis / 1000),
        TimeUnit::Millisecond => Some(millis),
        TimeUnit::Microsecond => millis.checked_mul(1_000),
        TimeUnit::Nanosecond => millis.checked_mul(1_000_000),
    }
}
