//! Catalog and object-store faults while syncing into a REST catalog: misql reaches the REST
//! catalog (SeaweedFS's, and rustberg: each test runs on both), or the S3 endpoint, through a
//! fault-injecting proxy ([`crate::support::fault_proxy`]) that answers commits with a 5xx after
//! the catalog applied them, refuses them with 503, drops or delays the answer, or cuts uploads
//! off. Whatever is
//! injected, the table ends equal to the collection, holds no key twice, every file it
//! references exists, pyiceberg reads it in full, and misql's log tells what it met.
//!
//! The first tests check the proxy itself against a tiny upstream.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::Document;
use mongodb::Collection;
use serde_json::Value;

use crate::support::data::{Rng, load, orders};
use crate::support::duckdb::duckdb_rows;
use crate::support::fault_proxy::{Fault, FaultProxy, Plan, Route};
use crate::support::oracle::{OrderRow, assert_orders_exact, orders_in_mongo, orders_match};
use crate::support::pyiceberg::{pyiceberg_files, pyiceberg_rows};
use crate::support::rest_catalog::{RestCatalog, on_each_rest_catalog};
use crate::support::{Run, client, daemon_with, misql_in, unique_db, warehouse};
use crate::sync_stream::{SELECT, change};

/// The ATTACH option bounding one request to the REST catalog (Iceberg Java's HTTP client
/// property), well below [`DELAY`]: misql must give up on a delayed commit and settle it.
pub(crate) const REST_TIMEOUT_OPTION: &str = ", rest.client.socket-timeout-ms '2000'";
/// How long a delayed commit answer is held back.
pub(crate) const DELAY: Duration = Duration::from_secs(6);
/// Each REST commit fault is injected this many times per test.
const REST_FAULTS: usize = 3;
/// Each S3 upload fault is injected this many times per test.
const S3_FAULTS: usize = 3;
/// Changes made while a daemon runs, at least.
const MIN_CHANGES: usize = 30;
/// Longest time for the workload of one test.
const WORKLOAD_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for the table to catch up with the collection.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(40);

// ---------------------------------------------------------------------------------------------
// The proxy itself
// ---------------------------------------------------------------------------------------------

/// A tiny keep-alive HTTP/1.1 upstream: answers each request `<METHOD> <path> <body bytes>`
/// (chunked when the path ends in `/chunked`) and records it; serves at most 32 connections.
struct Echo {
    uri: String,
    /// `(connection number, "<METHOD> <path> <body bytes>")` for each request received.
    seen: Arc<Mutex<Vec<(usize, String)>>>,
}

impl Echo {
    fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().take(32).enumerate() {
                let record = record.clone();
                std::thread::spawn(move || echo_connection(n, stream.unwrap(), &record));
            }
        });
        Self { uri, seen }
    }

    fn seen(&self) -> Vec<(usize, String)> {
        self.seen.lock().unwrap().clone()
    }

    fn saw(&self, line: &str) -> bool {
        self.seen().iter().any(|(_, l)| l == line)
    }
}

