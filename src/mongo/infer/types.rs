//! Statistics turned into Arrow types by the unification rules of [`super`], and into
//! [`FieldReport`]s.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};

use super::FieldReport;
use super::stats::Node;
use crate::mongo::decimal::MAX_PRECISION;
use crate::mongo::kind::BsonKind;

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

impl Node {
    /// The non-null kinds seen, as a bit mask.
    pub(super) fn mask(&self) -> u32 {
        BsonKind::ALL
            .iter()
            .filter(|k| **k != BsonKind::Null && self.counts[k.index()] > 0)
            .fold(0, |mask, k| mask | bit(*k))
    }

    /// The Arrow type of this field, which may nest `room` more struct and list types (see
    /// [`super::MAX_NESTING_DEPTH`]): a document or array with no room left is Utf8. With a reporter,
    /// also pushes a [`FieldReport`] for this field and every field below it, depth-first;
    /// either way each node is visited once.
    pub(super) fn resolve(
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
pub(super) struct Reporter {
    pub(super) out: Vec<FieldReport>,
    pub(super) path: String,
    pub(super) sql: String,
}

impl Reporter {
    /// Starts at a top-level column.
    pub(super) fn start(&mut self, name: &str) {
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
