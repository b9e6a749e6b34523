//! `_id` ranges: how a collection is split for a parallel snapshot, and the query that reads one
//! range in `_id` order.
//!
//! MongoDB sorts `_id` values of different types in a fixed type order (null, numbers, strings,
//! objects, binary, ObjectId, booleans, dates, ...), but a query comparison such as
//! `{_id: {$lt: ObjectId(..)}}` only matches values of the bound's own type ("type
//! bracketing"). A range whose bounds have different types, or no bound on one side, therefore
//! names the types between them with `$type`, so that the ranges together hold every document
//! whatever its `_id` type.

use bson::{Bson, Document, RawBson, RawDocumentBuf, doc};
use futures::TryStreamExt;
use mongodb::Collection;

use crate::{Error, ErrorKind, Result};

/// The `_id` values from `from` (inclusive) up to `to` (exclusive), in MongoDB's sort order; a
/// missing bound is open.
#[derive(Debug, Clone, PartialEq)]
pub struct IdRange {
    /// The first `_id` of the range.
    pub from: Option<RawBson>,
    /// The first `_id` after the range.
    pub to: Option<RawBson>,
}

/// The `$type` names of each place in MongoDB's order of BSON types, lowest first.
const TYPE_ORDER: [&[&str]; 17] = [
    &["minKey"],
    &["undefined"],
    &["null"],
    &["number"],
    &["string", "symbol"],
    &["object"],
    &["array"],
    &["binData"],
    &["objectId"],
    &["bool"],
    &["date"],
    &["timestamp"],
    &["regex"],
    &["dbPointer"],
    &["javascript"],
    &["javascriptWithScope"],
    &["maxKey"],
];

/// The place of `value`'s type in [`TYPE_ORDER`].
fn type_rank(value: &RawBson) -> usize {
    match value {
        RawBson::MinKey => 0,
        RawBson::Undefined => 1,
        RawBson::Null => 2,
        RawBson::Double(_) | RawBson::Int32(_) | RawBson::Int64(_) | RawBson::Decimal128(_) => 3,
        RawBson::String(_) | RawBson::Symbol(_) => 4,
        RawBson::Document(_) => 5,
        RawBson::Array(_) => 6,
        RawBson::Binary(_) => 7,
        RawBson::ObjectId(_) => 8,
        RawBson::Boolean(_) => 9,
        RawBson::DateTime(_) => 10,
        RawBson::Timestamp(_) => 11,
        RawBson::RegularExpression(_) => 12,
        RawBson::DbPointer(_) => 13,
        RawBson::JavaScriptCode(_) => 14,
        RawBson::JavaScriptCodeWithScope(_) => 15,
        RawBson::MaxKey => 16,
    }
}

impl IdRange {
    /// Every `_id`.
    pub fn all() -> Self {
        Self { from: None, to: None }
    }

    /// Whether the range is open on both sides.
    pub fn is_all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// The query selecting the range's documents whose `_id` comes after `after` (when given,
    /// it replaces the lower bound, exclusive); `None` when nothing is excluded. An error if a
    /// bound is not a valid BSON value.
    pub fn filter(&self, after: Option<&RawBson>) -> Result<Option<Document>> {
        let lower = match after {
            Some(id) => Some(("$gt", id)),
            None => self.from.as_ref().map(|id| ("$gte", id)),
        };
        let upper = self.to.as_ref();
        if lower.is_none() && upper.is_none() {
            return Ok(None);
        }
        let low = lower.map(|(_, id)| type_rank(id));
        let high = upper.map(type_rank);
        let mut clauses = Vec::new();
        // The lower bound's own type (and the upper bound when it has the same type).
        let mut same_type = Document::new();
        if let Some((op, id)) = lower {
            same_type.insert(op, bson(id)?);
        }
        if let Some(id) = upper.filter(|_| low.is_some() && low == high) {
            same_type.insert("$lt", bson(id)?);
        }
        if !same_type.is_empty() {
            clauses.push(doc! { "_id": same_type });
        }
        // Every type strictly between the bounds' types (an open bound reaches the end).
        let between = low.map_or(0, |rank| rank + 1)..high.unwrap_or(TYPE_ORDER.len());
        let names: Vec<&str> = TYPE_ORDER
            .get(between) // none when both bounds have one type
            .unwrap_or_default()
            .iter()
            .flat_map(|n| n.iter().copied())
            .collect();
        if !names.is_empty() {
            clauses.push(doc! { "_id": { "$type": names } });
        }
        // The upper bound's own type, when it differs from the lower bound's.
        if let Some(id) = upper.filter(|_| low != high) {
            clauses.push(doc! { "_id": { "$lt": bson(id)? } });
        }
        Ok(Some(match clauses.len() {
            1 => clauses.remove(0),
            _ => doc! { "$or": clauses },
        }))
    }
}

