//! BSON → Arrow conversion: every BSON type into its column type, widening, Extended JSON text
//! in string columns, nulls, nesting, projections, and all-or-nothing appends.

mod decimal;
mod ext_json;
mod shapes;

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Decimal128Type, Field, Float64Type, Int32Type, Int64Type, Schema, SchemaRef,
    TimeUnit, TimestampMicrosecondType,
};
use bson::raw::{RawBson, RawDocumentBuf, RawJavaScriptCodeWithScope};
use bson::spec::BinarySubtype;
use bson::{Binary, DateTime, Decimal128, Regex, Timestamp, oid::ObjectId, rawdoc};
use misql::Error;
use misql::mongo::bson_arrow::BatchBuilder;

/// A document from raw elements `(type byte, key, value bytes)`, for what `rawdoc!` cannot
/// build: repeated keys, DBPointers.
pub fn raw_document(elements: &[(u8, &str, Vec<u8>)]) -> RawDocumentBuf {
    let mut body = Vec::new();
    for (tag, key, value) in elements {
        body.push(*tag);
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value);
    }
    let mut bytes = ((body.len() + 5) as i32).to_le_bytes().to_vec();
    bytes.extend(body);
    bytes.push(0);
    RawDocumentBuf::from_bytes(bytes).expect("valid document")
}

/// The bytes of a BSON string value.
pub fn string_bytes(s: &str) -> Vec<u8> {
    let mut out = ((s.len() + 1) as i32).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    out
}

/// A DBPointer to `namespace` / ObjectId `000102...0b`, as `{ "_id": 1, "p": <dbPointer> }`.
pub fn db_pointer_document(namespace: &str) -> RawDocumentBuf {
    let mut pointer = string_bytes(namespace);
    pointer.extend(0u8..12);
    raw_document(&[(0x10, "_id", 1i32.to_le_bytes().to_vec()), (0x0C, "p", pointer)])
}

pub fn decimal(text: &str) -> Decimal128 {
    Decimal128::from_str(text).expect("decimal literal")
}

pub fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// Converts `docs` with `schema`, all of which must fit.
pub fn convert(schema: &SchemaRef, docs: &[RawDocumentBuf]) -> RecordBatch {
    let mut builder = BatchBuilder::new(schema.clone());
    for doc in docs {
        builder.append(doc).unwrap_or_else(|e| panic!("{e}"));
    }
    builder.finish().expect("finish")
}

/// Converts `{_id: i, v: value}` for each value (None: no `v`) into a column `v` of `data_type`.
pub fn column(data_type: DataType, values: Vec<Option<RawBson>>) -> ArrayRef {
    let docs: Vec<_> = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(v) => rawdoc! { "_id": i as i32, "v": v },
            None => rawdoc! { "_id": i as i32 },
        })
        .collect();
    let schema =
        schema(vec![Field::new("_id", DataType::Int32, false), Field::new("v", data_type, true)]);
    convert(&schema, &docs).column(1).clone()
}

/// The error of converting `{_id: 7, v: value}` into a column `v` of `data_type`.
pub fn column_error(data_type: DataType, value: RawBson) -> String {
    let schema =
        schema(vec![Field::new("_id", DataType::Int32, false), Field::new("v", data_type, true)]);
    let mut builder = BatchBuilder::new(schema);
    let err = builder.append(&rawdoc! { "_id": 7, "v": value }).expect_err("should not convert");
    assert!(builder.is_empty(), "a failed append adds no row");
    assert!(matches!(err, Error::Convert { .. }), "{err:?}");
    err.to_string()
}

