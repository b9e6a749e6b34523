//! Writing Arrow record batches into Parquet data files of an Iceberg table, split by partition.
//!
//! Batches are matched to the table's columns by name and conformed to its exact Arrow shape
//! first (see `conform`), so callers can hand over whatever their projection produced.

use std::collections::HashMap;
use std::sync::Arc;

use ::iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
use ::iceberg::spec::{DataFile, DataFileFormat, PartitionKey, Struct};
use ::iceberg::table::Table;
use ::iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use ::iceberg::writer::file_writer::ParquetWriterBuilder;
use ::iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use ::iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use ::iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use arrow::array::{Array, ArrayRef, RecordBatch};
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{DEFAULT_MAX_ROW_GROUP_ROW_COUNT, WriterProperties};

use super::conform::Conformer;
use crate::{Error, Result};

/// Table property holding the target size of data files, in bytes.
pub const TARGET_FILE_SIZE_PROPERTY: &str = "write.target-file-size-bytes";
/// Table property holding the Parquet compression codec.
pub const COMPRESSION_PROPERTY: &str = "write.parquet.compression-codec";
/// Target data-file size when the table does not set one: 128 MiB.
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 * 1024 * 1024;
/// Compression codec when the table does not set one.
pub const DEFAULT_COMPRESSION: &str = "zstd";
/// The codecs misql writes.
pub const COMPRESSION_CODECS: [&str; 5] = ["zstd", "snappy", "gzip", "lz4", "uncompressed"];

/// How data files are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// A data file is closed and a new one started once it exceeds this many bytes (files can
    /// exceed it by up to one batch).
    pub target_file_size: u64,
    /// Parquet compression: `zstd`, `snappy`, `gzip`, `lz4` or `uncompressed`.
    pub compression: String,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
            compression: DEFAULT_COMPRESSION.to_string(),
        }
    }
}

impl WriteOptions {
    /// The options a table asks for in its `write.target-file-size-bytes` and
    /// `write.parquet.compression-codec` properties; 128 MiB and zstd where they are unset or
    /// unreadable.
    pub fn from_table(table: &Table) -> Self {
        let properties = table.metadata().properties();
        let target_file_size = properties
            .get(TARGET_FILE_SIZE_PROPERTY)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_TARGET_FILE_SIZE);
        let compression = properties
            .get(COMPRESSION_PROPERTY)
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| COMPRESSION_CODECS.contains(&v.as_str()))
            .unwrap_or_else(|| DEFAULT_COMPRESSION.to_string());
        Self { target_file_size, compression }
    }

    /// The Parquet codec for [`Self::compression`], or an error naming the accepted ones.
    pub fn parquet_compression(&self) -> Result<Compression> {
        Ok(match self.compression.to_ascii_lowercase().as_str() {
            "zstd" => Compression::ZSTD(ZstdLevel::default()),
            "snappy" => Compression::SNAPPY,
            "gzip" => Compression::GZIP(GzipLevel::default()),
            "lz4" => Compression::LZ4_RAW,
            "uncompressed" | "none" => Compression::UNCOMPRESSED,
            other => {
                return Err(Error::user(format!("unknown compression codec '{other}'"))
                    .with_hint(format!("use one of {}", COMPRESSION_CODECS.join(", "))));
            }
        })
    }

    /// The Parquet writer settings of every file misql writes, data and position delete files:
    /// [`Self::compression`], misql as `created_by`, and at most `row_group_rows` rows per row
    /// group.
    pub fn parquet_properties(&self, row_group_rows: usize) -> Result<WriterProperties> {
        Ok(WriterProperties::builder()
            .set_compression(self.parquet_compression()?)
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .set_created_by(concat!("misql ", env!("CARGO_PKG_VERSION")).to_string())
            .build())
    }
}

type DataWriterBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;
type DataWriter =
    DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// A data file written, with the key of each of its rows.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    /// The file, ready to commit.
    pub file: DataFile,
    /// The table's key column (its identifier field) for each row of the file, in row order, as
    /// written; `None` for a table without a key, or when the writer did not keep them.
    pub keys: Option<ArrayRef>,
}

/// The open writer of one partition, and the keys of the rows handed to it so far.
struct Part {
    writer: DataWriter,
    keys: Vec<ArrayRef>,
}

