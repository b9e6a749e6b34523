//! Nesting depth: a column nests at most `MAX_NESTING_DEPTH` struct and list types; what a
//! document nests below that is a string column of relaxed Extended JSON. Why the limit is what
//! it is (the table metadata JSON of the deepest schema, parsed back as iceberg-rust does), and
//! documents nested 20, 60 and 100 levels deep synced by `SELECT *` and by an explicit SELECT,
//! in the snapshot and through the change stream, read back by misql and by pyiceberg.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema as ArrowSchema};
use bson::{Bson, Document, RawBson, doc};
use iceberg::spec::{
    FormatVersion, NestedField, PartitionSpec, PrimitiveType, Schema, SortOrder, StructType,
    TableMetadata, TableMetadataBuilder, Type,
};
use misql::lake::schema::{MAX_NESTING_DEPTH, iceberg_schema, nesting_depth};
use misql::mongo::ext_json;
use misql::mongo::infer::Inference;
use misql::sync::evolve::{grow, typed};
use serde_json::{Value, json};

use crate::support::pyiceberg::{PyCatalog, pyiceberg_rows, pyiceberg_schemas};
use crate::support::{Run, client, csv_rows, json_rows, misql_in, unique_db, warehouse};

/// The level whose value is an array (of the next level's document), so that the chains have
/// a list among their structs.
const ARRAY_LEVEL: usize = 10;

/// The value of a field nested `levels` deep (`max_depth` in DESCRIBE): level `i` is
/// `{k: i, n: <level i + 1>}`, except level [`ARRAY_LEVEL`], `[<level 11>]`, and the last,
/// `{k: levels, leaf: "bottom of <levels>"}`.
fn chain(levels: usize) -> Bson {
    let mut value =
        Bson::Document(doc! { "k": levels as i32, "leaf": format!("bottom of {levels}") });
    for level in (1..levels).rev() {
        value = if level == ARRAY_LEVEL {
            Bson::Array(vec![value])
        } else {
            Bson::Document(doc! { "k": level as i32, "n": value })
        };
    }
    value
}

/// The relaxed Extended JSON text of a BSON value, as misql writes it.
fn ext_json_text(value: &Bson) -> String {
    let raw = RawBson::try_from(value.clone()).expect("a BSON value");
    ext_json::to_string(raw.as_raw_bson_ref())
}

/// What a column holds for `value` at nesting `level` (a top-level column's value is level 1),
/// as JSON: documents and arrays down to the limit as objects and arrays, a document or array
/// deeper than that as its relaxed Extended JSON text.
fn column_value(value: &Bson, level: usize) -> Value {
    match value {
        Bson::Document(_) | Bson::Array(_) if level > MAX_NESTING_DEPTH => {
            Value::String(ext_json_text(value))
        }
        Bson::Document(d) => {
            d.iter().map(|(k, v)| (k.clone(), column_value(v, level + 1))).collect()
        }
        Bson::Array(items) => items.iter().map(|v| column_value(v, level + 1)).collect(),
        Bson::Int32(v) => json!(v),
        Bson::String(s) => json!(s),
        other => panic!("no chain holds {other:?}"),
    }
}

/// The DESCRIBE path of the value at `level` of column `column` (level 1 is the column).
fn path(column: &str, level: usize) -> String {
    let mut path = column.to_string();
    for below in 2..=level {
        path.push_str(if below - 1 == ARRAY_LEVEL { "[]" } else { ".n" });
    }
    path
}

/// The deepest struct and list nesting of an Arrow type.
fn arrow_depth(data_type: &DataType) -> usize {
    match data_type {
        DataType::Struct(fields) => {
            1 + fields.iter().map(|f| arrow_depth(f.data_type())).max().unwrap_or(0)
        }
        DataType::List(item) => 1 + arrow_depth(item.data_type()),
        _ => 0,
    }
}

fn infer(docs: &[Document]) -> Inference {
    let mut inference = Inference::new();
    for doc in docs {
        inference.observe(&bson::RawDocumentBuf::try_from(doc).unwrap()).unwrap();
    }
    inference
}

/// The metadata JSON of a new table of `schema`, as iceberg-rust writes it.
fn metadata_json(schema: Schema) -> String {
    let metadata = TableMetadataBuilder::new(
        schema,
        PartitionSpec::unpartition_spec(),
        SortOrder::unsorted_order(),
        "file:///tmp/deep".to_string(),
        FormatVersion::V2,
        HashMap::new(),
    )
    .and_then(|b| b.build())
    .expect("table metadata")
    .metadata;
    serde_json::to_string(&metadata).expect("serialize table metadata")
}

