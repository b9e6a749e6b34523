//! Property tests: generated BSON documents (nested documents and arrays, every scalar kind with
//! its edge values, repeated keys, awkward names) through schema inference and the converter.
//! The converter never panics; every document is either appended or rejected with an error
//! naming its `_id` and a field; values that map losslessly read back equal.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float64Type, Int32Type, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use bson::raw::{CString, RawArrayBuf, RawBson, RawDocumentBuf};
use bson::spec::BinarySubtype;
use bson::{Binary, DateTime, Decimal128, Regex, Timestamp, oid::ObjectId};
use misql::Error;
use misql::mongo::bson_arrow::{BatchBuilder, ENCODING_KEY, EXTJSON, document_id};
use misql::mongo::infer::Inference;
use misql::sync::evolve::{grow, typed};
use proptest::collection::vec;
use proptest::prelude::*;

/// Field names: plain, repeated (the same name twice in a document), and the awkward ones.
const KEYS: [&str; 9] = ["a", "b", "c", "a.b", "$x", "", "ünï ☃", "with space", "_id"];

fn key() -> impl Strategy<Value = CString> {
    prop::sample::select(&KEYS[..]).prop_map(|k| CString::try_from(k).expect("no NUL"))
}

/// Text without NUL (BSON C strings cannot hold one), including multi-byte characters.
fn text() -> impl Strategy<Value = String> {
    vec(prop_oneof![Just('x'), Just('é'), Just('☃'), Just('"'), Just('\n'), any::<char>()], 0..6)
        .prop_map(|chars| chars.into_iter().filter(|c| *c != '\0').collect())
}

fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
        (-1000i32..1000).prop_map(|n| f64::from(n) / 8.0),
    ]
}

fn long() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0), -100i64..100]
}

fn millis() -> impl Strategy<Value = i64> {
    prop_oneof![
        -62_135_596_800_000i64..253_402_300_800_000, // years 1 to 9999
        any::<i64>(),                                // beyond the µs range too
        Just(i64::MIN),
        Just(i64::MAX),
        Just(-1),
    ]
}

fn decimal() -> impl Strategy<Value = Decimal128> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(Decimal128::from_bytes), // any encoding: NaN, ±Inf, huge
        (-100_000i64..100_000, 0u32..6).prop_map(|(n, scale)| {
            let text = format!("{n}E-{scale}");
            text.parse().expect("decimal")
        }),
    ]
}

fn binary() -> impl Strategy<Value = Binary> {
    let subtype = prop_oneof![
        Just(BinarySubtype::Generic),
        Just(BinarySubtype::Uuid),
        Just(BinarySubtype::UuidOld),
        Just(BinarySubtype::Md5),
        Just(BinarySubtype::UserDefined(0x80)),
    ];
    let bytes = prop_oneof![vec(any::<u8>(), 16..=16), vec(any::<u8>(), 0..20)];
    (subtype, bytes).prop_map(|(subtype, bytes)| Binary { subtype, bytes })
}

fn scalar() -> impl Strategy<Value = RawBson> {
    prop_oneof![
        any::<i32>().prop_map(RawBson::Int32),
        long().prop_map(RawBson::Int64),
        double().prop_map(RawBson::Double),
        any::<bool>().prop_map(RawBson::Boolean),
        text().prop_map(RawBson::String),
        Just(RawBson::Null),
        any::<[u8; 12]>().prop_map(|b| RawBson::ObjectId(ObjectId::from_bytes(b))),
        millis().prop_map(|ms| RawBson::DateTime(DateTime::from_millis(ms))),
        decimal().prop_map(RawBson::Decimal128),
        binary().prop_map(RawBson::Binary),
        (any::<u32>(), any::<u32>())
            .prop_map(|(time, increment)| RawBson::Timestamp(Timestamp { time, increment })),
        Just(RawBson::MinKey),
        Just(RawBson::MaxKey),
        Just(RawBson::Undefined),
        Just(RawBson::RegularExpression(Regex {
            pattern: "^a.*".try_into().expect("pattern"),
            options: "i".try_into().expect("options"),
        })),
        text().prop_map(RawBson::Symbol),
        text().prop_map(RawBson::JavaScriptCode),
    ]
}

/// Any value, documents and arrays nested up to four levels.
fn value() -> impl Strategy<Value = RawBson> {
    scalar().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4)
                .prop_map(|items| RawBson::Array(RawArrayBuf::from_iter(items))),
            vec((key(), inner), 0..4)
                .prop_map(|fields| RawBson::Document(RawDocumentBuf::from_iter(fields))),
        ]
    })
}

/// `_id` of mixed kinds across documents.
fn id() -> impl Strategy<Value = RawBson> {
    prop_oneof![
        any::<[u8; 12]>().prop_map(|b| RawBson::ObjectId(ObjectId::from_bytes(b))),
        text().prop_map(RawBson::String),
        any::<i32>().prop_map(RawBson::Int32),
        any::<i64>().prop_map(RawBson::Int64),
        (any::<i32>(), text()).prop_map(|(a, b)| {
            let mut doc = RawDocumentBuf::new();
            doc.append(bson::raw::cstr!("a"), a);
            doc.append(bson::raw::cstr!("b"), b);
            RawBson::Document(doc)
        }),
    ]
}

