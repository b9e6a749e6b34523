//! BSON → Arrow: raw BSON documents appended row by row into Arrow columns of a given schema
//! (usually the inferred one, or a projection of it), finished into `RecordBatch`es.
//!
//! The conversion reads `RawDocument`s in place: no `bson::Document` is built, fields outside the
//! schema are skipped without parsing their values, strings are copied once into the column.
//! Widening on read: Int64 ← int32; Float64 ← int32, int64 that a double holds exactly (every
//! int up to 2^53 in magnitude); Int32 ← int64 that fits; Decimal128(p, s) ← int32, int64,
//! decimal (exactly rescaled, never rounded); Timestamp ← date (in the unit's range);
//! Utf8 ← anything (strings as they are, ObjectIds as 24 hex digits, decimals as their decimal
//! text such as `12.50` or `NaN`, everything else — documents and arrays however deep, such as
//! those nested below [`super::infer::MAX_NESTING_DEPTH`] — as relaxed Extended JSON; a Utf8
//! field whose metadata has [`ENCODING_KEY`] = [`EXTJSON`] holds every value as relaxed
//! Extended JSON, strings quoted); Binary ← any binary; FixedSizeBinary(16) ← 16-byte binary.
//! Anything else is an [`Error::Convert`] naming the document's `_id`, the field path and both
//! types.
//!
//! All-or-nothing appends: every column buffer can be truncated back to a row count, and a
//! column's own length determines the lengths of its children (a list's offsets say how many
//! elements it committed). So [`BatchBuilder::append`] just writes, and on an error truncates
//! every column to the row count before the document — no validation pass, no copying on the
//! happy path.

use std::collections::HashMap;
use std::io::Write as _;
use std::mem;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, BooleanBufferBuilder, Decimal128Array,
    FixedSizeBinaryArray, Float64Array, Int32Array, Int64Array, ListArray, NullBufferBuilder,
    StringArray, StructArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray, new_null_array,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use bson::{RawBsonRef, RawDocument};

use super::decimal::{self, RescaleError};
use super::ext_json::{self, Malformed};
use super::kind::BsonKind;
use crate::{Error, Result};

/// Field metadata key saying how a Utf8 column writes its values (see [`EXTJSON`]).
pub const ENCODING_KEY: &str = "misql.encoding";

/// [`ENCODING_KEY`] value: every value is written as relaxed Extended JSON, strings quoted and
/// ObjectIds as `{"$oid":"..."}`, so that values of different kinds never share a text. The
/// inference gives it to an `_id` of mixed kinds, whose text is a key.
pub const EXTJSON: &str = "extjson";

/// `_id` of a document as relaxed Extended JSON, for error messages: `{"$oid":"..."}`, `42`,
/// `"abc"`; `<missing>` if the document has none, `<malformed>` if it cannot be read.
pub fn document_id(doc: &RawDocument) -> String {
    match doc.get("_id") {
        Ok(Some(id)) => ext_json::to_string(id),
        Ok(None) => "<missing>".to_owned(),
        Err(_) => "<malformed>".to_owned(),
    }
}

/// The relaxed Extended JSON text of any BSON value (see [`super::ext_json`]).
pub fn relaxed_ext_json(value: RawBsonRef<'_>) -> String {
    ext_json::to_string(value)
}

/// Builds `RecordBatch`es of a fixed schema from raw BSON documents.
pub struct BatchBuilder {
    schema: SchemaRef,
    root: Record,
    len: usize,
    /// Where the last failed append failed, outermost segment first.
    failed_at: Vec<Segment>,
}

impl BatchBuilder {
    /// A builder for `schema`, which may be a projection (any subset of the columns, nested
    /// fields included); document fields not in it are skipped. Columns of types the BSON reader
    /// does not produce (e.g. Float32, Map) only accept null or missing values.
    pub fn new(schema: SchemaRef) -> Self {
        let root = Record::new(schema.fields().clone());
        Self { schema, root, len: 0, failed_at: Vec::new() }
    }

    /// The schema of the batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Appends one document as a row. All or nothing: on error no column keeps any part of the
    /// document, and the builder is ready for the next one.
    pub fn append(&mut self, doc: &RawDocument) -> Result<()> {
        match self.root.append(doc, false) {
            Ok(()) => {
                self.len += 1;
                Ok(())
            }
            Err(e) => {
                self.root.truncate(self.len);
                let field = e.path();
                self.failed_at = e.path.into_iter().rev().collect();
                Err(Error::Convert { id: document_id(doc), field, reason: e.reason })
            }
        }
    }

