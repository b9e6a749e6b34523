//! The `replace` snapshot of a compaction: some live data and delete files replaced by new data
//! files holding the same rows, and every manifest of the table merged into a few.
//!
//! A compaction is computed on one snapshot and may be committed on a later one (another writer
//! committed meanwhile). Like iceberg-java's `RewriteFiles` validation, each rewritten partition
//! is checked against the base it is committed on: the files it removes must all still be live,
//! and no delete file committed since may target a file it rewrote (misql's position delete
//! files do not name the data file they target, so any new delete file in the partition counts,
//! unless it names another file). A partition that fails is left out of the commit and handed
//! back to the caller, who redoes it on the new base.

use std::collections::{HashMap, HashSet};

use ::iceberg::spec::{DataContentType, DataFile, ManifestEntry, ManifestFile, Struct};
use ::iceberg::table::Table;

use super::manifest::{Entry, Target, write_manifest};
use crate::lake::live::Live;
use crate::{Error, ErrorKind, Result};

/// The most entries written to one merged manifest.
const MANIFEST_ENTRIES: usize = 20_000;

/// One partition's rewrite: `removed` live data and delete files replaced by `added` data files.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    /// The live data and delete files taken out.
    pub removed: Vec<DataFile>,
    /// The new data files, holding the removed data files' rows with their deletes applied.
    pub added: Vec<DataFile>,
}

/// The indexes of the rewrites that no longer apply on `live` (the base's entries), when the
/// base moved past sequence number `computed_at` (the last one of the table they were computed
/// on).
pub(super) fn conflicts(rewrites: &[Rewrite], live: &[Live], computed_at: i64) -> Vec<usize> {
    let paths: HashSet<&str> = live.iter().map(|l| l.entry.file_path()).collect();
    let newer_deletes: Vec<&ManifestEntry> = live
        .iter()
        .map(|l| &l.entry)
        .filter(|e| e.content_type() != DataContentType::Data)
        .filter(|e| e.sequence_number().is_some_and(|s| s > computed_at))
        .collect();
    let mut dropped = Vec::new();
    for (i, rewrite) in rewrites.iter().enumerate() {
        let gone = rewrite.removed.iter().any(|f| !paths.contains(f.file_path()));
        let rewritten: HashSet<&str> = rewrite
            .removed
            .iter()
            .filter(|f| f.content_type() == DataContentType::Data)
            .map(|f| f.file_path())
            .collect();
        let partitions: HashSet<&Struct> = rewrite.removed.iter().map(|f| f.partition()).collect();
        let targeted = newer_deletes.iter().any(|delete| {
            let file = delete.data_file();
            match file.referenced_data_file() {
                Some(target) => rewritten.contains(target.as_str()),
                None => {
                    partitions.contains(file.partition()) || file.partition().fields().is_empty()
                }
            }
        });
        if gone || targeted {
            dropped.push(i);
        }
    }
    dropped
}

/// Writes the files `added` (spec id, file) and the table's live entries into merged manifests,
/// the data files of `removed` as `DELETED` entries: per partition spec, data and delete
/// entries apart, at most [`MANIFEST_ENTRIES`] entries each. Returns the manifests and the
/// paths written.
pub(super) async fn merged_manifests<'a>(
    base: &Table,
    added: Vec<(i32, &'a DataFile)>,
    live: Vec<Live>,
    removed: &HashSet<&str>,
    snapshot_id: i64,
    path_of: impl Fn(usize) -> String,
) -> Result<(Vec<ManifestFile>, Vec<String>)> {
    let name = base.identifier();
    let metadata = base.metadata();
    // The data files taken out are written as `DELETED` entries beside the live ones (writers
    // validating a concurrent commit look for them; readers skip them, and the next replace
    // drops them). The delete files taken out are left out: no validation asks for them, and a
    // table whose deletes were all applied keeps no delete manifest.
    let mut groups: HashMap<(i32, bool), Vec<Entry<'a>>> = HashMap::new();
    for (spec_id, file) in added {
        let deletes = file.content_type() != DataContentType::Data;
        groups.entry((spec_id, deletes)).or_default().push(Entry::Added(file));
    }
    for Live { spec_id, entry } in live {
        let deletes = entry.content_type() != DataContentType::Data;
        let entry = match (removed.contains(entry.file_path()), deletes) {
            (false, _) => Entry::Existing(entry),
            (true, false) => Entry::Removed(entry),
            (true, true) => continue,
        };
        groups.entry((spec_id, deletes)).or_default().push(entry);
    }
    let mut keys: Vec<(i32, bool)> = groups.keys().copied().collect();
    keys.sort();
    let (mut manifests, mut files) = (Vec::new(), Vec::new());
    for key in keys {
        let (spec_id, deletes) = key;
        let spec = metadata
            .partition_spec_by_id(spec_id)
            .ok_or_else(|| {
                Error::remote(
                    ErrorKind::Permanent,
                    format!("a manifest of {name} names partition spec {spec_id}, which its metadata does not have"),
                )
            })?;
        for chunk in groups[&key].chunks(MANIFEST_ENTRIES) {
            let path = path_of(files.len());
            let target = Target { path: &path, snapshot_id, spec, deletes };
            manifests.push(write_manifest(base, target, chunk).await?);
            files.push(path);
        }
    }
    Ok((manifests, files))
}
