//! Catalog and object-store faults while syncing into a REST catalog: misql reaches the REST
//! catalog (SeaweedFS's, and rustberg: each test runs on both), or the S3 endpoint, through a
//! fault-injecting proxy ([`crate::support::fault_proxy`]) that answers commits with a 5xx after
//! the catalog applied them, refuses them with 503, drops or delays the answer, or cuts uploads
//! off. Whatever is injected, the table ends equal to the collection, holds no key twice, every
//! file it references exists, pyiceberg reads it in full, and misql's log tells what it met
//! (the scenario and its checks: [`crate::support::fault_scenario`]).

use serde_json::Value;

use crate::support::data::Rng;
use crate::support::fault_proxy::{Fault, FaultProxy, Plan, Route};
use crate::support::rest_catalog::{RestCatalog, on_each_rest_catalog};

use crate::support::fault_scenario::{
    DELAY, Daemon, REST_TIMEOUT_OPTION, Scenario, changes, workload,
};

/// Each REST commit fault is injected this many times per test.
const REST_FAULTS: usize = 3;
/// Each S3 upload fault is injected this many times per test.
const S3_FAULTS: usize = 3;

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
