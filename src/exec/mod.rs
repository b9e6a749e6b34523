//! Runs parsed statements against a DataFusion session: misql's own statements here, plain SQL
//! through DataFusion's planner.

mod blame;
mod check;
mod column_names;
mod consistent;
mod describe;
mod describe_table;
mod maintenance;
mod reload;
mod show;
mod sync;

pub use reload::{Reloaded, parse_all};
pub use sync::Mode;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use sqlparser::ast::ObjectName;

use crate::catalog::iceberg::LazyIceberg;
use crate::catalog::{IcebergCatalog, MongoCatalog};
use crate::mongo::client::{DEFAULT_SAMPLE_SIZE, MongoSource, SampleSizeOverride};
use crate::sql::{Attach, AttachKind, Parsed, Statement};
use crate::sync::status::Registry;
use crate::{Error, Result};
use sync::SyncEntry;

/// The name MongoDB is attached under when no ATTACH names it.
pub const DEFAULT_MONGO: &str = "mongo";

/// The default MongoDB connection string when `MONGODB_URI` is not set.
pub const DEFAULT_MONGODB_URI: &str = "mongodb://localhost:27017";

/// The name the embedded Iceberg catalog is attached under when no ATTACH names it.
pub const DEFAULT_ICEBERG: &str = "iceberg";

/// The warehouse of the default embedded Iceberg catalog.
pub const DEFAULT_WAREHOUSE: &str = "./warehouse";

/// What a statement produced.
pub enum Output {
    /// Rows, streamed.
    Rows(SendableRecordBatchStream),
    /// Rows best read one field per line (a sync's status): the table format shows them
    /// expanded.
    Record(SendableRecordBatchStream),
    /// A one-line confirmation (`ATTACH` and other statements without rows).
    Done(String),
    /// Rows that show a failure (CHECK SYNC found differences): printed, then the error.
    Differs(SendableRecordBatchStream, Error),
}

/// A session: the attached systems and the DataFusion context that queries them.
pub struct Session {
    ctx: SessionContext,
    mongo: BTreeMap<String, Arc<MongoSource>>,
    iceberg: BTreeMap<String, Arc<LazyIceberg>>,
    registry: Registry,
    syncs: BTreeMap<String, SyncEntry>,
    mode: Mode,
    /// `SET misql.sample_size`: replaces the sample size of every attached deployment.
    sample_override: SampleSizeOverride,
    /// `SET misql.consistent_reads`: queries read synced tables at a common exact time.
    consistent_reads: bool,
    /// Cancelled at shutdown: every sync's stop token is a child of it.
    stop: tokio_util::sync::CancellationToken,
}

impl Session {
    /// The names a user types in this session: attached catalogs and syncs (for completion).
    pub fn names(&self) -> Vec<String> {
        let catalogs = self.mongo.keys().chain(self.iceberg.keys());
        catalogs.chain(self.syncs.keys()).cloned().collect()
    }

    /// The attached systems, for the names the shell completes.
    pub fn sources(&self) -> crate::repl::Sources {
        let mongo = self.mongo.iter().map(|(n, s)| (n.clone(), s.clone())).collect();
        let iceberg = self.iceberg.iter().map(|(n, c)| (n.clone(), c.clone())).collect();
        crate::repl::Sources { mongo, iceberg }
    }

    /// Whether `name` (`mongo`, `mongo.shop`) starts with an attached MongoDB's name.
    pub fn is_mongo_name(&self, name: &str) -> bool {
        self.mongo.contains_key(name.split('.').next().unwrap_or_default())
    }

    /// One line per sync: its phase and how far it is (`\progress` in the shell).
    pub fn progress(&self) -> String {
        let all = self.registry.all();
        if all.is_empty() {
            return "no syncs in this session".to_string();
        }
        let lines = all.iter().map(|(name, s)| {
            let rows = match s.snapshot_rows_estimated {
                0 => format!("{} rows copied", s.rows_copied),
                total => format!(
                    "{} of about {total} rows copied ({:.0}%)",
                    s.rows_copied,
                    100.0 * s.rows_copied as f64 / total.max(s.rows_copied) as f64
                ),
            };
            format!("sync {name}: {}, {rows}, {} change events applied", s.phase, s.events_applied)
        });
        lines.collect::<Vec<_>>().join("\n")
    }

