//! Statistics of sampled values per field path: the kinds seen, how deep they nest, the digits
//! of their numbers, and the fields of their documents and arrays.

use std::collections::HashMap;

use bson::{RawBsonRef, RawDocument};

use crate::mongo::decimal;
use crate::mongo::ext_json::Malformed;
use crate::mongo::kind::BsonKind;

/// Statistics of one field path (or of the elements of an array).
#[derive(Debug, Default)]
pub(super) struct Node {
    pub(super) present: u64,
    pub(super) counts: [u64; BsonKind::ALL.len()],
    pub(super) max_array_len: Option<u64>,
    /// Largest scale (fractional digits) of the decimals seen.
    pub(super) decimal_scale: u32,
    /// Largest number of integer digits of the decimals and of the ints seen.
    pub(super) integer_digits: u32,
    /// A NaN or ±Infinity decimal was seen.
    pub(super) decimal_special: bool,
    /// The largest magnitude of the ints seen (to tell whether a double holds them exactly).
    pub(super) max_int_magnitude: u64,
    /// The deepest nesting of documents and arrays in the values seen (0 for scalars).
    pub(super) max_depth: u32,
    /// How the numbers and strings seen would read as numeric text, for suggested casts.
    pub(super) text: NumericText,
    /// Fields of the documents seen here.
    pub(super) children: Children,
    /// Statistics of the elements of the arrays seen here.
    pub(super) items: Option<Box<Node>>,
    /// The last document value this field was seen in, to let the first of duplicate keys win.
    stamp: u64,
}

/// The fields of the documents seen at one path, in first-seen order.
#[derive(Debug, Default)]
pub(super) struct Children {
    pub(super) names: Vec<String>,
    pub(super) nodes: Vec<Node>,
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

    pub(super) fn get(&self, name: &str) -> Option<&Node> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Statistics of the fields of one document value; returns the deepest nesting of its
    /// field values.
    pub(super) fn observe(&mut self, doc: &RawDocument, clock: &mut u64) -> Result<u32, Malformed> {
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

/// What the numbers and strings of a field look like as text (the way a Utf8 column writes
/// them), to suggest a cast that would parse every one of them.
#[derive(Debug, Default)]
pub(super) struct NumericText {
    /// Strings that are not an integer fitting int64.
    pub(super) non_integer_strings: u64,
    /// Strings that are not a number at all.
    pub(super) non_numeric_strings: u64,
    /// A number written with an exponent (`1e300`, `1.5E+10`) was seen.
    pub(super) exponent: bool,
    /// A NaN or infinite double or decimal was seen.
    pub(super) non_finite: bool,
    /// A double was seen (never integer text: `1.0`).
    pub(super) double: bool,
    /// Largest number of fractional digits of the doubles and numeric strings seen.
    pub(super) scale: u32,
    /// Largest number of integer digits of the doubles and numeric strings seen.
    pub(super) integer_digits: u32,
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
    pub(super) fn observe(
        &mut self,
        value: RawBsonRef<'_>,
        clock: &mut u64,
    ) -> Result<u32, Malformed> {
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

    /// Kinds seen with their counts, most frequent first (ties in [`BsonKind::ALL`] order).
    pub(super) fn kinds(&self) -> Vec<(BsonKind, u64)> {
        let mut kinds: Vec<_> = BsonKind::ALL
            .iter()
            .map(|k| (*k, self.counts[k.index()]))
            .filter(|(_, n)| *n > 0)
            .collect();
        kinds.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        kinds
    }
}