/// The values of a string column, nulls as None.
pub fn strings(array: &ArrayRef) -> Vec<Option<String>> {
    array.as_string::<i32>().iter().map(|s| s.map(str::to_owned)).collect()
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

#[test]
fn doubles_become_float64_and_ints_widen_into_them() {
    let array = column(
        DataType::Float64,
        vec![
            Some(1.5.into()),
            Some((-0.0).into()),
            Some(f64::INFINITY.into()),
            Some(3.into()),
            Some((1i64 << 53).into()),
            Some(i64::MIN.into()),
        ],
    );
    let values: Vec<_> = array.as_primitive::<Float64Type>().values().to_vec();
    assert_eq!(values[..3], [1.5, -0.0, f64::INFINITY]);
    assert_eq!(values[3..], [3.0, 9_007_199_254_740_992.0, -9_223_372_036_854_775_808.0]);
    assert!(values[1].is_sign_negative());
}

#[test]
fn an_int_a_double_would_round_is_an_error_not_a_nearby_double() {
    for value in [i64::MAX, (1i64 << 53) + 1, -(1i64 << 53) - 1] {
        let err = column_error(DataType::Float64, value.into());
        assert_eq!(
            err,
            format!(
                "document _id=7: field `v`: expected float64, found long {value} (a double would round it)"
            )
        );
    }
}

#[test]
fn strings_are_copied_as_they_are() {
    let array = column(
        DataType::Utf8,
        vec![Some("plain".into()), Some("".into()), Some("ünï \"q\" ✓\n".into()), None],
    );
    assert_eq!(
        strings(&array),
        [Some("plain".into()), Some("".into()), Some("ünï \"q\" ✓\n".into()), None]
    );
}

#[test]
fn documents_become_structs_with_missing_fields_null() {
    let fields =
        vec![Field::new("city", DataType::Utf8, true), Field::new("zip", DataType::Int32, true)];
    let array = column(
        DataType::Struct(fields.into()),
        vec![
            Some(rawdoc! { "city": "Lyon", "zip": 69001 }.into()),
            Some(rawdoc! { "zip": 75001, "extra": true }.into()),
            Some(RawBson::Null),
            None,
        ],
    );
    let s = array.as_struct();
    assert_eq!((0..4).map(|i| s.is_valid(i)).collect::<Vec<_>>(), [true, true, false, false]);
    assert_eq!(strings(s.column(0))[..2], [Some("Lyon".into()), None]);
    let zips = s.column(1).as_primitive::<Int32Type>();
    assert_eq!(zips.iter().take(2).collect::<Vec<_>>(), [Some(69001), Some(75001)]);
}

#[test]
fn arrays_become_lists() {
    let item = Arc::new(Field::new("item", DataType::Int64, true));
    let array = column(
        DataType::List(item),
        vec![
            Some(bson::rawbson!([1, 2i64, 3])),
            Some(bson::rawbson!([])),
            Some(bson::rawbson!([null, 5])),
            None,
        ],
    );
    let list = array.as_list::<i32>();
    assert_eq!(list.value_offsets(), [0, 3, 3, 5, 5]);
    assert!(list.is_valid(1) && list.is_null(3));
    let items: Vec<_> = list.values().as_primitive::<Int64Type>().iter().collect();
    assert_eq!(items, [Some(1), Some(2), Some(3), None, Some(5)]);
}

#[test]
fn generic_binary_becomes_binary_whatever_the_subtype() {
    let md5 = Binary { subtype: BinarySubtype::Md5, bytes: vec![9; 16] };
    let generic = Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 3] };
    let empty = Binary { subtype: BinarySubtype::Generic, bytes: vec![] };
    let array =
        column(DataType::Binary, vec![Some(generic.into()), Some(md5.into()), Some(empty.into())]);
    let values: Vec<_> = array.as_binary::<i32>().iter().map(|b| b.unwrap().to_vec()).collect();
    assert_eq!(values, [vec![1, 2, 3], vec![9; 16], vec![]]);
}

#[test]
fn uuids_become_fixed_size_binary_and_other_lengths_are_rejected() {
    let uuid: Vec<u8> = (0..16).collect();
    let array = column(
        DataType::FixedSizeBinary(16),
        vec![Some(Binary { subtype: BinarySubtype::Uuid, bytes: uuid.clone() }.into()), None],
    );
    let fixed = array.as_fixed_size_binary();
    assert_eq!(fixed.value(0), uuid.as_slice());
    assert!(fixed.is_null(1));
    let err = column_error(
        DataType::FixedSizeBinary(16),
        Binary { subtype: BinarySubtype::Generic, bytes: vec![1; 15] }.into(),
    );
    assert!(err.contains("expected 16-byte binary, found binData"), "{err}");
}

#[test]
fn object_ids_become_24_hex_digits_in_string_columns() {
    let oid = ObjectId::from_str("65f0c0ffee00000000000001").unwrap();
    let array = column(DataType::Utf8, vec![Some(oid.into())]);
    assert_eq!(strings(&array), [Some("65f0c0ffee00000000000001".into())]);
}

#[test]
fn booleans_become_booleans() {
    let array = column(DataType::Boolean, vec![Some(true.into()), Some(false.into()), None]);
    let values: Vec<_> = array.as_boolean().iter().collect();
    assert_eq!(values, [Some(true), Some(false), None]);
}

#[test]
fn dates_become_utc_microseconds_before_1970_and_far_ahead() {
    let millis =
        [0, -1, -2_208_988_800_000, 1_714_564_800_123, 253_402_300_800_000, 9_000_000_000_000_000];
    let array = column(
        utc_micros(),
        millis.iter().map(|m| Some(DateTime::from_millis(*m).into())).collect(),
    );
    assert_eq!(array.data_type(), &utc_micros());
    let values = array.as_primitive::<TimestampMicrosecondType>().values().to_vec();
    assert_eq!(values, millis.map(|m| m * 1000));
}

