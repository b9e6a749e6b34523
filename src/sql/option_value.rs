//! An option as written (`key = value` or `key value`) and the checks that read its value,
//! shared by `CREATE SYNC`, `ATTACH`, `OPTIMIZE` and `VACUUM`: each names the option and its
//! position when the value does not fit.

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

/// An option given a second time in one statement.
pub(crate) fn given_twice(option: &RawOption) -> Error {
    Error::sql(format!("option `{}` given twice", option.key), option.key_at)
        .with_hint("give each option once")
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
pub(crate) fn at_most(option: &RawOption, max: usize) -> Result<usize> {
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