    /// Appends `doc` only if it fits the schema as it is — every field that has a value is a
    /// column, no int64 meets an int32 column, no decimal meets a decimal column narrower than
    /// 38 digits (the ways a `SELECT *` sync's schema grows), and every value converts — and
    /// says whether it did; when not, nothing of it is kept. One pass over the document: the
    /// usual document of a `SELECT *` sync needs no schema inference.
    pub fn append_if_fits(&mut self, doc: &RawDocument) -> bool {
        match self.root.append(doc, true) {
            Ok(()) => {
                self.len += 1;
                true
            }
            Err(_) => {
                self.root.truncate(self.len);
                false
            }
        }
    }

    /// Where the last failed [`BatchBuilder::append`] failed: the field keys and array indices
    /// from the document down to the value that did not fit (empty for unreadable BSON).
    pub fn failed_at(&self) -> &[Segment] {
        &self.failed_at
    }

    /// Rows appended since the last [`BatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no rows were appended since the last [`BatchBuilder::finish`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Approximate bytes buffered, for batch size limits.
    pub fn byte_size(&self) -> usize {
        self.root.columns.iter().map(Column::byte_size).sum()
    }

    /// The rows appended so far as a batch; the builder starts over empty.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let columns = self.root.finish_columns()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.len));
        self.len = 0;
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?)
    }
}

/// A conversion failure on its way up: the reason, and the path collected while unwinding
/// (innermost segment first).
#[derive(Debug)]
struct Failure {
    reason: String,
    path: Vec<Segment>,
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A field of a document, by key.
    Key(String),
    /// An element of an array, by index.
    Index(usize),
}

impl Failure {
    fn new(reason: String) -> Self {
        Self { reason, path: Vec::new() }
    }

    fn at(mut self, segment: Segment) -> Self {
        self.path.push(segment);
        self
    }

    /// MongoDB-style dotted path: `items.2.qty` (`.a` for the field `a` of a field named ``).
    fn path(&self) -> String {
        let mut out = String::new();
        for (i, segment) in self.path.iter().rev().enumerate() {
            if i > 0 {
                out.push('.');
            }
            match segment {
                Segment::Key(key) => out.push_str(key),
                Segment::Index(i) => out.push_str(&i.to_string()),
            }
        }
        out
    }
}

impl From<Malformed> for Failure {
    fn from(e: Malformed) -> Self {
        Failure::new(e.to_string())
    }
}

impl From<bson::error::Error> for Failure {
    fn from(e: bson::error::Error) -> Self {
        Failure::from(Malformed::from(e))
    }
}

/// `expected <column type>, found <kind> <value>[ (<why>)]`, with the value cut short.
fn mismatch(expected: &DataType, found: RawBsonRef<'_>, why: Option<&str>) -> Failure {
    const MAX: usize = 40;
    let mut text = ext_json::to_string(found);
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    let mut reason =
        format!("expected {}, found {} {text}", type_name(expected), BsonKind::of(found));
    if let Some(why) = why {
        reason.push_str(&format!(" ({why})"));
    }
    Failure::new(reason)
}

/// Short lower-case name of a column type for messages.
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float64 => "float64".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Utf8 => "string".into(),
        DataType::Binary => "binary".into(),
        DataType::FixedSizeBinary(n) => format!("{n}-byte binary"),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Decimal128(p, s) => format!("decimal({p}, {s})"),
        DataType::Struct(_) => "document".into(),
        DataType::List(_) => "array".into(),
        other => other.to_string().to_lowercase(),
    }
}

/// The columns of a struct (or of the batch), with the lookup from field name to column.
struct Record {
    fields: Fields,
    columns: Vec<Column>,
    /// Which columns the current document set, to append nulls for the rest and to let the
    /// first of duplicate keys win.
    seen: Vec<bool>,
    /// Name lookup for wide records; narrow ones scan `fields`.
    index: Option<HashMap<String, usize>>,
}

/// Records with more fields than this get a hash map for name lookups.
const LINEAR_LOOKUP_MAX: usize = 12;