/// Writes batches into new data files of a table: one open writer per partition, each rolling
/// to a new file at the target file size. Nothing is visible in the table until the returned
/// files are committed (see `commit::commit`).
///
/// iceberg-rust's partitioning writers are not used: they return the files of all partitions
/// in one list, so which rows (and keys) went into which file is lost. Here each partition's
/// files come back from its own writer in the order they were written, and a file never splits
/// a batch, so a partition's keys, cut by the files' row counts, are each file's keys.
pub struct TableWriter {
    table_name: String,
    conformer: Conformer,
    key: Option<String>,
    /// Whether the keys of the rows written are kept, to be handed back with their files.
    keep_keys: bool,
    builder: DataWriterBuilder,
    /// Splits a batch by partition; `None` for an unpartitioned table.
    splitter: Option<RecordBatchPartitionSplitter>,
    parts: Vec<Part>,
    by_partition: HashMap<Option<Struct>, usize>,
    rows: u64,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("table", &self.table_name)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl TableWriter {
    /// A writer for new data files of `table`, in its current schema and default partition
    /// spec.
    pub fn new(table: &Table, options: &WriteOptions) -> Result<Self> {
        let table_name = table.identifier().to_string();
        let context = || format!("preparing to write data files of {table_name}");
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().clone();
        let target =
            Arc::new(schema_to_arrow_schema(&schema).map_err(|e| Error::iceberg(context(), e))?);
        let key = schema
            .identifier_field_ids()
            .next()
            .and_then(|id| schema.name_by_field_id(id))
            .map(str::to_string);
        let conformer = Conformer::new(target, table_name.clone(), key.clone());

        let properties = options.parquet_properties(DEFAULT_MAX_ROW_GROUP_ROW_COUNT)?;
        let parquet = ParquetWriterBuilder::new(properties, schema.clone());
        let locations =
            DefaultLocationGenerator::new(metadata).map_err(|e| Error::iceberg(context(), e))?;
        let names = DefaultFileNameGenerator::new(
            uuid::Uuid::now_v7().to_string(),
            None,
            DataFileFormat::Parquet,
        );
        let target_file_size = usize::try_from(options.target_file_size).unwrap_or(usize::MAX);
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            target_file_size.max(1),
            table.file_io().clone(),
            locations,
            names,
        );
        let splitter = if spec.is_unpartitioned() {
            None
        } else {
            let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)
                .map_err(|e| Error::iceberg(context(), e))?;
            Some(splitter)
        };
        Ok(Self {
            table_name,
            conformer,
            key,
            keep_keys: false,
            builder: DataFileWriterBuilder::new(rolling),
            splitter,
            parts: Vec::new(),
            by_partition: HashMap::new(),
            rows: 0,
        })
    }

    /// Keeps the key of each row written, so that [`Self::finish`] hands back each file with
    /// its keys (a sync records them in its key index without reading the files back).
    pub fn keeping_keys(mut self) -> Self {
        self.keep_keys = true;
        self
    }

    /// Writes `batch`. Its columns are matched to the table's columns by name (order and exact
    /// Arrow types may differ and are conformed, recursively into structs and lists); a table
    /// column the batch lacks is written as nulls, unless it is required. A batch column the
    /// table lacks, a null in a required column and a value that does not fit its column are
    /// errors naming the column.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = self.conformer.conform(batch)?;
        let rows = batch.num_rows() as u64;
        let parts = match &self.splitter {
            None => vec![(None, batch)],
            Some(splitter) => splitter
                .split(&batch)
                .map_err(|e| {
                    Error::iceberg(format!("partitioning rows of {}", self.table_name), e)
                })?
                .into_iter()
                .map(|(partition, part)| (Some(partition), part))
                .collect(),
        };
        let context = format!("writing data files of {}", self.table_name);
        for (partition, rows) in parts {
            let keys = match (&self.key, self.keep_keys) {
                (Some(key), true) => rows.column_by_name(key).cloned(),
                _ => None,
            };
            let part = self.part(partition).await?;
            part.keys.extend(keys);
            part.writer.write(rows).await.map_err(|e| Error::iceberg(context.clone(), e))?;
        }
        self.rows += rows;
        Ok(())
    }

    /// The open writer of `partition`, started on its first rows.
    async fn part(&mut self, partition: Option<PartitionKey>) -> Result<&mut Part> {
        let data = partition.as_ref().map(|p| p.data().clone());
        let index = match self.by_partition.get(&data) {
            Some(&index) => index,
            None => {
                let writer = self.builder.build(partition).await.map_err(|e| {
                    Error::iceberg(format!("writing data files of {}", self.table_name), e)
                })?;
                self.parts.push(Part { writer, keys: Vec::new() });
                self.by_partition.insert(data, self.parts.len() - 1);
                self.parts.len() - 1
            }
        };
        Ok(&mut self.parts[index])
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Closes every open file and returns the data files written (each with its rows' keys
    /// when they were kept), ready to commit. No file is returned (and none is left behind) when nothing was written.
    pub async fn finish(self) -> Result<Vec<WrittenFile>> {
        let mut written = Vec::new();
        for mut part in self.parts {
            let files = part.writer.close().await.map_err(|e| {
                Error::iceberg(format!("closing data files of {}", self.table_name), e)
            })?;
            let keys = match part.keys.as_slice() {
                [] => None,
                [one] => Some(one.clone()),
                many => {
                    let many: Vec<&dyn Array> = many.iter().map(AsRef::as_ref).collect();
                    Some(arrow::compute::concat(&many)?)
                }
            };
            written.extend(cut_keys(files, keys)?);
        }
        Ok(written)
    }
}

/// Gives each of a partition's `files` (in the order they were written) its part of the
/// partition's `keys`, by the files' row counts.
fn cut_keys(files: Vec<DataFile>, keys: Option<ArrayRef>) -> Result<Vec<WrittenFile>> {
    let rows: u64 = files.iter().map(DataFile::record_count).sum();
    if let Some(keys) = &keys
        && keys.len() as u64 != rows
    {
        return Err(Error::internal(format!(
            "{} keys were written into data files of {rows} rows",
            keys.len()
        )));
    }
    let mut offset = 0;
    let written = files.into_iter().map(|file| {
        let count = usize::try_from(file.record_count()).unwrap_or(usize::MAX);
        let file_keys = keys.as_ref().map(|keys| keys.slice(offset, count));
        offset += count;
        WrittenFile { file, keys: file_keys }
    });
    Ok(written.collect())
}
