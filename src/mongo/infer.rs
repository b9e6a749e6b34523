//! Schema inference: statistics over sampled documents, turned into an Arrow schema with the
//! mapping of DESIGN.md ("BSON → Arrow → Iceberg types") and into per-field reports for
//! `DESCRIBE` and filter pushdown.
//!
//! Unification rules, per field, over the non-null kinds seen (null never conflicts):
//! - int32 only → Int32; int32 + int64 → Int64; ints + double → Float64 when every int seen is
//!   exactly a double (|v| ≤ 2^53), otherwise Utf8 (a double would round the large ints);
//! - decimal (+ ints) → Decimal128(38, s), s = the largest scale seen; the integer digits of the
//!   decimals and of the ints seen must fit in 38 - s digits, otherwise (and when NaN or
//!   ±Infinity was seen) Utf8. Decimal + double → Utf8 (a double has no exact decimal value);
//! - documents → Struct of the merged fields in first-seen order (a field only ever seen as `{}`
//!   → Utf8); arrays → List of the unified element type (only empty arrays → List<Utf8>);
//! - a document or array that would nest deeper than [`MAX_NESTING_DEPTH`] struct and list
//!   types from its top-level column (the column's own type counts, list elements count) →
//!   Utf8, each value its relaxed Extended JSON: the Iceberg schema of deeper columns could not
//!   be loaded back (see the constant);
//! - 16-byte binary subtype 4 only → FixedSizeBinary(16); any other binary mix → Binary;
//! - bool, date, string, ObjectId → Boolean, Timestamp(µs, UTC), Utf8, Utf8;
//! - null only, the exotic kinds (regex, javascript, symbol, minKey, maxKey, timestamp,
//!   dbPointer, undefined) and every other mix → Utf8 holding relaxed Extended JSON.
//!
//! `_id` is always the first column and not nullable (Utf8 if the sample is empty); every other
//! column and nested field is nullable. An `_id` seen with more than one kind (ObjectId and string,
//! say) is a Utf8 column with the field metadata [`ENCODING_KEY`] = [`EXTJSON`]: every value is written as relaxed Extended
//! JSON, strings quoted, so that different keys never become the same text (`"5"` and `5`,
//! an ObjectId and the string of its hex digits).
//!
//! Each [`FieldReport`] also says how deep values nest below the field and, for a field whose
//! kinds conflict and that ends up as text, the cast a user would write to get a typed column
//! ([`FieldReport::suggested_cast`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bson::{RawBsonRef, RawDocument};

use super::bson_arrow::{ENCODING_KEY, EXTJSON, document_id};
use super::decimal::{self, MAX_PRECISION};
use super::ext_json::Malformed;
pub use super::kind::BsonKind;
pub use crate::lake::schema::MAX_NESTING_DEPTH;

/// Statistics of one field path (or of the elements of an array).
#[derive(Debug, Default)]
struct Node {
    present: u64,
    counts: [u64; BsonKind::ALL.len()],
    max_array_len: Option<u64>,
    /// Largest scale (fractional digits) of the decimals seen.
    decimal_scale: u32,
    /// Largest number of integer digits of the decimals and of the ints seen.
    integer_digits: u32,
    /// A NaN or ±Infinity decimal was seen.
    decimal_special: bool,
    /// The largest magnitude of the ints seen (to tell whether a double holds them exactly).
    max_int_magnitude: u64,
    /// The deepest nesting of documents and arrays in the values seen (0 for scalars).
    max_depth: u32,
    /// How the numbers and strings seen would read as numeric text, for suggested casts.
    text: NumericText,
    /// Fields of the documents seen here.
    children: Children,
    /// Statistics of the elements of the arrays seen here.
    items: Option<Box<Node>>,
    /// The last document value this field was seen in, to let the first of duplicate keys win.
    stamp: u64,
}

/// The fields of the documents seen at one path, in first-seen order.
#[derive(Debug, Default)]
struct Children {
    names: Vec<String>,
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
}

