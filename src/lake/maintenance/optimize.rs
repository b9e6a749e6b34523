//! Compaction (`OPTIMIZE`): per partition, the data files that have deletes, or that are small,
//! rewritten into files near the target size with the deletes applied; the delete files that
//! no longer apply dropped; every manifest merged. One `replace` snapshot through the commit
//! path, which keeps the sync's checkpoint keys, so a sync resumes after it where it was.
//!
//! Partitions a concurrent writer touched while they were rewritten are left out of the commit
//! (see `commit::commit_compaction`) and redone on the new table, a bounded number of times.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use ::iceberg::Runtime;
use ::iceberg::arrow::ArrowReaderBuilder;
use ::iceberg::scan::FileScanTask;
use ::iceberg::spec::{DataContentType, DataFile, Struct};
use ::iceberg::table::Table;
use futures::{StreamExt, TryStreamExt};

use crate::failpoint::failpoint;
use crate::lake::catalog::IcebergConnection;
use crate::lake::commit::{Rewrite, commit_compaction};
use crate::lake::live::{Live, live_entries};
use crate::lake::writer::{TableWriter, WriteOptions};
use crate::{Error, Result};

/// Summary properties a compaction carries from the snapshot it replaces: a sync's checkpoint.
pub const CARRIED_PREFIX: &str = "misql.";

/// How many times partitions left out because of a concurrent writer are redone.
const REDO_ROUNDS: u32 = 3;

/// What to compact.
#[derive(Debug, Clone)]
pub struct OptimizeOptions {
    /// The size new data files are rolled at; a file under 3/4 of it is small. Default: the
    /// table's `write.target-file-size-bytes`, else 128 MiB.
    pub target_file_size: Option<u64>,
    /// A partition without deletes is rewritten when it has at least this many small files.
    /// Default 2.
    pub min_input_files: usize,
    /// Merge the manifests even when no partition needs a rewrite, once the current snapshot
    /// has more than this many. Default 8.
    pub max_manifests: usize,
    /// Stop choosing more partitions once this much time went into rewriting (at least one
    /// partition is done). `None`: no limit.
    pub time_budget: Option<Duration>,
}

