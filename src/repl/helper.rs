//! The rustyline helper: keeps reading lines until the statement ends with `;`, and completes
//! keywords, `WITH` option names and their quoted values, and attached catalog names.

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use crate::sql::{self, COMPRESSIONS, DeleteMode, OnError, OnTypeChange, SyncOption};

/// Words offered by tab completion.
const KEYWORDS: &[&str] = &[
    "ATTACH",
    "CREATE",
    "SYNC",
    "FROM",
    "INTO",
    "SELECT",
    "WHERE",
    "PARTITION BY",
    "WITH",
    "DESCRIBE",
    "SHOW",
    "DATABASES",
    "COLLECTIONS",
    "TABLES",
    "SYNCS",
    "STATUS",
    "EXPLAIN",
    "LIMIT",
    "ORDER BY",
    "GROUP BY",
    "COUNT",
    "DROP",
    "START",
    "STOP",
    "OPTIMIZE",
    "VACUUM",
    "RETAIN",
    "TYPE",
    "mongodb",
    "iceberg",
];

/// The shell's line-editing helper.
#[derive(Debug, Default)]
pub struct ReplHelper {
    /// Extra words to complete, such as attached catalog names.
    pub names: Vec<String>,
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input().trim();
        if input.is_empty() || sql::is_complete(input) || is_command(input) {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

/// Whether `input` is a shell command (`\q`, `quit`, ...) rather than SQL.
pub fn is_command(input: &str) -> bool {
    let input = input.trim();
    input.starts_with('\\') || matches!(input.to_ascii_lowercase().as_str(), "quit" | "exit")
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| c.is_whitespace() || c == '(' || c == ',')
            .map_or(0, |i| i + 1);
        let word = &line[start..pos];
        if word.is_empty() {
            return Ok((start, vec![]));
        }
        let lower = word.to_ascii_lowercase();
        let candidates = self
            .words()
            .filter(|k| k.to_ascii_lowercase().starts_with(&lower) && k.len() > word.len())
            .map(|k| {
                let replacement = if word.chars().all(|c| !c.is_ascii_uppercase())
                    && k.chars().all(|c| !c.is_lowercase())
                {
                    k.to_ascii_lowercase()
                } else {
                    k.clone()
                };
                Pair { display: k, replacement }
            })
            .collect();
        Ok((start, candidates))
    }
}

impl ReplHelper {
    /// Every word tab completion offers, once each: keywords, sync option names, their quoted
    /// values (`'stringify'`), and the extra names.
    pub fn words(&self) -> impl Iterator<Item = String> + '_ {
        let values = [OnError::NAMES, OnTypeChange::NAMES, DeleteMode::NAMES, &COMPRESSIONS[..]];
        let mut seen = std::collections::HashSet::new();
        KEYWORDS
            .iter()
            .map(|k| k.to_string())
            .chain(SyncOption::ALL.iter().map(|o| o.name().to_string()))
            .chain(values.into_iter().flatten().map(|v| format!("'{v}'")))
            .chain(self.names.iter().cloned())
            .filter(move |w| seen.insert(w.clone()))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Helper for ReplHelper {}
