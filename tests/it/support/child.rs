//! Test servers as child processes: started through `secantus_child.py` (which stops the server
//! when its stdin closes, so a test run that ends however it ends leaves none behind), waited
//! for until ready, started again on a port clash, and the programs they need found.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Attempts at starting a server before giving up.
const ATTEMPTS: usize = 3;
/// Longest wait for a started server to be ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// `python3 secantus_child.py <exe>`: the server `exe` as the wrapper's child (add its arguments,
/// stdin piped, and spawn).
pub fn wrapped(exe: &Path) -> Command {
    let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/secantus_child.py");
    let mut command = Command::new(python());
    command.arg(wrapper).arg(exe);
    command
}

/// Stops a server started by [`wrapped`]: closing the wrapper's stdin makes it stop the server
/// (killing the wrapper would not).
pub fn stop(child: &mut Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

/// Starts `name`: `launch` spawns it on ports of its choosing (returned beside the child), and
/// `ready` probes those ports. A free port can be taken by someone else before the server binds
/// it, so a server that exits or is not ready within a minute is stopped and launched again, up
/// to [`ATTEMPTS`] times; then this panics with the last error and the tail of `log`. Returns the
/// child, the ports, and how long the successful start took.
pub fn start_with_retries<P>(
    name: &str,
    log: &Path,
    mut launch: impl FnMut() -> (Child, P),
    ready: impl Fn(&P) -> Result<(), String>,
) -> (Child, P, Duration) {
    let mut last_error = String::new();
    for _attempt in 0..ATTEMPTS {
        let started = Instant::now();
        let (mut child, ports) = launch();
        match wait_ready(&mut child, name, || ready(&ports)) {
            Ok(()) => return (child, ports, started.elapsed()),
            Err(error) => {
                stop(&mut child);
                last_error = error;
            }
        }
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    panic!("{name} did not come up: {last_error}\nlast lines of {}:\n{tail}", log.display());
}

/// Waits until `ready` succeeds; an error if `child` exits first or [`READY_WITHIN`] passes.
fn wait_ready(
    child: &mut Child,
    name: &str,
    ready: impl Fn() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{name} exited with {status}"));
        }
        match ready() {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{name} was not ready within {READY_WITHIN:?} ({last})"))
}

/// Removes the directories `<temp>/<prefix><pid>` of earlier test processes that are gone.
pub fn remove_stale_dirs(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `python3` on `PATH`.
fn python() -> PathBuf {
    which("python3").unwrap_or_else(|| panic!("python3 is needed to run the test servers"))
}

/// `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// `name` from `$variable`, the project's `.venv`, or `PATH`; `None` if none has it.
pub fn installed(variable: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin").join(name);
    if venv.exists() {
        return Some(venv);
    }
    which(name)
}
