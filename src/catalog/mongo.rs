//! An attached MongoDB deployment as a DataFusion catalog: `name.<database>.<collection>`
//! resolves to a [`MongoTable`], sampled when a statement first refers to it.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::TableProvider;

use crate::mongo::client::MongoSource;
use crate::mongo::provider::MongoTable;
use crate::mongo::scan::external;

/// The catalog of one MongoDB deployment; every database name resolves (MongoDB creates
/// databases on first write), and a missing collection is reported as a missing table.
#[derive(Debug)]
pub struct MongoCatalog {
    source: Arc<MongoSource>,
}

impl MongoCatalog {
    /// A catalog over `source`.
    pub fn new(source: Arc<MongoSource>) -> Self {
        Self { source }
    }

    /// The deployment behind this catalog.
    pub fn source(&self) -> &Arc<MongoSource> {
        &self.source
    }
}

impl CatalogProvider for MongoCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    /// Database names are only known by asking the server, which this synchronous call must not
    /// do; `SHOW DATABASES` asks instead.
    fn schema_names(&self) -> Vec<String> {
        vec![]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        Some(Arc::new(MongoDatabase { source: self.source.clone(), name: name.to_string() }))
    }
}

/// One MongoDB database as a DataFusion schema.
#[derive(Debug)]
pub struct MongoDatabase {
    source: Arc<MongoSource>,
    name: String,
}

#[async_trait]
impl SchemaProvider for MongoDatabase {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        vec![]
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let sample_size = self.source.sample_size();
        let table = MongoTable::open(self.source.clone(), &self.name, name, sample_size)
            .await
            .map_err(external)?;
        Ok(table.map(|t| Arc::new(t) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, _name: &str) -> bool {
        false
    }
}
