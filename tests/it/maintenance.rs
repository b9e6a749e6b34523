//! OPTIMIZE and VACUUM: a streamed table (many small files, position deletes, a manifest per
//! commit) is compacted into few files without deletes and cleaned of what no snapshot needs;
//! it reads the same in misql, pyiceberg and DuckDB afterwards, and a sync resumes on it
//! exactly where it was.

use std::path::Path;
use std::time::{Duration, Instant};

use bson::Document;
use serde_json::Value;

use crate::service::{get, sample, wait_for_phase};
use crate::support::data::{Rng, load, orders};
use crate::support::duckdb::duckdb_rows;
use crate::support::oracle::{assert_orders_exact, orders_in_mongo};
use crate::support::pyiceberg::{PyCatalog, pyiceberg_files, pyiceberg_rows};
use crate::support::rest_catalog::{RestCatalog, on_each_rest_catalog};
use crate::support::server::free_port;
use crate::support::{
    assert_exactly, client, daemon_with, json_rows, misql_in, unique_db, warehouse,
};
use crate::sync_stream::{change, sync_sql, synced_sql};

/// Streams `changes` random changes into the sync in `batches` `--once` runs, so the table
/// gets that many commits with data files and position deletes.
async fn stream_changes(dir: &Path, db: &str, seed: u64, batches: usize, changes: usize) {
    let coll = client().await.database(db).collection::<Document>("orders");
    let mut rng = Rng::new(seed);
    let mut next_id = 10_000 + seed * 1000;
    for _ in 0..batches {
        for _ in 0..changes {
            change(&coll, &mut rng, &mut next_id).await;
        }
        let run = misql_in(dir, &["--once", "-e", &sync_sql(db)]);
        assert!(run.success, "{}", run.stderr);
        assert!(run.stderr.contains("copy already complete"), "{}", run.stderr);
    }
}

/// The table's current metadata (its JSON) and its size in bytes, from the embedded catalog.
pub(crate) fn current_metadata(dir: &Path, db: &str, table: &str) -> (Value, u64) {
    let script = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute(\
        'SELECT metadata_location FROM iceberg_tables WHERE table_namespace = ? AND \
        table_name = ?', (sys.argv[2], sys.argv[3])).fetchone()[0])";
    let catalog = dir.join("catalog.db");
    let out = std::process::Command::new("python3")
        .args(["-c", script, catalog.to_str().unwrap(), db, table])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let location = String::from_utf8(out.stdout).unwrap();
    let path = location.trim().trim_start_matches("file://").to_string();
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (serde_json::from_slice(&text).unwrap(), text.len() as u64)
}

/// A sync file streaming every 200 ms with `options` added.
fn streaming_sync(dir: &Path, db: &str, options: &str) -> std::path::PathBuf {
    let sql = sync_sql(db)
        .replace("flush_interval = '1s'", &format!("flush_interval = '200ms', {options}"));
    let file = dir.join("syncs.sql");
    std::fs::write(&file, sql).unwrap();
    file
}

/// Drains the sync with `--once` and checks the table equals the collection (read through the
/// driver).
async fn drained_exactly(dir: &Path, db: &str, after: &str, log: &str) {
    let run = misql_in(dir, &["--once", "-e", &sync_sql(db)]);
    assert!(run.success, "{}\n--- daemon log\n{log}", run.stderr);
    let coll = client().await.database(db).collection::<Document>("orders");
    let expected = orders_in_mongo(&coll).await;
    assert_orders_exact(&json_rows(dir, &synced_sql(db)), &expected, after);
}

/// The one-row report of a maintenance statement.
fn report(dir: &Path, sql: &str) -> Value {
    let rows = json_rows(dir, sql);
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0].clone()
}

/// Files under the table's folder on disk.
fn files_on_disk(dir: &Path, db: &str) -> Vec<String> {
    let root = dir.join(db).join("orders");
    let mut found = Vec::new();
    let mut pending = vec![root];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.to_string_lossy().into_owned());
            }
        }
    }
    found
}

