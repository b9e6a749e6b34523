//! Building a new snapshot on a base table: a data manifest and a delete manifest per partition
//! spec with the new files as `ADDED` entries (sequence numbers left to inheritance), a manifest
//! list holding those plus every manifest of the parent (for a `replace`, the parent's entries
//! merged into a few manifests, see `rewrite`), and the snapshot with its summary
//! (`added-*` counts from the library's `SnapshotSummaryCollector`, `total-*` carried on from the
//! parent), as iceberg-java's `SnapshotProducer` does. iceberg-rust 0.10.1 has no public action
//! that commits delete files, so misql builds the snapshot from the library's public pieces.

use std::collections::{HashMap, HashSet};

use ::iceberg::spec::{
    DataFile, FormatVersion, MAIN_BRANCH, ManifestFile, ManifestListWriter, Operation,
    PartitionSpecRef, SchemaRef, Snapshot, SnapshotReference, SnapshotRetention,
    SnapshotSummaryCollector, Summary, TableMetadata, TableProperties,
};
use ::iceberg::table::Table;
use ::iceberg::{TableRequirement, TableUpdate};

use super::manifest::{Entry, Target, write_manifest};
use super::rewrite;
use crate::lake::live::Live;
use crate::lake::table::partition_spec_id;
use crate::{Error, Result};

/// The summary keys with running totals: (total, added, removed).
const TOTALS: [(&str, &str, &str); 6] = [
    ("total-data-files", "added-data-files", "deleted-data-files"),
    ("total-delete-files", "added-delete-files", "removed-delete-files"),
    ("total-records", "added-records", "deleted-records"),
    ("total-files-size", "added-files-size", "removed-files-size"),
    ("total-position-deletes", "added-position-deletes", "removed-position-deletes"),
    ("total-equality-deletes", "added-equality-deletes", "removed-equality-deletes"),
];

/// Files grouped by partition spec, in first-seen order, each checked against its spec.
fn by_spec<'a>(
    base: &Table,
    files: &'a [DataFile],
    schema: &SchemaRef,
) -> Result<Vec<(PartitionSpecRef, Vec<&'a DataFile>)>> {
    let name = base.identifier();
    let metadata = base.metadata();
    let mut groups: Vec<(PartitionSpecRef, Vec<&DataFile>)> = Vec::new();
    for file in files {
        let Some(spec_id) = partition_spec_id(file, metadata) else {
            return Err(Error::internal(format!(
                "cannot commit `{}` to {name}: it was written for a partition spec the table \
                 does not have",
                file.file_path()
            ))
            .with_hint("write files with this table's writers"));
        };
        let spec = metadata
            .partition_spec_by_id(spec_id)
            .cloned()
            .ok_or_else(|| Error::internal(format!("{name} has no partition spec {spec_id}")))?;
        let partition_type = spec.partition_type(schema).map_err(|e| {
            Error::iceberg(
                format!("partition spec {spec_id} of {name} does not apply to its schema"),
                e,
            )
        })?;
        let values = file.partition().fields();
        let fits = values.len() == partition_type.fields().len()
            && values.iter().zip(partition_type.fields()).all(|(value, field)| {
                match (value, field.field_type.as_primitive_type()) {
                    (None, Some(_)) => true,
                    (Some(value), Some(primitive)) => value
                        .as_primitive_literal()
                        .is_some_and(|literal| primitive.compatible(&literal)),
                    _ => false,
                }
            });
        if !fits {
            return Err(Error::internal(format!(
                "cannot commit `{}` to {name}: its partition {:?} does not fit partition spec \
                 {spec_id} ({partition_type})",
                file.file_path(),
                file.partition()
            ))
            .with_hint("a delete file must carry the partition of the data files it targets"));
        }
        match groups.iter_mut().find(|(s, _)| s.spec_id() == spec_id) {
            Some((_, group)) => group.push(file),
            None => groups.push((spec, vec![file])),
        }
    }
    Ok(groups)
}

/// What a new snapshot holds besides its parent's files.
pub(super) struct Files {
    /// New data files.
    pub data: Vec<DataFile>,
    /// New delete files.
    pub deletes: Vec<DataFile>,
    /// Live files taken out (a `replace` snapshot).
    pub removed: Vec<DataFile>,
    /// For a `replace` snapshot: the base's live entries, all merged into new manifests.
    pub merge: Option<Vec<Live>>,
}

