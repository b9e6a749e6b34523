//! Test fixtures: the SecantusDB server, seaweedfs (S3 + Iceberg REST catalog), rustberg (a second
//! REST catalog, over seaweedfs's S3), pyiceberg as an independent reader, generated order
//! documents, and running the `misql` binary against them.

pub mod child;
pub mod commit;
pub mod data;
pub mod duckdb;
pub mod fault_proxy;
pub mod fault_scenario;
pub mod oracle;
pub mod pyiceberg;
pub mod rest_catalog;
pub mod rustberg;
pub mod seaweed;
pub mod server;
pub mod sigv4_proxy;
pub mod slow_link;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use server::server;

/// A database name no other test uses.
pub fn unique_db(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A driver client for the test server.
pub async fn client() -> mongodb::Client {
    mongodb::Client::with_uri_str(&server().uri).await.expect("connect to the test server")
}

/// What a `misql` run printed.
pub struct Run {
    /// Exit status was 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs the `misql` binary with `args`, `MONGODB_URI` pointing at the test server.
pub fn misql(args: &[&str]) -> Run {
    misql_with_stdin(args, None)
}

/// Runs the `misql` binary with `args` and `stdin` piped in.
pub fn misql_with_stdin(args: &[&str], stdin: Option<&str>) -> Run {
    run_misql(args, stdin, &[])
}

/// Runs the `misql` binary in warehouse `dir` with `args` and extra environment variables.
pub fn misql_in_with_env(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec!["--warehouse", dir.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    run_misql(&all, None, env)
}

fn run_misql(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_misql"));
    command.args(args).env("MONGODB_URI", &server().uri);
    command.log_level();
    command.envs(env.iter().copied());
    command.stdin(std::process::Stdio::piped());
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("run misql");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    let Output { status, stdout, stderr } = child.wait_with_output().expect("wait for misql");
    Run {
        success: status.success(),
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
    }
}

/// A misql daemon a test started: killed (SIGKILL) when dropped, so a test that fails leaves
/// no process behind to load the tests that follow.
pub struct Daemon(pub std::process::Child);

impl std::ops::Deref for Daemon {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `misql -f file` in warehouse `dir` as a daemon against the test server, its output
/// discarded; crash tests kill it.
pub fn daemon(dir: &std::path::Path, file: &std::path::Path) -> Daemon {
    daemon_logged(dir, file, None)
}

/// [`daemon`], its log (stderr) written to `log` when given.
pub fn daemon_logged(
    dir: &std::path::Path,
    file: &std::path::Path,
    log: Option<&std::path::Path>,
) -> Daemon {
    daemon_with(dir, file, log, &[])
}

/// [`daemon_logged`] with more arguments (`--http ADDR`, ...).
pub fn daemon_with(
    dir: &std::path::Path,
    file: &std::path::Path,
    log: Option<&std::path::Path>,
    args: &[&str],
) -> Daemon {
    let stderr = match log {
        Some(path) => std::process::Stdio::from(std::fs::File::create(path).expect("log file")),
        None => std::process::Stdio::null(),
    };
    Command::new(env!("CARGO_BIN_EXE_misql"))
        .args(["--warehouse", dir.to_str().expect("UTF-8 path")])
        .args(["-f", file.to_str().expect("UTF-8 path")])
        .args(args)
        .env("MONGODB_URI", &server().uri)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .log_level()
        .spawn()
        .map(Daemon)
        .expect("start misql")
}

/// `misql --warehouse dir -f file args...` as a daemon against the MongoDB at `uri`, its log
/// appended to `dir/misql.log` (restarts keep the earlier runs' lines).
pub fn daemon_appending(
    dir: &std::path::Path,
    file: &std::path::Path,
    uri: &str,
    args: &[&str],
) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("misql.log"))
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_misql"))
        .args(["--warehouse", dir.to_str().expect("UTF-8 path")])
        .args(["-f", file.to_str().expect("UTF-8 path")])
        .args(args)
        .env("MONGODB_URI", uri)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log))
        .log_level()
        .spawn()
        .map(Daemon)
        .expect("start misql")
}

/// A fresh directory under the system temp dir (absolute, canonical), removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A new, empty directory.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("misql-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Self(std::fs::canonicalize(&path).expect("canonical temp dir"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new, empty warehouse directory for the embedded Iceberg catalog.
pub fn warehouse(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique_db(&format!("misql_wh_{prefix}")));
    std::fs::create_dir_all(&dir).expect("create warehouse");
    dir
}

/// `misql --warehouse DIR args...` against the test server.
pub fn misql_in(dir: &std::path::Path, args: &[&str]) -> Run {
    let mut all = vec!["--warehouse", dir.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    misql(&all)
}

/// The rows of `sql` (run with `--format json` in warehouse `dir`) as JSON objects.
pub fn json_rows(dir: &std::path::Path, sql: &str) -> Vec<serde_json::Value> {
    json_rows_with(dir, &[], sql)
}

/// [`json_rows`] with extra arguments, such as `--mongodb-uri` of a private server.
pub fn json_rows_with(dir: &std::path::Path, args: &[&str], sql: &str) -> Vec<serde_json::Value> {
    let run = misql_in(dir, &[args, &["--format", "json", "-e", sql]].concat());
    assert!(run.success, "{sql} failed: {}", run.stderr);
    run.stdout.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

/// Asserts that `rows` (ordered by `_id`) equal `expected` and hold no `_id` twice.
pub fn assert_exactly(rows: &[serde_json::Value], expected: &[serde_json::Value], after: &str) {
    let mut keys: Vec<&str> = rows.iter().map(|r| r["_id"].as_str().expect("_id")).collect();
    keys.dedup();
    assert_eq!(keys.len(), rows.len(), "duplicates after {after}");
    assert_eq!(rows, expected, "rows differ after {after}");
}

/// Parses CSV output (header row first) into rows of fields.
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_string).collect())
        .collect()
}

/// The log level of the misql processes a test starts: misql's default (INFO), whatever
/// `RUST_LOG` the test run has, unless `MISQL_TEST_RUST_LOG` gives one (`debug`, for example,
/// to read what a daemon did in a test that prints its log).
pub trait LogLevel {
    fn log_level(&mut self) -> &mut Self;
}

impl LogLevel for Command {
    fn log_level(&mut self) -> &mut Self {
        match std::env::var("MISQL_TEST_RUST_LOG") {
            Ok(level) => self.env("RUST_LOG", level),
            Err(_) => self.env_remove("RUST_LOG"),
        }
    }
}