/// The kinds of the files the current snapshot references, counted.
fn referenced(dir: &Path, db: &str, kind: &str) -> usize {
    let files = pyiceberg_files(&PyCatalog::sql(dir), &format!("{db}.orders"));
    assert!(files.iter().all(|f| f["exists"] == true), "a referenced file is missing: {files:?}");
    files.iter().filter(|f| f["kind"] == kind).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn optimize_and_vacuum_compact_a_streamed_table_and_the_sync_resumes_on_it() {
    let db = unique_db("optimize");
    load(&db, "orders", &orders(300, 81)).await;
    let dir = warehouse("optimize");
    assert!(misql_in(&dir, &["--once", "-e", &sync_sql(&db)]).success);
    stream_changes(&dir, &db, 1, 6, 25).await;
    let deletes_before = referenced(&dir, &db, "position deletes");
    let data_before = referenced(&dir, &db, "data");
    assert!(deletes_before > 0, "the workload wrote position deletes");

    let run = misql_in(
        &dir,
        &["--once", "--format", "json", "-e", &sync_sql(&db), "-e", "OPTIMIZE SYNC orders"],
    );
    assert!(run.success, "{}", run.stderr);
    let optimized: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(optimized["delete_files_removed"], deletes_before as u64, "{optimized}");
    assert!(optimized["manifests_after"].as_u64() < optimized["manifests_before"].as_u64());
    assert_eq!(referenced(&dir, &db, "position deletes"), 0);
    let data_after = referenced(&dir, &db, "data");
    assert!(data_after < data_before, "{data_before} data files before, {data_after} after");
    let coll = client().await.database(&db).collection::<Document>("orders");
    let expected = json_rows(&dir, &synced_sql(&db));
    assert_orders_exact(&expected, &orders_in_mongo(&coll).await, "OPTIMIZE");

    let on_disk_before = files_on_disk(&dir, &db).len();
    let vacuumed = report(&dir, &format!("VACUUM iceberg.{db}.orders RETAIN '0s'"));
    assert!(vacuumed["snapshots_expired"].as_u64() > Some(0), "{vacuumed}");
    let on_disk = files_on_disk(&dir, &db);
    assert!(on_disk.len() < on_disk_before / 2, "{on_disk_before} files before, {on_disk:?}");
    let data_files = on_disk.iter().filter(|f| f.ends_with(".parquet")).count();
    assert_eq!(data_files, data_after, "only the live data files stay: {on_disk:?}");
    assert_exactly(&json_rows(&dir, &synced_sql(&db)), &expected, "VACUUM");
    let py = pyiceberg_rows(&PyCatalog::sql(&dir), &format!("{db}.orders"), "_id");
    let ids = |rows: &[Value]| rows.iter().map(|r| r["_id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&py), ids(&expected), "pyiceberg reads the compacted table");
    let duck = duckdb_rows(&PyCatalog::sql(&dir), &format!("{db}.orders"), "_id");
    assert_eq!(duck, py, "DuckDB and pyiceberg read the compacted table alike");

    // The checkpoint came through: the sync continues from it, nothing is copied again.
    stream_changes(&dir, &db, 2, 2, 20).await;
    let synced = json_rows(&dir, &synced_sql(&db));
    let after = "changes after OPTIMIZE and VACUUM";
    assert_orders_exact(&synced, &orders_in_mongo(&coll).await, after);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streaming_sync_keeps_its_own_table_compact() {
    let db = unique_db("automaint");
    load(&db, "orders", &orders(300, 91)).await;
    let dir = warehouse("automaint");
    let file = streaming_sync(&dir, &db, "max_snapshots = 15");
    let log = dir.join("daemon.log");
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon = daemon_with(&dir, &file, Some(&log), &["--http", &http]);
    let coll = client().await.database(&db).collection::<Document>("orders");
    let (mut rng, mut next_id) = (Rng::new(92), 60_000);
    let until = Instant::now() + Duration::from_secs(25);
    while Instant::now() < until {
        change(&coll, &mut rng, &mut next_id).await;
    }
    // SHOW SYNC STATUS's `compactions`, as /metrics exports it, counts the sync's compactions.
    let compactions = r#"misql_sync_compactions_total{sync="orders"}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = get(&http, "/metrics").await.1;
        if sample(&metrics, compactions).is_some_and(|n| n > 0.0) {
            break;
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(Instant::now() < deadline, "no compaction counted: {metrics}\n{log}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("compacted"), "the sync compacted its table:\n{log}");
    let (metadata, _) = current_metadata(&dir, &db, "orders");
    let snapshots = metadata["snapshots"].as_array().unwrap().len();
    // Expiry runs once 10 more than max_snapshots have piled up, after the batch's commit and
    // the compaction it may trigger: a kill between those and the expiry leaves two more.
    assert!(snapshots <= 15 + 10 + 2, "{snapshots} snapshots kept:\n{log}");
    let deletes = referenced(&dir, &db, "position deletes");
    assert!(deletes < 3 * 32, "{deletes} delete files left");
    drained_exactly(&dir, &db, "a streamed, self-maintained table", &log).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn optimize_from_another_process_while_a_sync_streams_loses_nothing() {
    let db = unique_db("concopt");
    load(&db, "orders", &orders(300, 93)).await;
    let dir = warehouse("concopt");
    let file = streaming_sync(&dir, &db, "auto_optimize = false");
    let log = dir.join("daemon.log");
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon = daemon_with(&dir, &file, Some(&log), &["--http", &http]);
    wait_for_phase(&http, "orders", "streaming", Duration::from_secs(60)).await;
    let coll = client().await.database(&db).collection::<Document>("orders");
    let (mut rng, mut next_id) = (Rng::new(94), 70_000);
    let (mut optimized, mut rewritten) = (0, 0);
    let until = Instant::now() + Duration::from_secs(40);
    while Instant::now() < until && optimized < 8 {
        for _ in 0..30 {
            change(&coll, &mut rng, &mut next_id).await;
        }
        let run =
            misql_in(&dir, &["--format", "json", "-e", &format!("OPTIMIZE iceberg.{db}.orders")]);
        assert!(run.success, "OPTIMIZE failed: {}", run.stderr);
        let report: Value = serde_json::from_str(run.stdout.trim()).unwrap();
        optimized += 1;
        rewritten += report["data_files_removed"].as_u64().unwrap();
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(optimized >= 3 && rewritten > 0, "{optimized} OPTIMIZE runs rewrote {rewritten} files");
    drained_exactly(&dir, &db, &format!("{optimized} concurrent OPTIMIZE runs"), &log).await;
}

on_each_rest_catalog!(
    optimize_and_vacuum_work_on_a_rest_catalog_table_in_object_storage,
    optimize_and_vacuum_on_a_rest_catalog
);

async fn optimize_and_vacuum_on_a_rest_catalog(rest: RestCatalog) {
    let db = unique_db("optimize_rest");
    load(&db, "orders", &orders(150, 95)).await;
    let dir = warehouse("optimize_rest");
    let attach = rest.attach_sql("lake");
    let sync = sync_sql(&db).replace(&format!("INTO iceberg.{db}"), &format!("INTO lake.{db}"));
    let once = |dir: &Path| misql_in(dir, &["--once", "-e", &attach, "-e", &sync]);
    assert!(once(&dir).success);
    let coll = client().await.database(&db).collection::<Document>("orders");
    let (mut rng, mut next_id) = (Rng::new(96), 80_000);
    for _ in 0..3 {
        for _ in 0..20 {
            change(&coll, &mut rng, &mut next_id).await;
        }
        let run = once(&dir);
        assert!(run.success, "{}", run.stderr);
    }
    let optimized = report(&dir, &format!("{attach}; OPTIMIZE lake.{db}.orders"));
    assert!(optimized["delete_files_removed"].as_u64() > Some(0), "{optimized}");
    let vacuumed = report(&dir, &format!("{attach}; VACUUM lake.{db}.orders RETAIN '0s'"));
    assert!(vacuumed["data_files_deleted"].as_u64() > Some(0), "{vacuumed}");
    let catalog = rest.py();
    let files = pyiceberg_files(&catalog, &format!("{db}.orders"));
    assert!(files.iter().all(|f| f["exists"] == true), "a referenced file was deleted: {files:?}");
    assert!(files.iter().all(|f| f["kind"] != "position deletes"), "{files:?}");
    let synced = json_rows(&dir, &format!("{attach}; SELECT * FROM lake.{db}.orders ORDER BY _id"));
    let after = "OPTIMIZE and VACUUM in object storage";
    assert_orders_exact(&synced, &orders_in_mongo(&coll).await, after);
    rest.assert_read_alike(&format!("{db}.orders"), &synced);
}

#[test]
fn maintenance_statements_name_what_is_wrong() {
    let dir = warehouse("maint_errors");
    let run = misql_in(&dir, &["-e", "OPTIMIZE iceberg.nowhere.nothing"]);
    assert!(!run.success);
    assert!(run.stderr.contains("there is no table iceberg.nowhere.nothing"), "{}", run.stderr);
    assert!(run.stderr.contains("SHOW TABLES FROM iceberg.nowhere"), "{}", run.stderr);
    let run = misql_in(&dir, &["-e", "VACUUM SYNC orders"]);
    assert!(!run.success);
    assert!(run.stderr.contains("there is no sync orders"), "{}", run.stderr);
    let run = misql_in(&dir, &["-e", "OPTIMIZE lake.shop.orders"]);
    assert!(!run.success);
    assert!(run.stderr.contains("no Iceberg catalog is attached as `lake`"), "{}", run.stderr);
    let run = misql_in(&dir, &["-e", "OPTIMIZE orders"]);
    assert!(!run.success);
    assert!(run.stderr.contains("catalog.namespace.table"), "{}", run.stderr);
}

/// Nothing the table references is missing, and the table equals the collection once the sync
/// has drained.
async fn intact(dir: &Path, db: &str, after: &str) {
    let files = pyiceberg_files(&PyCatalog::sql(dir), &format!("{db}.orders"));
    let missing: Vec<&Value> = files.iter().filter(|f| f["exists"] != true).collect();
    assert!(
        missing.is_empty(),
        "files the table references were deleted after {after}: {missing:?}"
    );
    drained_exactly(dir, db, after, "").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn optimize_and_vacuum_killed_at_any_point_lose_nothing_and_leave_nothing_for_good() {
    let db = unique_db("maint_crash");
    load(&db, "orders", &orders(250, 97)).await;
    let dir = warehouse("maint_crash");
    assert!(misql_in(&dir, &["--once", "-e", &sync_sql(&db)]).success);
    let optimize = format!("OPTIMIZE iceberg.{db}.orders");
    let vacuum = format!("VACUUM iceberg.{db}.orders RETAIN '0s'");
    let both = format!("{optimize}; {vacuum}");

    // Failpoints: files written but not committed; committed but not cleaned up.
    let points = [
        ("optimize-before-commit", &optimize),
        ("optimize-after-commit", &optimize),
        ("vacuum-before-delete", &vacuum),
        ("vacuum-mid-delete", &vacuum),
    ];
    for (round, (point, sql)) in points.into_iter().enumerate() {
        stream_changes(&dir, &db, 10 + round as u64, 2, 15).await;
        if point.starts_with("vacuum") {
            assert!(misql_in(&dir, &["-e", &optimize]).success);
        }
        let run =
            crate::support::misql_in_with_env(&dir, &["-e", sql], &[("MISQL_FAILPOINT", point)]);
        assert!(
            !run.success && run.stderr.contains(&format!("failpoint {point}")),
            "{}",
            run.stderr
        );
        intact(&dir, &db, point).await;
    }

    // kill -9 at random moments of OPTIMIZE + VACUUM: each once OPTIMIZE has started (its debug
    // log line says so), while the process still runs.
    let mut rng = Rng::new(98);
    let mut landed = Vec::new();
    for round in 0..6 {
        stream_changes(&dir, &db, 20 + round, 1, 15).await;
        let log = dir.join(format!("kill-{round}.log"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_misql"))
            .args(["--warehouse", dir.to_str().unwrap(), "-e", &both])
            .env("MONGODB_URI", &crate::support::server().uri)
            .env("RUST_LOG", "misql=debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let logged = || std::fs::read_to_string(&log).unwrap_or_default();
        let started = |text: &str, what: &str| {
            text.lines().any(|line| line.contains(what) && line.contains(": started"))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !started(&logged(), "OPTIMIZE") {
            assert!(std::time::Instant::now() < deadline, "OPTIMIZE never started: {}", logged());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
        let running = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        let text = logged();
        let at = if !running {
            "after it ended"
        } else if started(&text, "VACUUM") {
            "in VACUUM"
        } else {
            "in OPTIMIZE"
        };
        landed.push(at);
        intact(&dir, &db, &format!("kill {round} ({at})")).await;
    }
    let during = landed.iter().filter(|at| **at != "after it ended").count();
    assert!(during >= 4, "only {during} of 6 kills landed while maintenance ran: {landed:?}");

    // A later VACUUM removes what the killed runs left: only referenced data files stay.
    assert!(misql_in(&dir, &["-e", &both]).success);
    let files = pyiceberg_files(&PyCatalog::sql(&dir), &format!("{db}.orders"));
    let mut referenced: Vec<String> = files
        .iter()
        .filter(|f| f["kind"] == "data" || f["kind"] == "position deletes")
        .map(|f| f["path"].as_str().unwrap().trim_start_matches("file://").to_string())
        .collect();
    referenced.sort();
    let mut on_disk: Vec<String> =
        files_on_disk(&dir, &db).into_iter().filter(|f| f.ends_with(".parquet")).collect();
    on_disk.sort();
    assert_eq!(on_disk, referenced, "a later VACUUM leaves only the files the table references");
    intact(&dir, &db, "the final VACUUM").await;
}
