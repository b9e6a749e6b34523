//! misql as a service: SIGTERM commits what was read and exits 0; one failing sync does not
//! stop the others.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use bson::{Document, doc};

use crate::support::data::{Rng, load, order, orders};
use crate::support::oracle::{assert_orders_exact, orders_in_mongo, orders_match};
use crate::support::server::free_port;
use crate::support::{client, daemon_logged, daemon_with, json_rows, unique_db, warehouse};
use crate::sync_stream::{sync_sql, synced_sql};

/// Sends SIGTERM to `child` and waits for it to exit (at most `limit`); its exit code.
async fn terminate(child: &mut Child, limit: Duration) -> Option<i32> {
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("misql did not exit within {limit:?} of SIGTERM");
}

/// Waits until `log` contains `text` (at most `limit`): for what only the log tells.
async fn wait_for_log(log: &Path, text: &str, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if std::fs::read_to_string(log).unwrap_or_default().contains(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{text}` not logged within {limit:?}:\n{}", std::fs::read_to_string(log).unwrap());
}

/// Waits until the sample `name_and_labels` on `--http addr`'s /metrics satisfies `ready` (at
/// most `limit`); the exposition it was read from.
pub(crate) async fn wait_for_sample(
    addr: &str,
    name_and_labels: &str,
    ready: impl Fn(f64) -> bool,
    limit: Duration,
) -> String {
    wait_for_http(addr).await;
    let until = Instant::now() + limit;
    loop {
        let metrics = get(addr, "/metrics").await.1;
        if sample(&metrics, name_and_labels).is_some_and(&ready) {
            return metrics;
        }
        assert!(Instant::now() < until, "{name_and_labels} not as awaited in {limit:?}: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `--http addr`'s /metrics shows sync `sync` in `phase` (at most `limit`).
pub(crate) async fn wait_for_phase(addr: &str, sync: &str, phase: &str, limit: Duration) -> String {
    let name = format!(r#"misql_sync_phase{{sync="{sync}",phase="{phase}"}}"#);
    wait_for_sample(addr, &name, |v| v == 1.0, limit).await
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
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon = daemon_with(&dir, &file, Some(&log), &["--http", &http]);
    wait_for_phase(&http, "orders", "streaming", Duration::from_secs(60)).await;
    // The changes in one transaction: the stream reads them together, so once the sync holds
    // one of them uncommitted (its lag is above 0), it holds them all.
    let coll = client().await.database(&db).collection::<Document>("orders");
    let mut rng = Rng::new(102);
    let mut session = coll.client().start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    let inserts = (0..20).map(|i| order(5_000 + i, &mut rng));
    coll.insert_many(inserts).session(&mut session).await.unwrap();
    coll.delete_many(doc! { "priority": 0 }).session(&mut session).await.unwrap();
    session.commit_transaction().await.unwrap();
    let lag = r#"misql_sync_lag_seconds{sync="orders"}"#;
    wait_for_sample(&http, lag, |seconds| seconds > 0.0, Duration::from_secs(30)).await;
    let code = terminate(&mut daemon, Duration::from_secs(30)).await;
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("SIGTERM: stopping the syncs"), "{log}");
    // No --once run: what the daemon read before SIGTERM is in the table.
    let expected = orders_in_mongo(&coll).await;
    assert_orders_exact(&json_rows(&dir, &synced_sql(&db)), &expected, &format!("SIGTERM\n{log}"));
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
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon = daemon_with(&dir, &file, Some(&log), &["--http", &http]);
    wait_for_phase(&http, "payments", "streaming", Duration::from_secs(60)).await;
    wait_for_phase(&http, "orders", "streaming", Duration::from_secs(60)).await;
    // A total that is no number: the payments sync fails for good (on_error = 'fail').
    let db_handle = client().await.database(&db);
    db_handle
        .collection::<Document>("payments")
        .insert_one(doc! { "_id": "bad", "total": "a lot" })
        .await
        .unwrap();
    wait_for_phase(&http, "payments", "failed", Duration::from_secs(30)).await;
    // The orders sync goes on streaming.
    let mut rng = Rng::new(105);
    let coll = db_handle.collection::<Document>("orders");
    coll.insert_many((0..10).map(|i| order(7_000 + i, &mut rng))).await.unwrap();
    let expected = orders_in_mongo(&coll).await;
    let until = Instant::now() + Duration::from_secs(30);
    while !orders_match(&json_rows(&dir, &synced_sql(&db)), &expected) {
        assert!(Instant::now() < until, "{}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon is still running");
    let (status, body) = get(&http, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let not_ready = body["not_ready"].as_array().unwrap();
    assert_eq!(not_ready.len(), 1, "{body}");
    assert_eq!(not_ready[0]["sync"], "payments", "{body}");
    assert_eq!(not_ready[0]["phase"], "failed", "{body}");
    assert!(not_ready[0]["why"].as_str().unwrap().contains("a lot"), "{body}");
    let code = terminate(&mut daemon, Duration::from_secs(30)).await;
    let log = std::fs::read_to_string(&log).unwrap();
    assert_ne!(code, Some(0), "a sync had failed: the exit status says so\n{log}");
    assert!(log.contains("sync(s) failed: payments"), "{log}");
}

/// Waits until `--http addr` answers (at most 30 s).
pub(crate) async fn wait_for_http(addr: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://{addr}/healthz")).await.is_err() {
        assert!(Instant::now() < until, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET http://addr{path}`: the status code and the body.
pub(crate) async fn get(addr: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}{path}")).await.expect("GET");
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
pub(crate) fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a number"))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_health_and_readiness_over_http_follow_a_workload() {
    let db = unique_db("metrics");
    load(&db, "orders", &orders(120, 106)).await;
    let dir = warehouse("metrics");
    let file = dir.join("syncs.sql");
    std::fs::write(&file, sync_sql(&db)).unwrap();
    let log = dir.join("daemon.log");
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon = daemon_with(&dir, &file, Some(&log), &["--http", &http]);
    wait_for_http(&http).await;
    assert_eq!(get(&http, "/healthz").await.0, 200);
    let metrics = wait_for_phase(&http, "orders", "streaming", Duration::from_secs(60)).await;
    let (status, body) = get(&http, "/readyz").await;
    assert_eq!((status, body.trim()), (200, r#"{"not_ready":[],"ready":true}"#));
    let coll = client().await.database(&db).collection::<Document>("orders");
    let rows = orders_in_mongo(&coll).await.len() as f64;
    let label = r#"{sync="orders"}"#;
    assert_eq!(
        sample(&metrics, &format!("misql_sync_rows_copied_total{label}")),
        Some(rows),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, r#"misql_sync_phase{sync="orders",phase="failed"}"#), Some(0.0));
    assert!(sample(&metrics, "process_resident_memory_bytes").unwrap() > 1e6, "{metrics}");
    let commits_before = sample(&metrics, &format!("misql_sync_commits_total{label}")).unwrap();

    // Under writes the counters move and the table lags; idle, the lag is back to 0. The writer
    // runs on its own, so the scrapes are not in step with the inserts (a batch committed
    // within the gap between an insert and a scrape in step with it would never show a lag).
    let coll = client().await.database(&db).collection::<Document>("orders");
    let writer = tokio::spawn(async move {
        let mut rng = Rng::new(107);
        for i in 0..100 {
            coll.insert_one(order(9_000 + i, &mut rng)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    let mut max_lag: f64 = 0.0;
    while !writer.is_finished() {
        let metrics = get(&http, "/metrics").await.1;
        max_lag = max_lag.max(sample(&metrics, &format!("misql_sync_lag_seconds{label}")).unwrap());
        tokio::time::sleep(Duration::from_millis(17)).await;
    }
    writer.await.unwrap();
    // Every insert applied and the stream idle again (a wait on the state, not a fixed sleep:
    // under load the sync's own maintenance may hold a batch back for a while).
    let events = format!("misql_sync_events_applied_total{label}");
    let lag = format!("misql_sync_lag_seconds{label}");
    let until = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let metrics = get(&http, "/metrics").await.1;
        if sample(&metrics, &events) == Some(100.0) && sample(&metrics, &lag) == Some(0.0) {
            break metrics;
        }
        assert!(Instant::now() < until, "not every insert applied within 60 s: {metrics}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        sample(&metrics, &format!("misql_sync_commits_total{label}")).unwrap() > commits_before
    );
    assert!(max_lag > 0.0, "the lag moved under writes");
    assert_eq!(sample(&metrics, &format!("misql_sync_lag_seconds{label}")), Some(0.0), "{metrics}");
    let age = sample(&metrics, &format!("misql_sync_last_event_age_seconds{label}")).unwrap();
    assert!((0.0..30.0).contains(&age), "{metrics}");
    let count = sample(&metrics, &format!("misql_sync_commit_duration_seconds_count{label}"));
    assert!(count.unwrap() >= 2.0, "{metrics}");
    assert!(sample(&metrics, &format!("misql_sync_key_index_bytes{label}")).unwrap() > 0.0);
    assert_eq!(get(&http, "/nowhere").await.0, 404);
    assert_eq!(terminate(&mut daemon, Duration::from_secs(30)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_sync_commits_and_keeps_the_definition_start_sync_resumes() {
    let db = unique_db("stopstart");
    load(&db, "orders", &orders(300, 108)).await;
    let dir = warehouse("stopstart");
    let sync = sync_sql(&db).replace("max_batch_rows = 200", "max_batch_rows = 40");
    let file = dir.join("syncs.sql");
    std::fs::write(&file, format!("{sync};\nSTOP SYNC orders;\nSTART SYNC orders;")).unwrap();
    let log = dir.join("daemon.log");
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon = daemon_with(&dir, &file, Some(&log), &["--http", &http]);
    // The file stops the sync before its copy can end: streaming means it was started again.
    wait_for_phase(&http, "orders", "streaming", Duration::from_secs(60)).await;
    let coll = client().await.database(&db).collection::<Document>("orders");
    let mut rng = Rng::new(109);
    coll.insert_many((0..15).map(|i| order(8_000 + i, &mut rng))).await.unwrap();
    coll.delete_many(doc! { "priority": 1 }).await.unwrap();
    // The changes reach the table while the daemon runs (a wait with a deadline, not a sleep).
    let expected = orders_in_mongo(&coll).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !orders_match(&json_rows(&dir, &synced_sql(&db)), &expected) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(terminate(&mut daemon, Duration::from_secs(30)).await, Some(0));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("sync orders: stopped, its batch committed"), "{log}");
    assert_orders_exact(&json_rows(&dir, &synced_sql(&db)), &expected, &format!("STOP\n{log}"));

    // In a session: STOP, the status says so, START resumes from the checkpoint.
    let run = crate::support::misql_in(
        &dir,
        &[
            "-e",
            &sync,
            "-e",
            "STOP SYNC orders",
            "-e",
            "SHOW SYNC STATUS orders",
            "-e",
            "STOP SYNC nope",
        ],
    );
    assert!(!run.success);
    assert!(
        run.stderr.contains("sync orders stopped; START SYNC orders resumes it"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("| stopped"), "{}", run.stdout);
    assert!(run.stderr.contains("no sync named nope"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_when_the_active_process_is_killed() {
    let db = unique_db("standby");
    load(&db, "orders", &orders(200, 110)).await;
    let dir = warehouse("standby");
    let file = dir.join("syncs.sql");
    let sync = sync_sql(&db)
        .replace("flush_interval = '1s'", "flush_interval = '500ms', lease_ttl = '5s'");
    std::fs::write(&file, &sync).unwrap();
    let (log_a, log_b) = (dir.join("a.log"), dir.join("b.log"));
    let (http_a, http_b) =
        (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let mut a = daemon_with(&dir, &file, Some(&log_a), &["--http", &http_a]);
    wait_for_phase(&http_a, "orders", "streaming", Duration::from_secs(60)).await;
    let mut b = daemon_with(&dir, &file, Some(&log_b), &["--http", &http_b]);
    wait_for_phase(&http_b, "orders", "standby", Duration::from_secs(30)).await;

    // --once does not run beside the active process: it names the holder.
    let run = crate::support::misql_in(&dir, &["--once", "-f", file.to_str().unwrap()]);
    assert!(!run.success && run.stderr.contains("holds its lease"), "{}", run.stderr);

    let coll = client().await.database(&db).collection::<Document>("orders");
    let mut rng = Rng::new(111);
    let mut next_id = 30_000;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        crate::sync_stream::change(&coll, &mut rng, &mut next_id).await;
    }
    a.kill().unwrap(); // SIGKILL: the lease is not released
    a.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        crate::sync_stream::change(&coll, &mut rng, &mut next_id).await;
    }
    wait_for_phase(&http_b, "orders", "streaming", Duration::from_secs(30)).await;
    let expected = orders_in_mongo(&coll).await;
    let until = Instant::now() + Duration::from_secs(60);
    while !orders_match(&json_rows(&dir, &synced_sql(&db)), &expected) {
        let log = std::fs::read_to_string(&log_b).unwrap();
        assert!(Instant::now() < until, "the standby did not catch up:\n{log}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(terminate(&mut b, Duration::from_secs(30)).await, Some(0));
    let log = std::fs::read_to_string(&log_b).unwrap();
    assert!(log.contains("lease released"), "{log}");
}

/// Sends SIGHUP to `child`.
fn hangup(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_files_starting_stopping_and_replacing_syncs() {
    let db = unique_db("reload");
    load(&db, "orders", &orders(60, 112)).await;
    load(&db, "payments", &orders(20, 113)).await;
    load(&db, "customers", &orders(30, 114)).await;
    let dir = warehouse("reload");
    let simple = |name: &str, extra: &str| {
        format!(
            "CREATE SYNC {name} FROM mongo.{db}.{name} INTO iceberg.{db}.{name} \
             SELECT _id, status {extra} WITH (flush_interval = '500ms')"
        )
    };
    let file = dir.join("syncs.sql");
    let write = |statements: &[String]| std::fs::write(&file, statements.join(";\n")).unwrap();
    write(&[simple("orders", ""), simple("payments", "")]);
    let log = dir.join("daemon.log");
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon = daemon_with(&dir, &file, Some(&log), &["--http", &http]);
    wait_for_phase(&http, "payments", "streaming", Duration::from_secs(60)).await;
    wait_for_phase(&http, "orders", "streaming", Duration::from_secs(60)).await;

    write(&[simple("orders", ""), simple("customers", "")]);
    hangup(&daemon);
    wait_for_log(&log, "reload done", Duration::from_secs(60)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("reload: sync orders is unchanged"), "{text}");
    assert!(text.contains("reload: sync customers is new: started"), "{text}");
    assert!(text.contains("reload: sync payments is no longer in the files: stopped"), "{text}");
    wait_for_phase(&http, "customers", "streaming", Duration::from_secs(60)).await;

    // A changed definition without OR REPLACE is refused; with it, the sync is replaced.
    write(&[simple("orders", "WHERE status <> 'test'"), simple("customers", "")]);
    hangup(&daemon);
    wait_for_log(&log, "does not say OR REPLACE", Duration::from_secs(60)).await;
    let replaced =
        simple("orders", "WHERE status <> 'test'").replace("CREATE SYNC", "CREATE OR REPLACE SYNC");
    write(&[replaced, simple("customers", "")]);
    hangup(&daemon);
    wait_for_log(&log, "reload: sync orders changed: replaced", Duration::from_secs(60)).await;

    // The running syncs keep streaming.
    let coll = client().await.database(&db).collection::<Document>("customers");
    coll.insert_one(doc! { "_id": "late", "status": "new" }).await.unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let query = format!("SELECT _id FROM iceberg.{db}.customers WHERE _id = 'late'");
    while json_rows(&dir, &query).is_empty() {
        assert!(Instant::now() < until, "{}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let expected = json_rows(
        &dir,
        &format!("SELECT count(*) AS n FROM mongo.{db}.orders WHERE status <> 'test'"),
    );
    let until = Instant::now() + Duration::from_secs(30);
    while json_rows(&dir, &format!("SELECT count(*) AS n FROM iceberg.{db}.orders")) != expected {
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(
            Instant::now() < until,
            "the replaced sync did not copy its new definition:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(terminate(&mut daemon, Duration::from_secs(30)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_name_the_sync_and_no_secret_reaches_logs_status_or_metrics() {
    let db = unique_db("jsonlogs");
    load(&db, "orders", &orders(40, 115)).await;
    let dir = warehouse("jsonlogs");
    let weed = crate::support::seaweed::seaweed();
    let mongo_password = "Pw0rd-in-the-uri";
    let file = dir.join("syncs.sql");
    let sync = sync_sql(&db).replace(&format!("INTO iceberg.{db}"), &format!("INTO lake.{db}"));
    let bad = format!(
        "ATTACH 'mongodb://app:{mongo_password}@127.0.0.1:1/?serverSelectionTimeoutMS=500' AS other (TYPE mongodb)"
    );
    std::fs::write(&file, format!("{};\n{bad};\n{sync};", weed.attach_sql("lake"))).unwrap();
    let log = dir.join("daemon.log");
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon =
        daemon_with(&dir, &file, Some(&log), &["--http", &http, "--log-format", "json"]);
    wait_for_http(&http).await;
    wait_for_log(&log, "snapshot complete", Duration::from_secs(60)).await;
    let metrics = get(&http, "/metrics").await.1;
    let status = crate::support::misql_in(
        &dir,
        &["-e", &weed.attach_sql("lake"), "-e", &bad, "-e", "SHOW DATABASES FROM other"],
    );
    assert!(!status.success, "the server at port 1 is unreachable");
    assert_eq!(terminate(&mut daemon, Duration::from_secs(30)).await, Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "{text}");
    let copied = lines
        .iter()
        .find(|l| l["message"].as_str().is_some_and(|m| m.contains("snapshot complete")));
    assert_eq!(copied.unwrap()["span"]["sync"], "orders", "{text}");
    for (what, secret) in
        [("the MongoDB password", mongo_password), ("the REST secret", weed.secret_key.as_str())]
    {
        for (place, haystack) in [
            ("the log", &text),
            ("/metrics", &metrics),
            ("stdout", &status.stdout),
            ("errors", &status.stderr),
        ] {
            assert!(!haystack.contains(secret), "{what} appears in {place}:\n{haystack}");
        }
    }
    assert!(status.stderr.contains("app:***@"), "{}", status.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_syncs_in_one_daemon_all_progress() {
    let db = unique_db("many");
    load(&db, "big", &orders(3000, 116)).await;
    for i in 0..19 {
        load(&db, &format!("c{i}"), &orders(20, 117 + i)).await;
    }
    let dir = warehouse("many");
    let sync = |coll: &str| {
        format!(
            "CREATE SYNC s_{coll} FROM mongo.{db}.{coll} INTO iceberg.{db}.{coll} \
             SELECT _id, status, total::DECIMAL(18,2) AS total WITH (flush_interval = '500ms', max_batch_rows = 500)"
        )
    };
    let mut statements = vec![sync("big")];
    statements.extend((0..19).map(|i| sync(&format!("c{i}"))));
    let file = dir.join("syncs.sql");
    std::fs::write(&file, statements.join(";\n")).unwrap();
    let log = dir.join("daemon.log");
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon = daemon_with(&dir, &file, Some(&log), &["--http", &http]);
    wait_for_http(&http).await;
    let client = client().await;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = get(&http, "/metrics").await.1;
        let streaming = metrics
            .lines()
            .filter(|l| l.starts_with("misql_sync_phase{") && l.contains("phase=\"streaming\"} 1"))
            .count();
        if streaming == 20 {
            break;
        }
        assert!(Instant::now() < until, "{streaming} of 20 syncs streaming:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A change in every collection reaches every table.
    for i in 0..19 {
        let coll = client.database(&db).collection::<Document>(&format!("c{i}"));
        coll.insert_one(doc! { "_id": format!("new{i}"), "status": "new", "total": 1 })
            .await
            .unwrap();
    }
    let until = Instant::now() + Duration::from_secs(60);
    for i in 0..19 {
        let query = format!("SELECT _id FROM iceberg.{db}.c{i} WHERE _id = 'new{i}'");
        while json_rows(&dir, &query).is_empty() {
            assert!(Instant::now() < until, "c{i} did not get its change");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let metrics = get(&http, "/metrics").await.1;
    let rss = sample(&metrics, "process_resident_memory_bytes").unwrap();
    assert!(rss < 1.5e9, "resident memory {rss} bytes for 20 small syncs");
    let big = json_rows(&dir, &format!("SELECT count(*) AS n FROM iceberg.{db}.big"));
    assert_eq!(big[0]["n"], 3000);
    assert_eq!(terminate(&mut daemon, Duration::from_secs(30)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_the_files_still_run_stops_at_once() {
    let dir = warehouse("early_sigterm");
    let file = dir.join("syncs.sql");
    // A deployment that never answers: the statement waits for it for 30 s.
    std::fs::write(
        &file,
        "ATTACH 'mongodb://10.255.255.1:27017/?serverSelectionTimeoutMS=30000' AS far (TYPE mongodb);\n\
         SHOW DATABASES FROM far;",
    )
    .unwrap();
    let log = dir.join("daemon.log");
    let mut daemon = daemon_logged(&dir, &file, Some(&log));
    // Time to reach the statement (nothing tells that it has: it only waits for the server).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let code = terminate(&mut daemon, Duration::from_secs(10)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(text.contains("SIGTERM while running the statements: stopping"), "{text}");
}