/// How deep JSON objects and arrays nest in `text`.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for c in text.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') | (false, _, '"') => in_string = !in_string,
            (false, _, '{' | '[') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, _, '}' | ']') => depth -= 1,
            _ => {}
        }
    }
    deepest
}

/// Parses table metadata as iceberg-rust does (serde_json, default recursion limit): from a
/// metadata file, and wrapped in a REST catalog's `{"metadata": ...}` load response.
fn parse_metadata(text: &str) -> (Result<TableMetadata, String>, Result<(), String>) {
    let file = serde_json::from_str::<TableMetadata>(text).map_err(|e| e.to_string());
    let rest = format!("{{\"metadata-location\":\"m.json\",\"metadata\":{text}}}");
    let rest = serde_json::from_str::<HashMap<String, Value>>(&rest)
        .map(|_| ())
        .map_err(|e| e.to_string());
    (file, rest)
}

/// An Iceberg schema with `_id` and a column `deep` of `structs` structs in a chain.
fn struct_chain(structs: usize) -> Schema {
    let mut field_type = Type::Primitive(PrimitiveType::Int);
    for id in 0..structs {
        let field = NestedField::optional(1000 + id as i32, "n", field_type);
        field_type = Type::Struct(StructType::new(vec![Arc::new(field)]));
    }
    Schema::builder()
        .with_fields(vec![
            Arc::new(NestedField::required(1, "_id", Type::Primitive(PrimitiveType::Long))),
            Arc::new(NestedField::optional(2, "deep", field_type)),
        ])
        .build()
        .expect("schema")
}

#[test]
fn table_metadata_stops_loading_past_forty_nested_structs() {
    // The measurement behind the limit: a struct costs 3 JSON levels, the metadata file 5 more
    // (6 wrapped in a REST response), and serde_json refuses a 128th level.
    for structs in [1, 20, MAX_NESTING_DEPTH, 40, 41] {
        let text = metadata_json(struct_chain(structs));
        assert_eq!(json_depth(&text), 5 + 3 * structs, "{structs} structs");
    }
    let (file, rest) = parse_metadata(&metadata_json(struct_chain(40)));
    assert!(file.is_ok() && rest.is_ok(), "40 structs load: {file:?} {rest:?}");
    let (file, rest) = parse_metadata(&metadata_json(struct_chain(41)));
    for err in [file.map(|_| ()), rest] {
        let err = err.expect_err("41 structs do not load");
        assert!(err.contains("recursion limit exceeded"), "{err}");
    }
}

#[test]
fn the_deepest_inferred_schema_loads_back_with_room_to_spare() {
    // A 100-level document (MongoDB's limit) of documents only: the most JSON per level.
    let mut deep = doc! { "leaf": 1 };
    for _ in 1..100 {
        deep = doc! { "n": deep };
    }
    let inference = infer(&[doc! { "_id": 1, "deep": deep }]);
    let arrow = inference.schema();
    assert_eq!(arrow_depth(arrow.field(1).data_type()), MAX_NESTING_DEPTH);
    let schema = iceberg_schema(&arrow, "_id").expect("an Iceberg schema");
    assert_eq!(nesting_depth(&schema.as_struct().fields()[1].field_type), MAX_NESTING_DEPTH);
    let text = metadata_json(schema.clone());
    let depth = json_depth(&text);
    assert_eq!(depth, 5 + 3 * MAX_NESTING_DEPTH);
    // serde_json reads 127 levels; a REST response wraps the metadata in one more object.
    let rest_depth = depth + 1;
    assert!(127 - rest_depth >= 24, "{rest_depth} levels leave too little margin");
    let (file, rest) = parse_metadata(&text);
    let loaded = file.expect("the metadata file loads");
    let column = &loaded.current_schema().as_struct().fields()[1];
    assert_eq!(nesting_depth(&column.field_type), MAX_NESTING_DEPTH);
    rest.expect("the REST response loads");
}

