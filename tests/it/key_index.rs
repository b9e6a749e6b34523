//! The key index (key → data file + row position) over real tables of an embedded SQL catalog in a
//! temp dir: built from snapshots of partitioned and unpartitioned tables and checked row by row
//! against the files themselves, kept up to date with new files and removals, with position
//! deletes applied, and its memory per key measured.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::support::commit::append;
use crate::support::commit::commit_row_delta;
use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use futures::TryStreamExt;
use iceberg::TableIdent;
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Struct, Transform,
};
use iceberg::table::Table;
use misql::lake::catalog::{IcebergConnection, connect};
use misql::lake::key_index::{KeyIndex, RowLocation};
use misql::lake::position_delete::write_position_deletes;
use misql::lake::schema::iceberg_schema;
use misql::lake::table::create_table;
use misql::lake::writer::{TableWriter, WriteOptions, WrittenFile};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::support::TempDir;
use crate::support::data::Rng;

// ---------------------------------------------------------------------------------------------
// Helpers.

/// An embedded catalog in a temp dir.
struct Lake {
    conn: IcebergConnection,
    _dir: TempDir,
}

async fn lake() -> Lake {
    let dir = TempDir::new();
    let conn = connect(dir.0.to_str().unwrap(), &[]).await.expect("embedded catalog");
    Lake { conn, _dir: dir }
}

impl Lake {
    /// Creates `shop.<name>` with `_id` (of `key_type`, the identifier), `region` string and `n`
    /// long, partitioned by `partition`.
    async fn create(
        &self,
        name: &str,
        key_type: DataType,
        partition: &[(&str, Transform)],
    ) -> Table {
        let arrow = ArrowSchema::new(vec![
            Field::new("_id", key_type, false),
            Field::new("region", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]);
        let schema = iceberg_schema(&arrow, "_id").unwrap();
        let partition: Vec<(String, Transform)> =
            partition.iter().map(|(c, t)| (c.to_string(), *t)).collect();
        let ident = TableIdent::from_strs(["shop", name]).unwrap();
        create_table(self.conn.catalog.as_ref(), &ident, schema, &partition, HashMap::new())
            .await
            .unwrap()
    }

    /// Writes `batches` into new data files of `table` (not committed).
    async fn write(&self, table: &Table, batches: &[RecordBatch]) -> Vec<DataFile> {
        let written = write_files(table, batches, &WriteOptions::from_table(table)).await;
        written.into_iter().map(|written| written.file).collect()
    }

    /// Writes and appends `batches`; returns the table after the commit and the files added.
    async fn append(&self, table: &Table, batches: &[RecordBatch]) -> (Table, Vec<DataFile>) {
        let files = self.write(table, batches).await;
        let table = append(&self.conn, table, files.clone(), HashMap::new()).await.unwrap();
        (table, files)
    }
}

/// Writes `batches` into new data files of `table` (not committed), each with its keys.
async fn write_files(
    table: &Table,
    batches: &[RecordBatch],
    options: &WriteOptions,
) -> Vec<WrittenFile> {
    let mut writer = TableWriter::new(table, options).unwrap().keeping_keys();
    for batch in batches {
        writer.write(batch).await.unwrap();
    }
    writer.finish().await.unwrap()
}

/// A batch of rows `(_id, region, n)`.
fn rows(ids: &[String], regions: &[&str]) -> RecordBatch {
    let n = ids.len();
    let ids: ArrayRef = Arc::new(StringArray::from_iter_values(ids));
    let regions: ArrayRef =
        Arc::new(StringArray::from_iter_values((0..n).map(|i| regions[i % regions.len()])));
    let values: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
    RecordBatch::try_from_iter([("_id", ids), ("region", regions), ("n", values)]).unwrap()
}

/// ObjectId-like keys: 24 lowercase hex characters, distinct for distinct `i`.
fn object_ids(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|i| format!("{:08x}{:016x}", 0x6500_0000 + i / 1000, i * 7919)).collect()
}

