//! Writing Iceberg v2 position delete files: Parquet files of `(file_path, pos)` rows, sorted by
//! path then position, that delete single rows of existing data files.
//!
//! iceberg-rust 0.10.1 writes data and equality-delete files but has no position-delete writer,
//! so misql writes them itself with the library's Parquet writer (which also collects the column
//! statistics), and marks the result as position deletes. Commit them with
//! [`commit`](super::commit::commit).

use std::collections::HashMap;
use std::sync::Arc;

use ::iceberg::arrow::schema_to_arrow_schema;
use ::iceberg::spec::{
    DataContentType, DataFile, NestedField, PartitionKey, PrimitiveType, Schema, SchemaRef, Struct,
    TableMetadata, Type,
};
use ::iceberg::table::Table;
use ::iceberg::writer::file_writer::location_generator::{
    DefaultLocationGenerator, LocationGenerator,
};
use ::iceberg::writer::file_writer::{FileWriter, FileWriterBuilder, ParquetWriterBuilder};
use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};

use super::table::partition_spec_id;
use super::writer::WriteOptions;
use crate::{Error, Result};

/// Field id of the `file_path` column of a position delete file (reserved by the Iceberg spec).
pub const DELETE_FILE_PATH_FIELD_ID: i32 = 2147483546;
/// Field id of the `pos` column of a position delete file (reserved by the Iceberg spec).
pub const DELETE_FILE_POS_FIELD_ID: i32 = 2147483545;

/// Rows per Parquet row group, and per Arrow batch handed to the writer.
const BATCH_ROWS: usize = 64 * 1024;

/// The schema of a position delete file: `file_path` (string) and `pos` (long), both required.
pub fn position_delete_schema() -> Result<Schema> {
    Schema::builder()
        .with_schema_id(0)
        .with_fields(vec![
            NestedField::required(
                DELETE_FILE_PATH_FIELD_ID,
                "file_path",
                Type::Primitive(PrimitiveType::String),
            )
            .into(),
            NestedField::required(
                DELETE_FILE_POS_FIELD_ID,
                "pos",
                Type::Primitive(PrimitiveType::Long),
            )
            .into(),
        ])
        .build()
        .map_err(|e| Error::iceberg("building the schema of position delete files", e))
}

/// The rows of one partition: the spec and partition of the data files they target.
struct Group {
    spec_id: i32,
    partition: Struct,
    rows: Vec<(String, i64)>,
}

/// Writes position delete files that delete the rows at the given positions (0-based row
/// numbers within the file) of data files of `table`, and returns them ready to commit.
///
/// Each pair names a target data file (as listed in the table's manifests; its path, partition
/// and partition spec id are used) and one row position in it. The pairs may come in any order
/// and may repeat. One delete file is written per partition of the targets (a position delete
/// file must carry the partition of the data files it applies to), into the table's data
/// location under that partition's path, with a fresh UUIDv7 file name; its rows are sorted by
/// `file_path`, then `pos`, without duplicates. A delete file whose rows all target one data
/// file records it as its `referenced_data_file`. No pairs, no files.
///
/// The files are written in the table's Parquet compression (`write.parquet.compression-codec`);
/// nothing is visible in the table until they are committed.
pub async fn write_position_deletes<'a>(
    table: &Table,
    deletes: impl IntoIterator<Item = (&'a DataFile, i64)>,
) -> Result<Vec<DataFile>> {
    let name = table.identifier().to_string();
    let groups = group_by_partition(&name, table.metadata(), deletes)?;
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let writer = DeleteWriter::new(table, &name)?;
    let mut written = Vec::with_capacity(groups.len());
    for group in groups {
        written.extend(writer.write(table, group).await?);
    }
    Ok(written)
}

/// The pairs of `deletes` grouped by the partition spec and partition of their data files, in
/// first-seen order; an error for a pair that does not name a row of a data file of the table.
fn group_by_partition<'a>(
    name: &str,
    metadata: &TableMetadata,
    deletes: impl IntoIterator<Item = (&'a DataFile, i64)>,
) -> Result<Vec<Group>> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<(i32, Struct), usize> = HashMap::new();
    // Finding a data file's spec id compares copies of it: once per file.
    let mut spec_ids: HashMap<String, i32> = HashMap::new();
    for (data_file, pos) in deletes {
        check_target(name, data_file, pos)?;
        let spec_id = match spec_ids.get(data_file.file_path()) {
            Some(&id) => id,
            None => {
                let Some(id) = partition_spec_id(data_file, metadata) else {
                    return Err(Error::internal(format!(
                        "cannot write position deletes for `{}` of {name}: it names a partition \
                         spec the table does not have",
                        data_file.file_path()
                    ))
                    .with_hint("pass data files read from this table's manifests"));
                };
                spec_ids.insert(data_file.file_path().to_string(), id);
                id
            }
        };
        let key = (spec_id, data_file.partition().clone());
        let slot = *index.entry(key).or_insert_with_key(|(spec_id, partition)| {
            groups.push(Group {
                spec_id: *spec_id,
                partition: partition.clone(),
                rows: Vec::new(),
            });
            groups.len() - 1
        });
        groups[slot].rows.push((data_file.file_path().to_string(), pos));
    }
    Ok(groups)
}

