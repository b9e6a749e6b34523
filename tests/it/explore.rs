//! Exploring MongoDB with SQL through the `misql` binary: previews, DESCRIBE, SHOW, EXPLAIN and
//! output formats, checked value by value against the generated documents.

use std::collections::HashMap;
use std::str::FromStr;

use bson::Document;

use crate::support::data::{load, orders};
use crate::support::{csv_rows, misql, misql_with_stdin, unique_db};

const ORDERS: u64 = 3000;

/// Loads the standard order collection into a new database; returns its name and the documents.
async fn orders_db(prefix: &str) -> (String, Vec<Document>) {
    let db = unique_db(prefix);
    let docs = orders(ORDERS, 7);
    load(&db, "orders", &docs).await;
    (db, docs)
}

fn by_id(docs: &[Document]) -> HashMap<String, &Document> {
    docs.iter().map(|d| (d.get_object_id("_id").unwrap().to_hex(), d)).collect()
}

fn decimal(doc: &Document, field: &str) -> String {
    match doc.get(field) {
        Some(bson::Bson::Decimal128(d)) => d.to_string(),
        other => panic!("{field} is not a Decimal128: {other:?}"),
    }
}

fn csv(sql: &str) -> Vec<Vec<String>> {
    let run = misql(&["--format", "csv", "-e", sql]);
    assert!(run.success, "misql failed for {sql}: {}", run.stderr);
    csv_rows(&run.stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn preview_with_nested_field_cast_and_filter_returns_matching_orders() {
    let (db, docs) = orders_db("preview").await;
    let docs = by_id(&docs);
    let rows = csv(&format!(
        "SELECT _id, customer.name, total::DECIMAL(18,2) FROM mongo.{db}.orders WHERE status = 'paid' LIMIT 5"
    ));
    assert_eq!(rows.len(), 6, "header + 5 rows: {rows:?}");
    assert_eq!(rows[0][0], "_id");
    for row in &rows[1..] {
        let doc = docs[&row[0]];
        assert_eq!(doc.get_str("status").unwrap(), "paid");
        assert_eq!(row[1], doc.get_document("customer").unwrap().get_str("name").unwrap());
        assert_eq!(row[2], decimal(doc, "total"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_scan_equals_the_collection_value_by_value() {
    let (db, docs) = orders_db("scan").await;
    let rows = csv(&format!(
        "SELECT _id, status, customer.address.city, total, created_at, priority, array_length(items), \
         items[1]['sku'] FROM mongo.{db}.orders ORDER BY _id"
    ));
    assert_eq!(rows.len() as u64, ORDERS + 1);
    for (row, doc) in rows[1..].iter().zip(&docs) {
        let customer = doc.get_document("customer").unwrap();
        let items = doc.get_array("items").unwrap();
        let first_item = items[0].as_document().unwrap();
        let created = doc.get_datetime("created_at").unwrap();
        let expected = vec![
            doc.get_object_id("_id").unwrap().to_hex(),
            doc.get_str("status").unwrap().to_string(),
            customer.get_document("address").unwrap().get_str("city").unwrap().to_string(),
            decimal(doc, "total"),
            created.try_to_rfc3339_string().unwrap().replace(".000Z", "Z"),
            doc.get_i32("priority").unwrap().to_string(),
            items.len().to_string(),
            first_item.get_str("sku").unwrap().to_string(),
        ];
        assert_eq!(row, &expected);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_and_aggregates_agree_with_the_documents() {
    let (db, docs) = orders_db("aggregate").await;
    let rows = csv(&format!(
        "SELECT status, count(*) AS n FROM mongo.{db}.orders \
         WHERE priority >= 1 AND status IN ('paid', 'shipped') GROUP BY status ORDER BY status"
    ));
    let expected = |status: &str| {
        docs.iter()
            .filter(|d| {
                d.get_str("status").unwrap() == status && d.get_i32("priority").unwrap() >= 1
            })
            .count()
            .to_string()
    };
    assert_eq!(
        rows,
        vec![
            vec!["status".to_string(), "n".to_string()],
            vec!["paid".to_string(), expected("paid")],
            vec!["shipped".to_string(), expected("shipped")],
        ]
    );
    let count = csv(&format!(
        "SELECT count(*) FROM mongo.{db}.orders WHERE _id > '65000000000000000000000a'"
    ));
    assert_eq!(count[1][0], (ORDERS - 11).to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_lists_inferred_columns_types_and_nullability() {
    let (db, _) = orders_db("describe").await;
    let rows = csv(&format!("DESCRIBE mongo.{db}.orders"));
    let row = |name: &str| -> Vec<String> {
        rows.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row {name} in {rows:?}"))
            .clone()
    };
    assert_eq!(rows[0][..5], ["column_name", "data_type", "is_nullable", "bson_types", "present"]);
    assert_eq!(rows[0][5..], ["max_array_len", "max_depth", "suggested_cast"]);
    assert_eq!(row("_id")[1..4], ["Utf8", "NO", "objectId: 1000"]);
    assert_eq!(row("status")[1..3], ["Utf8", "YES"]);
    assert_eq!(row("total")[1], "Decimal128(38, 2)");
    assert_eq!(row("created_at")[1], "Timestamp(µs, UTC)");
    assert_eq!(row("priority")[1], "Int32");
    assert_eq!(row("customer")[1], "Struct(3 fields)");
    assert_eq!(row("customer.address.city")[1], "Utf8");
    assert!(row("items")[1].starts_with("List(Struct"), "{:?}", row("items"));
    assert_eq!(row("_id")[4], "100.0%");
    assert_eq!(row("items")[5..], ["4", "2", ""], "longest array, depth, no cast");
    assert_eq!(row("customer")[5..], ["", "2", ""]);
    assert_eq!(row("total")[5..], ["", "0", ""]);
}

#[tokio::test(flavor = "multi_thread")]
async fn set_sample_size_changes_the_sample_of_the_statements_that_follow() {
    let (db, _) = orders_db("sample").await;
    // The `bson_types` of the `_id` rows of each DESCRIBE in the output: `objectId: <sampled>`.
    let samples = |statements: &[String]| -> Vec<String> {
        let mut args = vec!["--format", "csv"];
        for s in statements {
            args.extend(["-e", s.as_str()]);
        }
        let run = misql(&args);
        assert!(run.success, "{}", run.stderr);
        let lines = run.stdout.lines().filter(|l| l.starts_with("_id,") || l.starts_with("misql."));
        let text = lines.collect::<Vec<_>>().join("\n");
        csv_rows(&text).into_iter().map(|r| r.get(3).cloned().unwrap_or_default()).collect()
    };
    let describe = format!("DESCRIBE mongo.{db}.orders");
    let set = |sql: &str| sql.to_string();
    assert_eq!(
        samples(&[describe.clone(), set("SET misql.sample_size = 50"), describe.clone()]),
        ["objectId: 1000", "objectId: 50"]
    );
    // `SET sample_size` works too; `= DEFAULT` goes back to the ATTACH's size.
    assert_eq!(
        samples(&[
            set("SET sample_size = 20"),
            describe.clone(),
            set("SET misql.sample_size = DEFAULT"),
            describe.clone()
        ]),
        ["objectId: 20", "objectId: 1000"]
    );
    let show =
        misql(&["--format", "csv", "-e", "SET sample_size = 20", "-e", "SHOW misql.sample_size"]);
    assert_eq!(show.stdout, "misql.sample_size\n20\n", "{}", show.stderr);
    // The override applies to every attached deployment; RESET restores each one's own size.
    let uri = &crate::support::server().uri;
    let small = format!("DESCRIBE small.{db}.orders");
    assert_eq!(
        samples(&[
            format!("ATTACH '{uri}' AS small (TYPE mongodb, sample_size '10')"),
            small.clone(),
            set("SET misql.sample_size = 30"),
            small.clone(),
            describe.clone(),
            set("RESET misql.sample_size"),
            small.clone(),
        ]),
        ["objectId: 10", "objectId: 30", "objectId: 30", "objectId: 10"]
    );
    let bad = misql(&["-e", "SET misql.sample_size = 0"]);
    assert!(!bad.success);
    assert!(
        bad.stderr.contains("misql.sample_size must be a positive whole number"),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn suggested_casts_read_the_conflicting_fields_back_typed() {
    // Each suggestion DESCRIBE makes is SQL that runs, and reads every value back.
    let db = unique_db("casts");
    let docs = vec![
        bson::doc! { "_id": 1, "n": 1, "f": 1.5, "d": bson::Decimal128::from_str("12.50").unwrap(), "t": "x", "My Count": 1, "info": { "Order": 1 } },
        bson::doc! { "_id": 2, "n": "42", "f": "2.25", "d": "7.125", "t": 2, "My Count": "2", "info": { "Order": "2" } },
        bson::doc! { "_id": 3, "n": -7i64, "f": 3, "d": 4, "t": true, "My Count": 3i64, "info": { "Order": 3 } },
    ];
    load(&db, "c", &docs).await;
    let rows = csv(&format!("DESCRIBE mongo.{db}.c"));
    let cast = |name: &str| rows.iter().find(|r| r[0] == name).unwrap()[7].clone();
    assert_eq!(cast("n"), "n::BIGINT");
    assert_eq!(cast("f"), "f::DOUBLE");
    assert_eq!(cast("d"), "d::DECIMAL(38,3)");
    assert_eq!(cast("t"), "t::VARCHAR");
    assert_eq!(cast("My Count"), "\"My Count\"::BIGINT");
    assert_eq!(cast("info.Order"), "info.\"Order\"::BIGINT");
    assert_eq!(cast("_id"), "");
    let select: Vec<String> = ["n", "f", "d", "t", "My Count", "info.Order"]
        .iter()
        .enumerate()
        .map(|(i, name)| format!("{} AS c{i}", cast(name)))
        .collect();
    let typed = csv(&format!("SELECT _id, {} FROM mongo.{db}.c ORDER BY _id", select.join(", ")));
    assert_eq!(
        typed[1..],
        [
            ["1", "1", "1.5", "12.500", "x", "1", "1"],
            ["2", "42", "2.25", "7.125", "2", "2", "2"],
            ["3", "-7", "3.0", "4.000", "true", "3", "3"],
        ]
    );
}

/// DESCRIBE as CSV with the rows sorted by path (the sample's document order, and so the
/// first-seen order of fields, is random).
fn describe_sorted(db: &str, collection: &str) -> String {
    let run = misql(&["--format", "csv", "-e", &format!("DESCRIBE mongo.{db}.{collection}")]);
    assert!(run.success, "{}", run.stderr);
    let mut lines: Vec<&str> = run.stdout.lines().collect();
    lines[1..].sort();
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_of_a_drifting_collection() {
    // A collection whose documents drift: fields appear later, `v` widens from int to long and
    // then turns into strings and a double, `addr` nests deeper, `tags` turns from strings into
    // arrays of arrays, `legacy` disappears.
    let db = unique_db("drift");
    let mut docs = Vec::new();
    for i in 0..4 {
        docs.push(bson::doc! { "_id": i, "v": i, "name": format!("n{i}"), "legacy": true });
    }
    for i in 4..8 {
        docs.push(bson::doc! {
            "_id": i, "v": i as i64 * 1_000_000_000_000, "name": format!("n{i}"),
            "addr": { "city": "Oslo" }, "tags": ["a", "b"],
        });
    }
    for i in 8..11 {
        docs.push(bson::doc! {
            "_id": i, "v": format!("{}", i * 10), "name": null,
            "addr": { "city": "Quito", "geo": { "lat": -0.18, "lng": -78.47, "src": { "kind": "gps" } } },
            "tags": [["x", "y", "z"], []],
        });
    }
    docs.push(
        bson::doc! { "_id": 11, "v": 2.5, "addr": { "city": null, "zip": 1234 }, "tags": [] },
    );
    load(&db, "events", &docs).await;
    insta::assert_snapshot!(describe_sorted(&db, "events"));
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_reports_conflicting_types_with_counts() {
    let db = unique_db("conflict");
    let docs: Vec<Document> = (0..10)
        .map(|i| match i {
            0 => bson::doc! { "_id": i, "v": "text" },
            1..=3 => bson::doc! { "_id": i, "v": i as i64 },
            _ => bson::doc! { "_id": i, "v": i },
        })
        .collect();
    load(&db, "mixed", &docs).await;
    let rows = csv(&format!("DESCRIBE mongo.{db}.mixed"));
    let v = rows.iter().find(|r| r[0] == "v").expect("row v");
    assert_eq!(v[1], "Utf8");
    assert_eq!(v[3], "CONFLICT int: 6, long: 3, string: 1");
}

#[tokio::test(flavor = "multi_thread")]
async fn show_databases_and_collections_list_what_the_server_holds() {
    let (db, _) = orders_db("show").await;
    load(&db, "customers", &[bson::doc! { "name": "a" }]).await;
    let collections = csv(&format!("SHOW COLLECTIONS FROM mongo.{db}"));
    assert_eq!(collections, [["collection"], ["customers"], ["orders"]]);
    let databases = csv("SHOW DATABASES");
    assert!(databases.iter().any(|r| r[0] == db), "{databases:?}");
    assert!(!databases.iter().any(|r| r[0] == "local" || r[0] == "admin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_shows_the_pushed_down_filter_projection_and_limit() {
    let (db, _) = orders_db("explain").await;
    let run = misql(&[
        "-e",
        &format!(
            "EXPLAIN SELECT _id, total FROM mongo.{db}.orders WHERE status = 'paid' AND priority > 1"
        ),
    ]);
    assert!(run.success, "{}", run.stderr);
    let expected = format!(
        "MongoScanExec: {db}.orders filter={{\"$and\":[{{\"status\":{{\"$eq\":\"paid\"}}}},{{\"priority\":{{\"$gt\":1}}}}]}} \
         projection={{\"_id\":1,\"status\":1,\"total\":1,\"priority\":1}}"
    );
    assert!(run.stdout.contains(&expected), "{expected}\nnot in\n{}", run.stdout);
    let run = misql(&["-e", &format!("EXPLAIN SELECT customer FROM mongo.{db}.orders LIMIT 5")]);
    let expected =
        format!("MongoScanExec: {db}.orders filter={{}} projection={{\"customer\":1}} limit=5");
    assert!(run.stdout.contains(&expected), "{expected}\nnot in\n{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_and_table_formats_print_the_same_rows() {
    let (db, docs) = orders_db("formats").await;
    let first = docs[0].get_object_id("_id").unwrap().to_hex();
    let sql = format!("SELECT _id, status FROM mongo.{db}.orders ORDER BY _id LIMIT 2");
    let json = misql(&["--format", "json", "-e", &sql]);
    let line: serde_json::Value =
        serde_json::from_str(json.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["_id"], first.as_str());
    assert_eq!(line["status"], docs[0].get_str("status").unwrap());
    let table = misql(&["-e", &sql]);
    assert!(table.stdout.contains(&format!("| {first} |")), "{}", table.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn statements_piped_on_stdin_run_like_a_file() {
    let (db, _) = orders_db("stdin").await;
    let run = misql_with_stdin(
        &["--format", "csv"],
        Some(&format!(
            "-- a comment\nSELECT count(*) AS n\n  FROM mongo.{db}.orders;\nSELECT 1 AS one;\n"
        )),
    );
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.stdout, format!("n\n{ORDERS}\none\n1\n"));
}

#[test]
fn a_syntax_error_names_line_and_column_and_runs_nothing() {
    let run = misql(&["-e", "SELECT 1;\nSELEC 2"]);
    assert!(!run.success);
    assert!(run.stdout.is_empty(), "nothing may run: {}", run.stdout);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(run.stderr.contains("at line 2, column 1"), "{}", run.stderr);
}

#[test]
fn an_unknown_collection_is_a_clear_error() {
    let db = unique_db("missing");
    let run = misql(&["-e", &format!("DESCRIBE mongo.{db}.nope")]);
    assert!(!run.success);
    assert!(run.stderr.contains(&format!("collection {db}.nope does not exist")), "{}", run.stderr);
    assert!(run.stderr.contains("hint: SHOW COLLECTIONS"), "{}", run.stderr);
}

#[test]
fn an_unreachable_server_is_named_and_sql_without_mongodb_still_runs() {
    let uri = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300";
    let run = misql(&["--mongodb-uri", uri, "--format", "csv", "-e", "SELECT 1 + 1 AS two"]);
    assert!(run.success, "a statement without MongoDB must not need it: {}", run.stderr);
    assert_eq!(run.stdout, "two\n2\n");
    let run = misql(&["--mongodb-uri", uri, "-e", "SHOW DATABASES"]);
    assert!(!run.success);
    assert!(run.stderr.contains("listing databases at mongodb://127.0.0.1:9"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: is the server running?"), "{}", run.stderr);
}

#[test]
fn a_missing_file_is_named() {
    let run = misql(&["-f", "/nonexistent/syncs.sql"]);
    assert!(!run.success);
    assert!(run.stderr.starts_with("error: cannot read /nonexistent/syncs.sql"), "{}", run.stderr);
}