/// The `_id` values of a data file in row order, read straight from the Parquet file.
fn file_keys(file: &DataFile) -> Vec<String> {
    let path = file.file_path().strip_prefix("file://").unwrap_or(file.file_path());
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut keys = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column =
            arrow::compute::cast(batch.column_by_name("_id").unwrap(), &DataType::Utf8).unwrap();
        keys.extend(column.as_string::<i32>().iter().map(|k| k.unwrap().to_string()));
    }
    keys
}

/// Every key of the table through iceberg-rust's scan (deletes applied), sorted.
async fn scanned_keys(table: &Table) -> Vec<String> {
    let batches: Vec<RecordBatch> = table
        .scan()
        .select(["_id"])
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut keys = Vec::new();
    for batch in batches {
        let column = arrow::compute::cast(batch.column(0), &DataType::Utf8).unwrap();
        keys.extend(column.as_string::<i32>().iter().map(|k| k.unwrap().to_string()));
    }
    keys.sort();
    keys
}

/// The (path, position) of a location.
fn at(location: &RowLocation) -> (String, u64) {
    (location.path().to_string(), location.position)
}

/// Checks that `index` holds exactly the rows of `files` (every row at its own position) except
/// the keys in `gone`.
fn assert_index_matches(index: &KeyIndex, files: &[DataFile], gone: &[String]) {
    let mut expected = BTreeMap::new();
    for file in files {
        for (position, key) in file_keys(file).into_iter().enumerate() {
            if !gone.contains(&key) {
                expected.insert(key, (file.file_path().to_string(), position as u64));
            }
        }
    }
    assert_eq!(index.len(), expected.len(), "number of keys");
    for (key, place) in &expected {
        let found = index.get(key).unwrap_or_else(|| panic!("key {key} missing from the index"));
        assert_eq!(&at(&found), place, "location of {key}");
        assert_eq!(found.file.content_type(), DataContentType::Data);
    }
    for key in gone {
        assert!(index.get(key).is_none(), "{key} should not be in the index");
    }
}

// ---------------------------------------------------------------------------------------------
// Building from a snapshot.

#[tokio::test]
async fn empty_table_gives_an_empty_index() {
    let lake = lake().await;
    let table = lake.create("empty", DataType::Utf8, &[]).await;
    let index = KeyIndex::build(&table, "_id").await.unwrap();
    assert!(index.is_empty());
    assert_eq!(index.len(), 0);
    assert_eq!(index.file_count(), 0);
    assert!(index.get("x").is_none());
}

#[tokio::test]
async fn build_finds_every_row_of_an_unpartitioned_table() {
    let lake = lake().await;
    let table = lake.create("flat", DataType::Utf8, &[]).await;
    let mut files = Vec::new();
    let (table, added) = lake.append(&table, &[rows(&object_ids(0..500), &["eu"])]).await;
    files.extend(added);
    // Mixed key shapes: ObjectIds, other strings, integers in a string column, uppercase hex.
    let odd: Vec<String> = vec![
        "order-1".into(),
        "42".into(),
        "-7".into(),
        "007".into(),
        "+5".into(),
        "6500000000000000000000AB".into(),
        "".into(),
        "ünïcødé".into(),
    ];
    let (table, added) =
        lake.append(&table, &[rows(&object_ids(500..800), &["us"]), rows(&odd, &["us"])]).await;
    files.extend(added);
    let (table, added) = lake.append(&table, &[rows(&object_ids(800..1000), &["eu"])]).await;
    files.extend(added);
    assert_eq!(files.len(), 3);

    let index = KeyIndex::build(&table, "_id").await.unwrap();
    assert_index_matches(&index, &files, &[]);
    assert_eq!(index.len(), 1008);
    assert_eq!(index.file_count(), 3);
    // Keys that look alike but are not the same string are not confused.
    assert!(index.get("5").is_none());
    assert!(index.get("7").is_none());
    assert!(index.get("0042").is_none());
    let lower = &object_ids(3..4)[0];
    assert_ne!(lower, &lower.to_uppercase());
    assert!(index.get(&lower.to_uppercase()).is_none());
    assert!(index.get("6500000000000000000000ab").is_none());
    for key in &odd {
        assert!(index.contains(key), "{key:?}");
    }
}

