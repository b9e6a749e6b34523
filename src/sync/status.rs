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
    /// Copying the collection while following its change stream.
    Copying,
    /// Following the change stream.
    Streaming,
    /// Waiting to try again after a transient error (see `last_error`).
    Retrying,
    /// Stopped by a permanent error (see `last_error`).
    Failed,
    /// Stopped by STOP SYNC (or at shutdown), its batch committed.
    Stopped,
    /// Waiting for the lease another process holds on the table (see `last_error`).
    Standby,
    /// The collection of a database sync was dropped or renamed; its table is kept.
    Dropped,
    /// Copied once on a deployment without change streams; nothing follows.
    Copied,
}

impl fmt::Display for SyncPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncPhase::Starting => "starting",
            SyncPhase::Copying => "copying+streaming",
            SyncPhase::Streaming => "streaming",
            SyncPhase::Retrying => "retrying",
            SyncPhase::Failed => "failed",
            SyncPhase::Stopped => "stopped",
            SyncPhase::Standby => "standby",
            SyncPhase::Dropped => "dropped",
            SyncPhase::Copied => "copied (no change stream)",
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
    /// MongoDB transactions applied (each whole in one commit, unless split).
    pub transactions: u64,
    /// Transactions larger than `max_transaction_rows`, committed in parts.
    pub transactions_split: u64,
    /// The most changes one transaction made.
    pub largest_transaction: u64,
    /// The cluster time the table is exact at (every change up to it, none after), as of the
    /// last commit made at such a point.
    pub valid_through: Option<SystemTime>,
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
    /// How much change history the source keeps (oldest to newest oplog entry), when known.
    pub history_window: Option<std::time::Duration>,
    /// Copies of the collection made again because the stream could not continue.
    pub recopies: u64,
    /// Compactions the sync made of its own table in this run.
    pub compactions: u64,
    /// Snapshots the sync expired in this run.
    pub snapshots_expired: u64,
    /// Maintenance steps of the table (compaction, expiry, orphan sweep) that failed in this
    /// run; each is tried again later, and none ends the sync.
    pub maintenance_errors: u64,
    /// What the last maintenance of the table did (or why it failed).
    pub last_maintenance: Option<String>,
    /// Errors the sync met (each retried one, and the one it failed with).
    pub errors: u64,
    /// Since when the sync has been retrying (`None` while it runs).
    pub retrying_since: Option<SystemTime>,
    /// The cluster time of the last change applied.
    pub last_event_time: Option<SystemTime>,
    /// When the last change was applied.
    pub last_event_applied: Option<SystemTime>,
    /// When the change stream last said it had nothing more (an idle answer, or a shared
    /// stream passing this collection by); `None` since the last change read.
    pub caught_up_at: Option<SystemTime>,
    /// The cluster time of the oldest change read but not yet committed.
    pub pending_since: Option<SystemTime>,
    /// The key index's estimated heap size.
    pub key_index_bytes: u64,
    /// The collection's estimated document count when the snapshot started.
    pub snapshot_rows_estimated: u64,
    /// Keys the stream changed that the copy remembers (so that an older copied row does not
    /// overwrite them).
    pub copy_keys_remembered: u64,
    /// How long commits took.
    pub commit_seconds: Histogram,
}

/// How long an idle answer of the change stream counts as "caught up now": a read of an idle
/// stream is answered every [`crate::mongo::change_stream::MAX_AWAIT`], with room for a slow
/// answer.
const IDLE_FRESH: std::time::Duration = std::time::Duration::from_secs(3);

/// Upper bounds of the commit-duration buckets, in seconds.
pub const COMMIT_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A histogram over [`COMMIT_BUCKETS`] (the last count is above the last bound).
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative), one more than there are bounds.
    pub counts: [u64; COMMIT_BUCKETS.len() + 1],
    /// The sum of the observations.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, value: f64) {
        let bucket =
            COMMIT_BUCKETS.iter().position(|&b| value <= b).unwrap_or(COMMIT_BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }
}

impl SyncStatus {
    /// Moves to `phase`, keeping track of since when it retries.
    pub fn enter(&mut self, phase: SyncPhase) {
        if phase != SyncPhase::Retrying {
            self.retrying_since = None;
        } else if self.phase != SyncPhase::Retrying || self.retrying_since.is_none() {
            self.retrying_since = Some(SystemTime::now());
        }
        self.phase = phase;
    }

