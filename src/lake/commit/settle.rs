//! After a swap: confirming that the catalog has the change ([`confirm`]), settling an unknown
//! outcome by reading the table back ([`settle`]), and deleting the metadata files a commit
//! expired ([`expire_metadata_files`]).

use std::time::Duration;

use ::iceberg::TableIdent;
use ::iceberg::table::Table;

use super::{Change, Staged};
use crate::lake::catalog::IcebergConnection;
use crate::{Error, ErrorKind, Result};

/// Attempts at reading the table back to settle an unknown outcome.
const SETTLE_ATTEMPTS: u32 = 4;

/// Table property: delete metadata files that fall off the metadata log after a commit.
pub const DELETE_AFTER_COMMIT_PROPERTY: &str = "write.metadata.delete-after-commit.enabled";

/// After a commit from `base` to `committed`: when the table asks for it
/// ([`DELETE_AFTER_COMMIT_PROPERTY`]), deletes the metadata files `base` knew that are neither
/// current nor in the log any more (the log keeps `write.metadata.previous-versions-max`
/// entries), as iceberg-java does. Best effort: VACUUM removes what is left.
pub(super) async fn expire_metadata_files(base: &Table, committed: &Table) {
    let enabled = committed
        .metadata()
        .properties()
        .get(DELETE_AFTER_COMMIT_PROPERTY)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !enabled {
        return;
    }
    let logged = |table: &Table| -> Vec<String> {
        let log = table.metadata().metadata_log().iter().map(|l| l.metadata_file.clone());
        log.chain(table.metadata_location().map(str::to_string)).collect()
    };
    let kept = logged(committed);
    for file in logged(base).into_iter().filter(|f| !kept.contains(f)) {
        if let Err(e) = committed.file_io().delete(&file).await {
            tracing::debug!(file, error = %e, "cannot delete an expired metadata file");
        }
    }
}

/// After a swap the catalog accepted: the table reloaded, which must have the change.
pub(super) async fn confirm(
    conn: &IcebergConnection,
    name: &TableIdent,
    change: &Change,
    staged: &Staged,
) -> Result<Table> {
    let reloaded = reload(conn, name).await?;
    if change.applied(staged, reloaded.metadata()) {
        return Ok(reloaded);
    }
    Err(Error::commit(
        ErrorKind::CommitUnknown,
        format!(
            "the commit of {} to {name} was accepted, but the catalog does not have it (its \
             current metadata is {})",
            staged.proposal.what,
            reloaded.metadata_location().unwrap_or("unknown")
        ),
    )
    .with_hint("another writer may have replaced it at once; the sync retries from its checkpoint"))
}

/// What reading the table back says of a commit whose outcome was unknown.
pub(super) enum Settled {
    /// The table has it (reloaded).
    Applied(Box<Table>),
    /// The table does not have it.
    NotApplied,
    /// The table could not be read: the outcome stays unknown.
    Unknown,
}

/// Settles an unknown outcome by reading the table back (retried while the catalog fails).
pub(super) async fn settle(
    conn: &IcebergConnection,
    name: &TableIdent,
    change: &Change,
    staged: &Staged,
) -> Settled {
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=SETTLE_ATTEMPTS {
        match reload(conn, name).await {
            Ok(table) if change.applied(staged, table.metadata()) => {
                return Settled::Applied(Box::new(table));
            }
            Ok(_) => return Settled::NotApplied,
            Err(e) if attempt < SETTLE_ATTEMPTS => {
                tracing::warn!("reading {name} back after an unknown commit outcome: {e}");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(_) => {}
        }
    }
    Settled::Unknown
}

/// The table as the catalog has it now (a load that fails for a moment is tried again).
pub(super) async fn reload(conn: &IcebergConnection, name: &TableIdent) -> Result<Table> {
    crate::lake::retry::load_table(conn.catalog.as_ref(), name).await
}
