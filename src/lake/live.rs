//! What a snapshot holds: its live manifest entries (data and delete files added or carried),
//! each with the partition spec of its manifest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ::iceberg::spec::{ManifestEntry, SnapshotRef};
use ::iceberg::table::Table;
use futures::{StreamExt, TryStreamExt};

use crate::{Error, Result};

/// A live manifest entry of a table and the partition spec of its manifest.
#[derive(Debug, Clone)]
pub struct Live {
    /// The partition spec the file was written for.
    pub spec_id: i32,
    /// The entry: the file, its status and sequence numbers.
    pub entry: ManifestEntry,
}

/// Manifests read at once.
const MANIFEST_CONCURRENCY: usize = 8;

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
    // (The stream maps owned values: closures over borrowed items make the future unusable
    // in `tokio::spawn`, rust-lang/rust#102211.)
    let cached = |path: &str| cache.lock().unwrap_or_else(|e| e.into_inner()).get(path).cloned();
    let lists: Vec<Arc<Vec<Live>>> = futures::stream::iter(list.entries().to_vec())
        .map(|manifest| {
            let hit = cached(&manifest.manifest_path);
            let (file_io, name) = (table.file_io().clone(), name.clone());
            async move {
                if let Some(entries) = hit {
                    return Ok((manifest.manifest_path, entries, true));
                }
                let loaded = manifest.load_manifest(&file_io).await.map_err(|e| {
                    Error::iceberg(
                        format!("reading manifest {} of {name}", manifest.manifest_path),
                        e,
                    )
                })?;
                let entries: Vec<Live> = loaded
                    .entries()
                    .iter()
                    .filter(|e| e.is_alive())
                    .map(|e| Live { spec_id: manifest.partition_spec_id, entry: (**e).clone() })
                    .collect();
                Ok::<_, Error>((manifest.manifest_path, Arc::new(entries), false))
            }
        })
        .buffered(MANIFEST_CONCURRENCY)
        .map_ok(|(path, entries, hit)| {
            if !hit {
                cache.lock().unwrap_or_else(|e| e.into_inner()).insert(path, entries.clone());
            }
            entries
        })
        .try_collect()
        .await?;
    Ok(lists.iter().flat_map(|entries| entries.iter().cloned()).collect())
}
