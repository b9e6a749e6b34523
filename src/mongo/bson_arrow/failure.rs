//! A conversion failure: its reason and the path to the value, and the messages that say why.

use arrow::datatypes::DataType;
use bson::RawBsonRef;

use crate::mongo::ext_json::{self, Malformed};
use crate::mongo::kind::BsonKind;

/// A conversion failure on its way up: the reason, and the path collected while unwinding
/// (innermost segment first).
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) reason: String,
    pub(super) path: Vec<Segment>,
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
    pub(super) fn new(reason: String) -> Self {
        Self { reason, path: Vec::new() }
    }

    pub(super) fn at(mut self, segment: Segment) -> Self {
        self.path.push(segment);
        self
    }

    /// MongoDB-style dotted path: `items.2.qty` (`.a` for the field `a` of a field named ``).
    pub(super) fn path(&self) -> String {
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
pub(super) fn mismatch(expected: &DataType, found: RawBsonRef<'_>, why: Option<&str>) -> Failure {
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
pub(super) fn type_name(data_type: &DataType) -> String {
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
