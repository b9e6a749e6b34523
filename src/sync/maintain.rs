//! Maintenance inside a streaming sync. The sync is its table's only writer, so between batches
//! it keeps the table fast to read, by thresholds that need no tuning:
//!
//! - **compaction** once the table has [`COMPACT_DELETE_FILES`] delete files, or
//!   [`COMPACT_NEW_DATA_FILES`] more data files than after the last compaction: partitions with
//!   deletes or small files are rewritten (`OPTIMIZE`), at most about one `flush_interval` (at
//!   least a second) of work per batch, the rest at the next batches;
//! - **manifest merging** once the current snapshot has more than [`MAX_MANIFESTS`] manifests;
//! - **snapshot expiry** beyond `max_snapshots` snapshots or past `retain_snapshots`, with the
//!   files only expired snapshots referenced deleted at once;
//! - **orphan removal** (files no snapshot references, older than `retain_snapshots`) every
//!   [`ORPHAN_SWEEP_INTERVAL`].
//!
//! `WITH (auto_optimize = false)` turns compaction and merging off; expiry follows
//! `retain_snapshots` and `max_snapshots`.

use std::time::{Duration, Instant};

use iceberg::table::Table;

use super::Sync;
use crate::Result;
use crate::iceberg::lineage::snapshot_property;
use crate::iceberg::maintenance::optimize::manifest_count;
use crate::iceberg::maintenance::{OptimizeOptions, VacuumOptions, optimize, vacuum};

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
/// How often the sync lists its table's location for orphaned files.
pub const ORPHAN_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// The sync's maintenance state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Maintenance {
    /// Data files right after the last compaction (or at the start).
    data_files_after_compaction: Option<u64>,
    /// When orphans were last looked for (never: the first batch does, as a killed run leaves
    /// them).
    last_sweep: Option<Instant>,
}

impl Maintenance {
    /// After a commit: does what the thresholds call for. Returns the table when maintenance
    /// committed to it, with what its compaction did.
    pub async fn after_commit(&mut self, sync: &Sync, table: &Table) -> Result<Option<Maintained>> {
        let options = &sync.create.options;
        let mut changed: Option<Table> = None;
        let mut compaction = None;
        if options.auto_optimize {
            let data_files = total(table, "total-data-files");
            let baseline = *self.data_files_after_compaction.get_or_insert(data_files);
            let compact = total(table, "total-delete-files") >= COMPACT_DELETE_FILES
                || data_files >= baseline + COMPACT_NEW_DATA_FILES;
            if compact || manifest_count(table).await? > MAX_MANIFESTS {
                let optimize_options = OptimizeOptions {
                    time_budget: Some(options.flush_interval),
                    ..Default::default()
                };
                let (optimized, report) =
                    optimize(&sync.connection, table, &optimize_options).await?;
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
                if report.committed {
                    let id = optimized.metadata().current_snapshot_id();
                    compaction = id.map(|id| (id, report.added.clone()));
                    changed = Some(optimized);
                }
            }
        }
        let current = changed.as_ref().unwrap_or(table);
        let snapshots = current.metadata().snapshots().count();
        let sweep = self.last_sweep.is_none_or(|at| at.elapsed() >= ORPHAN_SWEEP_INTERVAL);
        let oldest_ms = current.metadata().snapshots().map(|s| s.timestamp_ms()).min();
        let retain_ms = options.retain_snapshots.as_millis() as i64;
        // Past the retention by a tenth (at least a minute), so expiry is not a commit per batch.
        let slack_ms = (retain_ms / 10).max(60_000);
        let too_old = oldest_ms.is_some_and(|t| now_ms() - t > retain_ms + slack_ms);
        if snapshots > options.max_snapshots + EXPIRE_SLACK || too_old || sweep {
            let vacuum_options = VacuumOptions {
                retain: options.retain_snapshots,
                max_snapshots: Some(options.max_snapshots),
                remove_orphans: sweep,
            };
            let (vacuumed, report) = vacuum(&sync.connection, current, &vacuum_options).await?;
            if sweep {
                self.last_sweep = Some(Instant::now());
            }
            tracing::debug!("sync {}: {report:?}", sync.name);
            if report.snapshots_expired > 0 {
                let what = format!(
                    "expired {} snapshots, deleted {} data, {} manifest and {} metadata files",
                    report.snapshots_expired,
                    report.data_files,
                    report.manifests,
                    report.metadata_files
                );
                tracing::info!("sync {}: {what}", sync.name);
                sync.status(|s| {
                    s.snapshots_expired += report.snapshots_expired;
                    s.last_maintenance = Some(what);
                });
                changed = Some(vacuumed);
            }
        }
        Ok(changed.map(|table| Maintained { table, compaction }))
    }
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
