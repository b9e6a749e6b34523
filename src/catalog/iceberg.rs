//! An attached Iceberg catalog as a DataFusion catalog: `name.<namespace>.<table>` resolves to the
//! table's current snapshot each time a statement refers to it, so tables created or changed by a
//! sync are visible at once (iceberg-datafusion's own catalog provider lists tables only once) —
//! or to a snapshot the statement was pinned to (consistent reads across tables).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::TableProvider;
use iceberg::table::Table;
use iceberg::{NamespaceIdent, TableIdent};
use iceberg_datafusion::IcebergStaticTableProvider;

use super::evolved_scan::EvolvedTable;
use tokio::sync::OnceCell;

use crate::lake::catalog::{IcebergConnection, connect};
use crate::mongo::scan::external;
use crate::{Error, Result};

/// An attached Iceberg catalog, connected on first use (the default `iceberg` catalog must not
/// create `./warehouse` for a statement that never touches it).
#[derive(Debug)]
pub struct LazyIceberg {
    uri: String,
    options: Vec<(String, String)>,
    connection: OnceCell<IcebergConnection>,
    /// Tables the statement being planned reads at a given snapshot.
    pins: Mutex<HashMap<TableIdent, (Table, i64)>>,
}

impl LazyIceberg {
    /// A catalog at `uri` with ATTACH options; nothing is contacted yet.
    pub fn new(uri: impl Into<String>, options: Vec<(String, String)>) -> Self {
        let pins = Mutex::default();
        Self { uri: uri.into(), options, connection: OnceCell::new(), pins }
    }

    /// Reads `table` (as loaded) at snapshot `snapshot_id` until [`Self::unpin_all`].
    pub fn pin(&self, table: Table, snapshot_id: i64) {
        let ident = table.identifier().clone();
        self.pins.lock().unwrap_or_else(|e| e.into_inner()).insert(ident, (table, snapshot_id));
    }

    /// Reads every table at its current snapshot again.
    pub fn unpin_all(&self) {
        self.pins.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn pinned(&self, table: &TableIdent) -> Option<(Table, i64)> {
        self.pins.lock().unwrap_or_else(|e| e.into_inner()).get(table).cloned()
    }

    /// The connection, made on first call.
    pub async fn get(&self) -> Result<&IcebergConnection> {
        self.connection.get_or_try_init(|| connect(&self.uri, &self.options)).await
    }

    /// The URI as attached.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

/// The catalog of one Iceberg catalog; every namespace name resolves, and a missing table is
/// reported as a missing table.
#[derive(Debug)]
pub struct IcebergCatalog {
    catalog: Arc<LazyIceberg>,
}

impl IcebergCatalog {
    /// A DataFusion catalog over `catalog`.
    pub fn new(catalog: Arc<LazyIceberg>) -> Self {
        Self { catalog }
    }
}

impl CatalogProvider for IcebergCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    /// Namespaces are listed by `SHOW TABLES`, which may ask the catalog; this synchronous call
    /// must not.
    fn schema_names(&self) -> Vec<String> {
        vec![]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        Some(Arc::new(IcebergNamespace {
            catalog: self.catalog.clone(),
            namespace: NamespaceIdent::new(name.to_string()),
        }))
    }
}

/// One namespace of an Iceberg catalog as a DataFusion schema.
#[derive(Debug)]
pub struct IcebergNamespace {
    catalog: Arc<LazyIceberg>,
    namespace: NamespaceIdent,
}

impl IcebergNamespace {
    /// The table `ident` at its current snapshot; `None` when it does not exist.
    async fn load(&self, ident: &TableIdent) -> DfResult<Option<Table>> {
        let catalog = &self.catalog.get().await.map_err(external)?.catalog;
        let exists = catalog
            .table_exists(ident)
            .await
            .map_err(|e| external(Error::iceberg(format!("looking up {}", display(ident)), e)))?;
        if !exists {
            return Ok(None);
        }
        let table = catalog
            .load_table(ident)
            .await
            .map_err(|e| external(Error::iceberg(format!("loading {}", display(ident)), e)))?;
        Ok(Some(table))
    }
}

#[async_trait]
impl SchemaProvider for IcebergNamespace {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        vec![]
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let ident = TableIdent::new(self.namespace.clone(), name.to_string());
        let (table, pinned) = match self.catalog.pinned(&ident) {
            Some((table, snapshot_id)) => (table, Some(snapshot_id)), // loaded when pinned
            None => match self.load(&ident).await? {
                Some(table) => (table, None),
                None => return Ok(None),
            },
        };
        let reading = |e| external(Error::iceberg(format!("reading {}", display(&ident)), e));
        if table.metadata().schemas_iter().len() > 1 {
            // Files may be older than the current schema: see `evolved_scan`.
            let evolved = EvolvedTable::try_new(table, pinned).map_err(reading)?;
            return Ok(Some(Arc::new(evolved)));
        }
        let provider = match pinned {
            Some(id) => IcebergStaticTableProvider::try_new_from_table_snapshot(table, id).await,
            None => IcebergStaticTableProvider::try_new_from_table(table).await,
        };
        Ok(Some(Arc::new(provider.map_err(reading)?)))
    }

    fn table_exist(&self, _name: &str) -> bool {
        false
    }
}

/// `namespace.table`.
pub fn display(ident: &TableIdent) -> String {
    format!("{}.{}", ident.namespace().join("."), ident.name())
}
