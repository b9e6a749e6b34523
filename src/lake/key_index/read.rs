//! Reading Parquet files for the key index: the key column of a data file and the
//! `file_path` / `pos` columns of a position delete file. A column is found by field id, or by
//! name in files written without field ids ([`ColumnRef`]); [`open_columns`] opens a file with
//! a projection to those columns only and [`next_batch`] yields them, one batch at a time, in
//! the order asked for. [`KeyColumn`] resolves a table's key column and [`check_data_file`]
//! refuses files the index cannot read.

use ::iceberg::arrow::ArrowFileReader;
use ::iceberg::io::{FileIO, FileMetadata};
use ::iceberg::spec::{DataContentType, DataFile, DataFileFormat};
use ::iceberg::table::Table;
use arrow::array::RecordBatch;
use futures::TryStreamExt;
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use crate::{Error, ErrorKind, Result};

/// Field id of the `file_path` column of a position delete file (reserved by the Iceberg spec).
pub(super) const DELETE_FILE_PATH_FIELD_ID: i32 = 2147483546;
/// Field id of the `pos` column of a position delete file (reserved by the Iceberg spec).
pub(super) const DELETE_FILE_POS_FIELD_ID: i32 = 2147483545;

/// Rows per Arrow batch when reading key columns and position delete files.
const READ_BATCH_ROWS: usize = 8 * 1024;

/// An error unless `file` is a Parquet data file (the only kind whose keys can be indexed).
pub(super) fn check_data_file(file: &DataFile) -> Result<()> {
    if file.content_type() != DataContentType::Data {
        return Err(Error::internal(format!(
            "cannot index the keys of `{}`: it is a {:?} file, not a data file",
            file.file_path(),
            file.content_type()
        )));
    }
    if file.file_format() != DataFileFormat::Parquet {
        return Err(Error::user(format!(
            "cannot index the keys of `{}`: it is a {:?} file; misql reads Parquet data files",
            file.file_path(),
            file.file_format()
        ))
        .with_hint("rewrite the table's data files as Parquet"));
    }
    Ok(())
}

/// The key column of a table: its field id and name.
pub(super) struct KeyColumn {
    field_id: i32,
    name: String,
}

impl KeyColumn {
    /// The top-level column `key` of `table`'s current schema; an error if there is none or
    /// it is not a primitive column.
    pub(super) fn resolve(table: &Table, key: &str) -> Result<Self> {
        let schema = table.metadata().current_schema();
        let Some(field) = schema.as_struct().field_by_name(key) else {
            let columns: Vec<&str> =
                schema.as_struct().fields().iter().map(|f| f.name.as_str()).collect();
            return Err(Error::user(format!(
                "cannot index {} by `{key}`: the table has no such top-level column",
                table.identifier()
            ))
            .with_hint(format!("the key is one of: {}", columns.join(", "))));
        };
        if !field.field_type.is_primitive() {
            return Err(Error::user(format!(
                "cannot index {} by `{key}`: it is not a primitive column",
                table.identifier()
            ))
            .with_hint("the key must be a string, integer or other primitive column"));
        }
        Ok(Self { field_id: field.id, name: field.name.clone() })
    }

    /// The column to read from the table's data files.
    pub(super) fn column(&self) -> ColumnRef {
        ColumnRef { field_id: self.field_id, name: self.name.clone() }
    }
}

/// A top-level column to read: by field id, or by name in files without field ids.
#[derive(Clone)]
pub(super) struct ColumnRef {
    /// The column's Iceberg field id.
    pub(super) field_id: i32,
    /// The column's name, for files without field ids.
    pub(super) name: String,
}

/// Opens the Parquet `file` for reading `columns` only, in that order (each batch of the stream
/// is reordered by [`next_batch`]'s caller through the returned projection).
pub(super) async fn open_columns(
    file_io: &FileIO,
    file: &DataFile,
    columns: &[ColumnRef],
) -> Result<ColumnStream> {
    let path = file.file_path();
    let context = || format!("opening `{path}`");
    let input = file_io.new_input(path).map_err(|e| Error::iceberg(context(), e))?;
    let reader = input.reader().await.map_err(|e| Error::iceberg(context(), e))?;
    let reader =
        ArrowFileReader::new(FileMetadata { size: file.file_size_in_bytes() }, Box::new(reader));
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| parquet_error(context(), e))?;
    let roots = builder.parquet_schema().root_schema().get_fields();
    let with_ids = roots.iter().any(|f| f.get_basic_info().has_id());
    let mut indices = Vec::with_capacity(columns.len());
    for column in columns {
        let found = roots.iter().position(|f| {
            let info = f.get_basic_info();
            if with_ids {
                info.has_id() && info.id() == column.field_id
            } else {
                f.name() == column.name
            }
        });
        let Some(found) = found else {
            return Err(Error::remote(
                ErrorKind::Permanent,
                format!("`{path}` has no column `{}` (field id {})", column.name, column.field_id),
            )
            .with_hint("the file does not belong to this table, or was written without it"));
        };
        indices.push(found);
    }
    // The projection yields columns in file order; remember where each asked-for one lands.
    let mut sorted = indices.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let order = indices.iter().map(|i| sorted.binary_search(i).unwrap_or(0)).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), sorted);
    let stream = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(|e| parquet_error(context(), e))?;
    Ok(ColumnStream { stream, order })
}

/// Batches of the columns asked for in [`open_columns`], in the order asked for.
pub(super) struct ColumnStream {
    stream: ParquetRecordBatchStream<ArrowFileReader>,
    order: Vec<usize>,
}

/// The next batch of `stream`, its columns in the order asked for, or `None` at the end;
/// `context` describes the read for an error.
pub(super) async fn next_batch(
    stream: &mut ColumnStream,
    context: &impl Fn() -> String,
) -> Result<Option<RecordBatch>> {
    let Some(batch) = stream.stream.try_next().await.map_err(|e| parquet_error(context(), e))?
    else {
        return Ok(None);
    };
    Ok(Some(batch.project(&stream.order)?))
}

fn parquet_error(context: String, e: parquet::errors::ParquetError) -> Error {
    Error::iceberg(
        context,
        ::iceberg::Error::new(::iceberg::ErrorKind::Unexpected, e.to_string()).with_source(e),
    )
}

/// `rows` read from `file` (while `doing`) against the row count its manifest entry gives.
pub(super) fn check_row_count(doing: &str, rows: u64, file: &DataFile) -> Result<()> {
    if rows == file.record_count() {
        return Ok(());
    }
    let message = format!(
        "{doing}: the file has {rows} rows, its manifest entry says {}",
        file.record_count()
    );
    Err(Error::remote(ErrorKind::Permanent, message)
        .with_hint("the table's metadata does not match its files"))
}
