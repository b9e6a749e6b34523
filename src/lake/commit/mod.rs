//! The one way misql changes a table. Every change — new data files (append), data plus delete
//! files (row delta), metadata only (schema, rollback, properties) — is built as requirements
//! plus `TableUpdate`s on a base metadata ([`Proposal`]), checked once, and swapped once in the
//! catalog ([`swap`]: SQLite compare-and-swap, or the REST commit endpoint).
//!
//! Retries follow the failure's kind:
//! - a lost swap (another writer committed first) reloads the table, checks that the change
//!   still holds on the new base (the sync's checkpoint did not move; no data file its position
//!   deletes point into was removed; a metadata change's requirements still hold), and builds it
//!   again, up to the table's `commit.retry.num-retries` times;
//! - an unknown outcome (a REST 5xx, a timeout or a dropped connection after the request was
//!   sent) is settled from the table: reloaded, and looked up (the snapshot misql proposed, or
//!   the metadata change's effect). Applied: done. Not applied: built again. Unreadable: the
//!   error goes up as [`ErrorKind::CommitUnknown`] and the sync resumes from the table's own
//!   checkpoint, so a batch is never committed twice and never dropped.
//!
//! iceberg-rust 0.10.1 cannot do this: a `TableCommit` cannot be built outside the crate, its
//! transaction actions cannot be extended, and none of them commits delete files.

mod manifest;
mod rewrite;
mod settle;
mod snapshot;
mod swap;
mod together;
mod validate;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ::iceberg::spec::{DataContentType, DataFile, TableMetadata};
use ::iceberg::table::Table;
use ::iceberg::{TableRequirement, TableUpdate};

use super::catalog::IcebergConnection;
use super::lineage::main_lineage;
use super::live::{ManifestCache, live_entries_cached};
use crate::{Error, ErrorKind, Result};
pub use rewrite::Rewrite;
pub use settle::DELETE_AFTER_COMMIT_PROPERTY;
use settle::{Settled, confirm, expire_metadata_files, reload, settle};
pub use swap::CommitSession;
pub use swap::REST_TIMEOUT_OPTION;
use swap::{Committer, Swap};
pub use together::commit_together;
pub use validate::check_loads_back;

/// Table property: how many times a lost compare-and-swap is retried.
const RETRIES_PROPERTY: &str = "commit.retry.num-retries";
/// Retries when the table does not say.
const DEFAULT_RETRIES: u32 = 4;
/// First wait before a retry; doubled each time, up to [`MAX_WAIT`].
const MIN_WAIT: Duration = Duration::from_millis(100);
/// Longest wait between retries.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// Checks, on a base that moved since the change was computed, that the change still applies:
/// an error (of kind [`ErrorKind::Superseded`] for a sync whose checkpoint moved) refuses it.
pub type Guard = Box<dyn Fn(&Table) -> Result<()> + Send + Sync>;

/// Whether a metadata-only change is visible in a table's metadata.
pub type Applied = Box<dyn Fn(&TableMetadata) -> bool + Send + Sync>;

/// Told of each fault a commit met and got past (a conflict rebuilt, an unknown outcome
/// settled), with what happened.
pub type Report = Box<dyn Fn(&str) + Send + Sync>;

/// One change to a table, committed by [`commit`].
pub struct Change {
    content: Content,
    properties: HashMap<String, String>,
    guard: Option<Guard>,
    report: Option<Report>,
}

enum Content {
    /// A new snapshot: `append` (data files only), `delete` (delete files only) or `overwrite`
    /// (both), as iceberg-java's `RowDelta`.
    Snapshot { data: Vec<DataFile>, deletes: Vec<DataFile> },
    /// A `replace` snapshot (a compaction): per partition, live files replaced by new data files
    /// with the same rows; every manifest merged. The summary keeps the base snapshot's keys
    /// that start with `carry` (a sync's checkpoint). Rewrites that no longer apply on a moved
    /// base are left out and listed in `dropped`.
    Compaction {
        rewrites: Vec<Rewrite>,
        carry: String,
        dropped: Mutex<Vec<usize>>,
        /// The manifests read by earlier attempts.
        manifests: ManifestCache,
    },
    /// Metadata only, applied where `requirements` hold.
    Metadata {
        what: String,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
        applied: Applied,
    },
}

