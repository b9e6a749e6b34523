//! The checkpoint of a sync, kept in the Iceberg snapshot summary of the same commit as the data
//! it describes: after a crash, the table itself says where to resume.

use std::collections::HashMap;
use std::fmt;

use bson::{RawBson, RawDocumentBuf};

use crate::mongo::ext_json;
use crate::mongo::id_range::IdRange;
use crate::{Error, ErrorKind, Result};

/// Summary key: the sync's name.
pub const SYNC: &str = "misql.sync";
/// Summary key: hash of the sync definition.
pub const DEFINITION: &str = "misql.definition-hash";
/// Summary key: phase, `snapshot` or `streaming`.
pub const PHASE: &str = "misql.phase";
/// Summary key: the last `_id` committed by the snapshot, as relaxed Extended JSON (for people).
pub const HIGH_WATER: &str = "misql.snapshot-high-water";
/// Summary key: the same `_id` as hex-encoded BSON (exact, for resuming).
pub const HIGH_WATER_BSON: &str = "misql.snapshot-high-water-bson";
/// Summary key: a parallel snapshot's `_id` ranges and how far each is copied, as relaxed
/// Extended JSON (for people).
pub const RANGES: &str = "misql.snapshot-ranges";
/// Summary key: the same ranges as hex-encoded BSON (exact, for resuming).
pub const RANGES_BSON: &str = "misql.snapshot-ranges-bson";
/// Summary key: the change-stream resume token as hex-encoded BSON.
pub const RESUME_TOKEN: &str = "misql.resume-token";
/// Summary key: a cluster time at or before the resume token (`seconds,increment`): where a
/// database sync's one stream must start for this table.
pub const RESUME_TIME: &str = "misql.resume-cluster-time";
/// Summary key: a re-copy in progress over existing rows: the table's last sequence number when
/// it began (rows in data files of that sequence number or older that the re-copy did not
/// write again are deleted at its end).
pub const RECOPY_AFTER: &str = "misql.recopy-after-sequence";
/// Summary key: the cluster time (`seconds,increment`) the table is exact at: it holds every
/// change made up to it and none made after (no part of a transaction, no document read later).
/// Written only by commits made at such a point.
pub const VALID_THROUGH: &str = "misql.valid-through";
/// Summary key: the cluster time (`seconds,increment`) of the earliest change in the commit:
/// the table as of the sync's commit before it held until just before this time.
pub const FIRST_CHANGE: &str = "misql.first-change-time";
/// Summary key: rows copied by the snapshot so far.
pub const ROWS: &str = "misql.snapshot-rows";

/// Where a sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Copying the collection; `high_water` says how far.
    Snapshot,
    /// The snapshot is complete; changes are followed from the resume token.
    Streaming,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Snapshot => "snapshot",
            Phase::Streaming => "streaming",
        })
    }
}

/// How far the snapshot has copied one `_id` range (documents are read in `_id` order).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeMark {
    /// The range.
    pub range: IdRange,
    /// The last `_id` copied from it.
    pub after: Option<RawBson>,
    /// Whether it is copied to its end.
    pub done: bool,
}

impl RangeMark {
    /// A range not read yet.
    pub fn new(range: IdRange) -> Self {
        Self { range, after: None, done: false }
    }
}

/// A sync's progress as committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The sync's name.
    pub sync: String,
    /// Hash of the definition that wrote it.
    pub definition_hash: String,
    /// The phase.
    pub phase: Phase,
    /// While copying: the `_id` ranges the snapshot reads (one, or one per parallel cursor), and
    /// how far each is copied. Empty once streaming.
    pub ranges: Vec<RangeMark>,
    /// The change-stream resume token taken before the snapshot started, as a BSON document.
    pub resume_token: Option<RawDocumentBuf>,
    /// Rows copied by the snapshot so far.
    pub rows: u64,
    /// A cluster time at or before the resume token, when known.
    pub resume_time: Option<bson::Timestamp>,
    /// While re-copying over existing rows: the table's last sequence number when it began.
    pub recopy_after: Option<i64>,
    /// The cluster time the table is exact at with this commit, if it is.
    pub valid_through: Option<bson::Timestamp>,
    /// The cluster time of the earliest change in this commit, if it has changes.
    pub first_change: Option<bson::Timestamp>,
}

