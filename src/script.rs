//! Runs SQL text (a file, `-e` statements, piped stdin): parses all of it first, so a syntax
//! error anywhere runs nothing, then executes the statements in order, stopping at the first
//! error.

use std::io::Write;

use crate::exec::Session;
use crate::output::{self, Format};
use crate::{Error, Location, Result, sql};

/// Where SQL text came from, for error messages.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A file given with `-f`.
    File(String),
    /// A statement given with `-e`.
    Inline,
    /// Standard input.
    Stdin,
}

/// A failed statement: the error and where the statement starts.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: Error,
    /// Where the failing statement starts, when the error has no position of its own.
    pub statement_at: Option<Location>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure { error, statement_at: None }
    }
}

/// Parses and runs `text`, writing results to `out`.
pub async fn run(
    session: &mut Session,
    text: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    for parsed in sql::parse(text)? {
        let result = async { output::write(session.execute(&parsed).await?, format, out).await };
        if let Err(error) = result.await {
            return Err(Failure { error, statement_at: Some(parsed.location) });
        }
    }
    Ok(())
}

/// `misql --check`: runs the ATTACH statements of `text`, then compares the table of each
/// CREATE SYNC in it (of those named in `names`; all when empty) with its collection, without
/// starting, leasing or writing anything. Fails when a table differs.
pub async fn check(
    session: &mut Session,
    text: &str,
    names: &[String],
    format: Format,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut creates = Vec::new();
    for parsed in sql::parse(text)? {
        match &parsed.statement {
            sql::Statement::Attach(_) => {
                let result =
                    async { output::write(session.execute(&parsed).await?, format, out).await };
                if let Err(error) = result.await {
                    return Err(Failure { error, statement_at: Some(parsed.location) });
                }
            }
            sql::Statement::CreateSync(create)
                if names.is_empty() || names.contains(&create.name.value) =>
            {
                creates.push(create.clone());
            }
            _ => {}
        }
    }
    for name in names {
        if !creates.iter().any(|c| &c.name.value == name) {
            return Err(Error::user(format!("--check: no CREATE SYNC {name} in the files"))
                .with_hint("name the syncs as their CREATE SYNC statements do")
                .into());
        }
    }
    if creates.is_empty() {
        return Err(Error::user("--check: the files have no CREATE SYNC to check").into());
    }
    output::write(session.check_syncs(&creates).await?, format, out).await?;
    Ok(())
}

/// The text printed on stderr for a failure: `error: <what> at line L, column C`, the origin
/// for files, the offending source line with a caret for syntax errors, and a `hint:` line when
/// the error knows what would be right.
pub fn render(failure: &Failure, origin: &Origin, text: &str) -> String {
    let error = failure.error.user_facing();
    let mut out = format!("error: {error}");
    if let (false, Some(at)) = (matches!(error, Error::Sql { .. }), failure.statement_at) {
        out.push_str(&format!(" at {at}"));
    }
    if let Origin::File(path) = origin {
        out.push_str(&format!("\n  in {path}"));
    }
    if let Error::Sql { location, .. } = error {
        out.push_str(&excerpt(text, *location));
    }
    if let Some(hint) = error.hint() {
        out.push_str(&format!("\nhint: {hint}"));
    }
    out
}

/// The source line at `location` with a caret under the column.
fn excerpt(text: &str, location: Location) -> String {
    let Some(line) = text.lines().nth(location.line.saturating_sub(1) as usize) else {
        return String::new();
    };
    let caret = " ".repeat(location.column.saturating_sub(1) as usize);
    format!("\n{:>4} | {line}\n     | {caret}^", location.line)
}
