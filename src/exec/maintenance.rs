//! OPTIMIZE and VACUUM: on an attached Iceberg table, or on the target table of a sync.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use iceberg::table::Table;
use iceberg::{NamespaceIdent, TableIdent};

use super::show::rows;
use super::{Output, Session};
use crate::lake::catalog::IcebergConnection;
use crate::lake::maintenance::{OptimizeOptions, VacuumOptions, optimize, vacuum};
use crate::sql::{MaintenanceTarget, Optimize, Vacuum};
use crate::{Error, Result};

impl Session {
    /// `OPTIMIZE`: compacts the table; one row saying what was rewritten.
    pub(super) async fn optimize(&self, statement: &Optimize) -> Result<Output> {
        let (conn, table) = self.maintained_table(&statement.target).await?;
        let mut options =
            OptimizeOptions { target_file_size: statement.target_file_size, ..Default::default() };
        if let Some(n) = statement.min_input_files {
            options.min_input_files = n;
        }
        let started = Instant::now();
        let (_, r) = optimize(&conn, &table, &options).await?;
        let columns: [(&str, u64); 11] = [
            ("partitions", r.partitions),
            ("data_files_removed", r.data_files_removed),
            ("bytes_removed", r.bytes_removed),
            ("delete_files_removed", r.delete_files_removed),
            ("deletes_applied", r.deletes_applied),
            ("data_files_added", r.data_files_added),
            ("bytes_added", r.bytes_added),
            ("manifests_before", r.manifests_before),
            ("manifests_after", r.manifests_after),
            ("partitions_skipped", r.partitions_skipped),
            ("elapsed_ms", started.elapsed().as_millis() as u64),
        ];
        report(&table, &columns)
    }

    /// `VACUUM`: expires old snapshots and deletes unreferenced files; one row saying what went.
    pub(super) async fn vacuum(&self, statement: &Vacuum) -> Result<Output> {
        let (conn, table) = self.maintained_table(&statement.target).await?;
        let mut options = VacuumOptions::default();
        if let Some(retain) = statement.retain {
            options.retain = retain;
        }
        let started = Instant::now();
        let (_, r) = vacuum(&conn, &table, &options).await?;
        let columns: [(&str, u64); 7] = [
            ("snapshots_expired", r.snapshots_expired),
            ("data_files_deleted", r.data_files),
            ("manifests_deleted", r.manifests),
            ("metadata_files_deleted", r.metadata_files),
            ("other_files_deleted", r.other_files),
            ("unreferenced_files_kept", r.kept_young),
            ("elapsed_ms", started.elapsed().as_millis() as u64),
        ];
        report(&table, &columns)
    }

    /// The catalog connection and table a maintenance statement names.
    async fn maintained_table(
        &self,
        target: &MaintenanceTarget,
    ) -> Result<(IcebergConnection, Table)> {
        let name = match target {
            MaintenanceTarget::Table(name) => name.clone(),
            MaintenanceTarget::Sync(sync) => match self.syncs.get(&sync.value) {
                Some(entry) => entry.create.target.clone(),
                None => {
                    return Err(Error::user(format!("there is no sync {sync} in this session"))
                        .with_hint("SHOW SYNCS lists them"));
                }
            },
        };
        let parts = super::name_parts(&name);
        let [catalog, namespace, table] = parts.as_slice() else {
            return Err(Error::user(format!("{name} is not an Iceberg table"))
                .with_hint("name it as catalog.namespace.table, e.g. lake.shop.orders"));
        };
        let conn = self.iceberg_catalog(Some(catalog))?.get().await?.clone();
        let ident = TableIdent::new(NamespaceIdent::new(namespace.clone()), table.clone());
        let loaded = conn.catalog.load_table(&ident).await.map_err(|e| {
            let hint = format!("SHOW TABLES FROM {catalog}.{namespace} lists its tables");
            match e.kind() {
                iceberg::ErrorKind::TableNotFound | iceberg::ErrorKind::NamespaceNotFound => {
                    Error::user(format!("there is no table {name}")).with_hint(hint)
                }
                _ => Error::iceberg(format!("loading {name}"), e),
            }
        })?;
        Ok((conn, loaded))
    }
}

/// One row: the table, then `columns`.
fn report(table: &Table, columns: &[(&str, u64)]) -> Result<Output> {
    let mut fields: Vec<(&str, ArrayRef)> =
        vec![("table", Arc::new(StringArray::from(vec![table.identifier().to_string()])))];
    for (name, value) in columns {
        fields.push((name, Arc::new(UInt64Array::from(vec![*value]))));
    }
    rows(RecordBatch::try_from_iter(fields)?)
}