impl Checkpoint {
    /// The snapshot-summary properties for this checkpoint.
    pub fn to_properties(&self) -> HashMap<String, String> {
        let mut props = HashMap::from([
            (SYNC.to_string(), self.sync.clone()),
            (DEFINITION.to_string(), self.definition_hash.clone()),
            (PHASE.to_string(), self.phase.to_string()),
            (ROWS.to_string(), self.rows.to_string()),
        ]);
        match self.ranges.as_slice() {
            [] => {}
            [one] if one.range.is_all() => {
                if let Some(id) = &one.after {
                    props.insert(HIGH_WATER.to_string(), ext_json::to_string(id.as_raw_bson_ref()));
                    props.insert(HIGH_WATER_BSON.to_string(), hex::encode(wrap(id).as_bytes()));
                }
            }
            ranges => {
                let doc = ranges_document(ranges);
                let value = bson::RawBsonRef::Document(&doc);
                props.insert(RANGES.to_string(), ext_json::to_string(value));
                props.insert(RANGES_BSON.to_string(), hex::encode(doc.as_bytes()));
            }
        }
        if let Some(token) = &self.resume_token {
            props.insert(RESUME_TOKEN.to_string(), hex::encode(token.as_bytes()));
        }
        if let Some(time) = self.resume_time {
            props.insert(RESUME_TIME.to_string(), format!("{},{}", time.time, time.increment));
        }
        for (key, time) in [(VALID_THROUGH, self.valid_through), (FIRST_CHANGE, self.first_change)]
        {
            if let Some(time) = time {
                props.insert(key.to_string(), format!("{},{}", time.time, time.increment));
            }
        }
        if let Some(sequence) = self.recopy_after {
            props.insert(RECOPY_AFTER.to_string(), sequence.to_string());
        }
        props
    }

    /// Whether a batch read after `self` still continues from `other`, a table's checkpoint:
    /// the same sync, definition, phase and resume token, and (while copying) the same
    /// high-water mark. The row count is progress, not position.
    pub fn same_position(&self, other: &Checkpoint) -> bool {
        self.sync == other.sync
            && self.definition_hash == other.definition_hash
            && self.phase == other.phase
            && self.resume_token == other.resume_token
            && (self.phase == Phase::Streaming || self.ranges == other.ranges)
            && self.recopy_after == other.recopy_after
    }

    /// The checkpoint of `table`: read whole from the summary of the newest snapshot a sync
    /// wrote (other writers' snapshots are passed over); `None` when no sync wrote it.
    pub fn of_table(table: &iceberg::table::Table) -> Result<Option<Self>> {
        match crate::lake::lineage::newest_summary_with(table, SYNC) {
            Some(summary) => Self::from_properties(|key| summary.get(key).cloned()),
            None => Ok(None),
        }
    }

    /// Reads a checkpoint back from one snapshot's summary properties; `None` when the snapshot
    /// was not written by a sync.
    pub fn from_properties(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(sync) = get(SYNC) else { return Ok(None) };
        let phase = match get(PHASE).as_deref() {
            Some("snapshot") => Phase::Snapshot,
            Some("streaming") => Phase::Streaming,
            other => return Err(corrupt(&format!("unknown phase {other:?}"))),
        };
        let ranges = match (phase, get(RANGES_BSON)) {
            (Phase::Streaming, _) => Vec::new(),
            (Phase::Snapshot, Some(text)) => read_ranges(&document(&text)?)?,
            (Phase::Snapshot, None) => {
                let after =
                    get(HIGH_WATER_BSON).map(|text| unwrap(&document(&text)?)).transpose()?;
                vec![RangeMark { range: IdRange::all(), after, done: false }]
            }
        };
        let resume_token = get(RESUME_TOKEN).map(|t| document(&t)).transpose()?;
        Ok(Some(Self {
            sync,
            definition_hash: get(DEFINITION).unwrap_or_default(),
            phase,
            ranges,
            resume_token,
            rows: get(ROWS).and_then(|r| r.parse().ok()).unwrap_or(0),
            resume_time: get(RESUME_TIME).and_then(|t| timestamp(&t)),
            valid_through: get(VALID_THROUGH).and_then(|t| timestamp(&t)),
            first_change: get(FIRST_CHANGE).and_then(|t| timestamp(&t)),
            recopy_after: match get(RECOPY_AFTER) {
                Some(text) if phase == Phase::Snapshot => {
                    Some(text.parse().map_err(|_| corrupt(&format!("re-copy sequence {text:?}")))?)
                }
                _ => None,
            },
        }))
    }
}

/// A cluster time written as `seconds,increment`.
fn timestamp(text: &str) -> Option<bson::Timestamp> {
    let (time, increment) = text.split_once(',')?;
    Some(bson::Timestamp { time: time.parse().ok()?, increment: increment.parse().ok()? })
}

/// `{v: value}`: BSON values are stored inside a document.
fn wrap(value: &RawBson) -> RawDocumentBuf {
    let mut doc = RawDocumentBuf::new();
    doc.append(bson::raw::cstr!("v"), value.clone());
    doc
}

fn unwrap(doc: &RawDocumentBuf) -> Result<RawBson> {
    match doc.get("v") {
        Ok(Some(value)) => Ok(RawBson::from(value)),
        _ => Err(corrupt("the high-water mark holds no value")),
    }
}

