//! `_id` ranges of a parallel snapshot over a collection whose `_id`s have many BSON types:
//! split by the real server, every document falls in exactly one range, a range resumed after
//! any of its `_id`s reads exactly the rest of it, and a parallel snapshot stopped after every
//! commit ends with each document once.

use bson::{Binary, Bson, DateTime, Document, RawBson, RawDocumentBuf, doc, oid::ObjectId};
use futures::TryStreamExt;
use misql::mongo::id_range::{IdRange, split};
use serde_json::Value;

use crate::support::data::load;
use crate::support::{client, json_rows, misql_in_with_env, unique_db, warehouse};

/// 845 documents whose `_id`s are null, ints, doubles, decimals, strings, objects, binaries,
/// ObjectIds, booleans and dates, inserted out of order.
fn mixed_ids() -> Vec<Document> {
    let mut ids: Vec<Bson> = vec![Bson::Null, Bson::Boolean(false), Bson::Boolean(true)];
    for i in 0..150 {
        ids.push(Bson::Int32(i * 3 - 20));
        ids.push(Bson::Double(i as f64 * 2.5 + 0.25));
        ids.push(Bson::String(format!("key-{i:03}")));
        ids.push(Bson::ObjectId(ObjectId::from_bytes([i as u8; 12])));
    }
    for i in 0..60 {
        ids.push(Bson::Int64(1_000_000 + i));
        ids.push(Bson::Document(doc! { "region": "eu", "n": i }));
        ids.push(Bson::Binary(Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: vec![i as u8; 4],
        }));
        ids.push(Bson::DateTime(DateTime::from_millis(1_700_000_000_000 + i * 86_400_000)));
    }
    ids.push(Bson::Decimal128("12.5".parse().unwrap()));
    // Inserted out of `_id` order.
    let mut docs: Vec<Document> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| doc! { "_id": id, "n": i as i32, "label": format!("doc {i}") })
        .collect();
    docs.reverse();
    docs
}

/// The `_id`s `filter` selects, in the server's `_id` order.
async fn ids(coll: &mongodb::Collection<RawDocumentBuf>, filter: Document) -> Vec<RawBson> {
    let options = mongodb::options::FindOptions::builder().sort(doc! { "_id": 1 }).build();
    let docs: Vec<RawDocumentBuf> =
        coll.find(filter).with_options(options).await.unwrap().try_collect().await.unwrap();
    docs.iter().map(|d| RawBson::from(d.get("_id").unwrap().unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_over_mixed_id_types_hold_every_document_once_and_resume_exactly() {
    let db = unique_db("ranges");
    let docs = mixed_ids();
    load(&db, "mixed", &docs).await;
    let client = client().await;
    let coll = client.database(&db).collection::<RawDocumentBuf>("mixed");
    let all = ids(&coll, doc! {}).await;
    assert_eq!(all.len(), docs.len());
    for parts in [2, 3, 4, 7] {
        let ranges = split(&coll, &doc! {}, all.len() as u64, parts).await;
        assert_eq!(ranges.len(), parts, "{parts} parts: {ranges:?}");
        let mut read = Vec::new();
        for range in &ranges {
            let filter = range.filter(None).unwrap().unwrap_or_default();
            let part = ids(&coll, filter).await;
            assert!(!part.is_empty(), "{parts} parts: empty range {range:?}");
            // Resumed after its first, a middle and its last `_id`: exactly the rest.
            for k in [0, part.len() / 2, part.len() - 1] {
                let after = range.filter(Some(&part[k])).unwrap().unwrap();
                assert_eq!(ids(&coll, after).await, part[k + 1..], "{range:?} after {k}");
            }
            read.extend(part);
        }
        assert_eq!(read, all, "{parts} ranges read in order are the collection in _id order");
    }
    assert!(IdRange::all().filter(None).unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parallel_snapshot_of_mixed_ids_stopped_after_every_commit_holds_each_document_once() {
    let db = unique_db("mixed_snap");
    let docs = mixed_ids();
    load(&db, "mixed", &docs).await;
    let dir = warehouse("mixed_snap");
    let sync = format!(
        "CREATE SYNC mixed FROM mongo.{db}.mixed INTO iceberg.{db}.mixed SELECT * \
         WITH (snapshot_parallelism = 4, max_batch_rows = 15)"
    );
    let crash = [("MISQL_FAILPOINT", "after-snapshot-commit")];
    let mut stops = 0;
    loop {
        let run = misql_in_with_env(&dir, &["--once", "-e", &sync], &crash);
        if run.success {
            break;
        }
        assert!(run.stderr.contains("failpoint after-snapshot-commit"), "{}", run.stderr);
        stops += 1;
        assert!(stops < 100, "the snapshot makes no progress");
    }
    assert!(stops >= 5, "stopped only {stops} times");
    let sorted = |mut rows: Vec<Value>| {
        rows.sort_by_key(|r| r["_id"].to_string());
        rows
    };
    let synced = sorted(json_rows(&dir, &format!("SELECT _id, n, label FROM iceberg.{db}.mixed")));
    let expected = sorted(json_rows(&dir, &format!("SELECT _id, n, label FROM mongo.{db}.mixed")));
    assert_eq!(synced.len(), docs.len());
    assert_eq!(synced, expected);
}