/// An error unless `pos` is a row of the data file `data_file`.
fn check_target(name: &str, data_file: &DataFile, pos: i64) -> Result<()> {
    if data_file.content_type() != DataContentType::Data {
        return Err(Error::internal(format!(
            "cannot write a position delete for `{}` of {name}: it is a {:?} file, not a data \
             file",
            data_file.file_path(),
            data_file.content_type()
        ))
        .with_hint("position deletes target rows of data files"));
    }
    if pos < 0 || pos as u64 >= data_file.record_count() {
        return Err(Error::internal(format!(
            "cannot delete row {pos} of `{}` of {name}: the file has {} rows",
            data_file.file_path(),
            data_file.record_count()
        ))
        .with_hint("row positions are 0-based and must be below the file's record count"));
    }
    Ok(())
}

/// What writing a table's position delete files needs, set up once per call.
struct DeleteWriter {
    name: String,
    arrow_schema: arrow::datatypes::SchemaRef,
    parquet: ParquetWriterBuilder,
    locations: DefaultLocationGenerator,
    table_schema: SchemaRef,
}

impl DeleteWriter {
    fn new(table: &Table, name: &str) -> Result<Self> {
        let context = || format!("writing position delete files of {name}");
        let metadata = table.metadata();
        let schema = Arc::new(position_delete_schema()?);
        let arrow_schema =
            Arc::new(schema_to_arrow_schema(&schema).map_err(|e| Error::iceberg(context(), e))?);
        let properties = WriteOptions::from_table(table).parquet_properties(BATCH_ROWS)?;
        Ok(Self {
            name: name.to_string(),
            arrow_schema,
            parquet: ParquetWriterBuilder::new(properties, schema),
            locations: DefaultLocationGenerator::new(metadata)
                .map_err(|e| Error::iceberg(context(), e))?,
            table_schema: metadata.current_schema().clone(),
        })
    }

    fn context(&self) -> String {
        format!("writing position delete files of {}", self.name)
    }

    /// Writes the delete file(s) of one partition's `group`, its rows sorted and deduplicated.
    async fn write(&self, table: &Table, mut group: Group) -> Result<Vec<DataFile>> {
        let context = || self.context();
        group.rows.sort_unstable();
        group.rows.dedup();
        let key = self.partition_key(table.metadata(), &group)?;
        let file_name = format!("{}-deletes.parquet", uuid::Uuid::now_v7());
        let location = self.locations.generate_location(Some(&key), &file_name);
        let output =
            table.file_io().new_output(&location).map_err(|e| Error::iceberg(context(), e))?;
        let mut writer =
            self.parquet.build(output).await.map_err(|e| Error::iceberg(context(), e))?;
        for chunk in group.rows.chunks(BATCH_ROWS) {
            let paths: ArrayRef =
                Arc::new(StringArray::from_iter_values(chunk.iter().map(|(p, _)| p.as_str())));
            let positions: ArrayRef =
                Arc::new(Int64Array::from_iter_values(chunk.iter().map(|(_, pos)| *pos)));
            let batch = RecordBatch::try_new(self.arrow_schema.clone(), vec![paths, positions])?;
            writer.write(&batch).await.map_err(|e| Error::iceberg(context(), e))?;
        }
        let referenced = {
            let first = &group.rows[0].0;
            group.rows.iter().all(|(p, _)| p == first).then(|| first.clone())
        };
        let mut written = Vec::new();
        for mut builder in writer.close().await.map_err(|e| Error::iceberg(context(), e))? {
            builder
                .content(DataContentType::PositionDeletes)
                .partition(group.partition.clone())
                .partition_spec_id(group.spec_id)
                .referenced_data_file(referenced.clone());
            let file = builder.build().map_err(|e| {
                Error::internal(format!(
                    "{}: cannot describe the delete file written: {e}",
                    context()
                ))
            })?;
            written.push(file);
        }
        Ok(written)
    }

    /// The partition key `group`'s delete file is written under.
    fn partition_key(&self, metadata: &TableMetadata, group: &Group) -> Result<PartitionKey> {
        let name = &self.name;
        let Some(spec) = metadata.partition_spec_by_id(group.spec_id) else {
            return Err(Error::internal(format!(
                "cannot write position deletes for {name}: its data files name partition spec \
                 {}, which the table does not have",
                group.spec_id
            ))
            .with_hint("pass data files read from this table's manifests"));
        };
        if let Err(e) = spec.partition_type(&self.table_schema) {
            return Err(Error::iceberg(
                format!(
                    "cannot write position deletes for {name}: partition spec {} no longer \
                     applies to the table's schema",
                    group.spec_id
                ),
                e,
            ));
        }
        Ok(PartitionKey::new(
            spec.as_ref().clone(),
            self.table_schema.clone(),
            group.partition.clone(),
        ))
    }
}