/// `{ranges: [{from, to, after, done}, ...]}`, a missing bound or mark left out.
fn ranges_document(ranges: &[RangeMark]) -> RawDocumentBuf {
    let mut list = bson::RawArrayBuf::new();
    for mark in ranges {
        let mut entry = RawDocumentBuf::new();
        let values = [
            (bson::raw::cstr!("from"), &mark.range.from),
            (bson::raw::cstr!("to"), &mark.range.to),
            (bson::raw::cstr!("after"), &mark.after),
        ];
        for (key, value) in values {
            if let Some(value) = value {
                entry.append(key, value.clone());
            }
        }
        entry.append(bson::raw::cstr!("done"), mark.done);
        list.push(entry);
    }
    let mut doc = RawDocumentBuf::new();
    doc.append(bson::raw::cstr!("ranges"), list);
    doc
}

fn read_ranges(doc: &RawDocumentBuf) -> Result<Vec<RangeMark>> {
    let list = doc.get_array("ranges").map_err(|_| corrupt("the snapshot ranges are missing"))?;
    let mut ranges = Vec::new();
    for entry in list {
        let entry = entry
            .ok()
            .and_then(|e| e.as_document())
            .ok_or_else(|| corrupt("a snapshot range is not a document"))?;
        let value = |key: &str| entry.get(key).ok().flatten().map(RawBson::from);
        let range = IdRange { from: value("from"), to: value("to") };
        let done = entry.get_bool("done").unwrap_or(false);
        ranges.push(RangeMark { range, after: value("after"), done });
    }
    if ranges.is_empty() {
        return Err(corrupt("the snapshot ranges list is empty"));
    }
    Ok(ranges)
}

fn document(text: &str) -> Result<RawDocumentBuf> {
    let bytes = hex::decode(text).map_err(|e| corrupt(&e.to_string()))?;
    RawDocumentBuf::from_bytes(bytes).map_err(|e| corrupt(&e.to_string()))
}

fn corrupt(what: &str) -> Error {
    // Not the user's mistake, and not the catalog failing: the table holds a summary misql
    // cannot read, which waiting does not mend.
    Error::remote(
        ErrorKind::Permanent,
        format!("the table's sync checkpoint is unreadable: {what}"),
    )
    .with_hint("CREATE OR REPLACE SYNC rebuilds the table from scratch")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(time: u32, increment: u32) -> Option<bson::Timestamp> {
        Some(bson::Timestamp { time, increment })
    }

    fn token() -> RawDocumentBuf {
        let mut token = RawDocumentBuf::new();
        token.append(bson::raw::cstr!("_data"), "8265A0");
        token
    }

    fn streaming() -> Checkpoint {
        Checkpoint {
            sync: "orders".into(),
            definition_hash: "abc".into(),
            phase: Phase::Streaming,
            ranges: Vec::new(),
            resume_token: Some(token()),
            rows: 2000,
            resume_time: ts(100, 2),
            recopy_after: None,
            valid_through: ts(100, 1),
            first_change: ts(99, 7),
        }
    }

    fn round_trip(checkpoint: &Checkpoint) -> Checkpoint {
        let props = checkpoint.to_properties();
        Checkpoint::from_properties(|key| props.get(key).cloned()).unwrap().unwrap()
    }

    #[test]
    fn a_checkpoint_reads_back_as_it_was_written() {
        let stream = streaming();
        assert_eq!(round_trip(&stream), stream);

        let one = RangeMark { range: IdRange::all(), after: Some(RawBson::Int64(41)), done: false };
        let copying = Checkpoint {
            phase: Phase::Snapshot,
            ranges: vec![one],
            recopy_after: Some(7),
            valid_through: None,
            ..streaming()
        };
        assert_eq!(round_trip(&copying), copying);

        let low = IdRange { from: None, to: Some(RawBson::Int64(500)) };
        let high = IdRange { from: Some(RawBson::Int64(500)), to: None };
        let ranges = vec![
            RangeMark { range: low, after: None, done: true },
            RangeMark { range: high, after: Some(RawBson::String("x".into())), done: false },
        ];
        let parallel = Checkpoint { phase: Phase::Snapshot, ranges, ..streaming() };
        assert_eq!(round_trip(&parallel), parallel);
    }

    #[test]
    fn a_summary_without_a_sync_has_no_checkpoint_and_a_damaged_one_says_so() {
        assert_eq!(Checkpoint::from_properties(|_| None).unwrap(), None);
        let mut props = streaming().to_properties();
        props.insert(PHASE.into(), "sleeping".into());
        let err = Checkpoint::from_properties(|key| props.get(key).cloned()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(err.to_string().contains("unknown phase"), "{err}");
        let mut props = streaming().to_properties();
        props.insert(RESUME_TOKEN.into(), "not hex".into());
        assert!(Checkpoint::from_properties(|key| props.get(key).cloned()).is_err());
    }

    #[test]
    fn a_commit_continues_a_checkpoint_only_from_the_same_position() {
        let here = streaming();
        let later = Checkpoint { rows: 5000, valid_through: ts(200, 0), ..streaming() };
        assert!(here.same_position(&later), "rows and times are progress, not position");
        let moved = Checkpoint { resume_token: None, ..streaming() };
        assert!(!here.same_position(&moved));
        let redefined = Checkpoint { definition_hash: "def".into(), ..streaming() };
        assert!(!here.same_position(&redefined));
    }
}
