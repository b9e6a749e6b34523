//! The snapshot phase: the collection is read in `_id` order, converted, run through the
//! sync's compiled plan, written to data files and committed every `max_batch_rows` /
//! `max_batch_bytes` / `flush_interval`, each commit carrying the last `_id` it holds. A restart
//! resumes after that `_id`, so a crash loses nothing and duplicates nothing.

use std::time::Instant;

use arrow::array::Array;
use bson::{Document, RawBson, RawDocument, RawDocumentBuf, doc};
use futures::TryStreamExt;
use iceberg::table::Table;
use mongodb::options::FindOptions;

use super::Sync;
use super::checkpoint::{Checkpoint, Phase};
use super::dead_letter::{self, DeadLetter};
use super::evolve;
use super::failpoint::failpoint;
use super::progress::Progress;
use crate::iceberg::commit::append;
use crate::iceberg::key_index::{KeyIndex, RowLocation};
use crate::iceberg::position_delete::write_position_deletes;
use crate::iceberg::row_delta::commit_row_delta;
use crate::iceberg::writer::{TableWriter, WriteOptions};
use crate::mongo::bson_arrow::{BatchBuilder, document_id};
use crate::mongo::ext_json;
use crate::sql::OnError;
use crate::{Error, Result};

/// Rows converted and run through the plan at a time (a commit holds many such chunks).
const CHUNK_ROWS: usize = 8192;

/// The running state of a snapshot between two commits.
struct Copy<'a> {
    sync: &'a Sync,
    table: Table,
    writer: TableWriter,
    /// Data files written under an earlier schema, for the next commit.
    files: Vec<iceberg::spec::DataFile>,
    builder: BatchBuilder,
    /// `_id` of each row in `builder`, to name rows that fail the projection.
    ids: Vec<RawBson>,
    high_water: Option<RawBson>,
    resume_token: Option<RawDocumentBuf>,
    rows: u64,
    pending_rows: u64,
    pending_bytes: u64,
    dead: Vec<DeadLetter>,
    last_commit: Instant,
    progress: Progress,
    /// When copying again over existing contents: every live row of the table, deleted by the
    /// one commit at the end (so readers never see the table half replaced).
    replacing: Option<Vec<RowLocation>>,
}

/// Copies the collection into `table`, starting after `checkpoint`'s high-water mark; the last
/// commit marks the snapshot complete. Returns the table after the last commit.
pub async fn run(sync: &Sync, table: Table, checkpoint: Option<Checkpoint>) -> Result<Table> {
    let (high_water, resume_token, rows) = match checkpoint {
        Some(cp) => (cp.high_water, cp.resume_token, cp.rows),
        None => (None, sync.resume_token().await?, 0),
    };
    copy(sync, table, high_water, resume_token, rows, None).await
}

/// Copies the whole collection again and replaces the table's contents with it in one commit at
/// the end: new data files, position deletes for every row that was live, and a checkpoint
/// whose resume token was taken before the copy began.
pub async fn replace(sync: &Sync, table: Table) -> Result<Table> {
    let resume_token = sync.resume_token().await?;
    let mut index = KeyIndex::build(&table, &sync.plan().key).await?;
    let mut live = Vec::with_capacity(index.len());
    let keys = table
        .scan()
        .select([sync.plan().key.as_str()])
        .build()
        .map_err(|e| Error::iceberg("reading the keys to replace", e))?
        .to_arrow()
        .await
        .map_err(|e| Error::iceberg("reading the keys to replace", e))?;
    let batches: Vec<arrow::array::RecordBatch> =
        keys.try_collect().await.map_err(|e| Error::iceberg("reading the keys to replace", e))?;
    for batch in batches {
        let column = batch.column(0);
        for i in 0..column.len() {
            let key = arrow::util::display::array_value_to_string(column, i)?;
            live.extend(index.remove(&key));
        }
    }
    copy(sync, table, None, resume_token, 0, Some(live)).await
}