#[test]
fn a_select_building_structs_deeper_than_the_limit_is_refused_naming_the_column() {
    let mut deep = doc! { "leaf": 1 };
    for _ in 1..100 {
        deep = doc! { "n": deep };
    }
    let inferred = infer(&[doc! { "_id": 1, "deep": deep }]).schema();
    // What a SELECT wrapping the column in one more struct would produce.
    let wrapped = DataType::Struct(vec![inferred.field(1).clone()].into());
    let arrow = ArrowSchema::new(vec![
        inferred.field(0).clone(),
        arrow::datatypes::Field::new("w", wrapped, true),
    ]);
    let err = iceberg_schema(&arrow, "_id").expect_err("33 levels").to_string();
    assert!(
        err.contains(&format!("column `w` nests {} levels deep", MAX_NESTING_DEPTH + 1)),
        "{err}"
    );
}

#[test]
fn arrays_count_as_levels_and_turn_into_json_text_below_the_limit() {
    let mut deep = Bson::Array(vec![Bson::Int32(7)]);
    for _ in 1..60 {
        deep = Bson::Array(vec![deep]);
    }
    let inference = infer(&[doc! { "_id": 1, "a": deep.clone() }]);
    let mut data_type = inference.schema().field(1).data_type().clone();
    let whole = deep.clone();
    let mut value = &whole;
    for _ in 0..MAX_NESTING_DEPTH {
        let DataType::List(item) = data_type else { panic!("a list: {data_type}") };
        data_type = item.data_type().clone();
        let Bson::Array(items) = value else { unreachable!() };
        value = &items[0];
    }
    assert_eq!(data_type, DataType::Utf8);
    let reports = inference.fields();
    let cut = reports.last().expect("reports");
    assert_eq!(cut.path, format!("a{}", "[]".repeat(MAX_NESTING_DEPTH)));
    assert!(cut.too_deep && cut.data_type == DataType::Utf8, "{cut:?}");
    assert_eq!(cut.max_depth as usize, 60 - MAX_NESTING_DEPTH);
    // The converter writes the rest of the array there as relaxed Extended JSON.
    let mut builder = misql::mongo::bson_arrow::BatchBuilder::new(inference.schema());
    builder
        .append(&bson::RawDocumentBuf::try_from(&doc! { "_id": 1, "a": deep }).unwrap())
        .unwrap();
    let batch = builder.finish().unwrap();
    let mut column = batch.column(1).clone();
    for _ in 0..MAX_NESTING_DEPTH {
        column = arrow::array::AsArray::as_list::<i32>(column.as_ref()).value(0);
    }
    let text = arrow::array::AsArray::as_string::<i32>(column.as_ref()).value(0);
    assert_eq!(text, ext_json_text(value));
    assert_eq!(text, format!("{}7{}", "[".repeat(28), "]".repeat(28)));
}

#[test]
fn schema_evolution_never_grows_a_column_past_the_limit() {
    // A SELECT * sync's table has the field 20 deep; a batch brings it 33 and 100 levels deep.
    let have = infer(&[doc! { "_id": 1, "d": chain(20) }]).schema();
    let batch = infer(&[doc! { "_id": 2, "d": chain(33) }, doc! { "_id": 3, "e": chain(100) }]);
    let seen = typed(&batch.schema(), &batch.fields());
    // `d`'s level 33, `{k: 33, leaf: …}`, is text: a typed value, kept (unlike a `{}`).
    for name in ["d", "e"] {
        let field = seen.field_with_name(name).expect("a field nested too deep is typed");
        assert_eq!(arrow_depth(field.data_type()), MAX_NESTING_DEPTH, "{name}");
    }
    let grown = grow(&have, &seen);
    for field in grown.fields() {
        assert!(arrow_depth(field.data_type()) <= MAX_NESTING_DEPTH, "{field:?}");
    }
    assert_eq!(arrow_depth(grown.field_with_name("d").unwrap().data_type()), MAX_NESTING_DEPTH);
    assert_eq!(arrow_depth(grown.field_with_name("e").unwrap().data_type()), MAX_NESTING_DEPTH);
}

/// The depths the server tests use: within the limit, past it, and MongoDB's own limit.
const DEPTHS: [usize; 3] = [20, 60, 100];

/// `{_id: N, dN: chain(N)}` for each depth N, in `_id` order.
fn deep_documents() -> Vec<Document> {
    DEPTHS
        .iter()
        .map(|&n| {
            let mut doc = doc! { "_id": n as i32 };
            doc.insert(format!("d{n}"), chain(n));
            doc
        })
        .collect()
}