#[tokio::test]
async fn build_finds_every_row_of_a_partitioned_table() {
    let lake = lake().await;
    let table = lake.create("parts", DataType::Utf8, &[("region", Transform::Identity)]).await;
    let mut files = Vec::new();
    let (table, added) =
        lake.append(&table, &[rows(&object_ids(0..300), &["eu", "us", "apac"])]).await;
    files.extend(added);
    let (table, added) = lake.append(&table, &[rows(&object_ids(300..400), &["eu", "us"])]).await;
    files.extend(added);
    assert_eq!(files.len(), 5, "one file per partition and commit");

    let index = KeyIndex::build(&table, "_id").await.unwrap();
    assert_index_matches(&index, &files, &[]);
    // The location carries the file's partition, as a position delete for it needs.
    let location = index.get(&object_ids(1..2)[0]).unwrap();
    let file = files.iter().find(|f| f.file_path() == location.path()).unwrap();
    assert_eq!(location.file.partition(), file.partition());
    assert_eq!(location.file.record_count(), file.record_count());
    assert_eq!(index.live_rows(location.path()), file.record_count());
}

#[tokio::test]
async fn long_keys_are_looked_up_by_their_decimal_form() {
    let lake = lake().await;
    let table = lake.create("longs", DataType::Int64, &[]).await;
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, -2, 30, i64::MAX, i64::MIN, 0]));
    let regions: ArrayRef = Arc::new(StringArray::from(vec!["eu"; 6]));
    let values: ArrayRef = Arc::new(Int64Array::from(vec![0; 6]));
    let batch =
        RecordBatch::try_from_iter([("_id", ids), ("region", regions), ("n", values)]).unwrap();
    let (table, files) = lake.append(&table, &[batch]).await;

    let index = KeyIndex::build(&table, "_id").await.unwrap();
    assert_index_matches(&index, &files, &[]);
    assert_eq!(index.get(&i64::MIN.to_string()).unwrap().position, 4);
    assert!(index.get("-0").is_none());
    assert!(index.get("+1").is_none());
    assert!(index.get("abc").is_none());
}

#[tokio::test]
async fn a_table_with_a_key_in_two_live_rows_is_refused_with_how_to_repair_it() {
    let lake = lake().await;
    let table = lake.create("dups", DataType::Utf8, &[]).await;
    let (table, _) = lake.append(&table, &[rows(&object_ids(0..10), &["eu"])]).await;
    let (table, _) = lake.append(&table, &[rows(&object_ids(5..8), &["eu"])]).await;
    let error = KeyIndex::build(&table, "_id").await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("3 key(s) in more than one live row"), "{message}");
    assert!(message.contains(&object_ids(5..6)[0]), "{message}");
    assert!(error.hint().unwrap().contains("CREATE OR REPLACE SYNC"), "{error:?}");
    assert_eq!(error.kind(), misql::ErrorKind::Permanent);
}

#[tokio::test]
async fn a_missing_key_column_is_an_error() {
    let lake = lake().await;
    let table = lake.create("nokey", DataType::Utf8, &[]).await;
    let (table, _) = lake.append(&table, &[rows(&object_ids(0..3), &["eu"])]).await;
    let error = KeyIndex::build(&table, "id").await.unwrap_err();
    assert!(error.to_string().contains("no such top-level column"), "{error}");
    assert!(error.hint().unwrap().contains("_id, region, n"), "{:?}", error.hint());
}

// ---------------------------------------------------------------------------------------------
// Keeping it up to date.

