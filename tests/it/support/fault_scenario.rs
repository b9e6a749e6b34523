//! The fault tests' scenario: a collection, a REST catalog's lake reached through fault proxies,
//! a misql daemon syncing one into the other under a CRUD workload, and the checks that the table
//! ends equal to the collection, holds no key twice, and references only files that exist.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use bson::Document;
use mongodb::Collection;
use serde_json::Value;

use crate::support::data::{Rng, load, orders};
use crate::support::duckdb::duckdb_rows;
use crate::support::fault_proxy::FaultProxy;
use crate::support::oracle::{OrderRow, assert_orders_exact, orders_in_mongo, orders_match};
use crate::support::pyiceberg::{pyiceberg_files, pyiceberg_rows};
use crate::support::rest_catalog::RestCatalog;
use crate::support::{Run, client, daemon_with, misql_in, unique_db, warehouse};
use crate::sync_stream::{SELECT, change};

/// The ATTACH option bounding one request to the REST catalog (Iceberg Java's HTTP client
/// property), well below [`DELAY`]: misql must give up on a delayed commit and settle it.
pub(crate) const REST_TIMEOUT_OPTION: &str = ", rest.client.socket-timeout-ms '2000'";
/// How long a delayed commit answer is held back.
pub(crate) const DELAY: Duration = Duration::from_secs(6);
/// Changes made while a daemon runs, at least.
const MIN_CHANGES: usize = 30;
/// Longest time for the workload of one test.
const WORKLOAD_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for the table to catch up with the collection.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(40);

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
    pub(crate) fn once(&self, script: &str, also: &[&str]) -> Run {
        let mut args = vec!["--once", "--format", "json", "-e", script];
        for statement in also {
            args.extend(["-e", statement]);
        }
        misql_in(&self.dir, &args)
    }
}

/// `n` random changes (inserts, updates, replaces, deletes).
pub(crate) async fn changes(
    coll: &Collection<Document>,
    n: usize,
    rng: &mut Rng,
    next_id: &mut u64,
) {
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
    pub(crate) fn start(dir: &Path, script: &str) -> Self {
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
