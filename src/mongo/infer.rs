//! Schema inference: statistics over sampled documents, turned into an Arrow schema with the
//! mapping of DESIGN.md ("BSON → Arrow → Iceberg types") and into per-field reports for
//! `DESCRIBE` and filter pushdown.
//!
//! Unification rules, per field, over the non-null kinds seen (null never conflicts):
//! - int32 only → Int32; int32 + int64 → Int64; any ints + double → Float64;
//! - decimal (+ ints) → Decimal128(38, s), s = the largest scale seen; the integer digits of the
//!   decimals and of the ints seen must fit in 38 - s digits, otherwise (and when NaN or
//!   ±Infinity was seen) Utf8. Decimal + double → Utf8 (a double has no exact decimal value);
//! - documents → Struct of the merged fields in first-seen order (a field only ever seen as `{}`
//!   → Utf8); arrays → List of the unified element type (only empty arrays → List<Utf8>);
//! - 16-byte binary subtype 4 only → FixedSizeBinary(16); any other binary mix → Binary;
//! - bool, date, string, ObjectId → Boolean, Timestamp(µs, UTC), Utf8, Utf8;
//! - null only, the exotic kinds (regex, javascript, symbol, minKey, maxKey, timestamp,
//!   dbPointer, undefined) and every other mix → Utf8 holding relaxed Extended JSON.
//!
//! `_id` is always the first column and not nullable (Utf8 if the sample is empty); every other
//! column and nested field is nullable.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bson::{RawBsonRef, RawDocument};

use super::bson_arrow::document_id;
use super::decimal::{self, MAX_PRECISION};
use super::ext_json::Malformed;
pub use super::kind::BsonKind;

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

    /// Statistics of the fields of one document value.
    fn observe(&mut self, doc: &RawDocument, clock: &mut u64) -> Result<(), Malformed> {
        *clock += 1;
        let stamp = *clock;
        let mut hint = 0;
        for element in doc.iter_elements() {
            let element = element?;
            let i = self.position(element.key().as_str(), hint);
            hint = i + 1;
            let node = &mut self.nodes[i];
            if node.stamp == stamp {
                continue; // a repeated key: the first occurrence wins, as in the conversion
            }
            node.stamp = stamp;
            node.observe(element.value()?, clock)?;
        }
        Ok(())
    }
}

/// Bit masks over [`BsonKind`]s.
const fn bit(kind: BsonKind) -> u32 {
    1 << kind as u32
}
const INTS: u32 = bit(BsonKind::Int32) | bit(BsonKind::Int64);
const NUMBERS: u32 = INTS | bit(BsonKind::Double);
const BINARIES: u32 = bit(BsonKind::Binary) | bit(BsonKind::Uuid);

impl Node {
    fn observe(&mut self, value: RawBsonRef<'_>, clock: &mut u64) -> Result<(), Malformed> {
        let kind = BsonKind::of(value);
        self.present += 1;
        self.counts[kind.index()] += 1;
        match value {
            RawBsonRef::Int32(v) => self.integer(u64::from(v.unsigned_abs())),
            RawBsonRef::Int64(v) => self.integer(v.unsigned_abs()),
            RawBsonRef::Decimal128(d) => {
                let d = decimal::decode(d.bytes());
                match (d.scale(), d.integer_digits()) {
                    (Some(scale), Some(digits)) => {
                        self.decimal_scale = self.decimal_scale.max(scale);
                        self.integer_digits = self.integer_digits.max(digits);
                    }
                    _ => self.decimal_special = true,
                }
            }
            RawBsonRef::Document(doc) => self.children.observe(doc, clock)?,
            RawBsonRef::Array(array) => {
                let items = self.items.get_or_insert_default();
                let mut len = 0;
                for item in array {
                    items.observe(item?, clock)?;
                    len += 1;
                }
                self.max_array_len = Some(self.max_array_len.unwrap_or(0).max(len));
            }
            _ => {}
        }
        Ok(())
    }

    fn integer(&mut self, magnitude: u64) {
        let digits = if magnitude == 0 { 0 } else { decimal::digits(u128::from(magnitude)) };
        self.integer_digits = self.integer_digits.max(digits);
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

    /// The Arrow type of this field. With a reporter, also pushes a [`FieldReport`] for this
    /// field and every field below it, depth-first; either way each node is visited once.
    fn resolve(&self, mut reporter: Option<&mut Reporter>, nullable: bool) -> DataType {
        let slot = reporter.as_deref_mut().map(|r| r.open(self, nullable));
        let mask = self.mask();
        let data_type = if mask == 0 {
            DataType::Utf8
        } else if mask & !INTS == 0 {
            if mask & bit(BsonKind::Int64) != 0 { DataType::Int64 } else { DataType::Int32 }
        } else if mask & !NUMBERS == 0 {
            DataType::Float64
        } else if mask & !(INTS | bit(BsonKind::Decimal128)) == 0 {
            self.decimal_type()
        } else if mask == bit(BsonKind::Document) && !self.children.names.is_empty() {
            let mut fields = Vec::with_capacity(self.children.names.len());
            for (name, child) in self.children.names.iter().zip(&self.children.nodes) {
                let r = reporter.as_deref_mut().map(|r| r.enter(name));
                let child_type = child.resolve(reporter.as_deref_mut(), true);
                if let (Some(r), Some(len)) = (reporter.as_deref_mut(), r) {
                    r.leave(len);
                }
                fields.push(Field::new(name, child_type, true));
            }
            DataType::Struct(Fields::from(fields))
        } else if mask == bit(BsonKind::Array) {
            let item_type = match self.items.as_deref() {
                Some(items) if items.present > 0 => {
                    let r = reporter.as_deref_mut().map(|r| r.enter("[]"));
                    let t = items.resolve(reporter.as_deref_mut(), true);
                    if let (Some(r), Some(len)) = (reporter.as_deref_mut(), r) {
                        r.leave(len);
                    }
                    t
                }
                _ => DataType::Utf8,
            };
            DataType::List(Arc::new(Field::new("item", item_type, true)))
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
        };
        if let (Some(r), Some(slot)) = (reporter, slot) {
            r.out[slot].data_type = data_type.clone();
        }
        data_type
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

/// Collects [`FieldReport`]s during [`Node::resolve`], with the current dotted path.
struct Reporter {
    out: Vec<FieldReport>,
    path: String,
}

impl Reporter {
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
            conflict,
        });
        self.out.len() - 1
    }

    /// Extends the path by a field name (or `[]` for list elements); returns the length to
    /// restore with [`Reporter::leave`].
    fn enter(&mut self, segment: &str) -> usize {
        let len = self.path.len();
        if segment != "[]" && !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(segment);
        len
    }

    fn leave(&mut self, len: usize) {
        self.path.truncate(len);
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
    /// More than one non-null kind was seen.
    pub conflict: bool,
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
        })
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
    /// first-seen order, nullable, nested fields nullable too.
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .top_level()
            .map(|(name, node)| {
                let data_type = node.map_or(DataType::Utf8, |n| n.resolve(None, name != ID));
                Field::new(name, data_type, name != ID)
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// One report per field path, depth-first in schema order: a struct's fields follow it, a
    /// list's elements (`path[]`) follow it. Fields that end up as Utf8 because of conflicting
    /// kinds have no reports below them.
    pub fn fields(&self) -> Vec<FieldReport> {
        let mut reporter = Reporter { out: Vec::new(), path: String::new() };
        for (name, node) in self.top_level() {
            let Some(node) = node else { continue };
            reporter.path.clear();
            reporter.path.push_str(name);
            node.resolve(Some(&mut reporter), name != ID);
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
