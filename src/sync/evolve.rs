//! Schema evolution of `SELECT *` syncs: each batch of documents is checked against the sync's
//! input schema before it is converted. Fields the schema lacks become new columns (nested
//! ones too), int columns that meet int64 values become long, decimals that need more digits
//! get them — in the target table first (a schema commit), then in a new plan. A value Iceberg
//! cannot take in its column (a string in a long column, say) follows `on_type_change`:
//! `stringify` moves it into a `<field>__json` text column as relaxed Extended JSON; `fail` and
//! `dead_letter` apply when the document is converted.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use bson::{Bson, Document, RawBson, RawDocument, RawDocumentBuf};
use iceberg::table::Table;

use super::SyncTask;
use super::plan::is_column_name;
use crate::lake::schema::arrow_schema;
use crate::lake::schema_update::{commit_schema, evolve};
use crate::mongo::bson_arrow::{BatchBuilder, Segment};
use crate::mongo::ext_json;
use crate::mongo::infer::{BsonKind, FieldReport, Inference};
use crate::sql::{OnError, OnTypeChange};
use crate::{Error, Result};

/// The suffix of the column holding values stringified by `on_type_change = 'stringify'`.
pub const JSON_SUFFIX: &str = "__json";

/// How many values of one document may be stringified (each needs a conversion attempt).
const MAX_STRINGIFIED_PER_DOCUMENT: usize = 64;

/// What a batch of documents needs before it is converted.
#[derive(Debug, Default)]
pub struct Fit {
    /// Documents rewritten by `on_type_change = 'stringify'`, by index in the batch.
    pub rewritten: Vec<(usize, RawDocumentBuf)>,
    /// The input schema the batch needs, when it differs from the plan's.
    pub schema: Option<SchemaRef>,
}

/// Checks a batch of documents of a `SELECT *` sync against its input schema: the schema they
/// need (new fields, widened types), and under `stringify` the documents with values moved to
/// `<field>__json` columns. Nothing is changed yet.
pub fn fit(sync: &SyncTask, docs: &[&RawDocument]) -> Result<Fit> {
    let current = sync.plan().input_schema.clone();
    let stringify = sync.create.options.on_type_change == OnTypeChange::Stringify;
    let mut seen = Inference::new();
    for doc in docs {
        // Unreadable documents fail their conversion and follow the sync's policy there.
        let _ = seen.observe(doc);
    }
    let mut schema = grow(&current, &observed(&seen));
    let mut rewritten = Vec::new();
    if stringify {
        let mut builder = BatchBuilder::new(schema.clone());
        let mut json = Inference::new();
        for (i, doc) in docs.iter().enumerate() {
            let Some(doc) = stringified(sync, &mut builder, doc)? else { continue };
            let _ = json.observe(&doc);
            rewritten.push((i, doc));
        }
        if !rewritten.is_empty() {
            schema = grow(&schema, &observed(&json));
        }
    }
    let changed = schema.as_ref() != current.as_ref();
    Ok(Fit { rewritten, schema: changed.then_some(schema) })
}

/// `doc` with every value that does not convert under `builder`'s schema moved to a
/// `<field>__json` field; `None` when the document converts as it is (or cannot be fixed so:
/// unreadable BSON, or too many such values — its conversion reports it later).
fn stringified(
    sync: &SyncTask,
    builder: &mut BatchBuilder,
    doc: &RawDocument,
) -> Result<Option<RawDocumentBuf>> {
    let mut current: Cow<'_, RawDocument> = Cow::Borrowed(doc);
    for _ in 0..=MAX_STRINGIFIED_PER_DOCUMENT {
        let reason = match builder.append(&current) {
            Ok(()) => break,
            Err(Error::Convert { reason, .. }) => reason,
            Err(other) => return Err(other),
        };
        let path = builder.failed_at().to_vec();
        if path.first() == Some(&Segment::Key("_id".to_string())) {
            return Ok(None); // the key is never moved: its failure follows `on_error`
        }
        let Some((moved, field)) = move_to_json(&current, &path) else { return Ok(None) };
        let id = crate::mongo::bson_arrow::document_id(doc);
        let message = format!(
            "sync {}: document _id={id}: field `{field}` ({reason}) is kept as JSON text in \
             `{field}{JSON_SUFFIX}` (on_type_change = 'stringify')",
            sync.name
        );
        if first_time(format!("stringify {} {}", sync.name, without_indices(&field))) {
            tracing::warn!("{message}; more such values are counted in SHOW SYNCS");
        } else {
            tracing::debug!("{message}");
        }
        sync.status(|s| s.values_stringified += 1);
        current = Cow::Owned(moved);
    }
    Ok(match current {
        Cow::Owned(doc) => Some(doc),
        Cow::Borrowed(_) => None,
    })
}

