//! Document shapes: nesting, arrays of documents and of arrays, odd field names, repeated keys,
//! projections, mixed kinds through the inferred schema, and all-or-nothing appends.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Int64Type};
use bson::oid::ObjectId;
use bson::raw::{RawBson, RawDocumentBuf};
use bson::rawdoc;
use misql::mongo::bson_arrow::BatchBuilder;
use misql::mongo::infer::{Inference, MAX_NESTING_DEPTH};

use super::{convert, raw_document, schema, string_bytes, strings};

fn infer(docs: &[RawDocumentBuf]) -> arrow::datatypes::SchemaRef {
    let mut inference = Inference::new();
    for doc in docs {
        inference.observe(doc).unwrap();
    }
    inference.schema()
}

fn item(data_type: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", data_type, true)))
}

#[test]
fn arrays_of_documents_become_lists_of_structs() {
    let docs = [
        rawdoc! { "_id": 1, "items": [{ "sku": "a", "qty": 2 }, { "sku": "b" }] },
        rawdoc! { "_id": 2, "items": [] },
        rawdoc! { "_id": 3, "items": [{ "qty": 5, "sku": "c" }, null] },
    ];
    let batch = convert(&infer(&docs), &docs);
    let list = batch.column(1).as_list::<i32>();
    assert_eq!(list.value_offsets(), [0, 2, 2, 4]);
    let items = list.values().as_struct();
    assert_eq!(
        strings(items.column_by_name("sku").unwrap()),
        [Some("a".into()), Some("b".into()), Some("c".into()), None]
    );
    let qty = items.column_by_name("qty").unwrap().as_primitive::<Int32Type>();
    assert_eq!(qty.iter().collect::<Vec<_>>(), [Some(2), None, Some(5), None]);
    assert!(items.is_null(3) && items.is_valid(2));
}

#[test]
fn arrays_of_arrays_become_lists_of_lists() {
    let docs = [rawdoc! { "_id": 1, "m": [[1, 2], [], [3]] }, rawdoc! { "_id": 2, "m": [[4i64]] }];
    let schema = infer(&docs);
    assert_eq!(schema.field(1).data_type(), &item(item(DataType::Int64)));
    let batch = convert(&schema, &docs);
    let outer = batch.column(1).as_list::<i32>();
    assert_eq!(outer.value_offsets(), [0, 3, 4]);
    let inner = outer.values().as_list::<i32>();
    assert_eq!(inner.value_offsets(), [0, 2, 2, 3, 4]);
    assert_eq!(inner.values().as_primitive::<Int64Type>().values().to_vec(), [1, 2, 3, 4]);
}

