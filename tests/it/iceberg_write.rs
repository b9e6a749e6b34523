//! Writing to Iceberg through a real embedded SQL catalog (SQLite + local files in a temp dir):
//! the Arrow → Iceberg schema mapping, the compatibility check, conforming batches by name,
//! partitioned and rolling writes read back with iceberg-rust's own scan, and commits that carry
//! properties in the snapshot summary.

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;

use crate::support::commit::append;
use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray,
    Float64Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, StringViewArray,
    StructArray, TimestampMicrosecondArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema as ArrowSchema, TimeUnit};
use futures::TryStreamExt;
use iceberg::spec::{Literal, PrimitiveLiteral, Schema, Transform, Type};
use iceberg::table::Table;
use iceberg::{Catalog, TableIdent};
use misql::Error;
use misql::lake::catalog::{IcebergConnection, connect};
use misql::lake::lineage::snapshot_property;
use misql::lake::schema::{check_compatible, iceberg_schema};
use misql::lake::table::create_table;
use misql::lake::writer::{TableWriter, WriteOptions};

use crate::support::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers: a temp warehouse with an embedded SQL catalog, table creation, reading back.

/// An embedded SQL catalog over a temp dir.
struct Lake {
    catalog: Arc<dyn Catalog>,
    conn: IcebergConnection,
    _dir: TempDir,
}

async fn lake() -> Lake {
    let dir = TempDir::new();
    let conn = connect(dir.0.to_str().unwrap(), &[]).await.expect("embedded catalog");
    Lake { catalog: conn.catalog.clone(), conn, _dir: dir }
}

fn ident(name: &str) -> TableIdent {
    TableIdent::from_strs(["shop", name]).unwrap()
}

fn utc() -> Option<Arc<str>> {
    Some("UTC".into())
}

impl Lake {
    /// Creates `shop.<name>` for `arrow` keyed by `_id`.
    async fn create(
        &self,
        name: &str,
        arrow: &ArrowSchema,
        partition: &[(&str, Transform)],
        properties: &[(&str, &str)],
    ) -> Table {
        let schema = iceberg_schema(arrow, "_id").unwrap();
        let partition: Vec<(String, Transform)> =
            partition.iter().map(|(c, t)| (c.to_string(), *t)).collect();
        let properties = properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        create_table(self.catalog.as_ref(), &ident(name), schema, &partition, properties)
            .await
            .unwrap()
    }

    /// Writes `batches` with the table's own options and commits them with `properties`.
    async fn write(
        &self,
        table: &Table,
        batches: &[RecordBatch],
        properties: &[(&str, &str)],
    ) -> Table {
        let mut writer = TableWriter::new(table, &WriteOptions::from_table(table)).unwrap();
        for batch in batches {
            writer.write(batch).await.unwrap();
        }
        let files = data_files(writer).await;
        let properties = properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        append(&self.conn, table, files, properties).await.unwrap()
    }
}

/// Closes `writer` and returns the data files it wrote.
async fn data_files(writer: TableWriter) -> Vec<iceberg::spec::DataFile> {
    writer.finish().await.unwrap().into_iter().map(|written| written.file).collect()
}

/// Every row of the table, through iceberg-rust's scan, sorted by `_id`.
async fn read_back(table: &Table) -> RecordBatch {
    let batches: Vec<RecordBatch> =
        table.scan().build().unwrap().to_arrow().await.unwrap().try_collect().await.unwrap();
    let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| {
        Arc::new(iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema()).unwrap())
    });
    let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
    let ids = all.column_by_name("_id").unwrap();
    let order = arrow::compute::sort_to_indices(ids, None, None).unwrap();
    arrow::compute::take_record_batch(&all, &order).unwrap()
}

fn pretty(batch: &RecordBatch) -> String {
    arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch)).unwrap().to_string()
}

