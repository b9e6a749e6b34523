//! Schema evolution of `SELECT *` syncs: fields that appear after the table was created become
//! optional columns (nested ones struct children), ints that outgrow int32 widen the column to
//! long, and a change Iceberg cannot make follows `on_type_change` ('fail', 'dead_letter',
//! 'stringify' into `<field>__json`). Checked through misql, pyiceberg's rows and pyiceberg's view
//! of the table's schema history; an explicit SELECT list never changes shape.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use mongodb::Collection;
use serde_json::{Value, json};

use crate::support::data::Rng;
use crate::support::pyiceberg::{PyCatalog, pyiceberg_rows, pyiceberg_schemas};
use crate::support::rest_catalog::{RestCatalog, on_each_rest_catalog};
use crate::support::{Run, client, json_rows, misql_in, unique_db, warehouse};

/// The test collection `db.c`, emptied.
async fn collection(db: &str) -> Collection<Document> {
    let coll = client().await.database(db).collection::<Document>("c");
    coll.drop().await.expect("drop the test collection");
    coll
}

/// `{_id: i, name: "n<i>", qty: i * 10, customer: {name: "c<i>"}}`, every number an int32.
fn plain(i: i32) -> Document {
    doc! { "_id": i, "name": format!("n{i}"), "qty": (i * 10), "customer": { "name": format!("c{i}") } }
}

/// Writes `sql` to `syncs.sql` in the warehouse directory.
fn sync_file(dir: &Path, sql: &str) -> PathBuf {
    let file = dir.join("syncs.sql");
    std::fs::write(&file, sql).expect("write syncs.sql");
    file
}

/// A test's database, its emptied collection `c` holding `docs`, a warehouse, and `syncs.sql`
/// with `CREATE SYNC s FROM mongo.<db>.c INTO iceberg.<db>.t <rest>` — run once with `--once`.
struct Setup {
    db: String,
    coll: Collection<Document>,
    dir: PathBuf,
    file: PathBuf,
}

async fn setup(name: &str, docs: impl IntoIterator<Item = Document>, rest: &str) -> Setup {
    let db = unique_db(name);
    let coll = collection(&db).await;
    coll.insert_many(docs).await.unwrap();
    let dir = warehouse(name);
    let file =
        sync_file(&dir, &format!("CREATE SYNC s FROM mongo.{db}.c INTO iceberg.{db}.t {rest}"));
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    Setup { db, coll, dir, file }
}

/// `misql --once -f file`.
fn once(dir: &Path, file: &Path) -> Run {
    misql_in(dir, &["--once", "-f", file.to_str().expect("UTF-8 path")])
}

/// `iceberg.<db>.<table>` through misql, in `_id` order.
fn synced(dir: &Path, db: &str, table: &str) -> Vec<Value> {
    json_rows(dir, &format!("SELECT * FROM iceberg.{db}.{table} ORDER BY _id"))
}

/// The schema history of `<db>.<table>` as pyiceberg reads it.
fn schemas(dir: &Path, db: &str, table: &str) -> Vec<Value> {
    pyiceberg_schemas(&PyCatalog::sql(dir), &format!("{db}.{table}"))
}

/// The rows of `<db>.<table>` as pyiceberg reads them, in `_id` order.
fn py_rows(dir: &Path, db: &str, table: &str) -> Vec<Value> {
    pyiceberg_rows(&PyCatalog::sql(dir), &format!("{db}.{table}"), "_id")
}

/// Files in the table's metadata directory: one more for every commit.
fn metadata_files(dir: &Path, db: &str, table: &str) -> usize {
    let metadata = dir.join(db).join(table).join("metadata");
    std::fs::read_dir(&metadata).map_or(0, |d| d.count())
}

/// An optional field of a pyiceberg schema.
fn opt(name: &str, ty: impl Into<Value>) -> Value {
    json!({ "name": name, "type": ty.into(), "required": false })
}

/// The required key field `_id`.
fn key(ty: &str) -> Value {
    json!({ "name": "_id", "type": ty, "required": true })
}

/// A struct type of pyiceberg's schema JSON.
fn strukt(fields: Vec<Value>) -> Value {
    json!({ "struct": fields })
}

