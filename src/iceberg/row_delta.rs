//! Committing new data files together with delete files (position or equality deletes) in one
//! snapshot: Iceberg's "row delta".
//!
//! iceberg-rust 0.10.1 has no public transaction action that commits delete files (`FastAppend`
//! takes data files only, and a `TableCommit` cannot be built outside the crate), so misql builds
//! the snapshot from the library's public pieces, as its `SnapshotProducer` does:
//!
//! 1. a data manifest and a delete manifest (per partition spec) with the new files as `ADDED`
//!    entries of the new snapshot, their sequence numbers left to inheritance;
//! 2. a manifest list holding those plus every manifest of the current snapshot;
//! 3. the snapshot (parent, sequence number = last + 1, schema id, summary with the `added-*`
//!    counts from the library's `SnapshotSummaryCollector` and the `total-*` counts carried on
//!    from the parent), and the table metadata with it on `main`;
//! 4. a compare-and-swap in the catalog ([`super::swap`]) with the requirements "same table
//!    UUID" and "main still at the parent snapshot".
//!
//! A lost compare-and-swap reloads the table and rebuilds steps 1–4 on top of it (the data and
//! delete files stay as they are), up to the table's `commit.retry.num-retries` times.

use std::collections::HashMap;
use std::time::Duration;

use ::iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, FormatVersion, MAIN_BRANCH, ManifestFile,
    ManifestListWriter, ManifestWriterBuilder, Operation, PartitionSpecRef, SchemaRef, Snapshot,
    SnapshotReference, SnapshotRetention, SnapshotSummaryCollector, Summary, TableMetadata,
    TableProperties, UNASSIGNED_SEQUENCE_NUMBER,
};
use ::iceberg::table::Table;
use ::iceberg::{TableIdent, TableRequirement, TableUpdate};

use super::catalog::IcebergConnection;
use super::swap::{Committer, Proposal, Swap};
use crate::{Error, Result};

/// Table property: how many times a lost compare-and-swap is retried.
const RETRIES_PROPERTY: &str = "commit.retry.num-retries";
/// Retries when the table does not say.
const DEFAULT_RETRIES: u32 = 4;
/// First wait before a retry; doubled each time, up to [`MAX_WAIT`].
const MIN_WAIT: Duration = Duration::from_millis(100);
/// Longest wait between retries.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// The summary keys with running totals: (total, added, removed).
const TOTALS: [(&str, &str, &str); 6] = [
    ("total-data-files", "added-data-files", "deleted-data-files"),
    ("total-delete-files", "added-delete-files", "removed-delete-files"),
    ("total-records", "added-records", "deleted-records"),
    ("total-files-size", "added-files-size", "removed-files-size"),
    ("total-position-deletes", "added-position-deletes", "removed-position-deletes"),
    ("total-equality-deletes", "added-equality-deletes", "removed-equality-deletes"),
];

