//! The typed `WITH (...)` options of `CREATE SYNC`. Options are taken one by one; an unknown,
//! repeated or malformed one is an error at its position, never silently ignored (the checks of
//! a value, shared with `ATTACH`, `OPTIMIZE` and `VACUUM`, are in option_value.rs).

use std::fmt;
use std::time::Duration;

use super::option_value::{
    RawOption, at_most, boolean, duration, duration_or_zero, format_duration, format_size,
    given_twice, one_of, positive, quote_string, size, unknown,
};
use crate::Result;

/// The options of a sync (`CREATE SYNC ... WITH (...)`), with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    /// `flush_interval`: the longest time changes wait before a commit. Default 10s.
    pub flush_interval: Duration,
    /// `max_batch_rows`: a commit happens at the latest after this many rows. Default 100000.
    pub max_batch_rows: usize,
    /// `max_batch_bytes`: a commit happens at the latest after this many bytes of Arrow data.
    /// Written as a size (`'64MB'` = 64×10⁶, `'64MiB'` = 64×2²⁰) or an integer. Default 64 MiB.
    pub max_batch_bytes: u64,
    /// `max_transaction_rows`: a due batch (`max_batch_rows`, `max_batch_bytes`,
    /// `flush_interval`) is held open for at most this many more changes for the end of an open
    /// MongoDB transaction. A larger transaction is committed in parts (with a warning).
    /// Default 10000.
    pub max_transaction_rows: usize,
    /// `on_error`: what a value that does not fit its column does. Default `fail`.
    pub on_error: OnError,
    /// `on_type_change`: what a field whose BSON type changes does. Default `fail`.
    pub on_type_change: OnTypeChange,
    /// `sample_size`: documents sampled to infer the source schema. Default 1000.
    pub sample_size: usize,
    /// `target_file_size`: the size data files are rolled over at, in bytes. Default 128 MiB.
    pub target_file_size: u64,
    /// `compression`: the Parquet codec, one of [`COMPRESSIONS`]. Default `zstd`.
    pub compression: String,
    /// `delete_mode`: how deleted rows are written. Default `position`.
    pub delete_mode: DeleteMode,
    /// `auto_optimize`: the sync compacts its table and merges its manifests between batches.
    /// Default true.
    pub auto_optimize: bool,
    /// `retain_snapshots`: snapshots older than this are expired, and unreferenced files older
    /// than this deleted, by the sync between batches. Default 1h.
    pub retain_snapshots: Duration,
    /// `max_snapshots`: the sync keeps at most this many snapshots (the newest). Default 50.
    pub max_snapshots: usize,
    /// `lease_ttl`: how long the sync's lease on its table lasts without renewal; a standby
    /// takes over after it. Default 30s.
    pub lease_ttl: Duration,
    /// `snapshot_parallelism`: the `_id` ranges the snapshot reads concurrently. Default
    /// [`DEFAULT_SNAPSHOT_PARALLELISM`].
    pub snapshot_parallelism: usize,
    /// `consistent` (database syncs): the tables commit together, at cuts of the database's
    /// stream, so every state of the catalog is one state of the database. Default false.
    pub consistent: bool,
    /// The options written in the statement, in the order given (the rest are defaults).
    pub given: Vec<SyncOption>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(10),
            max_batch_rows: 100_000,
            max_batch_bytes: 64 * MIB,
            max_transaction_rows: 10_000,
            on_error: OnError::Fail,
            on_type_change: OnTypeChange::Fail,
            sample_size: 1000,
            target_file_size: 128 * MIB,
            compression: "zstd".to_string(),
            delete_mode: DeleteMode::Position,
            auto_optimize: true,
            retain_snapshots: Duration::from_secs(3600),
            max_snapshots: 50,
            lease_ttl: Duration::from_secs(30),
            snapshot_parallelism: DEFAULT_SNAPSHOT_PARALLELISM,
            consistent: false,
            given: Vec::new(),
        }
    }
}

/// The default `snapshot_parallelism`.
pub const DEFAULT_SNAPSHOT_PARALLELISM: usize = 1;

/// The most `_id` ranges a snapshot reads at once.
pub const MAX_SNAPSHOT_PARALLELISM: usize = 64;

