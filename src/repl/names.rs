//! The names Tab completes from what is attached: databases and collections of each MongoDB,
//! namespaces and tables of each Iceberg catalog, and the field paths of a collection or table
//! (`customer.address.city`). Fetched on first use in the background and kept until `\refresh`:
//! a Tab waits for a fetch at most [`FETCH_WAIT`], so it never hangs on a slow server; a fetch
//! that finishes later serves the next Tab.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Fields};
use iceberg::{NamespaceIdent, TableIdent};

use crate::catalog::iceberg::LazyIceberg;
use crate::mongo::client::MongoSource;

/// How long a Tab waits for names being fetched.
pub const FETCH_WAIT: Duration = Duration::from_millis(300);

/// Documents sampled for the field paths of a collection.
const FIELD_SAMPLE: usize = 100;

/// The attached systems, by catalog name.
#[derive(Clone, Default)]
pub struct Sources {
    /// MongoDB deployments.
    pub mongo: Vec<(String, Arc<MongoSource>)>,
    /// Iceberg catalogs.
    pub iceberg: Vec<(String, Arc<LazyIceberg>)>,
}

/// A fetched list, or one on its way.
#[derive(Clone)]
enum Fetched {
    Pending,
    Ready(Vec<String>),
}

/// The cache of fetched names.
pub struct Names {
    handle: tokio::runtime::Handle,
    sources: Sources,
    cache: Arc<Mutex<HashMap<String, Fetched>>>,
}

impl Names {
    /// Names of `sources`, fetched on `handle`'s runtime.
    pub fn new(sources: Sources, handle: tokio::runtime::Handle) -> Self {
        Self { handle, sources, cache: Arc::default() }
    }

    /// Takes the attached systems as they are now (after ATTACH).
    pub fn set_sources(&mut self, sources: Sources) {
        self.sources = sources;
    }

    /// Forgets everything fetched.
    pub fn forget(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The catalog names.
    pub fn catalogs(&self) -> impl Iterator<Item = &str> {
        let mongo = self.sources.mongo.iter().map(|(n, _)| n.as_str());
        mongo.chain(self.sources.iceberg.iter().map(|(n, _)| n.as_str()))
    }

    /// The names one level below `parent` (`mongo`: databases; `mongo.shop`: collections;
    /// `iceberg`: namespaces; `iceberg.shop`: tables), or the field paths of the collection or
    /// table `parent` names (three parts). Empty while a fetch is under way or failed.
    pub fn below(&self, parent: &str) -> Vec<String> {
        let state = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(parent).cloned();
        match state {
            Some(Fetched::Ready(names)) => return names,
            Some(Fetched::Pending) => {}
            None => self.fetch(parent),
        }
        let until = Instant::now() + FETCH_WAIT;
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
            let state = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(parent).cloned();
            if let Some(Fetched::Ready(names)) = state {
                return names;
            }
        }
        Vec::new()
    }

    /// Starts fetching the names below `parent` in the background.
    fn fetch(&self, parent: &str) {
        let parts: Vec<String> = parent.split('.').map(str::to_string).collect();
        let mongo = self.sources.mongo.iter().find(|(n, _)| *n == parts[0]).map(|(_, s)| s.clone());
        let iceberg =
            self.sources.iceberg.iter().find(|(n, _)| *n == parts[0]).map(|(_, c)| c.clone());
        if mongo.is_none() && iceberg.is_none() || parts.len() > 3 {
            return;
        }
        let cache = self.cache.clone();
        cache.lock().unwrap_or_else(|e| e.into_inner()).insert(parent.into(), Fetched::Pending);
        let key = parent.to_string();
        self.handle.spawn(async move {
            let names = match (mongo, iceberg) {
                (Some(source), _) => mongo_names(&source, &parts[1..]).await,
                (_, Some(catalog)) => iceberg_names(&catalog, &parts[1..]).await,
                _ => None,
            };
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            match names {
                Some(names) => cache.insert(key, Fetched::Ready(names)),
                // A failed fetch is tried again at the next Tab.
                None => cache.remove(&key),
            };
        });
    }
}

/// Databases, collections or field paths of a MongoDB deployment.
async fn mongo_names(source: &MongoSource, parts: &[String]) -> Option<Vec<String>> {
    match parts {
        [] => source.database_names().await.ok(),
        [db] => source.collection_names(db).await.ok(),
        [db, coll] => {
            let inference = source.infer(db, coll, FIELD_SAMPLE).await.ok()??;
            Some(field_paths(inference.schema().fields()))
        }
        _ => None,
    }
}

/// Namespaces, tables or field paths of an Iceberg catalog.
async fn iceberg_names(catalog: &LazyIceberg, parts: &[String]) -> Option<Vec<String>> {
    let catalog = &catalog.get().await.ok()?.catalog;
    match parts {
        [] => {
            let namespaces = catalog.list_namespaces(None).await.ok()?;
            Some(namespaces.iter().map(|ns| ns.join(".")).collect())
        }
        [ns] => {
            let tables = catalog.list_tables(&NamespaceIdent::new(ns.clone())).await.ok()?;
            Some(tables.iter().map(|t| t.name().to_string()).collect())
        }
        [ns, table] => {
            let ident = TableIdent::new(NamespaceIdent::new(ns.clone()), table.clone());
            let table = catalog.load_table(&ident).await.ok()?;
            let schema = table.metadata().current_schema();
            let arrow = iceberg::arrow::schema_to_arrow_schema(schema).ok()?;
            Some(field_paths(arrow.fields()))
        }
        _ => None,
    }
}

/// Every field path of `fields`: each top-level name, and each nested one as `a.b.c`.
pub fn field_paths(fields: &Fields) -> Vec<String> {
    let mut paths = Vec::new();
    for field in fields {
        paths.push(field.name().clone());
        if let DataType::Struct(children) = field.data_type() {
            paths
                .extend(field_paths(children).into_iter().map(|p| format!("{}.{p}", field.name())));
        }
    }
    paths
}
