//! Maintenance inside a streaming sync. The sync is its table's only writer, so between batches
//! it keeps the table fast to read, by thresholds that need no tuning:
//!
//! - **compaction** once the table has [`COMPACT_DELETE_FILES`] delete files, or
//!   [`COMPACT_NEW_DATA_FILES`] more data files than after the last compaction: partitions with
//!   deletes or small files are rewritten (`OPTIMIZE`), at most about one `flush_interval` (at
//!   least a second) of work per batch, the rest at the next batches. Compaction yields to the
//!   stream: it rests [`COMPACTION_REST`] times as long as its last round took, and waits while
//!   the sync is more than [`CATCH_UP_FIRST`] behind (unless the table has four times the
//!   delete files that call for it);
//! - **manifest merging** once the current snapshot has more than [`MAX_MANIFESTS`] manifests;
//! - **snapshot expiry** beyond `max_snapshots` snapshots or past `retain_snapshots`, with the
//!   files only expired snapshots referenced deleted at once;
//! - **orphan removal** (files no snapshot references, older than `retain_snapshots`) every
//!   [`ORPHAN_SWEEP_INTERVAL`].
//!
//! `WITH (auto_optimize = false)` turns compaction and merging off; expiry follows
//! `retain_snapshots` and `max_snapshots`.
//!
//! Maintenance never ends the sync: a step that fails (an object store that cannot list, a
//! catalog that refuses a compaction) is logged as a warning, counted in `SHOW SYNC STATUS`
//! (`maintenance_errors`, `misql_sync_maintenance_errors_total`) and tried again later — after
//! [`MAINTENANCE_RETRY`], or at the next sweep interval for the orphan sweep. Only errors that
//! say the sync's own position moved (superseded, another process holds the lease) go on to the
//! stream, which reads its table again or stands by.

use std::time::{Duration, Instant};

use iceberg::table::Table;

use super::SyncTask;
use crate::lake::lineage::snapshot_property;
use crate::lake::maintenance::optimize::manifest_count;
use crate::lake::maintenance::{OptimizeOptions, VacuumOptions, optimize, vacuum};
use crate::{Error, ErrorKind, Result};

/// Delete files that make the sync compact its table.
pub const COMPACT_DELETE_FILES: u64 = 32;
/// Data files added since the last compaction that make the sync compact its table.
pub const COMPACT_NEW_DATA_FILES: u64 = 64;
/// Manifests in the current snapshot that make the sync merge them.
pub const MAX_MANIFESTS: u64 = 32;
/// Snapshots beyond `max_snapshots` tolerated before expiring (so expiry is not a commit per
/// batch).
const EXPIRE_SLACK: usize = 10;
/// The least time a compaction round may take (with a short `flush_interval`, rounds that
/// small could not keep up with what the batches add).
pub const MIN_COMPACTION_BUDGET: Duration = Duration::from_secs(1);
/// How often the sync lists its table's location for orphaned files (also after a sweep that
/// failed).
pub const ORPHAN_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// A compaction round takes at most about a quarter of the sync's time: after a round that
/// took `d`, the next one waits `COMPACTION_REST × d`. Under slow or faulty storage a round can
/// take many seconds, and rounds back to back would leave the stream unread.
pub const COMPACTION_REST: u32 = 3;
/// Compaction yields to the stream while the sync is further behind than this (or than two
/// `flush_interval`s, if longer): it catches up first.
pub const CATCH_UP_FIRST: Duration = Duration::from_secs(10);
/// How long compaction, or snapshot expiry, waits after it failed before it is tried again.
pub const MAINTENANCE_RETRY: Duration = Duration::from_secs(60);

/// The sync's maintenance state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Maintenance {
    /// Data files right after the last compaction (or at the start).
    data_files_after_compaction: Option<u64>,
    /// When orphans were last looked for (never: the first batch does, as a killed run leaves
    /// them).
    last_sweep: Option<Instant>,
    /// Compaction and manifest merging wait until then, after one failed.
    compact_after: Option<Instant>,
    /// Snapshot expiry waits until then, after one failed.
    expire_after: Option<Instant>,
}

/// What one vacuum of the sync does: expire snapshots, look for orphans, or both.
#[derive(Debug, Clone, Copy)]
struct VacuumDue {
    expire: bool,
    sweep: bool,
}