/// The copy itself: see [`run`] and [`replace`].
async fn copy(
    sync: &Sync,
    table: Table,
    high_water: Option<RawBson>,
    resume_token: Option<RawDocumentBuf>,
    rows: u64,
    replacing: Option<Vec<RowLocation>>,
) -> Result<Table> {
    let client = sync.source.client().await?;
    let coll = client.database(&sync.database).collection::<RawDocumentBuf>(&sync.collection);
    let total = coll.estimated_document_count().await.unwrap_or(0);
    let options = FindOptions::builder()
        .sort(doc! { "_id": 1 })
        .projection(sync.plan().mongo_projection.clone())
        .build();
    let context = format!("reading {}.{}", sync.database, sync.collection);
    let mut cursor = coll
        .find(filter(&sync.plan().mongo_filter, high_water.as_ref()))
        .with_options(options)
        .batch()
        .await
        .map_err(|e| sync.source.unreachable(&context, e))?;
    let writer = TableWriter::new(&table, &WriteOptions::from_table(&table))?;
    let mut copy = Copy {
        sync,
        writer,
        files: Vec::new(),
        builder: BatchBuilder::new(sync.plan().input_schema.clone()),
        ids: Vec::new(),
        high_water,
        resume_token,
        rows,
        pending_rows: 0,
        pending_bytes: 0,
        dead: Vec::new(),
        last_commit: Instant::now(),
        progress: Progress::new(&sync.name, total, rows),
        table,
        replacing,
    };
    while let Some(batch) = cursor.try_next().await.map_err(|e| Error::mongo(context.clone(), e))? {
        let docs = batch.doc_slices().map_err(|e| Error::mongo(context.clone(), e))?;
        let docs = docs
            .into_iter()
            .map(|doc| {
                let doc =
                    doc.map_err(|e| Error::plan(format!("{context}: malformed BSON: {e}")))?;
                doc.as_document().ok_or_else(|| Error::plan(format!("{context}: not a document")))
            })
            .collect::<Result<Vec<_>>>()?;
        copy.add_all(&docs).await?;
        if copy.due() {
            copy.commit(Phase::Snapshot).await?;
        }
    }
    copy.commit(Phase::Streaming).await?;
    copy.progress.finish(copy.rows);
    Ok(copy.table)
}

/// The pushed-down WHERE, and `_id` after the high-water mark when resuming.
fn filter(pushed: &Document, high_water: Option<&RawBson>) -> Document {
    let Some(id) = high_water else { return pushed.clone() };
    let after = match bson::Bson::try_from(id.clone()) {
        Ok(id) => doc! { "_id": { "$gt": id } },
        Err(_) => return pushed.clone(),
    };
    if pushed.is_empty() {
        after
    } else {
        doc! { "$and": [pushed.clone(), after] }
    }
}

