//! Documents that do not fit their columns, kept under `on_error = 'dead_letter'` in the table
//! `<table>__errors` next to the target: the document as Extended JSON, the reason and the time.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use iceberg::{Catalog, TableIdent};

use crate::Result;
use crate::iceberg::commit::{append, create_table};
use crate::iceberg::schema::iceberg_schema;
use crate::iceberg::writer::{TableWriter, WriteOptions};

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

/// Appends `letters` to the dead-letter table of `target`, creating it if needed.
pub async fn write(
    catalog: &dyn Catalog,
    target: &TableIdent,
    sync: &str,
    letters: &[DeadLetter],
) -> Result<()> {
    if letters.is_empty() {
        return Ok(());
    }
    let ident = table_ident(target);
    let schema = schema();
    let table =
        create_table(catalog, &ident, iceberg_schema(&schema, "_id")?, &[], HashMap::new()).await?;
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
    append(catalog, &table, writer.finish().await?, HashMap::new()).await?;
    Ok(())
}

fn chrono_now_micros() -> i64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}
