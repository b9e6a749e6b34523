//! `OPTIMIZE {table | SYNC name} [WITH (...)]` and `VACUUM {table | SYNC name} [RETAIN '7d']`.

use std::fmt;
use std::time::Duration;

use sqlparser::ast::{Ident, ObjectName};
use sqlparser::tokenizer::Token;

use super::option_value::{
    RawOption, duration_or_zero, format_duration, format_size, given_twice, positive, size, unknown,
};
use super::parser::StatementParser;
use crate::Result;

/// What a maintenance statement works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaintenanceTarget {
    /// An Iceberg table, `catalog.namespace.table`.
    Table(ObjectName),
    /// The target table of a sync of this session.
    Sync(Ident),
}

impl fmt::Display for MaintenanceTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaintenanceTarget::Table(name) => write!(f, "{name}"),
            MaintenanceTarget::Sync(name) => write!(f, "SYNC {name}"),
        }
    }
}

/// `OPTIMIZE target [WITH (target_file_size = '128MiB', min_input_files = 2)]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Optimize {
    /// The table to compact.
    pub target: MaintenanceTarget,
    /// `target_file_size`: the size new files are rolled at (default: the table's).
    pub target_file_size: Option<u64>,
    /// `min_input_files`: small files a partition without deletes needs to be rewritten.
    pub min_input_files: Option<usize>,
}

/// The options `OPTIMIZE ... WITH (...)` takes.
const OPTIMIZE_OPTIONS: [&str; 2] = ["target_file_size", "min_input_files"];

impl fmt::Display for Optimize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OPTIMIZE {}", self.target)?;
        let mut options = Vec::new();
        if let Some(bytes) = self.target_file_size {
            options.push(format!("target_file_size = '{}'", format_size(bytes)));
        }
        if let Some(n) = self.min_input_files {
            options.push(format!("min_input_files = {n}"));
        }
        if !options.is_empty() {
            write!(f, " WITH ({})", options.join(", "))?;
        }
        Ok(())
    }
}

/// `VACUUM target [RETAIN 'duration']`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacuum {
    /// The table to clean.
    pub target: MaintenanceTarget,
    /// How old a snapshot or an unreferenced file must be to go (default 7 days).
    pub retain: Option<Duration>,
}

impl fmt::Display for Vacuum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VACUUM {}", self.target)?;
        match self.retain {
            Some(retain) => write!(f, " RETAIN '{}'", format_duration(retain)),
            None => Ok(()),
        }
    }
}

impl StatementParser<'_> {
    /// `OPTIMIZE ...` from its first word.
    pub(crate) fn parse_optimize(&mut self) -> Result<Optimize> {
        self.skip(1, ());
        let target = self.parse_maintenance_target("OPTIMIZE")?;
        let mut optimize = Optimize { target, target_file_size: None, min_input_files: None };
        if !self.parse_words(&["WITH"]) {
            return Ok(optimize);
        }
        for option in self.parse_with_options()? {
            let repeated = match option.key.as_str() {
                "target_file_size" => optimize.target_file_size.replace(size(&option)?).is_some(),
                "min_input_files" => optimize.min_input_files.replace(positive(&option)?).is_some(),
                _ => {
                    return Err(unknown(
                        &format!("option `{}`", option.key),
                        &option,
                        &OPTIMIZE_OPTIONS,
                    ));
                }
            };
            if repeated {
                return Err(given_twice(&option));
            }
        }
        Ok(optimize)
    }

    /// `VACUUM ...` from its first word.
    pub(crate) fn parse_vacuum(&mut self) -> Result<Vacuum> {
        self.skip(1, ());
        let target = self.parse_maintenance_target("VACUUM")?;
        if !self.parse_words(&["RETAIN"]) {
            return Ok(Vacuum { target, retain: None });
        }
        let key_at = self.peek_location();
        let option = self.parse_option_value("retain".to_string(), key_at)?;
        Ok(Vacuum { target, retain: Some(duration_or_zero(&option)?) })
    }

    /// `SYNC name` or `catalog.namespace.table` after `OPTIMIZE`/`VACUUM`.
    fn parse_maintenance_target(&mut self, command: &str) -> Result<MaintenanceTarget> {
        if self.parse_words(&["SYNC"]) {
            return Ok(MaintenanceTarget::Sync(
                self.parse_ident(&format!("a sync name after {command} SYNC"))?,
            ));
        }
        let what = format!("a table (catalog.namespace.table) or SYNC name after {command}");
        Ok(MaintenanceTarget::Table(self.parse_object_name(&what)?))
    }

    /// `(key = value, ...)` from just after `WITH`.
    pub(crate) fn parse_with_options(&mut self) -> Result<Vec<RawOption>> {
        self.expect_token(&Token::LParen, "( after WITH")?;
        let mut options = Vec::new();
        if self.parser.consume_token(&Token::RParen) {
            return Ok(options);
        }
        loop {
            let key_at = self.peek_location();
            let key = self.parse_option_key()?;
            self.expect_token(&Token::Eq, &format!("= after the option {key}"))?;
            options.push(self.parse_option_value(key, key_at)?);
            if self.parser.consume_token(&Token::RParen) {
                return Ok(options);
            }
            self.expect_token(&Token::Comma, ", or ) after an option")?;
        }
    }
}
