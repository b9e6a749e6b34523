//! Crash points for tests: with `MISQL_FAILPOINT=<name>` in the environment, the process exits
//! at once (no cleanup, no further commits) when it reaches the point of that name, as if it had
//! been killed there. Crash tests use it where a kill at a random time would rarely land.

use std::sync::OnceLock;

/// The exit status of a process stopped at a failpoint.
pub const FAILPOINT_EXIT: i32 = 86;

/// Exits the process if `MISQL_FAILPOINT` names this point.
pub fn failpoint(name: &str) {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    if POINT.get_or_init(|| std::env::var("MISQL_FAILPOINT").ok()).as_deref() == Some(name) {
        eprintln!("misql: stopped at failpoint {name}");
        std::process::exit(FAILPOINT_EXIT);
    }
}