impl Record {
    fn new(fields: Fields) -> Self {
        let columns = fields.iter().map(|f| Column::for_field(f)).collect();
        let index = (fields.len() > LINEAR_LOOKUP_MAX).then(|| {
            let mut index = HashMap::with_capacity(fields.len());
            for (i, field) in fields.iter().enumerate() {
                index.entry(field.name().clone()).or_insert(i);
            }
            index
        });
        Self { seen: vec![false; fields.len()], fields, columns, index }
    }

    /// The column for `key`. Documents usually repeat the schema's field order, so the field
    /// after the previous match (`hint`) is tried first.
    fn find(&self, key: &str, hint: usize) -> Option<usize> {
        if self.fields.get(hint).is_some_and(|f| f.name() == key) {
            return Some(hint);
        }
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.fields.iter().position(|f| f.name() == key),
        }
    }

    /// Appends one document: each column gets its field's value, or null if it is missing.
    /// `strict`: a field with a value but no column, or a value the column's type would have to
    /// grow for, fails (see [`BatchBuilder::append_if_fits`]).
    fn append(&mut self, doc: &RawDocument, strict: bool) -> Result<(), Failure> {
        self.seen.fill(false);
        let mut hint = 0;
        for element in doc.iter_elements() {
            let element = element?;
            let key = element.key().as_str();
            let Some(i) = self.find(key, hint) else {
                if strict && element.element_type() != bson::spec::ElementType::Null {
                    return Err(Failure::new(format!("no column for field `{key}`")));
                }
                continue;
            };
            hint = i + 1;
            if mem::replace(&mut self.seen[i], true) {
                continue; // a repeated key: the first occurrence wins
            }
            let value = element.value().map_err(|e| Failure::from(e).at(key_segment(key)))?;
            self.columns[i].append(value, strict).map_err(|e| e.at(key_segment(key)))?;
        }
        for (i, column) in self.columns.iter_mut().enumerate() {
            if !self.seen[i] {
                column.append_null(true).map_err(|e| e.at(key_segment(self.fields[i].name())))?;
            }
        }
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        for column in &mut self.columns {
            column.truncate(len);
        }
    }

    fn finish_columns(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        self.columns.iter_mut().map(Column::finish).collect()
    }
}

fn key_segment(key: &str) -> Segment {
    Segment::Key(key.to_owned())
}

/// One column being built: its validity and its values.
struct Column {
    data_type: DataType,
    nullable: bool,
    nulls: NullBufferBuilder,
    values: Values,
}

