//! Copy and follow at once: a new sync follows the change stream from its first second and
//! copies the collection beside it. Writes made during the copy reach the table before the copy
//! ends; kills at any point lose and double nothing; a copy longer than the server's change
//! history never makes the sync start over. The expected side of every comparison is read from
//! MongoDB through the driver, the table through pyiceberg.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use futures::TryStreamExt;
use mongodb::Collection;
use serde_json::Value;

use crate::support::data::Rng;
use crate::support::pyiceberg::{PyCatalog, pyiceberg_rows};
use crate::support::server::start_private;
use crate::support::slow_link::SlowLink;
use crate::support::{Daemon, client, daemon_appending, unique_db, warehouse};

/// `_id → (n, note)` as MongoDB has it, through the driver.
async fn in_mongo(coll: &Collection<Document>) -> BTreeMap<i64, (i64, String)> {
    let docs: Vec<Document> = coll.find(doc! {}).await.unwrap().try_collect().await.unwrap();
    docs.iter()
        .map(|d| {
            let id = d.get_i64("_id").expect("an int64 _id");
            (id, (d.get_i64("n").unwrap(), d.get_str("note").unwrap().to_string()))
        })
        .collect()
}

/// `_id → (n, note)` as pyiceberg reads the table; panics on a key held twice.
fn in_table(dir: &Path, table: &str) -> BTreeMap<i64, (i64, String)> {
    let rows = pyiceberg_rows(&PyCatalog::sql(dir), table, "_id");
    let mut map = BTreeMap::new();
    for row in &rows {
        let id = row["_id"].as_i64().expect("_id");
        let value = (row["n"].as_i64().expect("n"), row["note"].as_str().unwrap().to_string());
        assert!(map.insert(id, value).is_none(), "key {id} is in the table twice");
    }
    map
}

/// The summary of the table's current snapshot, from its newest complete metadata file.
fn current_summary(dir: &Path, db: &str, table: &str) -> Option<Value> {
    let metadata = dir.join(db).join(table).join("metadata");
    let mut files: Vec<_> = std::fs::read_dir(metadata)
        .ok()?
        .map(|f| f.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".metadata.json"))
        .collect();
    files.sort();
    let json = files
        .iter()
        .rev()
        .find_map(|file| serde_json::from_slice::<Value>(&std::fs::read(file).ok()?).ok())?;
    let current = json["current-snapshot-id"].clone();
    let snapshots = json["snapshots"].as_array()?;
    snapshots.iter().find(|s| s["snapshot-id"] == current).map(|s| s["summary"].clone())
}

/// The phase of the table's checkpoint: `snapshot` while copying, `streaming` after.
fn phase(dir: &Path, db: &str, table: &str) -> Option<String> {
    current_summary(dir, db, table)?["misql.phase"].as_str().map(str::to_string)
}

/// The test server's address.
fn server_addr() -> std::net::SocketAddr {
    let uri = &crate::support::server::server().uri;
    let port = uri.split(':').nth(2).unwrap().split('/').next().unwrap().parse::<u16>().unwrap();
    ([127, 0, 0, 1], port).into()
}

/// A database with `items(n)`, a warehouse, and a file with the sync `name` of its items
/// (`SELECT _id, n, note WITH (with)`).
async fn setup(
    prefix: &str,
    n: i64,
    name: &str,
    with: &str,
) -> (String, Collection<Document>, std::path::PathBuf, std::path::PathBuf) {
    let db = unique_db(prefix);
    let coll = client().await.database(&db).collection::<Document>("items");
    coll.insert_many(items(n)).await.unwrap();
    let dir = warehouse(prefix);
    let file = dir.join("sync.sql");
    let sql = format!(
        "CREATE SYNC {name} FROM mongo.{db}.items INTO iceberg.{db}.items SELECT _id, n, note \
         WITH ({with});"
    );
    std::fs::write(&file, sql).unwrap();
    (db, coll, dir, file)
}

fn items(n: i64) -> Vec<Document> {
    (0..n).map(|i| doc! { "_id": i, "n": 0i64, "note": "orig" }).collect()
}

