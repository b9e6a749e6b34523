//! The typed `WITH (...)` options of `CREATE SYNC`, and the checks shared with `ATTACH` options.
//! Options are taken one by one; an unknown, repeated or malformed one is an error at its
//! position, never silently ignored.

use std::fmt;
use std::time::Duration;

use crate::{Error, Location, Result};

/// An option as written: `key = value` in `WITH (...)`, `key value` in `ATTACH (...)`.
#[derive(Debug, Clone)]
pub(crate) struct RawOption {
    /// The key, lower-cased.
    pub key: String,
    /// Where the key starts.
    pub key_at: Location,
    /// The value as written.
    pub value: OptionValue,
    /// Where the value starts.
    pub value_at: Location,
}

/// An option value: a string literal or a number.
#[derive(Debug, Clone)]
pub(crate) enum OptionValue {
    /// `'text'`, after `${ENV}` substitution.
    String(String),
    /// `123` (or `true`/`false`), unquoted, as written.
    Number(String),
}

impl OptionValue {
    pub(crate) fn text(&self) -> &str {
        match self {
            OptionValue::String(text) | OptionValue::Number(text) => text,
        }
    }
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::String(text) => f.write_str(&quote_string(text)),
            OptionValue::Number(text) => f.write_str(text),
        }
    }
}

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
                return Err(Error::sql(
                    format!("option `{}` given twice", option.key),
                    option.key_at,
                )
                .with_hint("give each option once"));
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

/// "unknown `what`" at the key, with the closest valid name or the list of valid names.
pub(crate) fn unknown(what: &str, option: &RawOption, valid: &[&str]) -> Error {
    let error = Error::sql(format!("unknown {what}"), option.key_at);
    match closest(&option.key, valid) {
        Some(name) => error.with_hint(format!("did you mean `{name}`?")),
        None => error.with_hint(format!("valid options: {}", valid.join(", "))),
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 2);
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance where swapping two neighbouring letters counts as one edit (`dya` → `day`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut table = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in table.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in table[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best =
                (table[i - 1][j] + 1).min(table[i][j - 1] + 1).min(table[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(table[i - 2][j - 2] + 1);
            }
            table[i][j] = best;
        }
    }
    table[a.len()][b.len()]
}

fn invalid(option: &RawOption, expected: &str) -> Error {
    let message = format!("invalid value {} for {}: expected {expected}", option.value, option.key);
    Error::sql(message, option.value_at)
}

pub(crate) fn one_of<T>(
    option: &RawOption,
    parse: impl Fn(&str) -> Option<T>,
    names: &[&str],
) -> Result<T> {
    let quoted: Vec<String> = names.iter().map(|name| format!("'{name}'")).collect();
    let expected = format!("one of {}", quoted.join(", "));
    match &option.value {
        OptionValue::String(text) => {
            parse(&text.to_ascii_lowercase()).ok_or_else(|| invalid(option, &expected))
        }
        OptionValue::Number(_) => Err(invalid(option, &expected)),
    }
}

/// `true` or `false` (as a word or a string).
pub(crate) fn boolean(option: &RawOption) -> Result<bool> {
    match option.value.text().trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(option, "true or false")),
    }
}

pub(crate) fn positive<T: TryFrom<u64>>(option: &RawOption) -> Result<T> {
    let expected = "a positive integer";
    let number: u64 = option.value.text().trim().parse().map_err(|_| invalid(option, expected))?;
    if number == 0 {
        return Err(invalid(option, expected));
    }
    T::try_from(number).map_err(|_| invalid(option, "a smaller number"))
}

/// A positive integer up to `max`.
fn at_most(option: &RawOption, max: usize) -> Result<usize> {
    match positive::<usize>(option)? {
        n if n > max => Err(invalid(option, &format!("a positive integer up to {max}"))),
        n => Ok(n),
    }
}

pub(crate) fn duration(option: &RawOption) -> Result<Duration> {
    match duration_or_zero(option)? {
        Duration::ZERO => Err(invalid(option, "a positive duration")),
        positive => Ok(positive),
    }
}

/// A duration: `'5s'`, `'500ms'`, `'2m'`, `'1h'`, `'7d'`; `'0s'` is zero.
pub(crate) fn duration_or_zero(option: &RawOption) -> Result<Duration> {
    let expected = "a duration like '5s', '500ms', '2m', '1h' or '7d'";
    let OptionValue::String(text) = &option.value else {
        return Err(invalid(option, expected));
    };
    let (number, unit) = split_number(text).ok_or_else(|| invalid(option, expected))?;
    let millis_per_unit = match unit.to_ascii_lowercase().as_str() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid(option, expected)),
    };
    match number.checked_mul(millis_per_unit) {
        Some(millis) => Ok(Duration::from_millis(millis)),
        None => Err(invalid(option, "a shorter duration")),
    }
}

const SIZE_UNITS: [(&str, u64); 9] = [
    ("tib", 1 << 40),
    ("gib", 1 << 30),
    ("mib", 1 << 20),
    ("kib", 1 << 10),
    ("tb", 1_000_000_000_000),
    ("gb", 1_000_000_000),
    ("mb", 1_000_000),
    ("kb", 1_000),
    ("b", 1),
];

pub(crate) fn size(option: &RawOption) -> Result<u64> {
    let expected = "a size like '64MB', '1GiB' or a number of bytes";
    let (number, unit) =
        split_number(option.value.text()).ok_or_else(|| invalid(option, expected))?;
    let unit = unit.to_ascii_lowercase();
    let factor = match SIZE_UNITS.iter().find(|(name, _)| *name == unit) {
        Some((_, factor)) => *factor,
        None if unit.is_empty() => 1,
        None => return Err(invalid(option, expected)),
    };
    match number.checked_mul(factor) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(invalid(option, "a positive size below 16EiB")),
    }
}

/// `"64 MB"` → `(64, "MB")`; `None` without leading digits.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number = text[..digits].parse().ok()?;
    Some((number, text[digits..].trim_start()))
}

pub(crate) fn format_duration(duration: Duration) -> String {
    const DISPLAY_UNITS: [(&str, u128); 4] =
        [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)];
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    DISPLAY_UNITS.iter().find(|(_, factor)| millis.is_multiple_of(*factor)).map_or_else(
        || format!("{millis}ms"),
        |(unit, factor)| format!("{}{unit}", millis / factor),
    )
}

/// The shortest exact form: `'64MiB'`, `'64MB'`, `'1KB'` or plain bytes.
pub(crate) fn format_size(bytes: u64) -> String {
    SIZE_UNITS
        .iter()
        .filter(|(_, factor)| bytes.is_multiple_of(*factor))
        .min_by_key(|(_, factor)| bytes / factor)
        .map_or_else(
            || bytes.to_string(),
            |(unit, factor)| format!("{}{}", bytes / factor, display_unit(unit)),
        )
}

fn display_unit(unit: &str) -> String {
    match unit.strip_suffix("ib") {
        Some(prefix) => format!("{}iB", prefix.to_ascii_uppercase()),
        None => unit.to_ascii_uppercase(),
    }
}

/// A string literal as SQL: quotes doubled and `${` escaped as `$${`, so it reads back the same.
pub(crate) fn quote_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''").replace("${", "$${"))
}