#[tokio::test]
async fn remove_and_get() {
    let lake = lake().await;
    let table = lake.create("remove", DataType::Utf8, &[]).await;
    let (table, files) = lake.append(&table, &[rows(&object_ids(0..4), &["eu"])]).await;
    let mut index = KeyIndex::build(&table, "_id").await.unwrap();
    let keys = object_ids(0..4);
    let path = files[0].file_path().to_string();

    let got = index.get(&keys[2]).unwrap();
    let removed = index.remove(&keys[2]).unwrap();
    assert_eq!(got, removed);
    assert_eq!(at(&removed), (path.clone(), 2));
    assert!(index.get(&keys[2]).is_none());
    assert!(index.remove(&keys[2]).is_none());
    assert!(index.remove("never-there").is_none());
    assert_eq!(index.len(), 3);
    assert_eq!(index.live_rows(&path), 3);

    for key in [&keys[0], &keys[1], &keys[3]] {
        let location = index.remove(key).unwrap();
        // The location stays usable after its file left the index.
        assert_eq!(location.path(), path);
    }
    assert!(index.is_empty());
    assert_eq!(index.file_count(), 0, "a file without live rows is dropped");
    assert_eq!(index.live_rows(&path), 0);
}

#[tokio::test]
async fn the_writer_hands_back_each_files_keys_in_row_order() {
    let lake = lake().await;
    let table = lake.create("grow", DataType::Utf8, &[("region", Transform::Identity)]).await;
    let (table, first) = lake.append(&table, &[rows(&object_ids(0..100), &["eu", "us"])]).await;
    let mut index = KeyIndex::build(&table, "_id").await.unwrap();

    // An upsert of keys 90..160: remove the old rows (90..100), write the new ones in three
    // partitions and several batches, with files rolled after every batch.
    let upserted = object_ids(90..160);
    let mut replaced = Vec::new();
    for key in &upserted {
        if let Some(old) = index.remove(key) {
            replaced.push(old);
        }
    }
    assert_eq!(replaced.len(), 10);
    let batches: Vec<RecordBatch> =
        upserted.chunks(10).map(|ids| rows(ids, &["eu", "us", "apac"])).collect();
    let tiny = WriteOptions { target_file_size: 1, ..WriteOptions::from_table(&table) };
    let second = write_files(&table, &batches, &tiny).await;
    assert!(second.len() > 3, "files rolled within partitions: {}", second.len());
    let files: Vec<DataFile> = second.iter().map(|written| written.file.clone()).collect();
    append(&lake.conn, &table, files.clone(), HashMap::new()).await.unwrap();
    for written in &second {
        // The keys handed back are the file's key column as read from the file itself.
        let keys = written.keys.as_ref().expect("keys kept");
        let keys = arrow::compute::cast(keys, &DataType::Utf8).unwrap();
        let keys: Vec<String> = keys.as_string::<i32>().iter().map(|k| k.unwrap().into()).collect();
        assert_eq!(keys, file_keys(&written.file), "{}", written.file.file_path());
        index.add_file(&written.file, written.keys.as_ref().unwrap()).unwrap();
    }
    let mut all = first.clone();
    all.extend(files.iter().cloned());
    let gone: Vec<(String, u64)> = replaced.iter().map(at).collect();
    // What the index holds: the first files' rows except the replaced ones, plus the new files.
    assert_eq!(index.len(), 160);
    for file in &all {
        for (position, key) in file_keys(file).into_iter().enumerate() {
            let here = (file.file_path().to_string(), position as u64);
            if !gone.contains(&here) {
                assert_eq!(at(&index.get(&key).unwrap()), here, "{key}");
            }
        }
    }
    // Adding a file twice is an error; keys that do not match the file's rows too.
    let error = index.add_file(&files[0], second[0].keys.as_ref().unwrap()).unwrap_err();
    assert!(error.to_string().contains("already in the key index"), "{error}");
    let keys: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
    let error = index.add_file(&files[1], &keys).unwrap_err();
    assert!(error.to_string().contains("keys given for its"), "{error}");
}

