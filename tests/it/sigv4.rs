//! SigV4-signed REST catalogs (S3 Tables, Glue) without AWS: misql reaches SeaweedFS's REST
//! catalog through [`SigV4Proxy`], which verifies every request's signature with botocore and
//! refuses the ones that do not verify in AWS's words. Credentials come from the environment, a
//! profile file, or a web-identity token file exchanged at the proxy's STS for credentials that
//! last 40 s. The table is compared with the collection read through the MongoDB driver, and
//! read with pyiceberg straight from SeaweedFS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bson::{Document, doc};
use futures::TryStreamExt;
use serde_json::Value;

use crate::support::data::{Rng, load, orders};
use crate::support::pyiceberg::{PyCatalog, pyiceberg_rows};
use crate::support::seaweed::{Seaweed, seaweed};
use crate::support::sigv4_proxy::{Key, Setup, SigV4Proxy};
use crate::support::{Run, TempDir, client, server, unique_db};
use crate::sync_stream::change;

const REGION: &str = "us-east-1";
const SERVICE: &str = "execute-api";
const ROLE: &str = "arn:aws:iam::123456789012:role/misql-test";
const WEB_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.test-service-account-token.sig";
/// Lifetime of the credentials the proxy's STS issues: several refreshes in a minute's run.
const STS_LIFETIME: u64 = 40;
const SELECT: &str = "_id, customer.name AS customer, status";

/// The proxy, knowing SeaweedFS's keys (so the S3 storage accepts the same credentials).
fn proxy_with(weed: &Seaweed, keys: Vec<Key>) -> SigV4Proxy {
    SigV4Proxy::start(
        weed,
        &Setup { region: REGION, service: SERVICE, keys, sts: None, vend: None },
    )
}

fn weed_key(weed: &Seaweed) -> Key<'_> {
    Key { key: &weed.access_key, secret: &weed.secret_key, token: None, expires: None }
}

/// The ATTACH of the catalog through `proxy`, signed, with `extra` options.
fn attach(proxy: &SigV4Proxy, weed: &Seaweed, extra: &str) -> String {
    format!(
        "ATTACH '{}' AS lake (TYPE iceberg, CATALOG 'rest', warehouse '{}', \
         \"rest.sigv4-enabled\" 'true', s3.endpoint '{}'{extra})",
        proxy.uri, weed.warehouse, weed.s3_endpoint
    )
}

/// The static SeaweedFS S3 keys, for tests whose signing credentials SeaweedFS does not know.
fn s3_keys(weed: &Seaweed) -> String {
    format!(", s3.access-key-id '{}', s3.secret-access-key '{}'", weed.access_key, weed.secret_key)
}

/// The environment of a misql run: no AWS settings from the machine running the tests (no
/// `~/.aws`, no instance metadata), then `env`.
fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_misql"));
    command.args(["--warehouse", dir.to_str().unwrap()]).args(args);
    command.env("MONGODB_URI", &server().uri).env_remove("RUST_LOG");
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    let nowhere = dir.join("no-aws-files");
    command.env("AWS_CONFIG_FILE", &nowhere).env("AWS_SHARED_CREDENTIALS_FILE", &nowhere);
    command.env("AWS_EC2_METADATA_DISABLED", "true");
    command.envs(env.iter().copied());
    command
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = command(dir, args, env).stdin(Stdio::null()).output().expect("run misql");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn sync_script(attach: &str, db: &str) -> String {
    format!(
        "{attach};\nCREATE SYNC orders FROM mongo.{db}.orders INTO lake.{db}.orders SELECT {SELECT} \
         WITH (flush_interval = '250ms', max_batch_rows = 40);\n"
    )
}

