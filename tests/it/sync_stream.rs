//! CREATE SYNC, stream phase: after the snapshot, inserts, updates, replaces and deletes reach
//! the Iceberg table as new rows plus position deletes, one commit per batch with the resume
//! token; the table equals the collection's projection afterwards — through misql and pyiceberg
//! — also when misql is killed at random moments while the workload runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bson::{DateTime, Document, doc};
use mongodb::Collection;
use serde_json::Value;

use crate::support::data::{Rng, load, order, orders};
use crate::support::duckdb::duckdb_rows;
use crate::support::oracle::{assert_orders_exact, orders_in_mongo, orders_match};
use crate::support::pyiceberg::{PyCatalog, pyiceberg_rows};
use crate::support::rest_catalog::{RestCatalog, on_each_rest_catalog};
use crate::support::{client, json_rows, misql_in, server, unique_db, warehouse};

pub(crate) const SELECT: &str =
    "_id, customer.name AS customer, total::DECIMAL(18,2) AS total, created_at, status";

pub(crate) fn sync_sql(db: &str) -> String {
    format!(
        "CREATE SYNC orders FROM mongo.{db}.orders INTO iceberg.{db}.orders SELECT {SELECT} \
         WHERE status <> 'test' PARTITION BY day(created_at) \
         WITH (flush_interval = '1s', max_batch_rows = 200)"
    )
}

/// The synced table, in key order.
pub(crate) fn synced_sql(db: &str) -> String {
    format!("SELECT * FROM iceberg.{db}.orders ORDER BY _id")
}

fn synced(dir: &Path, db: &str) -> Vec<Value> {
    json_rows(dir, &synced_sql(db))
}

