//! CREATE SYNC, snapshot phase: a collection copied into an Iceberg table through the sync's
//! SELECT, checked value by value against a preview of the same SELECT, read back by misql and
//! by pyiceberg; resumable after SIGKILL; idempotent when nothing changed; errors named.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::data::{Rng, load, orders};
use crate::support::pyiceberg::{PyCatalog, pyiceberg_rows};
use crate::support::rest_catalog::{RestCatalog, on_each_rest_catalog};
use bson::doc;

use crate::support::oracle::{OrderRow, assert_orders_exact, orders_in_mongo};
use crate::support::{
    client, json_rows, misql_in, misql_in_with_env, server, unique_db, warehouse,
};

const ORDERS: u64 = 2000;

const SELECT: &str = "_id, customer.name AS customer, customer.address.city AS city, items, \
    total::DECIMAL(18,2) AS total, created_at, priority";

fn create_sync(db: &str, extra: &str) -> String {
    format!(
        "CREATE SYNC orders FROM mongo.{db}.orders INTO iceberg.{db}.orders SELECT {SELECT} \
         WHERE status <> 'test' {extra}"
    )
}

/// What a preview of the sync's SELECT returns, in key order.
fn preview(dir: &Path, db: &str) -> Vec<Value> {
    json_rows(
        dir,
        &format!("SELECT {SELECT} FROM mongo.{db}.orders WHERE status <> 'test' ORDER BY _id"),
    )
}