fn bson(value: &RawBson) -> Result<Bson> {
    Bson::try_from(value.clone()).map_err(|e| {
        let message = format!("an _id range bound is not a valid BSON value: {e}");
        Error::remote(ErrorKind::Permanent, message)
    })
}

/// Splits `coll`'s documents matching `filter` into about `parts` ranges of similar size:
/// `splitVector` where the server allows it (it reads the `_id` index), `$bucketAuto` on `_id`
/// otherwise (a scan, as on Atlas where `splitVector` is not allowed), and one range when
/// neither answers.
pub async fn split(
    coll: &Collection<RawDocumentBuf>,
    filter: &Document,
    documents: u64,
    parts: usize,
) -> Vec<IdRange> {
    if parts <= 1 || documents < parts as u64 {
        return vec![IdRange::all()];
    }
    let bounds = match split_vector(coll, documents, parts).await {
        Ok(bounds) => bounds,
        Err(vector) => match bucket_auto(coll, filter, parts).await {
            Ok(bounds) => bounds,
            Err(buckets) => {
                tracing::warn!(
                    collection = %coll.namespace(),
                    "cannot split the collection into _id ranges (splitVector: {vector}; \
                     $bucketAuto: {buckets}); it is read with one cursor"
                );
                Vec::new()
            }
        },
    };
    ranges(evenly(bounds, parts - 1))
}

/// Consecutive ranges between sorted, distinct split points.
fn ranges(bounds: Vec<RawBson>) -> Vec<IdRange> {
    let mut ranges = Vec::with_capacity(bounds.len() + 1);
    let mut from = None;
    for bound in bounds {
        ranges.push(IdRange { from: from.take(), to: Some(bound.clone()) });
        from = Some(bound);
    }
    ranges.push(IdRange { from, to: None });
    ranges
}

/// At most `wanted` of `points`, evenly spaced.
fn evenly(points: Vec<RawBson>, wanted: usize) -> Vec<RawBson> {
    if points.len() <= wanted {
        return points;
    }
    let step = points.len() as f64 / (wanted + 1) as f64;
    (1..=wanted)
        .map(|i| points[((i as f64 * step) as usize).min(points.len() - 1)].clone())
        .collect()
}

/// Split points from the `splitVector` command, which walks the `_id` index.
async fn split_vector(
    coll: &Collection<RawDocumentBuf>,
    documents: u64,
    parts: usize,
) -> std::result::Result<Vec<RawBson>, String> {
    let per_part = documents.div_ceil(parts as u64) as i64;
    let command = doc! {
        "splitVector": coll.namespace().to_string(),
        "keyPattern": { "_id": 1 },
        "maxChunkSizeBytes": i64::MAX / 2,
        "maxChunkObjects": per_part,
    };
    let database = coll.client().database(&coll.namespace().db);
    let reply = database.run_command(command).await.map_err(|e| e.to_string())?;
    let keys = reply.get_array("splitKeys").map_err(|e| bad_reply("splitVector", e))?;
    keys.iter()
        .map(|key| match key {
            Bson::Document(key) => {
                key.get("_id").cloned().ok_or_else(|| bad_reply("splitVector", "no _id"))
            }
            _ => Err(bad_reply("splitVector", "a split key is not a document")),
        })
        .map(|id| id.and_then(|id| RawBson::try_from(id).map_err(|e| bad_reply("splitVector", e))))
        .collect()
}

