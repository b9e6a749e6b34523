//! misql statements: the AST (each with `Display`) and the parser. Nothing here touches MongoDB or
//! Iceberg.
//!
//! misql's own statements (`ATTACH`, `CREATE SYNC`, `SHOW SYNCS`, ...) are parsed here on top of
//! sqlparser; every other statement is handed to sqlparser and kept as [`Statement::Sql`].
//! `${ENV_VAR}` is substituted in every single-quoted string literal before parsing.

mod attach;
mod create_sync;
mod env;
mod maintenance;
mod option_value;
mod options;
mod parser;
mod statement;

use sqlparser::tokenizer::{Token, Tokenizer};

use crate::{Location, Result};

pub use maintenance::{MaintenanceTarget, Optimize, Vacuum};
pub use options::{COMPRESSIONS, DeleteMode, OnError, OnTypeChange, SyncOption, SyncOptions};
pub use statement::{
    Attach, AttachKind, CollectionPattern, CreateSync, ExplainSync, PartitionField, Statement,
    Transform, glob_matches,
};

/// One statement of a file or buffer, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The statement.
    pub statement: Statement,
    /// Where the statement starts in the whole input (1-based).
    pub location: Location,
    /// The statement's own source text, as written (before `${ENV}` substitution), without the
    /// trailing `;`.
    pub text: String,
}

/// Parses every statement in `sql` (separated by `;`, the last `;` optional; empty statements
/// are skipped), substituting `${NAME}` from the process environment.
pub fn parse(sql: &str) -> Result<Vec<Parsed>> {
    parse_with_env(sql, &|name| std::env::var(name).ok())
}

/// Like [`parse`], with `env` looking up the values of `${NAME}`.
pub fn parse_with_env(sql: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Parsed>> {
    let mut tokens = parser::tokenize(sql)?;
    env::substitute(&mut tokens, env)?;
    parser::parse_tokens(sql, tokens)
}

/// Whether a shell buffer is ready to run: it ends with `;` outside strings and comments, or it
/// is a backslash command (`\q`). An unterminated string or comment is never complete.
pub fn is_complete(sql: &str) -> bool {
    if sql.trim_start().starts_with('\\') {
        return true;
    }
    let Ok(tokens) = Tokenizer::new(&parser::DIALECT, sql).tokenize() else {
        return false;
    };
    tokens.iter().rev().find(|token| !matches!(token, Token::Whitespace(_)))
        == Some(&Token::SemiColon)
}
