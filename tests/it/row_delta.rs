//! Row-level commits (`misql::lake::row_delta`): new data files plus position or equality
//! delete files in one snapshot, through the embedded SQL catalog (and the REST catalog of
//! seaweedfs), read back with iceberg-rust's scan and with pyiceberg; the manifests, sequence
//! numbers and summary totals checked one by one; lost compare-and-swaps retried.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::commit::append;
use crate::support::commit::commit_row_delta;
use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use futures::TryStreamExt;
use iceberg::arrow::{arrow_schema_to_schema, schema_to_arrow_schema};
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, ManifestContentType, ManifestStatus, Operation,
    Snapshot, Transform,
};
use iceberg::table::Table;
use iceberg::writer::base_writer::equality_delete_writer::{
    EqualityDeleteFileWriterBuilder, EqualityDeleteWriterConfig,
};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{NamespaceIdent, TableIdent};
use misql::lake::catalog::{IcebergConnection, connect};
use misql::lake::position_delete::{
    DELETE_FILE_PATH_FIELD_ID, DELETE_FILE_POS_FIELD_ID, write_position_deletes,
};
use misql::lake::schema::iceberg_schema;
use misql::lake::table::create_table;
use misql::lake::table::partition_spec_id;
use misql::lake::writer::{TableWriter, WriteOptions};
use parquet::file::properties::WriterProperties;

use crate::support::TempDir as Warehouse;
use crate::support::duckdb::duckdb_rows;
use crate::support::pyiceberg::{PyCatalog, pyiceberg_rows};
use crate::support::rest_catalog::{RestCatalog, on_each_rest_catalog};

// ---------------------------------------------------------------------------------------------
// Helpers

fn orders_schema() -> ArrowSchema {
    ArrowSchema::new(vec![
        Field::new("_id", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, true),
        Field::new("qty", DataType::Int64, true),
    ])
}

/// Creates `<namespace>.orders` (`_id`, `region`, `qty`), partitioned by `region` if asked.
async fn create_orders(conn: &IcebergConnection, namespace: &str, partitioned: bool) -> Table {
    let schema = iceberg_schema(&orders_schema(), "_id").unwrap();
    let partition: Vec<(String, Transform)> =
        if partitioned { vec![("region".to_string(), Transform::Identity)] } else { vec![] };
    let ident = TableIdent::new(NamespaceIdent::new(namespace.to_string()), "orders".into());
    create_table(conn.catalog.as_ref(), &ident, schema, &partition, HashMap::new()).await.unwrap()
}

/// Rows `(_id, region, qty)`.
fn rows(rows: &[(&str, &str, i64)]) -> RecordBatch {
    let ids: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
    let regions: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1)));
    let qty: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2)));
    RecordBatch::try_new(Arc::new(orders_schema()), vec![ids, regions, qty]).unwrap()
}

/// Writes `batch` into new data files of `table` (not committed).
async fn write(table: &Table, batch: &RecordBatch) -> Vec<DataFile> {
    let mut writer = TableWriter::new(table, &WriteOptions::from_table(table)).unwrap();
    writer.write(batch).await.unwrap();
    writer.finish().await.unwrap().into_iter().map(|written| written.file).collect()
}

/// Every row through iceberg-rust's scan (deletes applied), as `(_id, region, qty)`, sorted.
async fn scan(table: &Table) -> Vec<(String, String, i64)> {
    let batches: Vec<RecordBatch> =
        table.scan().build().unwrap().to_arrow().await.unwrap().try_collect().await.unwrap();
    let mut out = Vec::new();
    for batch in batches {
        let ids = batch.column_by_name("_id").unwrap();
        let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
        let regions = batch.column_by_name("region").unwrap();
        let regions = regions.as_any().downcast_ref::<StringArray>().unwrap();
        let qty = batch.column_by_name("qty").unwrap();
        let qty = qty.as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..batch.num_rows() {
            out.push((ids.value(i).to_string(), regions.value(i).to_string(), qty.value(i)));
        }
    }
    out.sort();
    out
}

fn expected(rows: &[(&str, &str, i64)]) -> Vec<(String, String, i64)> {
    let mut out: Vec<_> = rows.iter().map(|r| (r.0.to_string(), r.1.to_string(), r.2)).collect();
    out.sort();
    out
}