/// Commits `data_files` and `delete_files` (position or equality deletes) to `table` in ONE
/// snapshot, with `properties` (keys like `misql.checkpoint`) added to the snapshot summary, and
/// returns the table reloaded from the catalog.
///
/// The snapshot's operation is `append` when there are no delete files, `delete` when there are
/// only delete files, and `overwrite` when there are both (as iceberg-java's `RowDelta`). New
/// files get the snapshot's sequence number by inheritance, so position deletes in the same
/// commit apply to data files added by it, while equality deletes apply only to rows committed
/// before. A commit with no files but properties adds a checkpoint-only snapshot; with neither
/// it is a no-op that returns the table reloaded.
///
/// Files may belong to any partition spec of the table (a position delete file carries the
/// spec and partition of the data files it targets); each must match its spec's partition type.
/// Only format version 2 tables are supported.
///
/// A concurrent commit (a lost compare-and-swap) is retried on top of the new current snapshot,
/// up to the table's `commit.retry.num-retries` (default 4) times, unless a concurrent commit
/// removed data files while `delete_files` holds position deletes (they might target a removed
/// file): that is an error, as is running out of retries. On error nothing of this commit is in
/// the table; the data and delete files are left in place (they are the caller's), and the
/// manifests written for a refused attempt are removed.
pub async fn commit_row_delta(
    conn: &IcebergConnection,
    table: &Table,
    data_files: Vec<DataFile>,
    delete_files: Vec<DataFile>,
    properties: HashMap<String, String>,
) -> Result<Table> {
    let name = table.identifier().clone();
    if data_files.is_empty() && delete_files.is_empty() && properties.is_empty() {
        return reload(conn, &name).await;
    }
    check_contents(&name, &data_files, &delete_files)?;
    let has_position_deletes =
        delete_files.iter().any(|f| f.content_type() == DataContentType::PositionDeletes);
    let mut committer = Committer::new(conn, table)?;
    let retries = table
        .metadata()
        .properties()
        .get(RETRIES_PROPERTY)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_RETRIES);
    let first_parent = table.metadata().current_snapshot_id();
    let commit_uuid = uuid::Uuid::now_v7();

    let mut base = table.clone();
    let mut wait = MIN_WAIT;
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_WAIT);
            base = reload(conn, &name).await?;
            if has_position_deletes {
                check_no_data_files_removed(&base, first_parent)?;
            }
        }
        let staged =
            stage(&base, &data_files, &delete_files, &properties, commit_uuid, attempt).await?;
        match committer.swap(&base, &staged.proposal).await {
            Ok(Swap::Done) => {
                let reloaded = reload(conn, &name).await?;
                if !main_lineage(reloaded.metadata()).any(|s| s.snapshot_id() == staged.snapshot_id)
                {
                    return Err(Error::plan(format!(
                        "the commit of snapshot {} to {name} was accepted, but the catalog does \
                         not have it (its current metadata is {})",
                        staged.snapshot_id,
                        reloaded.metadata_location().unwrap_or("unknown")
                    ))
                    .with_hint(
                        "another writer may have replaced it at once; the files written are not \
                         part of the table, retry from the last checkpoint",
                    ));
                }
                return Ok(reloaded);
            }
            Ok(Swap::Conflict) => {
                tracing::debug!(table = %name, attempt, "commit conflict, retrying on the new base");
                staged.remove(&base).await;
            }
            Ok(Swap::Unknown(error)) => {
                // The catalog may have applied it: only the table itself can tell.
                return match reload(conn, &name).await {
                    Ok(reloaded)
                        if main_lineage(reloaded.metadata())
                            .any(|s| s.snapshot_id() == staged.snapshot_id) =>
                    {
                        Ok(reloaded)
                    }
                    _ => Err(error),
                };
            }
            Err(e) => {
                staged.remove(&base).await;
                return Err(e);
            }
        }
    }
    Err(Error::plan(format!(
        "cannot commit to {name}: other writers committed first {} times in a row",
        retries + 1
    ))
    .with_hint(format!(
        "retry later, or raise the table property {RETRIES_PROPERTY} (now {retries})"
    )))
}

/// The table as the catalog has it now.
async fn reload(conn: &IcebergConnection, name: &TableIdent) -> Result<Table> {
    conn.catalog.load_table(name).await.map_err(|e| Error::iceberg(format!("loading {name}"), e))
}

/// The snapshots of the main branch, newest first.
fn main_lineage(metadata: &TableMetadata) -> impl Iterator<Item = &::iceberg::spec::SnapshotRef> {
    std::iter::successors(metadata.current_snapshot(), move |s| {
        s.parent_snapshot_id().and_then(|id| metadata.snapshot_by_id(id))
    })
}

