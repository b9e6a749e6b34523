//! misql as a service: SIGTERM commits what was read and exits 0; one failing sync does not
//! stop the others.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use bson::{Document, doc};

use crate::support::data::{Rng, load, order, orders};
use crate::support::{client, daemon_logged, json_rows, unique_db, warehouse};
use crate::sync_stream::{preview_sql, sync_sql, synced_sql};

/// Sends SIGTERM to `child` and waits for it to exit (at most `limit`); its exit code.
fn terminate(child: &mut Child, limit: Duration) -> Option<i32> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("misql did not exit within {limit:?} of SIGTERM");
}

/// Waits until `log` contains `text` (at most `limit`).
fn wait_for_log(log: &Path, text: &str, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if std::fs::read_to_string(log).unwrap_or_default().contains(text) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("`{text}` not logged within {limit:?}:\n{}", std::fs::read_to_string(log).unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_commits_the_batch_read_so_far_and_exits_0() {
    let db = unique_db("sigterm");
    load(&db, "orders", &orders(100, 101)).await;
    let dir = warehouse("sigterm");
    let file = dir.join("syncs.sql");
    // A batch is committed after a minute at the earliest: what SIGTERM finds is not committed.
    std::fs::write(&file, sync_sql(&db).replace("flush_interval = '1s'", "flush_interval = '60s'"))
        .unwrap();
    let log = dir.join("daemon.log");
    let mut daemon = daemon_logged(&dir, &file, Some(&log));
    wait_for_log(&log, "snapshot complete", Duration::from_secs(60));
    let coll = client().await.database(&db).collection::<Document>("orders");
    let mut rng = Rng::new(102);
    coll.insert_many((0..20).map(|i| order(5_000 + i, &mut rng))).await.unwrap();
    coll.delete_many(doc! { "priority": 0 }).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await; // the daemon reads the events
    let code = terminate(&mut daemon, Duration::from_secs(30));
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("SIGTERM: stopping the syncs"), "{log}");
    // No --once run: what the daemon read before SIGTERM is in the table.
    assert_eq!(json_rows(&dir, &synced_sql(&db)), json_rows(&dir, &preview_sql(&db)), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_sync_does_not_stop_the_others() {
    let db = unique_db("local_failure");
    load(&db, "orders", &orders(50, 103)).await;
    load(&db, "payments", &orders(30, 104)).await;
    let dir = warehouse("local_failure");
    let payments = format!(
        "CREATE SYNC payments FROM mongo.{db}.payments INTO iceberg.{db}.payments \
         SELECT _id, total::DECIMAL(18,2) AS total WITH (flush_interval = '500ms')"
    );
    let orders_sync = sync_sql(&db).replace("flush_interval = '1s'", "flush_interval = '500ms'");
    let file = dir.join("syncs.sql");
    std::fs::write(&file, format!("{orders_sync};\n{payments};")).unwrap();
    let log = dir.join("daemon.log");
    let mut daemon = daemon_logged(&dir, &file, Some(&log));
    wait_for_log(&log, "sync payments: snapshot complete", Duration::from_secs(60));
    wait_for_log(&log, "sync orders: snapshot complete", Duration::from_secs(60));
    // A total that is no number: the payments sync fails for good (on_error = 'fail').
    let db_handle = client().await.database(&db);
    db_handle
        .collection::<Document>("payments")
        .insert_one(doc! { "_id": "bad", "total": "a lot" })
        .await
        .unwrap();
    wait_for_log(&log, "sync payments: ", Duration::from_secs(30));
    wait_for_log(&log, "ERROR", Duration::from_secs(30));
    // The orders sync goes on streaming.
    let mut rng = Rng::new(105);
    let coll = db_handle.collection::<Document>("orders");
    coll.insert_many((0..10).map(|i| order(7_000 + i, &mut rng))).await.unwrap();
    let expected = json_rows(&dir, &preview_sql(&db));
    let until = Instant::now() + Duration::from_secs(30);
    while json_rows(&dir, &synced_sql(&db)) != expected {
        assert!(Instant::now() < until, "{}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon is still running");
    let code = terminate(&mut daemon, Duration::from_secs(30));
    let log = std::fs::read_to_string(&log).unwrap();
    assert_ne!(code, Some(0), "a sync had failed: the exit status says so\n{log}");
    assert!(log.contains("sync(s) failed: payments"), "{log}");
}