/// The fields of the current (last) schema, after checking that the history is in schema id
/// order and that exactly the last schema is current.
fn current_fields(history: &[Value]) -> Value {
    let ids: Vec<i64> = history.iter().map(|s| s["schema_id"].as_i64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "schema ids out of order: {ids:?}");
    let current: Vec<bool> = history.iter().map(|s| s["current"] == true).collect();
    let mut expected = vec![false; history.len()];
    if let Some(last) = expected.last_mut() {
        *last = true;
    }
    assert_eq!(current, expected, "the newest schema is the current one: {history:#?}");
    for schema in history {
        assert_eq!(schema["identifier_fields"], json!(["_id"]), "{schema}");
    }
    history.last().expect("a schema")["fields"].clone()
}

/// The names of a schema's fields, nested ones as `parent.child`.
fn field_names(fields: &Value, prefix: &str, out: &mut Vec<String>) {
    for field in fields.as_array().expect("fields") {
        let name = format!("{prefix}{}", field["name"].as_str().expect("name"));
        if let Some(children) = field["type"].get("struct") {
            field_names(children, &format!("{name}."), out);
        }
        out.push(name);
    }
}

/// Asserts that every schema of `history` keeps every field of the one before it.
fn assert_only_grows(history: &[Value]) {
    let mut previous = Vec::new();
    for schema in history {
        let mut names = Vec::new();
        field_names(&schema["fields"], "", &mut names);
        assert!(previous.iter().all(|p| names.contains(p)), "a column went away: {history:#?}");
        previous = names;
    }
}

/// `fields` with every struct's fields sorted by name, to compare schemas whose column order
/// depends on which documents the sample saw.
fn sorted_fields(fields: &Value) -> Value {
    let mut list: Vec<Value> = fields
        .as_array()
        .expect("fields")
        .iter()
        .map(|field| {
            let mut field = field.clone();
            if let Some(children) = field["type"].get("struct").cloned() {
                field["type"] = strukt(sorted_fields(&children).as_array().unwrap().clone());
            }
            field
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Value::Array(list)
}

/// `DESCRIBE iceberg.<db>.<table>` as (column, type) pairs.
fn describe(dir: &Path, db: &str, table: &str) -> Vec<(String, String)> {
    json_rows(dir, &format!("DESCRIBE iceberg.{db}.{table}"))
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_else(|| panic!("{k} in {r}")).to_string();
            (text("column_name"), text("data_type"))
        })
        .collect()
}

