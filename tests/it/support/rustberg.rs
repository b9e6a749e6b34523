//! rustberg (crates.io), a second Iceberg REST catalog beside SeaweedFS's: started once per test
//! process on a free loopback port with `--dev --no-auth --insecure-http`, its own catalog state
//! (a redb file) in a temp dir, its warehouse in the bucket `rustberg` of the running SeaweedFS
//! ([`seaweed()`]), which it reaches with path-style requests and SeaweedFS's static keys.
//!
//! rustberg is built by scripts/setup-test-env.sh into a cache outside the repository (see
//! [`rustberg_exe`]); it takes a while to build, so the setup script does it once per machine.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::child::{remove_stale_dirs, start_with_retries, wrapped};
use super::pyiceberg::python as venv_python;
use super::seaweed::{Seaweed, http, seaweed};
use super::server::free_port;

/// The version the tests are written against (pinned in scripts/setup-test-env.sh).
pub const RUSTBERG_VERSION: &str = "0.3.0";

/// The SeaweedFS bucket rustberg keeps its tables in (an ordinary bucket, not a table bucket).
const BUCKET: &str = "rustberg";

/// A running rustberg.
pub struct Rustberg {
    /// The Iceberg REST catalog, `http://127.0.0.1:PORT`.
    pub rest_uri: String,
    /// The warehouse rustberg serves, `s3://rustberg/warehouse` (what `/v1/config` advertises
    /// as `overrides.warehouse`; a client naming another warehouse is refused).
    pub warehouse: String,
    /// How long the server took to come up (process start to an answered catalog request).
    pub started_in: Duration,
    /// The server's directory: its config `rustberg.toml`, its catalog `catalog/` and its log
    /// `rustberg.log`.
    pub dir: PathBuf,
    /// The SeaweedFS whose S3 holds the tables.
    pub s3: &'static Seaweed,
    /// Kept so the wrapper's stdin stays open while the tests run (see secantus_child.py).
    _child: Mutex<Child>,
}

impl Rustberg {
    /// The ATTACH options (as the parser gives them to `misql::lake::catalog::connect`) for
    /// this server: no credential (it runs without authentication), S3 as for SeaweedFS.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("catalog", "rest".to_string()),
            ("warehouse", self.warehouse.clone()),
            ("s3.endpoint", self.s3.s3_endpoint.clone()),
            ("s3.access-key-id", self.s3.access_key.clone()),
            ("s3.secret-access-key", self.s3.secret_key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `ATTACH '<rest uri>' AS <name> (TYPE iceberg, CATALOG 'rest', ...)` for this server.
    pub fn attach_sql(&self, name: &str) -> String {
        self.attach_sql_via(name, &self.rest_uri, &self.s3.s3_endpoint, "")
    }

    /// [`Self::attach_sql`] with the catalog at `rest_uri` and S3 at `s3_endpoint` (e.g. a
    /// proxy in front of them), and `extra` options (`, key 'value'...`) appended.
    pub fn attach_sql_via(
        &self,
        name: &str,
        rest_uri: &str,
        s3_endpoint: &str,
        extra: &str,
    ) -> String {
        format!(
            "ATTACH '{rest_uri}' AS {name} (TYPE iceberg, CATALOG 'rest', warehouse '{}', \
             s3.endpoint '{s3_endpoint}', s3.access-key-id '{}', s3.secret-access-key '{}'{extra})",
            self.warehouse, self.s3.access_key, self.s3.secret_key
        )
    }
}

/// The shared server, started on first use (SeaweedFS with it).
pub fn rustberg() -> &'static Rustberg {
    static RUSTBERG: OnceLock<Rustberg> = OnceLock::new();
    RUSTBERG.get_or_init(start)
}

fn start() -> Rustberg {
    let exe = rustberg_exe();
    let s3 = seaweed();
    create_bucket(s3);
    remove_stale_dirs("misql-rustberg-");
    let dir = std::env::temp_dir().join(format!("misql-rustberg-{}", std::process::id()));
    let warehouse = format!("s3://{BUCKET}/warehouse");
    let launch = || {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("catalog")).expect("create the rustberg directory");
        std::fs::write(dir.join("rustberg.toml"), config(&dir, &warehouse, s3))
            .expect("write rustberg.toml");
        let port = free_port();
        (spawn(&exe, &dir, port), port)
    };
    let ready = |port: &u16| ready(*port, &warehouse);
    let (child, port, started_in) =
        start_with_retries("rustberg", &dir.join("rustberg.log"), launch, ready);
    Rustberg {
        rest_uri: format!("http://127.0.0.1:{port}"),
        warehouse,
        started_in,
        dir,
        s3,
        _child: Mutex::new(child),
    }
}