/// Value buffers per column type. Variable-size values keep Arrow's offsets layout (starting
/// with a 0) so truncating to `n` rows is `offsets.truncate(n + 1)` plus the bytes they cover.
enum Values {
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
    fn for_field(field: &Field) -> Self {
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

    fn len(&self) -> usize {
        self.nulls.len()
    }

    /// Appends a null. `checked`: fail if the column is not nullable; unchecked nulls are for
    /// the children of a null struct, which the struct's validity masks.
    fn append_null(&mut self, checked: bool) -> Result<(), Failure> {
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
    fn append(&mut self, value: RawBsonRef<'_>, strict: bool) -> Result<(), Failure> {
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
                match value {
                    _ if *extjson => ext_json::write_value(bytes, value)?,
                    RawBsonRef::String(s) => bytes.extend_from_slice(s.as_bytes()),
                    RawBsonRef::ObjectId(oid) => ext_json::write_hex(bytes, &oid.bytes()),
                    // The decimal's own text, like the other numbers (and castable like them).
                    RawBsonRef::Decimal128(d) => {
                        let _ = write!(bytes, "{d}");
                    }
                    other => ext_json::write_value(bytes, other)?,
                }
                offsets.push(offset(bytes.len())?);
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
                let scaled = match value {
                    RawBsonRef::Decimal128(d) => {
                        decimal::decode(d.bytes()).to_scaled(*precision, *scale)
                    }
                    RawBsonRef::Int32(x) => decimal::int_to_scaled(x.into(), *precision, *scale),
                    RawBsonRef::Int64(x) => decimal::int_to_scaled(x, *precision, *scale),
                    _ => return Err(wrong(None)),
                };
                match scaled {
                    Ok(x) => values.push(x),
                    Err(RescaleError::NotFinite) => return Err(wrong(Some("not a number"))),
                    Err(RescaleError::Scale { needed }) => {
                        return Err(wrong(Some(&format!(
                            "needs {needed} decimal places, would be rounded"
                        ))));
                    }
                    Err(RescaleError::Precision) => {
                        return Err(wrong(Some(&format!("more than {precision} digits"))));
                    }
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
                for (i, item) in array.into_iter().enumerate() {
                    let item = item.map_err(|e| Failure::from(e).at(Segment::Index(i)))?;
                    child.append(item, strict).map_err(|e| e.at(Segment::Index(i)))?;
                }
                offsets.push(offset(child.len())?);
            }
            _ => return Err(wrong(None)),
        }
        self.nulls.append_non_null();
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
    fn truncate(&mut self, len: usize) {
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

    fn byte_size(&self) -> usize {
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

    /// The array of the rows so far; the column starts over empty, with the same capacity.
    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let len = self.len();
        let nulls = self.nulls.finish();
        Ok(match &mut self.values {
            Values::Int32(v) => Arc::new(Int32Array::new(take(v).into(), nulls)),
            Values::Int64(v) => Arc::new(Int64Array::new(take(v).into(), nulls)),
            Values::Float64(v) => Arc::new(Float64Array::new(take(v).into(), nulls)),
            Values::Boolean(v) => Arc::new(BooleanArray::new(v.finish(), nulls)),
            Values::Timestamp { values, unit, tz } => {
                timestamp_array(take(values), *unit, tz.clone(), nulls)
            }
            Values::Decimal { values, precision, scale } => Arc::new(
                Decimal128Array::new(take(values).into(), nulls)
                    .with_precision_and_scale(*precision, *scale)?,
            ),
            Values::Utf8 { offsets, bytes, .. } => {
                let (offsets, bytes) = take_offsets(offsets, bytes);
                Arc::new(StringArray::try_new(offsets, bytes, nulls)?)
            }
            Values::Binary { offsets, bytes } => {
                let (offsets, bytes) = take_offsets(offsets, bytes);
                Arc::new(BinaryArray::try_new(offsets, bytes, nulls)?)
            }
            Values::Fixed16(v) => {
                Arc::new(FixedSizeBinaryArray::try_new(16, Buffer::from_vec(take(v)), nulls)?)
            }
            Values::Struct(record) => {
                let children = record.finish_columns()?;
                Arc::new(StructArray::try_new_with_length(
                    record.fields.clone(),
                    children,
                    nulls,
                    len,
                )?)
            }
            Values::List { field, offsets, child } => {
                let offsets = OffsetBuffer::new(take_keep_first(offsets).into());
                Arc::new(ListArray::try_new(field.clone(), offsets, child.finish()?, nulls)?)
            }
            Values::Unsupported => new_null_array(&self.data_type, len),
        })
    }
}

/// Takes the values out of `v`, leaving an empty vector of the same capacity for the next batch.
fn take<T>(v: &mut Vec<T>) -> Vec<T> {
    let capacity = v.len();
    mem::replace(v, Vec::with_capacity(capacity))
}

/// Takes offsets out, leaving `[0]` behind.
fn take_keep_first(offsets: &mut Vec<i32>) -> Vec<i32> {
    let mut fresh = Vec::with_capacity(offsets.len());
    fresh.push(0);
    mem::replace(offsets, fresh)
}

fn take_offsets(offsets: &mut Vec<i32>, bytes: &mut Vec<u8>) -> (OffsetBuffer<i32>, Buffer) {
    let offsets = OffsetBuffer::new(take_keep_first(offsets).into());
    (offsets, Buffer::from_vec(take(bytes)))
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

fn timestamp_array(
    values: Vec<i64>,
    unit: TimeUnit,
    tz: Option<Arc<str>>,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    match unit {
        TimeUnit::Second => {
            Arc::new(TimestampSecondArray::new(values.into(), nulls).with_timezone_opt(tz))
        }
        TimeUnit::Millisecond => {
            Arc::new(TimestampMillisecondArray::new(values.into(), nulls).with_timezone_opt(tz))
        }
        TimeUnit::Microsecond => {
            Arc::new(TimestampMicrosecondArray::new(values.into(), nulls).with_timezone_opt(tz))
        }
        TimeUnit::Nanosecond => {
            Arc::new(TimestampNanosecondArray::new(values.into(), nulls).with_timezone_opt(tz))
        }
    }
}