#[tokio::test]
async fn add_file_with_keys_in_hand() {
    let lake = lake().await;
    let table = lake.create("inhand", DataType::Utf8, &[]).await;
    let mut index = KeyIndex::build(&table, "_id").await.unwrap();
    let ids = object_ids(0..50);
    let batch = rows(&ids, &["eu"]);
    let files = lake.write(&table, std::slice::from_ref(&batch)).await;
    assert_eq!(files.len(), 1);
    index.add_file(&files[0], batch.column(0)).unwrap();
    assert_index_matches(&index, &files, &[]);

    // A key written again moves to the newer file (with a warning).
    let again = rows(&ids[10..12], &["eu"]);
    let newer = lake.write(&table, std::slice::from_ref(&again)).await;
    index.add_file(&newer[0], again.column(0)).unwrap();
    assert_eq!(index.len(), 50);
    assert_eq!(at(&index.get(&ids[11]).unwrap()), (newer[0].file_path().to_string(), 1));
    assert_eq!(index.live_rows(files[0].file_path()), 48);

    // A delete file is not a data file.
    let delete = DataFileBuilder::default()
        .content(DataContentType::PositionDeletes)
        .file_path("file:///nowhere/d.parquet".to_string())
        .file_format(DataFileFormat::Parquet)
        .partition(Struct::empty())
        .record_count(1)
        .file_size_in_bytes(10)
        .build()
        .unwrap();
    let keys: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
    assert!(index.add_file(&delete, &keys).is_err());
}

// ---------------------------------------------------------------------------------------------
// Deletes in the snapshot.

#[tokio::test]
async fn position_deletes_in_the_snapshot_are_applied() {
    let lake = lake().await;
    let table = lake.create("deletes", DataType::Utf8, &[("region", Transform::Identity)]).await;
    let (table, mut files) = lake.append(&table, &[rows(&object_ids(0..200), &["eu", "us"])]).await;
    let mut index = KeyIndex::build(&table, "_id").await.unwrap();

    // Delete some keys the way a sync does: remove from the index, write position deletes.
    let deleted: Vec<String> = object_ids(0..200).into_iter().step_by(7).collect();
    let mut targets = Vec::new();
    for key in &deleted {
        let location = index.remove(key).unwrap();
        targets.push((location.file.clone(), location.position as i64));
    }
    let delete_files =
        write_position_deletes(&table, targets.iter().map(|(f, p)| (f.as_ref(), *p)))
            .await
            .unwrap();
    assert_eq!(delete_files.len(), 2, "one delete file per partition");
    // And an upsert in the same commit: key 7, removed above, gets a new row.
    let upsert = rows(&object_ids(7..8), &["eu"]);
    let new_files = lake.write(&table, std::slice::from_ref(&upsert)).await;
    let table =
        commit_row_delta(&lake.conn, &table, new_files.clone(), delete_files, HashMap::new())
            .await
            .unwrap();
    index.add_file(&new_files[0], upsert.column(0)).unwrap();
    files.extend(new_files);

    let rebuilt = KeyIndex::build(&table, "_id").await.unwrap();
    let gone: Vec<String> =
        deleted.iter().filter(|k| **k != object_ids(7..8)[0]).cloned().collect();
    assert_eq!(rebuilt.len(), 200 - gone.len());
    assert_eq!(rebuilt.len(), index.len());
    for key in object_ids(0..200) {
        assert_eq!(rebuilt.get(&key), index.get(&key), "{key}");
    }
    // The key that was deleted and re-inserted is in the newest file, at row 0.
    assert_eq!(
        at(&rebuilt.get(&object_ids(7..8)[0]).unwrap()),
        (files[2].file_path().to_string(), 0)
    );
    // Same keys as iceberg-rust's own scan, which applies the deletes itself.
    let mut expected: Vec<String> =
        object_ids(0..200).into_iter().filter(|k| !gone.contains(k)).collect();
    expected.sort();
    assert_eq!(scanned_keys(&table).await, expected);
    // A data file all of whose rows are deleted is not held.
    assert_eq!(rebuilt.file_count(), 3);
}

