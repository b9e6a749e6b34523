//! The compare-and-swap that makes a new table metadata current in the catalog, the last step of
//! every commit: for the embedded SQL catalog, the next metadata file plus an
//! `UPDATE iceberg_tables ... WHERE metadata_location = <current>` in a SQLite transaction whose
//! COMMIT is checked ([`sql`]); for a REST catalog, a `POST .../tables/<name>` with the
//! proposal's requirements and updates ([`rest`]).
//!
//! Several tables swap at once ([`Committer::swap_all`]) where the catalog can do it atomically:
//! every table's UPDATE in one SQLite transaction, or one `POST /v1/{prefix}/transactions/commit`
//! to a REST catalog that lists that endpoint in its config.
//!
//! iceberg-rust 0.10.1 cannot do this for us: a `TableCommit` cannot be built outside the crate,
//! its transaction actions cannot be extended, and it has no client for the multi-table commit.

mod rest;
mod session;
mod sql;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::iceberg::table::Table;

use super::Proposal;
use crate::lake::catalog::{CatalogKind, IcebergConnection};
use crate::{Error, Result};
use session::RestSession;
use sql::SqlCommitter;

/// How long a SQLite write waits for a lock held by another process.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The REST spec version sent as `x-client-version` (what iceberg-catalog-rest sends).
const REST_SPEC_VERSION: &str = "0.14.1";
/// Timeout of one commit request to a REST catalog, unless the ATTACH option
/// [`REST_TIMEOUT_OPTION`] gives one.
const REST_TIMEOUT: Duration = Duration::from_secs(60);
/// ATTACH option: the timeout of a commit request to a REST catalog, in milliseconds (the name
/// Iceberg Java's HTTP client uses).
pub const REST_TIMEOUT_OPTION: &str = "rest.client.socket-timeout-ms";

/// What a compare-and-swap did.
pub(crate) enum Swap {
    /// The catalog now points at the new metadata (of every table swapped).
    Done,
    /// Another writer committed first; nothing changed.
    Conflict,
    /// The catalog failed in a way that leaves open whether it committed (the error to report
    /// if it did not).
    Unknown(Error),
}

/// A catalog connection's REST session for commits (HTTP client, token, config), set up by
/// the first commit and kept on the connection ([`IcebergConnection::commits`]) for the next.
#[derive(Debug, Clone, Default)]
pub struct CommitSession(Arc<Mutex<Option<Arc<RestSession>>>>);

impl CommitSession {
    /// The session, set up from `table`'s FileIO properties (which carry the catalog's
    /// configuration) if there is none yet.
    fn rest(&self, conn: &IcebergConnection, uri: &str, table: &Table) -> Result<Arc<RestSession>> {
        let mut session = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = session.as_ref() {
            return Ok(session.clone());
        }
        let props = table.file_io().config().props().clone();
        let new = Arc::new(RestSession::new(uri, props, conn.sigv4.clone())?);
        *session = Some(new.clone());
        Ok(new)
    }
}

/// The catalog-specific half of a commit.
pub(crate) struct Committer(Kind);

enum Kind {
    Sql(SqlCommitter),
    Rest(Arc<RestSession>),
}

impl Committer {
    /// A committer for `table` in the catalog of `conn` (for a REST catalog, through the
    /// connection's session).
    pub(crate) fn new(conn: &IcebergConnection, table: &Table) -> Result<Self> {
        Ok(Self(match &conn.kind {
            CatalogKind::Sql { warehouse } => Kind::Sql(SqlCommitter::new(warehouse)),
            CatalogKind::Rest { uri } => Kind::Rest(conn.commits.rest(conn, uri, table)?),
        }))
    }

    /// Makes `proposal` the table's metadata if the catalog still has `base`'s.
    pub(crate) async fn swap(&self, base: &Table, proposal: &Proposal) -> Result<Swap> {
        match &self.0 {
            Kind::Sql(sql) => sql.swap(base, proposal).await,
            Kind::Rest(session) => rest::swap(session, base, proposal).await,
        }
    }

    /// Whether the catalog swaps several tables atomically ([`Self::swap_all`]).
    pub(crate) async fn atomic(&self) -> bool {
        match &self.0 {
            Kind::Sql(_) => true,
            Kind::Rest(session) => session.commits_transactions().await,
        }
    }

    /// Makes each proposal its table's metadata, all or none, if the catalog still has every
    /// base's. Only where [`Self::atomic`] says so.
    pub(crate) async fn swap_all(&self, parts: &[(&Table, &Proposal)]) -> Result<Swap> {
        match &self.0 {
            Kind::Sql(sql) => sql.swap_all(parts).await,
            Kind::Rest(session) => rest::swap_all(session, parts).await,
        }
    }
}
