//! What `SHOW SYNCS` and `SHOW SYNC STATUS` report: each sync's phase and counters, shared
//! between the task running the sync and the session.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where a sync is, as `SHOW SYNCS` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPhase {
    /// Planned, opening its target.
    #[default]
    Starting,
    /// Copying the collection.
    Snapshot,
    /// Following the change stream.
    Streaming,
    /// Waiting to try again after a transient error (see `last_error`).
    Retrying,
    /// Stopped by a permanent error (see `last_error`).
    Failed,
}

impl fmt::Display for SyncPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncPhase::Starting => "starting",
            SyncPhase::Snapshot => "snapshot",
            SyncPhase::Streaming => "streaming",
            SyncPhase::Retrying => "retrying",
            SyncPhase::Failed => "failed",
        })
    }
}

/// The state of one sync.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    /// Where the sync is.
    pub phase: SyncPhase,
    /// Source collection, `catalog.db.collection`.
    pub source: String,
    /// Target table, `catalog.namespace.table`.
    pub target: String,
    /// Rows copied by the snapshot.
    pub rows_copied: u64,
    /// Change events applied by the stream phase.
    pub events_applied: u64,
    /// Documents left out under `on_error = 'skip'`.
    pub rows_skipped: u64,
    /// Documents written to the dead-letter table.
    pub dead_letters: u64,
    /// Schema changes made to the target (`SELECT *` syncs).
    pub schema_changes: u64,
    /// What the last schema change did.
    pub last_schema_change: Option<String>,
    /// Values moved to `<field>__json` columns by `on_type_change = 'stringify'`.
    pub values_stringified: u64,
    /// Commits made by this run.
    pub commits: u64,
    /// When the last commit was made.
    pub last_commit: Option<SystemTime>,
    /// The last error or warning.
    pub last_error: Option<String>,
    /// Retries after transient errors (and after another writer's commit) in this run.
    pub retries: u64,
    /// Compactions the sync made of its own table in this run.
    pub compactions: u64,
    /// Snapshots the sync expired in this run.
    pub snapshots_expired: u64,
    /// What the last maintenance of the table did.
    pub last_maintenance: Option<String>,
}

/// All syncs of a session, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    syncs: Arc<Mutex<BTreeMap<String, SyncStatus>>>,
}

impl Registry {
    /// Updates (or creates) the status of `name`.
    pub fn update(&self, name: &str, change: impl FnOnce(&mut SyncStatus)) {
        let mut syncs = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
        change(syncs.entry(name.to_string()).or_default());
    }

    /// A copy of every status, by name.
    pub fn all(&self) -> BTreeMap<String, SyncStatus> {
        self.syncs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets `name`.
    pub fn remove(&self, name: &str) {
        self.syncs.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    /// Whether a sync called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.syncs.lock().unwrap_or_else(|e| e.into_inner()).contains_key(name)
    }
}
