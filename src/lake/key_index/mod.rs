//! An in-memory index from each live row's key to where the row is: its data file and its row
//! position in that file. Deleting a key from an Iceberg table with v2 *position deletes* needs
//! exactly that pair, so the change-stream phase of a sync keeps one of these per target table.
//!
//! The index is built once from the table's current snapshot ([`KeyIndex::build`]: only the key
//! column of each live data file is read, and the table's position delete files are applied),
//! then kept up to date as the sync writes: [`KeyIndex::remove_keys`] when keys are deleted or
//! replaced, [`KeyIndex::add_file`] for each data file it writes (the writer hands back each
//! file's keys, so the file is not read back), [`KeyIndex::add_rewritten_file`] for each file
//! its compaction writes (read back one at a time: a compaction's keys are not held in memory).
//!
//! # Memory
//!
//! Keys are stored in the most compact of three forms, chosen from the key's string form alone
//! (so a lookup always finds what was stored, whatever the column type):
//!
//! - 24 lowercase hex characters (a MongoDB ObjectId as misql writes it): packed into 12 bytes;
//! - a canonical decimal integer that fits an `i64` (`0`, `-17`, `123`, not `+1` or `007`):
//!   8 bytes; keys of integer columns are stored this way directly;
//! - anything else: the string itself, in a `Box<str>`.
//!
//! The location is a 4-byte index into a table of files plus a 4-byte row position. Entries
//! live in a vector sorted by key (looked up by binary search), so an ObjectId key costs its 20
//! bytes plus little else: keys added since the vector was last rebuilt wait in a small hash map
//! (merged in once it holds 1/16 of the vector), and removed keys stay as dead entries until they
//! come back (an upsert revives its key in place) or until they are 1/8 of the vector. Measured
//! (`cargo test --test it key_index::memory -- --nocapture`): 20.0 bytes per ObjectId key for
//! 100k keys built from a table, 20.6 for 500k and 22.7 for 1M added file by file. A key kept
//! as a string costs 24 bytes plus its allocation. [`KeyIndex::heap_bytes`] reports the
//! estimate.

mod build;
mod key;
mod oddities;
mod read;
mod tier;

use std::collections::HashMap;
use std::mem::size_of;
use std::sync::Arc;

use ::iceberg::spec::DataFile;
use ::iceberg::table::Table;
use arrow::array::{Array, ArrayRef};

use self::key::{Key, for_each_key};
use self::oddities::Oddities;
use self::read::{KeyColumn, check_data_file, check_row_count, next_batch, open_columns};
use self::tier::{Slot, Tier, table_heap_bytes};
use crate::{Error, Result};

/// Where a live row is: its data file and its 0-based row position in that file, which is what a
/// position delete names.
#[derive(Debug, Clone, PartialEq)]
pub struct RowLocation {
    /// The data file holding the row, as listed in the table's manifests (or as returned by the
    /// writer for files added since): its path, partition and partition spec are what a position
    /// delete file for it must carry.
    pub file: Arc<DataFile>,
    /// The row's 0-based position in the file.
    pub position: u64,
}

impl RowLocation {
    /// The path of the data file holding the row.
    pub fn path(&self) -> &str {
        self.file.file_path()
    }
}

/// One data file with live rows in the index.
#[derive(Debug)]
struct FileEntry {
    file: Arc<DataFile>,
    /// Keys of the index that point into this file.
    live: u64,
}

/// Maps the key of each live row of a table to its [`RowLocation`].
///
/// Keys are looked up by their string form: a string key as is, an integer key in decimal
/// (`"42"`), a key of another type as Arrow casts it to a string.
#[derive(Debug, Default)]
pub struct KeyIndex {
    object_ids: Tier<[u8; 12]>,
    longs: Tier<i64>,
    strings: Tier<Box<str>>,
    /// The file table; `None` marks a free slot (a file without live rows).
    files: Vec<Option<FileEntry>>,
    free: Vec<u32>,
    by_path: HashMap<Box<str>, u32>,
}