#[tokio::test]
async fn a_fully_deleted_file_is_not_held() {
    let lake = lake().await;
    let table = lake.create("wiped", DataType::Utf8, &[]).await;
    let (table, first) = lake.append(&table, &[rows(&object_ids(0..5), &["eu"])]).await;
    let (table, second) = lake.append(&table, &[rows(&object_ids(5..10), &["eu"])]).await;
    // One delete file for rows of both files (so it names no single referenced data file): all
    // of the first, one of the second.
    let targets = (0..5).map(|p| (&first[0], p)).chain([(&second[0], 2)]);
    let deletes = write_position_deletes(&table, targets).await.unwrap();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].referenced_data_file(), None);
    let table =
        commit_row_delta(&lake.conn, &table, vec![], deletes, HashMap::new()).await.unwrap();
    let index = KeyIndex::build(&table, "_id").await.unwrap();
    assert_eq!(index.len(), 4);
    assert_eq!(index.file_count(), 1);
    assert_eq!(index.live_rows(first[0].file_path()), 0);
    assert_eq!(index.live_rows(second[0].file_path()), 4);
    assert!(index.get(&object_ids(0..1)[0]).is_none());
    assert!(index.get(&object_ids(7..8)[0]).is_none());
    assert_eq!(
        at(&index.get(&object_ids(9..10)[0]).unwrap()),
        (second[0].file_path().to_string(), 4)
    );
}

#[tokio::test]
async fn equality_deletes_in_the_snapshot_are_refused() {
    let lake = lake().await;
    let table = lake.create("eqdel", DataType::Utf8, &[]).await;
    let (table, _) = lake.append(&table, &[rows(&object_ids(0..5), &["eu"])]).await;
    let key_id = table.metadata().current_schema().field_by_name("_id").unwrap().id;
    // The file is never read: the index refuses the snapshot from its manifests.
    let equality = DataFileBuilder::default()
        .content(DataContentType::EqualityDeletes)
        .file_path(format!("{}/data/eq-deletes.parquet", table.metadata().location()))
        .file_format(DataFileFormat::Parquet)
        .partition(Struct::empty())
        .record_count(1)
        .file_size_in_bytes(100)
        .equality_ids(Some(vec![key_id]))
        .build()
        .unwrap();
    let table =
        commit_row_delta(&lake.conn, &table, vec![], vec![equality], HashMap::new()).await.unwrap();
    let error = KeyIndex::build(&table, "_id").await.unwrap_err();
    assert!(error.to_string().contains("equality delete file"), "{error}");
    assert!(error.hint().unwrap().contains("OPTIMIZE"), "{:?}", error.hint());
}

