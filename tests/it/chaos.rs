//! Chaos: a streaming sync follows a CRUD workload while, for the whole run, a share of every
//! request to the REST catalog (token, config, load, commit: 503s, dropped connections, answers
//! later than misql's timeout) and of every request to S3 (SlowDown, 500 after storing, dropped
//! connections, cut uploads) is faulted at random by [`FaultProxy`]s. The sync must catch up: the
//! table ends equal to the collection as the driver reads it. How long after the last write it
//! matched is printed (a figure to report, not a bound the test sets: `docs/benchmarks.md` has
//! the figures; `MISQL_TEST_RUST_LOG=misql=debug` puts the batches and commits in the log the
//! test prints).

use std::time::{Duration, Instant};

use crate::service::{get, wait_for_http};
use crate::support::data::Rng;
use crate::support::fault_proxy::{Fault, FaultProxy, Plan, Route};
use crate::support::fault_scenario::{DELAY, Daemon, REST_TIMEOUT_OPTION, Scenario};
use crate::support::rest_catalog::RestCatalog;
use crate::support::server::free_port;
use crate::sync_stream::change;

/// Share of the REST catalog's requests faulted, in percent.
const REST_PERCENT: u64 = 15;
/// Share of S3's requests faulted, in percent.
const S3_PERCENT: u64 = 10;
/// How long the workload writes.
const WORKLOAD: Duration = Duration::from_secs(30);
/// The sync's options: a commit at least every second, as a user who wants fresh tables sets;
/// batches as large as the stream gives.
const SYNC_OPTIONS: &str = "flush_interval = '1s'";
/// Longest wait for the table to catch up after the last write (generous: not a timing bound).
const CATCH_UP: Duration = Duration::from_secs(120);

/// The REST catalog's faults, each in turn.
fn rest_faults() -> Vec<Fault> {
    vec![Fault::UnavailableBefore, Fault::DropAfter, Fault::DelayAfter(DELAY)]
}

/// S3's faults, each in turn.
fn s3_faults() -> Vec<Fault> {
    vec![Fault::SlowDownBefore, Fault::StatusAfter(500), Fault::DropAfter, Fault::CutUpload(512)]
}

/// Waits until the table equals the collection; how long that took. Panics with the sync's
/// metrics and misql's log if misql exits or [`CATCH_UP`] passes first.
async fn wait_caught_up(daemon: &mut Daemon, scenario: &Scenario, http: &str) -> Duration {
    let started = Instant::now();
    loop {
        if let Some(status) = daemon.exited() {
            panic!("misql stopped ({status}); its log ends:\n{}", daemon.tail());
        }
        if scenario.in_sync().await {
            return started.elapsed();
        }
        if started.elapsed() > CATCH_UP {
            let metrics = get(http, "/metrics").await.1;
            let sync: Vec<&str> = metrics.lines().filter(|l| l.starts_with("misql_sync")).collect();
            eprintln!(
                "the sync's metrics:\n{}\nmisql's log ends:\n{}",
                sync.join("\n"),
                daemon.tail()
            );
            scenario.assert_exact(&format!("{CATCH_UP:?} after the last write")).await;
            panic!("the table caught up only after {CATCH_UP:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// SeaweedFS's catalog: it has a token endpoint (rustberg runs without authentication), so every
/// kind of catalog request is faulted.
#[tokio::test(flavor = "multi_thread")]
async fn a_streaming_sync_catches_up_under_random_rest_and_s3_faults_for_the_whole_run() {
    let catalog = RestCatalog::Seaweed;
    let rest = FaultProxy::start(catalog.rest_uri());
    let s3 = FaultProxy::start(catalog.s3_endpoint());
    rest.plan(Plan::chaos(Route::all("any REST request"), REST_PERCENT, 1, rest_faults()));
    s3.plan(Plan::chaos(Route::all("any S3 request"), S3_PERCENT, 2, s3_faults()));
    let scenario =
        Scenario::new(catalog, "chaos", 150, rest.uri(), s3.uri(), REST_TIMEOUT_OPTION).await;
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon = Daemon::start_with(
        &scenario.dir,
        &scenario.sync_script_with(SYNC_OPTIONS),
        &["--http", &http],
    );
    wait_for_http(&http).await;

    let coll = scenario.collection().await;
    let (mut rng, mut next_id, mut changes) = (Rng::new(29), 400_000, 0);
    let until = Instant::now() + WORKLOAD;
    while Instant::now() < until && daemon.exited().is_none() {
        change(&coll, &mut rng, &mut next_id).await;
        changes += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let caught_up = wait_caught_up(&mut daemon, &scenario, &http).await;

    scenario.assert_exact("a workload under random REST and S3 faults").await;
    let injected = |proxy: &FaultProxy| proxy.injected().values().sum::<usize>();
    assert!(injected(&rest) > 0, "no REST fault injected in {} requests", rest.requests());
    assert!(injected(&s3) > 0, "no S3 fault injected in {} requests", s3.requests());
    assert!(daemon.exited().is_none(), "misql is still running");
    println!(
        "chaos: {changes} changes in {WORKLOAD:?}; REST {} of {} requests faulted {:?}; \
         S3 {} of {} faulted {:?}; the table matched the collection {:.1} s after the last write",
        injected(&rest),
        rest.requests(),
        rest.injected(),
        injected(&s3),
        s3.requests(),
        s3.injected(),
        caught_up.as_secs_f64()
    );
    println!("misql's log:\n{}", daemon.log());
}
