//! Relaxed MongoDB Extended JSON (v2) text of raw BSON values, written straight into a byte
//! buffer. Used for Utf8 columns that hold values of other kinds (conflicting types, regex,
//! timestamps, ...) and for `_id`s in error messages.
//!
//! The output follows the relaxed format of the Extended JSON specification and of the bson
//! crate's `into_relaxed_extjson` (which needs a `Bson` tree and bson's `serde_json-1` feature):
//! numbers are JSON numbers, except non-finite doubles; dates from 1970 to 9999 are RFC 3339
//! strings (`"2024-05-01T12:00:00Z"`, milliseconds only when not zero, always three digits);
//! other dates are `{"$date": {"$numberLong": "..."}}`. Keys keep their document order.

use std::io::Write as _;

use bson::raw::{RawArray, RawBsonRef, RawDocument, RawDocumentBuf};

/// Malformed BSON found while writing a nested document or array: bson's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed BSON: {}", self.0)
    }
}

impl From<bson::error::Error> for Malformed {
    fn from(e: bson::error::Error) -> Self {
        Malformed(e.to_string())
    }
}

/// Appends the relaxed Extended JSON text of `value` to `out`.
pub fn write_value(out: &mut Vec<u8>, value: RawBsonRef<'_>) -> Result<(), Malformed> {
    match value {
        RawBsonRef::Double(v) => write_double(out, v),
        RawBsonRef::String(s) => write_string(out, s),
        RawBsonRef::Array(a) => write_array(out, a)?,
        RawBsonRef::Document(d) => write_document(out, d)?,
        RawBsonRef::Boolean(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        RawBsonRef::Null => out.extend_from_slice(b"null"),
        RawBsonRef::RegularExpression(re) => {
            let mut options: Vec<char> = re.options.as_str().chars().collect();
            options.sort_unstable();
            let options: String = options.into_iter().collect();
            out.extend_from_slice(b"{\"$regularExpression\":{\"pattern\":");
            write_string(out, re.pattern.as_str());
            out.extend_from_slice(b",\"options\":");
            write_string(out, &options);
            out.extend_from_slice(b"}}");
        }
        RawBsonRef::JavaScriptCode(code) => {
            out.extend_from_slice(b"{\"$code\":");
            write_string(out, code);
            out.push(b'}');
        }
        RawBsonRef::JavaScriptCodeWithScope(cws) => {
            out.extend_from_slice(b"{\"$code\":");
            write_string(out, cws.code);
            out.extend_from_slice(b",\"$scope\":");
            write_document(out, cws.scope)?;
            out.push(b'}');
        }
        RawBsonRef::Int32(v) => {
            let _ = write!(out, "{v}");
        }
        RawBsonRef::Int64(v) => {
            let _ = write!(out, "{v}");
        }
        RawBsonRef::Timestamp(ts) => {
            let _ = write!(out, "{{\"$timestamp\":{{\"t\":{},\"i\":{}}}}}", ts.time, ts.increment);
        }
        RawBsonRef::Binary(bin) => {
            out.extend_from_slice(b"{\"$binary\":{\"base64\":\"");
            write_base64(out, bin.bytes);
            let _ = write!(out, "\",\"subType\":\"{:02x}\"}}}}", u8::from(bin.subtype));
        }
        RawBsonRef::ObjectId(oid) => {
            out.extend_from_slice(b"{\"$oid\":\"");
            write_hex(out, &oid.bytes());
            out.extend_from_slice(b"\"}");
        }
        RawBsonRef::DateTime(dt) => write_date(out, dt.timestamp_millis()),
        RawBsonRef::Symbol(s) => {
            out.extend_from_slice(b"{\"$symbol\":");
            write_string(out, s);
            out.push(b'}');
        }
        RawBsonRef::Decimal128(d) => {
            let _ = write!(out, "{{\"$numberDecimal\":\"{d}\"}}");
        }
        RawBsonRef::Undefined => out.extend_from_slice(b"{\"$undefined\":true}"),
        RawBsonRef::MaxKey => out.extend_from_slice(b"{\"$maxKey\":1}"),
        RawBsonRef::MinKey => out.extend_from_slice(b"{\"$minKey\":1}"),
        RawBsonRef::DbPointer(_) => {
            let (namespace, id) = db_pointer_parts(value)?;
            out.extend_from_slice(b"{\"$dbPointer\":{\"$ref\":");
            write_string(out, &namespace);
            out.extend_from_slice(b",\"$id\":{\"$oid\":\"");
            write_hex(out, &id);
            out.extend_from_slice(b"\"}}}");
        }
    }
    Ok(())
}

/// Appends a document as a JSON object, keys in document order (duplicates kept).
pub fn write_document(out: &mut Vec<u8>, doc: &RawDocument) -> Result<(), Malformed> {
    out.push(b'{');
    for (i, item) in doc.iter().enumerate() {
        let (key, value) = item?;
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key.as_str());
        out.push(b':');
        write_value(out, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// Appends an array as a JSON array.
pub fn write_array(out: &mut Vec<u8>, array: &RawArray) -> Result<(), Malformed> {
    out.push(b'[');
    for (i, item) in array.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(out, item?)?;
    }
    out.push(b']');
    Ok(())
}

/// Appends `s` as a quoted, escaped JSON string.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends lower-case hex digits of `bytes` (an ObjectId gives its usual 24 characters).
pub fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
}

fn write_double(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"{\"$numberDouble\":\"NaN\"}");
    } else if v.is_infinite() {
        let text: &[u8] = if v > 0.0 { b"Infinity" } else { b"-Infinity" };
        out.extend_from_slice(b"{\"$numberDouble\":\"");
        out.extend_from_slice(text);
        out.extend_from_slice(b"\"}");
    } else {
        // `{:?}` is the shortest text that reads back to the same f64, always with a `.` or an
        // exponent (`1.0`, `1e300`, `1.5e-7`): valid JSON and recognisably a double.
        let _ = write!(out, "{v:?}");
    }
}

