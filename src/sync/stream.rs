//! The stream phase: change events after the checkpoint's resume token are batched (last change
//! per key wins), run through the sync's compiled plan, and committed as new data files plus
//! position deletes for the rows they replace, in one snapshot with the new resume token.
//! Nothing is applied twice and nothing is lost: the token moves only with the data it covers.

use std::collections::HashMap;
use std::time::Instant;

use arrow::array::{Array, ArrayRef};
use bson::{RawBson, RawDocument, RawDocumentBuf, rawdoc};
use iceberg::table::Table;
use mongodb::change_stream::event::OperationType;

use super::Sync;
use super::checkpoint::{Checkpoint, Phase};
use super::dead_letter::{self, DeadLetter};
use super::evolve;
use super::failpoint::failpoint;
use crate::iceberg::commit::append;
use crate::iceberg::key_index::KeyIndex;
use crate::iceberg::position_delete::write_position_deletes;
use crate::iceberg::row_delta::commit_row_delta;
use crate::iceberg::writer::{TableWriter, WriteOptions};
use crate::mongo::bson_arrow::BatchBuilder;
use crate::mongo::change_stream::{Event, cluster_time, token_to_raw, watch};
use crate::sql::OnError;
use crate::{Error, Result};

/// The changes of one batch: per `_id`, the document after the last change, or `None` when
/// the document is gone. Order of first appearance is kept.
#[derive(Default)]
struct Changes {
    order: Vec<(RawBson, Option<RawDocumentBuf>)>,
    by_id: HashMap<Vec<u8>, usize>,
}

impl Changes {
    fn len(&self) -> usize {
        self.order.len()
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn set(&mut self, id: RawBson, document: Option<RawDocumentBuf>) {
        let key = rawdoc! { "_id": id.clone() }.into_bytes();
        match self.by_id.get(&key) {
            Some(&i) => self.order[i].1 = document,
            None => {
                self.by_id.insert(key, self.order.len());
                self.order.push((id, document));
            }
        }
    }
}

/// Why the stream phase ended.
#[derive(Debug)]
pub enum StreamEnd {
    /// Every change up to now is applied (`--once`).
    Drained,
    /// The stream cannot continue (collection dropped or renamed, resume point gone): the
    /// collection must be copied again.
    Resnapshot(String),
}

/// Server error codes meaning the resume point is gone: ChangeStreamHistoryLost,
/// ChangeStreamFatalError, InvalidResumeToken.
const HISTORY_LOST: [i32; 3] = [286, 280, 260];

/// Whether `err` says the change stream cannot be resumed from its token.
fn history_lost(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        mongodb::error::ErrorKind::Command(command) => HISTORY_LOST.contains(&command.code),
        _ => false,
    }
}