fn strings(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

fn error_text(error: &Error) -> String {
    match error.hint() {
        Some(hint) => format!("{error}\nhint: {hint}"),
        None => error.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Schema mapping and compatibility.

/// An Iceberg schema as one line per field, nested fields indented.
fn describe_schema(schema: &Schema) -> String {
    fn field(out: &mut String, depth: usize, f: &iceberg::spec::NestedField, key: bool) {
        let kind = match f.field_type.as_ref() {
            Type::Struct(_) => "struct".to_string(),
            Type::List(_) => "list".to_string(),
            other => misql::lake::schema::type_name(other),
        };
        out.push_str(&format!(
            "{}{} {} {} {}{}\n",
            "  ".repeat(depth),
            f.id,
            f.name,
            kind,
            if f.required { "required" } else { "optional" },
            if key { " (identifier)" } else { "" }
        ));
        match f.field_type.as_ref() {
            Type::Struct(s) => s.fields().iter().for_each(|c| field(out, depth + 1, c, false)),
            Type::List(l) => field(out, depth + 1, &l.element_field, false),
            _ => {}
        }
    }
    let ids: Vec<i32> = schema.identifier_field_ids().collect();
    let mut out = String::new();
    for f in schema.as_struct().fields() {
        field(&mut out, 0, f, ids.contains(&f.id));
    }
    out
}

fn every_type() -> ArrowSchema {
    let address = Fields::from(vec![
        Field::new("city", DataType::Utf8, true),
        Field::new("zip", DataType::Utf8, true),
    ]);
    let customer = Fields::from(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("address", DataType::Struct(address), true),
    ]);
    let item = Fields::from(vec![
        Field::new("sku", DataType::Utf8, true),
        Field::new("qty", DataType::Int32, true),
    ]);
    ArrowSchema::new(vec![
        Field::new("_id", DataType::Utf8, true),
        Field::new("count", DataType::Int32, true),
        Field::new("big", DataType::Int64, true),
        Field::new("ratio", DataType::Float64, true),
        Field::new("paid", DataType::Boolean, true),
        Field::new("total", DataType::Decimal128(18, 2), true),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, utc()), true),
        Field::new("local_time", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("day", DataType::Date32, true),
        Field::new("blob", DataType::Binary, true),
        Field::new("uuid", DataType::FixedSizeBinary(16), true),
        Field::new("hash", DataType::FixedSizeBinary(8), true),
        Field::new("view", DataType::Utf8View, true),
        Field::new("large", DataType::LargeUtf8, true),
        Field::new_list("tags", Field::new_list_field(DataType::Utf8, true), true),
        Field::new("customer", DataType::Struct(customer), true),
        Field::new_list("items", Field::new_list_field(DataType::Struct(item), true), true),
    ])
}

#[test]
fn every_arrow_type_maps_to_its_iceberg_type_with_the_key_required() {
    let schema = iceberg_schema(&every_type(), "_id").unwrap();
    insta::assert_snapshot!(describe_schema(&schema));
}

#[test]
fn an_arrow_type_without_an_iceberg_equivalent_is_an_error_naming_the_column() {
    let cases = [
        Field::new("n", DataType::UInt64, true),
        Field::new("nothing", DataType::Null, true),
        Field::new("t", DataType::Time32(arrow::datatypes::TimeUnit::Second), true),
        Field::new(
            "customer",
            DataType::Struct(Fields::from(vec![Field::new("age", DataType::UInt64, true)])),
            true,
        ),
    ];
    let mut out = String::new();
    for field in cases {
        let arrow = ArrowSchema::new(vec![Field::new("_id", DataType::Utf8, false), field]);
        let error = iceberg_schema(&arrow, "_id").unwrap_err();
        assert!(matches!(error, Error::Plan { .. }), "{error:?}");
        out.push_str(&error_text(&error));
        out.push('\n');
    }
    insta::assert_snapshot!(out);
}

#[test]
fn the_key_must_be_in_the_output_and_must_not_be_floating_point() {
    let arrow = ArrowSchema::new(vec![Field::new("x", DataType::Utf8, true)]);
    let error = iceberg_schema(&arrow, "_id").unwrap_err();
    assert_eq!(
        error_text(&error),
        "the key column `_id` is not in the sync's output\nhint: include `_id` in the SELECT list"
    );
    let arrow = ArrowSchema::new(vec![Field::new("_id", DataType::Float64, true)]);
    let error = iceberg_schema(&arrow, "_id").unwrap_err();
    assert!(error.to_string().starts_with("the key column `_id` is double"), "{error}");
    // Any integer or string works.
    let arrow = ArrowSchema::new(vec![Field::new("_id", DataType::Int64, true)]);
    let schema = iceberg_schema(&arrow, "_id").unwrap();
    assert!(schema.field_by_name("_id").unwrap().required);
}

fn schema_of(fields: Vec<Field>) -> Schema {
    iceberg_schema(&ArrowSchema::new(fields), "_id").unwrap()
}

#[test]
fn check_compatible_ignores_field_ids_order_and_optionality_outside_the_key() {
    let wanted = iceberg_schema(&every_type(), "_id").unwrap();
    // The same columns, reversed, so every id differs.
    let reversed: Vec<Field> =
        every_type().fields().iter().rev().map(|f| f.as_ref().clone()).collect();
    let existing = schema_of(reversed);
    check_compatible("lake.shop.orders", &existing, &wanted).unwrap();
}

#[test]
fn check_compatible_names_the_first_differing_column() {
    let id = || Field::new("_id", DataType::Utf8, false);
    let total = |p, s| Field::new("total", DataType::Decimal128(p, s), true);
    let customer = |name_type| {
        Field::new(
            "customer",
            DataType::Struct(Fields::from(vec![Field::new("name", name_type, true)])),
            true,
        )
    };
    let tags = |t| Field::new_list("tags", Field::new_list_field(t, true), true);
    let ts = |tz| Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, tz), true);
    let cases: Vec<(Vec<Field>, Vec<Field>)> = vec![
        (vec![id(), total(18, 2)], vec![id(), total(38, 2)]),
        (vec![id(), customer(DataType::Utf8)], vec![id(), customer(DataType::Int64)]),
        (vec![id(), tags(DataType::Utf8)], vec![id(), tags(DataType::Int32)]),
        (vec![id(), ts(utc())], vec![id(), ts(None)]),
        (vec![id(), total(18, 2)], vec![id(), Field::new("total", DataType::Utf8, true)]),
        (vec![id()], vec![id(), total(18, 2)]),
        (vec![id(), total(18, 2)], vec![id()]),
        (vec![id(), customer(DataType::Utf8)], vec![id(), total(18, 2), customer(DataType::Utf8)]),
    ];
    let mut out = String::new();
    for (existing, wanted) in cases {
        let error = check_compatible("lake.shop.orders", &schema_of(existing), &schema_of(wanted))
            .unwrap_err();
        out.push_str(&error_text(&error));
        out.push('\n');
    }
    insta::assert_snapshot!(out);
}

