//! One batch of changes: per `_id`, the document after the last change, or `None` when the
//! document is gone (order of first appearance kept), built from change events and merged
//! chunks of the copy alike.

use std::collections::HashMap;

use bson::{RawBson, RawDocumentBuf, rawdoc};
use mongodb::change_stream::event::OperationType;

use crate::mongo::change_stream::Event;
use crate::sync::SyncTask;
use crate::{Error, ErrorKind, Result};

/// The changes of one batch.
#[derive(Default)]
pub struct Changes {
    /// Each `_id` and its document after the last change.
    pub order: Vec<(RawBson, Option<RawDocumentBuf>)>,
    by_id: HashMap<Vec<u8>, usize>,
    /// The cluster time of the latest change event in the batch.
    pub latest: Option<bson::Timestamp>,
    /// The cluster time of the earliest change event in the batch.
    pub earliest: Option<bson::Timestamp>,
    /// Change events in the batch (rows of merged chunks not counted).
    pub events: u64,
    /// The size of the documents held, in BSON bytes.
    pub bytes: u64,
}

impl Changes {
    /// `_id`s in the batch.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Sets the document of `id` (`None`: deleted), replacing an earlier change of it.
    pub fn set(&mut self, id: RawBson, document: Option<RawDocumentBuf>) {
        let key = rawdoc! { "_id": id.clone() }.into_bytes();
        self.bytes += document.as_ref().map_or(0, |d| d.as_bytes().len() as u64);
        match self.by_id.get(&key) {
            Some(&i) => {
                let old = std::mem::replace(&mut self.order[i].1, document);
                self.bytes -= old.map_or(0, |d| d.as_bytes().len() as u64);
            }
            None => {
                self.by_id.insert(key, self.order.len());
                self.order.push((id, document));
            }
        }
    }
}

/// What one change event does to a batch.
pub enum Effect {
    /// It changed the document with this `_id` (the batch holds its new state).
    Changed(RawBson),
    /// It ends the collection's stream (drop, rename, invalidate), with why.
    Ends(String),
    /// Nothing (a heartbeat or an event the sync skips).
    Nothing,
}

/// Adds one event to `changes`.
pub fn add(sync: &SyncTask, changes: &mut Changes, event: &Event) -> Result<Effect> {
    let id = || -> Result<RawBson> {
        let key =
            event.document_key.as_ref().and_then(|k| k.get("_id")).cloned().ok_or_else(|| {
                Error::remote(
                    ErrorKind::Permanent,
                    format!(
                        "a change event of {}.{} has no documentKey._id",
                        sync.database, sync.collection
                    ),
                )
            })?;
        RawBson::try_from(key).map_err(|e| {
            let message = format!("unreadable _id in a change event: {e}");
            Error::remote(ErrorKind::Permanent, message)
        })
    };
    let (id, document) = match event.operation_type {
        OperationType::Insert | OperationType::Update | OperationType::Replace => {
            (id()?, event.full_document.clone())
        }
        OperationType::Delete => (id()?, None),
        OperationType::Invalidate
        | OperationType::Drop
        | OperationType::Rename
        | OperationType::DropDatabase => {
            return Ok(Effect::Ends(format!(
                "the change stream of {}.{} ended ({:?}): the collection was dropped or renamed",
                sync.database, sync.collection, event.operation_type
            )));
        }
        _ => return Ok(Effect::Nothing),
    };
    changes.latest = changes.latest.max(event.cluster_time);
    changes.earliest = match (changes.earliest, event.cluster_time) {
        (Some(earliest), Some(time)) => Some(earliest.min(time)),
        (earliest, time) => earliest.or(time),
    };
    changes.events += 1;
    changes.set(id.clone(), document);
    Ok(Effect::Changed(id))
}

/// Whether `event` changes a document (not a heartbeat or another event the sync skips).
pub fn is_change(event: &Event) -> bool {
    matches!(
        event.operation_type,
        OperationType::Insert
            | OperationType::Update
            | OperationType::Replace
            | OperationType::Delete
    )
}