impl Children {
    /// The position of field `name`, added if new. Documents mostly repeat one field order, so
    /// the position after the previous field (`hint`) is tried before the hash map.
    fn position(&mut self, name: &str, hint: usize) -> usize {
        if self.names.get(hint).is_some_and(|n| n == name) {
            return hint;
        }
        match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.index.insert(name.to_owned(), self.names.len());
                self.names.push(name.to_owned());
                self.nodes.push(Node::default());
                self.names.len() - 1
            }
        }
    }

    fn get(&self, name: &str) -> Option<&Node> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Statistics of the fields of one document value; returns the deepest nesting of its
    /// field values.
    fn observe(&mut self, doc: &RawDocument, clock: &mut u64) -> Result<u32, Malformed> {
        *clock += 1;
        let stamp = *clock;
        let mut hint = 0;
        let mut depth = 0;
        for element in doc.iter_elements() {
            let element = element?;
            let i = self.position(element.key().as_str(), hint);
            hint = i + 1;
            let node = &mut self.nodes[i];
            if node.stamp == stamp {
                continue; // a repeated key: the first occurrence wins, as in the conversion
            }
            node.stamp = stamp;
            depth = depth.max(node.observe(element.value()?, clock)?);
        }
        Ok(depth)
    }
}

/// Bit masks over [`BsonKind`]s.
const fn bit(kind: BsonKind) -> u32 {
    1 << kind as u32
}
const INTS: u32 = bit(BsonKind::Int32) | bit(BsonKind::Int64);
const NUMBERS: u32 = INTS | bit(BsonKind::Double);
const BINARIES: u32 = bit(BsonKind::Binary) | bit(BsonKind::Uuid);
const NUMERIC_TEXT: u32 = NUMBERS | bit(BsonKind::Decimal128) | bit(BsonKind::String);

/// The largest integer magnitude a double holds exactly: 2^53.
const EXACT_DOUBLE_INT: u64 = 1 << 53;

/// What the numbers and strings of a field look like as text (the way a Utf8 column writes
/// them), to suggest a cast that would parse every one of them.
#[derive(Debug, Default)]
struct NumericText {
    /// Strings that are not an integer fitting int64.
    non_integer_strings: u64,
    /// Strings that are not a number at all.
    non_numeric_strings: u64,
    /// A number written with an exponent (`1e300`, `1.5E+10`) was seen.
    exponent: bool,
    /// A NaN or infinite double or decimal was seen.
    non_finite: bool,
    /// A double was seen (never integer text: `1.0`).
    double: bool,
    /// Largest number of fractional digits of the doubles and numeric strings seen.
    scale: u32,
    /// Largest number of integer digits of the doubles and numeric strings seen.
    integer_digits: u32,
}

impl NumericText {
    fn double(&mut self, v: f64) {
        self.double = true;
        if !v.is_finite() {
            self.non_finite = true;
            return;
        }
        // The text a Utf8 column holds for a double (see `ext_json`).
        let text = format!("{v:?}");
        self.number_text(&text);
    }

    fn string(&mut self, s: &str) {
        let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
        let is_integer = !unsigned.is_empty()
            && unsigned.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<i64>().is_ok();
        if !is_integer {
            self.non_integer_strings += 1;
        }
        if !self.number_text(s) {
            self.non_numeric_strings += 1;
        }
    }

    /// Records the digits of numeric text (`12.50`, `-3`, `1e300`); false if it is not a number.
    fn number_text(&mut self, text: &str) -> bool {
        let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
            None => (unsigned, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) {
            return false;
        }
        if let Some(exponent) = exponent {
            let e = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
            if e.is_empty() || !digits(e) {
                return false;
            }
            self.exponent = true;
            return true;
        }
        let significant = int.trim_start_matches('0').len() as u32;
        self.integer_digits = self.integer_digits.max(significant);
        self.scale = self.scale.max(frac.len() as u32);
        true
    }
}