#[test]
fn dates_beyond_the_microsecond_range_are_errors() {
    let err = column_error(utc_micros(), DateTime::from_millis(i64::MAX).into());
    assert!(err.contains("expected timestamp, found date"), "{err}");
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn int32_and_int64_fill_their_columns_and_int32_widens() {
    let ints = column(
        DataType::Int32,
        vec![Some(i32::MIN.into()), Some(i32::MAX.into()), Some(7i64.into())],
    );
    assert_eq!(ints.as_primitive::<Int32Type>().values().to_vec(), [i32::MIN, i32::MAX, 7]);
    let longs = column(
        DataType::Int64,
        vec![Some(i64::MIN.into()), Some(i64::MAX.into()), Some(0i64.into()), Some(42.into())],
    );
    assert_eq!(longs.as_primitive::<Int64Type>().values().to_vec(), [i64::MIN, i64::MAX, 0, 42]);
}

#[test]
fn an_int64_that_does_not_fit_int32_is_an_error() {
    let err = column_error(DataType::Int32, 3_000_000_000i64.into());
    assert_eq!(
        err,
        "document _id=7: field `v`: expected int32, found long 3000000000 (out of int32 range)"
    );
}

#[test]
fn decimals_are_rescaled_exactly_into_their_column() {
    let array = column(
        DataType::Decimal128(38, 2),
        vec![
            Some(decimal("12.34").into()),
            Some(decimal("-0.5").into()),
            Some(decimal("1E+3").into()),
            Some(decimal("7.000").into()),
            Some(decimal("-0").into()),
            Some(12.into()),
            Some((-3i64).into()),
            None,
        ],
    );
    assert_eq!(array.data_type(), &DataType::Decimal128(38, 2));
    let values: Vec<_> = array.as_primitive::<Decimal128Type>().iter().collect();
    assert_eq!(
        values,
        [Some(1234), Some(-50), Some(100_000), Some(700), Some(0), Some(1200), Some(-300), None]
    );
}

#[test]
fn decimals_that_would_be_rounded_or_overflow_or_are_not_numbers_are_errors() {
    let two = DataType::Decimal128(38, 2);
    let err = column_error(two.clone(), decimal("1.234").into());
    assert!(err.ends_with("expected decimal(38, 2), found decimal {\"$numberDecimal\":\"1.234\"} (needs 3 decimal places, would be rounded)"), "{err}");
    let err = column_error(DataType::Decimal128(5, 2), decimal("1234.5").into());
    assert!(err.ends_with("(more than 5 digits)"), "{err}");
    let err = column_error(DataType::Decimal128(5, 2), 1000.into());
    assert!(err.ends_with("(more than 5 digits)"), "{err}");
    for special in ["NaN", "Infinity", "-Infinity"] {
        let err = column_error(two.clone(), decimal(special).into());
        assert!(err.ends_with("(not a number)"), "{err}");
    }
    let err = column_error(two, 1.5.into());
    assert!(err.ends_with("expected decimal(38, 2), found double 1.5"), "{err}");
}

#[test]
fn exotic_kinds_become_relaxed_extended_json_in_string_columns() {
    let regex = Regex { pattern: "^a.*".try_into().unwrap(), options: "mi".try_into().unwrap() };
    let code_with_scope = RawJavaScriptCodeWithScope {
        code: "function() { return x; }".into(),
        scope: rawdoc! { "x": 1 },
    };
    let array = column(
        DataType::Utf8,
        vec![
            Some(regex.into()),
            Some(RawBson::JavaScriptCode("return 1;".into())),
            Some(code_with_scope.into()),
            Some(Timestamp { time: 1_700_000_000, increment: 3 }.into()),
            Some(RawBson::MinKey),
            Some(RawBson::MaxKey),
            Some(RawBson::Symbol("sym".into())),
            Some(RawBson::Undefined),
        ],
    );
    assert_eq!(
        strings(&array),
        [
            r#"{"$regularExpression":{"pattern":"^a.*","options":"im"}}"#,
            r#"{"$code":"return 1;"}"#,
            r#"{"$code":"function() { return x; }","$scope":{"x":1}}"#,
            r#"{"$timestamp":{"t":1700000000,"i":3}}"#,
            r#"{"$minKey":1}"#,
            r#"{"$maxKey":1}"#,
            r#"{"$symbol":"sym"}"#,
            r#"{"$undefined":true}"#,
        ]
        .map(|s| Some(s.to_owned()))
    );
}

#[test]
fn db_pointers_become_relaxed_extended_json_in_string_columns() {
    let schema = schema(vec![Field::new("p", DataType::Utf8, true)]);
    let batch = convert(&schema, &[db_pointer_document("shop.orders")]);
    assert_eq!(
        strings(batch.column(0)),
        [Some(
            r#"{"$dbPointer":{"$ref":"shop.orders","$id":{"$oid":"000102030405060708090a0b"}}}"#
                .into()
        )]
    );
}

#[test]
fn string_columns_accept_every_other_kind_as_extended_json_and_decimals_as_their_text() {
    let array = column(
        DataType::Utf8,
        vec![
            Some(5.into()),
            Some(5i64.into()),
            Some(2.5.into()),
            Some(true.into()),
            Some(rawdoc! { "a": [1, "x"] }.into()),
            Some(DateTime::from_millis(1_714_564_800_000).into()),
            Some(decimal("9.99").into()),
            Some(Binary { subtype: BinarySubtype::Generic, bytes: b"hi!".to_vec() }.into()),
            Some(RawBson::Null),
        ],
    );
    assert_eq!(
        strings(&array),
        [
            Some("5".into()),
            Some("5".into()),
            Some("2.5".into()),
            Some("true".into()),
            Some(r#"{"a":[1,"x"]}"#.into()),
            Some(r#"{"$date":"2024-05-01T12:00:00Z"}"#.into()),
            Some("9.99".into()),
            Some(r#"{"$binary":{"base64":"aGkh","subType":"00"}}"#.into()),
            None,
        ]
    );
}

#[test]
fn null_and_missing_are_both_null_but_not_in_a_non_nullable_column() {
    let array = column(DataType::Int64, vec![Some(RawBson::Null), None, Some(1i64.into())]);
    assert_eq!(array.as_primitive::<Int64Type>().iter().collect::<Vec<_>>(), [None, None, Some(1)]);
    let schema = schema(vec![Field::new("_id", DataType::Utf8, false)]);
    let mut builder = BatchBuilder::new(schema);
    let err = builder.append(&rawdoc! { "x": 1 }).unwrap_err().to_string();
    assert_eq!(
        err,
        "document _id=<missing>: field `_id`: null or missing, but the string column is not nullable"
    );
    assert!(builder.append(&rawdoc! { "_id": RawBson::Null }).is_err());
    assert!(builder.is_empty());
}

#[test]
fn mismatched_kinds_are_errors_naming_both_types_and_a_short_value() {
    let err = column_error(DataType::Int64, "abc".into());
    assert_eq!(err, "document _id=7: field `v`: expected int64, found string \"abc\"");
    let err = column_error(DataType::Boolean, "x".repeat(100).into());
    let shown = format!("found string \"{}…", "x".repeat(39));
    assert!(err.ends_with(&shown), "{err}");
    let err = column_error(DataType::Int32, 1.0.into());
    assert!(err.ends_with("expected int32, found double 1.0"), "{err}");
    let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
    let err = column_error(list, rawdoc! { "0": 1 }.into());
    assert!(err.ends_with("expected array, found object {\"0\":1}"), "{err}");
    let strukt = DataType::Struct(vec![Field::new("a", DataType::Int32, true)].into());
    let err = column_error(strukt, bson::rawbson!([1]));
    assert!(err.ends_with("expected document, found array [1]"), "{err}");
}

#[test]
fn finish_starts_a_new_batch() {
    let schema = schema(vec![
        Field::new("_id", DataType::Int32, false),
        Field::new("s", DataType::Utf8, true),
    ]);
    let mut builder = BatchBuilder::new(schema);
    let empty = builder.byte_size();
    builder.append(&rawdoc! { "_id": 1, "s": "first" }).unwrap();
    assert!(builder.byte_size() >= empty + 4 + 5, "an int32 and five bytes of text");
    let first = builder.finish().unwrap();
    assert_eq!(first.num_rows(), 1);
    assert!(builder.is_empty());
    builder.append(&rawdoc! { "_id": 2, "s": "second" }).unwrap();
    builder.append(&rawdoc! { "_id": 3 }).unwrap();
    let second = builder.finish().unwrap();
    assert_eq!(second.num_rows(), 2);
    assert_eq!(strings(second.column(1)), [Some("second".into()), None]);
    assert_eq!(builder.finish().unwrap().num_rows(), 0);
}

#[test]
fn an_empty_projection_still_counts_rows() {
    let batch = convert(&schema(vec![]), &[rawdoc! { "a": 1 }, rawdoc! {}]);
    assert_eq!((batch.num_rows(), batch.num_columns()), (2, 0));
}