impl Copy<'_> {
    /// Converts a batch of documents; a `SELECT *` sync first makes the table and plan take
    /// them (new columns, widened types, stringified values).
    async fn add_all(&mut self, docs: &[&RawDocument]) -> Result<()> {
        if !self.sync.plan().evolving {
            for doc in docs {
                self.add(doc).await?;
            }
            return Ok(());
        }
        let fit = evolve::fit(self.sync, docs)?;
        if let Some(schema) = fit.schema {
            self.evolve(schema).await?;
        }
        let mut rewritten = fit.rewritten.into_iter().peekable();
        for (i, doc) in docs.iter().enumerate() {
            match rewritten.next_if(|(j, _)| *j == i) {
                Some((_, doc)) => self.add(&doc).await?,
                None => self.add(doc).await?,
            }
        }
        Ok(())
    }

    /// Grows the table and the plan to `schema`; the rows so far are written under the old
    /// schema and committed with the next commit.
    async fn evolve(&mut self, schema: arrow::datatypes::SchemaRef) -> Result<()> {
        self.flush_chunk().await?;
        let writer = std::mem::replace(
            &mut self.writer,
            TableWriter::new(&self.table, &WriteOptions::from_table(&self.table))?,
        );
        self.files.extend(writer.finish().await?);
        self.table = evolve::apply(self.sync, self.table.clone(), schema).await?;
        self.writer = TableWriter::new(&self.table, &WriteOptions::from_table(&self.table))?;
        self.builder = BatchBuilder::new(self.sync.plan().input_schema.clone());
        Ok(())
    }

    /// Converts one document; a document that does not fit follows `on_error`.
    async fn add(&mut self, doc: &RawDocument) -> Result<()> {
        let id = doc.get("_id").ok().flatten().map(RawBson::from);
        match self.builder.append(doc) {
            Ok(()) => self.ids.push(id.clone().unwrap_or(RawBson::Null)),
            Err(err) => self.reject(doc, err)?,
        }
        self.high_water = id;
        if self.builder.len() >= CHUNK_ROWS {
            self.flush_chunk().await?;
        }
        Ok(())
    }

    /// `on_error` (`on_type_change` for `SELECT *`) for a document that could not be converted.
    fn reject(&mut self, doc: &RawDocument, err: Error) -> Result<()> {
        let message = err.to_string();
        match evolve::conversion_policy(self.sync) {
            OnError::Fail => Err(evolve::conversion_error(self.sync, err)),
            OnError::Skip => {
                tracing::warn!(sync = %self.sync.name, "skipped: {message}");
                self.sync.status(|s| s.rows_skipped += 1);
                Ok(())
            }
            OnError::DeadLetter => {
                let document = ext_json::to_string(bson::RawBsonRef::Document(doc));
                self.dead.push(DeadLetter { id: document_id(doc), document, error: message });
                Ok(())
            }
        }
    }

    /// Runs the buffered documents through the plan and hands the rows to the writer.
    async fn flush_chunk(&mut self) -> Result<()> {
        if self.builder.is_empty() {
            return Ok(());
        }
        self.pending_bytes += self.builder.byte_size() as u64;
        let batch = self.builder.finish()?;
        let ids = std::mem::take(&mut self.ids);
        let (rows, errors) = self.sync.plan().apply(&batch)?;
        for error in errors {
            let id = &ids[error.row];
            let err = Error::Convert {
                id: ext_json::to_string(id.as_raw_bson_ref()),
                field: error.column,
                reason: error.reason,
            };
            match self.sync.create.options.on_error {
                OnError::Fail => {
                    return Err(Error::plan(err.to_string()).with_hint(
                        "cast it differently, or WITH (on_error = 'skip' | 'dead_letter')",
                    ));
                }
                OnError::Skip => {
                    tracing::warn!(sync = %self.sync.name, "skipped: {err}");
                    self.sync.status(|s| s.rows_skipped += 1);
                }
                OnError::DeadLetter => {
                    let document = self.sync.fetch_document(id).await.unwrap_or_default();
                    self.dead.push(DeadLetter {
                        id: ext_json::to_string(id.as_raw_bson_ref()),
                        document,
                        error: err.to_string(),
                    });
                }
            }
        }
        check_key(&rows, &self.sync.plan().key)?;
        self.writer.write(&rows).await?;
        self.pending_rows += rows.num_rows() as u64;
        self.rows += rows.num_rows() as u64;
        self.progress.set(self.rows);
        Ok(())
    }

    /// Whether the rows written since the last commit should be committed now.
    fn due(&self) -> bool {
        if self.replacing.is_some() {
            return false;
        }
        let options = &self.sync.create.options;
        self.pending_rows + self.builder.len() as u64 >= options.max_batch_rows as u64
            || self.pending_bytes + self.builder.byte_size() as u64 >= options.max_batch_bytes
            || self.last_commit.elapsed() >= options.flush_interval
    }

    /// Commits the written files with the checkpoint; `Streaming` marks the snapshot complete.
    async fn commit(&mut self, phase: Phase) -> Result<()> {
        self.flush_chunk().await?;
        let writer = std::mem::replace(
            &mut self.writer,
            TableWriter::new(&self.table, &WriteOptions::from_table(&self.table))?,
        );
        let mut files = std::mem::take(&mut self.files);
        files.extend(writer.finish().await?);
        let catalog = self.sync.catalog.as_ref();
        let dead = std::mem::take(&mut self.dead);
        let parent = self.table.metadata().current_snapshot_id();
        dead_letter::write(catalog, &self.sync.target, &self.sync.name, &dead, parent).await?;
        failpoint("after-dead-letters");
        let checkpoint = Checkpoint {
            sync: self.sync.name.clone(),
            definition_hash: self.sync.plan().definition_hash.clone(),
            phase,
            high_water: self.high_water.clone(),
            resume_token: self.resume_token.clone(),
            rows: self.rows,
        };
        self.table = match self.replacing.take() {
            None => append(catalog, &self.table, files, checkpoint.to_properties()).await?,
            Some(live) => {
                let deletes = live.iter().map(|l| (l.file.as_ref(), l.position as i64));
                let delete_files = write_position_deletes(&self.table, deletes).await?;
                let props = checkpoint.to_properties();
                commit_row_delta(&self.sync.connection, &self.table, files, delete_files, props)
                    .await?
            }
        };
        self.writer = TableWriter::new(&self.table, &WriteOptions::from_table(&self.table))?;
        let rows = self.rows;
        self.sync.status(|s| {
            s.rows_copied = rows;
            s.dead_letters += dead.len() as u64;
            s.commits += 1;
            s.last_commit = Some(std::time::SystemTime::now());
        });
        tracing::debug!(sync = %self.sync.name, rows, %phase, "committed");
        self.pending_rows = 0;
        self.pending_bytes = 0;
        self.last_commit = Instant::now();
        Ok(())
    }
}

/// The key column must never be null: Iceberg's identifier field is required.
fn check_key(rows: &arrow::array::RecordBatch, key: &str) -> Result<()> {
    let Some(column) = rows.column_by_name(key) else { return Ok(()) };
    if column.null_count() > 0 {
        let row = (0..column.len()).find(|&i| column.is_null(i)).unwrap_or(0);
        return Err(Error::plan(format!("the key column `{key}` is null in row {row} of a batch"))
            .with_hint("the key must be computed from _id alone and never be null"));
    }
    Ok(())
}