impl Node {
    /// Adds one value; returns how deep it nests (0 for a scalar, 1 for `{a: 1}` or `[1]`).
    fn observe(&mut self, value: RawBsonRef<'_>, clock: &mut u64) -> Result<u32, Malformed> {
        let kind = BsonKind::of(value);
        self.present += 1;
        self.counts[kind.index()] += 1;
        match value {
            RawBsonRef::Int32(v) => self.integer(u64::from(v.unsigned_abs())),
            RawBsonRef::Int64(v) => self.integer(v.unsigned_abs()),
            RawBsonRef::Double(v) => self.text.double(v),
            RawBsonRef::String(s) => self.text.string(s),
            RawBsonRef::Decimal128(d) => {
                let d = decimal::decode(d.bytes());
                match (d.scale(), d.integer_digits()) {
                    (Some(scale), Some(digits)) => {
                        self.decimal_scale = self.decimal_scale.max(scale);
                        self.integer_digits = self.integer_digits.max(digits);
                        if d.is_scientific() {
                            self.text.exponent = true; // written like `1.5E+10`
                        }
                    }
                    _ => self.decimal_special = true,
                }
            }
            _ => {}
        }
        let depth = match value {
            RawBsonRef::Document(doc) => 1 + self.children.observe(doc, clock)?,
            RawBsonRef::Array(array) => {
                let items = self.items.get_or_insert_default();
                let mut len = 0;
                let mut depth = 0;
                for item in array {
                    depth = depth.max(items.observe(item?, clock)?);
                    len += 1;
                }
                self.max_array_len = Some(self.max_array_len.unwrap_or(0).max(len));
                1 + depth
            }
            _ => 0,
        };
        self.max_depth = self.max_depth.max(depth);
        Ok(depth)
    }

    fn integer(&mut self, magnitude: u64) {
        let digits = if magnitude == 0 { 0 } else { decimal::digits(u128::from(magnitude)) };
        self.integer_digits = self.integer_digits.max(digits);
        self.max_int_magnitude = self.max_int_magnitude.max(magnitude);
    }

    /// The non-null kinds seen, as a bit mask.
    fn mask(&self) -> u32 {
        BsonKind::ALL
            .iter()
            .filter(|k| **k != BsonKind::Null && self.counts[k.index()] > 0)
            .fold(0, |mask, k| mask | bit(*k))
    }

    /// Kinds seen with their counts, most frequent first (ties in [`BsonKind::ALL`] order).
    fn kinds(&self) -> Vec<(BsonKind, u64)> {
        let mut kinds: Vec<_> = BsonKind::ALL
            .iter()
            .map(|k| (*k, self.counts[k.index()]))
            .filter(|(_, n)| *n > 0)
            .collect();
        kinds.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        kinds
    }

    /// The Arrow type of this field, which may nest `room` more struct and list types (see
    /// [`MAX_NESTING_DEPTH`]): a document or array with no room left is Utf8. With a reporter,
    /// also pushes a [`FieldReport`] for this field and every field below it, depth-first;
    /// either way each node is visited once.
    fn resolve(
        &self,
        mut reporter: Option<&mut Reporter>,
        nullable: bool,
        room: usize,
    ) -> DataType {
        let slot = reporter.as_deref_mut().map(|r| r.open(self, nullable));
        let mask = self.mask();
        let nested = mask == bit(BsonKind::Array)
            || (mask == bit(BsonKind::Document) && !self.children.names.is_empty());
        let data_type = if nested && room == 0 {
            DataType::Utf8
        } else if nested && mask == bit(BsonKind::Document) {
            self.struct_type(reporter.as_deref_mut(), room - 1)
        } else if nested {
            self.list_type(reporter.as_deref_mut(), room - 1)
        } else {
            self.scalar_type(mask)
        };
        if let (Some(r), Some(slot)) = (reporter, slot) {
            r.out[slot].suggested_cast = self.suggest(&data_type, &r.path, &r.sql);
            r.out[slot].data_type = data_type.clone();
            r.out[slot].too_deep = nested && room == 0;
        }
        data_type
    }

