//! `sigv4_proxy.py`: a proxy in front of SeaweedFS's REST catalog that verifies each request's
//! SigV4 signature with botocore (an implementation independent of misql's) and refuses the ones
//! that do not verify as AWS does; it also serves STS `AssumeRoleWithWebIdentity` with
//! short-lived credentials. Started per test, stopped when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::TempDir;
use super::pyiceberg::python;
use super::seaweed::Seaweed;

/// A known credential: `(access key id, secret, session token, expiry in Unix seconds)`.
pub struct Key<'a> {
    /// Access key id.
    pub key: &'a str,
    /// Secret access key.
    pub secret: &'a str,
    /// Session token of temporary credentials.
    pub token: Option<&'a str>,
    /// When they expire (Unix seconds).
    pub expires: Option<f64>,
}

/// How the proxy is set up.
pub struct Setup<'a> {
    /// The region signatures must be scoped to.
    pub region: &'a str,
    /// The service (signing name) signatures must be scoped to.
    pub service: &'a str,
    /// The credentials it knows from the start.
    pub keys: Vec<Key<'a>>,
    /// `(role ARN, web identity token, lifetime in seconds)` for its STS.
    pub sts: Option<(&'a str, &'a str, u64)>,
    /// Storage properties (S3 keys) it vends in the `config` of table answers to requests that
    /// ask for vended credentials.
    pub vend: Option<serde_json::Value>,
}

/// A running verifying proxy.
pub struct SigV4Proxy {
    /// `http://127.0.0.1:PORT`: the catalog URI to ATTACH, and the STS endpoint.
    pub uri: String,
    child: Child,
    _stdin: ChildStdin,
    _dir: TempDir,
}

impl SigV4Proxy {
    /// Starts a proxy in front of `weed`'s REST catalog.
    pub fn start(weed: &Seaweed, setup: &Setup) -> Self {
        let dir = TempDir::new();
        let keys: Vec<serde_json::Value> = setup
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({"key": k.key, "secret": k.secret, "token": k.token, "expires": k.expires})
            })
            .collect();
        let keys_file = dir.0.join("keys.json");
        std::fs::write(&keys_file, serde_json::to_string(&keys).unwrap()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/sigv4_proxy.py");
        let mut command = Command::new(python());
        command.arg(script).args(["--upstream", &weed.rest_uri]);
        command.args(["--upstream-credential", &weed.credential()]);
        command.args(["--region", setup.region, "--service", setup.service]);
        command.arg("--keys").arg(&keys_file);
        if let Some((role, token, lifetime)) = setup.sts {
            command.args(["--role-arn", role, "--web-identity-token", token]);
            command.args(["--sts-lifetime", &lifetime.to_string()]);
        }
        if let Some(vend) = &setup.vend {
            command.args(["--vend", &vend.to_string()]);
        }
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start sigv4_proxy.py");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let started: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("sigv4_proxy.py said {line:?}"));
        let uri = format!("http://127.0.0.1:{}", started["port"]);
        Self { uri, child, _stdin: stdin, _dir: dir }
    }

    /// What the proxy counted: `verified`, `refused`, `payload_hashed`, `sts_calls`, `keys_used`,
    /// `refusals` (one line each), `methods`, `vended`, `loads_without_delegation`.
    pub fn stats(&self) -> serde_json::Value {
        let address = self.uri.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        let request =
            format!("GET /_proxy/stats HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        serde_json::from_str(body).unwrap_or_else(|_| panic!("stats: {answer}"))
    }
}

impl Drop for SigV4Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