/// The collection as the driver reads it: `(_id hex, customer name, status)` by `_id`.
async fn collection_rows(db: &str) -> Vec<(String, String, String)> {
    let coll = client().await.database(db).collection::<Document>("orders");
    let docs: Vec<Document> = coll.find(doc! {}).await.unwrap().try_collect().await.unwrap();
    let mut rows: Vec<_> = docs
        .iter()
        .map(|d| {
            let name = d.get_document("customer").unwrap().get_str("name").unwrap();
            (
                d.get_object_id("_id").unwrap().to_hex(),
                name.to_string(),
                d.get_str("status").unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The table as pyiceberg reads it from SeaweedFS directly.
fn table_rows(weed: &Seaweed, db: &str) -> Vec<(String, String, String)> {
    let rows = pyiceberg_rows(&PyCatalog::seaweed(weed), &format!("{db}.orders"), "_id");
    let text = |row: &Value, f: &str| {
        row[f].as_str().unwrap_or_else(|| panic!("{f} in {row}")).to_string()
    };
    rows.iter().map(|r| (text(r, "_id"), text(r, "customer"), text(r, "status"))).collect()
}

/// Copies `db.orders` once through `attach` with `env`; the table then equals the collection.
async fn copy_once_and_compare(weed: &Seaweed, attach: &str, db: &str, env: &[(&str, &str)]) {
    let dir = TempDir::new();
    let script = sync_script(attach, db);
    let copied = run(&dir.0, &["--once", "-e", &script], env);
    assert!(copied.success, "the signed sync failed:\n{}", copied.stderr);
    assert_eq!(table_rows(weed, db), collection_rows(db).await, "table and collection differ");
}

/// Every request the proxy saw verified, and there were some of each kind misql sends: catalog
/// reads, and misql's own commits to `db.orders`.
fn assert_all_verified(stats: &Value, db: &str) {
    let verified = stats["verified"].as_u64().unwrap();
    assert!(verified > 0, "the proxy saw no signed request: {stats}");
    assert_eq!(stats["refused"], 0, "requests the proxy refused: {stats}");
    assert_eq!(stats["payload_hashed"].as_u64(), Some(verified), "x-amz-content-sha256: {stats}");
    assert!(stats["methods"]["GET"].as_u64() > Some(0), "catalog reads: {stats}");
    // POST /v1/{prefix}/namespaces/{db}/tables/orders: the commit.
    let commit = format!("/namespaces/{db}/tables/orders");
    let is_commit = |r: &str| r.starts_with("POST /v1/") && r.ends_with(&commit);
    let requests = stats["verified_requests"].as_array().unwrap();
    assert!(requests.iter().any(|r| r.as_str().is_some_and(is_commit)), "no commit: {stats}");
}

async fn orders_db(name: &str, n: u64) -> String {
    let db = unique_db(name);
    load(&db, "orders", &orders(n, 7 + n)).await;
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_through_a_sigv4_catalog_with_environment_credentials_signs_every_request() {
    let weed = seaweed();
    let env = [
        ("AWS_ACCESS_KEY_ID", weed.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", weed.secret_key.as_str()),
        ("AWS_REGION", REGION),
    ];
    signs_with_seaweeds_key_from("sigv4env", 120, &env).await;
}

/// Copies `n` orders through the signing proxy with no key in the ATTACH: the catalog and the
/// S3 storage both sign with SeaweedFS's key, which only `env` names. Every request verifies,
/// all signed with that key.
async fn signs_with_seaweeds_key_from(name: &str, n: u64, env: &[(&str, &str)]) {
    let weed = seaweed();
    let proxy = proxy_with(weed, vec![weed_key(weed)]);
    let db = orders_db(name, n).await;
    copy_once_and_compare(weed, &attach(&proxy, weed, ""), &db, env).await;
    let stats = proxy.stats();
    assert_all_verified(&stats, &db);
    assert_eq!(stats["keys_used"], serde_json::json!([weed.access_key]), "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_credentials_with_a_session_token_sign_and_verify() {
    let weed = seaweed();
    let expires = unix_now() + 3600.0;
    let temporary = Key {
        key: "ASIATEMPORARY01",
        secret: "temporary-secret",
        token: Some("session-token-1"),
        expires: Some(expires),
    };
    let proxy = proxy_with(weed, vec![temporary]);
    let db = orders_db("sigv4tmp", 60).await;
    let env = [
        ("AWS_ACCESS_KEY_ID", "ASIATEMPORARY01"),
        ("AWS_SECRET_ACCESS_KEY", "temporary-secret"),
        ("AWS_SESSION_TOKEN", "session-token-1"),
    ];
    let extra = format!(", \"rest.signing-region\" '{REGION}'{}", s3_keys(weed));
    copy_once_and_compare(weed, &attach(&proxy, weed, &extra), &db, &env).await;
    let stats = proxy.stats();
    assert_all_verified(&stats, &db);
    assert_eq!(stats["keys_used"], serde_json::json!(["ASIATEMPORARY01"]), "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_and_region_from_a_profile_file_sign_and_verify() {
    let weed = seaweed();
    let files = TempDir::new();
    let credentials = files.0.join("credentials");
    let config = files.0.join("config");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = AKIAWRONGDEFAULT\naws_secret_access_key = wrong\n\n\
             [misql-test]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            weed.access_key, weed.secret_key
        ),
    )
    .unwrap();
    std::fs::write(&config, format!("[profile misql-test]\nregion = {REGION}\n")).unwrap();
    let env = [
        ("AWS_PROFILE", "misql-test"),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
        ("AWS_CONFIG_FILE", config.to_str().unwrap()),
    ];
    signs_with_seaweeds_key_from("sigv4prof", 60, &env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_in_the_attach_sign_the_catalog_and_the_storage_without_any_aws_environment() {
    let weed = seaweed();
    let proxy = proxy_with(weed, vec![weed_key(weed)]);
    let db = orders_db("sigv4keys", 60).await;
    // No AWS_* variables, no files: the storage can only have its keys from the ATTACH's
    // rest.* keys, through the same credential source as the catalog.
    let extra = format!(
        ", \"rest.signing-region\" '{REGION}', \"rest.access-key-id\" '{}', \"rest.secret-access-key\" '{}'",
        weed.access_key, weed.secret_key
    );
    copy_once_and_compare(weed, &attach(&proxy, weed, &extra), &db, &[]).await;
    assert_all_verified(&proxy.stats(), &db);

    // The control: the same copy unsigned, straight to SeaweedFS, with no S3 keys: the storage
    // has no credentials to sign its writes with.
    let unsigned = format!(
        "ATTACH '{}' AS lake (TYPE iceberg, CATALOG 'rest', warehouse '{}', credential '{}', \
         s3.endpoint '{}')",
        weed.rest_uri,
        weed.warehouse,
        weed.credential(),
        weed.s3_endpoint
    );
    let other = orders_db("sigv4nokeys", 10).await;
    let dir = TempDir::new();
    let copied = run(&dir.0, &["--once", "-e", &sync_script(&unsigned, &other)], &[]);
    assert!(!copied.success, "S3 accepted writes without credentials:\n{}", copied.stdout);
    assert!(copied.stderr.contains("signing http request"), "{}", copied.stderr);
}

/// A catalog that vends storage credentials with `loadTable` (`X-Iceberg-Access-Delegation:
/// vended-credentials`, as Polaris and Lakekeeper do): the ATTACH names no S3 keys, and misql
/// signs the catalog with keys SeaweedFS's S3 does not know, so the table's files can only be
/// written with the keys the catalog vends in each table's `config`.
#[tokio::test(flavor = "multi_thread")]
async fn storage_credentials_a_catalog_vends_with_its_tables_write_the_files() {
    let weed = seaweed();
    let catalog_only =
        Key { key: "AKIACATALOGONLY1", secret: "catalog-secret", token: None, expires: None };
    let vend = serde_json::json!({
        "s3.access-key-id": weed.access_key,
        "s3.secret-access-key": weed.secret_key,
    });
    let setup = Setup {
        region: REGION,
        service: SERVICE,
        keys: vec![catalog_only],
        sts: None,
        vend: Some(vend),
    };
    let proxy = SigV4Proxy::start(weed, &setup);
    let db = orders_db("sigv4vend", 60).await;
    let extra = format!(
        ", \"rest.signing-region\" '{REGION}', \"rest.access-key-id\" 'AKIACATALOGONLY1', \
         \"rest.secret-access-key\" 'catalog-secret', \
         \"header.X-Iceberg-Access-Delegation\" 'vended-credentials'"
    );
    copy_once_and_compare(weed, &attach(&proxy, weed, &extra), &db, &[]).await;
    let stats = proxy.stats();
    assert_all_verified(&stats, &db);
    assert!(stats["vended"].as_u64() > Some(0), "no table answer vended credentials: {stats}");
    assert_eq!(stats["loads_without_delegation"], 0, "a table load without the header: {stats}");
}

/// ATTACH with `extra` options and `env` fails; the first line of its error, and the proxy.
fn refused_attach(extra: &str, env: &[(&str, &str)], keys: Vec<Key>) -> (String, Value) {
    let weed = seaweed();
    let proxy = proxy_with(weed, keys);
    let dir = TempDir::new();
    let sql = format!("{}; SHOW TABLES FROM lake", attach(&proxy, weed, extra));
    let run = run(&dir.0, &["-e", &sql], env);
    assert!(!run.success, "a refused signature must fail the ATTACH:\n{}", run.stdout);
    let first = run.stderr.lines().find(|l| l.starts_with("error")).unwrap_or_default().to_string();
    eprintln!("{first}");
    (first, proxy.stats())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_signature_fails_the_attach_with_one_sentence_naming_what_is_wrong() {
    let weed = seaweed();
    let good = [
        ("AWS_ACCESS_KEY_ID", weed.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", weed.secret_key.as_str()),
        ("AWS_REGION", REGION),
    ];
    let wrong_secret = [good[0], ("AWS_SECRET_ACCESS_KEY", "not-the-secret"), good[2]];
    let (error, stats) = refused_attach("", &wrong_secret, vec![weed_key(weed)]);
    let expected = format!(
        "the secret access key does not match access key id {} (from the AWS credential chain)",
        weed.access_key
    );
    assert!(error.contains(&expected), "{error}");
    assert!(stats["refused"].as_u64() > Some(0) && stats["verified"] == 0, "{stats}");

    let (error, _) =
        refused_attach(", \"rest.signing-region\" 'eu-west-1'", &good, vec![weed_key(weed)]);
    assert!(
        error.contains("the signing region 'eu-west-1' is not the catalog's region"),
        "{error}"
    );

    let (error, _) =
        refused_attach(", \"rest.signing-name\" 's3tables'", &good, vec![weed_key(weed)]);
    assert!(
        error.contains("the signing name 's3tables' is wrong, it expects 'execute-api'"),
        "{error}"
    );

    let expired = Key {
        key: "ASIAEXPIRED0001",
        secret: "s",
        token: Some("old-token"),
        expires: Some(unix_now() - 60.0),
    };
    let env = [
        ("AWS_ACCESS_KEY_ID", "ASIAEXPIRED0001"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
        ("AWS_SESSION_TOKEN", "old-token"),
        ("AWS_REGION", REGION),
    ];
    let (error, _) = refused_attach(&s3_keys(weed), &env, vec![expired]);
    assert!(error.contains("the session token of access key id ASIAEXPIRED0001"), "{error}");
    assert!(error.contains("has expired"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigv4_options_without_sigv4_enabled_or_a_region_are_refused_with_what_to_add() {
    let dir = TempDir::new();
    let weed = seaweed();
    let sql = format!(
        "ATTACH '{}' AS lake (TYPE iceberg, CATALOG 'rest', \"rest.signing-name\" 'glue')",
        weed.rest_uri
    );
    let run = run(&dir.0, &["-e", &sql], &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("\"rest.sigv4-enabled\" is not 'true'"), "{}", run.stderr);
    let sql = format!(
        "ATTACH '{}' AS lake (TYPE iceberg, CATALOG 'rest', \"rest.sigv4-enabled\" 'true')",
        weed.rest_uri
    );
    let run = self::run(&dir.0, &["-e", &sql], &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("needs a signing region"), "{}", run.stderr);
    let sql = "ATTACH './w' AS lake (TYPE iceberg, \"rest.sigv4-enabled\" 'yes')";
    let run = self::run(&dir.0, &["-e", sql], &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("rest.sigv4-enabled"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn web_identity_credentials_are_refreshed_during_a_streaming_run_with_nothing_lost() {
    let weed = seaweed();
    let setup = Setup {
        region: REGION,
        service: SERVICE,
        keys: vec![],
        sts: Some((ROLE, WEB_TOKEN, STS_LIFETIME)),
        vend: None,
    };
    let proxy = SigV4Proxy::start(weed, &setup);
    let db = orders_db("sigv4web", 80).await;
    let dir = TempDir::new();
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, WEB_TOKEN).unwrap();
    let script = dir.0.join("syncs.sql");
    let extra = format!(", \"rest.signing-region\" '{REGION}'{}", s3_keys(weed));
    std::fs::write(&script, sync_script(&attach(&proxy, weed, &extra), &db)).unwrap();
    let env = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ROLE_ARN", ROLE),
        ("AWS_ROLE_SESSION_NAME", "misql-test"),
        ("AWS_ENDPOINT_URL_STS", proxy.uri.as_str()),
        ("AWS_REGION", REGION),
    ];
    let log = dir.0.join("misql.log");
    let mut daemon = crate::support::Daemon(
        command(&dir.0, &["-f", script.to_str().unwrap()], &env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // Changes for longer than two credential lifetimes.
    let coll = client().await.database(&db).collection::<Document>("orders");
    let (mut rng, mut next_id) = (Rng::new(5), 100_000);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2 * STS_LIFETIME + 10) {
        change(&coll, &mut rng, &mut next_id).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(daemon.try_wait().unwrap().is_none(), "misql exited:\n{}", read(&log));
    }
    let expected = collection_rows(&db).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut table = table_rows(weed, &db);
    while table != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        table = table_rows(weed, &db);
    }
    assert_eq!(
        table,
        expected,
        "the table differs from the collection; misql's log:\n{}",
        read(&log)
    );
    let stats = proxy.stats();
    assert_all_verified(&stats, &db);
    assert!(stats["sts_calls"].as_u64() >= Some(3), "credentials were not refreshed: {stats}");
    assert!(stats["keys_used"].as_array().unwrap().len() >= 3, "{stats}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}
