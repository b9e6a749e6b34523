//! Throughput of the Iceberg write path: 100k order-like rows (string `_id`, string `status`,
//! decimal(18,2), timestamptz, a struct) conformed, written as zstd Parquet through
//! `TableWriter` and committed with `commit`, into an embedded SQL catalog in a temp dir.
//! Unpartitioned, and partitioned by `day(created_at)`.
//!
//! `cargo bench --bench iceberg_write -- --warm-up-time 1 --measurement-time 10`; figures are
//! rows per second (criterion's "elements").

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Array, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iceberg::TableIdent;
use iceberg::spec::Transform;
use misql::lake::catalog::connect;
use misql::lake::commit::{Change, commit};
use misql::lake::schema::iceberg_schema;
use misql::lake::table::create_table;
use misql::lake::writer::{TableWriter, WriteOptions};

const ROWS: usize = 100_000;
const BATCH: usize = 10_000;

const STATUSES: [&str; 4] = ["new", "paid", "shipped", "cancelled"];
const CITIES: [&str; 5] = ["Oslo", "Lyon", "Porto", "Kraków", "Valparaíso"];

fn customer_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("city", DataType::Utf8, true),
    ])
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("_id", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, true),
        Field::new("total", DataType::Decimal128(18, 2), true),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("customer", DataType::Struct(customer_fields()), true),
    ]))
}

/// Rows `start..start + len` as the BSON source would hand them over (tz "UTC").
fn orders(schema: &Arc<Schema>, start: usize, len: usize) -> RecordBatch {
    let range = start..start + len;
    let ids: StringArray = range.clone().map(|i| Some(format!("{i:024x}"))).collect();
    let status: StringArray = range.clone().map(|i| Some(STATUSES[i % 4])).collect();
    let total =
        Decimal128Array::from_iter_values(range.clone().map(|i| ((i * 7919) % 100_000) as i128))
            .with_precision_and_scale(18, 2)
            .unwrap();
    // A minute apart, so 100k rows span ~70 days.
    let created = TimestampMicrosecondArray::from_iter_values(
        range.clone().map(|i| 1_700_000_000_000_000 + i as i64 * 60_000_000),
    )
    .with_timezone("UTC");
    let names: StringArray =
        range.clone().map(|i| Some(format!("Customer {}", i % 50_000))).collect();
    let cities: StringArray = range.map(|i| Some(CITIES[i % 5])).collect();
    let customer =
        StructArray::try_new(customer_fields(), vec![Arc::new(names), Arc::new(cities)], None)
            .unwrap();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(status),
        Arc::new(total),
        Arc::new(created),
        Arc::new(customer),
    ];
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("misql-bench-iceberg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conn = runtime.block_on(connect(dir.to_str().unwrap(), &[])).unwrap();
    let catalog = conn.catalog.clone();
    let schema = schema();
    let batches: Vec<RecordBatch> =
        (0..ROWS).step_by(BATCH).map(|s| orders(&schema, s, BATCH)).collect();
    let iceberg = iceberg_schema(&schema, "_id").unwrap();

    let mut group = c.benchmark_group("iceberg_write");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    for (name, partition) in
        [("unpartitioned", vec![]), ("by_day", vec![("created_at".to_string(), Transform::Day)])]
    {
        let ident = TableIdent::from_strs(["bench", name]).unwrap();
        let mut table = runtime
            .block_on(create_table(
                catalog.as_ref(),
                &ident,
                iceberg.clone(),
                &partition,
                HashMap::new(),
            ))
            .unwrap();
        group.bench_function(format!("write_and_commit_100k_{name}"), |b| {
            b.iter(|| {
                table = runtime.block_on(async {
                    let mut writer =
                        TableWriter::new(&table, &WriteOptions::from_table(&table)).unwrap();
                    for batch in &batches {
                        writer.write(batch).await.unwrap();
                    }
                    let written = writer.finish().await.unwrap();
                    let files = written.into_iter().map(|w| w.file).collect();
                    let properties =
                        HashMap::from([("misql.checkpoint".to_string(), "bench".to_string())]);
                    let change = Change::append(files).with_properties(properties);
                    commit(&conn, &table, change).await.unwrap()
                });
                let summary = &table.metadata().current_snapshot().unwrap().summary();
                assert_eq!(summary.additional_properties["added-records"], ROWS.to_string());
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