/// Split points from `$bucketAuto` on `_id`: the first `_id` of every bucket after the first.
async fn bucket_auto(
    coll: &Collection<RawDocumentBuf>,
    filter: &Document,
    parts: usize,
) -> std::result::Result<Vec<RawBson>, String> {
    let mut pipeline = Vec::new();
    if !filter.is_empty() {
        pipeline.push(doc! { "$match": filter.clone() });
    }
    pipeline.push(doc! { "$bucketAuto": { "groupBy": "$_id", "buckets": parts as i32 } });
    let cursor = coll.aggregate(pipeline).allow_disk_use(true).await.map_err(|e| e.to_string())?;
    let buckets: Vec<Document> = cursor.try_collect().await.map_err(|e| e.to_string())?;
    buckets
        .iter()
        .skip(1)
        .map(|bucket| {
            let min = bucket
                .get_document("_id")
                .ok()
                .and_then(|id| id.get("min"))
                .ok_or_else(|| bad_reply("$bucketAuto", "a bucket has no _id.min"))?;
            RawBson::try_from(min.clone()).map_err(|e| bad_reply("$bucketAuto", e))
        })
        .collect()
}

fn bad_reply(command: &str, what: impl std::fmt::Display) -> String {
    format!("unexpected {command} reply: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(n: i64) -> RawBson {
        RawBson::Int64(n)
    }

    #[test]
    fn a_range_of_one_type_is_one_comparison() {
        assert_eq!(IdRange::all().filter(None).unwrap(), None);
        let range = IdRange { from: Some(int(10)), to: Some(int(20)) };
        let expected = doc! { "_id": { "$gte": 10_i64, "$lt": 20_i64 } };
        assert_eq!(range.filter(None).unwrap(), Some(expected));
        // A mark replaces the lower bound, exclusive.
        let expected = doc! { "_id": { "$gt": 15_i64, "$lt": 20_i64 } };
        assert_eq!(range.filter(Some(&int(15))).unwrap(), Some(expected));
    }

    #[test]
    fn an_open_or_mixed_range_names_the_types_between_its_bounds() {
        let oid = bson::oid::ObjectId::parse_str("65a000000000000000000000").unwrap();
        let below = IdRange { from: None, to: Some(RawBson::ObjectId(oid)) };
        let types = ["minKey", "undefined", "null", "number", "string", "symbol", "object"];
        let types: Vec<&str> = types.into_iter().chain(["array", "binData"]).collect();
        let expected = doc! { "$or": [ { "_id": { "$type": types } }, { "_id": { "$lt": oid } } ] };
        assert_eq!(below.filter(None).unwrap(), Some(expected));

        let mixed = IdRange { from: Some(int(5)), to: Some(RawBson::String("m".into())) };
        // number and string are next to each other: nothing lies between them.
        let expected = doc! { "$or": [ { "_id": { "$gte": 5_i64 } }, { "_id": { "$lt": "m" } } ] };
        assert_eq!(mixed.filter(None).unwrap(), Some(expected));

        let above = IdRange { from: Some(RawBson::Boolean(true)), to: None };
        let types = ["date", "timestamp", "regex", "dbPointer", "javascript"];
        let types: Vec<&str> = types.into_iter().chain(["javascriptWithScope", "maxKey"]).collect();
        let expected =
            doc! { "$or": [ { "_id": { "$gte": true } }, { "_id": { "$type": types } } ] };
        assert_eq!(above.filter(None).unwrap(), Some(expected));
    }

    #[test]
    fn split_points_make_consecutive_ranges_that_cover_everything() {
        let made = ranges(evenly((1..=10).map(int).collect(), 2));
        let bounds: Vec<(Option<RawBson>, Option<RawBson>)> =
            made.into_iter().map(|r| (r.from, r.to)).collect();
        let expected =
            vec![(None, Some(int(4))), (Some(int(4)), Some(int(7))), (Some(int(7)), None)];
        assert_eq!(bounds, expected);
        assert_eq!(ranges(Vec::new()), vec![IdRange::all()]);
        assert_eq!(evenly(vec![int(1)], 3), vec![int(1)], "fewer points than wanted: all kept");
    }
}
