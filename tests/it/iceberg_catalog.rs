//! Connecting to Iceberg catalogs from ATTACH uris and options: the embedded SQL catalog and the
//! REST catalogs of seaweedfs and rustberg, each checked by writing a table with iceberg-rust and
//! reading it back with pyiceberg; and the errors a wrong ATTACH gets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{
    ArrayRef, Decimal128Array, ListArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field};
use iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
use iceberg::spec::{
    DataFileFormat, ListType, NestedField, PrimitiveType, Schema, Transform, Type,
    UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use misql::lake::catalog::{CatalogKind, connect};
use parquet::file::properties::WriterProperties;
use serde_json::json;

use crate::support::pyiceberg::{PyCatalog, pyiceberg_rows, pyiceberg_rows_timed};
use crate::support::rest_catalog::{RestCatalog, on_each_rest_catalog};
use crate::support::seaweed::seaweed;

/// A fresh directory under the system temp dir, not created yet.
fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("misql-it-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// A namespace name no other test (or earlier run against the same server) uses.
fn unique_namespace(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `_id` string (identifier), `total` decimal(18,2), `ts` timestamptz, `tags` list<string>,
/// partitioned by day(ts).
async fn create_orders(catalog: &dyn Catalog, namespace: &str) -> Table {
    let namespace = NamespaceIdent::new(namespace.to_string());
    catalog.create_namespace(&namespace, HashMap::new()).await.expect("create namespace");
    let schema = Schema::builder()
        .with_fields([
            NestedField::required(1, "_id", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::optional(
                2,
                "total",
                Type::Primitive(PrimitiveType::Decimal { precision: 18, scale: 2 }),
            )
            .into(),
            NestedField::required(3, "ts", Type::Primitive(PrimitiveType::Timestamptz)).into(),
            NestedField::optional(
                4,
                "tags",
                Type::List(ListType::new(
                    NestedField::list_element(5, Type::Primitive(PrimitiveType::String), false)
                        .into(),
                )),
            )
            .into(),
        ])
        .with_identifier_field_ids([1])
        .build()
        .expect("schema");
    let spec = UnboundPartitionSpec::builder()
        .add_partition_field(3, "ts_day", Transform::Day)
        .expect("partition field")
        .build();
    let creation = TableCreation::builder()
        .name("orders".to_string())
        .schema(schema)
        .partition_spec(spec)
        .build();
    catalog.create_table(&namespace, creation).await.expect("create table")
}

/// Three rows over two days; returns what pyiceberg should print for them.
fn orders_batch(table: &Table) -> (RecordBatch, Vec<serde_json::Value>) {
    // create_table renumbers field ids: build against the created table's schema.
    let target =
        Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).expect("arrow schema"));
    let DataType::List(element) = target.field_with_name("tags").expect("tags").data_type().clone()
    else {
        panic!("tags is not a list");
    };
    let ts =
        |text: &str| utc_micros(text).unwrap_or_else(|| panic!("bad timestamp literal {text}"));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["a1", "b2", "c3"])),
        Arc::new(
            Decimal128Array::from(vec![Some(1250), None, Some(-99_999_999_999_999_999)])
                .with_precision_and_scale(18, 2)
                .expect("decimal"),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(vec![
                ts("2024-05-01T10:00:00.123456"),
                ts("2024-05-01T23:59:59"),
                ts("2024-05-02T00:00:00"),
            ])
            .with_timezone("+00:00"),
        ),
        Arc::new(ListArray::new(
            Arc::clone(&element) as Arc<Field>,
            OffsetBuffer::from_lengths([2, 0, 1]),
            Arc::new(StringArray::from(vec!["new", "vip", "x"])),
            Some(vec![true, false, true].into()),
        )),
    ];
    let batch = RecordBatch::try_new(target, columns).expect("batch");
    let expected = vec![
        json!({"_id": "a1", "total": "12.50", "ts": "2024-05-01T10:00:00.123456+00:00", "tags": ["new", "vip"]}),
        json!({"_id": "b2", "total": null, "ts": "2024-05-01T23:59:59+00:00", "tags": null}),
        json!({"_id": "c3", "total": "-999999999999999.99", "ts": "2024-05-02T00:00:00+00:00", "tags": ["x"]}),
    ];
    (batch, expected)
}

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.ffffff]` (UTC).
fn utc_micros(text: &str) -> Option<i64> {
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, mi, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let micros: i64 = format!("{frac:0<6}").parse().ok()?;
    // days from civil (Howard Hinnant's algorithm)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60 * 1_000_000 + s * 1_000_000 + micros)
}

/// Writes `batch` with iceberg-rust's writer stack (Parquet, rolling, data files, fanout by
/// partition) and commits it with a fast append.
async fn append(catalog: &dyn Catalog, table: &Table, batch: RecordBatch) -> Table {
    let metadata = table.metadata();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    let parquet = ParquetWriterBuilder::new(WriterProperties::builder().build(), schema.clone());
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        parquet,
        table.file_io().clone(),
        DefaultLocationGenerator::new(metadata).expect("location generator"),
        DefaultFileNameGenerator::new(
            uuid::Uuid::now_v7().to_string(),
            None,
            DataFileFormat::Parquet,
        ),
    );
    let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)
        .expect("partition splitter");
    let mut writer = FanoutWriter::new(DataFileWriterBuilder::new(rolling));
    for (key, part) in splitter.split(&batch).expect("split by partition") {
        writer.write(key, part).await.expect("write data file");
    }
    let files = writer.close().await.expect("close data files");
    assert_eq!(files.len(), 2, "two days, two data files");
    let tx = Transaction::new(table);
    let tx = tx.fast_append().add_data_files(files).apply(tx).expect("fast append");
    tx.commit(catalog).await.expect("commit")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embedded_catalog_in_a_new_directory_holds_a_table_that_pyiceberg_reads_back() {
    let dir = temp_path("embedded");
    let connection = connect(dir.to_str().expect("utf-8 temp dir"), &[]).await.expect("connect");
    let warehouse = std::fs::canonicalize(&dir).expect("the warehouse directory was created");
    assert_eq!(connection.kind, CatalogKind::Sql { warehouse: warehouse.clone() });
    assert!(warehouse.join("catalog.db").is_file());
    assert_eq!(journal_mode(&warehouse.join("catalog.db")), 2, "catalog.db is in WAL mode");

    let table = create_orders(connection.catalog.as_ref(), "shop").await;
    assert!(
        table.metadata().location().starts_with(&format!("file://{}/", warehouse.display())),
        "table location {} is under file://<warehouse>",
        table.metadata().location()
    );
    let (batch, expected) = orders_batch(&table);
    append(connection.catalog.as_ref(), &table, batch).await;

    let (rows, took) = pyiceberg_rows_timed(&PyCatalog::sql(&warehouse), "shop.orders", "_id");
    eprintln!("pyiceberg read of the embedded catalog took {took:?}");
    assert_eq!(rows, expected);

    // A second connect (a file:// URI this time) sees the same table.
    let uri = format!("file://{}", warehouse.display());
    let again = connect(&uri, &[]).await.expect("connect again");
    let ident = TableIdent::from_strs(["shop", "orders"]).expect("ident");
    let reloaded = again.catalog.load_table(&ident).await.expect("load table");
    assert!(reloaded.metadata().current_snapshot().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_uri_names_the_catalog_file_and_its_directory_is_the_warehouse() {
    let dir = temp_path("sqlite-uri");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let dir = std::fs::canonicalize(&dir).expect("canonical");
    let uri = format!("sqlite://{}/lake.db", dir.display());
    let connection = connect(&uri, &[]).await.expect("connect");
    assert_eq!(connection.kind, CatalogKind::Sql { warehouse: dir.clone() });
    assert!(dir.join("lake.db").is_file(), "the named SQLite file holds the catalog");
    let namespace = NamespaceIdent::new("ns".into());
    connection.catalog.create_namespace(&namespace, HashMap::new()).await.expect("namespace");
    assert_eq!(
        connection.catalog.list_namespaces(None).await.expect("list"),
        vec![namespace.clone()]
    );

    // A `warehouse` option puts the data elsewhere; the catalog file stays where the URI says.
    let data = dir.join("data");
    let options = [("warehouse".to_string(), data.display().to_string())];
    let connection = connect(&uri, &options).await.expect("connect with warehouse");
    assert_eq!(connection.kind, CatalogKind::Sql { warehouse: data.clone() });
    assert!(connection.catalog.namespace_exists(&namespace).await.expect("exists"));
    let _ = std::fs::remove_dir_all(&dir);
}

on_each_rest_catalog!(
    a_rest_catalog_holds_a_table_that_pyiceberg_reads_back,
    rest_catalog_holds_a_table
);

async fn rest_catalog_holds_a_table(catalog: RestCatalog) {
    match catalog {
        RestCatalog::Seaweed => {
            let server = seaweed();
            eprintln!(
                "seaweedfs started in {:?} (data and log in {})",
                server.started_in,
                server.dir.display()
            );
        }
        RestCatalog::Rustberg => {
            let server = crate::support::rustberg::rustberg();
            eprintln!(
                "rustberg started in {:?} (catalog and log in {})",
                server.started_in,
                server.dir.display()
            );
        }
    }
    let connection = connect(catalog.rest_uri(), &catalog.options()).await.expect("connect");
    assert_eq!(connection.kind, CatalogKind::Rest { uri: catalog.rest_uri().to_string() });

    let namespace = unique_namespace("shop");
    let table = create_orders(connection.catalog.as_ref(), &namespace).await;
    let warehouse = format!("{}/", catalog.warehouse());
    assert!(
        table.metadata().location().starts_with(&warehouse),
        "table location {} is in the warehouse {warehouse}",
        table.metadata().location()
    );
    let (batch, expected) = orders_batch(&table);
    append(connection.catalog.as_ref(), &table, batch).await;

    let py = catalog.py();
    let (rows, took) = pyiceberg_rows_timed(&py, &format!("{namespace}.orders"), "_id");
    eprintln!("pyiceberg read of the REST catalog took {took:?}");
    assert_eq!(rows, expected);
    assert_eq!(pyiceberg_rows(&py, &format!("{namespace}.orders"), "_id").len(), 3);
}

on_each_rest_catalog!(
    the_attach_statement_for_a_rest_catalog_parses_to_options_that_connect,
    attach_statement_connects
);

async fn attach_statement_connects(server: RestCatalog) {
    let sql = server.attach_sql("lake");
    let parsed = misql::sql::parse(&sql).expect("the ATTACH parses");
    let [parsed] = parsed.as_slice() else { panic!("one statement: {parsed:?}") };
    let misql::sql::Statement::Attach(attach) = &parsed.statement else {
        panic!("an ATTACH: {parsed:?}")
    };
    assert_eq!(attach.kind, misql::sql::AttachKind::Iceberg);
    assert_eq!(attach.options, server.options());
    let connection = connect(&attach.uri, &attach.options).await.expect("connect");
    connection.catalog.list_namespaces(None).await.expect("list namespaces");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_rest_catalog_fails_at_attach_saying_it_cannot_be_reached() {
    let options = [("catalog".to_string(), "rest".to_string())];
    let error = connect("http://127.0.0.1:9", &options).await.expect_err("nothing listens on :9");
    let message = error.to_string();
    assert!(
        message.starts_with("cannot reach the Iceberg REST catalog at http://127.0.0.1:9: "),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "the cause is named: {message}");
    assert!(error.hint().is_some_and(|h| h.contains("running")), "{:?}", error.hint());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_uri_without_catalog_rest_gets_a_hint_to_add_it() {
    let error = connect("http://localhost:8181", &[]).await.expect_err("not a directory");
    assert!(error.to_string().contains("looks like a REST catalog"), "{error}");
    assert!(error.hint().is_some_and(|h| h.contains("CATALOG 'rest'")), "{:?}", error.hint());
    assert!(!Path::new("http:").exists(), "no directory was created for the URI");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warehouse_path_that_is_a_file_is_refused_with_a_clear_error() {
    let file = temp_path("file-not-dir");
    std::fs::write(&file, b"not a directory").expect("write file");
    let error = connect(file.to_str().expect("utf-8"), &[]).await.expect_err("a file");
    assert_eq!(
        error.to_string(),
        format!("the Iceberg warehouse `{}` is a file, not a directory", file.display())
    );
    assert!(error.hint().is_some_and(|h| h.contains("directory")), "{:?}", error.hint());
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_only_options_on_an_embedded_catalog_are_refused() {
    let dir = temp_path("rest-only");
    let options = [("credential".to_string(), "a:b".to_string())];
    let error = connect(dir.to_str().expect("utf-8"), &options).await.expect_err("refused");
    assert!(error.to_string().contains("option `credential` applies to a REST catalog"), "{error}");
    assert!(!dir.exists(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn uris_an_embedded_catalog_cannot_use_are_refused_with_what_to_write_instead() {
    let cases = [
        ("file://relative/dir", "file:///absolute/dir"),
        ("s3://bucket/warehouse", "CATALOG 'rest'"),
        ("mongodb://localhost:27017", "TYPE mongodb"),
        ("", "ATTACH './warehouse'"),
    ];
    for (uri, hint) in cases {
        let error = connect(uri, &[]).await.expect_err(uri);
        assert!(
            error.hint().is_some_and(|h| h.contains(hint)),
            "{uri}: {error} / hint {:?} should mention {hint}",
            error.hint()
        );
    }
}

/// SeaweedFS only: rustberg runs in the tests without authentication, so it has no credential to
/// refuse.
#[tokio::test(flavor = "multi_thread")]
async fn a_rest_catalog_that_refuses_the_credential_or_warehouse_says_what_to_check() {
    let server = seaweed();
    let with = |key: &str, value: &str| {
        let mut options = server.options();
        options.iter_mut().filter(|(k, _)| k == key).for_each(|(_, v)| *v = value.to_string());
        options
    };
    let error = connect(&server.rest_uri, &with("credential", "misqltest:wrong"))
        .await
        .expect_err("a wrong secret");
    assert!(error.to_string().starts_with("the Iceberg REST catalog at http://"), "{error}");
    assert!(error.to_string().contains("refused the credential: 401"), "{error}");
    assert!(error.hint().is_some_and(|h| h.contains("credential")), "{error} / {:?}", error.hint());

    let error = connect(&server.rest_uri, &with("warehouse", "s3://no-such-bucket"))
        .await
        .expect_err("an unknown table bucket");
    assert!(error.to_string().contains("no-such-bucket"), "{error}");
    assert!(error.hint().is_some_and(|h| h.contains("warehouse")), "{error} / {:?}", error.hint());
}

/// rustberg serves one warehouse; an ATTACH naming another is refused at once (HTTP 400 to
/// `GET /v1/config?warehouse=…`), and misql says which warehouse to check.
#[tokio::test(flavor = "multi_thread")]
async fn a_warehouse_rustberg_does_not_serve_is_refused_at_attach_naming_it() {
    let catalog = RestCatalog::Rustberg;
    let mut options = catalog.options();
    options
        .iter_mut()
        .filter(|(k, _)| k == "warehouse")
        .for_each(|(_, v)| *v = "s3://no-such-bucket".to_string());
    let error = connect(catalog.rest_uri(), &options).await.expect_err("another warehouse");
    assert!(error.to_string().contains("no-such-bucket"), "{error}");
    assert!(error.hint().is_some_and(|h| h.contains("warehouse")), "{error} / {:?}", error.hint());
    // One sentence: the status and what the catalog said, not the answer's headers.
    assert!(error.to_string().contains(": 400 ("), "{error}");
    assert!(!error.to_string().contains("headers"), "{error}");
}

/// SQLite's header bytes 18 and 19 are 2 in WAL mode, 1 in rollback-journal mode.
fn journal_mode(db: &Path) -> u8 {
    let bytes = std::fs::read(db).expect("read catalog.db");
    assert_eq!(bytes[18], bytes[19]);
    bytes[18]
}
