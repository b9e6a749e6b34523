//! The compact forms a key is stored in: a MongoDB ObjectId packed into 12 bytes, a canonical
//! decimal integer as an `i64`, anything else as its string (see the documentation of
//! [`super`]). [`Key::of_str`] chooses the form from a key's string form alone, so a lookup
//! always finds what was stored; [`for_each_key`] turns the values of an Arrow key column into
//! keys, and [`key_text`] turns a key back into its string form for messages.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type};

use crate::{Error, Result};

/// A key in its compact stored form (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key<'a> {
    /// 24 lowercase hex characters, packed.
    ObjectId([u8; 12]),
    /// A canonical decimal integer.
    Long(i64),
    /// Any other string, as is.
    Str(&'a str),
}

impl<'a> Key<'a> {
    /// The compact form of a key given as a string.
    pub(super) fn of_str(s: &'a str) -> Self {
        if let Some(oid) = pack_object_id(s) {
            Key::ObjectId(oid)
        } else if let Some(n) = canonical_i64(s) {
            Key::Long(n)
        } else {
            Key::Str(s)
        }
    }
}

/// The 12 bytes of 24 lowercase hex characters, or `None`. Uppercase hex is left alone: packing
/// it would lose its spelling.
fn pack_object_id(s: &str) -> Option<[u8; 12]> {
    let bytes = s.as_bytes();
    if bytes.len() != 24 {
        return None;
    }
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let mut out = [0u8; 12];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The value of `s` if it is an `i64` written the way `i64::to_string` writes it (so that the
/// string can be recovered exactly), else `None`.
fn canonical_i64(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let canonical = match digits.as_bytes() {
        [] => false,
        [b'0'] => digits.len() == s.len(), // "0" yes, "-0" no
        [first, rest @ ..] => (b'1'..=b'9').contains(first) && rest.iter().all(u8::is_ascii_digit),
    };
    if canonical { s.parse().ok() } else { None }
}

/// The string form of a key, for messages.
pub(super) fn key_text(key: Option<Key<'_>>) -> String {
    match key {
        Some(Key::ObjectId(oid)) => hex::encode(oid),
        Some(Key::Long(n)) => n.to_string(),
        Some(Key::Str(s)) => s.to_string(),
        None => "null".to_string(),
    }
}

/// Calls `f(row, key)` for each row of `keys`: strings and integers directly, other types by
/// their string form.
pub(super) fn for_each_key(
    keys: &ArrayRef,
    mut f: impl FnMut(usize, Option<Key<'_>>),
) -> Result<()> {
    match keys.data_type() {
        DataType::Utf8 => keys.as_string::<i32>().iter().enumerate().for_each(|(i, s)| {
            f(i, s.map(Key::of_str));
        }),
        DataType::LargeUtf8 => keys.as_string::<i64>().iter().enumerate().for_each(|(i, s)| {
            f(i, s.map(Key::of_str));
        }),
        DataType::Utf8View => keys.as_string_view().iter().enumerate().for_each(|(i, s)| {
            f(i, s.map(Key::of_str));
        }),
        DataType::Int64 => {
            keys.as_primitive::<Int64Type>().iter().enumerate().for_each(|(i, n)| {
                f(i, n.map(Key::Long));
            })
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => {
            let longs = arrow::compute::cast(keys, &DataType::Int64)?;
            return for_each_key(&longs, f);
        }
        DataType::Struct(_)
        | DataType::List(_)
        | DataType::LargeList(_)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::FixedSizeList(..)
        | DataType::Map(..) => {
            return Err(Error::user(format!(
                "a key column of type {} cannot be indexed",
                keys.data_type()
            ))
            .with_hint("the key must be a primitive column"));
        }
        other => {
            let strings = arrow::compute::cast(keys, &DataType::Utf8).map_err(|e| {
                Error::user(format!("a key column of type {other} cannot be indexed: {e}"))
            })?;
            return for_each_key(&strings, f);
        }
    }
    Ok(())
}
