//! Documents that do not fit their columns, kept under `on_error = 'dead_letter'` in the table
//! `<table>__errors` next to the target: the document as Extended JSON, the reason and the time.
//!
//! A batch's dead letters are committed just before its rows, to another table: no catalog
//! commits two tables at once. So each dead-letter commit records the target snapshot the batch
//! builds on (`misql.data-parent`). If the target's current snapshot is still that one when the
//! sync starts, the batch's rows never got committed (a crash, a failed commit): those dead
//! letters are rolled back, and the batch, copied again, writes them once.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use iceberg::TableIdent;
use iceberg::table::Table;

use crate::Result;
use crate::lake::catalog::IcebergConnection;
use crate::lake::commit::{Change, commit};
use crate::lake::rollback::rollback_main;
use crate::lake::schema::iceberg_schema;
use crate::lake::table::create_table;
use crate::lake::writer::{TableWriter, WriteOptions};

/// One rejected document.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The document's `_id` as relaxed Extended JSON.
    pub id: String,
    /// The whole document as relaxed Extended JSON (or empty if it could not be read back).
    pub document: String,
    /// Why it was rejected.
    pub error: String,
}

/// The dead-letter table of `target`.
pub fn table_ident(target: &TableIdent) -> TableIdent {
    TableIdent::new(target.namespace().clone(), format!("{}__errors", target.name()))
}

fn schema() -> Arc<Schema> {
    let utc = Some(Arc::from("UTC"));
    Arc::new(Schema::new(vec![
        Field::new("sync", DataType::Utf8, false),
        Field::new("_id", DataType::Utf8, false),
        Field::new("document", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, false),
        Field::new("failed_at", DataType::Timestamp(TimeUnit::Microsecond, utc), false),
    ]))
}

/// Snapshot summary key of a dead-letter commit: the target's snapshot id the batch builds on
/// (`none` for an empty target).
const DATA_PARENT: &str = "misql.data-parent";

fn parent_text(snapshot: Option<i64>) -> String {
    snapshot.map_or_else(|| "none".to_string(), |id| id.to_string())
}

/// Appends `letters` to the dead-letter table of `target`, creating it if needed; `data_parent`
/// is the target's current snapshot, on which the batch's own commit builds.
pub async fn write(
    conn: &IcebergConnection,
    target: &TableIdent,
    sync: &str,
    letters: &[DeadLetter],
    data_parent: Option<i64>,
) -> Result<()> {
    if letters.is_empty() {
        return Ok(());
    }
    let ident = table_ident(target);
    let schema = schema();
    let columns = iceberg_schema(&schema, "_id")?;
    let table = create_table(conn.catalog.as_ref(), &ident, columns, &[], HashMap::new()).await?;
    let now = chrono_now_micros();
    let column = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            column(vec![sync.to_string(); letters.len()]),
            column(letters.iter().map(|l| l.id.clone()).collect()),
            column(letters.iter().map(|l| l.document.clone()).collect()),
            column(letters.iter().map(|l| l.error.clone()).collect()),
            Arc::new(
                TimestampMicrosecondArray::from(vec![now; letters.len()]).with_timezone("UTC"),
            ),
        ],
    )?;
    let mut writer = TableWriter::new(&table, &WriteOptions::from_table(&table))?;
    writer.write(&batch).await?;
    let properties = HashMap::from([
        (DATA_PARENT.to_string(), parent_text(data_parent)),
        ("misql.sync".to_string(), sync.to_string()),
    ]);
    let files = writer.finish().await?.into_iter().map(|written| written.file).collect();
    let change = Change::append(files).with_properties(properties);
    commit(conn, &table, change).await?;
    Ok(())
}

/// Rolls back the dead letters of batches whose rows were never committed to `target`: the
/// newest dead-letter commits that build on `target`'s current snapshot. Returns how many
/// commits were rolled back.
pub async fn recover(conn: &IcebergConnection, target: &Table) -> Result<usize> {
    let ident = table_ident(target.identifier());
    let catalog = conn.catalog.as_ref();
    let exists = catalog
        .table_exists(&ident)
        .await
        .map_err(|e| crate::Error::iceberg(format!("looking up {ident}"), e))?;
    if !exists {
        return Ok(0);
    }
    let letters = catalog
        .load_table(&ident)
        .await
        .map_err(|e| crate::Error::iceberg(format!("loading {ident}"), e))?;
    let current = parent_text(target.metadata().current_snapshot_id());
    let metadata = letters.metadata();
    let lineage = std::iter::successors(metadata.current_snapshot(), |s| {
        s.parent_snapshot_id().and_then(|id| metadata.snapshot_by_id(id))
    });
    let mut keep = metadata.current_snapshot_id();
    let mut orphans = 0;
    for snapshot in lineage {
        if snapshot.summary().additional_properties.get(DATA_PARENT) != Some(&current) {
            break;
        }
        keep = snapshot.parent_snapshot_id();
        orphans += 1;
    }
    if orphans > 0 {
        rollback_main(conn, &letters, keep).await?;
    }
    Ok(orphans)
}

fn chrono_now_micros() -> i64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}
