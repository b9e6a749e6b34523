//! Hostile documents: each inserted into SecantusDB with the driver, then read through the
//! `misql` binary (`DESCRIBE`, `SELECT`), checking the values that come out — or the error, which
//! names the document's `_id` and the field. Where the server itself refuses a document, the
//! test says so and checks the converter on its own. Nothing may be dropped or truncated
//! silently.

use std::str::FromStr;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use bson::raw::RawDocumentBuf;
use bson::spec::BinarySubtype;
use bson::{Binary, DateTime, Decimal128, doc, oid::ObjectId, rawdoc};
use misql::mongo::bson_arrow::BatchBuilder;
use misql::mongo::infer::{Inference, MAX_NESTING_DEPTH};
use serde_json::{Value, json};

use crate::bson_arrow::{raw_document, string_bytes};
use crate::support::{client, csv_rows, misql, unique_db};

/// Inserts raw documents into `db.coll` with the driver.
async fn insert(db: &str, coll: &str, docs: &[RawDocumentBuf]) {
    client()
        .await
        .database(db)
        .collection::<RawDocumentBuf>(coll)
        .insert_many(docs)
        .await
        .unwrap_or_else(|e| panic!("insert into {db}.{coll}: {e}"));
}

/// CSV rows of a statement that must succeed (header first).
fn csv(sql: &str) -> Vec<Vec<String>> {
    let run = misql(&["--format", "csv", "-e", sql]);
    assert!(run.success, "misql failed for {sql}: {}", run.stderr);
    csv_rows(&run.stdout)
}

/// JSON rows of a statement that must succeed.
fn json_rows(sql: &str) -> Vec<Value> {
    let run = misql(&["--format", "json", "-e", sql]);
    assert!(run.success, "misql failed for {sql}: {}", run.stderr);
    run.stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// The error of a statement that must fail.
fn error(sql: &str) -> String {
    let run = misql(&["-e", sql]);
    assert!(!run.success, "{sql} should fail, printed {}", run.stdout);
    run.stderr
}

/// DESCRIBE as `column_name -> row` (all eight columns).
fn describe(db: &str, coll: &str) -> Vec<Vec<String>> {
    let rows = csv(&format!("DESCRIBE mongo.{db}.{coll}"));
    assert_eq!(
        rows[0],
        [
            "column_name",
            "data_type",
            "is_nullable",
            "bson_types",
            "present",
            "max_array_len",
            "max_depth",
            "suggested_cast"
        ]
    );
    rows[1..].to_vec()
}

fn row<'a>(rows: &'a [Vec<String>], name: &str) -> &'a [String] {
    rows.iter().find(|r| r[0] == name).unwrap_or_else(|| {
        let names: Vec<&str> = rows.iter().take(20).map(|r| r[0].as_str()).collect();
        panic!("no row {name:?} among {} rows, the first: {names:?}", rows.len())
    })
}

fn decimal(text: &str) -> Decimal128 {
    Decimal128::from_str(text).expect("decimal")
}

