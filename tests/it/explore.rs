//! Exploring MongoDB with SQL through the `misql` binary: previews, DESCRIBE, SHOW, EXPLAIN and
//! output formats, checked value by value against the generated documents.

use std::collections::HashMap;

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
    assert_eq!(rows[0], ["column_name", "data_type", "is_nullable", "bson_types", "present"]);
    assert_eq!(row("_id")[1..4], ["Utf8", "NO", "objectId: 1000"]);
    assert_eq!(row("status")[1..3], ["Utf8", "YES"]);
    assert_eq!(row("total")[1], "Decimal128(38, 2)");
    assert_eq!(row("created_at")[1], "Timestamp(µs, UTC)");
    assert_eq!(row("priority")[1], "Int32");
    assert_eq!(row("customer")[1], "Struct(3 fields)");
    assert_eq!(row("customer.address.city")[1], "Utf8");
    assert!(row("items")[1].starts_with("List(Struct"), "{:?}", row("items"));
    assert_eq!(row("_id")[4], "100.0%");
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
    let expected = format!(
        "MongoScanExec: {db}.orders filter={{}} projection={{\"customer\":1,\"_id\":0}} limit=5"
    );
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