/// The rows pyiceberg reads, as `(_id, region, qty)`, sorted.
fn py_rows(catalog: &PyCatalog, table: &str) -> Vec<(String, String, i64)> {
    let mut out: Vec<_> = pyiceberg_rows(catalog, table, "_id")
        .into_iter()
        .map(|row| {
            (
                row["_id"].as_str().unwrap().to_string(),
                row["region"].as_str().unwrap().to_string(),
                row["qty"].as_i64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn summary(snapshot: &Snapshot, key: &str) -> Option<String> {
    snapshot.summary().additional_properties.get(key).cloned()
}

/// Asserts the summary's values for `pairs` (`None`: the key is absent).
fn assert_summary(snapshot: &Snapshot, pairs: &[(&str, Option<&str>)]) {
    for (key, value) in pairs {
        assert_eq!(
            summary(snapshot, key).as_deref(),
            *value,
            "summary key {key} of {:?}",
            snapshot.summary()
        );
    }
}

/// A manifest entry, flattened: (manifest content, status, snapshot id, data sequence number,
/// file sequence number, file content, path, record count).
type Entry = (
    ManifestContentType,
    ManifestStatus,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    DataContentType,
    String,
    u64,
);

/// Every entry of every manifest of the current snapshot, plus each manifest's (content,
/// added snapshot id, sequence number, min sequence number).
async fn manifests(table: &Table) -> (Vec<(ManifestContentType, i64, i64, i64)>, Vec<Entry>) {
    let snapshot = table.metadata().current_snapshot().unwrap();
    let list = table.manifest_list_reader(snapshot).load().await.unwrap();
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for manifest_file in list.entries() {
        files.push((
            manifest_file.content,
            manifest_file.added_snapshot_id,
            manifest_file.sequence_number,
            manifest_file.min_sequence_number,
        ));
        let manifest = manifest_file.load_manifest(table.file_io()).await.unwrap();
        for entry in manifest.entries() {
            entries.push((
                manifest_file.content,
                entry.status(),
                entry.snapshot_id(),
                entry.sequence_number(),
                entry.file_sequence_number,
                entry.content_type(),
                entry.file_path().to_string(),
                entry.record_count(),
            ));
        }
    }
    (files, entries)
}

/// Asserts that the current snapshot's `total-*` counts are what its live manifest entries add
/// up to.
async fn assert_totals_match_manifests(table: &Table) {
    let snapshot = table.metadata().current_snapshot().unwrap().clone();
    let (_, entries) = manifests(table).await;
    let live = entries.iter().filter(|e| e.1 != ManifestStatus::Deleted);
    let (mut data_files, mut records, mut delete_files, mut pos, mut eq) = (0, 0, 0, 0, 0);
    for entry in live {
        match entry.5 {
            DataContentType::Data => {
                data_files += 1;
                records += entry.7;
            }
            DataContentType::PositionDeletes => {
                delete_files += 1;
                pos += entry.7;
            }
            DataContentType::EqualityDeletes => {
                delete_files += 1;
                eq += entry.7;
            }
        }
    }
    let want = [
        ("total-data-files", data_files),
        ("total-records", records),
        ("total-delete-files", delete_files),
        ("total-position-deletes", pos),
        ("total-equality-deletes", eq),
    ];
    for (key, value) in want {
        assert_eq!(
            summary(&snapshot, key),
            Some(value.to_string()),
            "{key} of {:?}",
            snapshot.summary()
        );
    }
}

fn local(path: &str) -> PathBuf {
    PathBuf::from(path.strip_prefix("file://").unwrap())
}

/// The `(file_path, pos)` rows of a local position delete file, and its columns' field ids.
fn read_position_delete_file(path: &str) -> (Vec<(String, i64)>, Vec<i32>) {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(local(path)).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let ids = builder
        .parquet_schema()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.get_basic_info().id())
        .collect();
    let mut out = Vec::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let paths = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap().clone();
        let pos = batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap().clone();
        for i in 0..batch.num_rows() {
            out.push((paths.value(i).to_string(), pos.value(i)));
        }
    }
    (out, ids)
}

fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// An embedded catalog in a fresh warehouse, with `shop.orders` holding `first` (committed with
/// `append`); returns the connection, the table and its data files.
async fn seeded(
    warehouse: &Warehouse,
    partitioned: bool,
    first: &[(&str, &str, i64)],
) -> (IcebergConnection, Table, Vec<DataFile>) {
    let conn = connect(&warehouse.0.display().to_string(), &[]).await.unwrap();
    let table = create_orders(&conn, "shop", partitioned).await;
    let files = write(&table, &rows(first)).await;
    let table = append(&conn, &table, files.clone(), HashMap::new()).await.unwrap();
    (conn, table, files)
}

const FIRST: [(&str, &str, i64); 10] = [
    ("a0", "eu", 0),
    ("a1", "eu", 1),
    ("a2", "eu", 2),
    ("a3", "eu", 3),
    ("a4", "eu", 4),
    ("a5", "eu", 5),
    ("a6", "eu", 6),
    ("a7", "eu", 7),
    ("a8", "eu", 8),
    ("a9", "eu", 9),
];

// ---------------------------------------------------------------------------------------------
// Position deletes and new rows in one snapshot

#[tokio::test(flavor = "multi_thread")]
async fn position_deletes_and_new_rows_commit_in_one_snapshot() {
    let warehouse = Warehouse::new();
    let (conn, table, first_files) = seeded(&warehouse, false, &FIRST).await;
    let [first_file] = first_files.as_slice() else { panic!("one data file: {first_files:?}") };
    let parent = table.metadata().current_snapshot().unwrap().clone();
    assert_summary(&parent, &[("total-records", Some("10")), ("total-data-files", Some("1"))]);

    // Unsorted, with a repeat: written sorted and once each.
    let deletes = write_position_deletes(
        &table,
        [(first_file, 7), (first_file, 2), (first_file, 5), (first_file, 2)],
    )
    .await
    .unwrap();
    let [delete_file] = deletes.as_slice() else { panic!("one delete file: {deletes:?}") };
    assert_eq!(delete_file.content_type(), DataContentType::PositionDeletes);
    assert_eq!(delete_file.record_count(), 3);
    assert_eq!(delete_file.file_format(), DataFileFormat::Parquet);
    assert_eq!(delete_file.referenced_data_file().as_deref(), Some(first_file.file_path()));
    assert_eq!(partition_spec_id(delete_file, table.metadata()), Some(0));
    assert!(delete_file.file_path().starts_with(&format!("{}/data/", table.metadata().location())));
    assert!(delete_file.file_path().ends_with("-deletes.parquet"));
    let size = std::fs::metadata(local(delete_file.file_path())).unwrap().len();
    assert_eq!(delete_file.file_size_in_bytes(), size);
    let (delete_rows, field_ids) = read_position_delete_file(delete_file.file_path());
    let target = first_file.file_path().to_string();
    assert_eq!(delete_rows, vec![(target.clone(), 2), (target.clone(), 5), (target.clone(), 7)]);
    assert_eq!(field_ids, vec![DELETE_FILE_PATH_FIELD_ID, DELETE_FILE_POS_FIELD_ID]);

    let new_rows = [("b0", "us", 100), ("b1", "us", 101), ("b2", "us", 102)];
    let new_files = write(&table, &rows(&new_rows)).await;
    let committed = commit_row_delta(
        &conn,
        &table,
        new_files.clone(),
        deletes.clone(),
        props(&[("misql.checkpoint", "{\"phase\":\"stream\"}")]),
    )
    .await
    .unwrap();

    // The rows: the first file's minus rows 2, 5 and 7, plus the new ones.
    let mut want: Vec<(&str, &str, i64)> =
        FIRST.iter().copied().filter(|r| !["a2", "a5", "a7"].contains(&r.0)).collect();
    want.extend(new_rows);
    assert_eq!(scan(&committed).await, expected(&want));

    // The snapshot.
    let snapshot = committed.metadata().current_snapshot().unwrap().clone();
    assert_eq!(snapshot.parent_snapshot_id(), Some(parent.snapshot_id()));
    assert_eq!(snapshot.sequence_number(), parent.sequence_number() + 1);
    assert_eq!(committed.metadata().last_sequence_number(), snapshot.sequence_number());
    assert_eq!(snapshot.schema_id(), Some(committed.metadata().current_schema_id()));
    assert_eq!(snapshot.summary().operation, Operation::Overwrite);
    assert_summary(
        &snapshot,
        &[
            ("misql.checkpoint", Some("{\"phase\":\"stream\"}")),
            ("added-data-files", Some("1")),
            ("added-delete-files", Some("1")),
            ("added-position-delete-files", Some("1")),
            ("added-records", Some("3")),
            ("added-position-deletes", Some("3")),
            ("added-equality-deletes", None),
            ("total-records", Some("13")),
            ("total-data-files", Some("2")),
            ("total-delete-files", Some("1")),
            ("total-position-deletes", Some("3")),
            ("total-equality-deletes", Some("0")),
        ],
    );
    let added_size = new_files[0].file_size_in_bytes() + delete_file.file_size_in_bytes();
    let parent_size: u64 = summary(&parent, "total-files-size").unwrap().parse().unwrap();
    assert_eq!(summary(&snapshot, "added-files-size"), Some(added_size.to_string()));
    assert_eq!(
        summary(&snapshot, "total-files-size"),
        Some((parent_size + added_size).to_string())
    );

    // The manifests: the parent's, carried over as they were, plus one data and one delete
    // manifest of the new snapshot, whose entries inherit its id and sequence number.
    let new_id = snapshot.snapshot_id();
    let new_seq = snapshot.sequence_number();
    let old_seq = parent.sequence_number();
    let (mut files, mut entries) = manifests(&committed).await;
    files.sort_by_key(|f| (f.2, f.0 as i32));
    assert_eq!(
        files,
        vec![
            (ManifestContentType::Data, parent.snapshot_id(), old_seq, old_seq),
            (ManifestContentType::Data, new_id, new_seq, new_seq),
            (ManifestContentType::Deletes, new_id, new_seq, new_seq),
        ]
    );
    entries.sort_by_key(|e| (e.3, e.5 as i32));
    assert_eq!(
        entries,
        vec![
            (
                ManifestContentType::Data,
                ManifestStatus::Added,
                Some(parent.snapshot_id()),
                Some(old_seq),
                Some(old_seq),
                DataContentType::Data,
                first_file.file_path().to_string(),
                10
            ),
            (
                ManifestContentType::Data,
                ManifestStatus::Added,
                Some(new_id),
                Some(new_seq),
                Some(new_seq),
                DataContentType::Data,
                new_files[0].file_path().to_string(),
                3
            ),
            (
                ManifestContentType::Deletes,
                ManifestStatus::Added,
                Some(new_id),
                Some(new_seq),
                Some(new_seq),
                DataContentType::PositionDeletes,
                delete_file.file_path().to_string(),
                3
            ),
        ]
    );

    assert_totals_match_manifests(&committed).await;

    // An independent reader applies the position deletes too.
    let py = PyCatalog::sql(&warehouse.0);
    assert_eq!(py_rows(&py, "shop.orders"), expected(&want));
}

#[tokio::test(flavor = "multi_thread")]
async fn position_deletes_carry_the_partition_of_the_data_files_they_target() {
    let warehouse = Warehouse::new();
    let first = [
        ("e0", "eu", 0),
        ("e1", "eu", 1),
        ("e2", "eu", 2),
        ("u0", "us", 10),
        ("u1", "us", 11),
        ("u2", "us", 12),
        ("u3", "us", 13),
    ];
    let (conn, table, first_files) = seeded(&warehouse, true, &first).await;
    assert_eq!(first_files.len(), 2, "one data file per region");
    let region_of = |file: &DataFile| {
        file.partition().fields()[0].as_ref().unwrap().as_primitive_literal().unwrap()
    };
    let eu = first_files
        .iter()
        .find(|f| region_of(f) == iceberg::spec::PrimitiveLiteral::String("eu".into()))
        .unwrap();
    let us = first_files
        .iter()
        .find(|f| region_of(f) == iceberg::spec::PrimitiveLiteral::String("us".into()))
        .unwrap();
    // Row order within a file is the order written: e1 is row 1 of the eu file, u0 and u3
    // rows 0 and 3 of the us file.
    let deletes = write_position_deletes(&table, [(us, 3), (eu, 1), (us, 0)]).await.unwrap();
    assert_eq!(deletes.len(), 2, "one delete file per partition: {deletes:?}");
    for delete in &deletes {
        let target = if region_of(delete) == region_of(eu) { eu } else { us };
        assert_eq!(delete.partition(), target.partition());
        assert_eq!(delete.referenced_data_file().as_deref(), Some(target.file_path()));
        let region = if target == eu { "eu" } else { "us" };
        assert!(
            delete.file_path().contains(&format!("/data/region={region}/")),
            "{} is in its partition's directory",
            delete.file_path()
        );
    }

    let new_rows = [("e3", "eu", 3), ("u4", "us", 14)];
    let new_files = write(&table, &rows(&new_rows)).await;
    let committed =
        commit_row_delta(&conn, &table, new_files, deletes, HashMap::new()).await.unwrap();
    let want = [
        ("e0", "eu", 0),
        ("e2", "eu", 2),
        ("u1", "us", 11),
        ("u2", "us", 12),
        ("e3", "eu", 3),
        ("u4", "us", 14),
    ];
    assert_eq!(scan(&committed).await, expected(&want));
    let snapshot = committed.metadata().current_snapshot().unwrap();
    assert_summary(
        snapshot,
        &[
            ("added-data-files", Some("2")),
            ("added-delete-files", Some("2")),
            ("added-position-deletes", Some("3")),
            ("total-data-files", Some("4")),
            ("total-delete-files", Some("2")),
            ("total-records", Some("9")),
            ("total-position-deletes", Some("3")),
            ("changed-partition-count", Some("2")),
        ],
    );
    assert_totals_match_manifests(&committed).await;
    assert_eq!(py_rows(&PyCatalog::sql(&warehouse.0), "shop.orders"), expected(&want));
}

// ---------------------------------------------------------------------------------------------
// Equality deletes

/// Equality deletes by `_id` for `keys`, written with iceberg-rust's equality delete writer.
async fn equality_deletes(table: &Table, keys: &[&str]) -> Vec<DataFile> {
    let schema = table.metadata().current_schema().clone();
    let key_id = schema.field_by_name("_id").unwrap().id;
    let config = EqualityDeleteWriterConfig::new(vec![key_id], schema.clone()).unwrap();
    let delete_schema = arrow_schema_to_schema(config.projected_arrow_schema_ref()).unwrap();
    let parquet = ParquetWriterBuilder::new(WriterProperties::default(), Arc::new(delete_schema));
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        parquet,
        table.file_io().clone(),
        DefaultLocationGenerator::new(table.metadata()).unwrap(),
        DefaultFileNameGenerator::new(
            format!("{}-eq", uuid::Uuid::now_v7()),
            None,
            DataFileFormat::Parquet,
        ),
    );
    let mut writer =
        EqualityDeleteFileWriterBuilder::new(rolling, config).build(None).await.unwrap();
    let rows: Vec<(&str, &str, i64)> = keys.iter().map(|k| (*k, "", 0)).collect();
    let full = Arc::new(schema_to_arrow_schema(&schema).unwrap());
    let batch = rows_with_schema(&rows, full);
    writer.write(batch).await.unwrap();
    writer.close().await.unwrap()
}

fn rows_with_schema(values: &[(&str, &str, i64)], schema: Arc<ArrowSchema>) -> RecordBatch {
    let batch = rows(values);
    RecordBatch::try_new(schema, batch.columns().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn equality_deletes_replace_older_rows_but_not_the_new_rows_of_the_same_commit() {
    let warehouse = Warehouse::new();
    let (conn, table, _) = seeded(&warehouse, false, &FIRST).await;
    let parent = table.metadata().current_snapshot().unwrap().clone();

    // Update a1 and a4 (delete key + insert new row), delete a9.
    let deletes = equality_deletes(&table, &["a1", "a4", "a9"]).await;
    assert_eq!(deletes.len(), 1);
    let new_rows = [("a1", "eu", 1001), ("a4", "eu", 1004)];
    let new_files = write(&table, &rows(&new_rows)).await;
    let committed =
        commit_row_delta(&conn, &table, new_files, deletes, props(&[("misql.checkpoint", "2")]))
            .await
            .unwrap();
    let mut want: Vec<(&str, &str, i64)> =
        FIRST.iter().copied().filter(|r| !["a1", "a4", "a9"].contains(&r.0)).collect();
    want.extend(new_rows);
    assert_eq!(scan(&committed).await, expected(&want));

    let snapshot = committed.metadata().current_snapshot().unwrap();
    assert_eq!(snapshot.sequence_number(), parent.sequence_number() + 1);
    assert_eq!(snapshot.summary().operation, Operation::Overwrite);
    assert_summary(
        snapshot,
        &[
            ("misql.checkpoint", Some("2")),
            ("added-delete-files", Some("1")),
            ("added-equality-delete-files", Some("1")),
            ("added-equality-deletes", Some("3")),
            ("added-records", Some("2")),
            ("total-records", Some("12")),
            ("total-delete-files", Some("1")),
            ("total-equality-deletes", Some("3")),
            ("total-position-deletes", Some("0")),
        ],
    );
    let (_, entries) = manifests(&committed).await;
    let delete_entry = entries.iter().find(|e| e.5 == DataContentType::EqualityDeletes).unwrap();
    assert_eq!(delete_entry.0, ManifestContentType::Deletes);
    assert_eq!(delete_entry.3, Some(snapshot.sequence_number()));
    assert_totals_match_manifests(&committed).await;

    // Deletes only: operation `delete`, and the totals keep adding up.
    let deletes = equality_deletes(&committed, &["a0"]).await;
    let committed =
        commit_row_delta(&conn, &committed, vec![], deletes, HashMap::new()).await.unwrap();
    want.retain(|r| r.0 != "a0");
    assert_eq!(scan(&committed).await, expected(&want));
    let snapshot = committed.metadata().current_snapshot().unwrap();
    assert_eq!(snapshot.summary().operation, Operation::Delete);
    assert_summary(
        snapshot,
        &[
            ("added-data-files", None),
            ("total-records", Some("12")),
            ("total-data-files", Some("2")),
            ("total-delete-files", Some("2")),
            ("total-equality-deletes", Some("4")),
        ],
    );
    assert_totals_match_manifests(&committed).await;
}

// ---------------------------------------------------------------------------------------------
// Special cases

#[tokio::test(flavor = "multi_thread")]
async fn data_only_is_an_append_properties_only_a_checkpoint_and_nothing_a_no_op() {
    let warehouse = Warehouse::new();
    let (conn, table, _) = seeded(&warehouse, false, &FIRST[..2]).await;
    let snapshots = table.metadata().snapshots().len();

    let files = write(&table, &rows(&[("c0", "eu", 1)])).await;
    let table = commit_row_delta(&conn, &table, files, vec![], HashMap::new()).await.unwrap();
    let snapshot = table.metadata().current_snapshot().unwrap();
    assert_eq!(snapshot.summary().operation, Operation::Append);
    assert_summary(snapshot, &[("total-records", Some("3")), ("total-delete-files", Some("0"))]);

    let table =
        commit_row_delta(&conn, &table, vec![], vec![], props(&[("misql.checkpoint", "9")]))
            .await
            .unwrap();
    let snapshot = table.metadata().current_snapshot().unwrap();
    assert_eq!(snapshot.summary().operation, Operation::Append);
    assert_summary(
        snapshot,
        &[("misql.checkpoint", Some("9")), ("added-records", None), ("total-records", Some("3"))],
    );
    let (files, _) = manifests(&table).await;
    assert_eq!(files.len(), 2, "the two data manifests carried over, no new one");

    let same = commit_row_delta(&conn, &table, vec![], vec![], HashMap::new()).await.unwrap();
    assert_eq!(same.metadata().snapshots().len(), snapshots + 2);
    assert_eq!(same.metadata_location(), table.metadata_location());
    assert_eq!(scan(&same).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn files_of_the_wrong_kind_or_rows_past_the_end_are_refused() {
    let warehouse = Warehouse::new();
    let (conn, table, first_files) = seeded(&warehouse, false, &FIRST[..3]).await;
    let error = write_position_deletes(&table, [(&first_files[0], 3)]).await.unwrap_err();
    assert!(error.to_string().contains("the file has 3 rows"), "{error}");

    let deletes = write_position_deletes(&table, [(&first_files[0], 0)]).await.unwrap();
    let error =
        commit_row_delta(&conn, &table, deletes.clone(), vec![], HashMap::new()).await.unwrap_err();
    assert!(error.to_string().contains("as a data file"), "{error}");
    let error = commit_row_delta(&conn, &table, vec![], first_files.clone(), HashMap::new())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("as a delete file"), "{error}");
    let error = write_position_deletes(&table, [(&deletes[0], 0)]).await.unwrap_err();
    assert!(error.to_string().contains("not a data file"), "{error}");
    // Nothing was committed.
    let reloaded = conn.catalog.load_table(table.identifier()).await.unwrap();
    assert_eq!(reloaded.metadata_location(), table.metadata_location());
}

// ---------------------------------------------------------------------------------------------
// Concurrent commits

/// The `.avro` files in the table's metadata directory.
fn metadata_avro_files(table: &Table) -> Vec<String> {
    let dir = local(&format!("{}/metadata", table.metadata().location()));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".avro"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_compare_and_swap_is_retried_on_top_of_the_other_commit() {
    let warehouse = Warehouse::new();
    let (conn, base, first_files) = seeded(&warehouse, false, &FIRST).await;
    let base_snapshot = base.metadata().current_snapshot().unwrap().clone();

    // Written against `base`...
    let deletes =
        write_position_deletes(&base, [(&first_files[0], 0), (&first_files[0], 9)]).await.unwrap();
    let mine = [("m0", "eu", 50)];
    let my_files = write(&base, &rows(&mine)).await;

    // ...while another writer appends.
    let theirs = [("t0", "us", 60), ("t1", "us", 61)];
    let their_files = write(&base, &rows(&theirs)).await;
    let after_theirs = append(&conn, &base, their_files, HashMap::new()).await.unwrap();
    let their_snapshot = after_theirs.metadata().current_snapshot().unwrap().clone();
    let files_before = metadata_avro_files(&after_theirs);

    // Committing from the stale `base` loses the swap once, then lands on top of theirs.
    let committed =
        commit_row_delta(&conn, &base, my_files, deletes, props(&[("misql.checkpoint", "m")]))
            .await
            .unwrap();
    let snapshot = committed.metadata().current_snapshot().unwrap().clone();
    assert_eq!(snapshot.parent_snapshot_id(), Some(their_snapshot.snapshot_id()));
    assert_eq!(snapshot.sequence_number(), base_snapshot.sequence_number() + 2);
    let mut want: Vec<(&str, &str, i64)> =
        FIRST.iter().copied().filter(|r| !["a0", "a9"].contains(&r.0)).collect();
    want.extend(mine);
    want.extend(theirs);
    assert_eq!(scan(&committed).await, expected(&want));
    assert_summary(
        &snapshot,
        &[
            ("misql.checkpoint", Some("m")),
            ("total-records", Some("13")),
            ("total-data-files", Some("3")),
            ("total-delete-files", Some("1")),
            ("total-position-deletes", Some("2")),
        ],
    );
    let (files, _) = manifests(&committed).await;
    assert_eq!(files.len(), 4, "both data manifests carried over, plus mine: {files:?}");

    // The refused attempt's manifests and manifest list were removed: exactly three new .avro
    // files (two manifests, one list).
    let files_after = metadata_avro_files(&committed);
    let new: Vec<&String> = files_after.iter().filter(|f| !files_before.contains(f)).collect();
    assert_eq!(new.len(), 3, "{new:?}");
    assert!(new.iter().all(|f| !f.contains("-a0-") && !f.contains("-0-")), "{new:?}");
    assert_eq!(py_rows(&PyCatalog::sql(&warehouse.0), "shop.orders"), expected(&want));

    // Twice from the same stale base: both survive.
    let one = write(&base, &rows(&[("x1", "eu", 1)])).await;
    let two = write(&base, &rows(&[("x2", "eu", 2)])).await;
    commit_row_delta(&conn, &base, one, vec![], HashMap::new()).await.unwrap();
    let last = commit_row_delta(&conn, &base, two, vec![], HashMap::new()).await.unwrap();
    assert_eq!(scan(&last).await.len(), want.len() + 2);
    assert_summary(last.metadata().current_snapshot().unwrap(), &[("total-records", Some("15"))]);
    assert_totals_match_manifests(&last).await;
}

// ---------------------------------------------------------------------------------------------
// REST catalog

on_each_rest_catalog!(the_rest_catalog_takes_row_deltas_too, rest_catalog_takes_row_deltas);

async fn rest_catalog_takes_row_deltas(catalog: RestCatalog) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let conn = connect(catalog.rest_uri(), &catalog.options()).await.unwrap();
    let namespace =
        format!("rowdelta_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let table = create_orders(&conn, &namespace, false).await;
    let first_files = write(&table, &rows(&FIRST)).await;
    let base = append(&conn, &table, first_files.clone(), HashMap::new()).await.unwrap();
    let parent = base.metadata().current_snapshot().unwrap().clone();

    let deletes =
        write_position_deletes(&base, [(&first_files[0], 3), (&first_files[0], 4)]).await.unwrap();
    let mine = [("r0", "eu", 70)];
    let committed = commit_row_delta(
        &conn,
        &base,
        write(&base, &rows(&mine)).await,
        deletes,
        props(&[("misql.checkpoint", "rest")]),
    )
    .await
    .unwrap();
    let mut want: Vec<(&str, &str, i64)> =
        FIRST.iter().copied().filter(|r| !["a3", "a4"].contains(&r.0)).collect();
    want.extend(mine);
    assert_eq!(scan(&committed).await, expected(&want));
    let snapshot = committed.metadata().current_snapshot().unwrap().clone();
    assert_eq!(snapshot.sequence_number(), parent.sequence_number() + 1);
    assert_summary(
        &snapshot,
        &[
            ("misql.checkpoint", Some("rest")),
            ("total-records", Some("11")),
            ("total-position-deletes", Some("2")),
        ],
    );
    let py = catalog.py();
    assert_eq!(py_rows(&py, &format!("{namespace}.orders")), expected(&want));
    let duck = duckdb_rows(&py, &format!("{namespace}.orders"), "_id");
    assert_eq!(duck, pyiceberg_rows(&py, &format!("{namespace}.orders"), "_id"), "DuckDB");

    // From the stale base again: the catalog refuses (409), the retry lands on top.
    let again = [("r1", "us", 71)];
    let last =
        commit_row_delta(&conn, &base, write(&base, &rows(&again)).await, vec![], HashMap::new())
            .await
            .unwrap();
    want.extend(again);
    assert_eq!(scan(&last).await, expected(&want));
    let top = last.metadata().current_snapshot().unwrap();
    assert_eq!(top.parent_snapshot_id(), Some(snapshot.snapshot_id()));
    assert_summary(top, &[("total-records", Some("12")), ("total-delete-files", Some("1"))]);
    assert_totals_match_manifests(&last).await;
}

/// Runs `code` with pyiceberg, `catalog` bound to misql's embedded catalog in `warehouse`.
fn pyiceberg_run(warehouse: &std::path::Path, code: &str) {
    let python = std::env::var_os("PYICEBERG_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
    });
    let script = format!(
        "from pyiceberg.catalog.sql import SqlCatalog\n\
         catalog = SqlCatalog({name:?}, uri={uri:?}, warehouse={wh:?})\n{code}",
        name = misql::lake::catalog::SQL_CATALOG_NAME,
        uri = format!("sqlite:///{}", warehouse.join("catalog.db").display()),
        wh = format!("file://{}", warehouse.display()),
    );
    let output = std::process::Command::new(&python)
        .args(["-c", &script])
        .env("PYICEBERG_HOME", std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "pyiceberg failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pyiceberg_commits_in_between_keep_the_totals_and_a_rewrite_stops_stale_position_deletes() {
    let warehouse = Warehouse::new();
    let (conn, table, first_files) = seeded(&warehouse, false, &FIRST).await;
    let deletes = write_position_deletes(&table, [(&first_files[0], 2)]).await.unwrap();
    let mine = [("b0", "us", 100)];
    let mine_files = write(&table, &rows(&mine)).await;
    let ours = commit_row_delta(&conn, &table, mine_files, deletes, HashMap::new()).await.unwrap();

    // pyiceberg deletes a5 by rewriting the first file (copy-on-write): a commit that removes a
    // data file, on top of our summary's totals.
    pyiceberg_run(
        &warehouse.0,
        "table = catalog.load_table('shop.orders')\ntable.delete(\"_id == 'a5'\")",
    );
    let after_py = conn.catalog.load_table(ours.identifier()).await.unwrap();
    let py_snapshot = after_py.metadata().current_snapshot().unwrap().clone();
    assert_ne!(py_snapshot.snapshot_id(), ours.metadata().current_snapshot_id().unwrap());
    assert_summary(&py_snapshot, &[("deleted-data-files", Some("1"))]);
    let mut want: Vec<(&str, &str, i64)> =
        FIRST.iter().copied().filter(|r| !["a2", "a5"].contains(&r.0)).collect();
    want.extend(mine);
    assert_eq!(scan(&after_py).await, expected(&want));

    // Position deletes written against the old file, committed from the stale table: refused.
    let stale_deletes = write_position_deletes(&ours, [(&first_files[0], 3)]).await.unwrap();
    let error =
        commit_row_delta(&conn, &ours, vec![], stale_deletes, HashMap::new()).await.unwrap_err();
    assert!(error.to_string().contains("removed 1 data files"), "{error}");
    let reloaded = conn.catalog.load_table(ours.identifier()).await.unwrap();
    assert_eq!(reloaded.metadata_location(), after_py.metadata_location());

    // New rows from the stale table are fine, and the totals go on from pyiceberg's.
    let more = [("c0", "eu", 200)];
    let files = write(&ours, &rows(&more)).await;
    let last = commit_row_delta(&conn, &ours, files, vec![], HashMap::new()).await.unwrap();
    want.extend(more);
    assert_eq!(scan(&last).await, expected(&want));
    let snapshot = last.metadata().current_snapshot().unwrap();
    assert_eq!(snapshot.parent_snapshot_id(), Some(py_snapshot.snapshot_id()));
    let py_records: u64 = summary(&py_snapshot, "total-records").unwrap().parse().unwrap();
    assert_summary(snapshot, &[("total-records", Some(&(py_records + 1).to_string()))]);
    assert_totals_match_manifests(&last).await;
    assert_eq!(py_rows(&PyCatalog::sql(&warehouse.0), "shop.orders"), expected(&want));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_file_other_than_the_warehouse_catalog_db_is_refused_with_a_hint() {
    let warehouse = Warehouse::new();
    let uri = format!("sqlite://{}/lake.db", warehouse.0.display());
    let conn = connect(&uri, &[]).await.unwrap();
    let table = create_orders(&conn, "shop", false).await;
    let files = write(&table, &rows(&FIRST[..1])).await;
    let error = commit_row_delta(&conn, &table, files, vec![], HashMap::new()).await.unwrap_err();
    assert!(error.to_string().contains("catalog.db`, which does not exist"), "{error}");
    assert!(error.hint().is_some_and(|h| h.contains("warehouse directory")), "{:?}", error.hint());
    let reloaded = conn.catalog.load_table(table.identifier()).await.unwrap();
    assert!(reloaded.metadata().current_snapshot().is_none());
}

// ---------------------------------------------------------------------------------------------
// Compaction: a `replace` snapshot

#[tokio::test(flavor = "multi_thread")]
async fn a_compaction_applies_equality_and_position_deletes_in_one_replace_snapshot() {
    use misql::lake::maintenance::{OptimizeOptions, optimize};
    let warehouse = Warehouse::new();
    let (conn, table, first_files) = seeded(&warehouse, false, &FIRST).await;
    // Equality deletes for a1 and a9 with a new a1; a position delete for a2; one more append.
    let deletes = equality_deletes(&table, &["a1", "a9"]).await;
    let new_files = write(&table, &rows(&[("a1", "eu", 1001)])).await;
    let table = commit_row_delta(&conn, &table, new_files, deletes, HashMap::new()).await.unwrap();
    let positions = write_position_deletes(&table, [(&first_files[0], 2)]).await.unwrap();
    let later = write(&table, &rows(&[("b0", "us", 10), ("b1", "us", 11)])).await;
    let checkpoint = props(&[("misql.checkpoint", "7"), ("other.key", "x")]);
    let table = commit_row_delta(&conn, &table, later, positions, checkpoint).await.unwrap();
    let mut want: Vec<(&str, &str, i64)> =
        FIRST.iter().copied().filter(|r| !["a1", "a2", "a9"].contains(&r.0)).collect();
    want.extend([("a1", "eu", 1001), ("b0", "us", 10), ("b1", "us", 11)]);
    assert_eq!(scan(&table).await, expected(&want));

    let (compacted, report) = optimize(&conn, &table, &OptimizeOptions::default()).await.unwrap();
    assert_eq!(scan(&compacted).await, expected(&want), "the same rows, deletes applied");
    assert_eq!(report.delete_files_removed, 2, "{report:?}");
    assert_eq!(report.deletes_applied, 3, "{report:?}");
    assert_eq!((report.partitions, report.data_files_removed), (1, 3), "{report:?}");
    let snapshot = compacted.metadata().current_snapshot().unwrap();
    assert_eq!(snapshot.summary().operation, Operation::Replace);
    assert_eq!(summary(snapshot, "misql.checkpoint").as_deref(), Some("7"), "checkpoint carried");
    assert_eq!(summary(snapshot, "other.key"), None, "only misql.* keys are carried");
    assert_totals_match_manifests(&compacted).await;
    let (manifest_files, entries) = manifests(&compacted).await;
    assert!(manifest_files.len() <= 3, "manifests merged: {manifest_files:?}");
    let live: Vec<_> = entries.iter().filter(|e| e.1 != ManifestStatus::Deleted).collect();
    assert!(live.iter().all(|e| e.5 == DataContentType::Data), "no delete file is left: {live:?}");
    assert_eq!(live.len(), 1, "one file for the partition: {live:?}");
    let catalog = PyCatalog::sql(&warehouse.0);
    assert_eq!(py_rows(&catalog, "shop.orders"), expected(&want));

    // Nothing left to do: no commit.
    let (again, report) = optimize(&conn, &compacted, &OptimizeOptions::default()).await.unwrap();
    assert!(!report.committed, "{report:?}");
    assert_eq!(again.metadata().current_snapshot_id(), compacted.metadata().current_snapshot_id());
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_files_past_the_log_are_deleted_when_the_table_asks() {
    let warehouse = Warehouse::new();
    let conn = connect(&warehouse.0.display().to_string(), &[]).await.unwrap();
    let schema = iceberg_schema(&orders_schema(), "_id").unwrap();
    let ident = TableIdent::new(NamespaceIdent::new("shop".to_string()), "orders".into());
    let properties = HashMap::from([
        ("write.metadata.delete-after-commit.enabled".to_string(), "true".to_string()),
        ("write.metadata.previous-versions-max".to_string(), "2".to_string()),
    ]);
    let mut table =
        create_table(conn.catalog.as_ref(), &ident, schema, &[], properties).await.unwrap();
    for i in 0..6 {
        let files = write(&table, &rows(&[(&format!("k{i}"), "eu", i)])).await;
        table = append(&conn, &table, files, HashMap::new()).await.unwrap();
    }
    let metadata_dir = warehouse.0.join("shop/orders/metadata");
    let mut on_disk: Vec<String> = std::fs::read_dir(&metadata_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".metadata.json"))
        .collect();
    on_disk.sort();
    assert_eq!(table.metadata().metadata_log().len(), 2);
    assert_eq!(on_disk.len(), 3, "the current metadata file and the 2 logged: {on_disk:?}");
    assert_eq!(scan(&table).await.len(), 6);
}