    /// A session with `mongo` attached from `mongodb_uri` and `iceberg` as the embedded catalog
    /// at `warehouse` (both connected on first use).
    pub fn new(mongodb_uri: &str, warehouse: &str) -> Self {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("datafusion", "public");
        let mut session = Self {
            ctx: SessionContext::new_with_config(config),
            mongo: BTreeMap::new(),
            iceberg: BTreeMap::new(),
            registry: Registry::default(),
            syncs: BTreeMap::new(),
            mode: Mode::default(),
            sample_override: SampleSizeOverride::default(),
            consistent_reads: false,
            stop: tokio_util::sync::CancellationToken::new(),
        };
        session.attach_mongo(DEFAULT_MONGO, MongoSource::new(mongodb_uri, DEFAULT_SAMPLE_SIZE));
        session.attach_iceberg(DEFAULT_ICEBERG, LazyIceberg::new(warehouse, vec![]));
        session
    }

    /// A session configured from the environment (`MONGODB_URI`).
    pub fn from_env() -> Self {
        let uri = std::env::var("MONGODB_URI").unwrap_or_else(|_| DEFAULT_MONGODB_URI.to_string());
        Self::new(&uri, DEFAULT_WAREHOUSE)
    }

    /// The DataFusion context, for embedding and tests.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one statement.
    pub async fn execute(&mut self, parsed: &Parsed) -> Result<Output> {
        match &parsed.statement {
            Statement::Attach(attach) => self.attach(attach).await,
            Statement::ShowTables { from } => {
                let (catalog, namespace) = self.iceberg_namespace(from.as_ref())?;
                show::tables(catalog, namespace).await
            }
            Statement::ShowDatabases { from } => {
                let source = self.mongo_source(from.as_ref().map(|i| i.value.as_str()))?;
                show::databases(source).await
            }
            Statement::ShowCollections { from } => {
                let (source, database) = self.mongo_database(from.as_ref())?;
                show::collections(source, &database).await
            }
            Statement::Describe { name } => match self.mongo_collection(name)? {
                Some((source, db, coll)) => describe::collection(source, &db, &coll).await,
                None => match name_parts(name).as_slice() {
                    [catalog, namespace, table] if self.iceberg.contains_key(catalog) => {
                        describe_table::table(&self.iceberg[catalog], namespace, table).await
                    }
                    _ => self.sql(&format!("DESCRIBE {name}")).await,
                },
            },
            Statement::Sql(statement) => {
                if let Some(setting) = session_setting(statement)? {
                    return self.apply_setting(setting);
                }
                let pinned = match statement.as_ref() {
                    sqlparser::ast::Statement::Query(_) if self.consistent_reads => {
                        consistent::pin(self, statement).await?
                    }
                    _ => Vec::new(),
                };
                let plan = self
                    .ctx
                    .state()
                    .statement_to_plan(DfStatement::Statement(statement.clone()))
                    .await;
                pinned.iter().for_each(|catalog| catalog.unpin_all());
                let plan = plan?;
                let plan = column_names::name_by_path(plan)?;
                let frame = self.ctx.execute_logical_plan(plan).await?;
                let task = Arc::new(frame.task_ctx());
                let physical = blame::wrap(frame.create_physical_plan().await?)?;
                Ok(Output::Rows(datafusion::physical_plan::execute_stream(physical, task)?))
            }
            Statement::CreateSync(create) => self.create_sync(create).await,
            Statement::ExplainSync(explain) => self.explain_sync(explain).await,
            Statement::ShowSyncs => self.show_syncs(),
            Statement::ShowSyncStatus { name } => {
                self.show_sync_status(name.as_ref().map(|n| n.value.as_str()))
            }
            Statement::StopSync { name } => self.stop_sync(&name.value).await,
            Statement::StartSync { name } => self.start_sync(&name.value).await,
            Statement::RefreshSync { name } => self.refresh_sync(&name.value),
            Statement::CheckSync { name } => self.check_sync(&name.value).await,
            Statement::Optimize(optimize) => self.optimize(optimize).await,
            Statement::Vacuum(vacuum) => self.vacuum(vacuum).await,
            Statement::DropSync { name, purge, if_exists } => {
                self.drop_sync(&name.value, *purge, *if_exists).await
            }
        }
    }

    /// Plans and runs SQL text through DataFusion.
    async fn sql(&self, sql: &str) -> Result<Output> {
        Ok(Output::Rows(self.ctx.sql(sql).await?.execute_stream().await?))
    }

    async fn attach(&mut self, attach: &Attach) -> Result<Output> {
        let name = attach.name.value.clone();
        match attach.kind {
            AttachKind::Mongodb => {
                let sample_size = attach
                    .options
                    .iter()
                    .find(|(k, _)| k == "sample_size")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(DEFAULT_SAMPLE_SIZE);
                self.attach_mongo(&name, MongoSource::new(attach.uri.clone(), sample_size));
                Ok(Output::Done(format!("attached MongoDB as {name}")))
            }
            AttachKind::Iceberg => {
                let catalog = LazyIceberg::new(attach.uri.clone(), attach.options.clone());
                catalog.get().await?; // an unreachable catalog fails here, not at first use
                self.attach_iceberg(&name, catalog);
                Ok(Output::Done(format!("attached Iceberg catalog as {name}")))
            }
        }
    }

