//! What a snapshot holds: its live manifest entries (data and delete files added or carried),
//! each with the partition spec of its manifest.

use ::iceberg::spec::{ManifestEntry, SnapshotRef};
use ::iceberg::table::Table;

use crate::{Error, Result};

/// A live manifest entry of a table and the partition spec of its manifest.
pub struct Live {
    /// The partition spec the file was written for.
    pub spec_id: i32,
    /// The entry: the file, its status and sequence numbers.
    pub entry: ManifestEntry,
}

/// Every live entry (added or existing) of the table's current snapshot.
pub async fn live_entries(table: &Table) -> Result<Vec<Live>> {
    match table.metadata().current_snapshot() {
        Some(current) => snapshot_entries(table, current).await,
        None => Ok(Vec::new()),
    }
}

/// Every live entry of one snapshot of the table.
pub async fn snapshot_entries(table: &Table, snapshot: &SnapshotRef) -> Result<Vec<Live>> {
    let name = table.identifier();
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(|e| Error::iceberg(format!("reading the manifest list of {name}"), e))?;
    let mut live = Vec::new();
    for manifest in list.entries() {
        let loaded = manifest
            .load_manifest(table.file_io())
            .await
            .map_err(|e| Error::iceberg(format!("reading a manifest of {name}"), e))?;
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            live.push(Live { spec_id: manifest.partition_spec_id, entry: (**entry).clone() });
        }
    }
    Ok(live)
}
