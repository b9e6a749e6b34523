//! A whole database in one statement: `CREATE SYNC shop FROM mongo.shop.* INTO lake.shop`, one
//! table per collection, one change stream, collections created, dropped and renamed while it
//! runs, restarts and kill -9.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::{Collection, Database};
use serde_json::Value;

use crate::support::duckdb::duckdb_rows;
use crate::support::pyiceberg::{PyCatalog, pyiceberg_rows};
use crate::support::{client, daemon_with, misql_in, unique_db, warehouse};

/// A small document of collection `c`: `_id`, a number and a text.
fn small(id: i64, n: i64) -> Document {
    doc! { "_id": id, "n": n, "s": format!("v{n}") }
}

/// `(_id, n, s)` of a small document, or of its row.
type Small = (i64, i64, String);

/// Every document of `coll` in `database`, through the driver, in `_id` order.
async fn in_mongo(database: &Database, coll: &str) -> Vec<Small> {
    let coll = database.collection::<Document>(coll);
    let docs: Vec<Document> = coll.find(doc! {}).await.unwrap().try_collect().await.unwrap();
    let int = |d: &Document, f: &str| match d.get(f) {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        other => panic!("{f} of {d}: {other:?}"),
    };
    let mut rows: Vec<Small> = docs
        .iter()
        .map(|d| (int(d, "_id"), int(d, "n"), d.get_str("s").unwrap().to_string()))
        .collect();
    rows.sort();
    rows
}

/// The rows of the table `iceberg.db.coll`, or `None` when it cannot be read yet.
fn in_table(dir: &Path, db: &str, coll: &str) -> Option<Vec<Small>> {
    let sql = format!("SELECT _id, n, s FROM iceberg.{db}.{coll} ORDER BY _id");
    let run = misql_in(dir, &["--format", "json", "-e", &sql]);
    run.success
        .then(|| run.stdout.lines().map(|l| small_row(&serde_json::from_str(l).unwrap())).collect())
}

fn small_row(row: &Value) -> Small {
    let int = |f: &str| row[f].as_i64().unwrap_or_else(|| panic!("{f} of {row}"));
    (int("_id"), int("n"), row["s"].as_str().unwrap_or_else(|| panic!("s of {row}")).to_string())
}

