//! The interactive shell driven through a pseudo-terminal, as a user types into it: Tab
//! completion from what is attached, log lines of a running sync that leave the typed line
//! intact, the backslash commands, and readable errors.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rexpect::session::{PtySession, spawn_with_options};

use crate::support::data::{load, orders};
use crate::support::server::server;
use crate::support::{misql, unique_db, warehouse};

/// `misql` (the shell: no statement, no file) on a pseudo-terminal, in `dir`.
fn shell(dir: &Path) -> PtySession {
    shell_logging(dir, "misql=info,warn")
}

/// [`shell`] with `RUST_LOG=filter`.
fn shell_logging(dir: &Path, filter: &str) -> PtySession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_misql"));
    command
        .args(["--warehouse", dir.to_str().unwrap()])
        .env("MONGODB_URI", &server().uri)
        .env("HOME", dir)
        .env("TERM", "xterm")
        .env("RUST_LOG", filter);
    let options = rexpect::reader::Options::new().timeout_ms(Some(30_000));
    let mut session = spawn_with_options(command, options.strip_ansi_escape_codes(true))
        .expect("start the shell on a pseudo-terminal");
    session.exp_string("type \\? for help").expect("the shell's greeting");
    session
}

/// Types `text` key by key, as a person does, and waits for `expected` in what the shell
/// prints. Each printable key waits for its echo before the next is sent: rustyline 17, with
/// an external printer, leaves keys that reach it in one read unprocessed until the next key
/// (its `select` does not look at what it has buffered), which a person typing never meets.
fn typed(session: &mut PtySession, text: &str, expected: &str) -> String {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        session.send(&c.to_string()).unwrap();
        session.flush().unwrap();
        if chars.peek().is_some() {
            if c.is_ascii_graphic() || c == ' ' {
                session.exp_string(&c.to_string()).unwrap_or_else(|e| panic!("echo of {c:?}: {e}"));
            } else {
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
    }
    if text.ends_with('\t') {
        return completed(session, text, expected);
    }
    session.exp_string(expected).unwrap_or_else(|e| panic!("after {text:?}: {e}"))
}

/// Waits for `expected` after a Tab, pressing Tab again every 3 s (at most 10 times): a Tab
/// waits at most 300 ms for names still being fetched, and rings the bell meanwhile; a later
/// Tab completes them, as a person would press it again.
fn completed(session: &mut PtySession, text: &str, expected: &str) -> String {
    let mut seen = String::new();
    for _ in 0..10 {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < until {
            match session.try_read() {
                Some(c) => seen.push(c),
                None => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
            if seen.contains(expected) {
                return seen;
            }
        }
        session.send("\t").unwrap();
        session.flush().unwrap();
    }
    panic!("after {text:?} and more Tabs: expected {expected:?}, saw {seen:?}")
}

#[tokio::test(flavor = "multi_thread")]
async fn tab_completes_databases_collections_and_field_paths() {
    let db = unique_db("tabdb");
    load(&db, "orders", &orders(20, 301)).await;
    let dir = warehouse("tab");
    let mut sh = shell(&dir);
    // The database from its first letters, the collection from `.ord`.
    let prefix = &db[..db.len() - 2];
    typed(&mut sh, &format!("DESCRIBE mongo.{prefix}\t"), &db);
    typed(&mut sh, ".ord\t", "orders");
    typed(&mut sh, ";\r", "customer");
    sh.exp_string("misql> ").unwrap();
    // A field of the collection the statement names, then a nested path of it.
    typed(&mut sh, &format!("SELECT _id FROM mongo.{db}.orders WHERE cust\t"), "customer");
    typed(&mut sh, ".addr\t", "customer.address");
    typed(&mut sh, ".ci\t", "customer.address.city");
    typed(&mut sh, " IS NOT NULL LIMIT 1;\r", "650000000000000000000000");
    // A nested field's column is named by its path.
    typed(
        &mut sh,
        &format!("SELECT customer.address.city FROM mongo.{db}.orders LIMIT 1;\r"),
        "| customer.address.city |",
    );
    // A backslash command.
    typed(&mut sh, "\\tim\t", "\\timing");
    typed(&mut sh, "\r", "timing is off");
    sh.send_line("\\q").unwrap();
    sh.exp_eof().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_sync_logs_above_the_prompt_never_over_a_typed_line() {
    let db = unique_db("shelllog");
    load(&db, "orders", &orders(300, 302)).await;
    let dir = warehouse("shelllog");
    // At debug level the sync logs every commit, idle ones too (every flush interval).
    let mut sh = shell_logging(&dir, "misql=debug,warn");
    let create = format!(
        "CREATE SYNC orders FROM mongo.{db}.orders INTO iceberg.{db}.orders \
         WITH (max_batch_rows = 50, flush_interval = '500ms');\r"
    );
    typed(&mut sh, &create, "sync orders started");
    // Nothing typed: its log lines show at once, each followed by the prompt again.
    sh.exp_string("snapshot complete").expect("a log line shown while nothing is typed");
    sh.exp_string("committed snapshot").expect("the commits go on");
    sh.exp_string("misql> ").expect("the prompt drawn again below the log line");
    // Half a statement typed: the commits' log lines wait; nothing is printed over it.
    typed(&mut sh, "SELECT 4", "4");
    // Until the sync has committed twice more while the line is half typed (its metadata files
    // tell: a wait on the table, not a fixed sleep, so the absence below means something).
    let metadata = dir.join(&db).join("orders").join("metadata");
    let commits = || std::fs::read_dir(&metadata).map_or(0, |d| d.count());
    let (before, deadline) = (commits(), std::time::Instant::now() + Duration::from_secs(20));
    while commits() < before + 2 {
        assert!(std::time::Instant::now() < deadline, "the sync committed nothing for 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut shown = String::new();
    while let Some(c) = sh.try_read() {
        shown.push(c);
    }
    assert!(!shown.contains("committed"), "a log line was printed over the typed line: {shown:?}");
    // The rest of the line: the held log lines come first, then the answer of the whole line.
    typed(&mut sh, "0 + 2 AS answer;\r", "committed snapshot");
    sh.exp_string("| 42 ").expect("the typed line ran whole");
    typed(&mut sh, "\\progress\r", "sync orders: streaming");
    sh.send_line("\\q").unwrap();
    sh.exp_eof().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn backslash_commands_list_describe_format_and_redirect() {
    let db = unique_db("bslash");
    load(&db, "orders", &orders(5, 303)).await;
    let dir = warehouse("bslash");
    let script = dir.join("two.sql");
    std::fs::write(&script, "SELECT 7 AS seven;\nSELECT 8 AS eight;\n").unwrap();
    let out = dir.join("out.txt");
    let mut sh = shell(&dir);
    typed(&mut sh, "\\?\r", "\\dt [name]");
    typed(&mut sh, "\\l\r", &db);
    typed(&mut sh, &format!("\\dt mongo.{db}\r"), "| orders");
    typed(&mut sh, &format!("\\d mongo.{db}.orders\r"), "created_at");
    typed(&mut sh, "\\x\r", "expanded display is on");
    typed(&mut sh, "SELECT 1 AS a, 'b' AS bee;\r", "-[ RECORD 1 ]");
    sh.exp_string("bee | b").unwrap();
    typed(&mut sh, "\\x\r", "expanded display is off");
    typed(&mut sh, "\\format csv\r", "results are printed as Csv");
    typed(&mut sh, "\\timing\r", "timing is off");
    typed(&mut sh, &format!("\\o {}\r", out.display()), "results go to");
    typed(&mut sh, &format!("\\i {}\r", script.display()), "misql> ");
    typed(&mut sh, "\\o\r", "results go to the screen");
    typed(&mut sh, "\\format tables\r", "unknown format `tables`");
    typed(&mut sh, "\\zz\r", "unknown command \\zz");
    typed(&mut sh, "\\d\r", "\\d needs a name");
    sh.send_line("\\q").unwrap();
    sh.exp_eof().unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "seven\n7\neight\n8\n");
}

/// What a driver error says must be one sentence, never the driver's debug structure.
fn assert_sentence(stderr: &str, expected: &str) {
    assert!(stderr.contains(expected), "{stderr}");
    for debug in ["Kind:", "labels:", "source: Some", "CommandError {"] {
        assert!(!stderr.contains(debug), "the driver's debug structure leaked: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn driver_errors_read_as_one_sentence() {
    use crate::support::server::{free_port, start_persistent, start_persistent_with};
    // A wrong password: a server of the test's own, with a user, restarted with --auth.
    let storage = warehouse("auth_data");
    let port = free_port();
    let server = start_persistent(port, &storage);
    let client = mongodb::Client::with_uri_str(&server.uri).await.unwrap();
    let create = bson::doc! { "createUser": "admin", "pwd": "right", "roles": ["root"] };
    client.database("admin").run_command(create).await.unwrap();
    drop(client);
    drop(server);
    let _server = start_persistent_with(port, &storage, &["--auth"]);
    let uri = format!("mongodb://admin:wrong@127.0.0.1:{port}/?directConnection=true");
    let run = misql(&["--mongodb-uri", &uri, "-e", "SHOW DATABASES"]);
    assert!(!run.success);
    assert_sentence(&run.stderr, "authentication failed");
    assert!(run.stderr.contains("check the user name and password"), "{}", run.stderr);
    assert!(!run.stderr.contains("wrong"), "the password is never printed: {}", run.stderr);
    // An unknown host and a server that is down.
    let unknown = "mongodb://nohost.invalid:27017/?serverSelectionTimeoutMS=2000";
    let run = misql(&["--mongodb-uri", unknown, "-e", "SHOW DATABASES"]);
    assert_sentence(
        &run.stderr,
        "cannot reach MongoDB: listing databases at mongodb://nohost.invalid",
    );
    let down = format!("mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=500", free_port());
    let run = misql(&["--mongodb-uri", &down, "-e", "SHOW COLLECTIONS FROM mongo.shop"]);
    assert_sentence(&run.stderr, "Connection refused");
    // A catalog that is down.
    let attach = "ATTACH 'http://127.0.0.1:9' AS lake (TYPE iceberg, CATALOG 'rest')";
    let run = misql(&["-e", attach]);
    assert_sentence(&run.stderr, "cannot reach the Iceberg REST catalog at http://127.0.0.1:9");
    assert!(
        run.stderr.contains("hint: check that the catalog server is running"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_that_refuses_the_writes_reads_as_one_sentence() {
    use crate::support::data::{load, orders};
    use crate::support::seaweed::seaweed;
    let db = unique_db("denied");
    load(&db, "orders", &orders(5, 304)).await;
    let weed = seaweed();
    let secret = format!("s3.secret-access-key '{}'", weed.secret_key);
    let attach = weed.attach_sql("lake").replace(&secret, "s3.secret-access-key 'not-the-secret'");
    let dir = warehouse("denied");
    let create = format!("CREATE SYNC o FROM mongo.{db}.orders INTO lake.{db}.orders");
    let run = crate::support::misql_in(&dir, &["--once", "-e", &attach, "-e", &create]);
    assert!(!run.success);
    let error = run.stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert_sentence(error, "the object store refused it: permission denied");
    assert!(!error.contains("headers"), "the request's context leaked: {error}");
    assert!(error.contains("check the S3 credentials"), "{error}");
    // Retrying with the same credentials cannot help: the first refusal ends the run.
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
}