impl Change {
    /// New data files, in one `append` snapshot.
    pub fn append(data: Vec<DataFile>) -> Self {
        Self::rows(data, Vec::new())
    }

    /// New data files and delete files (position or equality deletes) in one snapshot. New
    /// files get the snapshot's sequence number by inheritance, so position deletes apply to
    /// data files added by the same commit, equality deletes only to rows committed before.
    pub fn rows(data: Vec<DataFile>, deletes: Vec<DataFile>) -> Self {
        Self::new(Content::Snapshot { data, deletes })
    }

    /// A metadata-only change (`what` names it in messages): `updates`, applied where
    /// `requirements` hold; `applied` tells from a table's metadata whether it went through.
    pub fn metadata(
        what: impl Into<String>,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
        applied: Applied,
    ) -> Self {
        Self::new(Content::Metadata { what: what.into(), requirements, updates, applied })
    }

    /// A compaction: `rewrites` (possibly none: then only the manifests are merged) in one
    /// `replace` snapshot whose summary keeps the base snapshot's properties starting with
    /// `carry`. Committed by [`commit_compaction`], which says which rewrites were left out.
    fn compaction(rewrites: Vec<Rewrite>, carry: impl Into<String>) -> Self {
        Self::new(Content::Compaction {
            rewrites,
            carry: carry.into(),
            dropped: Mutex::default(),
            manifests: ManifestCache::default(),
        })
    }

    fn new(content: Content) -> Self {
        Self { content, properties: HashMap::new(), guard: None, report: None }
    }

    /// Adds `properties` (keys like `misql.phase`) to the new snapshot's summary. A snapshot
    /// change with no files but properties adds a checkpoint-only snapshot.
    pub fn with_properties(mut self, properties: HashMap<String, String>) -> Self {
        self.properties.extend(properties);
        self
    }