#[test]
fn check_compatible_refuses_a_table_whose_key_column_is_optional() {
    // A table made elsewhere, keyed on nothing: `_id` is optional there.
    let existing = Schema::builder()
        .with_fields(vec![
            iceberg::spec::NestedField::optional(
                1,
                "_id",
                Type::Primitive(iceberg::spec::PrimitiveType::String),
            )
            .into(),
        ])
        .build()
        .unwrap();
    let wanted = schema_of(vec![Field::new("_id", DataType::Utf8, true)]);
    let error = check_compatible("lake.shop.orders", &existing, &wanted).unwrap_err();
    assert_eq!(
        error.to_string(),
        "column `_id` is optional in lake.shop.orders but the sync needs it required, as its key"
    );
}

// ---------------------------------------------------------------------------------------------
// Writing and reading back.

fn orders_schema() -> ArrowSchema {
    let address = Fields::from(vec![
        Field::new("city", DataType::Utf8, true),
        Field::new("zip", DataType::Utf8, true),
    ]);
    let customer = Fields::from(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("address", DataType::Struct(address), true),
    ]);
    let item = Fields::from(vec![
        Field::new("sku", DataType::Utf8, true),
        Field::new("qty", DataType::Int32, true),
    ]);
    ArrowSchema::new(vec![
        Field::new("_id", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, true),
        Field::new("total", DataType::Decimal128(18, 2), true),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, utc()), true),
        Field::new("customer", DataType::Struct(customer), true),
        Field::new_list("items", Field::new_list_field(DataType::Struct(item), true), true),
        Field::new_list("tags", Field::new_list_field(DataType::Utf8, true), true),
    ])
}