/// Writes until `stop`: updates of keys anywhere in `0..keys` (copied, being copied or not
/// copied yet), inserts of new keys from 100000, deletes of keys not inserted by it; returns
/// how many writes it made. `pause` between writes.
async fn write_until(
    coll: Collection<Document>,
    keys: i64,
    stop: Arc<AtomicBool>,
    pause: Duration,
) -> u64 {
    let mut rng = Rng::new(7);
    let mut written = 0u64;
    let mut next_new = 100_000i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let id = rng.below(keys as u64) as i64;
        match rng.below(10) {
            0..=5 => {
                let update = doc! { "$inc": { "n": 1i64 }, "$set": { "note": "updated" } };
                coll.update_one(doc! { "_id": id }, update).await.unwrap();
            }
            6..=7 => {
                coll.insert_one(doc! { "_id": next_new, "n": 1i64, "note": "late" }).await.unwrap();
                next_new += 1;
            }
            _ => {
                coll.delete_one(doc! { "_id": id }).await.unwrap();
            }
        }
        written += 1;
        tokio::time::sleep(pause).await;
    }
    written
}

fn start(dir: &Path, file: &Path, uri: &str) -> Daemon {
    start_at(dir, file, uri, &[])
}

/// [`start`] against the test server, with more arguments.
fn start_with(dir: &Path, file: &Path, args: &[&str]) -> Daemon {
    start_at(dir, file, &crate::support::server::server().uri, args)
}

fn start_at(dir: &Path, file: &Path, uri: &str, args: &[&str]) -> Daemon {
    daemon_appending(dir, file, uri, args)
}