/// Asserts that the last `hint:` line of `stderr` mentions `on_type_change`.
fn assert_hint_names_on_type_change(stderr: &str) {
    assert!(
        stderr.lines().any(|l| l.starts_with("hint:") && l.contains("on_type_change")),
        "no hint naming on_type_change: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn new_fields_and_wider_ints_in_the_stream_evolve_the_table() {
    let Setup { db, coll, dir, file } =
        setup("drift_stream", (1..=4).map(plain), "WITH (flush_interval = '200ms')").await;
    let initial = json!([
        key("int"),
        opt("name", "string"),
        opt("qty", "int"),
        opt("customer", strukt(vec![opt("name", "string")])),
    ]);
    let history = schemas(&dir, &db, "t");
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(current_fields(&history), initial);

    // A field seen only as null, a new top-level field, a new nested field and an int64 beyond
    // int32 in an int column; _id 4 is left alone, so its row stays in the first data file.
    coll.update_one(doc! { "_id": 1 }, doc! { "$set": { "note": null } }).await.unwrap();
    coll.update_one(doc! { "_id": 2 }, doc! { "$set": { "discount": 2.5 } }).await.unwrap();
    coll.update_one(
        doc! { "_id": 3 },
        doc! { "$set": { "qty": 5_000_000_000i64, "customer.tier": "silver" } },
    )
    .await
    .unwrap();
    coll.insert_one(doc! {
        "_id": 5, "name": "n5", "qty": 50, "customer": { "name": "c5", "tier": "gold" },
        "discount": 1.5,
    })
    .await
    .unwrap();
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);

    // misql's JSON leaves null fields out.
    let expected = vec![
        json!({ "_id": 1, "name": "n1", "qty": 10, "customer": { "name": "c1" } }),
        json!({ "_id": 2, "name": "n2", "qty": 20, "customer": { "name": "c2" }, "discount": 2.5 }),
        json!({ "_id": 3, "name": "n3", "qty": 5_000_000_000i64,
                "customer": { "name": "c3", "tier": "silver" } }),
        json!({ "_id": 4, "name": "n4", "qty": 40, "customer": { "name": "c4" } }),
        json!({ "_id": 5, "name": "n5", "qty": 50, "customer": { "name": "c5", "tier": "gold" },
                "discount": 1.5 }),
    ];
    assert_eq!(synced(&dir, &db, "t"), expected);
    let expected_py = vec![
        json!({ "_id": 1, "name": "n1", "qty": 10, "customer": { "name": "c1", "tier": null },
                "discount": null }),
        json!({ "_id": 2, "name": "n2", "qty": 20, "customer": { "name": "c2", "tier": null },
                "discount": 2.5 }),
        json!({ "_id": 3, "name": "n3", "qty": 5_000_000_000i64,
                "customer": { "name": "c3", "tier": "silver" }, "discount": null }),
        json!({ "_id": 4, "name": "n4", "qty": 40, "customer": { "name": "c4", "tier": null },
                "discount": null }),
        json!({ "_id": 5, "name": "n5", "qty": 50, "customer": { "name": "c5", "tier": "gold" },
                "discount": 1.5 }),
    ];
    assert_eq!(py_rows(&dir, &db, "t"), expected_py);

    let history = schemas(&dir, &db, "t");
    assert!(history.len() >= 2, "no new schema: {history:#?}");
    assert_eq!(history[0]["fields"], initial, "the first schema is kept");
    assert_only_grows(&history);
    assert_eq!(
        current_fields(&history),
        json!([
            key("int"),
            opt("name", "string"),
            opt("qty", "long"),
            opt("customer", strukt(vec![opt("name", "string"), opt("tier", "string")])),
            opt("discount", "double"),
        ])
    );
    let columns = describe(&dir, &db, "t");
    let pairs: Vec<(&str, &str)> = columns.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("_id", "int"),
            ("name", "string"),
            ("qty", "long"),
            ("customer", "struct"),
            ("customer.name", "string"),
            ("customer.tier", "string"),
            ("discount", "double"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_the_sample_missed_arrive_as_columns_in_the_snapshot() {
    let db = unique_db("drift_snap");
    let coll = collection(&db).await;
    // Whichever single document the sample sees, some fields are missing from it.
    coll.insert_many([
        doc! { "_id": 1, "name": "n1" },
        doc! { "_id": 2, "name": "n2", "a": 1 },
        doc! { "_id": 3, "name": "n3", "b": "x" },
        doc! { "_id": 4, "name": "n4", "c": { "d": true } },
        doc! { "_id": 5, "name": "n5", "c": { "d": false, "e": 7 } },
        doc! { "_id": 6, "name": "n6", "a": 5_000_000_000i64 },
    ])
    .await
    .unwrap();
    let dir = warehouse("drift_snap");
    let file = sync_file(
        &dir,
        &format!(
            "CREATE SYNC s FROM mongo.{db}.c INTO iceberg.{db}.t \
             WITH (sample_size = 1, max_batch_rows = 1, flush_interval = '200ms')"
        ),
    );
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stderr.contains("snapshot complete, 6 rows"), "{}", run.stderr);

    let expected = vec![
        json!({ "_id": 1, "name": "n1" }),
        json!({ "_id": 2, "name": "n2", "a": 1 }),
        json!({ "_id": 3, "name": "n3", "b": "x" }),
        json!({ "_id": 4, "name": "n4", "c": { "d": true } }),
        json!({ "_id": 5, "name": "n5", "c": { "d": false, "e": 7 } }),
        json!({ "_id": 6, "name": "n6", "a": 5_000_000_000i64 }),
    ];
    assert_eq!(synced(&dir, &db, "t"), expected);
    let null_filled = |mut row: Value| {
        for column in ["a", "b", "c"] {
            row.as_object_mut().unwrap().entry(column).or_insert(Value::Null);
        }
        if let Some(c) = row["c"].as_object_mut() {
            c.entry("e").or_insert(Value::Null);
        }
        row
    };
    let expected_py: Vec<Value> = expected.into_iter().map(null_filled).collect();
    assert_eq!(py_rows(&dir, &db, "t"), expected_py);

    let history = schemas(&dir, &db, "t");
    assert!(history.len() >= 2, "a one-document sample cannot have seen every field");
    assert_only_grows(&history);
    assert_eq!(
        sorted_fields(&current_fields(&history)),
        json!([
            key("int"),
            opt("a", "long"),
            opt("b", "string"),
            opt("c", strukt(vec![opt("d", "boolean"), opt("e", "int")])),
            opt("name", "string"),
        ])
    );
}

/// A snapshot of `{_id, name, qty, customer: {name, level}}` (ints) under `on_type_change =
/// 'mode'`; the directory, database, sync file and collection.
async fn flip_setup(mode: &str) -> (PathBuf, String, PathBuf, Collection<Document>) {
    let docs = (1..=3).map(|i| {
        doc! {
            "_id": i, "name": format!("n{i}"), "qty": (i * 10),
            "customer": { "name": format!("c{i}"), "level": i },
        }
    });
    let rest = format!("WITH (on_type_change = '{mode}', flush_interval = '200ms')");
    let Setup { db, coll, dir, file } = setup(&format!("drift_{mode}"), docs, &rest).await;
    (dir, db, file, coll)
}

/// The rows of [`flip_setup`] before any change, as misql prints them.
fn flip_rows() -> Vec<Value> {
    (1..=3)
        .map(|i| {
            json!({ "_id": i, "name": format!("n{i}"), "qty": (i * 10),
                    "customer": { "name": format!("c{i}"), "level": i } })
        })
        .collect()
}

/// The schema of [`flip_setup`]'s table before any change.
fn flip_schema() -> Value {
    json!([
        key("int"),
        opt("name", "string"),
        opt("qty", "int"),
        opt("customer", strukt(vec![opt("name", "string"), opt("level", "int")])),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn an_int_field_turning_string_fails_the_sync_by_default_and_commits_nothing() {
    let (dir, db, file, coll) = flip_setup("fail").await;
    let commits = metadata_files(&dir, &db, "t");
    coll.update_one(doc! { "_id": 2 }, doc! { "$set": { "qty": "many" } }).await.unwrap();
    for attempt in ["first", "second"] {
        let run = once(&dir, &file);
        assert!(!run.success, "the {attempt} run must fail: {}", run.stderr);
        assert!(run.stderr.contains("_id=2"), "the document is named: {}", run.stderr);
        assert!(run.stderr.contains("`qty`"), "the field is named: {}", run.stderr);
        assert_hint_names_on_type_change(&run.stderr);
        assert!(run.stderr.contains("JSON text in `qty__json`"), "{}", run.stderr);
        assert_eq!(synced(&dir, &db, "t"), flip_rows(), "after the {attempt} run");
        assert_eq!(metadata_files(&dir, &db, "t"), commits, "nothing committed");
        let history = schemas(&dir, &db, "t");
        assert_eq!(history.len(), 1, "{history:#?}");
        assert_eq!(current_fields(&history), flip_schema());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_int_field_turning_string_goes_to_the_dead_letter_table() {
    let (dir, db, file, coll) = flip_setup("dead_letter").await;
    coll.update_one(doc! { "_id": 2 }, doc! { "$set": { "qty": "many" } }).await.unwrap();
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    let mut expected = flip_rows();
    expected.remove(1);
    assert_eq!(synced(&dir, &db, "t"), expected, "the old row of _id 2 is deleted");
    let letters = json_rows(
        &dir,
        &format!("SELECT sync, _id, document, error FROM iceberg.{db}.t__errors ORDER BY _id"),
    );
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["sync"], "s");
    assert_eq!(letters[0]["_id"], "2");
    let document: Value =
        serde_json::from_str(letters[0]["document"].as_str().expect("document")).unwrap();
    assert_eq!(
        document,
        json!({ "_id": 2, "name": "n2", "qty": "many", "customer": { "name": "c2", "level": 2 } })
    );
    assert!(letters[0]["error"].as_str().unwrap().contains("qty"), "{letters:?}");
    let history = schemas(&dir, &db, "t");
    assert_eq!(history.len(), 1, "the table's schema is unchanged: {history:#?}");
    assert_eq!(current_fields(&history), flip_schema());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_int_field_turning_string_or_document_is_stringified_into_a_json_column() {
    let (dir, db, file, coll) = flip_setup("stringify").await;
    coll.update_one(doc! { "_id": 1 }, doc! { "$set": { "customer.level": "vip" } }).await.unwrap();
    coll.update_one(doc! { "_id": 2 }, doc! { "$set": { "qty": "many" } }).await.unwrap();
    coll.update_one(doc! { "_id": 3 }, doc! { "$set": { "qty": { "a": 1 } } }).await.unwrap();
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stderr.contains("qty__json"), "the log names the new column: {}", run.stderr);
    assert!(run.stderr.contains("level__json"), "the log names the new column: {}", run.stderr);

    let mut expected = vec![
        json!({ "_id": 1, "name": "n1", "qty": 10,
                "customer": { "name": "c1", "level__json": "\"vip\"" } }),
        json!({ "_id": 2, "name": "n2", "customer": { "name": "c2", "level": 2 },
                "qty__json": "\"many\"" }),
        json!({ "_id": 3, "name": "n3", "customer": { "name": "c3", "level": 3 },
                "qty__json": "{\"a\":1}" }),
    ];
    assert_eq!(synced(&dir, &db, "t"), expected);
    let expected_py = vec![
        json!({ "_id": 1, "name": "n1", "qty": 10,
                "customer": { "name": "c1", "level": null, "level__json": "\"vip\"" },
                "qty__json": null }),
        json!({ "_id": 2, "name": "n2", "qty": null,
                "customer": { "name": "c2", "level": 2, "level__json": null },
                "qty__json": "\"many\"" }),
        json!({ "_id": 3, "name": "n3", "qty": null,
                "customer": { "name": "c3", "level": 3, "level__json": null },
                "qty__json": "{\"a\":1}" }),
    ];
    assert_eq!(py_rows(&dir, &db, "t"), expected_py);
    let history = schemas(&dir, &db, "t");
    assert!(history.len() >= 2, "{history:#?}");
    assert_eq!(history[0]["fields"], flip_schema());
    assert_only_grows(&history);
    let evolved = json!([
        key("int"),
        opt("name", "string"),
        opt("qty", "int"),
        opt(
            "customer",
            strukt(vec![opt("name", "string"), opt("level", "int"), opt("level__json", "string")])
        ),
        opt("qty__json", "string"),
    ]);
    assert_eq!(current_fields(&history), evolved);

    // Restarted with nothing new: nothing committed, same schema.
    let commits = metadata_files(&dir, &db, "t");
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(metadata_files(&dir, &db, "t"), commits, "nothing new to commit");
    assert_eq!(schemas(&dir, &db, "t"), history);

    // Later strings of the field use the existing column; ints still go to the int column.
    coll.update_one(doc! { "_id": 1 }, doc! { "$set": { "qty": "few" } }).await.unwrap();
    coll.insert_one(doc! { "_id": 4, "name": "n4", "qty": 40 }).await.unwrap();
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    expected[0] = json!({ "_id": 1, "name": "n1", "customer": { "name": "c1", "level__json": "\"vip\"" },
                          "qty__json": "\"few\"" });
    expected.push(json!({ "_id": 4, "name": "n4", "qty": 40 }));
    assert_eq!(synced(&dir, &db, "t"), expected);
    let after = schemas(&dir, &db, "t");
    assert_eq!(after.len(), history.len(), "no new schema: {after:#?}");
    assert_eq!(current_fields(&after), evolved);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_select_list_never_changes_shape() {
    let Setup { db, coll, dir, file } = setup(
        "drift_select",
        (1..=3).map(plain),
        "SELECT _id, name, qty::BIGINT AS qty \
         WITH (on_error = 'dead_letter', flush_interval = '200ms')",
    )
    .await;
    let shape = json!([key("int"), opt("name", "string"), opt("qty", "long")]);
    assert_eq!(current_fields(&schemas(&dir, &db, "t")), shape);

    coll.update_one(
        doc! { "_id": 2 },
        doc! { "$set": { "discount": 1.5, "customer.tier": "gold" } },
    )
    .await
    .unwrap();
    coll.update_one(doc! { "_id": 3 }, doc! { "$set": { "qty": 5_000_000_000i64 } }).await.unwrap();
    coll.insert_one(doc! { "_id": 4, "name": "n4", "qty": "many", "extra": true }).await.unwrap();
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(
        synced(&dir, &db, "t"),
        vec![
            json!({ "_id": 1, "name": "n1", "qty": 10 }),
            json!({ "_id": 2, "name": "n2", "qty": 20 }),
            json!({ "_id": 3, "name": "n3", "qty": 5_000_000_000i64 }),
        ]
    );
    let letters =
        json_rows(&dir, &format!("SELECT _id, error FROM iceberg.{db}.t__errors ORDER BY _id"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["_id"], "4");
    assert!(letters[0]["error"].as_str().unwrap().contains("`qty`"), "{letters:?}");
    let history = schemas(&dir, &db, "t");
    assert_eq!(history.len(), 1, "an explicit SELECT keeps its one schema: {history:#?}");
    assert_eq!(current_fields(&history), shape);
    let names: Vec<String> = describe(&dir, &db, "t").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["_id", "name", "qty"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_after_a_schema_change_commits_nothing_and_keeps_the_schema() {
    let Setup { db, coll, dir, file } =
        setup("drift_restart", (1..=3).map(plain), "WITH (flush_interval = '200ms')").await;
    coll.update_one(
        doc! { "_id": 2 },
        doc! { "$set": { "discount": 2.5, "qty": 5_000_000_000i64, "customer.tier": "gold" } },
    )
    .await
    .unwrap();
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    let evolved = json!([
        key("int"),
        opt("name", "string"),
        opt("qty", "long"),
        opt("customer", strukt(vec![opt("name", "string"), opt("tier", "string")])),
        opt("discount", "double"),
    ]);
    let history = schemas(&dir, &db, "t");
    assert_eq!(history.len(), 2, "one change event, one new schema: {history:#?}");
    assert_eq!(current_fields(&history), evolved);
    let mut expected = vec![
        json!({ "_id": 1, "name": "n1", "qty": 10, "customer": { "name": "c1" } }),
        json!({ "_id": 2, "name": "n2", "qty": 5_000_000_000i64,
                "customer": { "name": "c2", "tier": "gold" }, "discount": 2.5 }),
        json!({ "_id": 3, "name": "n3", "qty": 30, "customer": { "name": "c3" } }),
    ];
    assert_eq!(synced(&dir, &db, "t"), expected);

    let commits = metadata_files(&dir, &db, "t");
    for rerun in 1..=2 {
        let run = once(&dir, &file);
        assert!(run.success, "rerun {rerun}: {}", run.stderr);
        assert_eq!(metadata_files(&dir, &db, "t"), commits, "rerun {rerun} committed something");
        assert_eq!(schemas(&dir, &db, "t"), history, "rerun {rerun} changed the schema");
        assert_eq!(synced(&dir, &db, "t"), expected, "after rerun {rerun}");
    }

    // A document using the columns added earlier needs no new schema.
    coll.insert_one(doc! {
        "_id": 4, "name": "n4", "qty": 40, "customer": { "name": "c4", "tier": "silver" },
        "discount": 0.5,
    })
    .await
    .unwrap();
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    expected.push(json!({ "_id": 4, "name": "n4", "qty": 40,
                          "customer": { "name": "c4", "tier": "silver" }, "discount": 0.5 }));
    assert_eq!(synced(&dir, &db, "t"), expected);
    assert_eq!(schemas(&dir, &db, "t"), history, "the evolved schema fits the new document");
}

on_each_rest_catalog!(
    a_rest_catalog_table_on_s3_evolves_lists_of_documents_too,
    rest_catalog_table_evolves_lists_of_documents
);

async fn rest_catalog_table_evolves_lists_of_documents(rest: RestCatalog) {
    // The schema commit goes through the REST catalog's commit endpoint; the new field is inside
    // the documents of an array (a list<struct> gains a child), which misql must read back from
    // data files written before it existed.
    let db = unique_db("drift_rest");
    let coll = collection(&db).await;
    let item = |sku: &str| doc! { "sku": sku, "n": 1 };
    coll.insert_many((1..=3).map(|i| doc! { "_id": i, "items": [item("a"), item("b")] }))
        .await
        .unwrap();
    let dir = warehouse("drift_rest");
    let file = sync_file(
        &dir,
        &format!(
            "{};\nCREATE SYNC s FROM mongo.{db}.c INTO lake.{db}.t WITH (flush_interval = '200ms')",
            rest.attach_sql("lake")
        ),
    );
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    coll.update_one(
        doc! { "_id": 2 },
        doc! { "$set": { "items": [{ "sku": "c", "n": 5_000_000_000i64, "price": 2.5 }] } },
    )
    .await
    .unwrap();
    coll.insert_one(doc! { "_id": 4, "items": [], "tags": ["x"] }).await.unwrap();
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stderr.contains("added column `items.element.price` (double)"), "{}", run.stderr);

    let two = json!([{ "sku": "a", "n": 1 }, { "sku": "b", "n": 1 }]);
    let expected = vec![
        json!({ "_id": 1, "items": two }),
        json!({ "_id": 2, "items": [{ "sku": "c", "n": 5_000_000_000i64, "price": 2.5 }] }),
        json!({ "_id": 3, "items": two }),
        json!({ "_id": 4, "items": [], "tags": ["x"] }),
    ];
    let sql = format!("{}; SELECT * FROM lake.{db}.t ORDER BY _id", rest.attach_sql("lake"));
    assert_eq!(json_rows(&dir, &sql), expected);

    let catalog = rest.py();
    let py = pyiceberg_rows(&catalog, &format!("{db}.t"), "_id");
    let old = json!([{ "sku": "a", "n": 1, "price": null }, { "sku": "b", "n": 1, "price": null }]);
    assert_eq!(
        py,
        [
            json!({ "_id": 1, "items": old, "tags": null }),
            json!({ "_id": 2, "items": [{ "sku": "c", "n": 5_000_000_000i64, "price": 2.5 }],
                    "tags": null }),
            json!({ "_id": 3, "items": old, "tags": null }),
            json!({ "_id": 4, "items": [], "tags": ["x"] }),
        ]
    );
    // DuckDB reads the same rows from S3 (it reads a null list of structs as null, pyiceberg as
    // `[]`: none here).
    let duck = crate::support::duckdb::duckdb_rows(&catalog, &format!("{db}.t"), "_id");
    assert_eq!(duck, py, "DuckDB reads the evolved table as pyiceberg does");
    let history = pyiceberg_schemas(&catalog, &format!("{db}.t"));
    assert_only_grows(&history);
    let element = |fields: Vec<Value>| json!({ "list": strukt(fields), "element_required": false });
    let current = current_fields(&history);
    assert_eq!(current[1]["name"], "items", "{current:#}");
    assert_eq!(
        current[1]["type"],
        element(vec![opt("sku", "string"), opt("n", "long"), opt("price", "double")]),
        "{current:#}"
    );
    assert_eq!(current[2], opt("tags", json!({ "list": "string", "element_required": false })));

    // DESCRIBE shows the Iceberg schema: types, nested fields on their own rows, ids, the key.
    let sql = format!("{}; DESCRIBE lake.{db}.t", rest.attach_sql("lake"));
    let described: Vec<String> = json_rows(&dir, &sql)
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["column_name"].as_str().unwrap(),
                r["data_type"].as_str().unwrap(),
                r["is_nullable"].as_str().unwrap(),
                r["is_key"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            "_id int NO YES",
            "items list<struct> YES NO",
            "items[] struct YES NO",
            "items[].sku string YES NO",
            "items[].n long YES NO",
            "items[].price double YES NO",
            "tags list<string> YES NO",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn select_star_takes_unusual_field_names_and_leaves_out_dotted_and_empty_ones() {
    let db = unique_db("drift_names");
    let raw = client().await.database(&db).collection::<bson::RawDocumentBuf>("c");
    raw.insert_one(bson::rawdoc! { "_id": 1, "a b": 1, "$x": 2, "ünï ☃": 3 }).await.unwrap();
    let dir = warehouse("drift_names");
    let file = sync_file(
        &dir,
        &format!(
            "CREATE SYNC s FROM mongo.{db}.c INTO iceberg.{db}.t WITH (flush_interval = '200ms')"
        ),
    );
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    raw.insert_one(bson::rawdoc! { "_id": 2, "a.b": 4, "": 5, "d": { "x.y": 6, "ok": 7 } })
        .await
        .unwrap();
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    for left_out in ["`a.b` cannot be an Iceberg column", "`` cannot be", "`d.x.y` cannot be"] {
        assert!(run.stderr.contains(left_out), "{left_out}: {}", run.stderr);
    }
    assert_eq!(
        synced(&dir, &db, "t"),
        [json!({ "_id": 1, "a b": 1, "$x": 2, "ünï ☃": 3 }), json!({ "_id": 2, "d": { "ok": 7 } }),]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_a_schema_change_and_its_rows_loses_nothing() {
    // The schema change is its own commit ahead of the batch's rows: stopped in between (the
    // failpoint exits there), the table has the new columns and none of the batch; the restart
    // writes the batch under that schema, without another schema change.
    let Setup { db, coll, dir, file } =
        setup("drift_crash", (1..=3).map(plain), "WITH (flush_interval = '200ms')").await;
    coll.update_one(doc! { "_id": 1 }, doc! { "$set": { "discount": 1.5 } }).await.unwrap();
    coll.insert_one(doc! { "_id": 4, "name": "n4", "customer": { "name": "c4", "tier": "gold" } })
        .await
        .unwrap();
    let path = file.to_str().unwrap();
    let crash = [("MISQL_FAILPOINT", "after-schema-change")];
    let run = crate::support::misql_in_with_env(&dir, &["--once", "-f", path], &crash);
    assert!(!run.success && run.stderr.contains("failpoint after-schema-change"), "{}", run.stderr);
    let history = schemas(&dir, &db, "t");
    assert_eq!(history.len(), 2, "{history:#?}");
    let before = vec![
        json!({ "_id": 1, "name": "n1", "qty": 10, "customer": { "name": "c1" } }),
        json!({ "_id": 2, "name": "n2", "qty": 20, "customer": { "name": "c2" } }),
        json!({ "_id": 3, "name": "n3", "qty": 30, "customer": { "name": "c3" } }),
    ];
    assert_eq!(synced(&dir, &db, "t"), before, "no row of the batch yet");

    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);
    assert!(!run.stderr.contains("schema of"), "no second schema change: {}", run.stderr);
    assert_eq!(schemas(&dir, &db, "t").len(), 2);
    let after = vec![
        json!({ "_id": 1, "name": "n1", "qty": 10, "customer": { "name": "c1" }, "discount": 1.5 }),
        json!({ "_id": 2, "name": "n2", "qty": 20, "customer": { "name": "c2" } }),
        json!({ "_id": 3, "name": "n3", "qty": 30, "customer": { "name": "c3" } }),
        json!({ "_id": 4, "name": "n4", "customer": { "name": "c4", "tier": "gold" } }),
    ];
    assert_eq!(synced(&dir, &db, "t"), after);
    assert_eq!(py_rows(&dir, &db, "t").len(), 4);
}

/// One random change for [`a_select_star_sync_killed_at_random_moments_while_fields_appear`]:
/// inserts, deletes, and `$set`s of fields that appear over time (each with one type), of new
/// fields of the embedded document, and of ints beyond int32.
async fn drifting_change(coll: &Collection<Document>, rng: &mut Rng, next_id: &mut i32) {
    let id = 1 + rng.below(*next_id as u64 - 1) as i32;
    let k = rng.below(8);
    let update = match rng.below(6) {
        0 => {
            coll.insert_one(plain(*next_id)).await.unwrap();
            *next_id += 1;
            return;
        }
        1 => {
            coll.delete_one(doc! { "_id": id }).await.unwrap();
            return;
        }
        2 if k.is_multiple_of(2) => doc! { format!("f{k}"): (rng.below(1000) as i32) },
        2 => doc! { format!("f{k}"): format!("v{}", rng.below(1000)) },
        3 => doc! { format!("customer.t{k}"): format!("t{}", rng.below(1000)) },
        4 => doc! { "qty": 3_000_000_000i64 + rng.below(1000) as i64 },
        _ => doc! { "name": format!("m{}", rng.below(1000)) },
    };
    coll.update_one(doc! { "_id": id }, doc! { "$set": update }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_select_star_sync_killed_at_random_moments_while_fields_appear_loses_nothing() {
    let Setup { db, coll, dir, file } =
        setup("drift_kill", (1..=50).map(plain), "WITH (flush_interval = '200ms')").await;
    let mut rng = Rng::new(29);
    let mut next_id = 51;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut kills = 0;
    while kills < 10 && Instant::now() < deadline {
        let mut daemon = crate::support::daemon(&dir, &file);
        let until = Instant::now() + Duration::from_millis(300 + rng.below(1200));
        while Instant::now() < until {
            drifting_change(&coll, &mut rng, &mut next_id).await;
        }
        daemon.kill().expect("SIGKILL");
        daemon.wait().unwrap();
        kills += 1;
    }
    assert_eq!(kills, 10, "only {kills} kills in the time allowed");
    let run = once(&dir, &file);
    assert!(run.success, "{}", run.stderr);

    // Null fields are left out of misql's JSON, so rows compare whatever the column order.
    let rows = synced(&dir, &db, "t");
    let mut ids: Vec<i64> = rows.iter().map(|r| r["_id"].as_i64().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), rows.len(), "duplicate keys after {kills} kills");
    let preview = json_rows(
        &dir,
        &format!("SET misql.sample_size = 100000; SELECT * FROM mongo.{db}.c ORDER BY _id"),
    );
    assert_eq!(rows, preview, "rows differ after {kills} kills");
    let history = schemas(&dir, &db, "t");
    assert!(history.len() > 2, "the fields that appeared changed the schema: {history:#?}");
    assert_only_grows(&history);
}