    /// The Struct of the fields seen in this field's documents, each nesting at most `room`.
    fn struct_type(&self, mut reporter: Option<&mut Reporter>, room: usize) -> DataType {
        let fields: Vec<Field> = self
            .children
            .names
            .iter()
            .zip(&self.children.nodes)
            .map(|(name, child)| {
                let child_type = child.resolve_below(reporter.as_deref_mut(), name, room);
                Field::new(name, child_type, true)
            })
            .collect();
        DataType::Struct(Fields::from(fields))
    }

    /// The List of the unified element type (Utf8 if no element was seen), nesting at most
    /// `room`.
    fn list_type(&self, reporter: Option<&mut Reporter>, room: usize) -> DataType {
        let item_type = match self.items.as_deref() {
            Some(items) if items.present > 0 => items.resolve_below(reporter, "[]", room),
            _ => DataType::Utf8,
        };
        DataType::List(Arc::new(Field::new("item", item_type, true)))
    }

    /// [`Node::resolve`] of this node as the field `segment` (or `[]` for list elements) of
    /// the reporter's current path.
    fn resolve_below(
        &self,
        mut reporter: Option<&mut Reporter>,
        segment: &str,
        room: usize,
    ) -> DataType {
        let restore = reporter.as_deref_mut().map(|r| r.enter(segment));
        let data_type = self.resolve(reporter.as_deref_mut(), true, room);
        if let (Some(r), Some(restore)) = (reporter, restore) {
            r.leave(restore);
        }
        data_type
    }

    /// The type of a field whose kinds (bit `mask`) make no struct or list.
    fn scalar_type(&self, mask: u32) -> DataType {
        if mask == 0 {
            DataType::Utf8
        } else if mask & !INTS == 0 {
            if mask & bit(BsonKind::Int64) != 0 { DataType::Int64 } else { DataType::Int32 }
        } else if mask & !NUMBERS == 0 && self.max_int_magnitude <= EXACT_DOUBLE_INT {
            DataType::Float64
        } else if mask & !(INTS | bit(BsonKind::Decimal128)) == 0 {
            self.decimal_type()
        } else if mask & !BINARIES == 0 {
            if mask == bit(BsonKind::Uuid) {
                DataType::FixedSizeBinary(16)
            } else {
                DataType::Binary
            }
        } else if mask == bit(BsonKind::Boolean) {
            DataType::Boolean
        } else if mask == bit(BsonKind::DateTime) {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        } else {
            DataType::Utf8
        }
    }

    /// For a field whose kinds conflict and that is therefore text: the cast that reads every
    /// sampled value back as one type — `BIGINT` for ints and integer strings, `DECIMAL(38,s)`
    /// when decimals (or ints too large for a double) are among the numbers, `DOUBLE` for other
    /// numbers; `VARCHAR` (keep the text) when some value is no number. Nothing for list
    /// elements, which a plain cast does not reach.
    fn suggest(&self, data_type: &DataType, path: &str, sql: &str) -> Option<String> {
        let mask = self.mask();
        if mask.count_ones() < 2 || *data_type != DataType::Utf8 || path.contains("[]") {
            return None;
        }
        let text = &self.text;
        let numeric = mask & !NUMERIC_TEXT == 0
            && text.non_numeric_strings == 0
            && !text.non_finite
            && !self.decimal_special;
        let decimal = mask & bit(BsonKind::Decimal128) != 0;
        let scale = self.decimal_scale.max(text.scale);
        let fits_decimal =
            !text.exponent && scale + self.integer_digits.max(text.integer_digits) <= 38;
        let target = if !numeric {
            "VARCHAR".to_owned()
        } else if mask & !(INTS | bit(BsonKind::String)) == 0 && text.non_integer_strings == 0 {
            "BIGINT".to_owned()
        } else if (decimal || self.max_int_magnitude > EXACT_DOUBLE_INT) && fits_decimal {
            format!("DECIMAL(38,{scale})")
        } else {
            "DOUBLE".to_owned()
        };
        Some(format!("{sql}::{target}"))
    }