impl Default for OptimizeOptions {
    fn default() -> Self {
        Self { target_file_size: None, min_input_files: 2, max_manifests: 8, time_budget: None }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptimizeReport {
    /// Partitions rewritten.
    pub partitions: u64,
    /// Data files taken out.
    pub data_files_removed: u64,
    /// Bytes of the data files taken out.
    pub bytes_removed: u64,
    /// Delete files taken out.
    pub delete_files_removed: u64,
    /// Deletes (position delete records and equality delete rows) applied and dropped.
    pub deletes_applied: u64,
    /// New data files written.
    pub data_files_added: u64,
    /// Bytes of the new data files.
    pub bytes_added: u64,
    /// Rows in the new data files.
    pub rows: u64,
    /// Manifests in the current snapshot before.
    pub manifests_before: u64,
    /// Manifests in the current snapshot after.
    pub manifests_after: u64,
    /// Partitions not rewritten because another writer kept changing them.
    pub partitions_skipped: u64,
    /// Whether a snapshot was committed.
    pub committed: bool,
    /// The data files added (committed).
    pub added: Vec<DataFile>,
}

/// One partition of a table: its spec and value.
type PartitionKey = (i32, Struct);

/// The live files of one partition.
#[derive(Default)]
struct Partition {
    data: Vec<Live>,
    deletes: Vec<Live>,
}

/// Compacts `table` (see the module documentation) and returns the table after it.
pub async fn optimize(
    conn: &IcebergConnection,
    table: &Table,
    options: &OptimizeOptions,
) -> Result<(Table, OptimizeReport)> {
    let started = Instant::now();
    tracing::debug!("OPTIMIZE {}: started", table.identifier());
    let mut write = WriteOptions::from_table(table);
    if let Some(size) = options.target_file_size {
        write.target_file_size = size;
    }
    let mut report = OptimizeReport {
        manifests_before: manifest_count(table).await?,
        ..OptimizeReport::default()
    };
    let mut table = table.clone();
    let mut only: Option<HashSet<PartitionKey>> = None;
    for round in 0..=REDO_ROUNDS {
        let partitions = partitions(&table).await?;
        let chosen = choose(&partitions, &write, options, only.as_ref());
        if chosen.is_empty()
            && (round > 0 || report.manifests_before as usize <= options.max_manifests)
        {
            break;
        }
        let (rewrites, keys) =
            rewrite_partitions(&table, chosen, &write, options.time_budget).await?;
        let tallies: Vec<Tally> = rewrites.iter().map(Tally::of).collect();
        let added: Vec<Vec<DataFile>> = rewrites.iter().map(|r| r.added.clone()).collect();
        failpoint("optimize-before-commit");
        let replaced = commit_compaction(conn, &table, rewrites, CARRIED_PREFIX).await?;
        failpoint("optimize-after-commit");
        table = replaced.table;
        report.committed = true;
        let mut left = HashSet::new();
        for (i, (tally, key)) in tallies.iter().zip(keys).enumerate() {
            if replaced.left_out.contains(&i) {
                remove_files(&table, added[i].iter()).await;
                left.insert(key);
            } else {
                tally.add_to(&mut report);
                report.added.extend(added[i].iter().cloned());
            }
        }
        if left.is_empty() {
            only = None;
            break;
        }
        tracing::info!(
            "OPTIMIZE {}: {} partitions changed by another writer meanwhile; redoing them",
            table.identifier(),
            left.len()
        );
        only = Some(left);
    }
    report.partitions_skipped = only.map_or(0, |left| left.len() as u64);
    report.manifests_after = manifest_count(&table).await?;
    let took = started.elapsed().as_millis();
    if report.committed {
        tracing::info!(
            "OPTIMIZE {}: {} partition(s) rewritten in {took} ms: {} data file(s) and {} delete \
             file(s) ({} deletes applied) into {} data file(s) of {} rows; manifests {} → {}",
            table.identifier(),
            report.partitions,
            report.data_files_removed,
            report.delete_files_removed,
            report.deletes_applied,
            report.data_files_added,
            report.rows,
            report.manifests_before,
            report.manifests_after
        );
    } else {
        tracing::debug!("OPTIMIZE {}: nothing to rewrite ({took} ms)", table.identifier());
    }
    Ok((table, report))
}

/// The live files of `table`, by partition.
async fn partitions(table: &Table) -> Result<BTreeMap<String, (PartitionKey, Partition)>> {
    let mut partitions: BTreeMap<String, (PartitionKey, Partition)> = BTreeMap::new();
    for live in live_entries(table).await? {
        let key = (live.spec_id, live.entry.data_file().partition().clone());
        let (_, partition) =
            partitions.entry(format!("{key:?}")).or_insert_with(|| (key, Partition::default()));
        match live.entry.content_type() {
            DataContentType::Data => partition.data.push(live),
            _ => partition.deletes.push(live),
        }
    }
    Ok(partitions)
}

/// The partitions to rewrite: those with delete files (every data file rewritten, the deletes
/// dropped), and those with at least `min_input_files` small data files (only the small ones
/// rewritten). Equality deletes of an unpartitioned spec in a table with other partitions apply
/// to every partition: they are kept.
fn choose<'a>(
    partitions: &'a BTreeMap<String, (PartitionKey, Partition)>,
    write: &WriteOptions,
    options: &OptimizeOptions,
    only: Option<&HashSet<PartitionKey>>,
) -> Vec<(&'a PartitionKey, Vec<&'a Live>, Vec<&'a Live>)> {
    let small = write.target_file_size / 4 * 3;
    let mut chosen = Vec::new();
    for (key, partition) in partitions.values() {
        if only.is_some_and(|only| !only.contains(key)) {
            continue;
        }
        if !partition.deletes.is_empty() {
            let global = key.1.fields().is_empty() && partitions.len() > 1;
            let dropped = partition
                .deletes
                .iter()
                .filter(|l| !(global && l.entry.content_type() == DataContentType::EqualityDeletes))
                .collect::<Vec<_>>();
            if !(partition.data.is_empty() && dropped.is_empty()) {
                chosen.push((key, partition.data.iter().collect(), dropped));
            }
            continue;
        }
        let smalls: Vec<&Live> =
            partition.data.iter().filter(|l| l.entry.file_size_in_bytes() < small).collect();
        if smalls.len() >= options.min_input_files.max(2) {
            chosen.push((key, smalls, Vec::new()));
        }
    }
    // The partitions with the most delete files, then the most files, first: a round cut short
    // by its time budget does the worst ones, and the next round the next ones.
    chosen.sort_by_key(|(_, data, deletes)| std::cmp::Reverse((deletes.len(), data.len())));
    chosen
}

/// Rewrites each chosen partition: its data files' rows, deletes applied, into new files.
async fn rewrite_partitions(
    table: &Table,
    chosen: Vec<(&PartitionKey, Vec<&Live>, Vec<&Live>)>,
    write: &WriteOptions,
    budget: Option<Duration>,
) -> Result<(Vec<Rewrite>, Vec<PartitionKey>)> {
    let tasks = scan_tasks(table).await?;
    // The budget is for rewriting: planning is paid once per round whatever it holds.
    let deadline = budget.map(|budget| Instant::now() + budget);
    let (mut rewrites, mut keys) = (Vec::new(), Vec::new());
    for (key, data, deletes) in chosen {
        if deadline.is_some_and(|d| Instant::now() >= d) && !rewrites.is_empty() {
            break;
        }
        let paths: HashSet<&str> = data.iter().map(|l| l.entry.file_path()).collect();
        let mine: Vec<FileScanTask> =
            tasks.iter().filter(|t| paths.contains(t.data_file_path())).cloned().collect();
        let added = rewrite_rows(table, mine, write).await?;
        let removed =
            data.iter().chain(&deletes).map(|l| l.entry.data_file().clone()).collect::<Vec<_>>();
        rewrites.push(Rewrite { removed, added });
        keys.push(key.clone());
    }
    Ok((rewrites, keys))
}

/// The scan tasks of the table's current snapshot (each data file with the deletes that
/// apply to it).
async fn scan_tasks(table: &Table) -> Result<Vec<FileScanTask>> {
    let name = table.identifier();
    let Some(current) = table.metadata().current_snapshot_id() else { return Ok(Vec::new()) };
    let scan = table
        .scan()
        .snapshot_id(current)
        .select_all()
        .build()
        .map_err(|e| Error::iceberg(format!("planning a scan of {name}"), e))?;
    scan.plan_files()
        .await
        .map_err(|e| Error::iceberg(format!("planning a scan of {name}"), e))?
        .try_collect()
        .await
        .map_err(|e| Error::iceberg(format!("planning a scan of {name}"), e))
}

/// Reads `tasks` (deletes applied) and writes their rows into new data files.
async fn rewrite_rows(
    table: &Table,
    tasks: Vec<FileScanTask>,
    write: &WriteOptions,
) -> Result<Vec<DataFile>> {
    let name = table.identifier();
    let context = || format!("reading the files of {name} to compact");
    let runtime = Runtime::try_current().map_err(|e| Error::iceberg(context(), e))?;
    // One file at a time: iceberg 0.10.1's delete-file cache can wait forever when two
    // concurrent reads share a position delete file (fixed upstream in apache/iceberg-rust#2859,
    // not released); a compaction's files of one partition share theirs.
    let reader = ArrowReaderBuilder::new(table.file_io().clone(), runtime)
        .with_data_file_concurrency_limit(1)
        .build();
    let stream = futures::stream::iter(tasks.into_iter().map(Ok)).boxed();
    let mut batches = reader.read(stream).map_err(|e| Error::iceberg(context(), e))?.stream();
    let mut writer = TableWriter::new(table, write)?;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| Error::iceberg(context(), e))?;
        writer.write(&batch).await?;
    }
    // The keys are not kept: a compaction can rewrite most of a table, and a sync reads its
    // compacted files' keys back one file at a time instead (see `sync::follow::apply`).
    Ok(writer.finish().await?.into_iter().map(|written| written.file).collect())
}