/// Milliseconds of 10000-01-01T00:00:00Z: relaxed dates are RFC 3339 strings below this.
const YEAR_10000_MS: i64 = 253_402_300_800_000;

fn write_date(out: &mut Vec<u8>, millis: i64) {
    if !(0..YEAR_10000_MS).contains(&millis) {
        let _ = write!(out, "{{\"$date\":{{\"$numberLong\":\"{millis}\"}}}}");
        return;
    }
    let days = millis / 86_400_000;
    let in_day = millis % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    let (secs, ms) = (in_day / 1000, in_day % 1000);
    let _ = write!(
        out,
        "{{\"$date\":\"{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if ms != 0 {
        let _ = write!(out, ".{ms:03}");
    }
    out.extend_from_slice(b"Z\"}");
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63]);
        out.push(ALPHABET[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 { ALPHABET[(n >> 6) as usize & 63] } else { b'=' });
        out.push(if chunk.len() > 2 { ALPHABET[n as usize & 63] } else { b'=' });
    }
}

/// The namespace and ObjectId bytes of a DBPointer. bson 3.1 keeps both fields private, so the
/// value is written into a one-field document and read back from its bytes:
/// `len(4) type(1) key"\0"(1) strlen(4) namespace"\0" oid(12) "\0"`.
fn db_pointer_parts(value: RawBsonRef<'_>) -> Result<(String, [u8; 12]), Malformed> {
    let mut doc = RawDocumentBuf::new();
    doc.append(bson::raw::cstr!(""), value);
    let bytes = doc.as_bytes();
    let malformed = || Malformed("DBPointer layout".to_string());
    let body = bytes.get(6..bytes.len() - 1).ok_or_else(malformed)?;
    let len_bytes: [u8; 4] = body.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(malformed)?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let namespace = body.get(4..4 + len.saturating_sub(1)).ok_or_else(malformed)?;
    let id: [u8; 12] =
        body.get(4 + len..4 + len + 12).and_then(|b| b.try_into().ok()).ok_or_else(malformed)?;
    Ok((String::from_utf8_lossy(namespace).into_owned(), id))
}

/// The relaxed Extended JSON text of a value; malformed nested BSON shows as
/// `"<malformed BSON: ...>"` in place of the value.
pub fn to_string(value: RawBsonRef<'_>) -> String {
    let mut out = Vec::new();
    if let Err(e) = write_value(&mut out, value) {
        out.clear();
        write_string(&mut out, &format!("<{e}>"));
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
