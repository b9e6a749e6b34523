//! Schema inference over sampled documents: types, unification of conflicting kinds, field
//! reports (snapshotted as tables), and that the inferred schema converts its own sample.

use std::fmt::Write as _;
use std::str::FromStr;

use arrow::datatypes::{DataType, Field, TimeUnit};
use bson::raw::{RawBson, RawDocumentBuf};
use bson::spec::BinarySubtype;
use bson::{Binary, DateTime, Decimal128, Regex, Timestamp, oid::ObjectId, rawdoc};
use misql::mongo::bson_arrow::BatchBuilder;
use misql::mongo::infer::{BsonKind, Inference, MAX_NESTING_DEPTH};

fn infer(docs: &[RawDocumentBuf]) -> Inference {
    let mut inference = Inference::new();
    for doc in docs {
        inference.observe(doc).unwrap();
    }
    inference
}

fn decimal(text: &str) -> RawBson {
    Decimal128::from_str(text).unwrap().into()
}

/// A compact type name: nested fields have their own rows in the table.
fn short_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Struct(fields) => format!("Struct({} fields)", fields.len()),
        DataType::List(item) => format!("List<{}>", short_type(item.data_type())),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => format!("Timestamp(µs, {tz})"),
        other => format!("{other:?}"),
    }
}

/// The field reports as a table, one row per path.
fn table(inference: &Inference) -> String {
    let mut out = format!("sampled: {}\n", inference.sampled());
    for f in inference.fields() {
        let kinds: Vec<_> = f.types_seen.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let len = f.max_array_len.map(|n| n.to_string()).unwrap_or_default();
        let line = format!(
            "{:<22} {:<26} {:<8} {:>3}  {:<30} {:>3} d{} {:<8} {}",
            f.path,
            short_type(&f.data_type),
            if f.nullable { "null" } else { "not null" },
            f.present,
            kinds.join(", "),
            len,
            f.max_depth,
            if f.conflict { "conflict" } else { "" },
            f.suggested_cast.as_deref().unwrap_or_default(),
        );
        writeln!(out, "{}", line.trim_end()).unwrap();
    }
    out
}