/// The Parquet compression codecs `compression` accepts.
pub const COMPRESSIONS: [&str; 5] = ["zstd", "snappy", "gzip", "lz4", "uncompressed"];

const MIB: u64 = 1 << 20;

/// The name of a sync option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOption {
    /// `flush_interval`
    FlushInterval,
    /// `max_batch_rows`
    MaxBatchRows,
    /// `max_batch_bytes`
    MaxBatchBytes,
    /// `max_transaction_rows`
    MaxTransactionRows,
    /// `on_error`
    OnError,
    /// `on_type_change`
    OnTypeChange,
    /// `sample_size`
    SampleSize,
    /// `target_file_size`
    TargetFileSize,
    /// `compression`
    Compression,
    /// `delete_mode`
    DeleteMode,
    /// `auto_optimize`
    AutoOptimize,
    /// `retain_snapshots`
    RetainSnapshots,
    /// `max_snapshots`
    MaxSnapshots,
    /// `lease_ttl`
    LeaseTtl,
    /// `snapshot_parallelism`
    SnapshotParallelism,
    /// `consistent`
    Consistent,
}

impl SyncOption {
    /// Every sync option.
    pub const ALL: [SyncOption; 16] = [
        SyncOption::FlushInterval,
        SyncOption::MaxBatchRows,
        SyncOption::MaxBatchBytes,
        SyncOption::MaxTransactionRows,
        SyncOption::OnError,
        SyncOption::OnTypeChange,
        SyncOption::SampleSize,
        SyncOption::TargetFileSize,
        SyncOption::Compression,
        SyncOption::DeleteMode,
        SyncOption::AutoOptimize,
        SyncOption::RetainSnapshots,
        SyncOption::MaxSnapshots,
        SyncOption::LeaseTtl,
        SyncOption::SnapshotParallelism,
        SyncOption::Consistent,
    ];

    /// The option's name as written in `WITH (...)`.
    pub fn name(self) -> &'static str {
        match self {
            SyncOption::FlushInterval => "flush_interval",
            SyncOption::MaxBatchRows => "max_batch_rows",
            SyncOption::MaxBatchBytes => "max_batch_bytes",
            SyncOption::MaxTransactionRows => "max_transaction_rows",
            SyncOption::OnError => "on_error",
            SyncOption::OnTypeChange => "on_type_change",
            SyncOption::SampleSize => "sample_size",
            SyncOption::TargetFileSize => "target_file_size",
            SyncOption::Compression => "compression",
            SyncOption::DeleteMode => "delete_mode",
            SyncOption::AutoOptimize => "auto_optimize",
            SyncOption::RetainSnapshots => "retain_snapshots",
            SyncOption::MaxSnapshots => "max_snapshots",
            SyncOption::LeaseTtl => "lease_ttl",
            SyncOption::SnapshotParallelism => "snapshot_parallelism",
            SyncOption::Consistent => "consistent",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|option| option.name() == name)
    }
}

/// What happens to a value that does not fit its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop the sync with an error (default).
    Fail,
    /// Leave the document out and count it.
    Skip,
    /// Write the raw document and the reason into `<table>__errors`.
    DeadLetter,
}

/// What happens when a field's BSON type changes from the inferred one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTypeChange {
    /// Stop the sync with an error (default).
    Fail,
    /// Store the value as relaxed Extended JSON text.
    Stringify,
    /// Write the raw document and the reason into `<table>__errors`.
    DeadLetter,
}

/// How deletes are written to the Iceberg table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteMode {
    /// Position deletes (default): readable by every Iceberg reader.
    Position,
    /// Equality deletes on the key: cheaper to write, not every reader supports them.
    Equality,
}

macro_rules! named_values {
    ($type:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        impl $type {
            /// The values as written in SQL.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The value as written in SQL.
            pub fn name(self) -> &'static str {
                match self { $($type::$variant => $name),* }
            }

            fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some($type::$variant),)* _ => None }
            }
        }
    };
}

named_values!(OnError { Fail = "fail", Skip = "skip", DeadLetter = "dead_letter" });
named_values!(OnTypeChange { Fail = "fail", Stringify = "stringify", DeadLetter = "dead_letter" });
named_values!(DeleteMode { Position = "position", Equality = "equality" });