    fn decimal_type(&self) -> DataType {
        let scale = self.decimal_scale;
        if self.decimal_special || scale + self.integer_digits > u32::from(MAX_PRECISION) {
            return DataType::Utf8;
        }
        // `scale <= 38` here, so the cast is lossless.
        DataType::Decimal128(MAX_PRECISION, scale as i8)
    }
}

/// Collects [`FieldReport`]s during [`Node::resolve`], with the current dotted path and the same
/// path as a SQL expression (identifiers quoted where needed).
struct Reporter {
    out: Vec<FieldReport>,
    path: String,
    sql: String,
}

impl Reporter {
    /// Starts at a top-level column.
    fn start(&mut self, name: &str) {
        self.path.clear();
        self.path.push_str(name);
        self.sql.clear();
        push_sql_ident(&mut self.sql, name);
    }

    /// Pushes a report for the field at the current path (its type filled in later).
    fn open(&mut self, node: &Node, nullable: bool) -> usize {
        let kinds = node.kinds();
        let conflict = kinds.iter().filter(|(k, _)| *k != BsonKind::Null).count() > 1;
        self.out.push(FieldReport {
            path: self.path.clone(),
            data_type: DataType::Null,
            nullable,
            present: node.present,
            types_seen: kinds,
            max_array_len: node.max_array_len,
            max_depth: node.max_depth,
            conflict,
            suggested_cast: None,
            too_deep: false,
        });
        self.out.len() - 1
    }

    /// Extends the path by a field name (or `[]` for list elements); returns the lengths to
    /// restore with [`Reporter::leave`].
    fn enter(&mut self, segment: &str) -> (usize, usize) {
        let len = (self.path.len(), self.sql.len());
        if segment == "[]" {
            self.sql.push_str("[]");
        } else {
            self.path.push('.');
            self.sql.push('.');
            push_sql_ident(&mut self.sql, segment);
        }
        self.path.push_str(segment);
        len
    }

    fn leave(&mut self, (path, sql): (usize, usize)) {
        self.path.truncate(path);
        self.sql.truncate(sql);
    }
}

/// Appends `name` as a SQL identifier: as it is when it is a plain lower-case name that is no
/// keyword (DataFusion folds unquoted names to lower case), double-quoted otherwise.
fn push_sql_ident(out: &mut String, name: &str) {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && sqlparser::keywords::ALL_KEYWORDS
            .binary_search(&name.to_ascii_uppercase().as_str())
            .is_err();
    if plain {
        out.push_str(name);
    } else {
        let _ = write!(out, "\"{}\"", name.replace('"', "\"\""));
    }
}

/// What the sample says about one field path.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldReport {
    /// Dotted path; elements of a list are `items[]`, their fields `items[].sku`.
    pub path: String,
    /// The inferred Arrow type.
    pub data_type: DataType,
    /// Whether the column may hold nulls (`false` only for `_id`).
    pub nullable: bool,
    /// Documents (or parent values, or list elements) that have the field, null included.
    pub present: u64,
    /// The BSON kinds seen with their counts, most frequent first; null is counted too.
    pub types_seen: Vec<(BsonKind, u64)>,
    /// The longest array seen, if arrays were seen.
    pub max_array_len: Option<u64>,
    /// How deep the values seen nest below the field: 0 for scalars, 1 for a document of
    /// scalars or an array of scalars, 2 for an array of such documents, and so on.
    pub max_depth: u32,
    /// More than one non-null kind was seen.
    pub conflict: bool,
    /// For a conflict that leaves the field as text, the cast a user would write in a SELECT
    /// to read it typed (`v::BIGINT`, `v::DOUBLE`, `v::DECIMAL(38,2)`, or `v::VARCHAR` when
    /// some values are no numbers). Only the sampled values are known to cast.
    pub suggested_cast: Option<String>,
    /// The field's documents or arrays would nest deeper than [`MAX_NESTING_DEPTH`] allows
    /// at its path: the field is Utf8, each value its relaxed Extended JSON, and no field below
    /// it is reported.
    pub too_deep: bool,
}

