//! CHECK SYNC: compares a sync's table with its collection, per `_id` range — every key, and a
//! hash of each row as the sync's own plan makes it from the document — and reports missing,
//! extra and different rows with example keys. It reads and writes nothing else: no lease, no
//! commit, so it runs beside a daemon (`misql --check -f syncs.sql`) or inside one.
//!
//! Under concurrent writes a table lags its collection by up to a flush interval or so, which
//! would show as differences. A round reads the collection first (chunks at a known cluster
//! time, as the copy does), then — when anything differs — waits until the table's checkpoint
//! is past that time (or the table has had no commit for twice the flush interval: the sync is
//! idle or not running) and reads the table again; a key found different is checked again in up
//! to [`ROUNDS`] more rounds, and only a key that differs in every round is reported.
//!
//! Memory: one hash and key per row of each side, as the key index holds per row.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use bson::{RawBson, RawDocumentBuf, doc};
use futures::TryStreamExt;

use super::SyncTask;
use crate::mongo::bson_arrow::BatchBuilder;
use crate::mongo::chunk::{ChunkCursor, Next, ReadMode};
use crate::mongo::ext_json;
use crate::mongo::id_range::{self, IdRange};
use crate::mongo::scan::FindRequest;
use crate::{Error, Result};

/// Rounds after the first for keys that differ.
pub const ROUNDS: usize = 3;

/// The longest a round waits for the sync to commit what the collection read showed.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// How the table and the collection differ in one `_id` range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeReport {
    /// The range, as its bounds in relaxed Extended JSON (`all` for the whole collection; rows
    /// of the table with no document say `(no document)`).
    pub range: String,
    /// Keys of documents with no row.
    pub missing: Vec<String>,
    /// Keys of rows with no document.
    pub extra: Vec<String>,
    /// Keys whose row is not what the plan makes of the document.
    pub different: Vec<String>,
}

impl RangeReport {
    /// Whether the range differs.
    pub fn differs(&self) -> bool {
        !(self.missing.is_empty() && self.extra.is_empty() && self.different.is_empty())
    }

    /// A few example keys, by kind.
    pub fn examples(&self) -> String {
        let kinds =
            [("missing", &self.missing), ("extra", &self.extra), ("different", &self.different)];
        let parts: Vec<String> = kinds
            .iter()
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(kind, keys)| {
                let shown: Vec<&str> = keys.iter().take(3).map(String::as_str).collect();
                format!("{kind}: {}", shown.join(", "))
            })
            .collect();
        parts.join("; ")
    }
}

/// What the collection holds: per key, the row's hash, its range and its document's `_id`.
struct Expected {
    rows: HashMap<String, (u64, usize)>,
    ranges: Vec<IdRange>,
    /// Every row shows its document as of this cluster time or earlier.
    read_until: Option<bson::Timestamp>,
}

/// Compares `sync`'s table with its collection; one report per `_id` range (and one for rows
/// with no document, when there are any).
pub async fn check(sync: &SyncTask) -> Result<Vec<RangeReport>> {
    let columns = common_columns(sync).await?;
    let mut differing: Option<BTreeSet<(usize, String)>> = None;
    let mut last = Vec::new();
    for round in 0..=ROUNDS {
        let expected = read_collection(sync, &columns).await?;
        let mut actual = read_table(sync, &columns).await?;
        // A first round that finds nothing different needs no wait; otherwise what was read
        // must have reached the table first.
        if round > 0 || compare(&expected, &actual).iter().any(RangeReport::differs) {
            wait_for_table(sync, expected.read_until).await?;
            actual = read_table(sync, &columns).await?;
        }
        let reports = compare(&expected, &actual);
        let now: BTreeSet<(usize, String)> = keys_of(&reports);
        let still = match differing {
            Some(before) => before.intersection(&now).cloned().collect(),
            None => now,
        };
        last = keep_only(reports, &still);
        if still.is_empty() {
            break;
        }
        tracing::debug!(sync = %sync.name, round, keys = still.len(), "CHECK: keys differ");
        differing = Some(still);
    }
    Ok(last)
}