/// Writes the manifests and manifest list of a new snapshot on top of `base` holding `files`
/// (plus every manifest of the current snapshot, or, for a replace, its entries merged), and
/// returns the updates that add it on `main`, with the files written.
pub(super) async fn stage(
    base: &Table,
    files: Files,
    properties: &HashMap<String, String>,
    commit_uuid: uuid::Uuid,
    attempt: u32,
) -> Result<StagedSnapshot> {
    let metadata = base.metadata();
    check_writable(base)?;
    let schema = metadata.current_schema().clone();
    let data_groups = by_spec(base, &files.data, &schema)?;
    let delete_groups = by_spec(base, &files.deletes, &schema)?;
    let removed_groups = by_spec(base, &files.removed, &schema)?;

    let snapshot_id = new_snapshot_id(metadata);
    let metadata_dir = format!("{}/metadata", metadata.location());
    let manifest_path = |i: usize| format!("{metadata_dir}/{commit_uuid}-a{attempt}-m{i}.avro");
    let operation = match (files.data.is_empty(), files.deletes.is_empty()) {
        _ if files.merge.is_some() => Operation::Replace,
        (_, true) => Operation::Append,
        (true, false) => Operation::Delete,
        (false, false) => Operation::Overwrite,
    };
    let groups = New { data: &data_groups, deletes: &delete_groups };
    let (manifests, mut written) = match files.merge {
        // A replace merges every manifest of the parent with the new files; the files taken
        // out become deleted entries.
        Some(live) => {
            let removed: HashSet<&str> = files.removed.iter().map(|f| f.file_path()).collect();
            let added = groups.iter().map(|(_, spec, file)| (spec.spec_id(), file)).collect();
            rewrite::merged_manifests(base, added, live, &removed, snapshot_id, manifest_path)
                .await?
        }
        None => appended_manifests(base, &groups, snapshot_id, manifest_path).await?,
    };
    let manifest_list = format!("{metadata_dir}/snap-{snapshot_id}-{attempt}-{commit_uuid}.avro");
    written.push(manifest_list.clone());
    write_manifest_list(base, snapshot_id, &manifest_list, manifests).await?;

    let added = data_groups.iter().chain(&delete_groups);
    let summary = summary(metadata, &schema, operation, added, &removed_groups, properties);
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(metadata.current_snapshot_id())
        .with_sequence_number(metadata.last_sequence_number() + 1)
        .with_timestamp_ms(now_ms())
        .with_manifest_list(manifest_list)
        .with_summary(summary)
        .with_schema_id(metadata.current_schema_id())
        .build();
    Ok(on_main(metadata, snapshot, written))
}

/// The new files of a snapshot, grouped by partition spec.
struct New<'g, 'a> {
    data: &'g [(PartitionSpecRef, Vec<&'a DataFile>)],
    deletes: &'g [(PartitionSpecRef, Vec<&'a DataFile>)],
}

impl<'g, 'a> New<'g, 'a> {
    /// Each group with whether it holds delete files.
    fn groups(&self) -> impl Iterator<Item = (bool, &'g (PartitionSpecRef, Vec<&'a DataFile>))> {
        let data = self.data.iter().map(|g| (false, g));
        data.chain(self.deletes.iter().map(|g| (true, g)))
    }

    /// Every file, with whether it is a delete file and its spec.
    fn iter(&self) -> impl Iterator<Item = (bool, &'g PartitionSpecRef, &'a DataFile)> {
        self.groups()
            .flat_map(|(deletes, (spec, files))| files.iter().map(move |f| (deletes, spec, *f)))
    }
}

/// The manifests of a snapshot that adds `groups` to its parent: one per spec of the new data
/// files and one per spec of the new delete files, then every manifest of the parent. Returns
/// them with the paths written.
async fn appended_manifests(
    base: &Table,
    groups: &New<'_, '_>,
    snapshot_id: i64,
    manifest_path: impl Fn(usize) -> String,
) -> Result<(Vec<ManifestFile>, Vec<String>)> {
    let (mut manifests, mut written) = (Vec::new(), Vec::new());
    // Collected: an iterator of closures held across an await makes the future not `Send`.
    let groups: Vec<_> = groups.groups().collect();
    for (deletes, (spec, files)) in groups {
        let path = manifest_path(written.len());
        let entries: Vec<Entry> = files.iter().map(|file| Entry::Added(file)).collect();
        let target = Target { path: &path, snapshot_id, spec, deletes };
        manifests.push(write_manifest(base, target, &entries).await?);
        written.push(path);
    }
    if let Some(parent) = base.metadata().current_snapshot() {
        let list = base.manifest_list_reader(parent).load().await.map_err(|e| {
            Error::iceberg(format!("reading the manifest list of {}", base.identifier()), e)
        })?;
        manifests.extend(list.consume_entries());
    }
    Ok((manifests, written))
}