#[test]
fn mixed_kinds_in_one_field_widen_or_become_extended_json() {
    let docs = [
        rawdoc! { "_id": 1, "n": 1, "x": 1, "s": "a" },
        rawdoc! { "_id": 2, "n": 5_000_000_000i64, "x": 2.5, "s": 7 },
        rawdoc! { "_id": 3, "n": null, "x": 3i64, "s": { "k": true } },
    ];
    let schema = infer(&docs);
    let types: Vec<_> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
    assert_eq!(types, [DataType::Int32, DataType::Int64, DataType::Float64, DataType::Utf8]);
    let batch = convert(&schema, &docs);
    let n: Vec<_> = batch.column(1).as_primitive::<Int64Type>().iter().collect();
    assert_eq!(n, [Some(1), Some(5_000_000_000), None]);
    assert_eq!(batch.column(2).as_primitive::<Float64Type>().values().to_vec(), [1.0, 2.5, 3.0]);
    assert_eq!(
        strings(batch.column(3)),
        [Some("a".into()), Some("7".into()), Some(r#"{"k":true}"#.into())]
    );
}

#[test]
fn a_hundred_levels_of_nesting_convert_to_structs_then_json_text() {
    let mut value = rawdoc! { "leaf": 42 };
    for _ in 0..99 {
        value = rawdoc! { "d": value };
    }
    let docs = [rawdoc! { "_id": 1, "d": value.clone() }, rawdoc! { "_id": 2 }];
    // The inferred schema: structs down to the limit, the level below as Extended JSON text.
    let batch = convert(&infer(&docs), &docs);
    let mut array = batch.column(1).clone();
    for _ in 0..MAX_NESTING_DEPTH - 1 {
        array = array.as_struct().column_by_name("d").unwrap().clone();
    }
    let text = strings(array.as_struct().column_by_name("d").unwrap());
    let rest = 99 - MAX_NESTING_DEPTH;
    let json = format!("{}{{\"leaf\":42}}{}", "{\"d\":".repeat(rest), "}".repeat(rest));
    assert_eq!(text, [Some(json), None]);

    // The converter itself has no limit: given a schema 100 structs deep, it fills it.
    let mut data_type = DataType::Struct(vec![Field::new("leaf", DataType::Int32, true)].into());
    for _ in 0..99 {
        data_type = DataType::Struct(vec![Field::new("d", data_type, true)].into());
    }
    let deep =
        schema(vec![Field::new("_id", DataType::Int32, false), Field::new("d", data_type, true)]);
    let batch = convert(&deep, &docs);
    let mut array = batch.column(1).clone();
    for _ in 0..99 {
        array = array.as_struct().column_by_name("d").unwrap().clone();
    }
    let leaf = array.as_struct().column_by_name("leaf").unwrap().as_primitive::<Int32Type>();
    assert_eq!(leaf.iter().collect::<Vec<_>>(), [Some(42), None]);
}

#[test]
fn field_names_with_dots_dollars_spaces_unicode_or_nothing_are_columns() {
    let names = ["a.b", "$price", "with space", "naïve ☃", ""];
    let mut doc = RawDocumentBuf::new();
    doc.append(bson::raw::cstr!("_id"), 1);
    for (i, name) in names.iter().enumerate() {
        doc.append(<&bson::raw::CStr>::try_from(*name).unwrap(), i as i32);
    }
    let schema = infer(std::slice::from_ref(&doc));
    let got: Vec<_> = schema.fields().iter().skip(1).map(|f| f.name().clone()).collect();
    assert_eq!(got, names);
    let batch = convert(&schema, &[doc]);
    for (i, name) in names.iter().enumerate() {
        let column = batch.column_by_name(name).unwrap().as_primitive::<Int32Type>();
        assert_eq!(column.value(0), i as i32, "{name}");
    }
}

#[test]
fn the_first_of_repeated_keys_wins() {
    let doc = raw_document(&[
        (0x10, "_id", 1i32.to_le_bytes().to_vec()),
        (0x02, "k", string_bytes("first")),
        (0x10, "n", 5i32.to_le_bytes().to_vec()),
        (0x02, "k", string_bytes("second")),
        (0x02, "n", string_bytes("not a number")),
    ]);
    let schema = infer(std::slice::from_ref(&doc));
    assert_eq!(schema.field_with_name("n").unwrap().data_type(), &DataType::Int32);
    let batch = convert(&schema, &[doc]);
    assert_eq!(strings(batch.column_by_name("k").unwrap()), [Some("first".into())]);
    assert_eq!(batch.column_by_name("n").unwrap().as_primitive::<Int32Type>().value(0), 5);
}

#[test]
fn a_projection_reads_only_its_columns_and_skips_the_rest() {
    let docs = [
        rawdoc! { "_id": 1, "skip": { "deep": [1, 2] }, "customer": { "name": "Ann", "email": "a@x", "address": { "city": "Oslo" } }, "total": 3.5 },
        rawdoc! { "total": 1.0, "customer": { "address": { "zip": "0150", "city": "Bergen" } }, "_id": 2, "skip": "x" },
    ];
    let address = DataType::Struct(vec![Field::new("city", DataType::Utf8, true)].into());
    let customer = DataType::Struct(vec![Field::new("address", address, true)].into());
    let schema = schema(vec![
        Field::new("customer", customer, true),
        Field::new("_id", DataType::Int32, false),
    ]);
    let batch = convert(&schema, &docs);
    assert_eq!(batch.num_columns(), 2);
    let city = batch.column(0).as_struct().column(0).as_struct().column(0);
    assert_eq!(strings(city), [Some("Oslo".into()), Some("Bergen".into())]);
    assert_eq!(batch.column(1).as_primitive::<Int32Type>().values().to_vec(), [1, 2]);
}

/// Order-like documents; `bad` puts a string into `items.2.qty`.
fn order(id: i32, bad: bool) -> RawDocumentBuf {
    let qty: RawBson = if bad { "three".into() } else { 3.into() };
    rawdoc! {
        "_id": id,
        "status": format!("status {id}"),
        "customer": { "name": format!("n{id}"), "tags": ["a", "b"] },
        "items": [
            { "sku": "x", "qty": 1, "notes": ["fragile"] },
            { "sku": "y", "qty": 2 },
            { "sku": "z", "qty": qty, "notes": ["late", "again"] },
        ],
        "total": 10.5,
    }
}

#[test]
fn a_bad_document_leaves_the_batch_as_if_it_was_never_appended() {
    let schema = infer(&[order(0, false)]);
    let mut builder = BatchBuilder::new(schema.clone());
    for id in 1..=3 {
        builder.append(&order(id, false)).unwrap();
    }
    let size = builder.byte_size();
    let err = builder.append(&order(99, true)).unwrap_err();
    assert_eq!(builder.len(), 3);
    assert_eq!(builder.byte_size(), size);
    for id in 4..=5 {
        builder.append(&order(id, false)).unwrap();
    }
    let with_bad = builder.finish().unwrap();
    let without: Vec<_> = (1..=5).map(|id| order(id, false)).collect();
    assert_eq!(with_bad, convert(&schema, &without));
    assert_eq!(
        err.to_string(),
        "document _id=99: field `items.2.qty`: expected int32, found string \"three\""
    );
}

#[test]
fn errors_name_the_object_id_and_the_nested_path() {
    let oid = ObjectId::parse_str("65f0c0ffee00000000000001").unwrap();
    let docs = [rawdoc! { "_id": oid, "a": { "b": [[1, 2]] } }];
    let schema = infer(&docs);
    let mut builder = BatchBuilder::new(schema);
    let err = builder.append(&rawdoc! { "_id": oid, "a": { "b": [[1], [2, true]] } }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "document _id={\"$oid\":\"65f0c0ffee00000000000001\"}: field `a.b.1.1`: expected int32, found bool true"
    );
    assert!(builder.is_empty());
}

#[test]
fn object_id_keys_are_hex_strings() {
    let oid = ObjectId::parse_str("65f0c0ffee00000000000002").unwrap();
    let docs = [rawdoc! { "_id": oid }];
    let batch = convert(&infer(&docs), &docs);
    assert_eq!(strings(batch.column(0)), [Some("65f0c0ffee00000000000002".into())]);
    assert!(!batch.schema().field(0).is_nullable());
}