/// Waits until the sync's table holds every change up to `until` (its checkpoint's cluster time
/// is past it), until it has had no commit for twice the flush interval (at least 2 s: the sync
/// is idle, or not running), or [`WAIT_LIMIT`] at most.
async fn wait_for_table(sync: &SyncTask, until: Option<bson::Timestamp>) -> Result<()> {
    let quiet = (sync.create.options.flush_interval * 2).max(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let mut last = (None, std::time::Instant::now());
    while started.elapsed() < WAIT_LIMIT {
        let table = sync.load_table().await?;
        let snapshot = table.metadata().current_snapshot_id();
        let reached = super::checkpoint::Checkpoint::of_table(&table)?
            .and_then(|c| c.resume_time)
            .zip(until)
            .is_some_and(|(time, until)| time >= until);
        if reached {
            return Ok(());
        }
        if snapshot != last.0 {
            last = (snapshot, std::time::Instant::now());
        } else if last.1.elapsed() >= quiet {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// The columns the plan makes that the table has (a `SELECT *` table may lack a rare field the
/// plan's sample found, or have more): both sides are hashed over these.
async fn common_columns(sync: &SyncTask) -> Result<SchemaRef> {
    let table = sync.load_table().await?;
    let schema = table.metadata().current_schema().clone();
    let plan = sync.plan();
    let fields: Vec<_> = plan
        .output_schema
        .fields()
        .iter()
        .filter(|f| schema.field_by_name(f.name()).is_some())
        .cloned()
        .collect();
    Ok(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)))
}

/// Every (report index, key) that differs.
fn keys_of(reports: &[RangeReport]) -> BTreeSet<(usize, String)> {
    let mut keys = BTreeSet::new();
    for (i, report) in reports.iter().enumerate() {
        for key in report.missing.iter().chain(&report.extra).chain(&report.different) {
            keys.insert((i, key.clone()));
        }
    }
    keys
}

/// `reports` with only the keys in `keep`.
fn keep_only(reports: Vec<RangeReport>, keep: &BTreeSet<(usize, String)>) -> Vec<RangeReport> {
    let kept = |i: usize, keys: Vec<String>| -> Vec<String> {
        keys.into_iter().filter(|k| keep.contains(&(i, k.clone()))).collect()
    };
    reports
        .into_iter()
        .enumerate()
        .map(|(i, r)| RangeReport {
            missing: kept(i, r.missing),
            extra: kept(i, r.extra),
            different: kept(i, r.different),
            range: r.range,
        })
        .collect()
}

/// Sorts the differences of both sides into one report per range.
fn compare(expected: &Expected, actual: &HashMap<String, u64>) -> Vec<RangeReport> {
    let mut reports: Vec<RangeReport> = expected
        .ranges
        .iter()
        .map(|range| RangeReport { range: range_text(range), ..Default::default() })
        .collect();
    for (key, (hash, range)) in &expected.rows {
        match actual.get(key) {
            None => reports[*range].missing.push(key.clone()),
            Some(found) if found != hash => reports[*range].different.push(key.clone()),
            Some(_) => {}
        }
    }
    let mut extra: Vec<String> =
        actual.keys().filter(|key| !expected.rows.contains_key(*key)).cloned().collect();
    if !extra.is_empty() {
        extra.sort();
        reports.push(RangeReport { range: "(no document)".into(), extra, ..Default::default() });
    }
    for report in &mut reports {
        report.missing.sort();
        report.different.sort();
    }
    reports
}

/// `[from, to)` in relaxed Extended JSON, `all` for the whole collection.
fn range_text(range: &IdRange) -> String {
    if range.is_all() {
        return "all".to_string();
    }
    let bound = |b: &Option<RawBson>| {
        b.as_ref().map_or("…".to_string(), |v| ext_json::to_string(v.as_raw_bson_ref()))
    };
    format!("[{}, {})", bound(&range.from), bound(&range.to))
}

/// The rows the sync's plan makes of the collection's documents, by key, range by range.
async fn read_collection(sync: &SyncTask, columns: &SchemaRef) -> Result<Expected> {
    let plan = sync.plan();
    let client = sync.source.client().await?;
    let coll = client.database(&sync.database).collection::<RawDocumentBuf>(&sync.collection);
    let total = coll.estimated_document_count().await.unwrap_or(0);
    let parallelism = sync.create.options.snapshot_parallelism;
    let ranges = id_range::split(&coll, &plan.mongo_filter, total, parallelism).await;
    let mut rows = HashMap::new();
    let mut read_until = None;
    let mut mode = ReadMode::Snapshot;
    for (index, range) in ranges.iter().enumerate() {
        let mut after: Option<RawBson> = None;
        loop {
            let filter = match range.filter(after.as_ref())? {
                None => plan.mongo_filter.clone(),
                Some(bounds) if plan.mongo_filter.is_empty() => bounds,
                Some(bounds) => doc! { "$and": [plan.mongo_filter.clone(), bounds] },
            };
            let request = FindRequest {
                database: sync.database.clone(),
                collection: sync.collection.clone(),
                filter,
                projection: plan.mongo_projection.clone(),
                limit: None,
            };
            let (mut chunk, used) = ChunkCursor::open(sync.source.clone(), &request, mode).await?;
            mode = used;
            let ended = loop {
                match chunk.next().await? {
                    Next::Rows(docs, at) => {
                        read_until = read_until.max(Some(at.until));
                        if let Some(last) = docs.last() {
                            after = last.get("_id").ok().flatten().map(RawBson::from);
                        }
                        for (key, hash) in hash_documents(sync, &docs, columns)? {
                            rows.insert(key, (hash, index));
                        }
                    }
                    Next::Split => break false,
                    Next::End => break true,
                }
            };
            if ended {
                break;
            }
        }
    }
    Ok(Expected { rows, ranges, read_until })
}

/// The key and row hash of each document the plan keeps (documents the sync leaves out under
/// `on_error`, or that WHERE filters out, have no row).
fn hash_documents(
    sync: &SyncTask,
    docs: &[RawDocumentBuf],
    columns: &SchemaRef,
) -> Result<Vec<(String, u64)>> {
    let plan = sync.plan();
    let mut builder = BatchBuilder::new(plan.input_schema.clone());
    for doc in docs {
        if builder.append(doc).is_err() {
            // Left out by the sync too (on_error), or a conversion CHECK cannot judge.
            continue;
        }
    }
    let (rows, errors) = plan.apply(&builder.finish()?)?;
    if !errors.is_empty() {
        tracing::debug!(sync = %sync.name, rows = errors.len(), "CHECK: rows the plan rejects");
    }
    hash_rows(&rows, &plan.key, columns)
}

/// The rows of the sync's table, by key.
async fn read_table(sync: &SyncTask, columns: &SchemaRef) -> Result<HashMap<String, u64>> {
    let table = sync.load_table().await?;
    let plan = sync.plan();
    let context = format!("reading {} to check it", sync.create.target);
    let names: Vec<String> = columns.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = HashMap::new();
    if table.metadata().current_snapshot().is_none() {
        return Ok(rows);
    }
    let scan = table.scan().select(names.iter().map(String::as_str)).build();
    let stream = scan.map_err(|e| Error::iceberg(&context, e))?.to_arrow().await;
    let batches: Vec<RecordBatch> = stream
        .map_err(|e| Error::iceberg(&context, e))?
        .try_collect()
        .await
        .map_err(|e| Error::iceberg(&context, e))?;
    for batch in batches {
        for (key, hash) in hash_rows(&batch, &plan.key, columns)? {
            if rows.insert(key.clone(), hash).is_some() {
                // A key twice in the table is a difference of its own: never equal.
                rows.insert(key, u64::MAX);
            }
        }
    }
    Ok(rows)
}

/// Each row's key (its text) and a hash of its values, over the columns of `schema` that
/// `batch` has, each cast to `schema`'s type so both sides hash alike.
fn hash_rows(batch: &RecordBatch, key: &str, schema: &SchemaRef) -> Result<Vec<(String, u64)>> {
    let mut columns: Vec<ArrayRef> = Vec::new();
    for field in schema.fields() {
        if let Some(column) = batch.column_by_name(field.name()) {
            let column = if column.data_type() == field.data_type() {
                column.clone()
            } else {
                arrow::compute::cast(column, field.data_type()).unwrap_or_else(|_| column.clone())
            };
            columns.push(column);
        }
    }
    let keys = batch
        .column_by_name(key)
        .ok_or_else(|| Error::internal(format!("the key column `{key}` is missing")))?;
    (0..batch.num_rows())
        .map(|row| {
            let key = arrow::util::display::array_value_to_string(keys, row)?;
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            for column in &columns {
                if column.is_null(row) {
                    0u8.hash(&mut hasher);
                } else {
                    1u8.hash(&mut hasher);
                    arrow::util::display::array_value_to_string(column, row)?.hash(&mut hasher);
                }
            }
            Ok((key, hasher.finish()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(rows: &[(&str, u64, usize)], ranges: usize) -> Expected {
        Expected {
            rows: rows.iter().map(|(k, h, r)| (k.to_string(), (*h, *r))).collect(),
            ranges: (0..ranges).map(|_| IdRange::all()).collect(),
            read_until: None,
        }
    }

    #[test]
    fn missing_extra_and_different_rows_are_told_apart_per_range() {
        let expected = expected(&[("a", 1, 0), ("b", 2, 0), ("c", 3, 1)], 2);
        let actual: HashMap<String, u64> =
            [("a", 1), ("b", 9), ("z", 5)].iter().map(|(k, h)| (k.to_string(), *h)).collect();
        let reports = compare(&expected, &actual);
        assert_eq!(reports.len(), 3);
        assert_eq!(reports[0].different, ["b"]);
        assert!(reports[0].missing.is_empty());
        assert_eq!(reports[1].missing, ["c"]);
        assert_eq!(reports[2].range, "(no document)");
        assert_eq!(reports[2].extra, ["z"]);
        assert_eq!(reports[1].examples(), "missing: c");
    }

    #[test]
    fn only_keys_that_differ_in_every_round_are_kept() {
        let reports = vec![RangeReport {
            range: "all".into(),
            missing: vec!["a".into(), "b".into()],
            ..Default::default()
        }];
        let keep: BTreeSet<(usize, String)> = [(0, "b".to_string())].into();
        let kept = keep_only(reports, &keep);
        assert_eq!(kept[0].missing, ["b"]);
        assert!(kept[0].differs());
    }
}