impl Maintenance {
    /// After a commit: does what the thresholds call for. Returns the table when maintenance
    /// committed to it, with what its compaction did.
    ///
    /// Maintenance never ends the sync: a step that fails is logged as a warning, counted in
    /// the sync's status (`maintenance_errors`) and tried again later ([`MAINTENANCE_RETRY`],
    /// or the next [`ORPHAN_SWEEP_INTERVAL`] for the orphan sweep). Only what says the sync's
    /// own state moved on ([`ErrorKind::Superseded`], [`ErrorKind::LeaseHeld`]) is returned.
    pub async fn after_commit(
        &mut self,
        sync: &SyncTask,
        table: &Table,
    ) -> Result<Option<Maintained>> {
        let mut changed = None;
        let mut compaction = None;
        if sync.create.options.auto_optimize
            && is_due(self.compact_after)
            && !yields_to_stream(sync, table)
        {
            let started = Instant::now();
            let done = self.compact(sync, table).await;
            self.compact_after = Some(Instant::now() + started.elapsed() * COMPACTION_REST);
            match done {
                Ok(Some(done)) => {
                    compaction = done.compaction;
                    changed = Some(done.table);
                }
                Ok(None) => {}
                Err(err) => {
                    self.compact_after = Some(Instant::now() + MAINTENANCE_RETRY);
                    swallow(sync, "compaction", &describe(MAINTENANCE_RETRY), err)?;
                }
            }
        }
        let current = changed.as_ref().unwrap_or(table);
        let due = self.vacuum_due(sync, current);
        if due.expire || due.sweep {
            match self.vacuum(sync, current, due).await {
                Ok(Some(vacuumed)) => changed = Some(vacuumed),
                Ok(None) => {}
                Err(err) => {
                    self.expire_after = Some(Instant::now() + MAINTENANCE_RETRY);
                    let (retry, sweep) =
                        (describe(MAINTENANCE_RETRY), describe(ORPHAN_SWEEP_INTERVAL));
                    let (what, again) = match (due.expire, due.sweep) {
                        (_, false) => ("snapshot expiry", retry),
                        (false, true) => ("the orphan file sweep", sweep),
                        (true, true) => (
                            "snapshot expiry and the orphan file sweep",
                            format!("{retry} (the sweep in {sweep})"),
                        ),
                    };
                    swallow(sync, what, &again, err)?;
                }
            }
        }
        Ok(changed.map(|table| Maintained { table, compaction }))
    }

    /// Compacts the table when a threshold is reached; the table after it when it committed.
    async fn compact(&mut self, sync: &SyncTask, table: &Table) -> Result<Option<Maintained>> {
        let options = &sync.create.options;
        let data_files = total(table, "total-data-files");
        let baseline = *self.data_files_after_compaction.get_or_insert(data_files);
        let compact = total(table, "total-delete-files") >= COMPACT_DELETE_FILES
            || data_files >= baseline + COMPACT_NEW_DATA_FILES;
        if !compact && manifest_count(table).await? <= MAX_MANIFESTS {
            return Ok(None);
        }
        let budget = options.flush_interval.max(MIN_COMPACTION_BUDGET);
        let optimize_options = OptimizeOptions { time_budget: Some(budget), ..Default::default() };
        let (optimized, report) = optimize(&sync.connection, table, &optimize_options).await?;
        self.data_files_after_compaction = Some(total(&optimized, "total-data-files"));
        tracing::info!(
            "sync {}: compacted {} partitions ({} data files and {} delete files into {}), {} manifests into {}",
            sync.name,
            report.partitions,
            report.data_files_removed,
            report.delete_files_removed,
            report.data_files_added,
            report.manifests_before,
            report.manifests_after
        );
        if !report.committed {
            return Ok(None);
        }
        sync.status(|s| s.compactions += 1);
        let id = optimized.metadata().current_snapshot_id();
        let compaction = id.map(|id| (id, report.added));
        Ok(Some(Maintained { table: optimized, compaction }))
    }

    /// Whether snapshots are to be expired (beyond `max_snapshots`, or past `retain_snapshots`)
    /// and orphans looked for (every [`ORPHAN_SWEEP_INTERVAL`]).
    fn vacuum_due(&self, sync: &SyncTask, table: &Table) -> VacuumDue {
        let options = &sync.create.options;
        let snapshots = table.metadata().snapshots().count();
        let sweep = self.last_sweep.is_none_or(|at| at.elapsed() >= ORPHAN_SWEEP_INTERVAL);
        let oldest_ms = table.metadata().snapshots().map(|s| s.timestamp_ms()).min();
        let retain_ms = options.retain_snapshots.as_millis() as i64;
        // Past the retention by a tenth (at least a minute), so expiry is not a commit per batch.
        let slack_ms = (retain_ms / 10).max(60_000);
        let too_old = oldest_ms.is_some_and(|t| now_ms() - t > retain_ms + slack_ms);
        let expire = (snapshots > options.max_snapshots + EXPIRE_SLACK || too_old)
            && is_due(self.expire_after);
        VacuumDue { expire, sweep }
    }

