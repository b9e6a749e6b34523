//! Moving a table's `main` branch back to an earlier snapshot (or to no snapshot): the commits
//! after it stay in the metadata but are no longer the table's contents. iceberg-rust 0.10.1
//! has no action for it; it is a metadata-only change on misql's commit path.

use ::iceberg::spec::{MAIN_BRANCH, SnapshotReference, SnapshotRetention};
use ::iceberg::table::Table;
use ::iceberg::{TableRequirement, TableUpdate};

use super::catalog::IcebergConnection;
use super::commit::{Change, commit};
use crate::Result;

/// Makes `to` (a snapshot of `table`'s history, or `None` for an empty table) the head of
/// `main`, provided `main` is still where `table` has it; returns the table reloaded.
pub async fn rollback_main(
    conn: &IcebergConnection,
    table: &Table,
    to: Option<i64>,
) -> Result<Table> {
    let metadata = table.metadata();
    let update = match to {
        Some(id) => TableUpdate::SetSnapshotRef {
            ref_name: MAIN_BRANCH.to_string(),
            reference: SnapshotReference::new(id, SnapshotRetention::branch(None, None, None)),
        },
        None => TableUpdate::RemoveSnapshotRef { ref_name: MAIN_BRANCH.to_string() },
    };
    let change = Change::metadata(
        format!("a rollback to snapshot {to:?}"),
        vec![
            TableRequirement::UuidMatch { uuid: metadata.uuid() },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: MAIN_BRANCH.to_string(),
                snapshot_id: metadata.current_snapshot_id(),
            },
        ],
        vec![update],
        Box::new(move |m| m.current_snapshot_id() == to),
    );
    commit(conn, table, change).await
}
