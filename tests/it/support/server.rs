//! A SecantusDB server (a MongoDB-wire-compatible server from PyPI) started once per test run on
//! a free loopback port, reached through the official `mongodb` driver.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::child::{installed, stop, wrapped};

/// The version the tests are written against.
pub const SECANTUS_VERSION: &str = "0.7.0b3";

/// A running server.
pub struct Server {
    /// `mongodb://127.0.0.1:PORT/?directConnection=true`
    pub uri: String,
    /// Kept so the child's stdin stays open while the tests run (see secantus_child.py).
    _child: Mutex<Child>,
}

impl Drop for Server {
    /// Closes the wrapper's stdin and waits until it has stopped the server, so that a server
    /// started again on the same storage never meets the old one still writing to it.
    fn drop(&mut self) {
        stop(self._child.get_mut().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The shared server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> Server {
    start_with(free_port(), ":memory:", &[])
}

/// A server of the test's own (stopped when dropped), with extra flags such as
/// `--enable-test-commands` for failpoints, which act server-wide.
pub fn start_private(extra: &[&str]) -> Server {
    start_with(free_port(), ":memory:", extra)
}

/// A server of the test's own on `port` keeping its data in `storage`, so that it can be
/// stopped (dropped) and started again with the same data, as a restarted mongod would.
pub fn start_persistent(port: u16, storage: &Path) -> Server {
    start_persistent_with(port, storage, &[])
}

/// [`start_persistent`] with extra flags (`--auth`).
pub fn start_persistent_with(port: u16, storage: &Path, extra: &[&str]) -> Server {
    start_with(port, storage.to_str().expect("UTF-8 path"), extra)
}

fn start_with(port: u16, storage: &str, extra: &[&str]) -> Server {
    let exe = secantusd();
    let child = wrapped(&exe)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--storage-path", storage])
        .args(["--log-level", "WARNING", "--noop-heartbeat-seconds", "1"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    wait_for_port(port);
    Server {
        uri: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
        _child: Mutex::new(child),
    }
}

/// `secantusd-py`: `$SECANTUSD`, the project's `.venv`, or `PATH`.
fn secantusd() -> PathBuf {
    installed("SECANTUSD", "secantusd-py").unwrap_or_else(|| {
        panic!(
            "SecantusDB is not installed: the tests need its MongoDB-compatible server.\n\
             Install it with: scripts/setup-test-env.sh\n\
             (or: python3 -m venv .venv && .venv/bin/pip install SecantusDB=={SECANTUS_VERSION}),\n\
             or point SECANTUSD at a secantusd-py executable."
        )
    })
}

/// A free loopback port.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("SecantusDB did not listen on port {port} within 60 s");
}