/// Data files must hold data; delete files, deletes (equality deletes with their field ids).
fn check_contents(name: &TableIdent, data: &[DataFile], deletes: &[DataFile]) -> Result<()> {
    if let Some(file) = data.iter().find(|f| f.content_type() != DataContentType::Data) {
        return Err(Error::plan(format!(
            "cannot commit `{}` to {name} as a data file: it holds {:?}",
            file.file_path(),
            file.content_type()
        ))
        .with_hint("pass delete files as delete_files"));
    }
    for file in deletes {
        match file.content_type() {
            DataContentType::Data => {
                return Err(Error::plan(format!(
                    "cannot commit `{}` to {name} as a delete file: it holds data",
                    file.file_path()
                ))
                .with_hint("pass data files as data_files"));
            }
            DataContentType::EqualityDeletes
                if file.equality_ids().is_none_or(|ids| ids.is_empty()) =>
            {
                return Err(Error::plan(format!(
                    "the equality delete file `{}` for {name} names no equality field ids",
                    file.file_path()
                ))
                .with_hint("write equality deletes with EqualityDeleteWriterConfig"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// After a lost compare-and-swap: position deletes stay right on the new base only if no commit
/// since `first_parent` removed data files (a rewrite would move the rows they point at).
fn check_no_data_files_removed(base: &Table, first_parent: Option<i64>) -> Result<()> {
    let name = base.identifier();
    let mut found_parent = first_parent.is_none();
    for snapshot in main_lineage(base.metadata()) {
        if Some(snapshot.snapshot_id()) == first_parent {
            found_parent = true;
            break;
        }
        let summary = snapshot.summary();
        let removed = summary
            .additional_properties
            .get("deleted-data-files")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if removed > 0 {
            return Err(Error::plan(format!(
                "cannot commit position deletes to {name}: a concurrent {} commit (snapshot {}) \
                 removed {removed} data files, which the deletes may point into",
                summary.operation.as_str(),
                snapshot.snapshot_id()
            ))
            .with_hint(
                "rerun from the last checkpoint; the rows are read again from the new table state",
            ));
        }
    }
    if !found_parent {
        return Err(Error::plan(format!(
            "cannot commit position deletes to {name}: its main branch no longer descends from \
             snapshot {}, which they were written against",
            first_parent.unwrap_or_default()
        ))
        .with_hint("rerun from the last checkpoint"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Staging: manifests, manifest list, snapshot, metadata
// ---------------------------------------------------------------------------------------------

/// One attempt's new snapshot, written but not yet committed.
struct Staged {
    snapshot_id: i64,
    /// The parent's metadata plus the snapshot on main, for the compare-and-swap.
    proposal: Proposal,
    /// Manifests and the manifest list written for this attempt.
    files: Vec<String>,
}

impl Staged {
    /// Removes what this attempt wrote (it lost the compare-and-swap), best effort.
    async fn remove(&self, base: &Table) {
        for file in &self.files {
            if let Err(e) = base.file_io().delete(file).await {
                tracing::debug!(file, error = %e, "cannot remove a file of a refused commit");
            }
        }
    }
}

/// The partition spec id of `file`, which iceberg-rust 0.10.1 keeps but does not expose: the
/// spec among `metadata`'s whose id, given to a copy of `file`, makes it equal to `file`.
/// `None` if no spec of the table fits.
pub fn partition_spec_id(file: &DataFile, metadata: &TableMetadata) -> Option<i32> {
    let default = metadata.default_partition_spec_id();
    std::iter::once(default)
        .chain(metadata.partition_specs_iter().map(|s| s.spec_id()).filter(|&id| id != default))
        .find(|&id| with_spec_id(file, id).is_some_and(|copy| copy == *file))
}

/// A copy of `file` with partition spec id `spec_id`.
fn with_spec_id(file: &DataFile, spec_id: i32) -> Option<DataFile> {
    let mut builder = DataFileBuilder::default();
    builder
        .content(file.content_type())
        .file_path(file.file_path().to_string())
        .file_format(file.file_format())
        .partition(file.partition().clone())
        .record_count(file.record_count())
        .file_size_in_bytes(file.file_size_in_bytes())
        .column_sizes(file.column_sizes().clone())
        .value_counts(file.value_counts().clone())
        .null_value_counts(file.null_value_counts().clone())
        .nan_value_counts(file.nan_value_counts().clone())
        .lower_bounds(file.lower_bounds().clone())
        .upper_bounds(file.upper_bounds().clone())
        .key_metadata(file.key_metadata().map(<[u8]>::to_vec))
        .split_offsets(file.split_offsets().map(<[i64]>::to_vec))
        .equality_ids(file.equality_ids())
        .first_row_id(file.first_row_id())
        .partition_spec_id(spec_id)
        .referenced_data_file(file.referenced_data_file())
        .content_offset(file.content_offset())
        .content_size_in_bytes(file.content_size_in_bytes());
    if let Some(order) = file.sort_order_id() {
        builder.sort_order_id(order);
    }
    builder.build().ok()
}

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
            return Err(Error::plan(format!(
                "cannot commit `{}` to {name}: it was written for a partition spec the table \
                 does not have",
                file.file_path()
            ))
            .with_hint("write files with this table's writers"));
        };
        let spec = metadata
            .partition_spec_by_id(spec_id)
            .cloned()
            .ok_or_else(|| Error::plan(format!("{name} has no partition spec {spec_id}")))?;
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
            return Err(Error::plan(format!(
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

/// Writes the manifests and manifest list of a new snapshot on top of `base`, and builds the
/// snapshot and the metadata that has it on main.
async fn stage(
    base: &Table,
    data_files: &[DataFile],
    delete_files: &[DataFile],
    properties: &HashMap<String, String>,
    commit_uuid: uuid::Uuid,
    attempt: u32,
) -> Result<Staged> {
    let name = base.identifier().clone();
    let context = || format!("committing to {name}");
    let metadata = base.metadata();
    if metadata.format_version() != FormatVersion::V2 {
        return Err(Error::plan(format!(
            "cannot commit delete files to {name}: it is an Iceberg format version {} table",
            metadata.format_version() as u8
        ))
        .with_hint("misql writes row-level deletes to format version 2 tables"));
    }
    if metadata.properties().contains_key("encryption.key-id") {
        return Err(Error::plan(format!("cannot commit to {name}: it is encrypted"))
            .with_hint("misql does not write encrypted Iceberg tables"));
    }
    let schema = metadata.current_schema().clone();
    let data_groups = by_spec(base, data_files, &schema)?;
    let delete_groups = by_spec(base, delete_files, &schema)?;

    let snapshot_id = new_snapshot_id(metadata);
    let parent = metadata.current_snapshot();
    let sequence_number = metadata.last_sequence_number() + 1;
    let file_io = base.file_io();
    let metadata_dir = format!("{}/metadata", metadata.location());
    let mut files = Vec::new();

    // Manifests of the new files.
    let mut manifests: Vec<ManifestFile> = Vec::new();
    let groups =
        data_groups.iter().map(|g| (false, g)).chain(delete_groups.iter().map(|g| (true, g)));
    for (deletes, (spec, group)) in groups {
        let path = format!("{metadata_dir}/{commit_uuid}-a{attempt}-m{}.avro", manifests.len());
        let output = file_io.new_output(&path).map_err(|e| Error::iceberg(context(), e))?;
        let builder =
            ManifestWriterBuilder::new(output, Some(snapshot_id), schema.clone(), (**spec).clone());
        let mut writer = if deletes { builder.build_v2_deletes() } else { builder.build_v2_data() };
        for file in group {
            writer
                .add_file((*file).clone(), UNASSIGNED_SEQUENCE_NUMBER)
                .map_err(|e| Error::iceberg(context(), e))?;
        }
        files.push(path);
        manifests
            .push(writer.write_manifest_file().await.map_err(|e| Error::iceberg(context(), e))?);
    }

    // Every manifest of the parent comes along.
    if let Some(parent) = parent {
        let list = base
            .manifest_list_reader(parent)
            .load()
            .await
            .map_err(|e| Error::iceberg(format!("reading the manifest list of {name}"), e))?;
        manifests.extend(list.consume_entries());
    }

    let manifest_list = format!("{metadata_dir}/snap-{snapshot_id}-{attempt}-{commit_uuid}.avro");
    let output = file_io.new_output(&manifest_list).map_err(|e| Error::iceberg(context(), e))?;
    let writer = output.writer().await.map_err(|e| Error::iceberg(context(), e))?;
    let mut list = ManifestListWriter::v2(
        writer,
        snapshot_id,
        parent.map(|p| p.snapshot_id()),
        sequence_number,
    );
    files.push(manifest_list.clone());
    list.add_manifests(manifests.into_iter()).map_err(|e| Error::iceberg(context(), e))?;
    list.close().await.map_err(|e| Error::iceberg(context(), e))?;

    let operation = match (data_files.is_empty(), delete_files.is_empty()) {
        (_, true) => Operation::Append,
        (true, false) => Operation::Delete,
        (false, false) => Operation::Overwrite,
    };
    let summary =
        summary(metadata, &schema, operation, data_groups.iter().chain(&delete_groups), properties);
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent.map(|p| p.snapshot_id()))
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(now_ms())
        .with_manifest_list(manifest_list)
        .with_summary(summary)
        .with_schema_id(metadata.current_schema_id())
        .build();
    let reference =
        SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None));
    let updates = vec![
        TableUpdate::AddSnapshot { snapshot: snapshot.clone() },
        TableUpdate::SetSnapshotRef {
            ref_name: MAIN_BRANCH.to_string(),
            reference: reference.clone(),
        },
    ];
    let built = metadata
        .clone()
        .into_builder(base.metadata_location().map(str::to_string))
        .add_snapshot(snapshot)
        .and_then(|b| b.set_ref(MAIN_BRANCH, reference))
        .and_then(|b| b.build())
        .map_err(|e| Error::iceberg(context(), e))?;
    let requirements = vec![
        TableRequirement::UuidMatch { uuid: metadata.uuid() },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_string(),
            snapshot_id: metadata.current_snapshot_id(),
        },
    ];
    let proposal = Proposal {
        what: format!("snapshot {snapshot_id}"),
        metadata: built.metadata,
        updates,
        requirements,
    };
    Ok(Staged { snapshot_id, proposal, files })
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

/// The snapshot summary: `properties`, then the `added-*` counts of the new files (and partition
/// summaries, up to the table's `write.summary.partition-limit`), then the `total-*` counts:
/// the parent's plus what was added. A total the parent does not have is left out (it is
/// unknown, as iceberg-java does), except for a first snapshot, whose totals start at 0.
fn summary<'a>(
    metadata: &TableMetadata,
    schema: &SchemaRef,
    operation: Operation,
    groups: impl Iterator<Item = &'a (PartitionSpecRef, Vec<&'a DataFile>)>,
    properties: &HashMap<String, String>,
) -> Summary {
    let mut collector = SnapshotSummaryCollector::default();
    let limit = metadata
        .properties()
        .get(TableProperties::PROPERTY_WRITE_PARTITION_SUMMARY_LIMIT)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(TableProperties::PROPERTY_WRITE_PARTITION_SUMMARY_LIMIT_DEFAULT);
    collector.set_partition_summary_limit(limit);
    for (spec, files) in groups {
        for file in files {
            collector.add_file(file, schema.clone(), spec.clone());
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