/// The counts one rewrite adds to a report.
struct Tally(OptimizeReport);

impl Tally {
    fn of(rewrite: &Rewrite) -> Self {
        let mut t = OptimizeReport { partitions: 1, ..OptimizeReport::default() };
        for file in &rewrite.removed {
            if file.content_type() == DataContentType::Data {
                t.data_files_removed += 1;
                t.bytes_removed += file.file_size_in_bytes();
            } else {
                t.delete_files_removed += 1;
                t.deletes_applied += file.record_count();
            }
        }
        for file in &rewrite.added {
            t.data_files_added += 1;
            t.bytes_added += file.file_size_in_bytes();
            t.rows += file.record_count();
        }
        Self(t)
    }

    fn add_to(&self, report: &mut OptimizeReport) {
        let t = &self.0;
        report.partitions += t.partitions;
        report.data_files_removed += t.data_files_removed;
        report.bytes_removed += t.bytes_removed;
        report.delete_files_removed += t.delete_files_removed;
        report.deletes_applied += t.deletes_applied;
        report.data_files_added += t.data_files_added;
        report.bytes_added += t.bytes_added;
        report.rows += t.rows;
    }
}

/// Manifests in the table's current snapshot.
pub async fn manifest_count(table: &Table) -> Result<u64> {
    let Some(current) = table.metadata().current_snapshot() else { return Ok(0) };
    let list = table.manifest_list_reader(current).load().await.map_err(|e| {
        Error::iceberg(format!("reading the manifest list of {}", table.identifier()), e)
    })?;
    Ok(list.entries().len() as u64)
}

/// Deletes files no commit took (best effort: VACUUM removes what is left).
async fn remove_files<'a>(table: &Table, files: impl Iterator<Item = &'a DataFile>) {
    for file in files {
        if let Err(e) = table.file_io().delete(file.file_path()).await {
            tracing::debug!(file = file.file_path(), error = %e, "cannot remove an uncommitted file");
        }
    }
}