/// A collection `<db>.c` holding `docs`, and a warehouse.
async fn collection_with(name: &str, docs: &[Document]) -> (String, PathBuf) {
    let db = unique_db(name);
    client().await.database(&db).collection::<Document>("c").insert_many(docs).await.unwrap();
    (db, warehouse(name))
}

/// `misql --once -e sql` in warehouse `dir`, which must succeed.
fn once(dir: &Path, sql: &str) -> Run {
    let run = misql_in(dir, &["--once", "-e", sql]);
    assert!(run.success, "{sql}: {}", run.stderr);
    run
}

/// Checks that `rows` (one per depth in [`DEPTHS`], with `_id`s N, in `_id` order) hold each
/// chain exactly: structs and lists down to the limit, Extended JSON text below.
fn assert_chains(rows: &[Value], reader: &str) {
    assert_eq!(rows.len(), DEPTHS.len(), "{reader}: {rows:?}");
    for (row, n) in rows.iter().zip(DEPTHS) {
        assert_eq!(row["_id"], json!(n), "{reader}");
        assert_eq!(row[format!("d{n}")], column_value(&chain(n), 1), "{reader}: d{n}");
    }
}

/// The value at `level` of column `dN` in `row`, following the chain's `n` fields and the
/// array's first element.
fn at_level(row: &Value, n: usize, level: usize) -> &Value {
    let mut at = &row[format!("d{n}")];
    for below in 2..=level {
        at = if below - 1 == ARRAY_LEVEL { &at[0] } else { &at["n"] };
    }
    at
}

/// Reads `<db>.<table>` with misql and pyiceberg and checks the chains in both.
fn assert_table(dir: &Path, db: &str, table: &str) {
    let rows = json_rows(dir, &format!("SELECT * FROM iceberg.{db}.{table} ORDER BY _id"));
    assert_chains(&rows, "misql");
    let py = pyiceberg_rows(&PyCatalog::sql(dir), &format!("{db}.{table}"), "_id");
    assert_chains(&py, "pyiceberg");
    // The text below the limit is the rest of the document, as relaxed Extended JSON.
    let text = at_level(&rows[2], 100, MAX_NESTING_DEPTH + 1).as_str().expect("text");
    let rest: Value = serde_json::from_str(text).expect("JSON text");
    assert_eq!(rest["k"], json!(MAX_NESTING_DEPTH + 1));
    let mut bottom = &rest;
    for _ in MAX_NESTING_DEPTH + 1..100 {
        bottom = &bottom["n"];
    }
    assert_eq!(bottom, &json!({ "k": 100, "leaf": "bottom of 100" }));
    // Every schema the table ever had nests no deeper than the limit; the current one that deep.
    for schema in pyiceberg_schemas(&PyCatalog::sql(dir), &format!("{db}.{table}")) {
        let fields = schema["fields"].as_array().expect("fields");
        let deepest = fields.iter().map(|f| py_depth(&f["type"])).max().unwrap_or(0);
        assert!(deepest <= MAX_NESTING_DEPTH, "pyiceberg's schema {schema}");
        if schema["current"] == true {
            assert_eq!(deepest, MAX_NESTING_DEPTH, "pyiceberg's current schema {schema}");
        }
    }
}

/// The deepest struct and list nesting of a type in pyiceberg's schema JSON.
fn py_depth(field_type: &Value) -> usize {
    if let Some(fields) = field_type["struct"].as_array() {
        1 + fields.iter().map(|f| py_depth(&f["type"])).max().unwrap_or(0)
    } else if field_type.get("list").is_some() {
        1 + py_depth(&field_type["list"])
    } else {
        0
    }
}

/// DESCRIBE rows of `what` as `path → (type, rest)`.
fn describe(dir: &Path, what: &str) -> HashMap<String, Vec<String>> {
    let run = misql_in(dir, &["--format", "csv", "-e", &format!("DESCRIBE {what}")]);
    assert!(run.success, "{}", run.stderr);
    csv_rows(&run.stdout).into_iter().skip(1).map(|r| (r[0].clone(), r[1..].to_vec())).collect()
}