/// rustberg's configuration: the catalog in `dir/catalog`, the warehouse on SeaweedFS's S3
/// (path-style, static keys), no rate limit (the tests send bursts from one address) and no
/// audit trail (it would go to stdout, the log).
fn config(dir: &Path, warehouse: &str, s3: &Seaweed) -> String {
    format!(
        r#"[storage]
catalog_url = "file://{catalog}"
warehouse_location = "{warehouse}"

[storage.properties]
"s3.endpoint" = "{endpoint}"
"s3.path-style-access" = "true"
"s3.region" = "us-east-1"
"s3.access-key-id" = "{key}"
"s3.secret-access-key" = "{secret}"

[rate_limit]
enabled = false

[audit]
sink = "none"

[logging]
level = "info"
with_span_events = false
"#,
        catalog = dir.join("catalog").display(),
        endpoint = s3.s3_endpoint,
        key = s3.access_key,
        secret = s3.secret_key,
    )
}

fn spawn(exe: &Path, dir: &Path, port: u16) -> Child {
    let log = File::create(dir.join("rustberg.log")).expect("create rustberg.log");
    wrapped(exe)
        .arg("--config")
        .arg(dir.join("rustberg.toml"))
        .args(["--dev", "--no-auth", "--insecure-http", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .env_remove("RUST_LOG")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()))
}

/// Ready means: `/v1/config` advertises our warehouse and the namespaces can be listed.
fn ready(port: u16, warehouse: &str) -> Result<(), String> {
    let get = |path: &str| {
        http(port, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
    };
    let (status, text) = get("/v1/config")?;
    if status != 200 {
        return Err(format!("config: HTTP {status}: {text}"));
    }
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("config response {text}: {e}"))?;
    if json["overrides"]["warehouse"] != warehouse {
        return Err(format!("config does not advertise the warehouse {warehouse}: {text}"));
    }
    let (status, text) = get("/v1/namespaces")?;
    if status != 200 {
        return Err(format!("namespace listing: HTTP {status}: {text}"));
    }
    Ok(())
}

/// Creates the bucket [`BUCKET`] in SeaweedFS's S3 (with botocore, installed beside pyiceberg);
/// an existing bucket is fine.
fn create_bucket(s3: &Seaweed) {
    let script = format!(
        "import botocore.session\n\
         s3 = botocore.session.get_session().create_client('s3', region_name='us-east-1', \
         endpoint_url={endpoint:?}, aws_access_key_id={key:?}, aws_secret_access_key={secret:?})\n\
         try:\n    s3.create_bucket(Bucket={BUCKET:?})\n\
         except s3.exceptions.BucketAlreadyOwnedByYou:\n    pass\n",
        endpoint = s3.s3_endpoint,
        key = s3.access_key,
        secret = s3.secret_key,
    );
    let output = Command::new(venv_python())
        .args(["-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python to create the bucket {BUCKET}: {e}"));
    assert!(
        output.status.success(),
        "cannot create the bucket {BUCKET} in SeaweedFS for rustberg:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `rustberg`: `$RUSTBERG_BIN`, else the cache scripts/setup-test-env.sh installs into
/// (`${MISQL_TOOLS:-$HOME/.cache/misql-tools}/rustberg-<version>/bin/rustberg`).
pub fn rustberg_exe() -> PathBuf {
    if let Some(path) = std::env::var_os("RUSTBERG_BIN") {
        return PathBuf::from(path);
    }
    let tools = std::env::var_os("MISQL_TOOLS").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/misql-tools"))
    });
    let cached = tools.map(|t| t.join(format!("rustberg-{RUSTBERG_VERSION}/bin/rustberg")));
    if let Some(cached) = cached.filter(|p| p.is_file()) {
        return cached;
    }
    panic!(
        "rustberg {RUSTBERG_VERSION} is not installed: the REST-catalog tests run on it too.\n\
         Install it with: scripts/setup-test-env.sh (it builds rustberg once into \
         ${{MISQL_TOOLS:-$HOME/.cache/misql-tools}}/rustberg-{RUSTBERG_VERSION}),\n\
         or point RUSTBERG_BIN at a rustberg {RUSTBERG_VERSION} executable."
    );
}
