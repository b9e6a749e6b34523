//! Building a [`KeyIndex`] from a table's current snapshot, in three steps: the live files of
//! the snapshot ([`live_files`]), the row positions its position delete files delete in them
//! ([`deleted_positions`]), and the keys of the rows that are left, one file at a time
//! ([`KeyIndex::load_data_files`]).

use std::collections::HashMap;
use std::sync::Arc;

use ::iceberg::io::FileIO;
use ::iceberg::spec::{DataContentType, DataFile, DataFileFormat, ManifestEntry};
use ::iceberg::table::Table;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use futures::{StreamExt, TryStreamExt};

use super::KeyIndex;
use super::oddities::Oddities;
use super::read::{
    ColumnRef, ColumnStream, DELETE_FILE_PATH_FIELD_ID, DELETE_FILE_POS_FIELD_ID, KeyColumn,
    check_row_count, next_batch, open_columns,
};
use crate::lake::live::live_entries;
use crate::{Error, ErrorKind, Result};

/// Files opened ahead (footer read) while the previous one is being indexed.
const OPEN_AHEAD: usize = 4;

/// Files with their data sequence numbers.
type Sequenced = Vec<(i64, Arc<DataFile>)>;

/// Per live data file path: its sequence number and its deleted row positions (sorted once
/// [`sort_deleted`] ran).
type Deleted<'a> = HashMap<&'a str, (i64, Vec<u64>)>;

/// Where the keys are read from: the table (`name`, for messages) and its key column.
struct Source<'a> {
    name: &'a str,
    key: &'a str,
    file_io: &'a FileIO,
    column: ColumnRef,
}

impl KeyIndex {
    /// Builds the index of `table`'s current snapshot, keyed by its column `key` (a top-level
    /// column; string and integer columns are stored compactly, others by their string form).
    ///
    /// For every live data file only the key column is read (Parquet projection by field id, by
    /// name for files written without field ids), one batch at a time; the table's position
    /// delete files are read first and the rows they delete are left out. A table without
    /// snapshots gives an empty index. Files are read through `table.file_io()`.
    ///
    /// Errors: equality delete files or deletion vectors in the snapshot (not supported), data
    /// files that are not Parquet, a key column that is missing or not a primitive column, a file
    /// whose row count differs from its manifest entry, and any read failure.
    pub async fn build(table: &Table, key: &str) -> Result<Self> {
        let name = table.identifier().to_string();
        let mut index = Self::new();
        if table.metadata().current_snapshot().is_none() {
            return Ok(index);
        }
        let column = KeyColumn::resolve(table, key)?.column();
        let live = live_entries(table).await?;
        let (data, deletes) = live_files(live.iter().map(|l| &l.entry), &name)?;
        let mut deleted = deleted_positions(table.file_io(), &data, deletes).await?;
        let deleted_rows = sort_deleted(&mut deleted);
        let live_rows =
            data.iter().map(|(_, f)| f.record_count()).sum::<u64>().saturating_sub(deleted_rows);
        let source = Source { name: &name, key, file_io: table.file_io(), column };
        let mut oddities = Oddities::default();
        index.load_data_files(&source, &data, &deleted, live_rows, &mut oddities).await?;
        index.finish_bulk(&mut oddities);
        oddities.refuse_duplicates(&name)?;
        oddities.report(&format!("indexing the keys of {name}"));
        Ok(index)
    }

    /// Appends the keys of the rows of `data` (older files first) that `deleted` leaves, one
    /// file at a time, a few opened ahead; `live_rows` of them are expected.
    async fn load_data_files(
        &mut self,
        source: &Source<'_>,
        data: &[(i64, Arc<DataFile>)],
        deleted: &Deleted<'_>,
        live_rows: u64,
        oddities: &mut Oddities,
    ) -> Result<()> {
        let mut reserve = Some(live_rows as usize);
        let files: Vec<Arc<DataFile>> = data.iter().map(|(_, file)| file.clone()).collect();
        let mut opened = futures::stream::iter(files)
            .map(|file| {
                let (file_io, column) = (source.file_io.clone(), source.column.clone());
                async move {
                    let stream = open_columns(&file_io, &file, &[column]).await?;
                    Ok::<_, Error>((file, stream))
                }
            })
            .buffered(OPEN_AHEAD);
        while let Some((file, stream)) = opened.try_next().await? {
            let skip = deleted.get(file.file_path()).map(|(_, l)| l.as_slice()).unwrap_or(&[]);
            self.load_data_file(source, file, stream, skip, &mut reserve, oddities).await?;
        }
        Ok(())
    }

    /// Appends the keys of the rows of `file` (read from `stream`) but those at the positions
    /// `skip`; reserves room for `reserve` keys first, once.
    async fn load_data_file(
        &mut self,
        source: &Source<'_>,
        file: Arc<DataFile>,
        mut stream: ColumnStream,
        skip: &[u64],
        reserve: &mut Option<usize>,
        oddities: &mut Oddities,
    ) -> Result<()> {
        let context = || format!("reading the `{}` column of `{}`", source.key, file.file_path());
        let slot = self.register(file.clone(), source.name)?;
        let mut rows = 0u64;
        let mut skip_at = 0usize;
        while let Some(batch) = next_batch(&mut stream, &context).await? {
            let keys = batch.column(0);
            if !keys.is_empty()
                && let Some(rows) = reserve.take()
            {
                self.reserve_like(keys, rows)?;
            }
            self.insert_rows(slot, rows, keys, skip, &mut skip_at, true, oddities)?;
            rows += keys.len() as u64;
        }
        check_row_count(&context(), rows, &file)?;
        self.release_if_empty(slot);
        Ok(())
    }
}