    /// Expires snapshots and deletes what they alone referenced, and (when `due.sweep`) the
    /// orphans; the table after it when snapshots were expired.
    async fn vacuum(
        &mut self,
        sync: &SyncTask,
        table: &Table,
        due: VacuumDue,
    ) -> Result<Option<Table>> {
        let options = &sync.create.options;
        let vacuum_options = VacuumOptions {
            retain: options.retain_snapshots,
            max_snapshots: Some(options.max_snapshots),
            remove_orphans: due.sweep,
        };
        if due.sweep {
            // A sweep that fails is tried again at the next interval, not at every batch.
            self.last_sweep = Some(Instant::now());
        }
        let (vacuumed, report) = vacuum(&sync.connection, table, &vacuum_options).await?;
        tracing::debug!("sync {}: {report}", sync.name);
        if report.snapshots_expired == 0 {
            return Ok(None);
        }
        let what = format!(
            "expired {} snapshots, deleted {} data, {} manifest and {} metadata files",
            report.snapshots_expired, report.data_files, report.manifests, report.metadata_files
        );
        tracing::info!("sync {}: {what}", sync.name);
        sync.status(|s| {
            s.snapshots_expired += report.snapshots_expired;
            s.last_maintenance = Some(what);
        });
        Ok(Some(vacuumed))
    }
}

/// A maintenance step (`what`) failed with `err`: logged as a warning and counted, so the sync
/// goes on; it is tried again in `again`. Errors that say the sync must read its table again
/// or stand by are returned instead.
fn swallow(sync: &SyncTask, what: &str, again: &str, err: Error) -> Result<()> {
    if matches!(err.kind(), ErrorKind::Superseded | ErrorKind::LeaseHeld) {
        return Err(err);
    }
    let message = format!(
        "{what} of {} failed and is tried again in {}: {}",
        sync.target,
        again,
        err.user_facing()
    );
    tracing::warn!("sync {}: {message}", sync.name);
    sync.status(|s| {
        s.maintenance_errors += 1;
        s.last_maintenance = Some(message);
    });
    Ok(())
}

/// A wait in the largest whole unit: `60 s` as "1 min", `3600 s` as "1 h".
fn describe(wait: Duration) -> String {
    match wait.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Whether compaction waits for the sync to catch up with its stream.
fn yields_to_stream(sync: &SyncTask, table: &Table) -> bool {
    let now = std::time::SystemTime::now();
    let lag = sync.registry.get(&sync.name, |s| s.lag(now)).unwrap_or_default();
    let deletes = total(table, "total-delete-files");
    behind(lag, sync.create.options.flush_interval, deletes)
}

/// Whether a sync `lag` behind, committing every `flush_interval`, with `delete_files` in its
/// table, catches up before it compacts.
fn behind(lag: Duration, flush_interval: Duration, delete_files: u64) -> bool {
    lag > CATCH_UP_FIRST.max(flush_interval * 2) && delete_files < 4 * COMPACT_DELETE_FILES
}

/// Whether a step that waits until `after` (if anything) may run now.
fn is_due(after: Option<Instant>) -> bool {
    after.is_none_or(|at| Instant::now() >= at)
}

/// What the sync's maintenance left.
pub struct Maintained {
    /// The table after it.
    pub table: Table,
    /// The compaction's snapshot and the data files it added (with the rows of those it
    /// removed), when it compacted.
    pub compaction: Option<(i64, Vec<iceberg::spec::DataFile>)>,
}

/// A `total-*` count of the table's current snapshot summary (0 when unknown).
fn total(table: &Table, key: &str) -> u64 {
    snapshot_property(table, key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_told_in_its_largest_whole_unit() {
        assert_eq!(describe(MAINTENANCE_RETRY), "1 min");
        assert_eq!(describe(ORPHAN_SWEEP_INTERVAL), "1 h");
        assert_eq!(describe(Duration::from_secs(90)), "90 s");
    }

    #[test]
    fn compaction_waits_while_the_sync_is_behind_unless_deletes_pile_up() {
        let second = Duration::from_secs(1);
        assert!(!behind(5 * second, second, 40), "5 s behind is keeping up");
        assert!(behind(30 * second, second, 40), "30 s behind catches up first");
        assert!(!behind(30 * second, second, 4 * COMPACT_DELETE_FILES), "too many deletes");
        assert!(!behind(15 * second, 10 * second, 40), "within two flush intervals");
    }

    #[test]
    fn a_step_that_failed_waits_until_its_time() {
        assert!(is_due(None));
        assert!(is_due(Some(Instant::now())));
        assert!(!is_due(Some(Instant::now() + MAINTENANCE_RETRY)));
    }
}
