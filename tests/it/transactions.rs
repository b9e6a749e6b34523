//! MongoDB transactions kept whole: transfers between accounts in multi-document transactions
//! keep the sum of the balances constant, so every snapshot of the table that holds all the
//! accounts must have that sum — read at every snapshot of the table's history by pyiceberg's
//! time travel, through kills, with batches far smaller than the transactions. Across the tables
//! of a database sync, the same holds at every consistent cut their summaries name. The
//! expected balances come from MongoDB through the driver.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use futures::TryStreamExt;
use mongodb::Collection;

use crate::service::{get, sample, wait_for_http};
use crate::support::data::Rng;
use crate::support::fault_proxy::{Fault, FaultProxy, Plan, Route};
use crate::support::pyiceberg::{
    PyCatalog, pyiceberg_cuts, pyiceberg_history, pyiceberg_metadata_sums, pyiceberg_rows,
};
use crate::support::rest_catalog::RestCatalog;
use crate::support::server::free_port;
use crate::support::{Daemon, client, daemon_appending, misql_in, unique_db, warehouse};

const ACCOUNTS: i64 = 20;
const START: i64 = 1000;
const TOTAL: i64 = ACCOUNTS * START;

/// A database with `ACCOUNTS` accounts of `START`, a warehouse, and a file with the sync `bank`
/// of them (`WITH (with)`).
async fn bank(prefix: &str, with: &str) -> (String, Collection<Document>, std::path::PathBuf) {
    let db = unique_db(prefix);
    let coll = client().await.database(&db).collection::<Document>("accounts");
    let accounts: Vec<Document> =
        (0..ACCOUNTS).map(|i| doc! { "_id": i, "balance": START }).collect();
    coll.insert_many(accounts).await.unwrap();
    let dir = warehouse(prefix);
    let sql = format!(
        "CREATE SYNC bank FROM mongo.{db}.accounts INTO iceberg.{db}.accounts \
         SELECT _id, balance WITH (max_snapshots = 100000, retain_snapshots = '1d', {with});"
    );
    std::fs::write(dir.join("sync.sql"), sql).unwrap();
    (db, coll, dir)
}

/// Moves `amount` from account `from` of `debit` to each of the accounts `to` of `credit` in one
/// transaction; aborts it instead of committing when `abort`.
async fn transfer(
    (debit, from): (&Collection<Document>, i64),
    (credit, to): (&Collection<Document>, &[i64]),
    amount: i64,
    abort: bool,
) {
    let mut session = debit.client().start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    let take = doc! { "$inc": { "balance": -amount * to.len() as i64 } };
    debit.update_one(doc! { "_id": from }, take).session(&mut session).await.unwrap();
    for &id in to {
        let give = doc! { "$inc": { "balance": amount } };
        credit.update_one(doc! { "_id": id }, give).session(&mut session).await.unwrap();
    }
    if abort {
        session.abort_transaction().await.unwrap();
    } else {
        session.commit_transaction().await.unwrap();
    }
}