/// Waits (at most 90 s) until every table of `colls` equals its collection.
async fn wait_equal(dir: &Path, database: &Database, colls: &[&str], log: &Path) {
    let until = Instant::now() + Duration::from_secs(90);
    let mut pending: Vec<&str> = colls.to_vec();
    loop {
        let mut still = Vec::new();
        for coll in pending {
            if in_table(dir, database.name(), coll) != Some(in_mongo(database, coll).await) {
                still.push(coll);
            }
        }
        pending = still;
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "{pending:?} never matched their collections:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Inserts, updates and deletes a few documents of `coll` (ids from `next`).
async fn crud(coll: &Collection<Document>, next: &mut i64) {
    for _ in 0..5 {
        coll.insert_one(small(*next, *next)).await.unwrap();
        *next += 1;
    }
    coll.update_one(doc! { "_id": *next - 3 }, doc! { "$set": { "n": -1, "s": "updated" } })
        .await
        .unwrap();
    coll.delete_one(doc! { "_id": *next - 5 }).await.unwrap();
}

fn kill(daemon: &mut Child) {
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

#[test]
fn a_database_sync_is_explained_and_refuses_what_it_cannot_do() {
    let dir = warehouse("dbexplain");
    let run = misql_in(
        &dir,
        &["-e", "CREATE SYNC s FROM mongo.shop.* INTO iceberg.shop PARTITION BY day(created_at)"],
    );
    assert!(!run.success);
    assert!(
        run.stderr.contains("PARTITION BY is not allowed in the database sync s"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("write a CREATE SYNC of its own"), "{}", run.stderr);
    let run = misql_in(&dir, &["-e", "CREATE SYNC s FROM mongo.shop.* INTO iceberg.shop.orders"]);
    assert!(!run.success);
    assert!(run.stderr.contains("expected 2 for a database sync"), "{}", run.stderr);
    let run = misql_in(&dir, &["-e", "CREATE SYNC s FROM mongo.* INTO iceberg.shop"]);
    assert!(!run.success);
    assert!(run.stderr.contains("is not a collection pattern"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_sync_follows_new_dropped_and_renamed_collections_through_restarts() {
    let db = unique_db("dbsync");
    let database = client().await.database(&db);
    let orders = database.collection::<Document>("orders");
    let customers = database.collection::<Document>("customers");
    let scratch = database.collection::<Document>("tmp_scratch");
    let doomed = database.collection::<Document>("doomed");
    orders.insert_many((0..40).map(|i| small(i, i))).await.unwrap();
    customers.insert_many((0..25).map(|i| small(i, i * 10))).await.unwrap();
    scratch.insert_one(small(1, 1)).await.unwrap();
    doomed.insert_many((0..5).map(|i| small(i, i))).await.unwrap();
    let dir = warehouse("dbsync");
    let file = dir.join("syncs.sql");
    let sync = format!(
        "CREATE SYNC shop FROM mongo.{db}.* EXCLUDE (tmp_*) INTO iceberg.{db} \
         WITH (flush_interval = '500ms', max_batch_rows = 20)"
    );
    std::fs::write(&file, &sync).unwrap();

    // EXPLAIN names the collections it takes now and those it leaves out.
    let explain = misql_in(&dir, &["--format", "json", "-e", &format!("EXPLAIN {sync}")]);
    assert!(explain.success, "{}", explain.stderr);
    assert!(explain.stdout.contains("customers, doomed, orders"), "{}", explain.stdout);
    assert!(explain.stdout.contains("tmp_scratch"), "{}", explain.stdout);

    let log = dir.join("daemon.log");
    let mut daemon = daemon_with(&dir, &file, Some(&log), &[]);
    wait_equal(&dir, &database, &["orders", "customers", "doomed"], &log).await;
    assert!(in_table(&dir, &db, "tmp_scratch").is_none(), "an excluded collection has no table");

    // Changes on two collections, a new collection, a drop and a rename, while it runs.
    let (mut next_orders, mut next_customers) = (1000, 2000);
    crud(&orders, &mut next_orders).await;
    crud(&customers, &mut next_customers).await;
    let returns = database.collection::<Document>("returns");
    returns.insert_many((0..8).map(|i| small(i, i + 100))).await.unwrap();
    doomed.drop().await.unwrap();
    let admin = client().await.database("admin");
    let rename = doc! {
        "renameCollection": format!("{db}.customers"),
        "to": format!("{db}.clients"),
    };
    wait_equal(&dir, &database, &["orders", "customers", "returns"], &log).await;
    admin.run_command(rename).await.unwrap();
    let clients = database.collection::<Document>("clients");
    crud(&clients, &mut next_customers).await;
    crud(&returns, &mut 500).await;
    wait_equal(&dir, &database, &["orders", "returns", "clients"], &log).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains(&format!("new collection {db}.returns")), "{logged}");
    assert!(logged.contains("sync shop/doomed"), "{logged}");
    // The dropped collection's table is kept as it was.
    assert_eq!(in_table(&dir, &db, "doomed").map(|rows| rows.len()), Some(5));

    // kill -9 three times with writes in between: every table ends equal to its collection.
    let late = database.collection::<Document>("late");
    for round in 0..3 {
        kill(&mut daemon);
        crud(&orders, &mut next_orders).await;
        crud(&returns, &mut (600 + round * 10)).await;
        crud(&clients, &mut next_customers).await;
        // A collection created while misql is down, written again in the next rounds.
        crud(&late, &mut (round * 10)).await;
        daemon = daemon_with(&dir, &file, Some(&log), &[]);
        // The next kill lands a little later each round (no state to wait for: any moment).
        tokio::time::sleep(Duration::from_millis(700 * (round as u64 + 1))).await;
    }
    wait_equal(&dir, &database, &["orders", "returns", "clients", "late"], &log).await;
    let status = misql_in(&dir, &["-e", "SHOW SYNCS"]);
    assert!(status.success, "{}", status.stderr);
    kill(&mut daemon);

    // Two of the tables read the same in pyiceberg and DuckDB.
    for coll in ["orders", "clients"] {
        let table = format!("{db}.{coll}");
        let expected: Vec<(i64, i64)> =
            in_mongo(&database, coll).await.iter().map(|(id, n, _)| (*id, *n)).collect();
        for rows in [
            pyiceberg_rows(&PyCatalog::sql(&dir), &table, "_id"),
            duckdb_rows(&PyCatalog::sql(&dir), &table, "_id"),
        ] {
            let got: Vec<(i64, i64)> = rows
                .iter()
                .map(|r| (r["_id"].as_i64().unwrap(), r["n"].as_i64().unwrap()))
                .collect();
            assert_eq!(got, expected, "{table}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_of_its_own_takes_a_collection_over_from_the_database_sync() {
    let db = unique_db("dbhand");
    let database = client().await.database(&db);
    let orders = database.collection::<Document>("orders");
    let notes = database.collection::<Document>("notes");
    orders.insert_many((0..20).map(|i| small(i, i))).await.unwrap();
    notes.insert_many((0..10).map(|i| small(i, i))).await.unwrap();
    let dir = warehouse("dbhand");
    let file = dir.join("syncs.sql");
    // The database sync comes first in the file; the sync of its own still wins.
    std::fs::write(
        &file,
        format!(
            "CREATE SYNC everything FROM mongo.{db}.* INTO iceberg.{db} \
             WITH (flush_interval = '500ms');\n\
             CREATE SYNC own FROM mongo.{db}.orders INTO iceberg.{db}.own_orders \
             SELECT _id, n, s WITH (flush_interval = '500ms');"
        ),
    )
    .unwrap();
    let log = dir.join("daemon.log");
    let mut daemon = daemon_with(&dir, &file, Some(&log), &[]);
    wait_equal(&dir, &database, &["notes"], &log).await;
    let mut next = 100;
    crud(&orders, &mut next).await;
    crud(&notes, &mut 200).await;
    let until = Instant::now() + Duration::from_secs(60);
    while in_table(&dir, &db, "own_orders") != Some(in_mongo(&database, "orders").await) {
        assert!(Instant::now() < until, "{}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_equal(&dir, &database, &["notes"], &log).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains(&format!("{db}.orders is left to sync own")), "{logged}");
    // The database sync's own table of orders, if it got that far, does not follow it.
    let theirs = in_table(&dir, &db, "orders").unwrap_or_default();
    assert_ne!(theirs, in_mongo(&database, "orders").await, "two syncs followed one collection");
    kill(&mut daemon);
}