/// A document: usually with an `_id` first, then fields (repeated keys possible).
fn document() -> impl Strategy<Value = RawDocumentBuf> {
    (prop::option::weighted(0.9, id()), vec((key(), value()), 0..6)).prop_map(|(id, fields)| {
        let mut doc = RawDocumentBuf::new();
        if let Some(id) = id {
            doc.append(bson::raw::cstr!("_id"), id);
        }
        for (k, v) in fields {
            doc.append(k, v);
        }
        doc
    })
}

fn infer(docs: &[RawDocumentBuf]) -> SchemaRef {
    let mut inference = Inference::new();
    for doc in docs {
        inference.observe(doc).expect("well-formed BSON is always observed");
    }
    // The reports are built too: they must not panic either.
    let _ = inference.fields();
    inference.schema()
}

/// The input schema a `SELECT *` sync has after seeing `docs`: the inferred schema without the
/// fields that carried no typed value.
fn sync_schema(docs: &[RawDocumentBuf]) -> SchemaRef {
    let mut inference = Inference::new();
    for doc in docs {
        inference.observe(doc).expect("well-formed BSON is always observed");
    }
    std::sync::Arc::new(typed(&inference.schema(), &inference.fields()))
}

/// Appends every document; returns the batch of the appended ones, with their indices.
fn convert(schema: &SchemaRef, docs: &[RawDocumentBuf]) -> (RecordBatch, Vec<usize>) {
    let mut builder = BatchBuilder::new(schema.clone());
    let mut appended = Vec::new();
    let mut rejected = 0;
    for (i, doc) in docs.iter().enumerate() {
        match builder.append(doc) {
            Ok(()) => appended.push(i),
            Err(Error::Convert { id, field, reason }) => {
                assert_eq!(id, document_id(doc), "the error names the document's _id");
                // The path starts at one of the document's fields (or at a missing `_id`);
                // names may be empty or hold dots themselves.
                let names_a_field = field == "_id"
                    || doc
                        .iter()
                        .map(|e| e.expect("well-formed").0.as_str().to_owned())
                        .any(|key| field == key || field.starts_with(&format!("{key}.")));
                assert!(
                    names_a_field,
                    "the error names a field of the document: `{field}`: {reason}"
                );
                assert!(!reason.is_empty());
                rejected += 1;
            }
            Err(other) => panic!("not a conversion error: {other:?}"),
        }
        assert_eq!(builder.len(), appended.len(), "all or nothing");
    }
    assert_eq!(appended.len() + rejected, docs.len());
    let batch = builder.finish().expect("the appended rows form a valid batch");
    assert_eq!(batch.num_rows(), appended.len());
    (batch, appended)
}

/// The first value of `key` in `doc` (the converter lets the first of repeated keys win).
fn first(doc: &RawDocumentBuf, key: &str) -> Option<RawBson> {
    doc.iter()
        .map(|e| e.expect("well-formed"))
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| RawBson::from(v))
}