/// Moves the value of the field holding the value at `path` (the last key on the path: a whole
/// array when an element does not fit) to `<key>__json` as relaxed Extended JSON. Returns the
/// new document and the dotted path of the field moved.
fn move_to_json(doc: &RawDocument, path: &[Segment]) -> Option<(RawDocumentBuf, String)> {
    let last_key = path.iter().rposition(|s| matches!(s, Segment::Key(_)))?;
    let Segment::Key(key) = &path[last_key] else { return None };
    let mut root = Document::try_from(doc).ok()?;
    let parent = parent_document(&mut root, &path[..last_key])?;
    let value = parent.remove(key)?;
    let raw = RawBson::try_from(value).ok()?;
    let text = ext_json::to_string(raw.as_raw_bson_ref());
    parent.insert(format!("{key}{JSON_SUFFIX}"), Bson::String(text));
    let dotted: Vec<String> = path[..=last_key]
        .iter()
        .map(|s| match s {
            Segment::Key(k) => k.clone(),
            Segment::Index(i) => i.to_string(),
        })
        .collect();
    Some((RawDocumentBuf::try_from(&root).ok()?, dotted.join(".")))
}

/// The document reached by following `path` from `root`.
fn parent_document<'a>(root: &'a mut Document, path: &[Segment]) -> Option<&'a mut Document> {
    let mut value: Option<&mut Bson> = None;
    let mut doc: Option<&mut Document> = Some(root);
    for segment in path {
        let next = match (segment, doc.take(), value.take()) {
            (Segment::Key(k), Some(d), _) => d.get_mut(k),
            (Segment::Index(i), _, Some(Bson::Array(items))) => items.get_mut(*i),
            (Segment::Key(k), None, Some(Bson::Document(d))) => d.get_mut(k),
            _ => None,
        }?;
        value = Some(next);
    }
    match (doc, value) {
        (Some(d), None) => Some(d),
        (None, Some(Bson::Document(d))) => Some(d),
        _ => None,
    }
}

/// The input schema grown to take `seen`: fields `seen` has and `have` lacks are appended
/// (nullable); int32 columns meeting int64 become Int64; decimals meeting more integer digits
/// at the same scale get the larger precision. Every other difference keeps `have`'s type, so
/// that values which do not fit are reported by the conversion.
pub fn grow(have: &SchemaRef, seen: &Schema) -> SchemaRef {
    let fields = grow_fields(have.fields(), seen.fields());
    if &fields == have.fields() {
        return have.clone();
    }
    Arc::new(Schema::new_with_metadata(fields, have.metadata().clone()))
}

fn grow_fields(have: &Fields, seen: &Fields) -> Fields {
    let mut out: Vec<FieldRef> = have
        .iter()
        .map(|h| match seen.iter().find(|s| s.name() == h.name()) {
            Some(s) => grow_field(h, s),
            None => h.clone(),
        })
        .collect();
    for s in seen.iter().filter(|s| have.find(s.name()).is_none()) {
        out.push(Arc::new(s.as_ref().clone().with_nullable(true)));
    }
    out.into()
}

fn grow_field(have: &FieldRef, seen: &FieldRef) -> FieldRef {
    let data_type = match (have.data_type(), seen.data_type()) {
        (DataType::Struct(h), DataType::Struct(s)) => DataType::Struct(grow_fields(h, s)),
        (DataType::List(h), DataType::List(s)) => DataType::List(grow_field(h, s)),
        (DataType::Int32, DataType::Int64) => DataType::Int64,
        (DataType::Decimal128(p, s), DataType::Decimal128(p2, s2)) if s == s2 && p2 > p => {
            DataType::Decimal128(*p2, *s)
        }
        (h, _) => h.clone(),
    };
    if &data_type == have.data_type() {
        return have.clone();
    }
    Arc::new(have.as_ref().clone().with_data_type(data_type))
}

