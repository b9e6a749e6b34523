//! Relaxed Extended JSON text of every BSON kind (`relaxed_ext_json`, `document_id`).

use bson::raw::{RawBson, RawBsonRef};
use bson::spec::BinarySubtype;
use bson::{Binary, DateTime, rawdoc};
use misql::mongo::bson_arrow::{document_id, relaxed_ext_json};

use super::{db_pointer_document, decimal};

fn json(value: impl Into<RawBson>) -> String {
    let doc = rawdoc! { "v": value.into() };
    relaxed_ext_json(doc.get("v").unwrap().unwrap())
}

fn date(millis: i64) -> String {
    json(DateTime::from_millis(millis))
}

#[test]
fn numbers_are_plain_json_except_non_finite_doubles() {
    assert_eq!(json(42), "42");
    assert_eq!(json(i64::MIN), "-9223372036854775808");
    assert_eq!(json(1.0), "1.0");
    assert_eq!(json(-0.0), "-0.0");
    assert_eq!(json(0.1), "0.1");
    assert_eq!(json(1e300), "1e300");
    assert_eq!(json(f64::NAN), r#"{"$numberDouble":"NaN"}"#);
    assert_eq!(json(f64::NEG_INFINITY), r#"{"$numberDouble":"-Infinity"}"#);
    assert_eq!(json(decimal("-1.50E+10")), r#"{"$numberDecimal":"-1.50E+10"}"#);
}

#[test]
fn dates_from_1970_to_9999_are_rfc3339_and_others_are_number_long() {
    assert_eq!(date(0), r#"{"$date":"1970-01-01T00:00:00Z"}"#);
    assert_eq!(date(1_714_564_800_501), r#"{"$date":"2024-05-01T12:00:00.501Z"}"#);
    assert_eq!(date(951_782_400_007), r#"{"$date":"2000-02-29T00:00:00.007Z"}"#);
    assert_eq!(date(253_402_300_799_999), r#"{"$date":"9999-12-31T23:59:59.999Z"}"#);
    assert_eq!(date(253_402_300_800_000), r#"{"$date":{"$numberLong":"253402300800000"}}"#);
    assert_eq!(date(-1), r#"{"$date":{"$numberLong":"-1"}}"#);
}

#[test]
fn strings_are_escaped() {
    assert_eq!(json("a\"b\\c\n\t\u{1}é"), r#""a\"b\\c\n\t\u0001é""#);
}

#[test]
fn documents_and_arrays_nest_in_key_order() {
    let value = rawdoc! { "z": 1, "a": [true, null, { "$x": "y" }], "": {} };
    assert_eq!(json(value), r#"{"z":1,"a":[true,null,{"$x":"y"}],"":{}}"#);
}

#[test]
fn binary_is_base64_with_a_hex_subtype() {
    let bin = |subtype, bytes: &[u8]| json(Binary { subtype, bytes: bytes.to_vec() });
    assert_eq!(bin(BinarySubtype::Generic, b""), r#"{"$binary":{"base64":"","subType":"00"}}"#);
    assert_eq!(
        bin(BinarySubtype::Generic, b"a"),
        r#"{"$binary":{"base64":"YQ==","subType":"00"}}"#
    );
    assert_eq!(bin(BinarySubtype::Md5, b"ab"), r#"{"$binary":{"base64":"YWI=","subType":"05"}}"#);
    assert_eq!(
        bin(BinarySubtype::UserDefined(0x80), b"abcd"),
        r#"{"$binary":{"base64":"YWJjZA==","subType":"80"}}"#
    );
    assert_eq!(
        bin(BinarySubtype::Uuid, &[0xff; 16]),
        r#"{"$binary":{"base64":"/////////////////////w==","subType":"04"}}"#
    );
}

#[test]
fn db_pointers_show_namespace_and_id() {
    let doc = db_pointer_document("db.c");
    assert_eq!(
        relaxed_ext_json(doc.get("p").unwrap().unwrap()),
        r#"{"$dbPointer":{"$ref":"db.c","$id":{"$oid":"000102030405060708090a0b"}}}"#
    );
}

#[test]
fn document_ids_are_relaxed_json_or_missing() {
    let oid = bson::oid::ObjectId::parse_str("65f0c0ffee00000000000001").unwrap();
    assert_eq!(document_id(&rawdoc! { "_id": oid }), r#"{"$oid":"65f0c0ffee00000000000001"}"#);
    assert_eq!(document_id(&rawdoc! { "a": 1, "_id": "k" }), r#""k""#);
    assert_eq!(document_id(&rawdoc! { "_id": { "a": 1i64 } }), r#"{"a":1}"#);
    assert_eq!(document_id(&rawdoc! { "a": 1 }), "<missing>");
    assert_eq!(relaxed_ext_json(RawBsonRef::Null), "null");
}
