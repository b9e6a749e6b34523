//! The one batch sink of both phases. The snapshot and the stream only decide what goes into a
//! batch — documents to write, rows to delete, the checkpoint the batch reaches; the sink does the
//! rest, the same way for both: a `SELECT *` sync's schema follows the documents, a document that
//! does not fit follows `on_error` / `on_type_change` (counted, logged, kept as a dead letter from
//! the copy in memory), the key is checked, rows go to data files and deletes to position-delete
//! files, and one commit carries them with the checkpoint.
//!
//! A batch is valid only on the table state it was computed from: each commit names the
//! checkpoint it continues, and if another writer moved the sync's checkpoint meanwhile the
//! commit is refused ([`ErrorKind::Superseded`]) instead of being applied on top — the sync then
//! continues from the table's checkpoint.

use bson::{RawBson, RawDocument, RawDocumentBuf};
use iceberg::table::Table;

use std::sync::Arc;

use super::checkpoint::Checkpoint;
use super::database::group::Group;
use super::dead_letter::{self, DeadLetter};
use super::evolve;
use super::{SyncTask, lease};
use crate::failpoint::failpoint;
use crate::lake::commit::{Change, Guard, commit};
use crate::lake::key_index::RowLocation;
use crate::lake::position_delete::write_position_deletes;
use crate::lake::writer::{TableWriter, WriteOptions, WrittenFile};
use crate::mongo::bson_arrow::{BatchBuilder, document_id};
use crate::mongo::ext_json;
use crate::sql::{OnError, OnTypeChange};
use crate::{Error, ErrorKind, Result};

/// Rows converted and run through the plan at a time (a commit holds many such chunks).
const CHUNK_ROWS: usize = 8192;

/// A converted row's document, to name (and under `dead_letter` keep) it if the plan rejects it.
enum Source {
    Id(RawBson),
    Document(RawDocumentBuf),
}

/// Rows, deletes and rejected documents on their way into the next commit.
pub struct Sink<'a> {
    sync: &'a SyncTask,
    table: Table,
    /// The checkpoint of the table state the batch builds on.
    continues: Option<Checkpoint>,
    writer: TableWriter,
    /// Data files finished under an earlier schema, for the next commit.
    files: Vec<WrittenFile>,
    builder: BatchBuilder,
    /// One per row in `builder`.
    sources: Vec<Source>,
    deletes: Vec<RowLocation>,
    dead: Vec<DeadLetter>,
    skipped: u64,
    pending_rows: u64,
    pending_bytes: u64,
    written: u64,
    /// The next commit goes to this group, at this cut.
    group_cut: Option<(Arc<Group>, u64)>,
}

impl<'a> Sink<'a> {
    /// A sink writing to `table`, continuing the checkpoint it has.
    pub fn new(sync: &'a SyncTask, table: Table) -> Result<Self> {
        let continues = checkpoint_of(&table)?;
        Ok(Self {
            writer: writer_for(&table)?,
            builder: BatchBuilder::new(sync.plan().input_schema.clone()),
            sync,
            table,
            continues,
            files: Vec::new(),
            sources: Vec::new(),
            deletes: Vec::new(),
            dead: Vec::new(),
            skipped: 0,
            pending_rows: 0,
            pending_bytes: 0,
            written: 0,
            group_cut: None,
        })
    }

    /// The table as of the last commit (or schema change).
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Continues on `table`, the sync's table after maintenance moved its files (between
    /// batches: nothing may be pending).
    pub fn continue_on(&mut self, table: Table) -> Result<()> {
        self.writer = writer_for(&table)?;
        self.table = table;
        Ok(())
    }

    /// The table, giving up the sink.
    pub fn into_table(self) -> Table {
        self.table
    }

    /// Rows accepted since the last commit (written or buffered).
    pub fn pending_rows(&self) -> u64 {
        self.pending_rows + self.builder.len() as u64
    }