impl SyncOptions {
    /// Typed options from the raw list, checking each option once.
    pub(crate) fn from_raw(raw: Vec<RawOption>) -> Result<Self> {
        let mut options = SyncOptions::default();
        for option in raw {
            let Some(which) = SyncOption::from_name(&option.key) else {
                let names = SyncOption::ALL.map(SyncOption::name);
                return Err(unknown(&format!("option `{}`", option.key), &option, &names));
            };
            if options.given.contains(&which) {
                return Err(given_twice(&option));
            }
            options.set(which, &option)?;
            options.given.push(which);
        }
        Ok(options)
    }

    fn set(&mut self, which: SyncOption, option: &RawOption) -> Result<()> {
        match which {
            SyncOption::FlushInterval => self.flush_interval = duration(option)?,
            SyncOption::MaxBatchRows => self.max_batch_rows = positive(option)?,
            SyncOption::MaxBatchBytes => self.max_batch_bytes = size(option)?,
            SyncOption::MaxTransactionRows => self.max_transaction_rows = positive(option)?,
            SyncOption::OnError => {
                self.on_error = one_of(option, OnError::from_name, OnError::NAMES)?
            }
            SyncOption::OnTypeChange => {
                self.on_type_change = one_of(option, OnTypeChange::from_name, OnTypeChange::NAMES)?;
            }
            SyncOption::SampleSize => self.sample_size = positive(option)?,
            SyncOption::TargetFileSize => self.target_file_size = size(option)?,
            SyncOption::Compression => {
                self.compression = one_of(option, compression, &COMPRESSIONS)?;
            }
            SyncOption::DeleteMode => {
                self.delete_mode = one_of(option, DeleteMode::from_name, DeleteMode::NAMES)?;
            }
            SyncOption::AutoOptimize => self.auto_optimize = boolean(option)?,
            SyncOption::Consistent => self.consistent = boolean(option)?,
            SyncOption::RetainSnapshots => self.retain_snapshots = duration_or_zero(option)?,
            SyncOption::MaxSnapshots => self.max_snapshots = positive(option)?,
            SyncOption::LeaseTtl => self.lease_ttl = duration(option)?,
            SyncOption::SnapshotParallelism => {
                self.snapshot_parallelism = at_most(option, MAX_SNAPSHOT_PARALLELISM)?;
            }
        }
        Ok(())
    }

    fn write_value(&self, f: &mut fmt::Formatter<'_>, which: SyncOption) -> fmt::Result {
        match which {
            SyncOption::FlushInterval => write!(f, "'{}'", format_duration(self.flush_interval)),
            SyncOption::MaxBatchRows => write!(f, "{}", self.max_batch_rows),
            SyncOption::MaxBatchBytes => write!(f, "'{}'", format_size(self.max_batch_bytes)),
            SyncOption::MaxTransactionRows => write!(f, "{}", self.max_transaction_rows),
            SyncOption::OnError => write!(f, "'{}'", self.on_error.name()),
            SyncOption::OnTypeChange => write!(f, "'{}'", self.on_type_change.name()),
            SyncOption::SampleSize => write!(f, "{}", self.sample_size),
            SyncOption::TargetFileSize => write!(f, "'{}'", format_size(self.target_file_size)),
            SyncOption::Compression => f.write_str(&quote_string(&self.compression)),
            SyncOption::DeleteMode => write!(f, "'{}'", self.delete_mode.name()),
            SyncOption::AutoOptimize => write!(f, "{}", self.auto_optimize),
            SyncOption::Consistent => write!(f, "{}", self.consistent),
            SyncOption::RetainSnapshots => {
                write!(f, "'{}'", format_duration(self.retain_snapshots))
            }
            SyncOption::MaxSnapshots => write!(f, "{}", self.max_snapshots),
            SyncOption::LeaseTtl => write!(f, "'{}'", format_duration(self.lease_ttl)),
            SyncOption::SnapshotParallelism => write!(f, "{}", self.snapshot_parallelism),
        }
    }
}

/// The options that were given, as `key = value, ...` in the order given.
impl fmt::Display for SyncOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, which) in self.given.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} = ", which.name())?;
            self.write_value(f, *which)?;
        }
        Ok(())
    }
}

fn compression(name: &str) -> Option<String> {
    COMPRESSIONS.contains(&name).then(|| name.to_string())
}
