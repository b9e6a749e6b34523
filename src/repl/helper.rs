//! The rustyline helper: keeps reading lines until the statement ends with `;`, and completes
//! keywords, backslash commands, `WITH` option names and their quoted values, catalog and sync
//! names, and what is attached: databases, collections, namespaces, tables, and the field paths
//! of the collections and tables the statement names.

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::commands::COMMANDS;
use super::names::Names;
use crate::exec::Session;
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
    "REFRESH",
    "CHECK",
    "OPTIMIZE",
    "VACUUM",
    "RETAIN",
    "TYPE",
    "mongodb",
    "iceberg",
];

/// The shell's line-editing helper.
pub struct ReplHelper {
    /// Extra words to complete: catalog and sync names.
    names: Vec<String>,
    /// What is attached, fetched on demand.
    attached: Names,
}

impl ReplHelper {
    /// A helper completing the names of `session`, fetching them on `handle`'s runtime.
    pub fn new(session: &Session, handle: tokio::runtime::Handle) -> Self {
        Self { names: session.names(), attached: Names::new(session.sources(), handle) }
    }

    /// Takes the session's names again (after ATTACH, CREATE SYNC, DROP SYNC): the fetched
    /// names are forgotten too, so new collections and tables show.
    pub fn refresh_names(&mut self, session: &Session) {
        self.names = session.names();
        self.attached.set_sources(session.sources());
        self.attached.forget();
    }

    /// Forgets the fetched names (`\refresh`).
    pub fn forget(&self) {
        self.attached.forget();
    }

    /// Candidates for a word with a dot: the names below its first parts when they start with a
    /// catalog (`mongo.shop.or`), else the field paths of the tables `line` names (`customer.na`).
    fn dotted(&self, line: &str, word: &str) -> Vec<String> {
        let (parent, _) = word.rsplit_once('.').unwrap_or_default();
        let catalog = parent.split('.').next().unwrap_or_default();
        if self.attached.catalogs().any(|c| c == catalog) {
            return self
                .attached
                .below(parent)
                .into_iter()
                .map(|name| format!("{parent}.{name}"))
                .collect();
        }
        self.fields(line)
    }

    /// The field paths of every collection or table `line` names (`catalog.db.name`).
    fn fields(&self, line: &str) -> Vec<String> {
        let words = line.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ';');
        let mut fields = Vec::new();
        for word in words {
            let parts: Vec<&str> = word.split('.').collect();
            if parts.len() == 3 && self.attached.catalogs().any(|c| c == parts[0]) {
                fields.extend(self.attached.below(word));
            }
        }
        fields
    }
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
        if word.contains('.') {
            let candidates = self.dotted(line, word);
            let pairs = candidates
                .into_iter()
                .filter(|c| c.starts_with(word) && c.len() > word.len())
                .map(|c| Pair { display: c.clone(), replacement: c })
                .collect();
            return Ok((start, pairs));
        }
        let lower = word.to_ascii_lowercase();
        let fields = self.fields(line).into_iter().filter(|f| !f.contains('.'));
        let candidates = self
            .words()
            .chain(fields)
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
            .chain(COMMANDS.iter().map(|c| c.name.to_string()))
            .chain(self.names.iter().cloned())
            .filter(move |w| seen.insert(w.clone()))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;

    /// Called at every change of the line being typed: tells the log output whether the line
    /// is empty (log lines are then printed at once, above a fresh prompt).
    fn hint(&self, line: &str, _pos: usize, _ctx: &Context<'_>) -> Option<String> {
        crate::logging::line_typed(!line.is_empty());
        None
    }
}

impl Highlighter for ReplHelper {}

impl Helper for ReplHelper {}