/// Every sampled document converts with the inferred schema.
fn assert_sample_converts(inference: &Inference, docs: &[RawDocumentBuf]) {
    let mut builder = BatchBuilder::new(inference.schema());
    for doc in docs {
        builder.append(doc).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(builder.finish().unwrap().num_rows(), docs.len());
}

fn orders() -> Vec<RawDocumentBuf> {
    let oid = |n: u8| ObjectId::from_bytes([n; 12]);
    vec![
        rawdoc! {
            "status": "paid", "_id": oid(1),
            "customer": { "name": "Ann", "email": "ann@example.com", "address": { "city": "Oslo", "zip": "0150" } },
            "items": [{ "sku": "A-1", "qty": 2, "price": 9.5 }, { "sku": "B-2", "qty": 1, "price": 20.0 }],
            "total": decimal("39.00"), "created_at": DateTime::from_millis(1_714_564_800_000),
            "coupon": null,
        },
        rawdoc! {
            "_id": oid(2), "status": "new",
            "customer": { "name": "Bo", "address": { "city": "Bergen" }, "vip": true },
            "items": [{ "sku": "C-3", "qty": 5, "price": 1.5, "gift": true }, { "sku": "A-1", "qty": 1, "price": 9.5 }, { "sku": "D-4", "qty": 3, "price": 2.0 }],
            "total": decimal("26.5"), "created_at": DateTime::from_millis(1_714_600_000_000),
            "coupon": "SPRING",
        },
        rawdoc! {
            "_id": oid(3), "status": "test",
            "customer": { "name": "Cy", "email": null },
            "items": [],
            "total": decimal("0"), "created_at": DateTime::from_millis(-86_400_000),
        },
    ]
}

#[test]
fn orders_infer_nested_structs_lists_decimals_and_dates() {
    let docs = orders();
    let inference = infer(&docs);
    insta::assert_snapshot!(table(&inference));
    let schema = inference.schema();
    assert_eq!(schema.field(0).name(), "_id");
    assert!(!schema.field(0).is_nullable());
    assert_eq!(schema.field_with_name("total").unwrap().data_type(), &DataType::Decimal128(38, 2));
    assert_sample_converts(&inference, &docs);
}

#[test]
fn every_field_but_id_is_nullable_nested_ones_too() {
    fn all_nullable(data_type: &DataType) -> bool {
        match data_type {
            DataType::Struct(fields) => {
                fields.iter().all(|f| f.is_nullable() && all_nullable(f.data_type()))
            }
            DataType::List(item) => item.is_nullable() && all_nullable(item.data_type()),
            _ => true,
        }
    }
    let schema = infer(&orders()).schema();
    for field in schema.fields().iter().skip(1) {
        assert!(field.is_nullable() && all_nullable(field.data_type()), "{field}");
    }
    let reports = infer(&orders()).fields();
    assert!(reports.iter().all(|f| f.nullable == (f.path != "_id")));
}

#[test]
fn conflicting_kinds_unify_or_fall_back_to_extended_json() {
    let uuid = Binary { subtype: BinarySubtype::Uuid, bytes: vec![7; 16] };
    let generic = Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2] };
    let regex = Regex { pattern: "^x".try_into().unwrap(), options: "i".try_into().unwrap() };
    let docs = vec![
        rawdoc! {
            "_id": 1, "i32_i64": 1, "int_double": 1, "str_int": "a", "dec_int": decimal("1.25"),
            "dec_double": decimal("1.5"), "doc_doc": { "a": 1 }, "arr_arr": [1], "null_only": null,
            "empty_doc": {}, "empty_arr": [], "uuid_bin": uuid.clone(), "uuid_only": uuid.clone(),
            "regex": regex, "doc_str": { "a": 1 }, "ts": Timestamp { time: 1, increment: 2 },
            "bool_null": true, "oid_str": ObjectId::from_bytes([1; 12]),
        },
        rawdoc! {
            "_id": 2, "i32_i64": 2i64, "int_double": 2.5, "str_int": 1, "dec_int": 7,
            "dec_double": 2.5, "doc_doc": { "b": "x" }, "arr_arr": [2.5, null], "null_only": null,
            "empty_doc": {}, "empty_arr": [], "uuid_bin": generic, "uuid_only": uuid,
            "regex": RawBson::MinKey, "doc_str": "x", "ts": null, "bool_null": null,
            "oid_str": "not an id",
        },
    ];
    let inference = infer(&docs);
    insta::assert_snapshot!(table(&inference));
    assert_sample_converts(&inference, &docs);
}

#[test]
fn decimal_scale_comes_from_the_sample_unless_38_digits_cannot_hold_it() {
    let cases: Vec<(&str, Vec<RawBson>, DataType)> = vec![
        (
            "scale 3",
            vec![decimal("1.5"), decimal("-0.125"), decimal("1E+5")],
            DataType::Decimal128(38, 3),
        ),
        (
            "ints widen",
            vec![decimal("1.5"), i64::MAX.into(), 5.into()],
            DataType::Decimal128(38, 1),
        ),
        (
            "int64 + scale 19",
            vec![decimal("0.1234567890123456789"), i64::MIN.into()],
            DataType::Decimal128(38, 19),
        ),
        (
            "int64 + scale 20",
            vec![decimal("0.12345678901234567890"), i64::MIN.into()],
            DataType::Utf8,
        ),
        ("scale 40", vec![decimal("1E-40")], DataType::Utf8),
        ("31 + 8 digits", vec![decimal("1.5E+30"), decimal("0.12345678")], DataType::Utf8),
        (
            "31 + 7 digits",
            vec![decimal("1.5E+30"), decimal("0.1234567")],
            DataType::Decimal128(38, 7),
        ),
        ("NaN", vec![decimal("1.5"), decimal("NaN")], DataType::Utf8),
        ("double", vec![decimal("1.5"), 2.0.into()], DataType::Utf8),
    ];
    for (name, values, expected) in cases {
        let docs: Vec<_> = values.into_iter().map(|v| rawdoc! { "_id": 1, "v": v }).collect();
        let inference = infer(&docs);
        assert_eq!(inference.schema().field(1).data_type(), &expected, "{name}");
        assert_sample_converts(&inference, &docs);
    }
}