fn synced(dir: &Path, db: &str) -> Vec<Value> {
    json_rows(dir, &format!("SELECT * FROM iceberg.{db}.orders ORDER BY _id"))
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_copies_the_select_of_every_matching_document() {
    let db = unique_db("snap");
    let docs = orders(ORDERS, 11);
    load(&db, "orders", &docs).await;
    let dir = warehouse("snap");
    let sync = create_sync(
        &db,
        "PARTITION BY day(created_at), bucket(8, _id) WITH (max_batch_rows = 500)",
    );
    let run = misql_in(&dir, &["--once", "-e", &sync]);
    assert!(run.success, "{}", run.stderr);
    let expected = preview(&dir, &db);
    let matching = docs.iter().filter(|d| d.get_str("status").unwrap() != "test").count();
    assert_eq!(expected.len(), matching);
    let done = format!("sync orders: snapshot complete, {matching} rows in iceberg.{db}.orders");
    assert!(run.stderr.contains(&done), "{}", run.stderr);
    assert_eq!(synced(&dir, &db), expected);

    let data = dir.join(&db).join("orders").join("data");
    let mut partitions = std::collections::BTreeSet::new();
    for day in std::fs::read_dir(&data).unwrap() {
        let day = day.unwrap();
        assert!(day.file_name().to_str().unwrap().starts_with("created_at_day="), "{day:?}");
        for bucket in std::fs::read_dir(day.path()).unwrap() {
            partitions.insert(bucket.unwrap().file_name().into_string().unwrap());
        }
    }
    let buckets: Vec<String> = (0..8).map(|b| format!("_id_bucket={b}")).collect();
    assert_eq!(partitions.into_iter().collect::<Vec<_>>(), buckets, "under {}", data.display());

    let py = pyiceberg_rows(&PyCatalog::sql(&dir), &format!("{db}.orders"), "_id");
    assert_eq!(py.len(), expected.len());
    for (p, e) in py.iter().zip(&expected) {
        assert_eq!(p["_id"], e["_id"]);
        assert_eq!(p["customer"], e["customer"]);
        assert_eq!(p["city"], e["city"]);
        assert_eq!(p["priority"], e["priority"]);
        assert_eq!(
            p["total"].as_str().unwrap().parse::<f64>().unwrap(),
            e["total"].as_f64().unwrap()
        );
        assert_eq!(p["items"].as_array().unwrap().len(), e["items"].as_array().unwrap().len());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rerunning_a_complete_snapshot_commits_nothing() {
    let db = unique_db("rerun");
    load(&db, "orders", &orders(300, 3)).await;
    let dir = warehouse("rerun");
    let sync = create_sync(&db, "WITH (max_batch_rows = 100)");
    assert!(misql_in(&dir, &["--once", "-e", &sync]).success);
    let metadata = dir.join(&db).join("orders").join("metadata");
    let before = std::fs::read_dir(&metadata).unwrap().count();
    let run = misql_in(&dir, &["--once", "-e", &sync]);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(std::fs::read_dir(&metadata).unwrap().count(), before, "no new metadata files");
    assert_eq!(synced(&dir, &db), preview(&dir, &db));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_killed_at_random_points_resumes_without_loss_or_duplicates() {
    killed_at_random_points("kill", "WITH (max_batch_rows = 50)", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parallel_snapshot_killed_at_random_points_resumes_every_range() {
    let with = "WITH (max_batch_rows = 50, snapshot_parallelism = 4)";
    killed_at_random_points("kill_par", with, 4).await;
}

/// Kills `CREATE SYNC ... {with}` with SIGKILL between commits, at least 3 times, then lets it
/// finish: the table must hold each matching document once. While interrupted, the table's
/// checkpoint holds `ranges` `_id` ranges.
async fn killed_at_random_points(name: &str, with: &str, ranges: usize) {
    let db = unique_db(name);
    load(&db, "orders", &orders(ORDERS, 5)).await;
    let dir = warehouse(name);
    let sync = create_sync(&db, with);
    let mut rng = Rng::new(99);
    let metadata = dir.join(&db).join("orders").join("metadata");
    let commits = || std::fs::read_dir(&metadata).map_or(0, |d| d.count());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut kills = 0;
    let mut ranges_seen = Vec::new();
    while kills < 6 && Instant::now() < deadline {
        let mut child = Command::new(env!("CARGO_BIN_EXE_misql"))
            .args(["--warehouse", dir.to_str().unwrap(), "--once", "-e", &sync])
            .env("MONGODB_URI", &server().uri)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start misql");
        // Kill after 1 to 4 more commits, a few milliseconds into the next batch: between
        // commits, at a different point each time, however fast the machine is.
        let target = commits() + 1 + rng.below(4) as usize;
        while commits() < target && child.try_wait().unwrap().is_none() && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill: the snapshot is complete
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        kills += 1;
        ranges_seen.push(snapshot_ranges(&metadata));
    }
    let run = misql_in(&dir, &["--once", "-e", &sync]);
    assert!(run.success, "{}", run.stderr);
    assert!(kills >= 3, "the snapshot was interrupted only {kills} times; the test proves little");
    assert!(ranges_seen.contains(&ranges), "ranges in the checkpoints: {ranges_seen:?}");
    // The collection through the driver; the table has no `status` column.
    let coll = client().await.database(&db).collection::<bson::Document>("orders");
    let expected: Vec<OrderRow> = orders_in_mongo(&coll)
        .await
        .into_iter()
        .map(|row| OrderRow { status: None, ..row })
        .collect();
    assert_orders_exact(&synced(&dir, &db), &expected, &format!("{kills} kills"));
}

/// How many `_id` ranges the newest checkpoint in `metadata` holds (1 without a ranges list).
/// A metadata file the kill cut short is passed over: it was never committed.
fn snapshot_ranges(metadata: &Path) -> usize {
    let mut files: Vec<_> = std::fs::read_dir(metadata)
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".metadata.json"))
        .collect();
    files.sort();
    let Some(json) = files
        .iter()
        .rev()
        .find_map(|file| serde_json::from_slice::<Value>(&std::fs::read(file).ok()?).ok())
    else {
        return 0;
    };
    let current = &json["current-snapshot-id"];
    let Some(snapshot) =
        json["snapshots"].as_array().into_iter().flatten().find(|s| &s["snapshot-id"] == current)
    else {
        return 0;
    };
    match snapshot["summary"]["misql.snapshot-ranges"].as_str() {
        Some(text) => {
            serde_json::from_str::<Value>(text).unwrap()["ranges"].as_array().unwrap().len()
        }
        None => 1,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn uncastable_values_follow_on_error() {
    let db = unique_db("onerror");
    let mut docs = orders(50, 8);
    for doc in &mut docs {
        doc.insert("amount", "12.50");
    }
    docs[10].insert("amount", "twelve");
    docs[30].insert("total", "123456789012.50".parse::<bson::Decimal128>().unwrap());
    load(&db, "orders", &docs).await;
    let bad = docs[10].get_object_id("_id").unwrap().to_hex();
    let too_big = docs[30].get_object_id("_id").unwrap().to_hex();
    let sync = |mode: &str| {
        format!(
            "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.t_{mode} \
             SELECT _id, amount::DECIMAL(10,2) AS amount, total::DECIMAL(10,2) AS total \
             WITH (on_error = '{mode}')"
        )
    };

    let dir = warehouse("onerror");
    let run = misql_in(&dir, &["--once", "-e", &sync("fail")]);
    assert!(!run.success);
    let named = format!("document _id={{\"$oid\":\"{bad}\"}}: field `amount`");
    assert!(run.stderr.contains(&named), "{}", run.stderr);
    assert!(run.stderr.contains("on_error"), "{}", run.stderr);

    let run = misql_in(&dir, &["--once", "-e", &sync("skip")]);
    assert!(run.success, "{}", run.stderr);
    let kept = json_rows(&dir, &format!("SELECT _id FROM iceberg.{db}.t_skip"));
    assert_eq!(kept.len(), 48);
    assert!(!kept.iter().any(|r| r["_id"] == bad.as_str() || r["_id"] == too_big.as_str()));

    let run = misql_in(&dir, &["--once", "-e", &sync("dead_letter")]);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(json_rows(&dir, &format!("SELECT _id FROM iceberg.{db}.t_dead_letter")).len(), 48);
    let letters = json_rows(
        &dir,
        &format!(
            "SELECT _id, document, error FROM iceberg.{db}.t_dead_letter__errors ORDER BY _id"
        ),
    );
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0]["_id"], format!("{{\"$oid\":\"{bad}\"}}"));
    assert!(letters[0]["document"].as_str().unwrap().contains("\"amount\":\"twelve\""));
    assert!(letters[1]["error"].as_str().unwrap().contains("total"), "{letters:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_dead_letters_and_rows_leaves_each_dead_letter_once() {
    dead_letters_once_through_a_crash("dead_crash", "", "iceberg").await;
}

on_each_rest_catalog!(
    a_crash_between_dead_letters_and_rows_leaves_each_dead_letter_once_in_a_rest_catalog,
    |catalog: RestCatalog| async move {
        let attach = format!("{}; ", catalog.attach_sql("lake"));
        dead_letters_once_through_a_crash("dead_crash_rest", &attach, "lake").await;
    }
);

/// Dead letters are committed to <table>__errors just before their batch's rows; a crash in
/// between (the failpoint exits there) must not leave them twice after the restart. `attach`
/// is prepended to every statement; the table is in `catalog`.
async fn dead_letters_once_through_a_crash(name: &str, attach: &str, catalog: &str) {
    let db = unique_db(name);
    let mut docs = orders(30, 12);
    for doc in &mut docs {
        doc.insert("amount", "1.50");
    }
    docs[3].insert("amount", "three");
    docs[20].insert("amount", "twenty");
    load(&db, "orders", &docs).await;
    let id = |doc: &bson::Document| {
        format!("{{\"$oid\":\"{}\"}}", doc.get_object_id("_id").unwrap().to_hex())
    };
    let dir = warehouse(name);
    let sync = format!(
        "{attach}CREATE SYNC s FROM mongo.{db}.orders INTO {catalog}.{db}.t \
         SELECT _id, amount::DECIMAL(10,2) AS amount \
         WITH (on_error = 'dead_letter', flush_interval = '200ms')"
    );
    let crash = [("MISQL_FAILPOINT", "after-dead-letters")];
    let letters = || {
        let sql = format!("{attach}SELECT _id FROM {catalog}.{db}.t__errors ORDER BY _id");
        json_rows(&dir, &sql)
            .into_iter()
            .map(|r| r["_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let rows = || json_rows(&dir, &format!("{attach}SELECT _id FROM {catalog}.{db}.t")).len();

    // In the snapshot: the letters are in, the rows are not.
    let run = misql_in_with_env(&dir, &["--once", "-e", &sync], &crash);
    assert!(!run.success && run.stderr.contains("failpoint after-dead-letters"), "{}", run.stderr);
    let mut expected = vec![id(&docs[3]), id(&docs[20])];
    expected.sort();
    assert_eq!(letters(), expected);
    assert_eq!(rows(), 0);
    let run = misql_in(&dir, &["--once", "-e", &sync]);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stderr.contains("rolled back 1 dead-letter commit"), "{}", run.stderr);
    assert_eq!(letters(), expected);
    assert_eq!(rows(), 28);

    // In the stream: a document changed so that it no longer fits.
    let coll = client().await.database(&db).collection::<bson::Document>("orders");
    let changed = docs[7].get_object_id("_id").unwrap();
    coll.update_one(doc! { "_id": changed }, doc! { "$set": { "amount": "seven" } }).await.unwrap();
    let run = misql_in_with_env(&dir, &["--once", "-e", &sync], &crash);
    assert!(!run.success && run.stderr.contains("failpoint after-dead-letters"), "{}", run.stderr);
    assert_eq!(letters().len(), 3);
    let run = misql_in(&dir, &["--once", "-e", &sync]);
    assert!(run.success, "{}", run.stderr);
    expected.push(id(&docs[7]));
    expected.sort();
    assert_eq!(letters(), expected, "each dead letter once");
    assert_eq!(rows(), 27, "the changed document's old row is deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_definition_errors_name_what_to_fix() {
    let db = unique_db("errors");
    load(&db, "orders", &orders(20, 1)).await;
    let dir = warehouse("errors");
    let fails = |sql: &str| -> String {
        let run = misql_in(&dir, &["--once", "-e", sql]);
        assert!(!run.success, "{sql} should fail");
        run.stderr
    };
    let err = fails(&format!(
        "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.a SELECT status, total"
    ));
    assert!(err.contains("the SELECT of sync s must include the key `_id`"), "{err}");
    // A nested field without a name: pointed at as written, a name suggested.
    let err = fails(&format!(
        "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.a\n  SELECT _id, customer.name"
    ));
    assert!(err.contains("column `customer.name` of sync s needs a name"), "{err}");
    assert!(err.contains("line 2, column 15"), "{err}");
    assert!(err.contains("add AS customer_name after `customer.name`"), "{err}");
    assert!(!err.contains("get_field") && !err.contains("Utf8"), "{err}");
    let err = fails(&format!(
        "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.a SELECT _id PARTITION BY dya(created_at)"
    ));
    assert!(err.contains("unknown partition transform") || err.contains("dya"), "{err}");
    assert!(err.contains("day"), "{err}");
    let err = fails(&format!(
        "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.a SELECT _id PARTITION BY day(created_at)"
    ));
    assert!(
        err.contains("PARTITION BY column `created_at` is not in the output of sync s"),
        "{err}"
    );
    let err = fails(&format!(
        "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.a SELECT count(*) AS n"
    ));
    assert!(err.contains("may only compute columns"), "{err}");
    let err = fails(&format!(
        "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.a WITH (delete_mode = 'equality')"
    ));
    assert!(err.contains("delete_mode = 'equality' is not supported"), "{err}");
    assert!(err.contains("delete_mode = 'position'"), "{err}");
    let err = fails(&format!(
        "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.a SELECT _id, status \
         WITH (on_type_change = 'stringify')"
    ));
    assert!(err.contains("on_type_change applies to SELECT * syncs only"), "{err}");
    assert!(err.contains("hint: a value that does not fit its column follows on_error"), "{err}");

    assert!(
        misql_in(
            &dir,
            &[
                "--once",
                "-e",
                &format!(
                    "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.b SELECT _id, priority"
                )
            ]
        )
        .success
    );
    let err = fails(&format!(
        "CREATE SYNC t FROM mongo.{db}.orders INTO iceberg.{db}.b SELECT _id, status AS priority"
    ));
    assert!(err.contains("priority"), "incompatible column named: {err}");
    let err = fails(&format!(
        "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.b SELECT _id, priority WHERE priority > 0"
    ));
    assert!(err.contains("sync s changed since"), "{err}");
    assert!(err.contains("CREATE OR REPLACE SYNC s"), "{err}");
    let run = misql_in(
        &dir,
        &[
            "--once",
            "-e",
            &format!(
                "CREATE OR REPLACE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.b SELECT _id, priority WHERE priority > 0"
            ),
        ],
    );
    assert!(run.success, "{}", run.stderr);

    let err = fails("ATTACH 'http://127.0.0.1:9' AS lake (TYPE iceberg, CATALOG 'rest')");
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_create_sync_shows_plan_query_schema_and_partitioning() {
    let db = unique_db("explain_sync");
    load(&db, "orders", &orders(20, 1)).await;
    let dir = warehouse("explain_sync");
    let sql = format!(
        "EXPLAIN CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.o \
         SELECT _id, total::DECIMAL(18,2) AS total, created_at WHERE status = 'paid' PARTITION BY day(created_at)"
    );
    let run = misql_in(&dir, &["--format", "json", "-e", &sql]);
    assert!(run.success, "{}", run.stderr);
    let items: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let item = |name: &str| {
        items.iter().find(|i| i["item"] == name).unwrap()["value"].as_str().unwrap().to_string()
    };
    assert!(
        item("mongodb_query").contains(r#"filter={"status":{"$eq":"paid"}}"#),
        "{}",
        item("mongodb_query")
    );
    assert!(item("mongodb_query").contains(r#""total":1"#));
    assert!(
        item("target_schema").contains("_id: string NOT NULL (key)"),
        "{}",
        item("target_schema")
    );
    assert!(item("target_schema").contains("total: decimal(18, 2)"), "{}", item("target_schema"));
    assert_eq!(item("partition_spec"), "day(created_at)");
    assert!(
        item("schema_changes").starts_with("fixed by the SELECT list"),
        "{}",
        item("schema_changes")
    );
    assert!(item("schema_changes").ends_with("on_error = 'fail'"), "{}", item("schema_changes"));
    let fields = item("source_fields");
    let total = fields.lines().find(|l| l.starts_with("total: ")).unwrap_or_default();
    assert!(total.contains("present 100.0%"), "{fields}");
    assert!(fields.lines().any(|l| l.starts_with("items[].sku: Utf8 (string: ")), "{fields}");
    assert!(!dir.join(&db).exists(), "EXPLAIN must not create the table");

    let star = format!(
        "EXPLAIN CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.o \
         WITH (on_type_change = 'stringify')"
    );
    let run = misql_in(&dir, &["--format", "json", "-e", &star]);
    assert!(run.success, "{}", run.stderr);
    let policy = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|i| i["item"] == "schema_changes")
        .unwrap();
    let policy = policy["value"].as_str().unwrap();
    assert!(policy.starts_with("SELECT *: new fields become optional columns"), "{policy}");
    assert!(policy.ends_with("on_type_change = 'stringify'"), "{policy}");
}

on_each_rest_catalog!(
    snapshot_into_a_rest_catalog_on_s3_equals_the_preview_and_reads_in_pyiceberg,
    snapshot_into_a_rest_catalog
);

async fn snapshot_into_a_rest_catalog(catalog: RestCatalog) {
    let db = unique_db("rest");
    load(&db, "orders", &orders(500, 21)).await;
    let dir = warehouse("rest");
    let attach = catalog.attach_sql("lake");
    let sync = format!(
        "CREATE SYNC orders FROM mongo.{db}.orders INTO lake.{db}.orders SELECT {SELECT} \
         WHERE status <> 'test' PARTITION BY bucket(4, _id) WITH (max_batch_rows = 200)"
    );
    let run = misql_in(&dir, &["--once", "-e", &attach, "-e", &sync]);
    assert!(run.success, "{}", run.stderr);
    let synced = json_rows(&dir, &format!("{attach}; SELECT * FROM lake.{db}.orders ORDER BY _id"));
    let expected = preview(&dir, &db);
    assert_eq!(synced, expected);

    catalog.assert_read_alike(&format!("{db}.orders"), &expected);

    let run = misql_in(&dir, &["--once", "-e", &attach, "-e", &sync]);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(
        json_rows(&dir, &format!("{attach}; SELECT count(*) AS n FROM lake.{db}.orders"))[0]["n"],
        expected.len()
    );
}