/// Accumulates statistics over sampled documents and infers an Arrow schema from them.
#[derive(Debug, Default)]
pub struct Inference {
    root: Children,
    sampled: u64,
    clock: u64,
}

const ID: &str = "_id";

impl Inference {
    /// An inference that has seen no documents.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sampled document. Fails only for malformed BSON; the statistics may then hold
    /// part of that document.
    pub fn observe(&mut self, doc: &RawDocument) -> crate::Result<()> {
        self.sampled += 1;
        self.root.observe(doc, &mut self.clock).map_err(|e| crate::Error::Convert {
            id: document_id(doc),
            field: String::new(),
            reason: e.to_string(),
        })?;
        Ok(())
    }

    /// The number of documents observed.
    pub fn sampled(&self) -> u64 {
        self.sampled
    }

    /// Top-level fields in schema order: `_id` first, then first-seen order.
    fn top_level(&self) -> impl Iterator<Item = (&str, Option<&Node>)> {
        let others = self
            .root
            .names
            .iter()
            .zip(&self.root.nodes)
            .filter(|(name, _)| name.as_str() != ID)
            .map(|(name, node)| (name.as_str(), Some(node)));
        std::iter::once((ID, self.root.get(ID))).chain(others)
    }

    /// The inferred schema: `_id` first and not nullable, then the other top-level fields in
    /// first-seen order, nullable, nested fields nullable too. An `_id` of mixed kinds is Utf8
    /// with the [`EXTJSON`] encoding (see the module documentation).
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .top_level()
            .map(|(name, node)| {
                let data_type =
                    node.map_or(DataType::Utf8, |n| n.resolve(None, name != ID, MAX_NESTING_DEPTH));
                let mixed = node.is_some_and(|n| n.mask().count_ones() > 1);
                let field = Field::new(name, data_type, name != ID);
                if name == ID && mixed && field.data_type() == &DataType::Utf8 {
                    let metadata = [(ENCODING_KEY.to_owned(), EXTJSON.to_owned())];
                    return field.with_metadata(metadata.into());
                }
                field
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// One report per field path, depth-first in schema order: a struct's fields follow it, a
    /// list's elements (`path[]`) follow it. Fields that end up as Utf8 because of conflicting
    /// kinds or of nesting too deep ([`FieldReport::too_deep`]) have no reports below them.
    pub fn fields(&self) -> Vec<FieldReport> {
        let mut reporter = Reporter { out: Vec::new(), path: String::new(), sql: String::new() };
        for (name, node) in self.top_level() {
            let Some(node) = node else { continue };
            reporter.start(name);
            node.resolve(Some(&mut reporter), name != ID, MAX_NESTING_DEPTH);
        }
        reporter.out
    }

    /// For each top-level column in schema order, the non-null BSON kinds seen, most frequent
    /// first. A filter on a column can be pushed to MongoDB when the kinds compare the way the
    /// Arrow type does (e.g. only one kind).
    pub fn top_level_kinds(&self) -> Vec<(String, Vec<BsonKind>)> {
        self.top_level()
            .map(|(name, node)| {
                let kinds = node.map_or_else(Vec::new, |n| {
                    n.kinds().into_iter().map(|(k, _)| k).filter(|k| *k != BsonKind::Null).collect()
                });
                (name.to_owned(), kinds)
            })
            .collect()
    }
}