/// Waits until the table holds exactly what MongoDB holds (or fails after `limit`).
async fn wait_until_equal(dir: &Path, table: &str, coll: &Collection<Document>, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let expected = in_mongo(coll).await;
        let actual = in_table(dir, table);
        if actual == expected {
            return;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = expected.keys().filter(|k| !actual.contains_key(k)).collect();
            let extra: Vec<_> = actual.keys().filter(|k| !expected.contains_key(k)).collect();
            let differ: Vec<_> = expected
                .iter()
                .filter_map(|(k, v)| actual.get(k).filter(|a| *a != v).map(|a| (k, v, a)))
                .collect();
            panic!(
                "the table differs from the collection: {} missing (e.g. {:?}), {} extra (e.g. \
                 {:?}), {} different (e.g. {:?}: expected, in the table)\n{}",
                missing.len(),
                missing.first(),
                extra.len(),
                extra.first(),
                differ.len(),
                differ.first(),
                std::fs::read_to_string(dir.join("misql.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_during_the_copy_are_visible_before_it_ends_and_kills_lose_nothing() {
    let (db, coll, dir, file) =
        setup("copyfollow", 6000, "c", "snapshot_parallelism = 3, flush_interval = '300ms'").await;
    let stop = Arc::new(AtomicBool::new(false));
    let pause = Duration::from_millis(40);
    let writer = tokio::spawn(write_until(coll.clone(), 6000, stop.clone(), pause));
    // misql reads through a slow link (15 KB/s a connection), so the copy outlasts the kills.
    let link = SlowLink::start(server_addr(), 15_000);
    let uri = link.mongodb_uri();
    let table = format!("{db}.items");

    // Killed a few times while copying, each time a few commits after it started.
    let mut rng = Rng::new(11);
    let mut kills = 0;
    let mut seen_while_copying = false;
    let metadata = dir.join(&db).join("items").join("metadata");
    let commits = || std::fs::read_dir(&metadata).map_or(0, |d| d.count());
    let deadline = Instant::now() + Duration::from_secs(90);
    while kills < 4 && Instant::now() < deadline {
        let mut daemon = start(&dir, &file, &uri);
        let target = commits() + 2 + rng.below(6) as usize;
        while commits() < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A row written after the sync began, read while the checkpoint still says copying
        // (before and after the read: the phase moves to streaming only once).
        if !seen_while_copying && phase(&dir, &db, "items").as_deref() == Some("snapshot") {
            let late = in_table(&dir, &table).values().any(|(_, note)| note != "orig");
            seen_while_copying = late && phase(&dir, &db, "items").as_deref() == Some("snapshot");
        }
        if phase(&dir, &db, "items").as_deref() != Some("snapshot") {
            break; // the copy is complete
        }
        tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
        daemon.kill().expect("SIGKILL");
        daemon.wait().unwrap();
        kills += 1;
    }
    let _daemon = start(&dir, &file, &uri);
    let deadline = Instant::now() + Duration::from_secs(90);
    while phase(&dir, &db, "items").as_deref() != Some("streaming") {
        assert!(Instant::now() < deadline, "the copy did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    wait_until_equal(&dir, &table, &coll, Duration::from_secs(60)).await;
    assert!(kills >= 2, "killed only {kills} times while copying; the test proves little");
    assert!(written >= 100, "only {written} writes during the copy");
    assert!(seen_while_copying, "no write made during the copy was visible before it ended");
    let log = std::fs::read_to_string(dir.join("misql.log")).unwrap();
    assert!(!log.contains("copying the collection again"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_longer_than_the_change_history_reaches_streaming_without_copying_again() {
    // The server keeps 2 s of change history (pruned every 1,000 writes); misql reads it over
    // a slow link, so the copy takes far longer than that while the application writes.
    let private = start_private(&["--oplog-retention-seconds", "2"]);
    let port: u16 =
        private.uri.split(':').nth(2).unwrap().split('/').next().unwrap().parse().unwrap();
    let link = SlowLink::start(([127, 0, 0, 1], port).into(), 40_000);
    let db = unique_db("history");
    let app = mongodb::Client::with_uri_str(&private.uri).await.unwrap();
    let coll = app.database(&db).collection::<Document>("items");
    coll.insert_many(items(20_000)).await.unwrap();
    // Where a stream opened as the sync starts would resume.
    let mut before = coll.watch().await.unwrap();
    if before.resume_token().is_none() {
        before.next_if_any().await.unwrap();
    }
    let started = before.resume_token().expect("a resume token");
    drop(before);
    let dir = warehouse("history");
    let file = dir.join("sync.sql");
    std::fs::write(
        &file,
        format!(
            "CREATE SYNC h FROM mongo.{db}.items INTO iceberg.{db}.items SELECT _id, n, note \
             WITH (max_batch_rows = 500, flush_interval = '1s');"
        ),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let pause = Duration::from_millis(10);
    let writer = tokio::spawn(write_until(coll.clone(), 20_000, stop.clone(), pause));
    let _daemon = start(&dir, &file, &link.mongodb_uri());
    let deadline = Instant::now() + Duration::from_secs(120);
    while phase(&dir, &db, "items").as_deref() != Some("streaming") {
        assert!(
            Instant::now() < deadline,
            "the copy did not complete: {}",
            std::fs::read_to_string(dir.join("misql.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    // The history of the copy's first seconds is gone: a stream from then cannot be opened.
    let lost = coll.watch().resume_after(started).await;
    let lost = match lost {
        Ok(mut stream) => stream.next_if_any().await.err(),
        Err(err) => Some(err),
    };
    assert!(
        lost.as_ref().is_some_and(|e| e.to_string().contains("286")),
        "the server still has the history of the copy's start ({written} writes): {lost:?}"
    );
    let table = format!("{db}.items");
    wait_until_equal(&dir, &table, &coll, Duration::from_secs(60)).await;
    let log = std::fs::read_to_string(dir.join("misql.log")).unwrap();
    assert!(!log.contains("copying the collection again"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_over_http_repairs_rows_another_writer_removed_and_needs_the_token() {
    let (db, coll, dir, file) = setup("refresh", 300, "r", "flush_interval = '500ms'").await;
    let port = crate::support::server::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut daemon = start_with(&dir, &file, &["--http", &addr, "--http-token", "s3cret"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while phase(&dir, &db, "items").as_deref() != Some("streaming") {
        assert!(Instant::now() < deadline, "the copy did not complete");
        assert!(daemon.try_wait().unwrap().is_none(), "misql exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let table = format!("{db}.items");
    wait_until_equal(&dir, &table, &coll, Duration::from_secs(30)).await;
    crate::support::pyiceberg::pyiceberg_delete(&PyCatalog::sql(&dir), &table, "_id < 50");
    assert_eq!(in_table(&dir, &table).len(), 250, "the other writer removed 50 rows");

    let http = reqwest::Client::new();
    let url = format!("http://{addr}/syncs/r/refresh");
    let refused = http.post(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401, "control without the token");
    let wrong = http.post(&url).bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong.status(), 401, "control with a wrong token");
    let unknown = http.post(format!("http://{addr}/syncs/nope/refresh")).bearer_auth("s3cret");
    let unknown = unknown.send().await.unwrap();
    assert_eq!(unknown.status(), 409);
    assert!(unknown.text().await.unwrap().contains("nope"));
    let refreshed = http.post(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(refreshed.status(), 200, "{:?}", refreshed.text().await);
    wait_until_equal(&dir, &table, &coll, Duration::from_secs(60)).await;
    let metrics = http.get(format!("http://{addr}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("misql_sync_history_margin_seconds"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_finds_what_differs_and_raises_no_false_alarm_under_writes() {
    let (db, coll, dir, file) =
        setup("check", 2000, "k", "flush_interval = '500ms', snapshot_parallelism = 2").await;
    let file_arg = file.to_str().unwrap();
    let once = crate::support::misql_in(&dir, &["--once", "-f", file_arg]);
    assert!(once.success, "{}", once.stderr);
    let check = || crate::support::misql_in(&dir, &["--check", "-f", file_arg, "--format", "csv"]);
    let equal = check();
    assert!(equal.success, "a fresh copy differs: {}{}", equal.stdout, equal.stderr);
    assert!(
        equal.stdout.starts_with("sync,range,missing,extra,different,example"),
        "{}",
        equal.stdout
    );

    // Changed while no sync runs: 3 updated, 2 deleted, 1 inserted.
    for id in [10i64, 11, 12] {
        coll.update_one(doc! { "_id": id }, doc! { "$set": { "note": "changed" } }).await.unwrap();
    }
    coll.delete_many(doc! { "_id": { "$in": [20i64, 21] } }).await.unwrap();
    coll.insert_one(doc! { "_id": 5000i64, "n": 0i64, "note": "new" }).await.unwrap();
    let differs = check();
    assert!(!differs.success, "differences went unnoticed: {}", differs.stdout);
    let rows = crate::support::csv_rows(&differs.stdout);
    let total = |column: usize| -> u64 {
        rows[1..].iter().map(|r| r[column].parse::<u64>().unwrap()).sum()
    };
    assert_eq!((total(2), total(3), total(4)), (1, 2, 3), "{}", differs.stdout);
    assert!(differs.stdout.contains("missing: 5000"), "{}", differs.stdout);
    assert!(differs.stderr.contains("differs from its collection"), "{}", differs.stderr);
    let named = crate::support::misql_in(&dir, &["--check", "-f", file_arg, "nope"]);
    assert!(!named.success && named.stderr.contains("no CREATE SYNC nope"), "{}", named.stderr);

    // The sync catches up while the application writes: no false alarm.
    let _daemon = start(&dir, &file, &crate::support::server::server().uri);
    wait_until_equal(&dir, &format!("{db}.items"), &coll, Duration::from_secs(60)).await;
    let stop = Arc::new(AtomicBool::new(false));
    // A write every 25 ms: a check takes about a second on an idle machine, and the test means
    // something only with writes during it (asserted below).
    let writer =
        tokio::spawn(write_until(coll.clone(), 2000, stop.clone(), Duration::from_millis(25)));
    let busy = check();
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(busy.success, "a false alarm under {written} writes: {}{}", busy.stdout, busy.stderr);
    assert!(written >= 10, "only {written} writes during the check");
}
