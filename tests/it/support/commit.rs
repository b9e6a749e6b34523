//! Shorthands for the one commit path in tests that write tables directly.

use std::collections::HashMap;

use iceberg::spec::DataFile;
use iceberg::table::Table;
use misql::lake::catalog::IcebergConnection;
use misql::lake::commit::{Change, commit};

/// Commits `data` files with summary `properties` (an `append` snapshot).
pub async fn append(
    conn: &IcebergConnection,
    table: &Table,
    data: Vec<DataFile>,
    properties: HashMap<String, String>,
) -> misql::Result<Table> {
    commit(conn, table, Change::append(data).with_properties(properties)).await
}

/// Commits `data` and `deletes` in one snapshot with summary `properties` (a row delta).
pub async fn commit_row_delta(
    conn: &IcebergConnection,
    table: &Table,
    data: Vec<DataFile>,
    deletes: Vec<DataFile>,
    properties: HashMap<String, String>,
) -> misql::Result<Table> {
    commit(conn, table, Change::rows(data, deletes).with_properties(properties)).await
}