    fn attach_iceberg(&mut self, name: &str, catalog: LazyIceberg) {
        let catalog = Arc::new(catalog);
        self.ctx.register_catalog(name, Arc::new(IcebergCatalog::new(catalog.clone())));
        self.mongo.remove(name);
        self.iceberg.insert(name.to_string(), catalog);
    }

    /// The Iceberg catalog attached as `name` (or the default one).
    pub fn iceberg_catalog(&self, name: Option<&str>) -> Result<&Arc<LazyIceberg>> {
        iceberg_catalog(&self.iceberg, name)
    }

    /// `catalog[.namespace]` of SHOW TABLES FROM.
    fn iceberg_namespace(
        &self,
        from: Option<&ObjectName>,
    ) -> Result<(&Arc<LazyIceberg>, Option<String>)> {
        let parts = from.map(name_parts).unwrap_or_default();
        match parts.as_slice() {
            [] => Ok((self.iceberg_catalog(None)?, None)),
            [catalog] => Ok((self.iceberg_catalog(Some(catalog))?, None)),
            [catalog, namespace] => {
                Ok((self.iceberg_catalog(Some(catalog))?, Some(namespace.clone())))
            }
            _ => Err(Error::user("SHOW TABLES FROM takes a catalog or catalog.namespace")
                .with_hint("SHOW TABLES FROM lake.shop")),
        }
    }

    /// Carries out `SET`/`RESET`/`SHOW` of a misql session setting.
    fn apply_setting(&mut self, setting: Setting) -> Result<Output> {
        match setting {
            Setting::SampleSize(size) => {
                self.sample_override.set(size);
                Ok(Output::Done(match size {
                    Some(n) => format!("sample size set to {n} documents"),
                    None => "sample size reset to each ATTACH's (default 1000)".to_string(),
                }))
            }
            Setting::ShowSampleSize => {
                let value = match self.sample_override.get() {
                    Some(n) => n.to_string(),
                    None => format!("default (per ATTACH; {DEFAULT_SAMPLE_SIZE} unless set)"),
                };
                show_setting(SAMPLE_SIZE_SETTING, value)
            }
            Setting::ConsistentReads(on) => {
                self.consistent_reads = on;
                Ok(Output::Done(
                    match on {
                        true => "queries read synced tables at the newest time all are exact at",
                        false => "queries read tables as they are now",
                    }
                    .to_string(),
                ))
            }
            Setting::ShowConsistentReads => {
                show_setting(consistent::SETTING, self.consistent_reads.to_string())
            }
        }
    }

    fn attach_mongo(&mut self, name: &str, source: MongoSource) {
        let source = Arc::new(source.with_sample_override(self.sample_override.clone()));
        self.ctx.register_catalog(name, Arc::new(MongoCatalog::new(source.clone())));
        self.iceberg.remove(name);
        self.mongo.insert(name.to_string(), source);
    }