/// The schema of what `inference` saw, without the fields that carried no typed value (only
/// null, only `{}`, only `[]`): adding those would fix a type before any value says it.
fn observed(inference: &Inference) -> Schema {
    typed(&inference.schema(), &inference.fields())
}

/// `schema` (inferred, with `reports`) without the fields that carried no typed value; `_id`
/// always stays.
pub fn typed(schema: &Schema, reports: &[FieldReport]) -> Schema {
    let fields: Fields = schema
        .fields()
        .iter()
        .filter_map(|f| {
            if f.name() == "_id" {
                return Some(f.clone());
            }
            typed_fields(&Fields::from(vec![f.clone()]), "", reports).iter().next().cloned()
        })
        .collect::<Vec<_>>()
        .into();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn typed_fields(fields: &Fields, prefix: &str, reports: &[FieldReport]) -> Fields {
    fields
        .iter()
        .filter_map(|f| {
            let path = format!("{prefix}{}", f.name());
            if !is_column_name(f.name()) {
                warn_left_out(&path);
                return None;
            }
            let report = reports.iter().find(|r| r.path == path)?;
            if untyped(report) {
                return None;
            }
            let data_type = typed_type(f.data_type(), &path, reports)?;
            Some(Arc::new(f.as_ref().clone().with_data_type(data_type)))
        })
        .collect::<Vec<_>>()
        .into()
}

/// A dotted path without its array indices: `items.2.qty` → `items.qty`.
fn without_indices(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').filter(|p| p.parse::<usize>().is_err()).collect();
    parts.join(".")
}

/// Whether `what` happens for the first time in this process (to warn once, not per document).
fn first_time(what: String) -> bool {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    seen.get_or_insert_with(HashSet::new).insert(what)
}

/// Warns (once per field path and process) that a field cannot be a column.
fn warn_left_out(path: &str) {
    if first_time(format!("left out {path}")) {
        tracing::warn!(
            "field `{path}` cannot be an Iceberg column (its name is empty or has a dot); SELECT * \
             leaves it out: list the columns in the SELECT to keep it under another name"
        );
    }
}

/// `data_type` without its untyped nested fields; `None` for a struct left with no fields (a
/// Parquet group needs at least one).
fn typed_type(data_type: &DataType, path: &str, reports: &[FieldReport]) -> Option<DataType> {
    match data_type {
        DataType::Struct(children) => {
            let children = typed_fields(children, &format!("{path}."), reports);
            (!children.is_empty()).then_some(DataType::Struct(children))
        }
        DataType::List(item) => {
            let item_type = typed_type(item.data_type(), &format!("{path}[]"), reports)?;
            Some(DataType::List(Arc::new(item.as_ref().clone().with_data_type(item_type))))
        }
        other => Some(other.clone()),
    }
}

/// A field whose values say nothing about its type.
fn untyped(report: &FieldReport) -> bool {
    let kinds: Vec<BsonKind> =
        report.types_seen.iter().map(|(k, _)| *k).filter(|k| *k != BsonKind::Null).collect();
    match kinds.as_slice() {
        [] => true,
        // Only `{}` seen (a document nested too deep is Extended JSON text, typed).
        [BsonKind::Document] => report.data_type == DataType::Utf8 && !report.too_deep,
        [BsonKind::Array] => report.max_array_len == Some(0),
        _ => false,
    }
}

/// Makes the table and the plan take `schema` (from [`fit`] or [`reconcile`]): the table's
/// schema is committed first (new optional columns, widened types), then the sync is planned
/// again. Returns the table as it is now.
pub async fn apply(sync: &SyncTask, table: Table, schema: SchemaRef) -> Result<Table> {
    let metadata = table.metadata();
    let change = evolve(metadata.current_schema(), &schema, metadata.last_column_id())?;
    let table = match change {
        None => table,
        Some(change) => {
            let table = commit_schema(&sync.connection, &table, &change).await?;
            crate::failpoint::failpoint("after-schema-change");
            let text = change.changes.join(", ");
            tracing::warn!("sync {}: schema of {} changed: {text}", sync.name, sync.create.target);
            sync.status(|s| {
                s.schema_changes += 1;
                s.last_schema_change = Some(text);
            });
            table
        }
    };
    let plan = sync.plan().with_input_schema(&sync.create, schema).await?;
    sync.set_plan(plan);
    Ok(table)
}

/// Before the target is prepared: a `SELECT *` sync leaves out the sampled fields that carried
/// no typed value (only null, `{}` or `[]`); they become columns once a value says their type.
pub async fn leave_out_untyped(sync: &SyncTask) -> Result<()> {
    let plan = sync.plan();
    let schema = Arc::new(typed(&plan.input_schema, plan.sample_reports()));
    if schema != plan.input_schema {
        match plan.with_input_schema(&sync.create, schema).await {
            Ok(narrower) => sync.set_plan(narrower),
            // A WHERE clause names such a field: untyped ones may stay, unnamable ones not.
            Err(err) => {
                if let Some(field) =
                    plan.output_schema.fields().iter().find(|f| !is_column_name(f.name()))
                {
                    return Err(Error::user(format!(
                        "field `{}` of sync {} cannot be a column: its name is empty or has a dot",
                        field.name(),
                        sync.name
                    ))
                    .with_hint(format!(
                        "list the columns in the SELECT, with `\"{}\" AS <name>`",
                        field.name()
                    )));
                }
                tracing::debug!("sync {}: untyped fields stay: {err}", sync.name);
            }
        }
    }
    Ok(())
}

/// At start: a `SELECT *` sync's input schema becomes the table's columns (with the types the
/// table has) plus what the sample saw that the table lacks; the table grows to match.
pub async fn reconcile(sync: &SyncTask, table: Table) -> Result<Table> {
    let plan = sync.plan();
    let have = arrow_schema(table.metadata().current_schema())?;
    // The key's encoding (Extended JSON for mixed kinds) comes from the sample.
    let fields: Vec<Field> = have
        .fields()
        .iter()
        .map(|f| match plan.input_schema.field_with_name(f.name()) {
            Ok(s) if f.metadata().is_empty() => {
                f.as_ref().clone().with_metadata(s.metadata().clone())
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    let have = Arc::new(Schema::new(fields));
    let schema = grow(&have, &plan.input_schema);
    if schema == have && schema.as_ref() == plan.input_schema.as_ref() {
        return Ok(table);
    }
    apply(sync, table, schema).await
}

/// What a conversion failure of a `SELECT *` sync does: `on_type_change` decides (values that
/// `stringify` could not move follow `on_error`).
pub fn conversion_policy(sync: &SyncTask) -> OnError {
    if !sync.plan().evolving {
        return sync.create.options.on_error;
    }
    match sync.create.options.on_type_change {
        OnTypeChange::Fail => OnError::Fail,
        OnTypeChange::DeadLetter => OnError::DeadLetter,
        OnTypeChange::Stringify => sync.create.options.on_error,
    }
}

/// What to do about a value that does not fit its column in a sync with a SELECT list.
pub const CAST_HINT: &str = "cast it differently, or WITH (on_error = 'skip' | 'dead_letter'); \
                             'dead_letter' keeps such documents in <table>__errors";

/// A conversion failure under a `fail` policy, with the hint that fits the sync.
pub fn conversion_error(sync: &SyncTask, err: Error) -> Error {
    let message = err.to_string();
    if sync.plan().evolving {
        let column = match &err {
            Error::Convert { field, .. } if !field.is_empty() => {
                format!("`{}{JSON_SUFFIX}`", without_indices(field))
            }
            _ => format!("a `<field>{JSON_SUFFIX}` column"),
        };
        Error::user(format!("{message}: the field changed to a type its column cannot hold"))
            .with_hint(format!(
                "WITH (on_type_change = 'stringify') keeps such values as JSON text in {column}; \
                 'dead_letter' keeps the documents in {}__errors",
                sync.create.target
            ))
    } else {
        Error::user(message).with_hint(CAST_HINT)
    }
}
