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