#[test]
fn id_comes_first_and_an_empty_sample_still_has_one() {
    let inference = infer(&[rawdoc! { "a": 1, "_id": "x" }, rawdoc! { "b": 2, "_id": "y" }]);
    let names: Vec<_> = inference.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["_id", "a", "b"]);
    let empty = Inference::new().schema();
    assert_eq!(empty.fields().len(), 1);
    assert_eq!(empty.field(0), &Field::new("_id", DataType::Utf8, false));
    assert!(Inference::new().fields().is_empty());
}

#[test]
fn top_level_kinds_list_the_non_null_kinds_per_column_most_frequent_first() {
    let docs = [
        rawdoc! { "_id": 1, "a": "x", "b": null },
        rawdoc! { "_id": 2i64, "a": 1 },
        rawdoc! { "_id": 3, "a": 2, "c": [1] },
    ];
    let kinds = infer(&docs).top_level_kinds();
    assert_eq!(
        kinds,
        [
            ("_id".to_owned(), vec![BsonKind::Int32, BsonKind::Int64]),
            ("a".to_owned(), vec![BsonKind::Int32, BsonKind::String]),
            ("b".to_owned(), vec![]),
            ("c".to_owned(), vec![BsonKind::Array]),
        ]
    );
}

#[test]
fn kinds_are_named_as_mongodb_type_names() {
    let names: Vec<_> = BsonKind::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(
        names.join(","),
        "double,string,object,array,binData,uuid,objectId,bool,date,null,regex,javascript,\
         javascriptWithScope,int,timestamp,long,decimal,minKey,maxKey,symbol,dbPointer,undefined"
    );
}

#[test]
fn a_hundred_levels_of_nesting_are_reported_path_by_path_down_to_the_limit() {
    let mut value = rawdoc! { "leaf": [1] };
    for _ in 0..99 {
        value = rawdoc! { "d": value };
    }
    let inference = infer(&[rawdoc! { "_id": 1, "d": value }]);
    let fields = inference.fields();
    assert_eq!(fields.len(), 1 + 1 + MAX_NESTING_DEPTH, "_id, d and the levels below it");
    let cut = fields.last().unwrap();
    assert_eq!(cut.path, format!("d{}", ".d".repeat(MAX_NESTING_DEPTH)));
    assert_eq!((cut.data_type.clone(), cut.too_deep), (DataType::Utf8, true));
    assert_eq!(cut.max_depth as usize, 101 - MAX_NESTING_DEPTH, "documents and the array below");
    assert!(fields[..fields.len() - 1].iter().all(|f| !f.too_deep));

    // Within the limit every level is reported, the array's elements too.
    let mut value = rawdoc! { "leaf": [1] };
    for _ in 1..MAX_NESTING_DEPTH - 1 {
        value = rawdoc! { "d": value };
    }
    let fields = infer(&[rawdoc! { "_id": 1, "d": value }]).fields();
    let leaf = &fields[fields.len() - 2];
    assert_eq!(leaf.path, format!("d{}.leaf", ".d".repeat(MAX_NESTING_DEPTH - 2)));
    assert_eq!(fields.last().unwrap().path, format!("{}[]", leaf.path));
    assert_eq!(leaf.max_array_len, Some(1));
    assert!(fields.iter().all(|f| !f.too_deep));
}

#[test]
fn repeated_keys_count_once_and_the_first_wins() {
    let doc = super::bson_arrow::raw_document(&[
        (0x10, "_id", 1i32.to_le_bytes().to_vec()),
        (0x10, "k", 5i32.to_le_bytes().to_vec()),
        (0x02, "k", super::bson_arrow::string_bytes("x")),
    ]);
    let fields = infer(&[doc]).fields();
    assert_eq!(fields[1].path, "k");
    assert_eq!((fields[1].present, fields[1].types_seen.clone()), (1, vec![(BsonKind::Int32, 1)]));
    assert_eq!(fields[1].data_type, DataType::Int32);
}