impl KeyIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the rows of a newly written data file: `keys` holds its key column, one value per
    /// row in row order (`keys.len()` must equal the file's record count). A key already in the
    /// index moves to the new file, with a warning: the caller should have removed it first.
    /// Adding a file that is already in the index is an error.
    pub fn add_file(&mut self, file: &DataFile, keys: &ArrayRef) -> Result<()> {
        check_data_file(file)?;
        if keys.len() as u64 != file.record_count() {
            return Err(Error::internal(format!(
                "cannot index data file `{}`: {} keys given for its {} rows",
                file.file_path(),
                keys.len(),
                file.record_count()
            ))
            .with_hint("pass the file's whole key column, in row order"));
        }
        self.record(file, "the table", std::slice::from_ref(keys), false)
    }

    /// Reads the column `key` of `file`, a data file a compaction of `table` wrote in place of
    /// others, through `table.file_io()`, and records its rows as [`Self::add_file`] does; its
    /// keys were live in the files it replaces, so each moves to it (no warning). The column is
    /// read whole before anything is recorded, so a failed read leaves the index as it was.
    pub async fn add_rewritten_file(
        &mut self,
        table: &Table,
        file: &DataFile,
        key: &str,
    ) -> Result<()> {
        check_data_file(file)?;
        let name = table.identifier().to_string();
        self.check_new(file.file_path(), &name)?;
        let key_column = KeyColumn::resolve(table, key)?;
        let mut stream = open_columns(table.file_io(), file, &[key_column.column()]).await?;
        let context = || format!("reading the `{key}` column of `{}`", file.file_path());
        let mut columns = Vec::new();
        let mut rows = 0u64;
        while let Some(batch) = next_batch(&mut stream, &context).await? {
            rows += batch.num_rows() as u64;
            columns.push(batch.column(0).clone());
        }
        check_row_count(&context(), rows, file)?;
        self.record(file, &name, &columns, true)
    }

    /// Records the rows of `file` of `table`, whose key column comes in `columns` (in row
    /// order); a key already in the index moves to it, with a warning unless `moving`.
    fn record(
        &mut self,
        file: &DataFile,
        table: &str,
        columns: &[ArrayRef],
        moving: bool,
    ) -> Result<()> {
        let slot = self.register(Arc::new(file.clone()), table)?;
        let mut oddities = Oddities::default();
        let mut position = 0u64;
        let mut result = Ok(());
        for keys in columns {
            result = self.insert_rows(slot, position, keys, &[], &mut 0, false, &mut oddities);
            if result.is_err() {
                break;
            }
            position += keys.len() as u64;
        }
        self.release_if_empty(slot);
        if moving {
            oddities.duplicates = 0;
        }
        oddities.report(&format!("indexing the keys of `{}`", file.file_path()));
        result
    }

    /// Removes `key` (in its string form) and returns where its live row is, or `None` if no
    /// live row has that key.
    pub fn remove(&mut self, key: &str) -> Option<RowLocation> {
        self.remove_key(Key::of_str(key))
    }

    /// Removes each key of `keys` (a key column, read as the files' key columns are read) and
    /// returns where the live rows of those that had one are.
    pub fn remove_keys(&mut self, keys: &ArrayRef) -> Result<Vec<RowLocation>> {
        let mut found = Vec::new();
        for_each_key(keys, |_, key| found.extend(key.and_then(|key| self.remove_key(key))))?;
        Ok(found)
    }

    fn remove_key(&mut self, key: Key<'_>) -> Option<RowLocation> {
        let slot = match key {
            Key::ObjectId(oid) => self.object_ids.remove(&oid),
            Key::Long(n) => self.longs.remove(&n),
            Key::Str(s) => self.strings.remove(s),
        }?;
        let location = self.location(slot);
        self.forget(slot);
        Some(location)
    }

    /// Removes every key whose live row is in one of the data files at `paths`; returns where
    /// those rows are (a re-copy deletes the rows it did not find again).
    pub fn remove_in_files(
        &mut self,
        paths: &std::collections::HashSet<String>,
    ) -> Vec<RowLocation> {
        let slots: std::collections::HashSet<u32> =
            paths.iter().filter_map(|path| self.by_path.get(path.as_str()).copied()).collect();
        if slots.is_empty() {
            return Vec::new();
        }
        let doomed = |slot: Slot| slots.contains(&slot.file);
        let mut removed = self.object_ids.remove_where(doomed);
        removed.extend(self.longs.remove_where(doomed));
        removed.extend(self.strings.remove_where(doomed));
        let locations = removed.iter().map(|&slot| self.location(slot)).collect();
        for slot in removed {
            self.forget(slot);
        }
        locations
    }

    /// Where the live row with `key` (in its string form) is, or `None`.
    pub fn get(&self, key: &str) -> Option<RowLocation> {
        let slot = match Key::of_str(key) {
            Key::ObjectId(oid) => self.object_ids.get(&oid),
            Key::Long(n) => self.longs.get(&n),
            Key::Str(s) => self.strings.get(s),
        }?;
        Some(self.location(slot))
    }

    /// Whether a live row has `key`.
    pub fn contains(&self, key: &str) -> bool {
        match Key::of_str(key) {
            Key::ObjectId(oid) => self.object_ids.get(&oid).is_some(),
            Key::Long(n) => self.longs.get(&n).is_some(),
            Key::Str(s) => self.strings.get(s).is_some(),
        }
    }

    /// The number of keys (live rows) in the index.
    pub fn len(&self) -> usize {
        self.object_ids.len() + self.longs.len() + self.strings.len()
    }

    /// Whether the index has no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of data files with at least one live row in the index.
    pub fn file_count(&self) -> usize {
        self.by_path.len()
    }

    /// The number of live rows of the data file at `path` (0 for a file the index does not
    /// hold).
    pub fn live_rows(&self, path: &str) -> u64 {
        self.by_path
            .get(path)
            .and_then(|&slot| self.files[slot as usize].as_ref())
            .map_or(0, |entry| entry.live)
    }

    /// Approximate heap bytes used by the index: its entry vectors and hash maps (by capacity,
    /// not just by length, dead entries included), the allocations of keys stored as strings,
    /// and the file table with the file descriptions it holds. See [`Self::bytes_per_key`].
    pub fn heap_bytes(&self) -> usize {
        let files: usize =
            self.files.iter().flatten().map(|entry| data_file_heap_bytes(&entry.file)).sum();
        let paths: usize = self.by_path.keys().map(|p| p.len()).sum();
        self.object_ids.heap_bytes()
            + self.longs.heap_bytes()
            + self.strings.heap_bytes()
            + self.files.capacity() * size_of::<Option<FileEntry>>()
            + self.free.capacity() * size_of::<u32>()
            + table_heap_bytes(&self.by_path)
            + paths
            + files
    }

    /// [`Self::heap_bytes`] divided by the number of keys (0 for an empty index).
    pub fn bytes_per_key(&self) -> f64 {
        if self.is_empty() { 0.0 } else { self.heap_bytes() as f64 / self.len() as f64 }
    }

    // -----------------------------------------------------------------------------------------

    /// An error if the file at `path` is already in the index.
    fn check_new(&self, path: &str, table: &str) -> Result<()> {
        if self.by_path.contains_key(path) {
            return Err(Error::internal(format!(
                "data file `{path}` of {table} is already in the key index"
            ))
            .with_hint("each data file is added once"));
        }
        Ok(())
    }

    /// Puts `file` in the file table and returns its slot.
    fn register(&mut self, file: Arc<DataFile>, table: &str) -> Result<u32> {
        self.check_new(file.file_path(), table)?;
        let path: Box<str> = file.file_path().into();
        let entry = FileEntry { file, live: 0 };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.files[slot as usize] = Some(entry);
                slot
            }
            None => {
                let slot = u32::try_from(self.files.len())
                    .ok()
                    .filter(|&n| n < u32::MAX)
                    .ok_or_else(|| {
                        Error::user(format!(
                            "{table} has more data files than the key index can hold"
                        ))
                        .with_hint("compact the table (OPTIMIZE) into fewer files")
                    })?;
                self.files.push(Some(entry));
                slot
            }
        };
        self.by_path.insert(path, slot);
        Ok(slot)
    }

    /// Frees the file slot if no key points into it any more.
    fn release_if_empty(&mut self, slot: u32) {
        let entry = &mut self.files[slot as usize];
        if entry.as_ref().is_some_and(|e| e.live == 0) {
            if let Some(entry) = entry.take() {
                self.by_path.remove(entry.file.file_path());
            }
            self.free.push(slot);
        }
    }

    /// Drops one key from the count of its file, freeing the file when none is left.
    fn forget(&mut self, slot: Slot) {
        if let Some(entry) = self.files[slot.file as usize].as_mut() {
            entry.live -= 1;
        }
        self.release_if_empty(slot.file);
    }

    fn location(&self, slot: Slot) -> RowLocation {
        let entry = self.files[slot.file as usize]
            .as_ref()
            .expect("a key of the index points into a file of its file table");
        RowLocation { file: entry.file.clone(), position: u64::from(slot.position) }
    }

    /// Reserves room for `rows` keys in the tier the first key of `keys` goes to (for a bulk
    /// load).
    fn reserve_like(&mut self, keys: &ArrayRef, rows: usize) -> Result<()> {
        let first = (0..keys.len()).find(|&i| keys.is_valid(i));
        let Some(first) = first else { return Ok(()) };
        let sample = keys.slice(first, 1);
        let mut kind = 0;
        for_each_key(&sample, |_, key| {
            kind = match key {
                Some(Key::ObjectId(_)) => 1,
                Some(Key::Long(_)) => 2,
                Some(Key::Str(_)) => 3,
                None => 0,
            };
        })?;
        match kind {
            1 => self.object_ids.reserve(rows),
            2 => self.longs.reserve(rows),
            3 => self.strings.reserve(rows),
            _ => {}
        }
        Ok(())
    }

    /// Records the rows `first_position..` of file `file` whose keys are `keys`, except the
    /// positions in `deleted` (sorted, scanned from `*deleted_at` on). In `bulk` mode the keys
    /// are only appended, and [`Self::finish_bulk`] must run before the index is used.
    #[allow(clippy::too_many_arguments)]
    fn insert_rows(
        &mut self,
        file: u32,
        first_position: u64,
        keys: &ArrayRef,
        deleted: &[u64],
        deleted_at: &mut usize,
        bulk: bool,
        oddities: &mut Oddities,
    ) -> Result<()> {
        let last = first_position + keys.len() as u64;
        if last > u64::from(u32::MAX) + 1 {
            let path = self.files[file as usize].as_ref().map(|e| e.file.file_path().to_string());
            return Err(Error::user(format!(
                "data file `{}` has more than {} rows, more than the key index can address",
                path.unwrap_or_default(),
                u32::MAX
            ))
            .with_hint(
                "rewrite the table (OPTIMIZE) with a smaller write.target-file-size-bytes",
            ));
        }
        let mut replaced: Vec<Slot> = Vec::new();
        let mut added = 0u64;
        let Self { object_ids, longs, strings, .. } = self;
        for_each_key(keys, |i, key| {
            let position = first_position + i as u64;
            while *deleted_at < deleted.len() && deleted[*deleted_at] < position {
                *deleted_at += 1;
            }
            if deleted.get(*deleted_at) == Some(&position) {
                return;
            }
            let slot = Slot { file, position: position as u32 };
            let old = match key {
                None => {
                    oddities.nulls += 1;
                    return;
                }
                Some(Key::ObjectId(oid)) if bulk => object_ids.push(oid, slot),
                Some(Key::Long(n)) if bulk => longs.push(n, slot),
                Some(Key::Str(s)) if bulk => strings.push(s.into(), slot),
                Some(Key::ObjectId(oid)) => object_ids.insert(&oid, || oid, slot),
                Some(Key::Long(n)) => longs.insert(&n, || n, slot),
                Some(Key::Str(s)) => strings.insert(s, || s.into(), slot),
            };
            added += 1;
            if let Some(old) = old {
                oddities.duplicate(key);
                replaced.push(old);
            }
        })?;
        if let Some(entry) = self.files[file as usize].as_mut() {
            entry.live += added;
        }
        for old in replaced {
            self.forget(old);
        }
        Ok(())
    }

    /// Ends a bulk load: sorts the keys appended and, of a key appended more than once, keeps
    /// the last.
    fn finish_bulk(&mut self, oddities: &mut Oddities) {
        let mut replaced = Vec::new();
        self.object_ids.finish_bulk(|oid, slot| {
            oddities.duplicate(Some(Key::ObjectId(*oid)));
            replaced.push(slot);
        });
        self.longs.finish_bulk(|n, slot| {
            oddities.duplicate(Some(Key::Long(*n)));
            replaced.push(slot);
        });
        self.strings.finish_bulk(|s, slot| {
            oddities.duplicate(Some(Key::Str(s)));
            replaced.push(slot);
        });
        for old in replaced {
            self.forget(old);
        }
    }
}

/// Approximate heap bytes of a data file description: the struct, its path, and its per-column
/// statistics.
fn data_file_heap_bytes(file: &DataFile) -> usize {
    let counts = file.column_sizes().len()
        + file.value_counts().len()
        + file.null_value_counts().len()
        + file.nan_value_counts().len();
    let bounds = file.lower_bounds().len() + file.upper_bounds().len();
    size_of::<DataFile>() + file.file_path().len() + counts * 24 + bounds * 64
}