fn echo_connection(n: usize, stream: TcpStream, seen: &Mutex<Vec<(usize, String)>>) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some((start, headers)) = read_head(&mut reader) {
        let body = read_body(&mut reader, &headers);
        let mut words = start.split(' ');
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let line = format!("{method} {path} {}", body.len());
        seen.lock().unwrap().push((n, line.clone()));
        let answer = if path.ends_with("/chunked") {
            let (a, b) = line.split_at(line.len() / 2);
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            )
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{line}", line.len())
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A start line and lower-cased headers, `None` at the end of the stream.
fn read_head(reader: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut start = String::new();
    if reader.read_line(&mut start).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            return Some((start.trim_end().to_string(), headers));
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// A body framed by Content-Length or chunked encoding (or none).
fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> Vec<u8> {
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                return body; // no trailers in these tests
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let length = header("content-length").map_or(0, |v| v.parse().unwrap());
    body.resize(length, 0);
    reader.read_exact(&mut body).unwrap();
    body
}

/// Sends `request` on `stream` and reads one answer: status and body.
fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> (u16, String) {
    stream.get_mut().write_all(request).unwrap();
    read_answer(stream)
}

fn read_answer(stream: &mut BufReader<TcpStream>) -> (u16, String) {
    let (start, headers) = read_head(stream).expect("an answer");
    let status = start.split(' ').nth(1).unwrap().parse().unwrap();
    (status, String::from_utf8(read_body(stream, &headers)).unwrap())
}

#[test]
fn the_proxy_passes_keep_alive_requests_with_length_chunked_and_expect_bodies_unchanged() {
    let echo = Echo::start();
    let proxy = FaultProxy::start(&echo.uri);
    let tcp = TcpStream::connect(proxy.uri().trim_start_matches("http://")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut conn = BufReader::new(tcp);
    let host = "Host: test\r\n";

    let get = format!("GET /a?x=1 HTTP/1.1\r\n{host}\r\n");
    assert_eq!(exchange(&mut conn, get.as_bytes()), (200, "GET /a?x=1 0".into()));

    let big = vec![b'x'; 300_000];
    let mut put = format!("PUT /b HTTP/1.1\r\n{host}Content-Length: {}\r\n\r\n", big.len());
    put.push_str(std::str::from_utf8(&big).unwrap());
    assert_eq!(exchange(&mut conn, put.as_bytes()), (200, "PUT /b 300000".into()));

    let chunk = "y".repeat(70_000);
    let post = format!(
        "POST /c HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{chunk}\r\n\
         {:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    assert_eq!(exchange(&mut conn, post.as_bytes()), (200, "POST /c 140000".into()));

    let expect =
        format!("PUT /d HTTP/1.1\r\n{host}Expect: 100-continue\r\nContent-Length: 10\r\n\r\n");
    conn.get_mut().write_all(expect.as_bytes()).unwrap();
    let mut interim = String::new();
    conn.read_line(&mut interim).unwrap();
    assert_eq!(interim.trim_end(), "HTTP/1.1 100 Continue");
    conn.read_line(&mut interim).unwrap();
    assert_eq!(exchange(&mut conn, b"0123456789"), (200, "PUT /d 10".into()));

    let chunked = format!("GET /e/chunked HTTP/1.1\r\n{host}\r\n");
    assert_eq!(exchange(&mut conn, chunked.as_bytes()), (200, "GET /e/chunked 0".into()));

    let seen = echo.seen();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.iter().all(|(n, _)| *n == seen[0].0), "one upstream connection: {seen:?}");
    assert_eq!(proxy.requests(), 5);
    assert!(proxy.injected().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn each_planned_fault_reaches_the_client_as_planned_and_is_counted() {
    let echo = Echo::start();
    let proxy = FaultProxy::start(&echo.uri);
    let route = |path: &'static str, method: &str| Route::new(path, method, move |p| p == path);
    proxy.plan(Plan::on(route("/status", "POST")).inject(Fault::StatusAfter(502), 1));
    proxy.plan(Plan::on(route("/unavailable", "POST")).inject(Fault::UnavailableBefore, 1));
    proxy.plan(Plan::on(route("/slow", "PUT")).inject(Fault::SlowDownBefore, 1));
    proxy.plan(Plan::on(route("/drop", "POST")).inject(Fault::DropAfter, 1));
    proxy.plan(Plan::on(route("/delay", "POST")).inject(Fault::DelayAfter(DELAY), 1));
    proxy.plan(Plan::on(route("/cut", "PUT")).inject(Fault::CutUpload(1000), 1));
    proxy.plan(Plan::on(route("/every", "GET")).every(3).inject(Fault::StatusAfter(500), 2));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let url = |path: &str| format!("{}{path}", proxy.uri());

    let answer = http.post(url("/status")).body("{}").send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 502);
    assert!(echo.saw("POST /status 2"), "a 502 after forwarding reached the upstream");

    let answer = http.post(url("/unavailable")).body("{}").send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    assert!(!echo.saw("POST /unavailable 2"), "a 503 before forwarding did not");

    let answer = http.put(url("/slow")).body("data").send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    assert!(answer.text().await.unwrap().contains("<Code>SlowDown</Code>"));
    assert!(!echo.saw("PUT /slow 4"));

    let dropped = http.post(url("/drop")).body("{}").send().await;
    assert!(dropped.is_err(), "a dropped connection is an error: {dropped:?}");
    assert!(echo.saw("POST /drop 2"));

    let delayed = http.post(url("/delay")).body("{}").send().await;
    assert!(delayed.as_ref().is_err_and(|e| e.is_timeout()), "{delayed:?}");
    assert!(echo.saw("POST /delay 2"));

    let cut = http.put(url("/cut")).body(vec![b'z'; 100_000]).send().await;
    assert!(cut.is_err(), "a cut upload is an error: {cut:?}");
    assert!(!echo.seen().iter().any(|(_, l)| l.starts_with("PUT /cut")));

    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(http.get(url("/every")).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 500, 200, 200, 500], "every 3rd request, twice");

    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.abandoned() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.abandoned(), 1, "the delayed client's timeout was noticed");
    assert_eq!(proxy.pending(), 0);
    let kinds = ["502 after", "503 before", "503 SlowDown before", "drop after", "delay after"];
    for kind in kinds.into_iter().chain(["cut upload"]) {
        assert_eq!(proxy.injected().get(kind), Some(&1), "{kind}: {:?}", proxy.injected());
    }
    assert_eq!(proxy.injected_of(&Fault::StatusAfter(500)), 2);
}

// ---------------------------------------------------------------------------------------------
// Scenarios: a collection, a lake reached through proxies, and the checks
// ---------------------------------------------------------------------------------------------

/// A collection and the lake it is synced into: `via_proxy` is the ATTACH the sync uses (through
/// the proxies), `direct` the one the checks read through (straight to the catalog and S3).
pub(crate) struct Scenario {
    db: String,
    pub(crate) dir: PathBuf,
    catalog: RestCatalog,
    via_proxy: String,
    direct: String,
}

impl Scenario {
    /// Loads `docs` orders into a fresh database; the sync reaches `catalog` at `rest` and S3
    /// at `s3` (the catalog's own addresses, or proxies in front of them), with `extra` ATTACH
    /// options.
    pub(crate) async fn new(
        catalog: RestCatalog,
        name: &str,
        docs: u64,
        rest: &str,
        s3: &str,
        extra: &str,
    ) -> Self {
        let db = unique_db(name);
        load(&db, "orders", &orders(docs, 1 + docs)).await;
        Self {
            dir: warehouse(name),
            via_proxy: catalog.attach_sql_via("lake", rest, s3, extra),
            direct: catalog.attach_sql("lake"),
            catalog,
            db,
        }
    }

    /// The ATTACH through the proxies and the CREATE SYNC, committing every `batch` rows (or
    /// every 250 ms) — in a catch-up too, where updated documents are read as they are now and
    /// no consistent point comes until the stream has caught up (`max_transaction_rows = 1`: a
    /// batch does not wait for one).
    pub(crate) fn sync_script(&self, batch: usize) -> String {
        self.sync_script_with(&format!(
            "flush_interval = '250ms', max_batch_rows = {batch}, max_transaction_rows = 1"
        ))
    }

    /// The sync of the scenario's collection, with the options `with`.
    pub(crate) fn sync_script_with(&self, with: &str) -> String {
        format!(
            "{};\nCREATE SYNC orders FROM mongo.{db}.orders INTO lake.{db}.orders SELECT {SELECT} \
             WHERE status <> 'test' PARTITION BY day(created_at) WITH ({with});\n",
            self.via_proxy,
            db = self.db
        )
    }

    pub(crate) async fn collection(&self) -> Collection<Document> {
        client().await.database(&self.db).collection("orders")
    }

    /// The sync's projection of the collection, read through the driver, in key order.
    async fn expected(&self) -> Vec<OrderRow> {
        orders_in_mongo(&self.collection().await).await
    }

    /// The table read by misql straight from the catalog; `None` while it cannot be read.
    fn synced(&self) -> Option<Vec<Value>> {
        let sql = format!("{}; SELECT * FROM lake.{}.orders ORDER BY _id", self.direct, self.db);
        let run = misql_in(&self.dir, &["--format", "json", "-e", &sql]);
        run.success.then(|| run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
    }

    pub(crate) async fn in_sync(&self) -> bool {
        let expected = self.expected().await;
        self.synced().is_some_and(|rows| orders_match(&rows, &expected))
    }

    /// The table equals the collection (as the driver reads it), holds no key twice, pyiceberg
    /// reads the same keys and customers, DuckDB the same rows as pyiceberg, and every file the
    /// table references exists.
    pub(crate) async fn assert_exact(&self, after: &str) {
        let expected = self.expected().await;
        let synced = self.synced().unwrap_or_else(|| panic!("the table is unreadable {after}"));
        assert_orders_exact(&synced, &expected, after);
        let catalog = self.catalog.py();
        let table = format!("{}.orders", self.db);
        let py = pyiceberg_rows(&catalog, &table, "_id");
        let ids: Vec<Option<&str>> = py.iter().map(|r| r["_id"].as_str()).collect();
        let expected_ids: Vec<Option<&str>> = expected.iter().map(|r| Some(&*r.id)).collect();
        assert_eq!(ids, expected_ids, "pyiceberg's keys {after}");
        let customers: Vec<Option<&str>> = py.iter().map(|r| r["customer"].as_str()).collect();
        let expected_customers: Vec<_> = expected.iter().map(|r| r.customer.as_deref()).collect();
        assert_eq!(customers, expected_customers, "pyiceberg {after}");
        let duck = duckdb_rows(&catalog, &table, "_id");
        assert_eq!(duck, py, "DuckDB reads what pyiceberg reads {after}");
        let files = pyiceberg_files(&catalog, &table);
        let missing: Vec<&Value> = files.iter().filter(|f| f["exists"] != true).collect();
        assert!(missing.is_empty(), "the table references missing files {after}: {missing:?}");
        assert!(files.iter().any(|f| f["kind"] == "data"), "{files:?}");
    }

    /// `misql --once` running `script` then `also`, in this scenario's directory.
    fn once(&self, script: &str, also: &[&str]) -> Run {
        let mut args = vec!["--once", "--format", "json", "-e", script];
        for statement in also {
            args.extend(["-e", statement]);
        }
        misql_in(&self.dir, &args)
    }
}

/// `n` random changes (inserts, updates, replaces, deletes).
async fn changes(coll: &Collection<Document>, n: usize, rng: &mut Rng, next_id: &mut u64) {
    for _ in 0..n {
        change(coll, rng, next_id).await;
    }
}

/// A misql daemon with its log in a file, killed when the test ends however it ends.
pub(crate) struct Daemon {
    child: crate::support::Daemon,
    log: PathBuf,
}

impl Daemon {
    /// `misql -f <dir>/syncs.sql` with `script` in it.
    fn start(dir: &Path, script: &str) -> Self {
        Self::start_with(dir, script, &[])
    }

    /// [`Self::start`] with more arguments (`--http ADDR`).
    pub(crate) fn start_with(dir: &Path, script: &str, args: &[&str]) -> Self {
        let file = dir.join("syncs.sql");
        std::fs::write(&file, script).unwrap();
        let log = dir.join("misql.log");
        Self { child: daemon_with(dir, &file, Some(&log), args), log }
    }

    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log, for failure messages.
    pub(crate) fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    /// Waits until the table equals the collection; panics with the log if misql exits or
    /// [`CATCH_UP_LIMIT`] passes first.
    pub(crate) async fn wait_in_sync(&mut self, scenario: &Scenario, what: &str) {
        let deadline = Instant::now() + CATCH_UP_LIMIT;
        loop {
            if let Some(status) = self.exited() {
                panic!("misql stopped ({status}) {what}; its log ends:\n{}", self.tail());
            }
            if scenario.in_sync().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the table did not catch up {what} within {CATCH_UP_LIMIT:?}; misql's log ends:\n{}",
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Changes the collection while the daemon runs, until every fault of `proxy` was injected and
/// at least [`MIN_CHANGES`] were made ([`WORKLOAD_LIMIT`] at most, or until misql exits).
pub(crate) async fn workload(
    scenario: &Scenario,
    proxy: &FaultProxy,
    daemon: &mut Daemon,
    seed: u64,
) {
    let coll = scenario.collection().await;
    let mut rng = Rng::new(seed);
    let mut next_id = 100_000;
    let deadline = Instant::now() + WORKLOAD_LIMIT;
    let mut made = 0;
    while (made < MIN_CHANGES || proxy.pending() > 0) && Instant::now() < deadline {
        if daemon.exited().is_some() {
            break;
        }
        change(&coll, &mut rng, &mut next_id).await;
        made += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// Lines of misql's log at WARN level that speak of a commit.
fn commit_warnings(log: &str) -> usize {
    log.lines().filter(|l| l.contains("WARN") && l.to_lowercase().contains("commit")).count()
}

// ---------------------------------------------------------------------------------------------
// REST catalog commit faults, under a streaming CRUD workload
// ---------------------------------------------------------------------------------------------

/// A daemon syncs 150 orders (snapshot in batches of 50, so commits are both snapshot appends
/// and streaming row deltas) and follows a CRUD workload through a proxy in front of the REST
/// catalog that gives every 2nd commit `fault`, [`REST_FAULTS`] times. The table must end
/// exact with misql still running, and the log must hold a warning about a commit for each
/// fault. Returns the proxy for further checks.
async fn survives_rest_commit_faults(
    catalog: RestCatalog,
    name: &str,
    fault: Fault,
    extra: &str,
) -> FaultProxy {
    let proxy = FaultProxy::start(catalog.rest_uri());
    let scenario =
        Scenario::new(catalog, name, 150, proxy.uri(), catalog.s3_endpoint(), extra).await;
    let plan = Plan::on(Route::rest_commit("orders")).every(2).inject(fault.clone(), REST_FAULTS);
    proxy.plan(plan);
    let mut daemon = Daemon::start(&scenario.dir, &scenario.sync_script(50));
    daemon.wait_in_sync(&scenario, "after the snapshot").await;
    workload(&scenario, &proxy, &mut daemon, 7).await;
    daemon.wait_in_sync(&scenario, "after the workload").await;
    assert_eq!(
        proxy.injected_of(&fault),
        REST_FAULTS,
        "not every planned fault was met (injected {:?}); misql's log ends:\n{}",
        proxy.injected(),
        daemon.tail()
    );
    scenario.assert_exact(&format!("{REST_FAULTS} × {}", fault.kind())).await;
    let log = daemon.log();
    assert!(
        commit_warnings(&log) >= REST_FAULTS,
        "each fault met leaves a warning about the commit in misql's log; it has {}:\n{log}",
        commit_warnings(&log)
    );
    assert!(daemon.exited().is_none(), "misql is still running");
    proxy
}

on_each_rest_catalog!(
    a_rest_commit_answered_500_after_it_was_applied_is_settled_and_the_table_stays_exact,
    |catalog| survives_rest_commit_faults(catalog, "rest500", Fault::StatusAfter(500), "")
);

on_each_rest_catalog!(
    a_rest_commit_answered_502_after_it_was_applied_is_settled_and_the_table_stays_exact,
    |catalog| survives_rest_commit_faults(catalog, "rest502", Fault::StatusAfter(502), "")
);

on_each_rest_catalog!(
    a_rest_commit_answered_504_after_it_was_applied_is_settled_and_the_table_stays_exact,
    |catalog| survives_rest_commit_faults(catalog, "rest504", Fault::StatusAfter(504), "")
);

on_each_rest_catalog!(
    a_rest_commit_refused_with_503_is_retried_and_the_table_stays_exact,
    |catalog| survives_rest_commit_faults(catalog, "rest503", Fault::UnavailableBefore, "")
);

on_each_rest_catalog!(
    a_rest_commit_whose_connection_drops_after_it_was_applied_is_settled_exactly,
    |catalog| survives_rest_commit_faults(catalog, "restdrop", Fault::DropAfter, "")
);

on_each_rest_catalog!(
    a_rest_commit_answered_after_misqls_timeout_is_settled_and_the_table_stays_exact,
    commit_answered_after_the_timeout
);

async fn commit_answered_after_the_timeout(catalog: RestCatalog) {
    let fault = Fault::DelayAfter(DELAY);
    let proxy = survives_rest_commit_faults(catalog, "restdelay", fault, REST_TIMEOUT_OPTION).await;
    assert_eq!(
        proxy.abandoned(),
        REST_FAULTS,
        "misql gave up on each delayed commit (rest.client.socket-timeout-ms < {DELAY:?})"
    );
}

on_each_rest_catalog!(
    a_once_catch_up_through_consecutive_rest_faults_is_exact_and_shows_them_in_sync_status,
    catch_up_through_consecutive_rest_faults
);

async fn catch_up_through_consecutive_rest_faults(catalog: RestCatalog) {
    let proxy = FaultProxy::start(catalog.rest_uri());
    let scenario =
        Scenario::new(catalog, "restonce", 100, proxy.uri(), catalog.s3_endpoint(), "").await;
    let script = scenario.sync_script(10);
    let run = scenario.once(&script, &[]);
    assert!(run.success, "the snapshot through the proxy: {}", run.stderr);
    let coll = scenario.collection().await;
    changes(&coll, 40, &mut Rng::new(11), &mut 200_000).await;
    let faults = [Fault::StatusAfter(502), Fault::UnavailableBefore, Fault::DropAfter];
    let plan = faults
        .iter()
        .fold(Plan::on(Route::rest_commit("orders")), |plan, fault| plan.inject(fault.clone(), 1));
    proxy.plan(plan);

    let run = scenario.once(&script, &["SHOW SYNC STATUS orders"]);
    assert!(run.success, "the catch-up failed:\n{}", run.stderr);
    assert_eq!(proxy.pending(), 0, "injected only {:?}", proxy.injected());
    scenario.assert_exact("a catch-up through 502, 503 and a dropped connection in a row").await;
    let status: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert!(status["commits"].as_u64().unwrap() > 0, "{status}");
    let last_error = status["last_error"].as_str().unwrap_or_default();
    assert!(!last_error.is_empty(), "SHOW SYNC STATUS tells the last fault met: {status}");
    assert!(commit_warnings(&run.stderr) >= faults.len(), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// S3 upload faults
// ---------------------------------------------------------------------------------------------

/// `misql --once` copies 150 orders (a commit per 25) through a proxy in front of S3 that gives
/// every 3rd upload of a table file `fault`, [`S3_FAULTS`] times; then it catches up 60 changes
/// while every 2nd upload of a delete file and every 3rd of any table file get `fault`,
/// [`S3_FAULTS`] times each. Both runs succeed and the table ends exact, every file it
/// references in place.
async fn survives_s3_upload_faults(catalog: RestCatalog, name: &str, fault: Fault) {
    let proxy = FaultProxy::start(catalog.s3_endpoint());
    let scenario = Scenario::new(catalog, name, 150, catalog.rest_uri(), proxy.uri(), "").await;
    proxy.plan(Plan::on(Route::s3_table_file_put()).every(3).inject(fault.clone(), S3_FAULTS));
    let script = scenario.sync_script(25);
    let run = scenario.once(&script, &[]);
    assert!(run.success, "the snapshot failed: {}", run.stderr);
    assert_eq!(proxy.pending(), 0, "injected only {:?} in the snapshot", proxy.injected());
    scenario.assert_exact(&format!("the snapshot with {:?}", proxy.injected())).await;

    let coll = scenario.collection().await;
    changes(&coll, 60, &mut Rng::new(23), &mut 300_000).await;
    proxy.plan(Plan::on(Route::s3_delete_file_put()).every(2).inject(fault.clone(), S3_FAULTS));
    proxy.plan(Plan::on(Route::s3_table_file_put()).every(3).inject(fault.clone(), S3_FAULTS));
    let run = scenario.once(&script, &[]);
    assert!(run.success, "the catch-up failed: {}", run.stderr);
    assert_eq!(proxy.pending(), 0, "injected only {:?} in all", proxy.injected());
    assert_eq!(proxy.injected_of(&fault), 3 * S3_FAULTS, "{:?}", proxy.injected());
    scenario.assert_exact(&format!("{} × {} on uploads", 3 * S3_FAULTS, fault.kind())).await;
}

on_each_rest_catalog!(
    uploads_answered_500_after_they_were_stored_leave_the_table_exact,
    |catalog| survives_s3_upload_faults(catalog, "s3500", Fault::StatusAfter(500))
);

on_each_rest_catalog!(uploads_refused_with_s3_slow_down_leave_the_table_exact, |catalog| {
    survives_s3_upload_faults(catalog, "s3slow", Fault::SlowDownBefore)
});

on_each_rest_catalog!(uploads_cut_off_midway_leave_the_table_exact_and_complete, |catalog| {
    survives_s3_upload_faults(catalog, "s3cut", Fault::CutUpload(512))
});

// ---------------------------------------------------------------------------------------------
// No faults
// ---------------------------------------------------------------------------------------------

on_each_rest_catalog!(
    a_streaming_sync_through_both_proxies_without_faults_is_exact,
    streaming_through_both_proxies
);

async fn streaming_through_both_proxies(catalog: RestCatalog) {
    let rest = FaultProxy::start(catalog.rest_uri());
    let s3 = FaultProxy::start(catalog.s3_endpoint());
    let scenario = Scenario::new(catalog, "proxyclean", 150, rest.uri(), s3.uri(), "").await;
    let mut daemon = Daemon::start(&scenario.dir, &scenario.sync_script(50));
    daemon.wait_in_sync(&scenario, "after the snapshot").await;
    workload(&scenario, &rest, &mut daemon, 3).await;
    daemon.wait_in_sync(&scenario, "after the workload").await;
    scenario.assert_exact("a sync through the proxies").await;
    assert!(rest.requests() > 0 && s3.requests() > 0, "{} {}", rest.requests(), s3.requests());
    assert!(rest.injected().is_empty() && s3.injected().is_empty());
    assert!(daemon.exited().is_none(), "misql is still running");
    assert!(!daemon.log().contains("ERROR"), "{}", daemon.log());
}
