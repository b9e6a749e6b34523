//! A table's history as misql reads it: the snapshots of the `main` branch, newest first, and
//! the summary properties (a sync's checkpoint) of the newest snapshot that has them.

use ::iceberg::spec::{SnapshotRef, TableMetadata};
use ::iceberg::table::Table;

/// The snapshots of the main branch of `metadata`, newest first.
pub fn main_lineage(metadata: &TableMetadata) -> impl Iterator<Item = &SnapshotRef> {
    std::iter::successors(metadata.current_snapshot(), move |s| {
        s.parent_snapshot_id().and_then(|id| metadata.snapshot_by_id(id))
    })
}

/// The value of `key` in the summary of the newest snapshot of the main branch that has it
/// (walking back through parents, past snapshots other writers made), or `None`.
pub fn snapshot_property(table: &Table, key: &str) -> Option<String> {
    main_lineage(table.metadata()).find_map(|s| s.summary().additional_properties.get(key).cloned())
}

/// The summary properties of the newest snapshot of the main branch that has `key` (walking
/// back past snapshots other writers made): everything a writer put there is read from that one
/// summary, never a key from one commit and another key from an older one.
pub fn newest_summary_with<'a>(
    table: &'a Table,
    key: &str,
) -> Option<&'a std::collections::HashMap<String, String>> {
    main_lineage(table.metadata())
        .map(|s| &s.summary().additional_properties)
        .find(|properties| properties.contains_key(key))
}

/// The snapshots of the main branch committed after `since` (newest first); `None` when the
/// main branch no longer descends from it. `since = None` means from the beginning.
pub fn committed_since(metadata: &TableMetadata, since: Option<i64>) -> Option<Vec<&SnapshotRef>> {
    let mut after = Vec::new();
    for snapshot in main_lineage(metadata) {
        if Some(snapshot.snapshot_id()) == since {
            return Some(after);
        }
        after.push(snapshot);
    }
    since.is_none().then_some(after)
}

/// How many data files a snapshot removed, by its summary.
pub fn data_files_removed(snapshot: &SnapshotRef) -> u64 {
    let summary = snapshot.summary();
    summary
        .additional_properties
        .get("deleted-data-files")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether rows of the table may sit at other positions than at snapshot `since`: a commit
/// after it other than `except` removed data files (a compaction), or the main branch no longer
/// descends from it.
pub fn rows_moved_since(metadata: &TableMetadata, since: Option<i64>, except: Option<i64>) -> bool {
    committed_since(metadata, since).is_none_or(|after| {
        after.iter().any(|s| Some(s.snapshot_id()) != except && data_files_removed(s) > 0)
    })
}
