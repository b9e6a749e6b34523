//! Writing one manifest of a new snapshot: the files it adds, and, when a replace merges the
//! table's manifests, the live files that stay and the data files it takes out. Both the
//! snapshot of new files (`snapshot`) and a compaction's merged manifests (`rewrite`) write
//! their manifests here.

use ::iceberg::spec::{
    DataFile, ManifestEntry, ManifestFile, ManifestWriterBuilder, PartitionSpec,
    UNASSIGNED_SEQUENCE_NUMBER,
};
use ::iceberg::table::Table;

use crate::{Error, Result};

/// One entry of a manifest written for a new snapshot.
pub(super) enum Entry<'a> {
    /// A file the snapshot adds (its sequence number left to inheritance).
    Added(&'a DataFile),
    /// A live file that stays.
    Existing(ManifestEntry),
    /// A live data file the snapshot takes out.
    Removed(ManifestEntry),
}

/// Where and for what a manifest is written.
pub(super) struct Target<'a> {
    /// The manifest's path.
    pub path: &'a str,
    /// The new snapshot's id.
    pub snapshot_id: i64,
    /// The partition spec of every entry.
    pub spec: &'a PartitionSpec,
    /// A delete manifest (else a data manifest).
    pub deletes: bool,
}

/// Writes `entries` into the manifest `target` of a new snapshot of `base` (in its current
/// schema) and returns its description.
pub(super) async fn write_manifest(
    base: &Table,
    target: Target<'_>,
    entries: &[Entry<'_>],
) -> Result<ManifestFile> {
    let context = || format!("writing manifest `{}` of {}", target.path, base.identifier());
    let output =
        base.file_io().new_output(target.path).map_err(|e| Error::iceberg(context(), e))?;
    let builder = ManifestWriterBuilder::new(
        output,
        Some(target.snapshot_id),
        base.metadata().current_schema().clone(),
        target.spec.clone(),
    );
    let mut writer =
        if target.deletes { builder.build_v2_deletes() } else { builder.build_v2_data() };
    for entry in entries {
        let written = match entry {
            Entry::Added(file) => writer.add_file((*file).clone(), UNASSIGNED_SEQUENCE_NUMBER),
            Entry::Existing(entry) => {
                let (sequence, file_sequence) = sequences(entry);
                let added_in = entry.snapshot_id().unwrap_or(target.snapshot_id);
                writer.add_existing_file(
                    entry.data_file().clone(),
                    added_in,
                    sequence,
                    file_sequence,
                )
            }
            Entry::Removed(entry) => {
                let (sequence, file_sequence) = sequences(entry);
                writer.add_delete_file(entry.data_file().clone(), sequence, file_sequence)
            }
        };
        written.map_err(|e| Error::iceberg(context(), e))?;
    }
    writer.write_manifest_file().await.map_err(|e| Error::iceberg(context(), e))
}

/// An entry's data sequence number and file sequence number, as a rewritten manifest keeps them.
fn sequences(entry: &ManifestEntry) -> (i64, Option<i64>) {
    let sequence = entry.sequence_number().unwrap_or_default();
    (sequence, entry.file_sequence_number.or(Some(sequence)))
}