/// Writes the manifest list of snapshot `snapshot_id` of `base` (a child of its current
/// snapshot, at the next sequence number) at `path`.
async fn write_manifest_list(
    base: &Table,
    snapshot_id: i64,
    path: &str,
    manifests: Vec<ManifestFile>,
) -> Result<()> {
    let context = || format!("writing the manifest list `{path}` of {}", base.identifier());
    let metadata = base.metadata();
    let output = base.file_io().new_output(path).map_err(|e| Error::iceberg(context(), e))?;
    let writer = output.writer().await.map_err(|e| Error::iceberg(context(), e))?;
    let mut list = ManifestListWriter::v2(
        writer,
        snapshot_id,
        metadata.current_snapshot_id(),
        metadata.last_sequence_number() + 1,
    );
    list.add_manifests(manifests.into_iter()).map_err(|e| Error::iceberg(context(), e))?;
    list.close().await.map_err(|e| Error::iceberg(context(), e))
}

/// The updates that add `snapshot` to the table of `metadata` and point `main` at it, on the
/// condition that it is the same table with `main` still at its current snapshot.
fn on_main(metadata: &TableMetadata, snapshot: Snapshot, files: Vec<String>) -> StagedSnapshot {
    let snapshot_id = snapshot.snapshot_id();
    let reference =
        SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None));
    let updates = vec![
        TableUpdate::AddSnapshot { snapshot },
        TableUpdate::SetSnapshotRef { ref_name: MAIN_BRANCH.to_string(), reference },
    ];
    let requirements = vec![
        TableRequirement::UuidMatch { uuid: metadata.uuid() },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_string(),
            snapshot_id: metadata.current_snapshot_id(),
        },
    ];
    StagedSnapshot { snapshot_id, updates, requirements, files }
}

/// misql writes snapshots to format version 2 tables that are not encrypted.
fn check_writable(base: &Table) -> Result<()> {
    let name = base.identifier();
    let metadata = base.metadata();
    if metadata.format_version() != FormatVersion::V2 {
        return Err(Error::user(format!(
            "cannot commit delete files to {name}: it is an Iceberg format version {} table",
            metadata.format_version() as u8
        ))
        .with_hint("misql writes row-level deletes to format version 2 tables"));
    }
    if metadata.properties().contains_key("encryption.key-id") {
        return Err(Error::user(format!("cannot commit to {name}: it is encrypted"))
            .with_hint("misql does not write encrypted Iceberg tables"));
    }
    Ok(())
}

/// A new snapshot's updates and requirements, and the manifests and manifest list written for it.
pub(super) struct StagedSnapshot {
    /// The new snapshot's id.
    pub snapshot_id: i64,
    /// `AddSnapshot` + `SetSnapshotRef main`.
    pub updates: Vec<TableUpdate>,
    /// Same table, `main` still at the parent.
    pub requirements: Vec<TableRequirement>,
    /// The manifests and the manifest list written.
    pub files: Vec<String>,
}

/// A positive snapshot id the table does not use yet.
fn new_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((high ^ low) & (i64::MAX as u64)) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The snapshot summary: `properties`, then the `added-*` counts of the new files and the
/// `deleted-*`/`removed-*` counts of the removed ones (and partition summaries, up to the
/// table's `write.summary.partition-limit`), then the `total-*` counts: the parent's plus what
/// was added, less what was removed. A total the parent does not have is left out (it is
/// unknown, as iceberg-java does), except for a first snapshot, whose totals start at 0.
fn summary<'a>(
    metadata: &TableMetadata,
    schema: &SchemaRef,
    operation: Operation,
    added: impl Iterator<Item = &'a (PartitionSpecRef, Vec<&'a DataFile>)>,
    removed: &[(PartitionSpecRef, Vec<&DataFile>)],
    properties: &HashMap<String, String>,
) -> Summary {
    let mut collector = SnapshotSummaryCollector::default();
    let limit = metadata
        .properties()
        .get(TableProperties::PROPERTY_WRITE_PARTITION_SUMMARY_LIMIT)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(TableProperties::PROPERTY_WRITE_PARTITION_SUMMARY_LIMIT_DEFAULT);
    collector.set_partition_summary_limit(limit);
    for (spec, files) in added {
        for file in files {
            collector.add_file(file, schema.clone(), spec.clone());
        }
    }
    for (spec, files) in removed {
        for file in files {
            collector.remove_file(file, schema.clone(), spec.clone());
        }
    }
    let mut additional = properties.clone();
    additional.extend(collector.build());

    let parent = metadata.current_snapshot().map(|s| s.summary());
    for (total, added, removed) in TOTALS {
        let count =
            |key: &str| additional.get(key).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let previous = match parent {
            None => Some(0),
            Some(parent) => {
                parent.additional_properties.get(total).and_then(|v| v.parse::<u64>().ok())
            }
        };
        match previous {
            Some(previous) => {
                let value = (previous + count(added)).saturating_sub(count(removed));
                additional.insert(total.to_string(), value.to_string());
            }
            None => {
                additional.remove(total);
            }
        }
    }
    Summary { operation, additional_properties: additional }
}
