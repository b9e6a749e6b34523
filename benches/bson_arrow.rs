//! Throughput of the BSON source's hot paths on ~1 KB order documents held in memory:
//! `BatchBuilder::append` (all columns, and a three-column projection) and schema inference.
//!
//! `cargo bench --bench bson_arrow -- --warm-up-time 1 --measurement-time 5`; figures are
//! documents per second on one core.

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use arrow::datatypes::Schema;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use misql::mongo::bson_arrow::BatchBuilder;
use misql::mongo::infer::Inference;

const DOCS: usize = 10_000;

#[path = "support/orders.rs"]
mod orders;

use orders::orders;

fn bench(c: &mut Criterion) {
    let docs = orders(DOCS);
    let bytes: usize = docs.iter().map(|d| d.as_bytes().len()).sum();
    eprintln!("{DOCS} order documents, {} bytes on average", bytes / DOCS);

    let mut inference = Inference::new();
    for doc in &docs {
        inference.observe(doc).unwrap();
    }
    let schema = inference.schema();
    let projection = Arc::new(schema.project(&[0, 1, schema.index_of("total").unwrap()]).unwrap());
    let projection: Arc<Schema> = projection;

    let mut group = c.benchmark_group("bson_arrow");
    group.throughput(Throughput::Elements(DOCS as u64));
    group.bench_function("append_all_columns", |b| {
        let mut builder = BatchBuilder::new(schema.clone());
        b.iter(|| {
            for doc in &docs {
                builder.append(doc).unwrap();
            }
            black_box(builder.finish().unwrap())
        })
    });
    group.bench_function("append_projection_3_columns", |b| {
        let mut builder = BatchBuilder::new(projection.clone());
        b.iter(|| {
            for doc in &docs {
                builder.append(doc).unwrap();
            }
            black_box(builder.finish().unwrap())
        })
    });
    group.bench_function("infer_observe", |b| {
        b.iter(|| {
            let mut inference = Inference::new();
            for doc in &docs {
                inference.observe(doc).unwrap();
            }
            black_box(inference.schema())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