/// Follows the change stream from `checkpoint`. With `drain`, returns once every change made
/// before the stream phase began is applied: when the stream has no more events, or at the
/// first event after the cluster time at the start (so that a `--once` run ends under a steady
/// stream of writes too); otherwise runs until an error or until the stream cannot continue.
pub async fn run(
    sync: &Sync,
    mut table: Table,
    checkpoint: Checkpoint,
    drain: bool,
) -> Result<StreamEnd> {
    let Some(token) = checkpoint.resume_token.clone() else {
        tracing::warn!("sync {}: no resume token; changes are not followed", sync.name);
        return Ok(StreamEnd::Drained);
    };
    let stop_after = if drain { cluster_time(&sync.source).await } else { None };
    let mut index = KeyIndex::build(&table, &sync.plan().key).await?;
    let stream = watch(&sync.source, &sync.database, &sync.collection, Some(&token)).await;
    let mut stream = match stream {
        Ok(stream) => stream,
        Err(err) if history_lost(&err) => return Ok(StreamEnd::Resnapshot(lost(&err))),
        Err(err) => return Err(sync.source.unreachable("opening the change stream", err)),
    };
    let mut saved_token = token;
    let mut last_commit = Instant::now();
    let options = &sync.create.options;
    sync.status(|s| s.phase = "streaming".into());
    loop {
        let mut changes = Changes::default();
        let started = Instant::now();
        let mut caught_up = false;
        while changes.len() < options.max_batch_rows {
            let Some(left) = options.flush_interval.checked_sub(started.elapsed()) else { break };
            match tokio::time::timeout(left, stream.next_if_any()).await {
                Err(_elapsed) => break,
                Ok(Err(err)) if history_lost(&err) => return Ok(StreamEnd::Resnapshot(lost(&err))),
                Ok(Err(err)) => return Err(Error::mongo("reading the change stream", err)),
                Ok(Ok(Some(event))) => {
                    let later =
                        stop_after.is_some_and(|t| event.cluster_time.is_some_and(|c| c > t));
                    if let Some(reason) = add(sync, &mut changes, event)? {
                        // Apply what came before the end of the stream, then copy again.
                        if !changes.is_empty() {
                            let token = saved_token.clone();
                            apply(sync, &table, &mut index, changes, &token).await?;
                        }
                        return Ok(StreamEnd::Resnapshot(reason));
                    }
                    if later {
                        caught_up = true; // everything before the start is in this batch
                        break;
                    }
                }
                Ok(Ok(None)) => {
                    caught_up = true;
                    if drain || !changes.is_empty() {
                        break;
                    }
                }
            }
        }
        let token = match stream.resume_token() {
            Some(token) => token_to_raw(&token)?,
            None => saved_token.clone(),
        };
        let progress = token != saved_token;
        if !changes.is_empty() {
            table = apply(sync, &table, &mut index, changes, &token).await?;
            saved_token = token;
            last_commit = Instant::now();
        } else if progress && !drain && last_commit.elapsed() >= options.flush_interval {
            // An idle stream still moves its token; save it, but not more often than
            // flush_interval (and not in a --once run, which must commit nothing when nothing
            // changed).
            table = append(
                sync.catalog.as_ref(),
                &table,
                vec![],
                checkpoint_at(sync, &token).to_properties(),
            )
            .await?;
            saved_token = token;
            last_commit = Instant::now();
        }
        if drain && caught_up {
            return Ok(StreamEnd::Drained);
        }
    }
}

/// Why the resume point is gone, for the log and the status.
fn lost(err: &mongodb::error::Error) -> String {
    format!("the change stream cannot resume from the saved token ({err})")
}

/// Adds one event to the batch; returns why the stream ended when the event ends it.
fn add(sync: &Sync, changes: &mut Changes, event: Event) -> Result<Option<String>> {
    let id = || -> Result<RawBson> {
        let key =
            event.document_key.as_ref().and_then(|k| k.get("_id")).cloned().ok_or_else(|| {
                Error::plan(format!(
                    "a change event of {}.{} has no documentKey._id",
                    sync.database, sync.collection
                ))
            })?;
        RawBson::try_from(key)
            .map_err(|e| Error::plan(format!("unreadable _id in a change event: {e}")))
    };
    match event.operation_type {
        OperationType::Insert | OperationType::Update | OperationType::Replace => {
            changes.set(id()?, event.full_document.clone());
        }
        OperationType::Delete => changes.set(id()?, None),
        OperationType::Invalidate
        | OperationType::Drop
        | OperationType::Rename
        | OperationType::DropDatabase => {
            return Ok(Some(format!(
                "the change stream of {}.{} ended ({:?}): the collection was dropped or renamed",
                sync.database, sync.collection, event.operation_type
            )));
        }
        _ => {}
    }
    Ok(None)
}

/// The checkpoint of a streaming sync at `token`.
fn checkpoint_at(sync: &Sync, token: &RawDocumentBuf) -> Checkpoint {
    Checkpoint {
        sync: sync.name.clone(),
        definition_hash: sync.plan().definition_hash.clone(),
        phase: Phase::Streaming,
        high_water: None,
        resume_token: Some(token.clone()),
        rows: sync.registry.all().get(&sync.name).map_or(0, |s| s.rows_copied),
    }
}

