//! `VACUUM`: expires the snapshots older than the retention (never the current one, nor one a
//! branch or tag points at), then deletes every file under the table's location that no
//! remaining snapshot or metadata file references — data, delete, manifest, manifest-list and
//! old metadata files, and orphans a killed writer left — but only files older than the
//! retention, so a commit another writer has in flight never loses its files.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use ::iceberg::spec::{SnapshotRef, TableMetadata};
use ::iceberg::table::Table;
use ::iceberg::{TableRequirement, TableUpdate};

use super::listing::{Listed, list};
use crate::failpoint::failpoint;
use crate::lake::catalog::IcebergConnection;
use crate::lake::commit::{Change, commit};
use crate::{Error, ErrorKind, Result};

/// Table property: snapshots always kept, newest first (iceberg-java's name).
const MIN_SNAPSHOTS_PROPERTY: &str = "history.expire.min-snapshots-to-keep";

/// What to remove.
#[derive(Debug, Clone)]
pub struct VacuumOptions {
    /// Snapshots older than this are expired, and unreferenced files older than this deleted.
    pub retain: Duration,
    /// Also expire snapshots beyond the newest this many, whatever their age.
    pub max_snapshots: Option<usize>,
    /// List the table's location for orphans (files no snapshot ever referenced). Without it,
    /// only the files of the snapshots expired now are deleted.
    pub remove_orphans: bool,
}

impl Default for VacuumOptions {
    fn default() -> Self {
        Self {
            retain: Duration::from_secs(7 * 24 * 3600),
            max_snapshots: None,
            remove_orphans: true,
        }
    }
}

/// What a VACUUM removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumReport {
    /// Snapshots expired.
    pub snapshots_expired: u64,
    /// Data and delete files deleted.
    pub data_files: u64,
    /// Manifests and manifest lists deleted.
    pub manifests: u64,
    /// Metadata files deleted.
    pub metadata_files: u64,
    /// Other files deleted.
    pub other_files: u64,
    /// Unreferenced files kept because they are younger than the retention.
    pub kept_young: u64,
}

impl VacuumReport {
    /// Whether anything was expired or deleted.
    pub fn removed_anything(&self) -> bool {
        self.snapshots_expired
            + self.data_files
            + self.manifests
            + self.metadata_files
            + self.other_files
            > 0
    }
}

impl std::fmt::Display for VacuumReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} snapshot(s) expired; {} data/delete file(s), {} manifest(s), {} metadata file(s) \
             and {} other file(s) deleted; {} unreferenced file(s) kept as younger than the \
             retention",
            self.snapshots_expired,
            self.data_files,
            self.manifests,
            self.metadata_files,
            self.other_files,
            self.kept_young
        )
    }
}

/// Vacuums `table` (see the module documentation) and returns the table after it.
pub async fn vacuum(
    conn: &IcebergConnection,
    table: &Table,
    options: &VacuumOptions,
) -> Result<(Table, VacuumReport)> {
    tracing::debug!("VACUUM {}: started", table.identifier());
    let mut report = VacuumReport::default();
    let cutoff = SystemTime::now().checked_sub(options.retain).unwrap_or(SystemTime::UNIX_EPOCH);
    let expired = expired_snapshots(table.metadata(), cutoff, options.max_snapshots);
    let mut read = ReadManifests::new();
    let before = reachable(table, &mut read).await?;
    let table = if expired.is_empty() {
        table.clone()
    } else {
        report.snapshots_expired = expired.len() as u64;
        commit(conn, table, expire(expired)).await?
    };
    let after = reachable(&table, &mut read).await?;
    // The files only the expired snapshots referenced were committed: no writer has them in
    // flight, so they go whatever their age.
    let mut gone: Vec<String> = before.difference(&after).cloned().collect();
    if options.remove_orphans {
        let listed = list(&table, table.metadata().location()).await?;
        check_listing(&table, &listed)?;
        for file in listed.into_iter().filter(|f| !after.contains(&f.path)) {
            if file.modified.is_none_or(|modified| modified > cutoff) {
                report.kept_young += 1;
            } else if !before.contains(&file.path) {
                gone.push(file.path);
            }
        }
    }
    failpoint("vacuum-before-delete");
    let half = gone.len() / 2;
    for (i, path) in gone.into_iter().enumerate() {
        if i == half {
            failpoint("vacuum-mid-delete");
        }
        if let Err(e) = table.file_io().delete(&path).await {
            tracing::warn!(file = path, "VACUUM cannot delete an unreferenced file: {e}");
            continue;
        }
        match kind(&path) {
            FileKind::Data => report.data_files += 1,
            FileKind::Manifest => report.manifests += 1,
            FileKind::Metadata => report.metadata_files += 1,
            FileKind::Other => report.other_files += 1,
        }
    }
    if report.removed_anything() {
        tracing::info!("VACUUM {}: {report}", table.identifier());
    } else {
        tracing::debug!("VACUUM {}: {report}", table.identifier());
    }
    Ok((table, report))
}