    /// Refuses the change on a base that moved unless `guard` accepts that base.
    pub fn guarded(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Tells `report` of each fault the commit gets past.
    pub fn reporting(mut self, report: Report) -> Self {
        self.report = Some(report);
        self
    }

    /// Logs a fault the commit got past, and reports it.
    fn got_past(&self, what: &str) {
        tracing::warn!("{what}");
        if let Some(report) = &self.report {
            report(what);
        }
    }

    fn is_empty(&self) -> bool {
        match &self.content {
            Content::Snapshot { data, deletes } => {
                data.is_empty() && deletes.is_empty() && self.properties.is_empty()
            }
            Content::Metadata { updates, .. } => updates.is_empty(),
            Content::Compaction { .. } => false,
        }
    }

    fn has_position_deletes(&self) -> bool {
        matches!(&self.content, Content::Snapshot { deletes, .. }
            if deletes.iter().any(|f| f.content_type() == DataContentType::PositionDeletes))
    }

    /// Whether the change is in `metadata` (after an unknown outcome).
    fn applied(&self, staged: &Staged, metadata: &TableMetadata) -> bool {
        match (&self.content, staged.snapshot_id) {
            (Content::Metadata { applied, .. }, _) => applied(metadata),
            (_, Some(id)) => main_lineage(metadata).any(|s| s.snapshot_id() == id),
            (_, None) => false,
        }
    }

    /// On a base that moved since `first` (the table the change was computed on): whether the
    /// change still applies.
    fn rebase(&self, base: &Table, first: &Table) -> Result<()> {
        if let Some(guard) = &self.guard {
            guard(base)?;
        }
        if self.has_position_deletes() {
            validate::check_no_data_files_removed(base, first.metadata().current_snapshot_id())?;
        }
        Ok(())
    }

    /// Builds the change on `base` (`first` is the table it was computed on): writes what a
    /// snapshot needs and folds the updates into the base's metadata.
    async fn stage(
        &self,
        base: &Table,
        first: &Table,
        commit: uuid::Uuid,
        attempt: u32,
    ) -> Result<Staged> {
        let files = match &self.content {
            Content::Metadata { .. } => None,
            Content::Snapshot { data, deletes } => Some((
                snapshot::Files {
                    data: data.clone(),
                    deletes: deletes.clone(),
                    removed: Vec::new(),
                    merge: None,
                },
                self.properties.clone(),
            )),
            Content::Compaction { rewrites, carry, dropped, manifests } => {
                let live = live_entries_cached(base, manifests).await?;
                Some(self.replacement(rewrites, carry, dropped, live, base, first))
            }
        };
        let (what, requirements, updates, snapshot_id, files) = match (&self.content, files) {
            (_, Some((files, properties))) => {
                let s = snapshot::stage(base, files, &properties, commit, attempt).await?;
                let what = format!("snapshot {}", s.snapshot_id);
                (what, s.requirements, s.updates, Some(s.snapshot_id), s.files)
            }
            (Content::Metadata { what, requirements, updates, .. }, None) => {
                (what.clone(), requirements.clone(), updates.clone(), None, Vec::new())
            }
            (_, None) => return Err(Error::internal("a snapshot change without files")),
        };
        let staged = Staged {
            proposal: Proposal { what, metadata: base.metadata().clone(), updates, requirements },
            snapshot_id,
            files,
        };
        match staged.fold(base) {
            Ok(metadata) => {
                Ok(Staged { proposal: Proposal { metadata, ..staged.proposal }, ..staged })
            }
            Err(e) => {
                staged.remove(base).await;
                Err(e)
            }
        }
    }

    /// A replace on `base` (whose live entries are `live`): leaves out the rewrites that no
    /// longer apply there (when the base moved past `first`, the table they were computed on),
    /// and carries the base snapshot's properties that start with `carry`.
    fn replacement(
        &self,
        rewrites: &[Rewrite],
        carry: &str,
        dropped: &Mutex<Vec<usize>>,
        live: Vec<crate::lake::live::Live>,
        base: &Table,
        first: &Table,
    ) -> (snapshot::Files, HashMap<String, String>) {
        let left_out = if base.metadata_location() == first.metadata_location() {
            Vec::new()
        } else {
            rewrite::conflicts(rewrites, &live, first.metadata().last_sequence_number())
        };
        let kept: Vec<&Rewrite> = rewrites
            .iter()
            .enumerate()
            .filter(|(i, _)| !left_out.contains(i))
            .map(|(_, r)| r)
            .collect();
        *dropped.lock().unwrap_or_else(|e| e.into_inner()) = left_out;
        let removed = kept.iter().flat_map(|r| r.removed.iter().cloned()).collect();
        let data = kept.iter().flat_map(|r| r.added.iter().cloned()).collect();
        let mut properties = self.properties.clone();
        if let Some(current) = base.metadata().current_snapshot() {
            for (key, value) in &current.summary().additional_properties {
                if key.starts_with(carry) {
                    properties.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
        }
        let files = snapshot::Files { data, deletes: Vec::new(), removed, merge: Some(live) };
        (files, properties)
    }
}

/// A new metadata for a table, not yet committed.
pub(crate) struct Proposal {
    /// What is committed, for messages (`snapshot 123`, `a new schema`).
    pub what: String,
    /// The base's metadata with the updates applied (written as the next metadata file for an
    /// SQL catalog).
    pub metadata: TableMetadata,
    /// The updates (sent to a REST catalog).
    pub updates: Vec<TableUpdate>,
    /// What must hold of the base for the updates to apply (checked here, and by a REST catalog).
    pub requirements: Vec<TableRequirement>,
}

/// One attempt at a change, built on a base but not yet swapped in.
struct Staged {
    proposal: Proposal,
    /// The new snapshot's id, for a snapshot change.
    snapshot_id: Option<i64>,
    /// Manifests and the manifest list written for this attempt.
    files: Vec<String>,
}

impl Staged {
    /// The base's metadata with the proposal's updates applied, once its requirements are
    /// checked, and checked to load back.
    fn fold(&self, base: &Table) -> Result<TableMetadata> {
        let name = base.identifier();
        let metadata = base.metadata();
        for requirement in &self.proposal.requirements {
            requirement.check(Some(metadata)).map_err(|e| {
                Error::commit(
                    ErrorKind::Conflict,
                    format!("cannot commit {} to {name}: {}", self.proposal.what, e.message()),
                )
            })?;
        }
        let builder = metadata.clone().into_builder(base.metadata_location().map(str::to_string));
        let built = self
            .proposal
            .updates
            .iter()
            .cloned()
            .try_fold(builder, |builder, update| update.apply(builder))
            .and_then(|builder| builder.build())
            .map_err(|e| {
                Error::iceberg(format!("committing {} to {name}", self.proposal.what), e)
            })?;
        check_loads_back(name, &built.metadata)?;
        Ok(built.metadata)
    }

    /// Removes what this attempt wrote (it did not go through), best effort.
    async fn remove(&self, base: &Table) {
        for file in &self.files {
            if let Err(e) = base.file_io().delete(file).await {
                tracing::debug!(file, error = %e, "cannot remove a file of a refused commit");
            }
        }
    }
}

/// Commits `change` to `table` and returns the table reloaded from the catalog. See the module
/// documentation for how failures are retried. On error nothing of the change is in the table;
/// the data and delete files stay in place (they are the caller's).
pub async fn commit(conn: &IcebergConnection, table: &Table, change: Change) -> Result<Table> {
    commit_change(conn, table, &change).await
}

/// A compaction's commit: the table after it, and the rewrites left out because the table
/// moved under them (redo them on `table`).
pub struct Replaced {
    /// The table reloaded after the commit.
    pub table: Table,
    /// The positions (in the rewrites given) of those not committed; their new files are not
    /// in the table.
    pub left_out: Vec<usize>,
}

/// Commits a compaction computed on `table`: `rewrites` in one `replace` snapshot (with every
/// manifest merged; with no rewrites, only that), keeping the base snapshot's summary
/// properties that start with `carry`. A rewrite that no longer applies on the table it is
/// committed on (a file it removes is gone, or a delete file committed since may target a file
/// it rewrote) is left out and returned.
pub async fn commit_compaction(
    conn: &IcebergConnection,
    table: &Table,
    rewrites: Vec<Rewrite>,
    carry: &str,
) -> Result<Replaced> {
    let change = Change::compaction(rewrites, carry);
    let table = commit_change(conn, table, &change).await?;
    let Content::Compaction { dropped, .. } = change.content else {
        return Err(Error::internal("a compaction commit that is not a replace"));
    };
    let left_out = dropped.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(Replaced { table, left_out })
}

async fn commit_change(conn: &IcebergConnection, table: &Table, change: &Change) -> Result<Table> {
    let name = table.identifier().clone();
    if change.is_empty() {
        return reload(conn, &name).await;
    }
    if let Content::Snapshot { data, deletes } = &change.content {
        validate::check_contents(&name, data, deletes)?;
    }
    let retries = retries_of(table);
    let committer = Committer::new(conn, table)?;
    let commit_uuid = uuid::Uuid::now_v7();
    let mut base = table.clone();
    let mut wait = MIN_WAIT;
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_WAIT);
            base = reload(conn, &name).await?;
            change.rebase(&base, table)?;
        }
        let staged = change.stage(&base, table, commit_uuid, attempt).await?;
        let outcome = match committer.swap(&base, &staged.proposal).await {
            Ok(outcome) => outcome,
            Err(e) => {
                staged.remove(&base).await;
                return Err(e);
            }
        };
        match outcome {
            Swap::Done => {
                let committed = confirm(conn, &name, change, &staged).await?;
                expire_metadata_files(&base, &committed).await;
                return Ok(committed);
            }
            Swap::Conflict => {
                let what = format!("commit to {name}: another writer committed first");
                change.got_past(&format!("{what}; building it again on the new table state"));
            }
            Swap::Unknown(error) => match settle(conn, &name, change, &staged).await {
                Settled::Applied(reloaded) => {
                    change.got_past(&format!("{error}; the table has it: committed"));
                    expire_metadata_files(&base, &reloaded).await;
                    return Ok(*reloaded);
                }
                Settled::NotApplied => {
                    change.got_past(&format!(
                        "{error}; the table does not have it: committing it again"
                    ));
                }
                Settled::Unknown => return Err(error),
            },
        }
        staged.remove(&base).await;
    }
    Err(outrun(&name.to_string(), retries))
}

/// How many times a lost compare-and-swap on `table` is retried.
fn retries_of(table: &Table) -> u32 {
    table
        .metadata()
        .properties()
        .get(RETRIES_PROPERTY)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_RETRIES)
}

/// The error of a commit to `to` that lost every one of its `retries` + 1 swaps.
fn outrun(to: &str, retries: u32) -> Error {
    Error::commit(
        ErrorKind::Conflict,
        format!(
            "cannot commit to {to}: other writers committed first {} times in a row",
            retries + 1
        ),
    )
    .with_hint(format!(
        "retry later, or raise the table property {RETRIES_PROPERTY} (now {retries})"
    ))
}
