//! Two processes running the same sync on one table at once (a double deploy, a restart script
//! run twice): whatever the timing, the table ends equal to the collection, without duplicates.
//! A batch is committed only on the checkpoint it was computed from; the loser of a race
//! continues from the winner's checkpoint.

use std::path::Path;
use std::time::{Duration, Instant};

use bson::Document;
use serde_json::Value;

use crate::support::data::{Rng, load, orders};
use crate::support::oracle::{orders_in_mongo, orders_in_table};
use crate::support::{client, daemon_logged, misql_in, unique_db, warehouse};
use crate::sync_stream::{change, synced_sql};

/// The sync of `sync_stream`, committing every 50 rows so that a snapshot is many commits.
fn sync_sql(db: &str) -> String {
    crate::sync_stream::sync_sql(db).replace("max_batch_rows = 200", "max_batch_rows = 50")
}

/// The logs of both daemons, for a failure message.
fn logs(dir: &Path) -> String {
    ["a.log", "b.log"]
        .iter()
        .map(|f| format!("--- {f}\n{}", std::fs::read_to_string(dir.join(f)).unwrap_or_default()))
        .collect()
}

/// Waits until the table holds exactly the collection's rows, as the driver reads them (no key
/// twice).
async fn wait_exact(dir: &Path, db: &str, what: &str) {
    let coll = client().await.database(db).collection::<Document>("orders");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let expected = orders_in_mongo(&coll).await;
        // The table may not exist yet.
        let rows = orders_in_table(&query(dir, &synced_sql(db)).unwrap_or_default());
        let mut keys: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        keys.dedup();
        if rows == expected && keys.len() == rows.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the table did not end equal to the collection ({} rows, {} distinct keys, \
             {} expected)\n{}",
            rows.len(),
            keys.len(),
            expected.len(),
            logs(dir)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The rows of `sql`, `None` if it fails.
fn query(dir: &Path, sql: &str) -> Option<Vec<Value>> {
    let run = misql_in(dir, &["--format", "json", "-e", sql]);
    run.success.then(|| run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
}

fn stop(mut child: crate::support::Daemon) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One race: two daemons started at the same instant; `crud` changes the collection while they
/// run; `kill` kills one of them with SIGKILL after `kill` milliseconds.
async fn race(round: u64, crud: bool, kill: Option<u64>) {
    let db = unique_db("two_writers");
    load(&db, "orders", &orders(400, 70 + round)).await;
    let dir = warehouse("two_writers");
    let file = dir.join("syncs.sql");
    std::fs::write(&file, sync_sql(&db)).unwrap();
    let mut a = Some(daemon_logged(&dir, &file, Some(&dir.join("a.log"))));
    let b = daemon_logged(&dir, &file, Some(&dir.join("b.log")));
    let started = Instant::now();
    if crud {
        let coll = client().await.database(&db).collection::<Document>("orders");
        let mut rng = Rng::new(round);
        let mut next_id = 50_000;
        for _ in 0..60 {
            change(&coll, &mut rng, &mut next_id).await;
            if kill.is_some_and(|ms| started.elapsed() >= Duration::from_millis(ms))
                && let Some(child) = a.take()
            {
                stop(child); // SIGKILL
            }
        }
    }
    if let (Some(ms), Some(child)) = (kill, a.take()) {
        tokio::time::sleep(Duration::from_millis(ms).saturating_sub(started.elapsed())).await;
        stop(child);
    }
    wait_exact(&dir, &db, &format!("round {round} (crud: {crud}, kill: {kill:?})")).await;
    if let Some(child) = a {
        stop(child);
    }
    stop(b);
    if std::env::var_os("MISQL_KEEP_TEST_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_started_at_once_on_one_sync_leave_the_table_exact() {
    for round in 0..3 {
        race(round, false, None).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_under_writes_leave_the_table_exact_even_when_one_is_killed() {
    race(10, true, None).await;
    race(11, true, Some(300)).await;
    race(12, true, Some(1500)).await;
}