#[tokio::test(flavor = "multi_thread")]
async fn field_names_with_dots_dollars_spaces_unicode_or_empty_are_columns_of_those_names() {
    // SecantusDB, like MongoDB 5+, stores all of these names. Names a MongoDB projection
    // cannot take (dots, a leading `$`, empty) make the scan fetch whole documents.
    let db = unique_db("names");
    let doc = rawdoc! {
        "_id": 1, "a.b": 1, "$x": 2, "a b": 3, "ünï ☃": 4, "": 5,
        "d": { "x.y": 6, "$z": 7, "": 8 },
    };
    insert(&db, "c", &[doc]).await;
    let rows = describe(&db, "c");
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["_id", "a.b", "$x", "a b", "ünï ☃", "", "d", "d.x.y", "d.$z", "d."]);
    assert!(rows.iter().all(|r| r[1] == "Int32" || r[0] == "d"), "{rows:?}");
    // Every name can be quoted in SQL, nested ones too.
    let sql = format!(
        r#"SELECT "a.b", "$x", "a b", "ünï ☃", "", d."x.y" AS xy, d."$z" AS z FROM mongo.{db}.c"#
    );
    assert_eq!(csv(&sql)[1], ["1", "2", "3", "4", "5", "6", "7"]);
    // SELECT * keeps every field, the empty-named nested one included.
    let all = json_rows(&format!("SELECT * FROM mongo.{db}.c"));
    assert_eq!(
        all,
        [json!({"_id": 1, "a.b": 1, "$x": 2, "a b": 3, "ünï ☃": 4, "": 5,
                "d": {"x.y": 6, "$z": 7, "": 8}})]
    );
    // DataFusion cannot name a nested field whose name is empty; its parent still holds it.
    let err = error(&format!(r#"SELECT d."" FROM mongo.{db}.c"#));
    assert!(err.contains("Field name must be a non-empty string"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_field_names_keep_one_value() {
    // A document with `k` twice, built byte by byte. SecantusDB keeps the last `k` when it
    // stores the document (mongod would keep both, and its queries see the first); misql reads
    // what the server returns, and its converter lets the first of repeated keys win, as
    // MongoDB's own queries do.
    let db = unique_db("dupes");
    let doc = raw_document(&[
        (0x10, "_id", 1i32.to_le_bytes().to_vec()),
        (0x10, "k", 1i32.to_le_bytes().to_vec()),
        (0x02, "k", string_bytes("second")),
    ]);
    insert(&db, "c", std::slice::from_ref(&doc)).await;
    let stored: Vec<RawDocumentBuf> = {
        use futures::TryStreamExt;
        let coll = client().await.database(&db).collection::<RawDocumentBuf>("c");
        coll.find(doc! {}).await.unwrap().try_collect().await.unwrap()
    };
    let keys: Vec<String> = stored[0].iter().map(|e| e.unwrap().0.as_str().to_owned()).collect();
    assert_eq!(keys, ["_id", "k"], "SecantusDB stores one k");
    assert_eq!(stored[0].get_str("k").unwrap(), "second", "the last one");
    assert_eq!(csv(&format!("SELECT _id, k FROM mongo.{db}.c"))[1], ["1", "second"]);
    assert_eq!(row(&describe(&db, "c"), "k")[3], "string: 1");

    // The converter on the document as sent: the first `k` wins, in inference and conversion.
    let mut inference = Inference::new();
    inference.observe(&doc).unwrap();
    let mut builder = BatchBuilder::new(inference.schema());
    builder.append(&doc).unwrap();
    let batch = builder.finish().unwrap();
    assert_eq!(batch.schema().field(1).data_type(), &DataType::Int32);
    assert_eq!(batch.column(1).as_primitive::<arrow::datatypes::Int32Type>().value(0), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn null_and_missing_both_read_as_null_and_describe_tells_them_apart() {
    let db = unique_db("nulls");
    insert(
        &db,
        "c",
        &[rawdoc! { "_id": 1, "v": null }, rawdoc! { "_id": 2 }, rawdoc! { "_id": 3, "v": 7 }],
    )
    .await;
    let rows = csv(&format!("SELECT _id, v, v IS NULL AS is_null FROM mongo.{db}.c ORDER BY _id"));
    assert_eq!(rows[1..], [["1", "", "true"], ["2", "", "true"], ["3", "7", "false"]]);
    // The sample shows the difference: present in 2 of 3 documents, once as null.
    let v = row(&describe(&db, "c"), "v").to_vec();
    assert_eq!(v[1..5], ["Int32", "YES", "null: 1, int: 1", "66.7%"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn arrays_mixing_scalars_and_documents_and_arrays_of_arrays() {
    // A mixed array is a list of text: strings as they are, other values as relaxed Extended
    // JSON. Arrays of arrays are lists of lists of the unified element type.
    let db = unique_db("arrays");
    insert(
        &db,
        "c",
        &[
            rawdoc! { "_id": 1, "m": [1, { "a": 1 }, "x", null, [2]], "aa": [[1, 2], [], [3]] },
            rawdoc! { "_id": 2, "m": [], "aa": [[4], null] },
        ],
    )
    .await;
    let rows = describe(&db, "c");
    assert_eq!(row(&rows, "m")[1..2], ["List(Utf8)"]);
    assert_eq!(row(&rows, "m[]")[3], "CONFLICT string: 1, object: 1, array: 1, null: 1, int: 1");
    assert_eq!(row(&rows, "aa")[1], "List(List(Int32))");
    assert_eq!(row(&rows, "aa")[5..7], ["3", "2"], "max_array_len, max_depth");
    assert_eq!(row(&rows, "m")[5..7], ["5", "2"]);
    let all = json_rows(&format!("SELECT _id, m, aa FROM mongo.{db}.c ORDER BY _id"));
    assert_eq!(
        all,
        [
            json!({"_id": 1, "m": ["1", "{\"a\":1}", "x", null, "[2]"], "aa": [[1, 2], [], [3]]}),
            json!({"_id": 2, "m": [], "aa": [[4], null]}),
        ]
    );
    let picked =
        csv(&format!("SELECT m[2] AS doc, aa[3][1] AS three FROM mongo.{db}.c WHERE _id = 1"));
    assert_eq!(picked[1], ["{\"a\":1}", "3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_levels_of_nesting_read_back_as_structs_then_json_text() {
    // MongoDB allows 100 levels; a column nests at most MAX_NESTING_DEPTH struct and list types
    // (an Iceberg schema much deeper cannot be loaded back): the level below is a string of
    // relaxed Extended JSON holding the rest of the document, whole.
    let db = unique_db("deep");
    let mut value = rawdoc! { "leaf": 1 };
    for _ in 0..99 {
        value = rawdoc! { "n": value };
    }
    insert(&db, "c", &[rawdoc! { "_id": 1, "n": value }]).await;
    let rows = describe(&db, "c");
    assert_eq!(rows.len(), 2 + MAX_NESTING_DEPTH, "_id, n and the levels below it");
    assert_eq!(row(&rows, "n")[6], "100", "max_depth of n");
    let text = format!("n{}", ".n".repeat(MAX_NESTING_DEPTH));
    assert_eq!(row(&rows, &text)[1..4], ["Utf8", "YES", "object: 1"]);
    assert_eq!(row(&rows, &text)[6], (100 - MAX_NESTING_DEPTH).to_string(), "its max_depth");
    let all = json_rows(&format!("SELECT n FROM mongo.{db}.c"));
    let mut at = &all[0]["n"];
    for level in 0..MAX_NESTING_DEPTH {
        at = at.get("n").unwrap_or_else(|| panic!("level {level} missing"));
    }
    let rest = 99 - MAX_NESTING_DEPTH;
    let expected = format!("{}{{\"leaf\":1}}{}", "{\"n\":".repeat(rest), "}".repeat(rest));
    assert_eq!(at.as_str(), Some(expected.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_near_the_16_mib_limit_goes_through_whole() {
    let db = unique_db("big");
    let big = "x".repeat(15 * 1024 * 1024) + "END";
    let docs: Vec<RawDocumentBuf> =
        (0..3).map(|i| rawdoc! { "_id": i, "s": big.clone(), "k": i * 10 }).collect();
    insert(&db, "c", &docs).await;
    let started = Instant::now();
    let rows = csv(&format!(
        "SELECT _id, length(s) AS len, right(s, 3) AS tail, k FROM mongo.{db}.c ORDER BY _id"
    ));
    let len = big.len().to_string();
    assert_eq!(
        rows[1..],
        [["0", &len, "END", "0"], ["1", &len, "END", "10"], ["2", &len, "END", "20"]]
    );
    // A guard against a hang, not a speed claim (about 3 s in a debug build here).
    assert!(started.elapsed() < Duration::from_secs(120), "took {:?}", started.elapsed());
    // Over the limit, the driver refuses to send the document at all.
    let too_big = rawdoc! { "_id": 9, "s": "x".repeat(17 * 1024 * 1024) };
    let coll = client().await.database(&db).collection::<RawDocumentBuf>("c");
    let err = coll.insert_one(too_big).await.expect_err("over 16 MiB").to_string();
    assert!(err.contains("must be within 16777216 bytes"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn decimal_nan_and_infinity_are_text_and_a_cast_that_cannot_hold_a_value_names_it() {
    // NaN and ±Infinity have no Arrow decimal: a field holding them is text, each decimal
    // written as its decimal text (castable like any number).
    let db = unique_db("decimals");
    let special = [
        rawdoc! { "_id": 1, "d": decimal("NaN") },
        rawdoc! { "_id": 2, "d": decimal("Infinity") },
        rawdoc! { "_id": 3, "d": decimal("-Infinity") },
        rawdoc! { "_id": 4, "d": decimal("12345.678") },
    ];
    insert(&db, "special", &special).await;
    assert_eq!(row(&describe(&db, "special"), "d")[1], "Utf8");
    let rows = csv(&format!("SELECT _id, d FROM mongo.{db}.special ORDER BY _id"));
    assert_eq!(
        rows[1..],
        [["1", "NaN"], ["2", "Infinity"], ["3", "-Infinity"], ["4", "12345.678"]]
    );
    let err = error(&format!("SELECT _id, d::DECIMAL(10,3) FROM mongo.{db}.special WHERE _id < 3"));
    assert!(err.contains("document _id=1: field `d`:"), "{err}");
    assert!(err.contains("NaN"), "{err}");

    // Finite decimals are Decimal128(38, 3); a cast to fewer digits than a value needs fails
    // naming the document and the field, whether or not the SELECT reads `_id`.
    let finite = [
        rawdoc! { "_id": "a", "d": decimal("1.5") },
        rawdoc! { "_id": "b", "d": decimal("12345.678") },
    ];
    insert(&db, "finite", &finite).await;
    assert_eq!(row(&describe(&db, "finite"), "d")[1], "Decimal128(38, 3)");
    for sql in [
        format!("SELECT _id, d::DECIMAL(5,2) AS d FROM mongo.{db}.finite"),
        format!("SELECT d::DECIMAL(5,2) AS d FROM mongo.{db}.finite"),
        format!("SELECT d::DECIMAL(5,2) AS d FROM mongo.{db}.finite WHERE d > 0"),
    ] {
        let err = error(&sql);
        assert!(err.contains(r#"document _id="b": field `d`:"#), "{sql}: {err}");
        assert!(err.contains("too large to store in a Decimal128 of precision 5"), "{err}");
        assert!(err.contains("(in CAST(d AS Decimal128(5, 2)))"), "{err}");
    }
    let rows =
        csv(&format!("SELECT _id, d::DECIMAL(8,3) AS d FROM mongo.{db}.finite ORDER BY _id"));
    assert_eq!(rows[1..], [["a", "1.500"], ["b", "12345.678"]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn dates_before_1970_and_at_the_ends_of_years_1_and_9999() {
    let db = unique_db("dates");
    let cases = [
        (1, -1i64, "1969-12-31T23:59:59.999Z"),
        (2, -62_135_596_800_000, "0001-01-01T00:00:00Z"),
        (3, 253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (4, -86_400_000 * 365 * 100, "1870-01-25T00:00:00Z"),
    ];
    let docs: Vec<_> = cases
        .iter()
        .map(|(id, ms, _)| rawdoc! { "_id": *id, "t": DateTime::from_millis(*ms) })
        .collect();
    insert(&db, "c", &docs).await;
    assert_eq!(row(&describe(&db, "c"), "t")[1], "Timestamp(µs, UTC)");
    let rows = csv(&format!("SELECT _id, t FROM mongo.{db}.c ORDER BY _id"));
    let expected: Vec<Vec<String>> =
        cases.iter().map(|(id, _, text)| vec![id.to_string(), text.to_string()]).collect();
    assert_eq!(rows[1..], expected);
    let rows = csv(&format!(
        "SELECT _id, t < TIMESTAMP '1970-01-01T00:00:00Z' AS before FROM mongo.{db}.c ORDER BY _id"
    ));
    assert_eq!(rows[1..], [["1", "true"], ["2", "true"], ["3", "false"], ["4", "true"]]);

    // SecantusDB refuses dates outside years 1..9999 (it decodes them into Python datetimes);
    // mongod would store them.
    let coll = client().await.database(&db).collection::<RawDocumentBuf>("c");
    for ms in [253_402_300_800_000i64, -62_135_596_800_001] {
        let err = coll
            .insert_one(rawdoc! { "_id": 9, "t": DateTime::from_millis(ms) })
            .await
            .expect_err("SecantusDB refuses the year")
            .to_string();
        assert!(err.contains("out of range"), "{err}");
    }
    // The converter on its own: year 10000 and later fit microseconds; beyond about
    // ±292,000 years a date is an error naming the `_id` and the field.
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("_id", DataType::Int32, false),
        Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
    ]));
    let mut builder = BatchBuilder::new(schema);
    builder.append(&rawdoc! { "_id": 1, "t": DateTime::from_millis(253_402_300_800_000) }).unwrap();
    for ms in [i64::MAX, i64::MIN, 9_300_000_000_000_000] {
        let err = builder
            .append(&rawdoc! { "_id": 2, "t": DateTime::from_millis(ms) })
            .expect_err("beyond microseconds")
            .to_string();
        assert!(
            err.starts_with("document _id=2: field `t`: expected timestamp, found date"),
            "{err}"
        );
        assert!(err.ends_with("(out of range for the timestamp unit)"), "{err}");
    }
    let batch = builder.finish().unwrap();
    assert_eq!(batch.num_rows(), 1);
    let micros = batch.column(1).as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    assert_eq!(micros.value(0), 253_402_300_800_000_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn int64_extremes_are_exact_and_never_rounded_into_a_double() {
    let db = unique_db("ints");
    insert(
        &db,
        "longs",
        &[
            rawdoc! { "_id": 1, "i": i64::MAX },
            rawdoc! { "_id": 2, "i": i64::MIN },
            rawdoc! { "_id": 3, "i": 0 },
            rawdoc! { "_id": 4, "i": i32::MIN },
        ],
    )
    .await;
    assert_eq!(row(&describe(&db, "longs"), "i")[1], "Int64");
    let rows = csv(&format!("SELECT _id, i FROM mongo.{db}.longs ORDER BY _id"));
    assert_eq!(
        rows[1..],
        [
            ["1", "9223372036854775807"],
            ["2", "-9223372036854775808"],
            ["3", "0"],
            ["4", "-2147483648"]
        ]
    );
    // With a double in the same field, a Float64 column would round i64::MAX: the field is
    // text instead, and DESCRIBE suggests the exact cast.
    insert(&db, "mixed", &[rawdoc! { "_id": 1, "v": i64::MAX }, rawdoc! { "_id": 2, "v": 0.5 }])
        .await;
    let v = row(&describe(&db, "mixed"), "v").to_vec();
    assert_eq!((v[1].as_str(), v[7].as_str()), ("Utf8", "v::DECIMAL(38,1)"));
    let rows =
        csv(&format!("SELECT _id, v::DECIMAL(38,1) AS v FROM mongo.{db}.mixed ORDER BY _id"));
    assert_eq!(rows[1..], [["1", "9223372036854775807.0"], ["2", "0.5"]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn doubles_nan_infinities_negative_zero_and_extremes_are_kept() {
    let db = unique_db("doubles");
    let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 5e-324, f64::MAX];
    let docs: Vec<_> =
        values.iter().enumerate().map(|(i, v)| rawdoc! { "_id": i as i32, "f": *v }).collect();
    insert(&db, "c", &docs).await;
    assert_eq!(row(&describe(&db, "c"), "f")[1], "Float64");
    let rows = csv(&format!(
        "SELECT _id, f, isnan(f) AS nan, f = 'Infinity'::DOUBLE AS inf FROM mongo.{db}.c ORDER BY _id"
    ));
    assert_eq!(
        rows[1..],
        [
            ["0", "NaN", "true", "false"],
            ["1", "inf", "false", "true"],
            ["2", "-inf", "false", "false"],
            ["3", "-0.0", "false", "false"],
            ["4", "5e-324", "false", "false"],
            ["5", "1.7976931348623157e308", "false", "false"],
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_subtypes_keep_their_bytes_and_uuids_are_16_byte_columns() {
    // Subtype 4 of 16 bytes is a UUID column (FixedSizeBinary(16)); every other subtype —
    // generic, the old UUID subtype 3 (whose byte order depends on the driver that wrote it),
    // MD5, user-defined — is Binary with the bytes as they are (the subtype is not kept).
    let db = unique_db("binary");
    let bin = |subtype, bytes: &[u8]| Binary { subtype, bytes: bytes.to_vec() };
    let uuid: Vec<u8> = (0..16).collect();
    insert(
        &db,
        "c",
        &[rawdoc! {
            "_id": 1,
            "generic": bin(BinarySubtype::Generic, b"\x00\x01\xff"),
            "uuid": bin(BinarySubtype::Uuid, &uuid),
            "old_uuid": bin(BinarySubtype::UuidOld, &uuid),
            "md5": bin(BinarySubtype::Md5, &[0xaa; 16]),
            "user": bin(BinarySubtype::UserDefined(0x80), b"hi"),
            "empty": bin(BinarySubtype::Generic, b""),
        }],
    )
    .await;
    let rows = describe(&db, "c");
    let types: Vec<(&str, &str, &str)> =
        rows[1..].iter().map(|r| (r[0].as_str(), r[1].as_str(), r[3].as_str())).collect();
    assert_eq!(
        types,
        [
            ("generic", "Binary", "binData: 1"),
            ("uuid", "FixedSizeBinary(16)", "uuid: 1"),
            ("old_uuid", "Binary", "binData: 1"),
            ("md5", "Binary", "binData: 1"),
            ("user", "Binary", "binData: 1"),
            ("empty", "Binary", "binData: 1"),
        ]
    );
    let rows = csv(&format!(
        "SELECT generic, uuid, old_uuid, md5, user, empty, empty IS NULL AS null FROM mongo.{db}.c"
    ));
    let hex16 = hex::encode(&uuid);
    assert_eq!(rows[1], ["0001ff", &hex16, &hex16, &"aa".repeat(16), "6869", "", "false"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_of_mixed_kinds_stay_distinct_as_extended_json() {
    // `_id`s of several kinds in one collection: the column is text, and every value is relaxed
    // Extended JSON (strings quoted), so the ObjectId 65…01 and the string "65…01", or 5 and
    // "5", remain different keys.
    let db = unique_db("ids");
    let oid = ObjectId::from_str("650000000000000000000001").unwrap();
    insert(
        &db,
        "c",
        &[
            rawdoc! { "_id": oid, "n": 1 },
            rawdoc! { "_id": "650000000000000000000001", "n": 2 },
            rawdoc! { "_id": 5, "n": 3 },
            rawdoc! { "_id": "5", "n": 4 },
            rawdoc! { "_id": { "a": 1, "b": "x" }, "n": 5 },
            rawdoc! { "_id": 6i64, "n": 6 },
        ],
    )
    .await;
    let id = row(&describe(&db, "c"), "_id").to_vec();
    assert_eq!(id[1..3], ["Utf8", "NO"]);
    assert!(id[3].starts_with("CONFLICT "), "{id:?}");
    assert_eq!(id[7], "_id::VARCHAR");
    let rows = json_rows(&format!("SELECT n, _id FROM mongo.{db}.c ORDER BY n"));
    let ids: Vec<&str> = rows.iter().map(|r| r["_id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            r#"{"$oid":"650000000000000000000001"}"#,
            r#""650000000000000000000001""#,
            "5",
            r#""5""#,
            r#"{"a":1,"b":"x"}"#,
            "6",
        ]
    );
    let distinct = csv(&format!("SELECT count(DISTINCT _id) AS n FROM mongo.{db}.c"));
    assert_eq!(distinct[1], ["6"]);
    // Only int and long: one Int64 column.
    insert(&db, "ints", &[rawdoc! { "_id": 1 }, rawdoc! { "_id": 2i64 }]).await;
    assert_eq!(row(&describe(&db, "ints"), "_id")[1], "Int64");
}

#[test]
fn a_value_that_does_not_fit_its_column_is_rejected_whole_naming_id_and_field() {
    // Outside the sample, a document whose value does not fit the inferred column is an error
    // naming its `_id` and the full path; the builder keeps none of it.
    let mut inference = Inference::new();
    inference.observe(&rawdoc! { "_id": 1, "a": { "items": [{ "q": 1.5 }] } }).unwrap();
    let mut builder = BatchBuilder::new(inference.schema());
    let bad = rawdoc! { "_id": 7, "a": { "items": [{ "q": 2.5 }, { "q": i64::MAX }] } };
    let err = builder.append(&bad).expect_err("i64::MAX does not fit a double").to_string();
    assert_eq!(
        err,
        "document _id=7: field `a.items.1.q`: expected float64, found long 9223372036854775807 \
         (a double would round it)"
    );
    assert!(builder.is_empty());
    builder.append(&rawdoc! { "_id": 2, "a": { "items": [] } }).unwrap();
    let batch = builder.finish().unwrap();
    assert_eq!(batch.num_rows(), 1);
    assert!(batch.column(1).as_struct().column(0).as_list::<i32>().value(0).is_empty());
}