    /// How far the table is behind the collection: now minus the cluster time of the oldest
    /// change read but not committed yet; else minus when the stream last said it had nothing
    /// more (0 while that is fresh: an idle stream answers every second, so a staler answer
    /// means the stream is not being read, as during maintenance); else minus the cluster time
    /// of the last change applied; 0 before anything was read.
    pub fn lag(&self, now: SystemTime) -> std::time::Duration {
        let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
        match (self.pending_since, self.caught_up_at, self.last_event_time) {
            (Some(pending), _, _) => age(pending),
            (None, Some(idle), _) if age(idle) <= IDLE_FRESH => std::time::Duration::ZERO,
            (None, Some(idle), _) => age(idle),
            (None, None, Some(applied)) => age(applied),
            (None, None, None) => std::time::Duration::ZERO,
        }
    }

    /// The change history the source keeps beyond this sync's lag: how long the sync may fall
    /// further behind before the stream cannot resume (`None` when the window is not known).
    pub fn history_margin(&self, now: SystemTime) -> Option<std::time::Duration> {
        self.history_window.map(|window| window.saturating_sub(self.lag(now)))
    }

    /// Time since the last change was applied (`None` before the first).
    pub fn last_event_age(&self, now: SystemTime) -> Option<std::time::Duration> {
        self.last_event_applied.map(|at| now.duration_since(at).unwrap_or_default())
    }
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

    /// `name` starts (again): its status is reset, with its source and target.
    pub fn starting(&self, name: &str, source: String, target: String) {
        self.update(name, |s| {
            *s = SyncStatus::default();
            s.enter(SyncPhase::Starting);
            s.source = source;
            s.target = target;
        });
    }

    /// `name` stopped on `error` (permanent, or out of attempts).
    pub fn failed(&self, name: &str, error: &crate::Error) {
        let message = error.user_facing().to_string();
        self.update(name, |s| {
            s.enter(SyncPhase::Failed);
            s.errors += 1;
            s.last_error = Some(message);
        });
    }

    /// How a sync run in the background ended, in its status and the log: a failure marks it
    /// `failed` (the other syncs go on); an end after a stop (`stopped`) marks it `stopped`.
    pub fn ended(&self, name: &str, stopped: bool, result: &crate::Result<()>) {
        match result {
            Err(err) => {
                tracing::error!("sync {name}: {}", err.user_facing());
                self.failed(name, err);
            }
            Ok(()) if stopped => {
                tracing::info!("sync {name}: stopped, its batch committed");
                self.update(name, |s| s.enter(SyncPhase::Stopped));
            }
            Ok(()) => {}
        }
    }

    /// A copy of every status, by name.
    pub fn all(&self) -> BTreeMap<String, SyncStatus> {
        self.syncs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What `read` makes of `name`'s status, if it has one (no copy of the others).
    pub fn get<T>(&self, name: &str, read: impl FnOnce(&SyncStatus) -> T) -> Option<T> {
        self.syncs.lock().unwrap_or_else(|e| e.into_inner()).get(name).map(read)
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::SyncStatus;

    fn ago(now: SystemTime, seconds: u64) -> Option<SystemTime> {
        Some(now - Duration::from_secs(seconds))
    }

    #[test]
    fn lag_counts_from_the_oldest_uncommitted_change() {
        let now = SystemTime::now();
        let status = SyncStatus {
            pending_since: ago(now, 7),
            caught_up_at: ago(now, 1),
            last_event_time: ago(now, 9),
            ..SyncStatus::default()
        };
        assert_eq!(status.lag(now), Duration::from_secs(7));
    }

    #[test]
    fn an_idle_stream_read_just_now_is_not_behind() {
        let now = SystemTime::now();
        let status = SyncStatus {
            caught_up_at: ago(now, 1),
            last_event_time: ago(now, 600),
            ..SyncStatus::default()
        };
        assert_eq!(status.lag(now), Duration::ZERO);
    }

    #[test]
    fn a_stream_not_read_for_a_while_is_behind_by_that_while() {
        // The sync compacts its table for 20 s: nothing is pending, the stream's last answer
        // was idle, but anything written since has not been read.
        let now = SystemTime::now();
        let status = SyncStatus { caught_up_at: ago(now, 20), ..SyncStatus::default() };
        assert_eq!(status.lag(now), Duration::from_secs(20));
    }

    #[test]
    fn a_stream_still_reading_is_behind_its_last_change() {
        let now = SystemTime::now();
        let status = SyncStatus { last_event_time: ago(now, 4), ..SyncStatus::default() };
        assert_eq!(status.lag(now), Duration::from_secs(4));
        assert_eq!(SyncStatus::default().lag(now), Duration::ZERO);
    }
}