/// The live data files (older first, so that of two live rows with one key the newer one wins)
/// and position delete files of a snapshot's `entries`; an error for what misql cannot read.
fn live_files<'a>(
    entries: impl Iterator<Item = &'a ManifestEntry>,
    name: &str,
) -> Result<(Sequenced, Sequenced)> {
    let (mut data, mut deletes) = (Vec::new(), Vec::new());
    for entry in entries {
        let file = entry.data_file();
        let parquet = file.file_format() == DataFileFormat::Parquet;
        match file.content_type() {
            DataContentType::Data if parquet => {
                data.push((entry.sequence_number().unwrap_or_default(), Arc::new(file.clone())));
            }
            DataContentType::Data => {
                return Err(unsupported(
                    name,
                    file,
                    &format!("a {:?} data file", file.file_format()),
                )
                .with_hint("misql reads Parquet data files only"));
            }
            DataContentType::PositionDeletes if parquet => {
                let sequence = entry.sequence_number().unwrap_or(i64::MAX);
                deletes.push((sequence, Arc::new(file.clone())));
            }
            DataContentType::PositionDeletes => {
                return Err(unsupported(name, file, "a deletion vector").with_hint(
                    "misql reads Parquet position delete files; rewrite the table (OPTIMIZE) to \
                     apply the deletes",
                ));
            }
            DataContentType::EqualityDeletes => {
                return Err(unsupported(name, file, "an equality delete file").with_hint(
                    "misql writes position deletes; rewrite the table (OPTIMIZE) to apply the \
                     equality deletes",
                ));
            }
        }
    }
    data.sort_by_key(|(sequence, _)| *sequence);
    Ok((data, deletes))
}

/// A table whose snapshot holds `what` (`file`), which the key index cannot read.
fn unsupported(name: &str, file: &DataFile, what: &str) -> Error {
    Error::user(format!(
        "cannot index the keys of {name}: its snapshot has {what} (`{}`), which misql does not \
         read",
        file.file_path()
    ))
}

/// The row positions the position delete files `deletes` delete in the live data files `data`
/// (unsorted; see [`sort_deleted`]). Delete files that target no live file are not read.
async fn deleted_positions<'a>(
    file_io: &FileIO,
    data: &'a [(i64, Arc<DataFile>)],
    deletes: Sequenced,
) -> Result<Deleted<'a>> {
    let mut deleted: Deleted<'a> =
        data.iter().map(|(sequence, file)| (file.file_path(), (*sequence, Vec::new()))).collect();
    let applicable: Sequenced = deletes
        .into_iter()
        .filter(|(_, file)| match file.referenced_data_file() {
            Some(target) => deleted.contains_key(target.as_str()),
            None => true,
        })
        .collect();
    let columns = [
        ColumnRef { field_id: DELETE_FILE_PATH_FIELD_ID, name: "file_path".into() },
        ColumnRef { field_id: DELETE_FILE_POS_FIELD_ID, name: "pos".into() },
    ];
    let mut opened = futures::stream::iter(applicable)
        .map(|(sequence, file)| {
            let (file_io, columns) = (file_io.clone(), columns.clone());
            async move {
                let stream = open_columns(&file_io, &file, &columns).await?;
                Ok::<_, Error>((sequence, file, stream))
            }
        })
        .buffered(OPEN_AHEAD);
    while let Some((sequence, file, mut stream)) = opened.try_next().await? {
        let context = || format!("reading position delete file `{}`", file.file_path());
        while let Some(batch) = next_batch(&mut stream, &context).await? {
            collect_deleted(&batch, sequence, &mut deleted, &context)?;
        }
    }
    Ok(deleted)
}

/// Adds the `(file_path, pos)` rows of `batch`, from a delete file of sequence number
/// `delete_sequence`, to `deleted`: a position delete applies to data files of the same or an
/// older sequence number; deletes of files no longer live are moot.
fn collect_deleted(
    batch: &RecordBatch,
    delete_sequence: i64,
    deleted: &mut Deleted<'_>,
    context: &impl Fn() -> String,
) -> Result<()> {
    let paths = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
    let positions = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
    let positions = positions.as_primitive::<Int64Type>();
    for (path, position) in paths.as_string::<i32>().iter().zip(positions.iter()) {
        let (Some(path), Some(position)) = (path, position) else {
            return Err(Error::remote(
                ErrorKind::Permanent,
                format!("{}: a row has a null file_path or pos", context()),
            ));
        };
        if let Some((data_sequence, list)) = deleted.get_mut(path)
            && *data_sequence <= delete_sequence
            && let Ok(position) = u64::try_from(position)
        {
            list.push(position);
        }
    }
    Ok(())
}

/// Sorts and dedups each file's deleted positions; returns how many rows they delete.
fn sort_deleted(deleted: &mut Deleted<'_>) -> u64 {
    let mut rows = 0u64;
    for (_, list) in deleted.values_mut() {
        list.sort_unstable();
        list.dedup();
        rows += list.len() as u64;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_positions_apply_to_older_or_same_sequence_files_only() {
        let mut deleted: Deleted<'_> =
            HashMap::from([("a", (3, Vec::new())), ("b", (5, Vec::new()))]);
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("file_path", DataType::Utf8, false),
            arrow::datatypes::Field::new("pos", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow::array::StringArray::from(vec!["a", "b", "a", "gone", "a"])),
                Arc::new(arrow::array::Int64Array::from(vec![7, 1, 2, 0, 7])),
            ],
        )
        .unwrap();
        collect_deleted(&batch, 4, &mut deleted, &String::new).unwrap();
        assert_eq!(sort_deleted(&mut deleted), 2);
        assert_eq!(deleted["a"].1, vec![2, 7]);
        assert!(deleted["b"].1.is_empty(), "a newer data file is not touched by older deletes");
    }
}