/// One random change: insert, `$set` (total, status in/out of WHERE, a partition move), replace,
/// delete, or a burst of updates to one key.
pub(crate) async fn change(coll: &Collection<Document>, rng: &mut Rng, next_id: &mut u64) {
    let existing = coll.find_one(doc! {}).skip(rng.below(200)).await.unwrap();
    let Some(target) = existing else {
        coll.insert_one(order(*next_id, rng)).await.unwrap();
        *next_id += 1;
        return;
    };
    let id = target.get("_id").unwrap().clone();
    match rng.below(7) {
        0 | 1 => {
            coll.insert_one(order(*next_id, rng)).await.unwrap();
            *next_id += 1;
        }
        2 => {
            let total: bson::Decimal128 = format!("{}.25", rng.below(900)).parse().unwrap();
            coll.update_one(doc! { "_id": &id }, doc! { "$set": { "total": total } })
                .await
                .unwrap();
        }
        3 => {
            let status = ["paid", "test", "shipped"][rng.below(3) as usize];
            coll.update_one(doc! { "_id": &id }, doc! { "$set": { "status": status } })
                .await
                .unwrap();
        }
        4 => {
            let moved =
                DateTime::from_millis(1_700_000_000_000 + rng.below(30) as i64 * 86_400_000);
            coll.update_one(doc! { "_id": &id }, doc! { "$set": { "created_at": moved } })
                .await
                .unwrap();
        }
        5 => {
            let mut replacement = order(*next_id + 1_000_000, rng);
            replacement.insert("_id", id.clone());
            coll.replace_one(doc! { "_id": &id }, replacement).await.unwrap();
        }
        _ => {
            if rng.below(2) == 0 {
                coll.delete_one(doc! { "_id": &id }).await.unwrap();
            } else {
                for k in 0..5 {
                    let name = format!("burst {k}");
                    coll.update_one(
                        doc! { "_id": &id },
                        doc! { "$set": { "customer.name": name } },
                    )
                    .await
                    .unwrap();
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_after_the_snapshot_reach_the_table_exactly() {
    let db = unique_db("stream");
    load(&db, "orders", &orders(300, 31)).await;
    let dir = warehouse("stream");
    let run = misql_in(&dir, &["--once", "-e", &sync_sql(&db)]);
    assert!(run.success, "{}", run.stderr);
    let coll = client().await.database(&db).collection::<Document>("orders");
    assert_orders_exact(&synced(&dir, &db), &orders_in_mongo(&coll).await, "the copy");

    let mut rng = Rng::new(5);
    let mut next_id = 10_000;
    for _ in 0..150 {
        change(&coll, &mut rng, &mut next_id).await;
    }
    let run = misql_in(&dir, &["--once", "-e", &sync_sql(&db)]);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stderr.contains("change events applied"), "{}", run.stderr);
    let expected = synced(&dir, &db);
    assert_orders_exact(&expected, &orders_in_mongo(&coll).await, "150 changes");

    let py = pyiceberg_rows(&PyCatalog::sql(&dir), &format!("{db}.orders"), "_id");
    let pick =
        |rows: &[Value], field: &str| rows.iter().map(|r| r[field].clone()).collect::<Vec<_>>();
    assert_eq!(pick(&py, "_id"), pick(&expected, "_id"), "pyiceberg applies the position deletes");
    assert_eq!(pick(&py, "customer"), pick(&expected, "customer"));
    let duck = duckdb_rows(&PyCatalog::sql(&dir), &format!("{db}.orders"), "_id");
    assert_eq!(duck, py, "DuckDB reads what pyiceberg reads");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streaming_sync_killed_at_random_moments_loses_and_duplicates_nothing() {
    let db = unique_db("crash");
    load(&db, "orders", &orders(200, 41)).await;
    let dir = warehouse("crash");
    let file = dir.join("syncs.sql");
    std::fs::write(&file, sync_sql(&db)).unwrap();
    let coll = client().await.database(&db).collection::<Document>("orders");
    let mut rng = Rng::new(77);
    let mut next_id = 50_000;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut kills = 0;
    while kills < 20 && Instant::now() < deadline {
        let mut daemon = crate::support::daemon(&dir, &file);
        let until = Instant::now() + Duration::from_millis(300 + rng.below(1500));
        while Instant::now() < until {
            change(&coll, &mut rng, &mut next_id).await;
        }
        daemon.kill().expect("SIGKILL");
        daemon.wait().unwrap();
        kills += 1;
    }
    assert_eq!(kills, 20, "only {kills} kills in the time allowed");
    let run = misql_in(&dir, &["--once", "-f", file.to_str().unwrap()]);
    assert!(run.success, "{}", run.stderr);
    let expected = orders_in_mongo(&coll).await;
    assert_orders_exact(&synced(&dir, &db), &expected, &format!("{kills} kills"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_and_recreated_collection_is_copied_again() {
    let db = unique_db("dropped");
    load(&db, "orders", &orders(120, 51)).await;
    let dir = warehouse("dropped");
    assert!(misql_in(&dir, &["--once", "-e", &sync_sql(&db)]).success);
    let coll = client().await.database(&db).collection::<Document>("orders");
    coll.drop().await.unwrap();
    load(&db, "orders", &orders(40, 52)[..]).await;
    let run = misql_in(&dir, &["--once", "-e", &sync_sql(&db)]);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stderr.contains("dropped or renamed"), "{}", run.stderr);
    assert!(run.stderr.contains("copying the collection again"), "{}", run.stderr);
    let coll = client().await.database(&db).collection::<Document>("orders");
    assert_orders_exact(&synced(&dir, &db), &orders_in_mongo(&coll).await, "a dropped collection");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_resume_point_leads_to_a_fresh_copy_not_to_lost_changes() {
    let private = crate::support::server::start_private(&["--enable-test-commands"]);
    let db = unique_db("lost");
    let client = mongodb::Client::with_uri_str(&private.uri).await.unwrap();
    let coll = client.database(&db).collection::<Document>("orders");
    coll.insert_many(orders(60, 61)).await.unwrap();
    let dir = warehouse("lost");
    let once = |dir: &Path| {
        misql_in(dir, &["--mongodb-uri", &private.uri, "--once", "-e", &sync_sql(&db)])
    };
    assert!(once(&dir).success);
    coll.delete_many(doc! { "priority": 0 }).await.unwrap();
    let mut rng = Rng::new(3);
    coll.insert_many((0..7).map(|i| order(900 + i, &mut rng))).await.unwrap();
    let failpoint = doc! {
        "configureFailPoint": "failCommand",
        "mode": { "times": 1 },
        "data": { "failCommands": ["getMore"], "errorCode": 286 },
    };
    client.database("admin").run_command(failpoint).await.unwrap();
    let run = once(&dir);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stderr.contains("cannot resume from the saved token"), "{}", run.stderr);
    let expected = orders_in_mongo(&coll).await;
    assert_orders_exact(&synced(&dir, &db), &expected, "a lost resume point");
}

on_each_rest_catalog!(changes_reach_a_rest_catalog_table_exactly, changes_reach_a_rest_catalog);

async fn changes_reach_a_rest_catalog(catalog: RestCatalog) {
    let db = unique_db("stream_rest");
    load(&db, "orders", &orders(150, 71)).await;
    let dir = warehouse("stream_rest");
    let attach = catalog.attach_sql("lake");
    let sync = sync_sql(&db).replace(&format!("INTO iceberg.{db}"), &format!("INTO lake.{db}"));
    assert!(misql_in(&dir, &["--once", "-e", &attach, "-e", &sync]).success);
    let coll = client().await.database(&db).collection::<Document>("orders");
    let mut rng = Rng::new(17);
    let mut next_id = 20_000;
    for _ in 0..80 {
        change(&coll, &mut rng, &mut next_id).await;
    }
    let run = misql_in(&dir, &["--once", "-e", &attach, "-e", &sync]);
    assert!(run.success, "{}", run.stderr);
    let synced = json_rows(&dir, &format!("{attach}; SELECT * FROM lake.{db}.orders ORDER BY _id"));
    assert_orders_exact(&synced, &orders_in_mongo(&coll).await, "80 changes");
    catalog.assert_read_alike(&format!("{db}.orders"), &synced);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_connections_while_streaming_are_resumed_without_loss() {
    let private = crate::support::server::start_private(&["--enable-test-commands"]);
    let db = unique_db("netfail");
    let client = mongodb::Client::with_uri_str(&private.uri).await.unwrap();
    let coll = client.database(&db).collection::<Document>("orders");
    coll.insert_many(orders(80, 81)).await.unwrap();
    let dir = warehouse("netfail");
    let once = || misql_in(&dir, &["--mongodb-uri", &private.uri, "--once", "-e", &sync_sql(&db)]);
    assert!(once().success);
    let mut rng = Rng::new(9);
    let mut next_id = 70_000;
    for _ in 0..40 {
        change(&coll, &mut rng, &mut next_id).await;
    }
    let failpoint = doc! {
        "configureFailPoint": "failCommand",
        "mode": { "times": 2 },
        "data": { "failCommands": ["getMore", "aggregate"], "closeConnection": true },
    };
    client.database("admin").run_command(failpoint).await.unwrap();
    let run = once();
    assert!(run.success, "{}", run.stderr);
    assert!(
        run.stderr.contains("retrying in 1s"),
        "the dropped connection was not hit: {}",
        run.stderr
    );
    let expected = orders_in_mongo(&coll).await;
    assert_orders_exact(&synced(&dir, &db), &expected, "dropped connections");
}

/// Waits (at most 60 s) until the table equals the collection as the driver reads it from
/// `coll`; panics with `log()` if it does not.
async fn wait_in_sync(
    dir: &Path,
    db: &str,
    coll: &Collection<Document>,
    what: &str,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let expected = orders_in_mongo(coll).await;
        let run = misql_in(dir, &["--format", "json", "-e", &synced_sql(db)]);
        let rows: Option<Vec<Value>> = run
            .success
            .then(|| run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect());
        if rows.is_some_and(|rows| orders_match(&rows, &expected)) {
            return;
        }
        assert!(Instant::now() < deadline, "the table did not catch up {what}:\n{}", log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mongodb_restart_while_streaming_is_survived_without_loss() {
    use crate::support::server::{free_port, start_persistent};
    let storage = warehouse("restart_data");
    let port = free_port();
    let server = start_persistent(port, &storage);
    let uri = server.uri.clone();
    let db = unique_db("restart");
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let coll = client.database(&db).collection::<Document>("orders");
    coll.insert_many(orders(100, 91)).await.unwrap();
    let dir = warehouse("restart");
    let file = dir.join("syncs.sql");
    std::fs::write(&file, sync_sql(&db)).unwrap();
    let mut daemon = crate::support::Daemon(
        Command::new(env!("CARGO_BIN_EXE_misql"))
            .args(["--warehouse", dir.to_str().unwrap(), "--mongodb-uri", &uri])
            .args(["-f", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .expect("start misql"),
    );
    let log = || std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    wait_in_sync(&dir, &db, &coll, "after the snapshot", log).await;

    let mut rng = Rng::new(13);
    let mut next_id = 80_000;
    for _ in 0..30 {
        change(&coll, &mut rng, &mut next_id).await;
    }
    drop(client);
    drop(server); // the server stops; its data stays in `storage`
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The server stays away a while: misql's reads meet the outage.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _server = start_persistent(port, &storage);
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let coll = client.database(&db).collection::<Document>("orders");
    for _ in 0..30 {
        change(&coll, &mut rng, &mut next_id).await;
    }
    wait_in_sync(&dir, &db, &coll, "after the server came back", log).await;
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon must survive the restart");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_documents_that_no_longer_fit_go_to_the_dead_letter_table() {
    let db = unique_db("stream_dead");
    let mut docs = orders(20, 95);
    for doc in &mut docs {
        doc.insert("amount", "1.50");
    }
    load(&db, "orders", &docs).await;
    let dir = warehouse("stream_dead");
    let sync = format!(
        "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.t \
         SELECT _id, amount::DECIMAL(10,2) AS amount WITH (on_error = 'dead_letter', flush_interval = '1s')"
    );
    assert!(misql_in(&dir, &["--once", "-e", &sync]).success);
    let coll = client().await.database(&db).collection::<Document>("orders");
    let changed = docs[3].get_object_id("_id").unwrap();
    coll.update_one(doc! { "_id": changed }, doc! { "$set": { "amount": "bad" } }).await.unwrap();
    let run = misql_in(&dir, &["--once", "-e", &sync]);
    assert!(run.success, "{}", run.stderr);
    let rows = json_rows(&dir, &format!("SELECT _id FROM iceberg.{db}.t"));
    assert_eq!(rows.len(), 19);
    assert!(!rows.iter().any(|r| r["_id"] == changed.to_hex().as_str()));
    let letters =
        json_rows(&dir, &format!("SELECT _id, document, error FROM iceberg.{db}.t__errors"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0]["document"].as_str().unwrap().contains("\"amount\":\"bad\""), "{letters:?}");
    assert!(letters[0]["error"].as_str().unwrap().contains("amount"), "{letters:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn once_ends_under_a_steady_stream_of_writes_with_every_earlier_change_applied() {
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let db = unique_db("steady");
    load(&db, "orders", &orders(20, 5)).await;
    let dir = warehouse("steady");
    // One commit per event: far slower than the writer below.
    let sync = format!(
        "CREATE SYNC s FROM mongo.{db}.orders INTO iceberg.{db}.t SELECT _id, status \
         WITH (max_batch_rows = 1, flush_interval = '100ms')"
    );
    assert!(misql_in(&dir, &["--once", "-e", &sync]).success);
    let coll = client().await.database(&db).collection::<Document>("orders");
    let backlog = (0..30).map(|_| doc! { "_id": bson::oid::ObjectId::new(), "status": "backlog" });
    coll.insert_many(backlog).await.unwrap();

    let mut once = Command::new(env!("CARGO_BIN_EXE_misql"))
        .args(["--warehouse", dir.to_str().unwrap(), "--once", "-e", &sync])
        .env("MONGODB_URI", &server().uri)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start misql");
    // Once the stream phase is about to begin, a writer inserts as fast as it can, for at most
    // 45 s or until the run ends.
    let mut stderr = BufReader::new(once.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("copy already complete") {
        assert!(stderr.read_line(&mut log).unwrap() > 0, "misql ended early: {log}");
    }
    let done = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (coll, done) = (coll.clone(), done.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(45);
            let mut written = 0u64;
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let later = doc! { "_id": bson::oid::ObjectId::new(), "status": "later" };
                coll.insert_one(later).await.unwrap();
                written += 1;
            }
            written
        }
    });
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });
    // Bounded: a run that waits for the writer is killed a while after the writer stops.
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = once.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                once.kill().unwrap();
                once.wait().unwrap();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let writer_still_running = !writer.is_finished();
    done.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    let rest = reader.join().unwrap();
    let status =
        status.unwrap_or_else(|| panic!("--once did not end ({written} written): {log}{rest}"));
    assert!(status.success(), "{log}{rest}");
    assert!(
        writer_still_running,
        "--once waited for the writes to stop ({written} written): {log}{rest}"
    );
    let backlog = json_rows(
        &dir,
        &format!("SELECT count(*) AS n FROM iceberg.{db}.t WHERE status = 'backlog'"),
    );
    assert_eq!(backlog, [serde_json::json!({ "n": 30 })], "every earlier change is applied");
}