/// Checks the top-level columns whose values map losslessly against the documents.
fn assert_round_trip(batch: &RecordBatch, docs: &[&RawDocumentBuf]) {
    let schema = batch.schema();
    for (c, field) in schema.fields().iter().enumerate() {
        let column = batch.column(c);
        let extjson = field.metadata().get(ENCODING_KEY).is_some_and(|e| e == EXTJSON);
        for (row, doc) in docs.iter().enumerate() {
            let value = first(doc, field.name());
            // A column of Extended JSON that cannot hold a null (a mixed-type `_id`) holds the
            // text `null`.
            if extjson && !field.is_nullable() && value == Some(RawBson::Null) {
                assert_eq!(
                    column.as_string::<i32>().value(row),
                    "null",
                    "{} of row {row}",
                    field.name()
                );
                continue;
            }
            let null = matches!(value, None | Some(RawBson::Null));
            assert_eq!(column.is_null(row), null, "{} of row {row}", field.name());
            let Some(value) = value.filter(|_| !null) else { continue };
            match (field.data_type(), value) {
                (DataType::Int32, RawBson::Int32(v)) => {
                    assert_eq!(column.as_primitive::<Int32Type>().value(row), v);
                }
                (DataType::Int64, RawBson::Int32(v)) => {
                    assert_eq!(column.as_primitive::<Int64Type>().value(row), i64::from(v));
                }
                (DataType::Int64, RawBson::Int64(v)) => {
                    assert_eq!(column.as_primitive::<Int64Type>().value(row), v);
                }
                (DataType::Float64, value) => {
                    let got = column.as_primitive::<Float64Type>().value(row);
                    match value {
                        RawBson::Double(v) => assert_eq!(got.to_bits(), v.to_bits()),
                        RawBson::Int32(v) => assert_eq!(got, f64::from(v)),
                        RawBson::Int64(v) => assert_eq!(got as i128, i128::from(v)),
                        other => panic!("{other:?} in a Float64 column"),
                    }
                }
                (DataType::Boolean, RawBson::Boolean(v)) => {
                    assert_eq!(column.as_boolean().value(row), v);
                }
                (DataType::Utf8, RawBson::String(v)) if !extjson => {
                    assert_eq!(column.as_string::<i32>().value(row), v);
                }
                (DataType::Utf8, RawBson::String(v)) => {
                    let quoted = serde_json::to_string(&v).expect("json");
                    assert_eq!(column.as_string::<i32>().value(row), quoted);
                }
                (DataType::Utf8, RawBson::ObjectId(v)) if !extjson => {
                    assert_eq!(column.as_string::<i32>().value(row), v.to_hex());
                }
                (DataType::Timestamp(TimeUnit::Microsecond, _), RawBson::DateTime(v)) => {
                    let micros = column.as_primitive::<TimestampMicrosecondType>().value(row);
                    assert_eq!(micros, v.timestamp_millis() * 1000);
                }
                (DataType::FixedSizeBinary(16), RawBson::Binary(b)) => {
                    assert_eq!(column.as_fixed_size_binary().value(row), &b.bytes[..]);
                }
                (DataType::Binary, RawBson::Binary(b)) => {
                    assert_eq!(column.as_binary::<i32>().value(row), &b.bytes[..]);
                }
                _ => {} // nested, decimal and text-of-other-kinds columns: checked elsewhere
            }
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, max_shrink_iters: 2000, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// The schema inferred from the documents themselves: every document is appended, except
    /// those holding a date beyond the microsecond range (±292,000 years), which are rejected
    /// naming the field; appended values read back equal.
    #[test]
    fn documents_convert_with_their_own_schema(docs in vec(document(), 1..12)) {
        let schema = infer(&docs);
        let (batch, appended) = convert(&schema, &docs);
        let kept: Vec<&RawDocumentBuf> = appended.iter().map(|&i| &docs[i]).collect();
        assert_round_trip(&batch, &kept);
    }

    /// A schema inferred from only some of the documents: the others may not fit, and each one
    /// is then either appended or reported, never half-appended.
    #[test]
    fn documents_outside_the_sample_are_appended_or_reported(
        sample in vec(document(), 1..6),
        docs in vec(document(), 1..12),
    ) {
        let schema = infer(&sample);
        let (batch, appended) = convert(&schema, &docs);
        let kept: Vec<&RawDocumentBuf> = appended.iter().map(|&i| &docs[i]).collect();
        assert_round_trip(&batch, &kept);
    }

    /// A `SELECT *` sync converts the documents that fit its schema as it is without inferring
    /// them (`append_if_fits`): whenever every document of a batch is taken so, growing the
    /// schema by what the batch shows changes nothing.
    #[test]
    fn a_batch_taken_without_inference_never_grows_the_schema(
        sample in vec(document(), 1..6),
        docs in vec(document(), 1..8),
    ) {
        let schema = sync_schema(&sample);
        for batch in [&docs[..], &sample[..]] {
            let mut builder = BatchBuilder::new(schema.clone());
            if batch.iter().all(|doc| builder.append_if_fits(doc)) {
                prop_assert_eq!(grow(&schema, &sync_schema(batch)), schema.clone());
            }
        }
    }
}

/// Order documents fit the schema inferred from them (the one-pass path is the usual one), and
/// a document with a new field, an int64 for an int32 column or a nested new field does not,
/// and leaves nothing behind.
#[test]
fn orders_fit_their_own_schema_and_new_fields_do_not() {
    let docs: Vec<RawDocumentBuf> = crate::support::data::orders(200, 4)
        .iter()
        .map(|doc| RawDocumentBuf::try_from(doc).unwrap())
        .collect();
    let schema = sync_schema(&docs);
    let mut builder = BatchBuilder::new(schema.clone());
    assert!(docs.iter().all(|doc| builder.append_if_fits(doc)));
    assert_eq!(builder.len(), docs.len());
    let mut changed = |change: &dyn Fn(&mut bson::Document)| {
        let mut doc = bson::Document::try_from(docs[0].as_ref()).unwrap();
        change(&mut doc);
        let fits = builder.append_if_fits(&RawDocumentBuf::try_from(&doc).unwrap());
        assert_eq!(builder.len(), docs.len() + usize::from(fits));
        if fits {
            builder.finish().unwrap();
            docs.iter().for_each(|doc| assert!(builder.append_if_fits(doc)));
        }
        fits
    };
    assert!(!changed(&|d| {
        d.insert("coupon", "SPRING");
    }));
    assert!(changed(&|d| {
        d.insert("coupon", bson::Bson::Null);
    }));
    assert!(!changed(&|d| {
        d.insert("priority", i64::MAX);
    }));
    assert!(!changed(&|d| {
        d.get_document_mut("customer").unwrap().insert("vip", true);
    }));
}
