//! Faults met by a streaming sync's own table maintenance (compaction, expiry, the orphan sweep):
//! they are logged, counted in `/metrics` and tried again later, and never end the sync.

use std::time::{Duration, Instant};

use bson::Document;
use mongodb::Collection;

use crate::service::{get, sample, wait_for_http};
use crate::support::data::{Rng, order};
use crate::support::fault_proxy::{Fault, FaultProxy, Plan, Route};
use crate::support::fault_scenario::{Daemon, Scenario};
use crate::support::rest_catalog::{RestCatalog, on_each_rest_catalog};
use crate::support::server::free_port;

/// Longest wait for a state the test expects.
const LIMIT: Duration = Duration::from_secs(60);

/// `n` new orders, numbered from `first`.
async fn insert(coll: &Collection<Document>, first: u64, n: u64) {
    let mut rng = Rng::new(first);
    coll.insert_many((first..first + n).map(|i| order(i, &mut rng))).await.unwrap();
}

/// Scrapes `/metrics` until `done` holds for it; panics with misql's log if the daemon exits,
/// the sync fails, or [`LIMIT`] passes first.
async fn wait_for_metrics(
    daemon: &mut Daemon,
    http: &str,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = daemon.exited() {
            panic!("misql stopped ({status}) before {what}; its log ends:\n{}", daemon.tail());
        }
        let metrics = get(http, "/metrics").await.1;
        let failed = r#"misql_sync_phase{sync="orders",phase="failed"}"#;
        assert_ne!(
            sample(&metrics, failed),
            Some(1.0),
            "the sync failed before {what}; misql's log ends:\n{}",
            daemon.tail()
        );
        if done(&metrics) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {LIMIT:?}: {metrics}\nmisql's log ends:\n{}",
            daemon.tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

on_each_rest_catalog!(
    a_streaming_sync_whose_orphan_sweep_cannot_list_s3_counts_it_and_keeps_streaming,
    orphan_sweep_that_cannot_list
);

async fn orphan_sweep_that_cannot_list(catalog: RestCatalog) {
    let s3 = FaultProxy::start(catalog.s3_endpoint());
    // Every listing of the bucket loses its connection, as in a store that drops them.
    s3.plan(Plan::on(Route::s3_list()).inject(Fault::DropAfter, 10_000));
    let scenario = Scenario::new(catalog, "sweepfault", 40, catalog.rest_uri(), s3.uri(), "").await;
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon =
        Daemon::start_with(&scenario.dir, &scenario.sync_script(50), &["--http", &http]);
    wait_for_http(&http).await;
    daemon.wait_in_sync(&scenario, "after the snapshot").await;

    // The first streaming commit runs the first orphan sweep, whose listing fails.
    let coll = scenario.collection().await;
    insert(&coll, 5_000, 5).await;
    let counted = r#"misql_sync_maintenance_errors_total{sync="orders"}"#;
    let metrics = wait_for_metrics(&mut daemon, &http, "a maintenance error counted", |m| {
        sample(m, counted).is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(s3.injected_of(&Fault::DropAfter) >= 1, "the sweep listed: {:?}", s3.injected());
    let retries = r#"misql_sync_retries_total{sync="orders"}"#;
    assert_eq!(sample(&metrics, retries), Some(0.0), "the sync did not restart: {metrics}");

    // The sync goes on streaming: later inserts reach the table.
    insert(&coll, 6_000, 5).await;
    daemon.wait_in_sync(&scenario, "after the sweep failed").await;
    let metrics = get(&http, "/metrics").await.1;
    let streaming = r#"misql_sync_phase{sync="orders",phase="streaming"}"#;
    assert_eq!(sample(&metrics, streaming), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, retries), Some(0.0), "the sync did not restart: {metrics}");
    assert_eq!(sample(&metrics, counted), Some(1.0), "the sweep waits for its interval: {metrics}");
    let log = daemon.log();
    assert!(log.contains("orphan file sweep"), "the warning names the sweep:\n{log}");
    assert!(daemon.exited().is_none(), "misql is still running");
}
