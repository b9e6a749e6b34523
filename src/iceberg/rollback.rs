//! Moving a table's `main` branch back to an earlier snapshot (or to no snapshot): the commits
//! after it stay in the metadata but are no longer the table's contents. iceberg-rust 0.10.1
//! has no action for it, so it goes through misql's compare-and-swap ([`super::swap`]).

use ::iceberg::spec::{MAIN_BRANCH, SnapshotReference, SnapshotRetention};
use ::iceberg::table::Table;
use ::iceberg::{TableRequirement, TableUpdate};

use super::catalog::IcebergConnection;
use super::swap::{Proposal, commit_metadata};
use crate::{Error, Result};

/// Makes `to` (a snapshot of `table`'s history, or `None` for an empty table) the head of
/// `main`, provided `main` is still where `table` has it; returns the table reloaded.
pub async fn rollback_main(
    conn: &IcebergConnection,
    table: &Table,
    to: Option<i64>,
) -> Result<Table> {
    let name = table.identifier().clone();
    let context = || format!("rolling back {name}");
    let metadata = table.metadata();
    let builder = metadata.clone().into_builder(table.metadata_location().map(str::to_string));
    let (builder, update) = match to {
        Some(id) => {
            let reference = SnapshotReference::new(id, SnapshotRetention::branch(None, None, None));
            let update = TableUpdate::SetSnapshotRef {
                ref_name: MAIN_BRANCH.to_string(),
                reference: reference.clone(),
            };
            (builder.set_ref(MAIN_BRANCH, reference), update)
        }
        None => (
            Ok(builder.remove_ref(MAIN_BRANCH)),
            TableUpdate::RemoveSnapshotRef { ref_name: MAIN_BRANCH.to_string() },
        ),
    };
    let built = builder.and_then(|b| b.build()).map_err(|e| Error::iceberg(context(), e))?;
    let proposal = Proposal {
        what: format!("a rollback to snapshot {to:?}"),
        metadata: built.metadata,
        updates: vec![update],
        requirements: vec![
            TableRequirement::UuidMatch { uuid: metadata.uuid() },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: MAIN_BRANCH.to_string(),
                snapshot_id: metadata.current_snapshot_id(),
            },
        ],
    };
    commit_metadata(conn, table, &proposal, |t| t.metadata().current_snapshot_id() == to).await
}
