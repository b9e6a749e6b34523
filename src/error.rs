//! The crate's one error type. Every variant is something a user can act on; foreign
//! errors are converted at module edges with context that says what misql was doing.

use std::fmt;

/// A position in SQL text, 1-based, as the user sees it in their file or shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Location {
    /// Line, starting at 1.
    pub line: u64,
    /// Column, starting at 1.
    pub column: u64,
}

impl Location {
    /// A location at `line`, `column` (both 1-based).
    pub fn new(line: u64, column: u64) -> Self {
        Self { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Everything that can go wrong in misql.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQL that does not parse, or a statement whose clauses are wrong (unknown option, repeated
    /// clause, unset environment variable, ...).
    #[error("{message} at {location}")]
    Sql {
        /// What is wrong.
        message: String,
        /// Where in the SQL text.
        location: Location,
        /// What would be right, if we can tell.
        hint: Option<String>,
    },
    /// A user's mistake, found after parsing: a statement that cannot be carried out as
    /// written (unknown catalog, a table that does not exist, a feature not supported yet), a
    /// configuration value that is wrong, a table misql cannot write. Permanent; it says what
    /// would be right when it can ([`Error::user`]).
    #[error("{message}")]
    Plan {
        /// What is wrong.
        message: String,
        /// What would be right, if we can tell.
        hint: Option<String>,
    },
    /// A server or catalog that cannot be reached right now; a running sync retries.
    #[error("{message}")]
    Unavailable {
        /// What could not be reached, and why.
        message: String,
        /// What would help.
        hint: Option<String>,
    },
    /// A server, catalog or file store that answered something misql cannot use (a status, a
    /// malformed answer): its kind comes from what it answered, where it arose
    /// ([`Error::remote`]).
    #[error("{message}")]
    Remote {
        /// What a retry loop does about it.
        kind: ErrorKind,
        /// What was asked, and what came back.
        message: String,
        /// What would help.
        hint: Option<String>,
    },
    /// A commit to a table that did not go through, or whose outcome could not be settled.
    #[error("{message}")]
    Commit {
        /// Why: a conflict, an unknown outcome, or another writer of the same sync.
        kind: ErrorKind,
        /// What happened.
        message: String,
        /// What would help.
        hint: Option<String>,
    },
    /// A broken invariant of misql's own: a bug, not something the user did. A running sync
    /// restarts from its table's checkpoint.
    #[error("internal error: {0} (a bug in misql; please report it with the log)")]
    Internal(String),
    /// A BSON value that does not fit the Arrow column it is read into.
    #[error("document _id={id}: field `{field}`: {reason}")]
    Convert {
        /// The document's `_id` as relaxed Extended JSON (or `<missing>`).
        id: String,
        /// The dotted path of the field.
        field: String,
        /// What did not fit.
        reason: String,
    },
    /// The MongoDB server or driver failed.
    #[error("MongoDB: {context}: {}", mongo_reason(source))]
    Mongo {
        /// What misql was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: mongodb::error::Error,
    },
    /// An Iceberg catalog, table or file operation failed.
    #[error("Iceberg: {context}: {}", iceberg_reason(source))]
    Iceberg {
        /// What misql was doing.
        context: String,
        /// The library's error (boxed: it is large, and errors travel in every `Result`).
        #[source]
        source: Box<iceberg::Error>,
    },
    /// DataFusion failed while planning or running a query.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Arrow failed (formatting output, building arrays).
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Reading or writing a local file failed.
    #[error("{context}: {source}")]
    Io {
        /// What misql was doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A SQL error at `location`.
    pub fn sql(message: impl Into<String>, location: Location) -> Self {
        Error::Sql { message: message.into(), location, hint: None }
    }

    /// A broken invariant (a bug).
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// A user's mistake without a location in the SQL text (permanent): the statement, a
    /// configuration value or the data as the user gave it. Add what would be right with
    /// [`Error::with_hint`].
    pub fn user(message: impl Into<String>) -> Self {
        Error::Plan { message: message.into(), hint: None }
    }

    /// A remote system's answer that misql cannot use, of `kind` (a 5xx is transient, a refusal
    /// permanent, ...): the kind is decided where the answer is read.
    pub fn remote(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Remote { kind, message: message.into(), hint: None }
    }

    /// A server, catalog or file store that cannot be reached right now (transient).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable { message: message.into(), hint: None }
    }

    /// Adds a hint ("what would be right") to errors that carry one.
    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        if let Error::Sql { hint, .. }
        | Error::Plan { hint, .. }
        | Error::Unavailable { hint, .. }
        | Error::Remote { hint, .. }
        | Error::Commit { hint, .. } = &mut self
        {
            *hint = Some(text.into());
        }
        self
    }

    /// The hint, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Sql { hint, .. }
            | Error::Plan { hint, .. }
            | Error::Unavailable { hint, .. }
            | Error::Remote { hint, .. }
            | Error::Commit { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }

    /// The error a user should see: a misql error carried through DataFusion is unwrapped.
    pub fn user_facing(&self) -> &Error {
        if let Error::DataFusion(df) = self {
            let mut current: &(dyn std::error::Error + 'static) = df;
            loop {
                if let Some(inner) = current.downcast_ref::<Error>() {
                    return inner.user_facing();
                }
                match current.source() {
                    Some(next) => current = next,
                    None => break,
                }
            }
        }
        self
    }

    /// What a retry loop should do about this error, from its kind (never from its text).
    pub fn kind(&self) -> ErrorKind {
        match self.user_facing() {
            // A bug may depend on the state the sync is in: it starts again from its
            // checkpoint (and says, every time, that this is a bug).
            Error::Unavailable { .. } | Error::Io { .. } | Error::Internal(_) => {
                ErrorKind::Transient
            }
            Error::Commit { kind, .. } | Error::Remote { kind, .. } => *kind,
            Error::Mongo { source, .. } => mongo_kind(source),
            Error::Iceberg { source, .. } => iceberg_kind(source),
            _ => ErrorKind::Permanent,
        }
    }

    /// Whether retrying later may succeed (every kind but [`ErrorKind::Permanent`]).
    pub fn is_transient(&self) -> bool {
        self.kind() != ErrorKind::Permanent
    }

    /// The same failure again, for one of several that wait on one outcome (a group commit's
    /// tables): its kind, what the user sees of it, and its hint.
    pub fn shared(&self) -> Self {
        Error::Commit {
            kind: self.kind(),
            message: self.user_facing().to_string(),
            hint: self.hint().map(str::to_string),
        }
    }

    /// A failed commit of `kind`.
    pub fn commit(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Commit { kind, message: message.into(), hint: None }
    }

    /// A MongoDB error with what misql was doing.
    pub fn mongo(context: impl Into<String>, source: mongodb::error::Error) -> Self {
        Error::Mongo { context: context.into(), source }
    }

    /// An Iceberg error with what misql was doing.
    pub fn iceberg(context: impl Into<String>, source: iceberg::Error) -> Self {
        Error::Iceberg { context: context.into(), source: Box::new(source) }
    }

    /// An I/O error with what misql was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

/// What kind of failure an error is: what a retry loop does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retrying cannot help: bad input, a refused request, a damaged table.
    Permanent,
    /// A server, catalog or file store that failed or could not be reached: retry with backoff.
    Transient,
    /// Another writer committed first: build the change again on the new table state.
    Conflict,
    /// The catalog failed after the commit was sent: whether it applied is settled by reading
    /// the table back.
    CommitUnknown,
    /// The batch no longer applies to the table: another writer committed for the same sync
    /// since it was read, or a compaction moved the rows its position deletes point at. Continue
    /// at once from the table's checkpoint (reading the table, and so its rows' positions, again).
    Superseded,
    /// Another process holds the sync's lease on its table: wait as a standby until it expires
    /// or is released.
    LeaseHeld,
}

/// The kind of a driver error: network, server selection and retryable labels are transient.
fn mongo_kind(source: &mongodb::error::Error) -> ErrorKind {
    use mongodb::error::ErrorKind as Mongo;
    let transient = matches!(
        *source.kind,
        Mongo::Io(_) | Mongo::ServerSelection { .. } | Mongo::ConnectionPoolCleared { .. }
    ) || source.contains_label("RetryableError")
        || source.contains_label("ResumableChangeStreamError");
    if transient { ErrorKind::Transient } else { ErrorKind::Permanent }
}

/// The kind of an iceberg-rust error. `Unexpected` is what the library reports for a catalog or
/// file store that failed (an HTTP status it does not expect, an I/O or network error from
/// opendal or reqwest): transient. A conflict is a conflict; invalid data, a missing table or an
/// unsupported feature do not get better by waiting.
fn iceberg_kind(source: &iceberg::Error) -> ErrorKind {
    use iceberg::ErrorKind as Iceberg;
    if storage_error(source).is_some_and(|e| e.kind() == opendal::ErrorKind::PermissionDenied) {
        return ErrorKind::Permanent; // retrying with the same credentials cannot help
    }
    if let Some(kind) = crate::lake::rest_failure::of(source).kind() {
        return kind; // a refused credential, or a REST catalog that did not answer or failed
    }
    match source.kind() {
        Iceberg::CatalogCommitConflicts => ErrorKind::Conflict,
        Iceberg::Unexpected => ErrorKind::Transient,
        _ if source.retryable() => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A driver error as one sentence: what the server or the driver said, with the server's code,
/// instead of the driver's debug structure (the whole error is logged at debug level).
pub fn mongo_reason(source: &mongodb::error::Error) -> String {
    use mongodb::error::ErrorKind as K;
    tracing::debug!("MongoDB driver error: {source:?}");
    let command = |e: &mongodb::error::CommandError| {
        format!("{} (code {}, {})", e.message.trim_end_matches('.'), e.code, e.code_name)
    };
    match source.kind.as_ref() {
        K::Authentication { message, .. } => {
            let code = std::error::Error::source(source)
                .and_then(|s| s.downcast_ref::<mongodb::error::Error>())
                .and_then(|s| match s.kind.as_ref() {
                    K::Command(e) => Some(format!(", code {}", e.code)),
                    _ => None,
                })
                .unwrap_or_default();
            let message = message.trim_end_matches('.');
            format!("authentication failed ({message}{code}); check the user name and password")
        }
        K::Command(e) => command(e),
        K::Write(mongodb::error::WriteFailure::WriteError(e)) => {
            format!("{} (code {})", e.message.trim_end_matches('.'), e.code)
        }
        K::ServerSelection { message, .. } => {
            let first = message.lines().next().unwrap_or(message).trim();
            format!("no server answered in time ({first})")
        }
        K::DnsResolve { message, .. } => format!("cannot resolve the host name: {message}"),
        K::Io(e) => format!("connection error: {e}"),
        K::InvalidArgument { message, .. } => message.clone(),
        _ => source.to_string(),
    }
}

/// The object-store error under an Iceberg error, when a file operation failed.
fn storage_error(source: &iceberg::Error) -> Option<&opendal::Error> {
    let mut current = std::error::Error::source(source);
    while let Some(error) = current {
        if let Some(storage) = error.downcast_ref::<opendal::Error>() {
            return Some(storage);
        }
        current = error.source();
    }
    None
}

/// An Iceberg error as one sentence. When the object store refused or failed a file
/// operation, what it said instead of the whole chain with its request context (HTTP headers
/// and all; logged at debug level).
pub fn iceberg_reason(source: &iceberg::Error) -> String {
    let Some(storage) = storage_error(source) else { return source.to_string() };
    tracing::debug!("Iceberg storage error: {source:?}");
    let what = match storage.kind() {
        opendal::ErrorKind::PermissionDenied => "the object store refused it: permission denied; \
             check the S3 credentials (s3.access-key-id, s3.secret-access-key) and the bucket's \
             policy"
            .to_string(),
        opendal::ErrorKind::NotFound => "the object store has no such bucket or file".to_string(),
        kind => {
            let message = storage.message().lines().next().unwrap_or_default();
            format!("the object store failed ({kind}): {message}")
        }
    };
    format!("{}: {what}", source.message().trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_says_what_a_retry_does() {
        let internal = Error::internal("a snapshot change without files");
        assert_eq!(internal.kind(), ErrorKind::Transient, "a running sync starts again");
        assert!(internal.to_string().starts_with("internal error: a snapshot change"));
        assert!(internal.to_string().contains("please report it"));
        assert_eq!(Error::user("no such table").kind(), ErrorKind::Permanent);
        let conflict = Error::commit(ErrorKind::Conflict, "another writer").with_hint("again");
        let shared = conflict.shared();
        assert_eq!((shared.kind(), shared.hint()), (ErrorKind::Conflict, Some("again")));
        assert_eq!(shared.to_string(), "another writer");
        let refused = Error::remote(ErrorKind::Permanent, "GET /v1/config answered 403");
        assert_eq!(refused.kind(), ErrorKind::Permanent);
        let failed = Error::remote(ErrorKind::Transient, "GET /v1/config answered 503");
        assert_eq!(failed.with_hint("later").hint(), Some("later"));
        assert_eq!(Error::unavailable("no route").kind(), ErrorKind::Transient);
    }

    #[test]
    fn a_remote_error_carried_through_datafusion_keeps_its_kind() {
        let inner = Error::remote(ErrorKind::Transient, "the catalog answered 502");
        let carried =
            Error::DataFusion(datafusion::error::DataFusionError::External(Box::new(inner)));
        assert_eq!(carried.kind(), ErrorKind::Transient);
        assert_eq!(carried.user_facing().to_string(), "the catalog answered 502");
    }
}