/// Transfers until `stop` (at most 90 s), about 15 a second: most between two accounts, some
/// from one account to five others (six changes, more than a batch), some aborted. Counts the
/// committed ones in `made`.
async fn transfer_until(coll: Collection<Document>, stop: Arc<AtomicBool>, made: Arc<AtomicU64>) {
    let mut rng = Rng::new(21);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let from = rng.below(ACCOUNTS as u64) as i64;
        let others = |n: i64| (1..=n).map(|k| (from + k) % ACCOUNTS).collect::<Vec<_>>();
        let amount = 1 + rng.below(20) as i64;
        let (to, amount, abort) = match rng.below(10) {
            0..=5 => (others(1), amount, false),
            6..=8 => (others(5), amount, false),
            _ => (others(1), 500, true),
        };
        transfer((&coll, from), (&coll, &to), amount, abort).await;
        made.fetch_add(u64::from(!abort), Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `_id → balance` in MongoDB, through the driver.
async fn balances(coll: &Collection<Document>) -> BTreeMap<i64, i64> {
    let docs: Vec<Document> = coll.find(doc! {}).await.unwrap().try_collect().await.unwrap();
    docs.iter().map(|d| (d.get_i64("_id").unwrap(), d.get_i64("balance").unwrap())).collect()
}

/// `_id → balance` in the table, through pyiceberg.
fn table_balances(catalog: &PyCatalog, table: &str) -> BTreeMap<i64, i64> {
    let rows = pyiceberg_rows(catalog, table, "_id");
    rows.iter().map(|r| (r["_id"].as_i64().unwrap(), r["balance"].as_i64().unwrap())).collect()
}

async fn wait_until_equal(
    catalog: &PyCatalog,
    dir: &Path,
    table: &str,
    coll: &Collection<Document>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (expected, actual) = (balances(coll).await, table_balances(catalog, table));
        if expected == actual {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the table differs from the collection:\n{expected:?}\n{actual:?}\n{}",
            std::fs::read_to_string(dir.join("misql.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every snapshot in the table's history that holds every account: `(sequence number, sum)`.
fn sums_of_whole_snapshots(dir: &Path, table: &str) -> Vec<(i64, i64)> {
    let history = pyiceberg_history(&PyCatalog::sql(dir), table, "balance");
    history
        .iter()
        .filter(|s| s["rows"] == ACCOUNTS)
        .map(|s| (s["sequence_number"].as_i64().unwrap(), s["sum"].as_i64().unwrap()))
        .collect()
}

fn start(dir: &Path, http: &str) -> Daemon {
    start_file(dir, &dir.join("sync.sql"), http)
}

/// `misql -f file --http http` in warehouse `dir`, its log appended to `dir/misql.log`.
fn start_file(dir: &Path, file: &Path, http: &str) -> Daemon {
    daemon_appending(dir, file, &crate::support::server::server().uri, &["--http", http])
}

#[tokio::test(flavor = "multi_thread")]
async fn every_snapshot_holds_whole_transfers_through_kills() {
    let (db, coll, dir) = bank("txnkill", "max_batch_rows = 5, flush_interval = '500ms'").await;
    let table = format!("{db}.accounts");
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(transfer_until(coll.clone(), stop.clone(), made.clone()));
    let http = format!("127.0.0.1:{}", free_port());
    let metadata = dir.join(&db).join("accounts").join("metadata");
    let commits = || std::fs::read_dir(&metadata).map_or(0, |d| d.count());

    // Killed three times, each a few commits after it started (the first while it copies).
    let mut rng = Rng::new(5);
    for _ in 0..3 {
        let mut daemon = start(&dir, &http);
        let target = commits() + 5 + rng.below(15) as usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while commits() < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        daemon.kill().expect("SIGKILL");
        daemon.wait().unwrap();
    }
    let _daemon = start(&dir, &http);
    wait_for_http(&http).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while made.load(Ordering::Relaxed) < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let transfers = made.load(Ordering::Relaxed);
    wait_until_equal(&PyCatalog::sql(&dir), &dir, &table, &coll).await;

    let sums = sums_of_whole_snapshots(&dir, &table);
    assert_whole_transfers(&sums, "snapshots (sequence number, sum)", TOTAL, |(_, sum)| Some(*sum));
    assert!(transfers >= 200, "only {transfers} transfers; the test proves little");
    assert!(sums.len() >= 30, "only {} snapshots hold every account", sums.len());

    let (status, metrics) = get(&http, "/metrics").await;
    assert_eq!(status, 200);
    let applied = sample(&metrics, "misql_sync_transactions_total{sync=\"bank\"}");
    assert!(applied.is_some_and(|n| n > 0.0), "{metrics}");
    let largest = sample(&metrics, "misql_sync_largest_transaction_rows{sync=\"bank\"}");
    assert_eq!(largest, Some(6.0), "{metrics}");
    let split = sample(&metrics, "misql_sync_transactions_split_total{sync=\"bank\"}");
    assert_eq!(split, Some(0.0), "{metrics}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let exact = sample(&metrics, "misql_sync_valid_through_timestamp_seconds{sync=\"bank\"}");
    let age = exact.map(|t| now.as_secs_f64() - t);
    assert!(age.is_some_and(|age| (0.0..120.0).contains(&age)), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_past_max_transaction_rows_is_committed_in_parts_and_an_aborted_one_not_at_all()
 {
    let with = "max_batch_rows = 2, max_transaction_rows = 4, flush_interval = '200ms'";
    let (db, coll, dir) = bank("txnbound", with).await;
    let table = format!("{db}.accounts");
    let once =
        |dir: &Path| misql_in(dir, &["-f", dir.join("sync.sql").to_str().unwrap(), "--once"]);
    let copied = once(&dir);
    assert!(copied.success, "{}", copied.stderr);
    // Three changes (more than a batch, within the bound): whole. Ten: in parts.
    transfer((&coll, 0), (&coll, &[1, 2]), 7, false).await;
    transfer((&coll, 3), (&coll, &[4, 5]), 500, true).await;
    transfer((&coll, 10), (&coll, &[11, 12, 13, 14, 15, 16, 17, 18, 19]), 1, false).await;
    let run = once(&dir);
    assert!(run.success, "{}", run.stderr);
    assert!(
        run.stderr.contains("changed more than max_transaction_rows = 4 rows")
            && run.stderr.contains("committed in parts"),
        "{}",
        run.stderr
    );
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("(2 transactions, the largest of 10 changes)"), "{said}");
    assert_eq!(table_balances(&PyCatalog::sql(&dir), &table), balances(&coll).await);

    let sums: Vec<i64> = sums_of_whole_snapshots(&dir, &table).into_iter().map(|s| s.1).collect();
    // A part of the three-change transfer would show -7 or -14; a part of the ten-change one
    // between -9 and -1; the aborted one -1000 or -500.
    assert!(!sums.iter().any(|s| [TOTAL - 7, TOTAL - 14].contains(s)), "{sums:?}");
    assert!(sums.iter().any(|s| (TOTAL - 9..TOTAL).contains(s)), "no part shows: {sums:?}");
    assert!(sums.iter().all(|s| (TOTAL - 9..=TOTAL).contains(s)), "{sums:?}");

    // misql's own consistent read of the table, the setting shown, and a wrong value refused.
    let sql = format!(
        "SET misql.consistent_reads = true; SHOW misql.consistent_reads; \
         SELECT sum(balance) AS total FROM iceberg.{table}"
    );
    let run = misql_in(&dir, &["--format", "json", "-e", &sql]);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stdout.contains(r#"{"misql.consistent_reads":"true"}"#), "{}", run.stdout);
    assert!(run.stdout.contains(&format!(r#"{{"total":{TOTAL}}}"#)), "{}", run.stdout);
    // An aggregate's header names its column, not the table's full name.
    let sql = format!("SELECT sum(balance), max(balance) - min(balance) FROM iceberg.{table}");
    let run = misql_in(&dir, &["--format", "json", "-e", &sql]);
    assert!(run.stdout.contains(r#""sum(balance)":"#), "{}", run.stdout);
    assert!(run.stdout.contains(r#""max(balance) - min(balance)":"#), "{}", run.stdout);
    let run = misql_in(&dir, &["-e", "SET misql.consistent_reads = sometimes"]);
    assert!(!run.success);
    assert!(run.stderr.contains("misql.consistent_reads is true or false"), "{}", run.stderr);
}

/// A database sync of `accounts` and `ledger` (each transfer debits one and credits the other
/// in one transaction) into the embedded catalog, or `rest`'s (through `proxy` when given);
/// killed once while transferring.
/// At every consistent cut the summaries of the two tables name (their `misql.valid-through`
/// and `misql.first-change-time`), the two sums add up to the total. With `consistent = true`
/// on the embedded catalog, the catalog itself is read every few milliseconds all through the
/// run (both tables' pointers in one SQLite read): every state it was seen in holds whole
/// transfers.
async fn cuts_across_a_database_sync_hold_whole_transfers(
    prefix: &str,
    rest: Option<RestCatalog>,
    consistent: bool,
    proxy: Option<&FaultProxy>,
) {
    const ENTRIES: i64 = 10;
    let db = unique_db(prefix);
    let database = client().await.database(&db);
    let (accounts, ledger) = (database.collection("accounts"), database.collection("ledger"));
    let start_of = |balance: i64| (0..ENTRIES).map(move |i| doc! { "_id": i, "balance": balance });
    accounts.insert_many(start_of(START)).await.unwrap();
    ledger.insert_many(start_of(0)).await.unwrap();
    let dir = warehouse(prefix);
    let file = dir.join("bank.sql");
    let (catalog, attach, lake) = match rest {
        Some(rest) => {
            let attach = match proxy {
                Some(proxy) => rest.attach_sql_via("lake", proxy.uri(), rest.s3_endpoint(), ""),
                None => rest.attach_sql("lake"),
            };
            (rest.py(), format!("{attach};\n"), "lake")
        }
        None => (PyCatalog::sql(&dir), String::new(), "iceberg"),
    };
    let catalog = &catalog;
    let sql = format!(
        "{attach}CREATE SYNC bank FROM mongo.{db}.* INTO {lake}.{db} WITH (max_batch_rows = 3, \
         flush_interval = '300ms', max_snapshots = 100000, retain_snapshots = '1d', \
         consistent = {consistent});"
    );
    std::fs::write(&file, sql).unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let polled = Arc::new(AtomicBool::new(false));
    let poller = (rest.is_none() && consistent)
        .then(|| tokio::spawn(catalog_states(dir.join("catalog.db"), db.clone(), polled.clone())));

    let (stop, made) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (accounts, ledger, stop, made) =
            (accounts.clone(), ledger.clone(), stop.clone(), made.clone());
        tokio::spawn(async move {
            let mut rng = Rng::new(31);
            while !stop.load(Ordering::Relaxed) {
                let from = rng.below(ENTRIES as u64) as i64;
                let to: Vec<i64> =
                    (0..1 + rng.below(2)).map(|k| (from + k as i64) % ENTRIES).collect();
                let amount = 1 + rng.below(9) as i64;
                transfer((&accounts, from), (&ledger, &to), amount, false).await;
                made.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        })
    };
    let mut daemon = start_file(&dir, &file, &http);
    let deadline = Instant::now() + Duration::from_secs(60);
    while made.load(Ordering::Relaxed) < 60 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.kill().expect("SIGKILL");
    daemon.wait().unwrap();
    let _daemon = start_file(&dir, &file, &http);
    // misql's own reads, with consistent_reads, see the total while transfers go on.
    let query = format!(
        "{attach}SET misql.consistent_reads = true; SELECT (SELECT sum(balance) FROM \
         {lake}.{db}.accounts) + (SELECT sum(balance) FROM {lake}.{db}.ledger) AS total"
    );
    let mut read = 0;
    while made.load(Ordering::Relaxed) < 150 && Instant::now() < deadline {
        let run = misql_in(&dir, &["--format", "json", "-e", &query]);
        if run.stderr.contains("no cluster time at which all are exact yet") {
            continue; // before both tables are streaming
        }
        assert!(run.success, "{}", run.stderr);
        let row: serde_json::Value =
            serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
        assert_eq!(row["total"], ENTRIES * START, "a consistent read saw part of a transfer");
        read += 1;
    }
    assert!(read >= 3, "only {read} consistent reads while transferring");
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let (accounts_table, ledger_table) = (format!("{db}.accounts"), format!("{db}.ledger"));
    wait_until_equal(catalog, &dir, &accounts_table, &accounts).await;
    wait_until_equal(catalog, &dir, &ledger_table, &ledger).await;

    let cuts = pyiceberg_cuts(catalog, "balance", &[&accounts_table, &ledger_table]);
    assert_whole_transfers(&cuts, "cuts", ENTRIES * START, |cut| {
        let tables = cut["tables"].as_object().unwrap();
        let rows = tables.values().all(|t| t["rows"] == ENTRIES);
        rows.then(|| tables.values().map(|t| t["sum"].as_i64().unwrap()).sum())
    });
    assert!(cuts.len() >= 20, "only {} consistent cuts: {cuts:?}", cuts.len());
    let Some(poller) = poller else { return };
    polled.store(true, Ordering::Relaxed);
    let states = poller.await.unwrap();
    let locations: Vec<String> =
        states.iter().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let sums = pyiceberg_metadata_sums("balance", &locations);
    let whole: Vec<&Vec<String>> =
        states.iter().filter(|s| s.iter().all(|l| sums[l].0 == ENTRIES)).collect();
    assert_whole_transfers(&whole, "states of the catalog", ENTRIES * START, |state| {
        Some(state.iter().map(|l| sums[l].1).sum())
    });
    assert!(whole.len() >= 20, "only {} states of the catalog seen", whole.len());
}

/// Asserts that each of `items` holds whole transfers: `sum` gives its sum of the balances
/// (`None` when it does not hold every account), which must be `total`.
fn assert_whole_transfers<T: std::fmt::Debug>(
    items: &[T],
    what: &str,
    total: i64,
    sum: impl Fn(&T) -> Option<i64>,
) {
    let wrong: Vec<&T> = items.iter().filter(|item| sum(item) != Some(total)).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} {what} show part of a transfer: {wrong:?}",
        wrong.len(),
        items.len()
    );
}

/// Every state the SQLite catalog `file` is seen in (read every 2 ms until `stop`): the
/// tables of namespace `namespace`, by table name, each as a copy of its metadata file then
/// (the table drops old metadata files after a hundred commits).
async fn catalog_states(
    file: std::path::PathBuf,
    namespace: String,
    stop: Arc<AtomicBool>,
) -> BTreeSet<Vec<String>> {
    use sqlx::ConnectOptions;
    let mut states = BTreeSet::new();
    let mut connection = None;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(2)).await;
        if connection.is_none() && file.exists() {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&file).read_only(true);
            connection = options.connect().await.ok();
        }
        let Some(open) = connection.as_mut() else { continue };
        let rows: Result<Vec<(String, String)>, _> = sqlx::query_as(
            "SELECT table_name, metadata_location FROM iceberg_tables \
             WHERE table_namespace = ? AND table_name IN ('accounts', 'ledger') \
             ORDER BY table_name",
        )
        .bind(&namespace)
        .fetch_all(&mut *open)
        .await;
        match rows {
            Ok(rows) if rows.len() == 2 => {
                let kept = rows.iter().map(|(_, location)| keep(&file, location)).collect();
                states.insert(kept);
            }
            Ok(_) => {}
            Err(_) => connection = None,
        }
    }
    states
}

/// A copy of the metadata file at `location` (`file://` or a path) beside the catalog `file`.
fn keep(file: &Path, location: &str) -> String {
    let path = location.strip_prefix("file://").unwrap_or(location);
    let kept = file.with_file_name(format!("kept-{}", path.replace('/', "_")));
    if !kept.exists() {
        std::fs::copy(path, &kept).unwrap_or_else(|e| panic!("copying {path}: {e}"));
    }
    kept.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn cuts_across_a_database_sync_on_the_embedded_catalog_hold_whole_transfers() {
    cuts_across_a_database_sync_hold_whole_transfers("txndbsql", None, false, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_state_of_the_embedded_catalog_holds_whole_transfers_with_consistent() {
    cuts_across_a_database_sync_hold_whole_transfers("txngroupsql", None, true, None).await;
}

/// SeaweedFS's catalog has no multi-table commit: the tables commit in turn, at the group's cuts.
#[tokio::test(flavor = "multi_thread")]
async fn cuts_across_a_consistent_database_sync_on_a_rest_catalog_hold_whole_transfers() {
    let rest = Some(RestCatalog::Seaweed);
    cuts_across_a_database_sync_hold_whole_transfers("txngrouprest", rest, true, None).await;
}

/// rustberg lists `POST /v1/{prefix}/transactions/commit`: the tables commit in one request, which
/// a proxy fails now and then — answered 502 or dropped after rustberg applied it, refused with
/// 503 before — and every outcome is settled from the tables.
#[tokio::test(flavor = "multi_thread")]
async fn a_consistent_database_sync_commits_its_tables_in_one_rest_transaction_through_faults() {
    let proxy = FaultProxy::start(RestCatalog::Rustberg.rest_uri());
    let together = Route::new("REST multi-table commit", "POST", |path| {
        path.ends_with("/transactions/commit")
    });
    let plan = Plan::on(together)
        .every(4)
        .inject(Fault::StatusAfter(502), 2)
        .inject(Fault::DropAfter, 1)
        .inject(Fault::UnavailableBefore, 2);
    proxy.plan(plan);
    let rest = Some(RestCatalog::Rustberg);
    cuts_across_a_database_sync_hold_whole_transfers("txngrouprb", rest, true, Some(&proxy)).await;
    assert_eq!(proxy.pending(), 0, "every planned fault happened: {:?}", proxy.injected());
}

/// With `consistent = true`, a collection whose sync fails for good (a value of another type,
/// with `on_type_change = 'fail'`) leaves the group: its row says why, and the other tables go
/// on committing at the group's cuts.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_table_leaves_the_group_and_the_others_go_on() {
    let db = unique_db("txngroupfail");
    let database = client().await.database(&db);
    let (good, bad) = (database.collection("good"), database.collection("bad"));
    good.insert_many((0..5).map(|i| doc! { "_id": i as i64, "balance": 1_i64 })).await.unwrap();
    bad.insert_many((0..5).map(|i| doc! { "_id": i as i64, "balance": 1_i64 })).await.unwrap();
    let dir = warehouse("txngroupfail");
    let file = dir.join("bank.sql");
    let sql = format!(
        "CREATE SYNC bank FROM mongo.{db}.* INTO iceberg.{db} WITH (consistent = true, \
         flush_interval = '300ms');"
    );
    std::fs::write(&file, sql).unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let _daemon = start_file(&dir, &file, &http);
    let catalog = PyCatalog::sql(&dir);
    let (good_table, bad_table) = (format!("{db}.good"), format!("{db}.bad"));
    wait_until_equal(&catalog, &dir, &good_table, &good).await;
    wait_until_equal(&catalog, &dir, &bad_table, &bad).await;

    bad.insert_one(doc! { "_id": 100_i64, "balance": "a lot" }).await.unwrap();
    let failed = "misql_sync_phase{sync=\"bank/bad\",phase=\"failed\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = get(&http, "/metrics").await;
        if sample(&metrics, failed) == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the sync of bad did not fail: {metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 5..40 {
        good.insert_one(doc! { "_id": i as i64, "balance": 1_i64 }).await.unwrap();
    }
    good.update_one(doc! { "_id": 0_i64 }, doc! { "$inc": { "balance": 5 } }).await.unwrap();
    wait_until_equal(&catalog, &dir, &good_table, &good).await;
    let log = std::fs::read_to_string(dir.join("misql.log")).unwrap_or_default();
    assert!(log.contains("bank/bad") && log.contains("balance"), "{log}");
}