/// Many adds (with keys repeated across files) and removes of every key shape, checked against a
/// plain map after each step: the index's own storage (merges of recent keys, dead entries
/// revived or dropped) must never change an answer.
#[test]
fn adds_and_removes_agree_with_a_plain_map() {
    fn key(i: u64) -> String {
        match i % 4 {
            0 | 1 => object_ids(i..i + 1).remove(0),
            2 => (i as i64 - 20_000).to_string(),
            _ => format!("key-{i}"),
        }
    }
    const KEYS: u64 = 200_000;
    let mut rng = Rng::new(7);
    let mut index = KeyIndex::new();
    let mut model: HashMap<String, (String, u64)> = HashMap::new();
    let mut file_number = 0;
    for round in 0..300 {
        if rng.below(3) == 0 {
            for _ in 0..rng.below(6_000) {
                let k = key(rng.below(KEYS));
                let expected = model.remove(&k);
                let got = index.remove(&k);
                assert_eq!(got.as_ref().map(at), expected, "remove {k} in round {round}");
            }
        } else {
            file_number += 1;
            let path = format!("file:///nowhere/{file_number}.parquet");
            let keys: Vec<String> =
                (0..1 + rng.below(5_000)).map(|_| key(rng.below(KEYS))).collect();
            let file = DataFileBuilder::default()
                .content(DataContentType::Data)
                .file_path(path.clone())
                .file_format(DataFileFormat::Parquet)
                .partition(Struct::empty())
                .record_count(keys.len() as u64)
                .file_size_in_bytes(1)
                .build()
                .unwrap();
            let array: ArrayRef = Arc::new(StringArray::from_iter_values(&keys));
            index.add_file(&file, &array).unwrap();
            for (position, k) in keys.into_iter().enumerate() {
                model.insert(k, (path.clone(), position as u64));
            }
        }
        assert_eq!(index.len(), model.len(), "round {round}");
        if round % 50 == 49 {
            let mut per_file: HashMap<&str, u64> = HashMap::new();
            for (k, place) in &model {
                assert_eq!(index.get(k).as_ref().map(at).as_ref(), Some(place), "{k}");
                *per_file.entry(place.0.as_str()).or_default() += 1;
            }
            assert_eq!(index.file_count(), per_file.len());
            for (path, live) in per_file {
                assert_eq!(index.live_rows(path), live, "{path}");
            }
        }
    }
    assert!(model.len() > 60_000, "the test reaches the sizes where storage is reorganised");
}

// ---------------------------------------------------------------------------------------------
// Memory.

/// Prints the index's memory for 100k ObjectId keys (run with `--nocapture` to see it), and keeps
/// it from regressing to per-key string allocations.
#[tokio::test]
async fn memory_per_object_id_key() {
    let lake = lake().await;
    let table = lake.create("memory", DataType::Utf8, &[]).await;
    let ids = object_ids(0..100_000);
    let batches: Vec<RecordBatch> = ids.chunks(10_000).map(|c| rows(c, &["eu"])).collect();
    let (table, _) = lake.append(&table, &batches).await;
    let index = KeyIndex::build(&table, "_id").await.unwrap();
    assert_eq!(index.len(), 100_000);
    let per_key = index.bytes_per_key();
    eprintln!(
        "key index: {} keys (ObjectId hex), {} heap bytes, {per_key:.1} bytes per key",
        index.len(),
        index.heap_bytes()
    );
    assert!(per_key < 24.0, "{per_key} bytes per key");

    // The same keys as plain strings (not packable) cost more, for comparison.
    let mut strings = KeyIndex::new();
    let long_ids: Vec<String> = ids.iter().map(|k| format!("order:{k}")).collect();
    let batch = rows(&long_ids, &["eu"]);
    let files = lake.write(&table, std::slice::from_ref(&batch)).await;
    strings.add_file(&files[0], batch.column(0)).unwrap();
    eprintln!(
        "key index: {} keys (30-char strings), {} heap bytes, {:.1} bytes per key",
        strings.len(),
        strings.heap_bytes(),
        strings.bytes_per_key()
    );
    assert!(strings.bytes_per_key() > per_key);

    // Larger indexes, built file by file (keys pass through the map of recent keys and are
    // merged into the sorted entries): the figure stays close to the 20 bytes of an entry.
    for n in [500_000u64, 1_000_000] {
        let keys: ArrayRef = Arc::new(StringArray::from_iter_values(object_ids(0..n)));
        let file = DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path(format!("file:///nowhere/{n}.parquet"))
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(n)
            .file_size_in_bytes(1)
            .build()
            .unwrap();
        let mut index = KeyIndex::new();
        index.add_file(&file, &keys).unwrap();
        eprintln!(
            "key index: {} keys (ObjectId hex), {} heap bytes, {:.1} bytes per key",
            index.len(),
            index.heap_bytes(),
            index.bytes_per_key()
        );
        assert!(index.bytes_per_key() < 26.0, "{} bytes per key", index.bytes_per_key());
    }
}