/// Three orders shaped unlike the table: columns reversed, `status` as Utf8View, `total` as
/// Decimal128(38,2), the timestamp in "UTC", struct children (and grandchildren) reversed,
/// `qty` as Int64, no `tags` column at all.
fn scrambled_orders() -> RecordBatch {
    let address = StructArray::from(vec![
        (
            Arc::new(Field::new("zip", DataType::Utf8, true)),
            strings(&[Some("0150"), None, Some("69001")]),
        ),
        (
            Arc::new(Field::new("city", DataType::Utf8, true)),
            strings(&[Some("Oslo"), None, Some("Lyon")]),
        ),
    ]);
    let customer = StructArray::try_new(
        Fields::from(vec![
            Field::new("address", address.data_type().clone(), true),
            Field::new("name", DataType::Utf8, true),
        ]),
        vec![Arc::new(address), strings(&[Some("Ada"), Some("Bob"), None])],
        Some(vec![true, true, false].into()),
    )
    .unwrap();
    let item_fields = Fields::from(vec![
        Field::new("qty", DataType::Int64, true),
        Field::new("sku", DataType::Utf8, true),
    ]);
    let items_values = StructArray::try_new(
        item_fields.clone(),
        vec![
            Arc::new(Int64Array::from(vec![2, 1, 5])),
            strings(&[Some("A-1"), Some("B-2"), Some("C-3")]),
        ],
        None,
    )
    .unwrap();
    // Order 1: two items; order 2: none (null list); order 3: one item.
    let items = ListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Struct(item_fields), true)),
        OffsetBuffer::new(vec![0, 2, 2, 3].into()),
        Arc::new(items_values),
        Some(vec![true, false, true].into()),
    )
    .unwrap();
    let created = TimestampMicrosecondArray::from(vec![
        Some(1_704_067_200_000_000), // 2024-01-01T00:00:00Z
        Some(1_704_153_600_123_456),
        None,
    ])
    .with_timezone("UTC");
    let total = Decimal128Array::from(vec![Some(1999), None, Some(-5)])
        .with_precision_and_scale(38, 2)
        .unwrap();
    batch(vec![
        ("items", Arc::new(items) as ArrayRef),
        ("customer", Arc::new(customer)),
        ("created_at", Arc::new(created)),
        ("total", Arc::new(total)),
        ("status", Arc::new(StringViewArray::from(vec![Some("paid"), Some("new"), None]))),
        ("_id", strings(&[Some("o1"), Some("o2"), Some("o3")])),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_are_matched_by_name_and_conformed_to_the_table_then_read_back_equal() {
    let lake = lake().await;
    let table = lake.create("orders", &orders_schema(), &[], &[]).await;
    let table = lake.write(&table, &[scrambled_orders()], &[]).await;
    let rows = read_back(&table).await;
    // The scan returns the table's shape: its column order, "+00:00", Int32 quantities.
    assert_eq!(
        rows.schema().field_with_name("created_at").unwrap().data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
    );
    insta::assert_snapshot!(pretty(&rows));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_may_hold_only_some_of_the_table_columns_the_rest_are_null() {
    let lake = lake().await;
    let table = lake.create("orders", &orders_schema(), &[], &[]).await;
    let only_ids = batch(vec![("_id", strings(&[Some("a"), Some("b")]))]);
    let table = lake.write(&table, &[only_ids], &[]).await;
    let rows = read_back(&table).await;
    assert_eq!(rows.num_rows(), 2);
    for name in ["status", "total", "created_at", "customer", "items", "tags"] {
        assert_eq!(rows.column_by_name(name).unwrap().null_count(), 2, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips_through_a_table() {
    let lake = lake().await;
    let schema = Arc::new(every_type());
    let table = lake.create("every", &schema, &[], &[]).await;
    let customer_fields = match schema.field_with_name("customer").unwrap().data_type() {
        DataType::Struct(f) => f.clone(),
        _ => unreachable!(),
    };
    let address_fields = match customer_fields[1].data_type() {
        DataType::Struct(f) => f.clone(),
        _ => unreachable!(),
    };
    let address = StructArray::try_new(
        address_fields,
        vec![strings(&[Some("Oslo"), None]), strings(&[Some("0150"), None])],
        None,
    )
    .unwrap();
    let customer = StructArray::try_new(
        customer_fields,
        vec![strings(&[Some("Ada"), None]), Arc::new(address)],
        None,
    )
    .unwrap();
    let items = match schema.field_with_name("items").unwrap().data_type() {
        DataType::List(item) => item.clone(),
        _ => unreachable!(),
    };
    let item_fields = match items.data_type() {
        DataType::Struct(f) => f.clone(),
        _ => unreachable!(),
    };
    let item_values = StructArray::try_new(
        item_fields,
        vec![strings(&[Some("A-1")]), Arc::new(Int32Array::from(vec![3]))],
        None,
    )
    .unwrap();
    let mut tags = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new())
        .with_field(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    tags.append_value([Some("a"), None]);
    tags.append_null();
    let columns: Vec<ArrayRef> = vec![
        strings(&[Some("x1"), Some("x2")]),
        Arc::new(Int32Array::from(vec![Some(-7), None])),
        Arc::new(Int64Array::from(vec![Some(9_007_199_254_740_993), None])),
        Arc::new(Float64Array::from(vec![Some(0.25), Some(f64::NAN)])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
        Arc::new(
            Decimal128Array::from(vec![Some(123_456), None])
                .with_precision_and_scale(18, 2)
                .unwrap(),
        ),
        Arc::new(TimestampMicrosecondArray::from(vec![Some(1), None]).with_timezone("UTC")),
        Arc::new(TimestampMicrosecondArray::from(vec![Some(86_400_000_000), None])),
        Arc::new(Date32Array::from(vec![Some(19_723), None])),
        Arc::new(arrow::array::BinaryArray::from_opt_vec(vec![Some(b"\x00\xff"), None])),
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                vec![Some([7u8; 16]), None].into_iter(),
                16,
            )
            .unwrap(),
        ),
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                vec![None, Some([1u8; 8])].into_iter(),
                8,
            )
            .unwrap(),
        ),
        Arc::new(StringViewArray::from(vec![Some("view"), None])),
        Arc::new(arrow::array::LargeStringArray::from(vec![None, Some("large")])),
        Arc::new(tags.finish()),
        Arc::new(customer),
        Arc::new(
            ListArray::try_new(
                items,
                OffsetBuffer::new(vec![0, 1, 1].into()),
                Arc::new(item_values),
                None,
            )
            .unwrap(),
        ),
    ];
    let input = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let table = lake.write(&table, &[input], &[]).await;
    insta::assert_snapshot!(pretty(&read_back(&table).await));
}

// ---------------------------------------------------------------------------------------------
// Partitioning and rolling.

/// Orders `0..n` over three days, `_id`s "o000".., with a `status` and a `created_at`.
fn day_orders(range: std::ops::Range<usize>) -> RecordBatch {
    let ids: Vec<String> = range.clone().map(|i| format!("o{i:03}")).collect();
    let statuses: Vec<&str> = range.clone().map(|i| ["new", "paid"][i % 2]).collect();
    // Row i is on day i % 3 after 2024-01-01, at some hour.
    let created: Vec<i64> = range
        .map(|i| {
            1_704_067_200_000_000
                + (i % 3) as i64 * 86_400_000_000
                + (i as i64 % 24) * 3_600_000_000
        })
        .collect();
    batch(vec![
        ("_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("status", Arc::new(StringArray::from(statuses))),
        ("created_at", Arc::new(TimestampMicrosecondArray::from(created).with_timezone("UTC"))),
    ])
}

fn day_orders_schema() -> ArrowSchema {
    ArrowSchema::new(vec![
        Field::new("_id", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, true),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, utc()), true),
    ])
}

fn int_literal(value: Option<&Literal>) -> i32 {
    match value {
        Some(Literal::Primitive(PrimitiveLiteral::Int(n))) => *n,
        other => panic!("expected an int partition value, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_partitioned_by_day_and_bucket_gets_a_file_per_partition_with_its_values() {
    let lake = lake().await;
    let table = lake
        .create(
            "orders",
            &day_orders_schema(),
            &[("created_at", Transform::Day), ("_id", Transform::Bucket(8))],
            &[],
        )
        .await;
    let spec = table.metadata().default_partition_spec().clone();
    let names: Vec<&str> = spec.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["created_at_day", "_id_bucket"]);

    // Two batches, so partitions recur across batches: still one open file per partition.
    let mut writer = TableWriter::new(&table, &WriteOptions::from_table(&table)).unwrap();
    writer.write(&day_orders(0..60)).await.unwrap();
    writer.write(&day_orders(60..120)).await.unwrap();
    assert_eq!(writer.rows(), 120);
    let files = data_files(writer).await;

    // What each partition should hold, computed here: days since the epoch, and iceberg's
    // bucket function on `_id`.
    let all = day_orders(0..120);
    let bucket = iceberg::transform::create_transform_function(&Transform::Bucket(8)).unwrap();
    let buckets = bucket.transform(all.column_by_name("_id").unwrap().clone()).unwrap();
    let buckets = buckets.as_any().downcast_ref::<Int32Array>().unwrap();
    let created = all.column_by_name("created_at").unwrap();
    let created = created.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
    let mut expected: BTreeMap<(i32, i32), u64> = BTreeMap::new();
    for i in 0..all.num_rows() {
        let day = created.value(i).div_euclid(86_400_000_000) as i32;
        *expected.entry((day, buckets.value(i))).or_default() += 1;
    }
    assert!(expected.len() > 6, "the data should spread over many partitions");

    let mut actual: BTreeMap<(i32, i32), u64> = BTreeMap::new();
    for file in &files {
        let values: Vec<Option<&Literal>> = file.partition().iter().collect();
        let key = (int_literal(values[0]), int_literal(values[1]));
        assert!(actual.insert(key, file.record_count()).is_none(), "two files for {key:?}");
        let day = chrono_day(key.0);
        assert!(
            file.file_path().contains(&format!("/created_at_day={day}/_id_bucket={}/", key.1)),
            "{}",
            file.file_path()
        );
    }
    assert_eq!(actual, expected);

    let table = append(&lake.conn, &table, files, HashMap::new()).await.unwrap();
    let rows = read_back(&table).await;
    assert_eq!(rows.num_rows(), 120);
    assert_eq!(rows.column_by_name("_id").unwrap(), all.column_by_name("_id").unwrap());
}

/// Days since the epoch as `YYYY-MM-DD`, for the three days the test uses.
fn chrono_day(days: i32) -> String {
    let first = 19_723; // 2024-01-01
    assert!((first..first + 3).contains(&days), "unexpected day {days}");
    format!("2024-01-0{}", days - first + 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tiny_target_file_size_rolls_to_a_new_file_per_batch() {
    let lake = lake().await;
    let table = lake
        .create("orders", &day_orders_schema(), &[], &[("write.target-file-size-bytes", "1")])
        .await;
    let options = WriteOptions::from_table(&table);
    assert_eq!(options.target_file_size, 1);
    let mut writer = TableWriter::new(&table, &options).unwrap();
    for start in (0..500).step_by(100) {
        writer.write(&day_orders(start..start + 100)).await.unwrap();
    }
    let files = data_files(writer).await;
    assert_eq!(files.len(), 5);
    assert!(files.iter().all(|f| f.record_count() == 100));
    let mut paths: Vec<&str> = files.iter().map(|f| f.file_path()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 5, "file names must be unique");
    let table = append(&lake.conn, &table, files, HashMap::new()).await.unwrap();
    assert_eq!(read_back(&table).await.num_rows(), 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn write_options_come_from_table_properties_with_defaults() {
    let lake = lake().await;
    let plain = lake.create("plain", &day_orders_schema(), &[], &[]).await;
    assert_eq!(
        WriteOptions::from_table(&plain),
        WriteOptions { target_file_size: 128 * 1024 * 1024, compression: "zstd".into() }
    );
    let set = lake
        .create(
            "set",
            &day_orders_schema(),
            &[],
            &[
                ("write.target-file-size-bytes", "1048576"),
                ("write.parquet.compression-codec", "SNAPPY"),
            ],
        )
        .await;
    assert_eq!(
        WriteOptions::from_table(&set),
        WriteOptions { target_file_size: 1_048_576, compression: "snappy".into() }
    );
    let bad = WriteOptions { target_file_size: 1, compression: "brotli-ish".into() };
    let error = TableWriter::new(&set, &bad).unwrap_err();
    assert_eq!(
        error_text(&error),
        "unknown compression codec 'brotli-ish'\nhint: use one of zstd, snappy, gzip, lz4, uncompressed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_compression_codec_writes_files_that_read_back() {
    use parquet::file::reader::FileReader;
    let lake = lake().await;
    for (codec, expected) in [
        ("zstd", "ZSTD"),
        ("snappy", "SNAPPY"),
        ("gzip", "GZIP"),
        ("lz4", "LZ4_RAW"),
        ("uncompressed", "UNCOMPRESSED"),
    ] {
        let table = lake.create(codec, &day_orders_schema(), &[], &[]).await;
        let options = WriteOptions { target_file_size: 1 << 20, compression: codec.into() };
        let mut writer = TableWriter::new(&table, &options).unwrap();
        writer.write(&day_orders(0..50)).await.unwrap();
        let files = data_files(writer).await;
        let bytes = table.file_io().new_input(files[0].file_path()).unwrap().read().await.unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(bytes).unwrap();
        let compression = reader.metadata().row_group(0).column(0).compression();
        assert!(format!("{compression:?}").starts_with(expected), "{codec}: {compression:?}");
        let table = append(&lake.conn, &table, files, HashMap::new()).await.unwrap();
        assert_eq!(read_back(&table).await.num_rows(), 50, "{codec}");
    }
}

// ---------------------------------------------------------------------------------------------
// Commits.

#[tokio::test(flavor = "multi_thread")]
async fn each_append_carries_its_properties_and_snapshot_property_finds_the_newest() {
    let lake = lake().await;
    let table = lake.create("orders", &day_orders_schema(), &[], &[]).await;
    assert_eq!(snapshot_property(&table, "misql.checkpoint"), None);

    let table = lake.write(&table, &[day_orders(0..10)], &[("misql.checkpoint", "one")]).await;
    let first = table.metadata().current_snapshot_id().unwrap();
    let table = lake.write(&table, &[day_orders(10..20)], &[("misql.checkpoint", "two")]).await;
    let summary = table.metadata().current_snapshot().unwrap().summary().clone();
    assert_eq!(summary.additional_properties["misql.checkpoint"], "two");
    assert_eq!(summary.additional_properties["added-records"], "10");
    assert_eq!(summary.additional_properties["total-records"], "20");
    assert_eq!(table.metadata().current_snapshot().unwrap().parent_snapshot_id(), Some(first));
    assert_eq!(snapshot_property(&table, "misql.checkpoint").as_deref(), Some("two"));

    // Another writer appends without the key: the newest snapshot that has it still wins.
    let table = lake.write(&table, &[day_orders(20..30)], &[("other.key", "x")]).await;
    assert_eq!(snapshot_property(&table, "misql.checkpoint").as_deref(), Some("two"));
    assert_eq!(snapshot_property(&table, "other.key").as_deref(), Some("x"));
    assert_eq!(table.metadata().snapshots().count(), 3);

    // The catalog holds all of it: a fresh catalog over the same files sees the same.
    let reloaded = lake.catalog.load_table(&ident("orders")).await.unwrap();
    assert_eq!(snapshot_property(&reloaded, "misql.checkpoint").as_deref(), Some("two"));
    assert_eq!(read_back(&reloaded).await.num_rows(), 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_only_commit_adds_a_snapshot_without_files() {
    let lake = lake().await;
    let table = lake.create("orders", &day_orders_schema(), &[], &[]).await;
    let table = lake.write(&table, &[day_orders(0..10)], &[("misql.checkpoint", "data")]).await;
    let before = table.metadata().current_snapshot_id().unwrap();

    let properties = HashMap::from([("misql.checkpoint".to_string(), "idle".to_string())]);
    let table = append(&lake.conn, &table, vec![], properties).await.unwrap();
    let snapshot = table.metadata().current_snapshot().unwrap();
    assert_ne!(snapshot.snapshot_id(), before);
    assert_eq!(snapshot.parent_snapshot_id(), Some(before));
    assert_eq!(snapshot.summary().additional_properties.get("added-data-files"), None);
    assert_eq!(snapshot_property(&table, "misql.checkpoint").as_deref(), Some("idle"));
    assert_eq!(read_back(&table).await.num_rows(), 10);

    // Neither files nor properties: nothing to commit, no new snapshot.
    let same = append(&lake.conn, &table, vec![], HashMap::new()).await.unwrap();
    assert_eq!(same.metadata().current_snapshot_id(), Some(snapshot.snapshot_id()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_append_based_on_a_stale_table_is_rebased_and_keeps_both_commits() {
    let lake = lake().await;
    let stale = lake.create("orders", &day_orders_schema(), &[], &[]).await;
    let _newer = lake.write(&stale, &[day_orders(0..10)], &[("misql.checkpoint", "a")]).await;
    // Files written against the old metadata, committed after someone else's commit.
    let table = lake.write(&stale, &[day_orders(10..20)], &[("misql.checkpoint", "b")]).await;
    assert_eq!(table.metadata().snapshots().count(), 2);
    assert_eq!(snapshot_property(&table, "misql.checkpoint").as_deref(), Some("b"));
    assert_eq!(read_back(&table).await.num_rows(), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_table_creates_the_namespace_and_returns_an_existing_table_unchanged() {
    let lake = lake().await;
    let schema = iceberg_schema(&day_orders_schema(), "_id").unwrap();
    let partition = [("created_at".to_string(), Transform::Day)];
    let ident = TableIdent::from_strs(["fresh_ns", "orders"]).unwrap();
    let created =
        create_table(lake.catalog.as_ref(), &ident, schema.clone(), &partition, HashMap::new())
            .await
            .unwrap();
    assert!(lake.catalog.namespace_exists(ident.namespace()).await.unwrap());
    assert_eq!(created.metadata().format_version(), iceberg::spec::FormatVersion::V2);
    let key: Vec<i32> = created.metadata().current_schema().identifier_field_ids().collect();
    assert_eq!(key, [created.metadata().current_schema().field_id_by_name("_id").unwrap()]);

    let again =
        create_table(lake.catalog.as_ref(), &ident, schema, &[], HashMap::new()).await.unwrap();
    assert_eq!(again.metadata_location(), created.metadata_location());
    assert_eq!(again.metadata().default_partition_spec().fields().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_partition_spec_is_an_error_naming_the_column() {
    let lake = lake().await;
    let schema = iceberg_schema(&day_orders_schema(), "_id").unwrap();
    let mut out = String::new();
    for partition in [("nope", Transform::Day), ("status", Transform::Day)] {
        let partition = [(partition.0.to_string(), partition.1)];
        let error = create_table(
            lake.catalog.as_ref(),
            &ident("bad"),
            schema.clone(),
            &partition,
            HashMap::new(),
        )
        .await
        .unwrap_err();
        out.push_str(&error_text(&error));
        out.push('\n');
    }
    assert!(!lake.catalog.table_exists(&ident("bad")).await.unwrap());
    insta::assert_snapshot!(out);
}

// ---------------------------------------------------------------------------------------------
// Errors while writing.

async fn orders_writer(lake: &Lake) -> TableWriter {
    let table = lake.create("orders", &orders_schema(), &[], &[]).await;
    TableWriter::new(&table, &WriteOptions::from_table(&table)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_column_the_table_lacks_is_an_error_naming_it() {
    let lake = lake().await;
    let mut writer = orders_writer(&lake).await;
    let input = batch(vec![("_id", strings(&[Some("a")])), ("colour", strings(&[Some("red")]))]);
    let error = writer.write(&input).await.unwrap_err();
    assert_eq!(
        error_text(&error),
        "column `colour` is not in table shop.orders\nhint: leave `colour` out of the SELECT, or \
         add the column to shop.orders"
    );
    // Also inside a struct.
    let customer = StructArray::from(vec![(
        Arc::new(Field::new("shoe_size", DataType::Int32, true)),
        Arc::new(Int32Array::from(vec![42])) as ArrayRef,
    )]);
    let input = batch(vec![("_id", strings(&[Some("a")])), ("customer", Arc::new(customer))]);
    let error = writer.write(&input).await.unwrap_err();
    assert!(
        error.to_string().starts_with("column `customer.shoe_size` is not in table"),
        "{error}"
    );
    assert_eq!(writer.rows(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_null_or_missing_key_is_an_error_naming_the_column() {
    let lake = lake().await;
    let mut writer = orders_writer(&lake).await;
    let input =
        batch(vec![("_id", strings(&[Some("a"), None])), ("status", strings(&[None, None]))]);
    let error = writer.write(&input).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "document _id=<missing>: field `_id`: is null, but the column is required in shop.orders"
    );
    let input = batch(vec![("status", strings(&[Some("new")]))]);
    let error = writer.write(&input).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "required column `_id` of table shop.orders is missing from the data written"
    );
    assert!(writer.finish().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_that_does_not_fit_its_column_names_the_document_and_column() {
    let lake = lake().await;
    let mut writer = orders_writer(&lake).await;
    // 10^20 does not fit decimal(18,2).
    let total = Decimal128Array::from(vec![Some(1), Some(10_i128.pow(22))])
        .with_precision_and_scale(38, 2)
        .unwrap();
    let input = batch(vec![("_id", strings(&[Some("a"), Some("b")])), ("total", Arc::new(total))]);
    let error = writer.write(&input).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(
            "document _id=b: field `total`: value \"100000000000000000000.00\" does not fit \
             decimal(18,2) (column type in shop.orders)"
        ),
        "{text}"
    );
    // A value inside a list names the row that holds the list.
    let item_fields = Fields::from(vec![
        Field::new("sku", DataType::Utf8, true),
        Field::new("qty", DataType::Int64, true),
    ]);
    let item_values = StructArray::try_new(
        item_fields.clone(),
        vec![
            strings(&[Some("A"), Some("B"), Some("C")]),
            Arc::new(Int64Array::from(vec![1, 2, 1 << 40])),
        ],
        None,
    )
    .unwrap();
    let items = ListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Struct(item_fields), true)),
        OffsetBuffer::new(vec![0, 1, 3].into()),
        Arc::new(item_values),
        None,
    )
    .unwrap();
    let input = batch(vec![("_id", strings(&[Some("a"), Some("b")])), ("items", Arc::new(items))]);
    let error = writer.write(&input).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(
            "document _id=b: field `items.element.qty`: value \"1099511627776\" does not fit int"
        ),
        "{text}"
    );
    let wrong = batch(vec![
        ("_id", strings(&[Some("a")])),
        ("created_at", Arc::new(BooleanArray::from(vec![true]))),
    ]);
    let error = writer.write(&wrong).await.unwrap_err();
    assert_eq!(
        error_text(&error),
        "column `created_at` is boolean in the data written, but timestamptz in table \
         shop.orders, and the one cannot be converted to the other\nhint: cast `created_at` in \
         the SELECT to timestamptz"
    );
}
