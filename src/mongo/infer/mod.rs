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

mod stats;
mod types;

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bson::RawDocument;

use super::bson_arrow::{ENCODING_KEY, EXTJSON, document_id};
pub use super::kind::BsonKind;
pub use crate::lake::schema::MAX_NESTING_DEPTH;
use stats::{Children, Node};
use types::Reporter;

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
