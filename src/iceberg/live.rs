//! What a snapshot holds: its live manifest entries (data and delete files added or carried),
//! each with the partition spec of its manifest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ::iceberg::spec::{ManifestEntry, SnapshotRef};
use ::iceberg::table::Table;

use crate::{Error, Result};

/// A live manifest entry of a table and the partition spec of its manifest.
#[derive(Debug, Clone)]
pub struct Live {
    /// The partition spec the file was written for.
    pub spec_id: i32,
    /// The entry: the file, its status and sequence numbers.
    pub entry: ManifestEntry,
}

/// Manifests already read, by path (a manifest file never changes).
pub type ManifestCache = Mutex<HashMap<String, Arc<Vec<Live>>>>;

/// Every live entry (added or existing) of the table's current snapshot.
pub async fn live_entries(table: &Table) -> Result<Vec<Live>> {
    live_entries_cached(table, &ManifestCache::default()).await
}

/// [`live_entries`], reading only the manifests `cache` does not have (and keeping them there):
/// a commit retried on a newer table state reads just the manifests added since.
pub async fn live_entries_cached(table: &Table, cache: &ManifestCache) -> Result<Vec<Live>> {
    match table.metadata().current_snapshot() {
        Some(current) => snapshot_entries(table, current, cache).await,
        None => Ok(Vec::new()),
    }
}

/// Every live entry of one snapshot of the table.
async fn snapshot_entries(
    table: &Table,
    snapshot: &SnapshotRef,
    cache: &ManifestCache,
) -> Result<Vec<Live>> {
    let name = table.identifier();
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(|e| Error::iceberg(format!("reading the manifest list of {name}"), e))?;
    let mut live = Vec::new();
    for manifest in list.entries() {
        let cached =
            cache.lock().unwrap_or_else(|e| e.into_inner()).get(&manifest.manifest_path).cloned();
        let entries = match cached {
            Some(entries) => entries,
            None => {
                let loaded = manifest
                    .load_manifest(table.file_io())
                    .await
                    .map_err(|e| Error::iceberg(format!("reading a manifest of {name}"), e))?;
                let entries: Vec<Live> = loaded
                    .entries()
                    .iter()
                    .filter(|e| e.is_alive())
                    .map(|e| Live { spec_id: manifest.partition_spec_id, entry: (**e).clone() })
                    .collect();
                let entries = Arc::new(entries);
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                cache.insert(manifest.manifest_path.clone(), entries.clone());
                entries
            }
        };
        live.extend(entries.iter().cloned());
    }
    Ok(live)
}