/// DESCRIBE of the collection and of the table show each chain as structs down to the limit
/// and a string column at the level below, with nothing under it.
fn assert_described(dir: &Path, db: &str, table: &str) {
    let cut = MAX_NESTING_DEPTH + 1;
    let source = describe(dir, &format!("mongo.{db}.c"));
    let target = describe(dir, &format!("iceberg.{db}.{table}"));
    assert!(source.contains_key(&format!("{}.leaf", path("d20", 20))), "{source:?}");
    assert!(target.contains_key(&format!("{}.leaf", path("d20", 20))), "{target:?}");
    for n in [60, 100] {
        let column = format!("d{n}");
        let (last_struct, text) = (path(&column, cut - 1), path(&column, cut));
        assert_eq!(source[&last_struct][0], "Struct(2 fields)");
        assert_eq!(target[&last_struct][0], "struct");
        let row = &source[&text];
        assert_eq!(row[..3], ["Utf8", "YES", "object: 1"], "{text}");
        assert_eq!(row[5], (n - cut + 1).to_string(), "max_depth of {text}");
        assert_eq!(target[&text][0], "string", "{text}");
        for described in [&source, &target] {
            let below = described.keys().filter(|p| p.starts_with(&format!("{text}."))).count();
            assert_eq!(below, 0, "nothing is described below {text}");
        }
    }
}

/// Metadata files of `<db>.<table>`: one more for every commit.
fn metadata_files(dir: &Path, db: &str, table: &str) -> usize {
    std::fs::read_dir(dir.join(db).join(table).join("metadata")).map_or(0, |d| d.count())
}

/// Runs `sync` once into `deep`, reads the table back (misql, pyiceberg, DESCRIBE); then a
/// restart finds the table, loads it and has nothing to commit.
fn sync_read_back_and_restart(dir: &Path, db: &str, sync: &str) {
    let run = once(dir, sync);
    assert!(run.stderr.contains("snapshot complete, 3 rows"), "{}", run.stderr);
    assert_table(dir, db, "deep");
    assert_described(dir, db, "deep");
    let before = metadata_files(dir, db, "deep");
    once(dir, sync);
    assert_eq!(metadata_files(dir, db, "deep"), before, "a restart commits nothing");
    assert_table(dir, db, "deep");
}

#[tokio::test(flavor = "multi_thread")]
async fn select_star_syncs_documents_nested_20_60_and_100_deep_as_structs_then_json_text() {
    let (db, dir) = collection_with("deep_star", &deep_documents()).await;
    let sync = format!(
        "CREATE SYNC deep FROM mongo.{db}.c INTO iceberg.{db}.deep WITH (on_error = 'dead_letter')"
    );
    sync_read_back_and_restart(&dir, &db, &sync);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_select_of_deep_fields_gets_the_same_truncated_types() {
    let (db, dir) = collection_with("deep_select", &deep_documents()).await;
    let select = "SELECT _id, d20, d60, d100";
    let preview = json_rows(&dir, &format!("{select} FROM mongo.{db}.c ORDER BY _id"));
    assert_chains(&preview, "preview");
    let sync = format!(
        "CREATE SYNC deep FROM mongo.{db}.c INTO iceberg.{db}.deep {select} \
         WITH (on_error = 'dead_letter')"
    );
    let explain = misql_in(&dir, &["-e", &format!("EXPLAIN {sync}")]);
    assert!(explain.success, "{}", explain.stderr);
    let cut = path("d60", MAX_NESTING_DEPTH + 1);
    let line = explain.stdout.lines().find(|l| l.contains(&format!("{cut}: "))).unwrap_or("");
    assert!(line.contains("; nested too deep: Extended JSON text"), "{}", explain.stdout);
    sync_read_back_and_restart(&dir, &db, &sync);
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_documents_inserted_after_the_snapshot_arrive_through_the_change_stream() {
    // The SELECT * table starts without the deep fields: they are added as the stream brings
    // them, no deeper than the limit.
    let (db, dir) = collection_with("deep_stream", &[doc! { "_id": 1, "name": "flat" }]).await;
    let sync = format!(
        "CREATE SYNC deep FROM mongo.{db}.c INTO iceberg.{db}.deep WITH (flush_interval = '200ms')"
    );
    once(&dir, &sync);
    let coll = client().await.database(&db).collection::<Document>("c");
    coll.delete_one(doc! { "_id": 1 }).await.unwrap();
    coll.insert_many(deep_documents()).await.unwrap();
    once(&dir, &sync);
    assert_table(&dir, &db, "deep");
    let before = metadata_files(&dir, &db, "deep");
    once(&dir, &sync);
    assert_eq!(metadata_files(&dir, &db, "deep"), before, "a restart commits nothing");
}