    /// BSON bytes converted since the last commit.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes + self.builder.byte_size() as u64
    }

    /// Rows written through this sink so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Deletes the row at `location` in the next commit.
    pub fn delete(&mut self, location: RowLocation) {
        self.deletes.push(location);
    }

    /// Adds documents as rows; a `SELECT *` sync first makes the table and plan take them (new
    /// columns, widened types, stringified values).
    pub async fn add(&mut self, docs: &[&RawDocument]) -> Result<()> {
        if !self.sync.plan().evolving {
            for doc in docs {
                self.add_one(doc).await?;
            }
            return Ok(());
        }
        // The usual documents fit the schema as it is, and are converted in one pass; from the
        // first one that does not, the rest of the batch is checked (inferred) first.
        let mut fitting = 0;
        if self.sync.create.options.on_type_change != OnTypeChange::Stringify {
            while let Some(doc) = docs.get(fitting) {
                if !self.builder.append_if_fits(doc) {
                    break;
                }
                self.appended(doc).await?;
                fitting += 1;
            }
        }
        let docs = &docs[fitting..];
        if docs.is_empty() {
            return Ok(());
        }
        let fit = evolve::fit(self.sync, docs)?;
        if let Some(schema) = fit.schema {
            self.evolve(schema).await?;
        }
        let mut rewritten = fit.rewritten.into_iter().peekable();
        for (i, doc) in docs.iter().enumerate() {
            match rewritten.next_if(|(j, _)| *j == i) {
                Some((_, doc)) => self.add_one(&doc).await?,
                None => self.add_one(doc).await?,
            }
        }
        Ok(())
    }

    /// Grows the table and the plan to `schema`; the rows so far are written under the old
    /// schema and committed with the next commit.
    async fn evolve(&mut self, schema: arrow::datatypes::SchemaRef) -> Result<()> {
        self.flush_chunk().await?;
        let writer = self.new_writer()?;
        self.files.extend(writer.finish().await?);
        self.table = evolve::apply(self.sync, self.table.clone(), schema).await?;
        self.writer = writer_for(&self.table)?;
        self.builder = BatchBuilder::new(self.sync.plan().input_schema.clone());
        Ok(())
    }

    /// A fresh writer for the current table in place of the running one, which is returned.
    fn new_writer(&mut self) -> Result<TableWriter> {
        Ok(std::mem::replace(&mut self.writer, writer_for(&self.table)?))
    }

    /// Converts one document; a document that does not fit follows the conversion policy.
    async fn add_one(&mut self, doc: &RawDocument) -> Result<()> {
        match self.builder.append(doc) {
            Ok(()) => self.appended(doc).await,
            Err(err) => {
                let policy = evolve::conversion_policy(self.sync);
                if policy == OnError::Fail {
                    return Err(evolve::conversion_error(self.sync, err));
                }
                self.reject(policy, Some(doc), &document_id(doc), err.to_string());
                Ok(())
            }
        }
    }

    /// Notes where the row just appended came from, and runs a full chunk through the plan.
    async fn appended(&mut self, doc: &RawDocument) -> Result<()> {
        // Only a dead letter needs the whole document back.
        let keep = self.sync.create.options.on_error == OnError::DeadLetter;
        self.sources.push(if keep {
            Source::Document(doc.to_owned())
        } else {
            Source::Id(doc.get("_id").ok().flatten().map_or(RawBson::Null, RawBson::from))
        });
        if self.builder.len() >= CHUNK_ROWS {
            self.flush_chunk().await?;
        }
        Ok(())
    }

    /// A document left out under `policy` (`skip` or `dead_letter`), with why.
    fn reject(&mut self, policy: OnError, doc: Option<&RawDocument>, id: &str, error: String) {
        tracing::warn!(sync = %self.sync.name, "left out: document _id={id}: {error}");
        match policy {
            OnError::DeadLetter => self.dead.push(DeadLetter {
                id: id.to_string(),
                document: doc
                    .map(|d| ext_json::to_string(bson::RawBsonRef::Document(d)))
                    .unwrap_or_default(),
                error,
            }),
            _ => self.skipped += 1,
        }
    }

    /// Runs the buffered documents through the plan and hands the rows to the writer (so that
    /// [`Self::written`] counts them); a row the plan rejects (a cast that fails) follows
    /// `on_error`.
    pub async fn flush_chunk(&mut self) -> Result<()> {
        if self.builder.is_empty() {
            return Ok(());
        }
        self.pending_bytes += self.builder.byte_size() as u64;
        let batch = self.builder.finish()?;
        let sources = std::mem::take(&mut self.sources);
        let (rows, errors) = self.sync.plan().apply(&batch)?;
        let policy = self.sync.create.options.on_error;
        for error in errors {
            let (id, doc) = match &sources[error.row] {
                Source::Id(id) => (ext_json::to_string(id.as_raw_bson_ref()), None),
                Source::Document(doc) => (document_id(doc), Some(doc.as_ref())),
            };
            let err = Error::Convert { id: id.clone(), field: error.column, reason: error.reason };
            if policy == OnError::Fail {
                return Err(Error::user(err.to_string()).with_hint(evolve::CAST_HINT));
            }
            let message = err.to_string();
            self.reject(policy, doc, &id, message);
        }
        check_key(&rows, &self.sync.plan().key)?;
        self.writer.write(&rows).await?;
        self.pending_rows += rows.num_rows() as u64;
        self.written += rows.num_rows() as u64;
        Ok(())
    }

    /// The next commit is made with the other tables of a database sync at cut `epoch` of
    /// `group`.
    pub fn at_cut(&mut self, group: Arc<Group>, epoch: u64) {
        self.group_cut = Some((group, epoch));
    }

    /// The cut set by [`Self::at_cut`] passed without a commit.
    pub fn at_cut_passed(&mut self) {
        self.group_cut = None;
    }

    /// Commits everything added and deleted since the last commit, with `checkpoint`, in one
    /// snapshot (dead letters first, to their own table); returns the data files committed,
    /// each with the keys of its rows.
    pub async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<Vec<WrittenFile>> {
        self.flush_chunk().await?;
        let writer = self.new_writer()?;
        let mut files = std::mem::take(&mut self.files);
        files.extend(writer.finish().await?);
        let dead = std::mem::take(&mut self.dead);
        let parent = self.table.metadata().current_snapshot_id();
        let sync = self.sync;
        dead_letter::write(&sync.connection, &sync.target, &sync.name, &dead, parent).await?;
        failpoint("after-dead-letters");
        let deletes = std::mem::take(&mut self.deletes);
        let positions = deletes.iter().map(|l| (l.file.as_ref(), l.position as i64));
        let delete_files = write_position_deletes(&self.table, positions).await?;
        let data_files = files.iter().map(|written| written.file.clone()).collect();
        let change = Change::rows(data_files, delete_files)
            .with_properties(checkpoint.to_properties())
            .guarded(self.guard())
            .reporting(self.report());
        let started = std::time::Instant::now();
        self.table = match self.group_cut.take() {
            Some((group, epoch)) => {
                let (connection, member) = (&sync.connection, &sync.collection);
                group.commit(epoch, member, connection, &self.table, change).await?
            }
            None => commit(&sync.connection, &self.table, change).await?,
        };
        let took = started.elapsed();
        tracing::debug!(
            "sync {}: committed snapshot {} in {} ms",
            sync.name,
            self.table.metadata().current_snapshot_id().unwrap_or_default(),
            took.as_millis()
        );
        self.continues = Some(checkpoint.clone());
        self.writer = writer_for(&self.table)?;
        let skipped = std::mem::take(&mut self.skipped);
        sync.status(|s| {
            s.rows_skipped += skipped;
            s.dead_letters += dead.len() as u64;
            s.commits += 1;
            s.commit_seconds.observe(took.as_secs_f64());
            s.last_commit = Some(std::time::SystemTime::now());
        });
        self.pending_rows = 0;
        self.pending_bytes = 0;
        Ok(files)
    }

    /// Counts a fault the commit got past in the sync's status.
    fn report(&self) -> crate::lake::commit::Report {
        let (registry, name) = (self.sync.registry.clone(), self.sync.name.clone());
        Box::new(move |what| {
            registry.update(&name, |s| {
                s.retries += 1;
                s.last_error = Some(what.to_string());
            })
        })
    }

    /// Refuses the commit on a table whose checkpoint is no longer the one this batch continues.
    fn guard(&self) -> Guard {
        let expected = self.continues.clone();
        let sync = self.sync.name.clone();
        Box::new(move |base| {
            if let Some((owner, _)) = lease::holder(base).filter(|(owner, _)| owner != lease::me())
            {
                return Err(Error::commit(
                    ErrorKind::LeaseHeld,
                    format!(
                        "sync {sync} lost its lease on {}: {owner} holds it now",
                        base.identifier()
                    ),
                ));
            }
            let now = checkpoint_of(base)?;
            let same = match (&now, &expected) {
                (Some(now), Some(expected)) => expected.same_position(now),
                (now, expected) => now == expected,
            };
            if same {
                return Ok(());
            }
            let at = base.metadata().current_snapshot_id().unwrap_or_default();
            Err(Error::commit(
                ErrorKind::Superseded,
                format!(
                    "another writer committed to {} for sync {sync} (snapshot {at}) since this \
                     batch was read",
                    base.identifier()
                ),
            )
            .with_hint(
                "the sync continues from the table's checkpoint; run each sync in one process",
            ))
        })
    }
}

/// A writer of new data files of `table` that keeps their rows' keys for the key index.
fn writer_for(table: &Table) -> Result<TableWriter> {
    Ok(TableWriter::new(table, &WriteOptions::from_table(table))?.keeping_keys())
}

/// The checkpoint `table` has, if a sync wrote it.
pub fn checkpoint_of(table: &Table) -> Result<Option<Checkpoint>> {
    Checkpoint::of_table(table)
}

/// The key column must never be null: Iceberg's identifier field is required.
fn check_key(rows: &arrow::array::RecordBatch, key: &str) -> Result<()> {
    use arrow::array::Array;
    let Some(column) = rows.column_by_name(key) else { return Ok(()) };
    if column.null_count() > 0 {
        let row = (0..column.len()).find(|&i| column.is_null(i)).unwrap_or(0);
        return Err(Error::user(format!("the key column `{key}` is null in row {row} of a batch"))
            .with_hint("the key must be computed from _id alone and never be null"));
    }
    Ok(())
}