    /// The MongoDB deployment attached as `name` (or the only/default one).
    fn mongo_source(&self, name: Option<&str>) -> Result<&Arc<MongoSource>> {
        let name = name.unwrap_or(DEFAULT_MONGO);
        self.mongo.get(name).ok_or_else(|| {
            Error::user(format!("no MongoDB deployment is attached as `{name}`")).with_hint(
                format!(
                    "attached: {}; ATTACH 'mongodb://host:port' AS {name} (TYPE mongodb)",
                    self.mongo.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// `catalog.database` of SHOW COLLECTIONS FROM.
    fn mongo_database(&self, from: Option<&ObjectName>) -> Result<(&Arc<MongoSource>, String)> {
        let parts = from.map(name_parts).unwrap_or_default();
        match parts.as_slice() {
            [catalog, database] => Ok((self.mongo_source(Some(catalog))?, database.clone())),
            [database] => Ok((self.mongo_source(None)?, database.clone())),
            _ => Err(Error::user("SHOW COLLECTIONS needs a database")
                .with_hint("SHOW COLLECTIONS FROM mongo.<database>; SHOW DATABASES lists them")),
        }
    }

    /// `catalog.database.collection` when `name` is in an attached MongoDB catalog.
    fn mongo_collection(
        &self,
        name: &ObjectName,
    ) -> Result<Option<(Arc<MongoSource>, String, String)>> {
        mongo_collection(&self.mongo, name)
    }
}

/// `catalog.database.collection` when `name` is in one of the `mongo` catalogs.
fn mongo_collection(
    mongo: &BTreeMap<String, Arc<MongoSource>>,
    name: &ObjectName,
) -> Result<Option<(Arc<MongoSource>, String, String)>> {
    match name_parts(name).as_slice() {
        [catalog, database, collection] if mongo.contains_key(catalog) => {
            Ok(Some((mongo[catalog].clone(), database.clone(), collection.clone())))
        }
        _ => Ok(None),
    }
}

/// The Iceberg catalog attached as `name` (the default one when `None`).
fn iceberg_catalog<'a>(
    iceberg: &'a BTreeMap<String, Arc<LazyIceberg>>,
    name: Option<&str>,
) -> Result<&'a Arc<LazyIceberg>> {
    let name = name.unwrap_or(DEFAULT_ICEBERG);
    iceberg.get(name).ok_or_else(|| {
        Error::user(format!("no Iceberg catalog is attached as `{name}`")).with_hint(format!(
            "attached: {}; ATTACH './warehouse' AS {name} (TYPE iceberg)",
            iceberg.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

/// The session setting for the schema sample size.
const SAMPLE_SIZE_SETTING: &str = "misql.sample_size";

/// A misql session setting statement.
enum Setting {
    /// `SET misql.sample_size = N` (`Some(N)`), `= DEFAULT` or `RESET misql.sample_size` (`None`).
    SampleSize(Option<usize>),
    /// `SHOW misql.sample_size`
    ShowSampleSize,
    /// `SET misql.consistent_reads = true|false`, `RESET misql.consistent_reads` (false).
    ConsistentReads(bool),
    /// `SHOW misql.consistent_reads`
    ShowConsistentReads,
}

/// One setting's value as a row.
fn show_setting(name: &str, value: String) -> Result<Output> {
    let batch = arrow::array::RecordBatch::try_from_iter([(
        name,
        Arc::new(arrow::array::StringArray::from(vec![value])) as arrow::array::ArrayRef,
    )])?;
    show::rows(batch)
}

/// Whether `name` is the sample size setting: `misql.sample_size`, or `sample_size` alone.
fn is_sample_size(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == SAMPLE_SIZE_SETTING || name == "sample_size"
}

/// The misql setting a `SET`, `RESET` or `SHOW` statement is about; `None` for other statements
/// (DataFusion's own settings such as `SET datafusion.execution.batch_size` go to DataFusion).
fn session_setting(statement: &sqlparser::ast::Statement) -> Result<Option<Setting>> {
    use sqlparser::ast::{Expr, Reset, Set, Statement as Sql, Value};
    if let Some(on) = consistent::setting(statement)? {
        return Ok(Some(Setting::ConsistentReads(on)));
    }
    if consistent::is_show(statement) {
        return Ok(Some(Setting::ShowConsistentReads));
    }
    let hint = "SET misql.sample_size = 500 (documents sampled to infer a collection's schema), \
                or = DEFAULT for each ATTACH's own";
    match statement {
        Sql::Set(Set::SingleAssignment { variable, values, .. })
            if is_sample_size(&variable.to_string()) =>
        {
            let size = match values.as_slice() {
                [Expr::Identifier(ident)] if ident.value.eq_ignore_ascii_case("default") => None,
                [Expr::Value(value)] => match &value.value {
                    Value::Number(n, _) | Value::SingleQuotedString(n) => {
                        match n.parse::<usize>() {
                            Ok(n) if n > 0 => Some(n),
                            _ => {
                                return Err(Error::user(format!(
                                    "{SAMPLE_SIZE_SETTING} must be a positive whole number of \
                                     documents, not {n}"
                                ))
                                .with_hint(hint));
                            }
                        }
                    }
                    other => {
                        return Err(Error::user(format!(
                            "{SAMPLE_SIZE_SETTING} must be a number of documents, not {other}"
                        ))
                        .with_hint(hint));
                    }
                },
                _ => {
                    return Err(Error::user(format!(
                        "{SAMPLE_SIZE_SETTING} takes one number of documents"
                    ))
                    .with_hint(hint));
                }
            };
            Ok(Some(Setting::SampleSize(size)))
        }
        Sql::Reset(reset) => match &reset.reset {
            Reset::ConfigurationParameter(name) if is_sample_size(&name.to_string()) => {
                Ok(Some(Setting::SampleSize(None)))
            }
            _ => Ok(None),
        },
        Sql::ShowVariable { variable } => {
            let name: Vec<&str> = variable.iter().map(|i| i.value.as_str()).collect();
            Ok(is_sample_size(&name.join(".")).then_some(Setting::ShowSampleSize))
        }
        _ => Ok(None),
    }
}

/// The identifiers of a dotted name.
fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0.iter().filter_map(|p| p.as_ident()).map(|i| i.value.clone()).collect()
}
