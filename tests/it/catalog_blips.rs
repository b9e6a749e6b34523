//! A blip is not a restart: a REST catalog request that is safe to repeat and fails for a moment
//! (a 503, a lost connection) is tried again where it failed, so the sync neither fails for good
//! nor starts over from its checkpoint.
//!
//! These faults are in the OAuth2 token exchange, so they run on SeaweedFS's REST catalog only:
//! rustberg runs in the tests without authentication and has no token endpoint.

use misql::lake::catalog::connect;

use crate::service::{get, sample, wait_for_http};
use crate::support::fault_proxy::{Fault, FaultProxy, Plan, Route};
use crate::support::fault_scenario::{Daemon, Scenario, workload};
use crate::support::rest_catalog::RestCatalog;
use crate::support::seaweed::seaweed;
use crate::support::server::free_port;

/// Each token fault is injected this many times: the commit path exchanges its token once per
/// catalog connection (and again only when it expires or is refused), so a daemon's run makes
/// two exchanges, the ATTACH's and the first commit's.
const TOKEN_FAULTS: usize = 1;

/// A daemon syncs 100 orders and follows a CRUD workload through a proxy in front of the REST
/// catalog that gives every 2nd OAuth2 token exchange `fault`, [`TOKEN_FAULTS`] times (the
/// ATTACH's own exchange passes; the first commit's is faulted). The table ends exact, the sync
/// never failed and never restarted.
async fn survives_token_faults(name: &str, fault: Fault) {
    survives_blips(name, Route::rest_token(), 2, fault, TOKEN_FAULTS).await;
}

/// As [`survives_token_faults`], with every `every`th request of `route` given `fault`, `times`
/// times.
async fn survives_blips(name: &str, route: Route, every: usize, fault: Fault, times: usize) {
    let weed = seaweed();
    let rest = FaultProxy::start(&weed.rest_uri);
    rest.plan(Plan::on(route).every(every).inject(fault.clone(), times));
    let scenario =
        Scenario::new(RestCatalog::Seaweed, name, 100, rest.uri(), &weed.s3_endpoint, "").await;
    let http = format!("127.0.0.1:{}", free_port());
    let mut daemon =
        Daemon::start_with(&scenario.dir, &scenario.sync_script(25), &["--http", &http]);
    wait_for_http(&http).await;
    daemon.wait_in_sync(&scenario, "after the snapshot").await;
    workload(&scenario, &rest, &mut daemon, 13).await;
    let metrics = get(&http, "/metrics").await.1;
    let failed = r#"misql_sync_phase{sync="orders",phase="failed"}"#;
    assert_eq!(sample(&metrics, failed), Some(0.0), "the sync failed:\n{}", daemon.tail());
    daemon.wait_in_sync(&scenario, "after the workload").await;
    assert_eq!(
        rest.injected_of(&fault),
        times,
        "not every planned fault was met (injected {:?}); misql's log ends:\n{}",
        rest.injected(),
        daemon.tail()
    );
    scenario.assert_exact(&format!("{times} × {}", fault.kind())).await;
    let metrics = get(&http, "/metrics").await.1;
    let retries = r#"misql_sync_retries_total{sync="orders"}"#;
    assert_eq!(
        sample(&metrics, retries),
        Some(0.0),
        "a blip is not a restart: {metrics}\nmisql's log ends:\n{}",
        daemon.tail()
    );
    assert!(daemon.exited().is_none(), "misql is still running");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_answering_503_is_tried_again_and_the_sync_neither_fails_nor_restarts() {
    survives_token_faults("token503", Fault::UnavailableBefore).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_exchange_whose_connection_drops_is_tried_again_without_a_restart() {
    survives_token_faults("tokendrop", Fault::DropAfter).await;
}

/// A commit refused with 401 (the token expired early, or was revoked) gets a new token and is
/// sent again, once: the sync neither fails nor restarts.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_refused_for_an_expired_token_gets_a_new_token_and_goes_through() {
    let commits = Route::rest_commit("orders");
    survives_blips("token401", commits, 3, Fault::UnauthorizedBefore, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_gets_through_a_token_endpoint_that_answers_503_twice() {
    let weed = seaweed();
    let rest = FaultProxy::start(&weed.rest_uri);
    rest.plan(Plan::on(Route::rest_token()).inject(Fault::UnavailableBefore, 2));
    let attached = connect(rest.uri(), &weed.options()).await;
    assert!(attached.is_ok(), "{:?}", attached.err());
    assert_eq!(rest.injected_of(&Fault::UnavailableBefore), 2, "{:?}", rest.injected());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_that_keeps_answering_503_is_unavailable_not_a_refused_credential() {
    let weed = seaweed();
    let rest = FaultProxy::start(&weed.rest_uri);
    rest.plan(Plan::on(Route::rest_token()).inject(Fault::UnavailableBefore, 100));
    let error = connect(rest.uri(), &weed.options()).await.expect_err("the catalog keeps failing");
    let text = error.to_string();
    assert!(!text.contains("refused the credential"), "{text}");
    assert!(text.contains("503"), "{text}");
    assert!(error.is_transient(), "a 503 may pass: {text}");
    assert!(rest.injected_of(&Fault::UnavailableBefore) > 1, "tried again: {:?}", rest.injected());
}