/// The snapshots to expire: older than `cutoff`, or beyond the newest `max_snapshots`; never
/// the newest `history.expire.min-snapshots-to-keep` (at least the current one), nor one a
/// branch or tag points at.
fn expired_snapshots(
    metadata: &TableMetadata,
    cutoff: SystemTime,
    max_snapshots: Option<usize>,
) -> Vec<i64> {
    let cutoff_ms = cutoff
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let min_keep = metadata
        .properties()
        .get(MIN_SNAPSHOTS_PROPERTY)
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let referenced: HashSet<i64> = refs(metadata).into_iter().map(|(_, id)| id).collect();
    let mut snapshots: Vec<&SnapshotRef> = metadata.snapshots().collect();
    snapshots.sort_by_key(|s| std::cmp::Reverse((s.timestamp_ms(), s.sequence_number())));
    let keep_newest = max_snapshots.unwrap_or(usize::MAX).max(min_keep);
    snapshots
        .iter()
        .enumerate()
        .filter(|(i, s)| *i >= min_keep && (s.timestamp_ms() < cutoff_ms || *i >= keep_newest))
        .map(|(_, s)| s.snapshot_id())
        .filter(|id| !referenced.contains(id) && Some(*id) != metadata.current_snapshot_id())
        .collect()
}

/// The metadata change that removes `ids`, refused on a base where a branch or tag points at
/// one of them.
fn expire(ids: Vec<i64>) -> Change {
    let gone = ids.clone();
    let guarded = ids.clone();
    let what = format!("expiring {} snapshots", ids.len());
    let requirements = Vec::<TableRequirement>::new();
    let updates = vec![TableUpdate::RemoveSnapshots { snapshot_ids: ids }];
    Change::metadata(
        what,
        requirements,
        updates,
        Box::new(move |m: &TableMetadata| gone.iter().all(|id| m.snapshot_by_id(*id).is_none())),
    )
    .guarded(Box::new(move |base: &Table| {
        match refs(base.metadata()).into_iter().find(|(_, id)| guarded.contains(id)) {
            Some((name, id)) => Err(Error::commit(
                ErrorKind::Conflict,
                format!("cannot expire snapshot {id}: `{name}` points at it now"),
            )),
            None => Ok(()),
        }
    }))
}

/// The table's branches and tags and the snapshots they point at. iceberg-rust 0.10.1 has no
/// public accessor for the list of refs, so it is read from the metadata's JSON form.
fn refs(metadata: &TableMetadata) -> Vec<(String, i64)> {
    let json = serde_json::to_value(metadata).unwrap_or_default();
    let Some(refs) = json.get("refs").and_then(|r| r.as_object()) else { return Vec::new() };
    refs.iter()
        .filter_map(|(name, r)| Some((name.clone(), r.get("snapshot-id")?.as_i64()?)))
        .collect()
}

/// The live files of each manifest read, by manifest path (a manifest never changes).
type ReadManifests = std::collections::HashMap<String, Vec<String>>;

/// Every file the table's metadata references: the current and logged metadata files, and for
/// every snapshot its manifest list, manifests and live data and delete files, plus statistics.
async fn reachable(table: &Table, read: &mut ReadManifests) -> Result<HashSet<String>> {
    let name = table.identifier();
    let metadata = table.metadata();
    let mut files: HashSet<String> =
        metadata.metadata_log().iter().map(|l| l.metadata_file.clone()).collect();
    files.extend(table.metadata_location().map(str::to_string));
    files.extend(metadata.statistics_iter().map(|s| s.statistics_path.clone()));
    files.extend(metadata.partition_statistics_iter().map(|s| s.statistics_path.clone()));
    let mut manifests = HashSet::new();
    for snapshot in metadata.snapshots() {
        files.insert(snapshot.manifest_list().to_string());
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(|e| Error::iceberg(format!("reading the manifest list of {name}"), e))?;
        let listed: Vec<_> = list.consume_entries().into_iter().collect();
        for manifest in listed {
            if !manifests.insert(manifest.manifest_path.clone()) {
                continue;
            }
            if !read.contains_key(&manifest.manifest_path) {
                let loaded = manifest
                    .load_manifest(table.file_io())
                    .await
                    .map_err(|e| Error::iceberg(format!("reading a manifest of {name}"), e))?;
                let live = loaded.entries().iter().filter(|e| e.is_alive());
                let paths = live.map(|e| e.file_path().to_string()).collect();
                read.insert(manifest.manifest_path.clone(), paths);
            }
            files.extend(read[&manifest.manifest_path].iter().cloned());
        }
    }
    files.extend(manifests);
    Ok(files)
}

/// Refuses to delete anything when the listing does not show the table's current metadata
/// file: the paths are not in the form the metadata uses, and every file would look orphaned.
fn check_listing(table: &Table, listed: &[Listed]) -> Result<()> {
    let Some(current) = table.metadata_location() else { return Ok(()) };
    let under_location = current.starts_with(table.metadata().location());
    if !under_location || listed.iter().any(|f| f.path == current) {
        return Ok(());
    }
    // The store's listing lags behind its writes (or lists another place): nothing is deleted,
    // and a later VACUUM lists again.
    Err(Error::remote(
        ErrorKind::Transient,
        format!(
            "VACUUM of {} stopped before deleting anything: listing {} did not show the current \
         metadata file {current}",
            table.identifier(),
            table.metadata().location()
        ),
    )
    .with_hint("the storage lists paths in another form than the table's metadata uses"))
}

enum FileKind {
    Data,
    Manifest,
    Metadata,
    Other,
}

fn kind(path: &str) -> FileKind {
    if path.ends_with(".metadata.json") || path.ends_with(".metadata.json.gz") {
        FileKind::Metadata
    } else if path.ends_with(".avro") {
        FileKind::Manifest
    } else if path.ends_with(".parquet") || path.ends_with(".orc") {
        FileKind::Data
    } else {
        FileKind::Other
    }
}
