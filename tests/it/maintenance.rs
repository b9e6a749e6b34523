//! OPTIMIZE and VACUUM: a streamed table (many small files, position deletes, a manifest per
//! commit) is compacted into few files without deletes and cleaned of what no snapshot needs;
//! it reads the same in misql, pyiceberg and DuckDB afterwards, and a sync resumes on it
//! exactly where it was.

use std::path::Path;

use bson::Document;
use serde_json::Value;

use crate::support::data::{Rng, load, orders};
use crate::support::pyiceberg::{PyCatalog, pyiceberg_files, pyiceberg_rows};
use crate::support::{assert_exactly, client, json_rows, misql_in, unique_db, warehouse};
use crate::sync_stream::{change, preview_sql, sync_sql, synced_sql};

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
    }
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

    let optimized = report(&dir, &format!("OPTIMIZE iceberg.{db}.orders"));
    assert_eq!(optimized["delete_files_removed"], deletes_before as u64, "{optimized}");
    assert!(optimized["manifests_after"].as_u64() < optimized["manifests_before"].as_u64());
    assert_eq!(referenced(&dir, &db, "position deletes"), 0);
    let data_after = referenced(&dir, &db, "data");
    assert!(data_after < data_before, "{data_before} data files before, {data_after} after");
    let expected = json_rows(&dir, &preview_sql(&db));
    assert_exactly(&json_rows(&dir, &synced_sql(&db)), &expected, "OPTIMIZE");

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

    // The checkpoint came through: the sync continues from it, nothing is copied again.
    stream_changes(&dir, &db, 2, 2, 20).await;
    assert_exactly(
        &json_rows(&dir, &synced_sql(&db)),
        &json_rows(&dir, &preview_sql(&db)),
        "changes after OPTIMIZE and VACUUM",
    );
}