/// Writes one batch: position deletes for every changed key's current row, new rows for the
/// documents that exist and pass WHERE, and the token — in one commit.
async fn apply(
    sync: &Sync,
    table: &Table,
    index: &mut KeyIndex,
    mut changes: Changes,
    token: &RawDocumentBuf,
) -> Result<Table> {
    let table = &fit(sync, table.clone(), &mut changes).await?;
    let keys = keys(sync, &changes)?;
    let mut deletes = Vec::new();
    for key in &keys {
        if let Some(location) = index.remove(key) {
            deletes.push(location);
        }
    }
    let policy = evolve::conversion_policy(sync);
    let mut builder = BatchBuilder::new(sync.plan().input_schema.clone());
    let mut appended: Vec<&RawDocumentBuf> = Vec::new();
    let mut rejected: Vec<(&RawDocumentBuf, String)> = Vec::new();
    for (_, document) in &changes.order {
        let Some(document) = document else { continue };
        match builder.append(document) {
            Ok(()) => appended.push(document),
            Err(err) if policy == OnError::Fail => return Err(evolve::conversion_error(sync, err)),
            Err(err) => rejected.push((document, err.to_string())),
        }
    }
    let (rows, errors) = sync.plan().apply(&builder.finish()?)?;
    for error in &errors {
        let document = appended[error.row];
        let id = crate::mongo::bson_arrow::document_id(document);
        let message = format!("document _id={id}: field `{}`: {}", error.column, error.reason);
        if sync.create.options.on_error == OnError::Fail {
            return Err(Error::plan(message)
                .with_hint("cast it differently, or WITH (on_error = 'skip' | 'dead_letter')"));
        }
        rejected.push((document, message));
    }
    let skipped = rejected.len() as u64;
    let mut letters = Vec::new();
    for (document, error) in rejected {
        tracing::warn!("sync {}: left out: {error}", sync.name);
        if policy == OnError::DeadLetter {
            letters.push(DeadLetter {
                id: crate::mongo::bson_arrow::document_id(document),
                document: crate::mongo::ext_json::to_string(bson::RawBsonRef::Document(document)),
                error,
            });
        }
    }
    let parent = table.metadata().current_snapshot_id();
    dead_letter::write(sync.catalog.as_ref(), &sync.target, &sync.name, &letters, parent).await?;
    failpoint("after-dead-letters");
    let letter_count = letters.len() as u64;
    let mut writer = TableWriter::new(table, &WriteOptions::from_table(table))?;
    writer.write(&rows).await?;
    let files = writer.finish().await?;
    let delete_files =
        write_position_deletes(table, deletes.iter().map(|l| (l.file.as_ref(), l.position as i64)))
            .await?;
    let checkpoint = checkpoint_at(sync, token);
    let table = commit_row_delta(
        &sync.connection,
        table,
        files.clone(),
        delete_files,
        checkpoint.to_properties(),
    )
    .await?;
    for file in &files {
        index.add_written_file(&table, file, &sync.plan().key).await?;
    }
    let applied = changes.len() as u64;
    let letters_written = letter_count;
    sync.status(|s| {
        s.events_applied += applied;
        s.rows_skipped += skipped;
        s.dead_letters += letters_written;
        s.commits += 1;
        s.last_commit = Some(std::time::SystemTime::now());
    });
    Ok(table)
}

/// A `SELECT *` sync's table and plan made to take the changed documents (new columns, widened
/// types); under `on_type_change = 'stringify'` the documents are rewritten in `changes`.
async fn fit(sync: &Sync, table: Table, changes: &mut Changes) -> Result<Table> {
    if !sync.plan().evolving {
        return Ok(table);
    }
    let (positions, docs): (Vec<usize>, Vec<&RawDocument>) = changes
        .order
        .iter()
        .enumerate()
        .filter_map(|(i, (_, doc))| doc.as_deref().map(|d| (i, d)))
        .unzip();
    let fit = evolve::fit(sync, &docs)?;
    let table = match fit.schema {
        Some(schema) => evolve::apply(sync, table, schema).await?,
        None => table,
    };
    for (i, doc) in fit.rewritten {
        changes.order[positions[i]].1 = Some(doc);
    }
    Ok(table)
}

/// The output key of each changed `_id`, computed by the sync's key expression.
fn keys(sync: &Sync, changes: &Changes) -> Result<Vec<String>> {
    let mut builder = BatchBuilder::new(sync.plan().input_schema.clone());
    for (id, _) in &changes.order {
        builder.append(&rawdoc! { "_id": id.clone() })?;
    }
    let keys: ArrayRef = sync.plan().keys(&builder.finish()?)?;
    (0..keys.len())
        .map(|i| {
            arrow::util::display::array_value_to_string(&keys, i)
                .map_err(|e| Error::plan(format!("cannot read key {i}: {e}")))
        })
        .collect()
}
