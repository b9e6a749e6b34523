//! The sync statements: CREATE SYNC (planned, target prepared, snapshot run inline with `--once`
//! or in the background otherwise), EXPLAIN SYNC, SHOW SYNCS, SHOW SYNC STATUS, DROP SYNC.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};

use super::show::rows;
use super::{Output, Session};
use crate::lake::schema::iceberg_schema;
use crate::sql::{CreateSync, DeleteMode, ExplainSync, SyncOption};
use crate::sync::database::DatabaseSync;
use crate::sync::plan::SyncPlan;
use crate::sync::status::{SyncPhase, SyncStatus};
use crate::sync::target::table_ident;
use crate::sync::{SyncTask, dead_letter};
use crate::{Error, Result};

/// How long DROP SYNC and CREATE OR REPLACE SYNC wait for a running sync to commit what it
/// read before cutting it off (its checkpoint makes that safe).
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Attempts of a `--once` sync when the server or catalog is unavailable (backoff 1, 2, 4, 8 s).
const ONCE_ATTEMPTS: u32 = 5;

/// How syncs run in this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `--once`: each CREATE SYNC copies its snapshot before the next statement runs.
    Once,
    /// Syncs run in the background; the statement returns at once.
    #[default]
    Background,
}

/// A sync created in this session.
pub struct SyncEntry {
    /// Its definition.
    pub create: CreateSync,
    /// The task running it (background mode).
    pub task: Option<tokio::task::JoinHandle<Result<()>>>,
    /// A database sync's shared state (to hand a collection over to a sync of its own).
    pub database: Option<Arc<DatabaseSync>>,
    /// Stops it at a batch boundary, with what it read committed.
    pub stop: tokio_util::sync::CancellationToken,
    /// Asks it to copy its collection again (REFRESH SYNC).
    pub refresh: Arc<std::sync::atomic::AtomicBool>,
}

/// What planning and preparing a sync needs from the session, detached from it so that a
/// database sync can build the sync of a collection created while it runs.
#[derive(Clone)]
pub struct SyncBuilder {
    pub(super) ctx: datafusion::prelude::SessionContext,
    pub(super) mongo: std::collections::BTreeMap<String, Arc<crate::mongo::client::MongoSource>>,
    pub(super) iceberg:
        std::collections::BTreeMap<String, Arc<crate::catalog::iceberg::LazyIceberg>>,
    pub(super) registry: crate::sync::status::Registry,
    pub(super) sample_override: crate::mongo::client::SampleSizeOverride,
    pub(super) stop: tokio_util::sync::CancellationToken,
}

impl SyncBuilder {
    /// Plans a sync and prepares everything it needs, without running it.
    pub async fn build(&self, create: &CreateSync) -> Result<SyncTask> {
        if create.options.delete_mode == DeleteMode::Equality {
            return Err(Error::user(format!(
                "sync {}: delete_mode = 'equality' is not supported yet; misql writes position \
                 deletes, which every Iceberg reader applies",
                create.name
            ))
            .with_hint("leave the option out, or write delete_mode = 'position'"));
        }
        let (source, database, collection) = super::mongo_collection(&self.mongo, &create.source)?
            .ok_or_else(|| {
                Error::user(format!(
                    "the source of sync {} must be a MongoDB collection",
                    create.name
                ))
                .with_hint(format!(
                    "attached MongoDB deployments: {}",
                    self.mongo.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
        let parts = super::name_parts(&create.target);
        let catalog = super::iceberg_catalog(&self.iceberg, parts.first().map(String::as_str))?;
        let connection = catalog.get().await?.clone();
        let plan = self.plan_with_sample_size(create).await?;
        if !plan.evolving && create.options.given.contains(&SyncOption::OnTypeChange) {
            return Err(Error::user(format!(
                "sync {}: on_type_change applies to SELECT * syncs only; its SELECT list fixes \
                 the columns",
                create.name
            ))
            .with_hint(
                "a value that does not fit its column follows on_error; remove on_type_change, \
                 or use SELECT * to let the table follow the documents",
            ));
        }
        Ok(SyncTask {
            name: create.name.value.clone(),
            create: create.clone(),
            plan: std::sync::RwLock::new(std::sync::Arc::new(plan)),
            source,
            database,
            collection,
            catalog: connection.catalog.clone(),
            connection,
            target: table_ident(create),
            registry: self.registry.clone(),
            maintenance: Default::default(),
            stop: self.stop.child_token(),
            refresh: Default::default(),
            feed: None,
        })
    }

    /// Plans `create`, sampling `WITH (sample_size = N)` documents when the option is given.
    async fn plan_with_sample_size(&self, create: &CreateSync) -> Result<SyncPlan> {
        if !create.options.given.contains(&SyncOption::SampleSize) {
            return SyncPlan::new(&self.ctx, create).await;
        }
        let _scoped = self.sample_override.scoped(create.options.sample_size);
        SyncPlan::new(&self.ctx, create).await
    }
}

impl Session {
    /// What building a sync needs, detached from the session.
    pub(super) fn builder(&self) -> SyncBuilder {
        SyncBuilder {
            ctx: self.ctx.clone(),
            mongo: self.mongo.clone(),
            iceberg: self.iceberg.clone(),
            registry: self.registry.clone(),
            sample_override: self.sample_override.clone(),
            stop: self.stop.clone(),
        }
    }

    /// Plans a sync and prepares everything it needs, without running it.
    pub(super) async fn build_sync(&self, create: &CreateSync) -> Result<SyncTask> {
        self.builder().build(create).await
    }

    /// [`Self::build_sync`], retried while the server or catalog is unavailable (planning
    /// samples the collection and opens the target catalog): backoff 1, 2, 4, 8 s.
    async fn build_sync_with_retries(&self, create: &CreateSync) -> Result<SyncTask> {
        let mut backoff = std::time::Duration::from_secs(1);
        for _ in 1..ONCE_ATTEMPTS {
            match self.build_sync(create).await {
                Err(err) if err.is_transient() => {
                    tracing::warn!(
                        "sync {}: {}; retrying in {}s",
                        create.name,
                        err.user_facing(),
                        backoff.as_secs()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                result => return result,
            }
        }
        self.build_sync(create).await
    }

    /// CREATE SYNC.
    pub(super) async fn create_sync(&mut self, create: &CreateSync) -> Result<Output> {
        let name = create.name.value.clone();
        if self.syncs.contains_key(&name) && !create.or_replace {
            if create.if_not_exists {
                return Ok(Output::Done(format!("sync {name} already exists")));
            }
            return Err(Error::user(format!("sync {name} already exists")).with_hint(format!(
                "CREATE OR REPLACE SYNC {name} ... redefines it; DROP SYNC {name} removes it"
            )));
        }
        if let Some(mut old) = self.syncs.remove(&name) {
            stop_task(&mut old).await;
        }
        let entry = self.start(create).await?;
        self.syncs.insert(name.clone(), entry);
        let all = self.registry.all();
        let status = &all[&name];
        if create.collections.is_some() {
            let prefix = format!("{name}/");
            let members: Vec<_> = all.iter().filter(|(n, _)| n.starts_with(&prefix)).collect();
            let rows: u64 = members.iter().map(|(_, s)| s.rows_copied).sum();
            return Ok(Output::Done(match self.mode {
                Mode::Once => format!(
                    "sync {name}: {} collections, {rows} rows in {}",
                    members.len(),
                    create.target
                ),
                Mode::Background => format!("sync {name} started"),
            }));
        }
        Ok(Output::Done(match self.mode {
            Mode::Once => format!(
                "sync {name}: snapshot complete, {} rows in {}; {} change events applied{}",
                status.rows_copied,
                create.target,
                status.events_applied,
                match status.transactions {
                    0 => String::new(),
                    n => format!(
                        " ({n} transactions, the largest of {} changes)",
                        status.largest_transaction
                    ),
                }
            ),
            Mode::Background => format!("sync {name} started"),
        }))
    }

    /// A database sync of `create` (its `collections` set).
    fn database_sync(&self, create: &CreateSync) -> Result<DatabaseSync> {
        let parts = super::name_parts(&create.source);
        let source = self.mongo_source(parts.first().map(String::as_str))?.clone();
        let database = parts.get(1).cloned().unwrap_or_default();
        let catalog = parts.first().cloned().unwrap_or_default();
        // Collections a sync of their own reads are left out.
        let taken_elsewhere = self
            .syncs
            .values()
            .filter(|e| e.create.collections.is_none() && e.create.name != create.name)
            .filter_map(|e| match super::name_parts(&e.create.source).as_slice() {
                [c, d, coll] if *c == catalog && *d == database => Some(coll.clone()),
                _ => None,
            })
            .collect();
        let builder = self.builder();
        let build: crate::sync::database::Build = Arc::new(move |create: CreateSync| {
            let builder = builder.clone();
            Box::pin(async move { builder.build(&create).await })
        });
        Ok(DatabaseSync::new(
            create.clone(),
            source,
            database,
            taken_elsewhere,
            self.registry.clone(),
            self.stop.child_token(),
            build,
        ))
    }

    /// Starts a database sync: in the background, or (`--once`) to completion.
    async fn start_database(&mut self, create: &CreateSync) -> Result<SyncEntry> {
        let name = create.name.value.clone();
        let database = Arc::new(self.database_sync(create)?);
        let stop = database.stop.clone();
        let shared = database.clone();
        let glob = create.collections.as_ref().map_or("*", |p| p.glob.as_str());
        let source = format!("{}.{glob}", create.source);
        self.registry.starting(&name, source, create.target.to_string());
        let task = match self.mode {
            Mode::Once => {
                let result = database.run(true, ONCE_ATTEMPTS).await;
                self.record_failure(&name, &result);
                result?;
                None
            }
            Mode::Background => {
                let registry = self.registry.clone();
                Some(tokio::spawn(async move {
                    let result = database.clone().run(false, u32::MAX).await;
                    match &result {
                        Ok(()) => registry.update(&database.name, |s| s.enter(SyncPhase::Stopped)),
                        Err(err) => registry.failed(&database.name, err),
                    }
                    result
                }))
            }
        };
        Ok(SyncEntry {
            create: create.clone(),
            task,
            stop,
            refresh: Default::default(),
            database: Some(shared),
        })
    }

    /// A sync of its own for `create`'s collection takes precedence over the database syncs
    /// whose pattern takes it: they leave it out, and stop their sync of it (waiting at most
    /// [`STOP_WAIT`] for its batch to be committed).
    async fn hand_over(&self, create: &CreateSync) {
        let parts = super::name_parts(&create.source);
        let [catalog, database, collection] = parts.as_slice() else { return };
        for entry in self.syncs.values() {
            let Some(db) = &entry.database else { continue };
            let source = super::name_parts(&db.create.source);
            if source != [catalog.clone(), database.clone()] {
                continue;
            }
            let Some(member) = db.hand_over(collection, &create.name.value) else { continue };
            let until = std::time::Instant::now() + STOP_WAIT;
            while std::time::Instant::now() < until {
                let phase = self.registry.get(&member, |s| s.phase);
                let running = !matches!(
                    phase,
                    None | Some(SyncPhase::Stopped | SyncPhase::Failed | SyncPhase::Dropped)
                );
                if !running {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }

    /// Builds and starts a sync: in the background, or (`--once`) to completion.
    async fn start(&mut self, create: &CreateSync) -> Result<SyncEntry> {
        if create.collections.is_some() {
            return self.start_database(create).await;
        }
        self.hand_over(create).await;
        let name = create.name.value.clone();
        let sync = self.build_sync_with_retries(create).await?;
        let (stop, refresh) = (sync.stop.clone(), sync.refresh.clone());
        self.registry.starting(&name, create.source.to_string(), create.target.to_string());
        let task = match self.mode {
            Mode::Once => {
                let result = sync.run_with_retries(true, ONCE_ATTEMPTS).await;
                self.record_failure(&name, &result);
                result?;
                None
            }
            Mode::Background => {
                let span = crate::logging::sync_span(&name);
                let run = sync.run_and_report(false, u32::MAX);
                Some(tokio::spawn(tracing::Instrument::instrument(run, span)))
            }
        };
        Ok(SyncEntry { create: create.clone(), task, stop, refresh, database: None })
    }

    /// EXPLAIN of a database sync: the collections it would take now, and those it leaves out.
    async fn explain_database_sync(&self, create: &CreateSync) -> Result<Output> {
        let database = self.database_sync(create)?;
        let found = database.collections().await?;
        let (taken, excluded, elsewhere) = (found.taken, found.excluded, found.elsewhere);
        let pattern = create.collections.as_ref().map(|p| p.glob.as_str()).unwrap_or("*");
        let list = |names: &[String]| {
            if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
        };
        let tables: Vec<String> = taken.iter().map(|c| format!("{}.{c}", create.target)).collect();
        let sections = [
            ("sync", create.to_string()),
            ("collections", list(&taken)),
            ("excluded", list(&excluded)),
            ("synced_by_other_syncs", list(&elsewhere)),
            ("target_tables", list(&tables)),
            ("each_table", "SELECT * (the table follows its documents; on_type_change, on_error and dead letters apply per table)".to_string()),
            ("change_stream", format!("one for the database: {}.watch(), each event routed to its collection's table", database.database)),
            ("new_collections", format!("a collection created later whose name matches `{pattern}` is copied, then followed")),
        ];
        let column = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
        rows(RecordBatch::try_from_iter([
            ("item", column(sections.iter().map(|(k, _)| k.to_string()).collect())),
            ("value", column(sections.iter().map(|(_, v)| v.clone()).collect())),
        ])?)
    }

    /// STOP SYNC name: the sync commits what it has read, with its checkpoint, and stops; its
    /// definition stays (START SYNC resumes it).
    pub(super) async fn stop_sync(&mut self, name: &str) -> Result<Output> {
        let entry = self.syncs.get_mut(name).ok_or_else(|| unknown_sync(name))?;
        let Some(task) = entry.task.take() else {
            return Ok(Output::Done(format!("sync {name} is not running")));
        };
        entry.stop.cancel();
        match task.await {
            Ok(Err(err)) => return Err(err),
            Err(join) if !join.is_cancelled() => {
                return Err(Error::user(format!("sync {name} failed while stopping: {join}")));
            }
            _ => {}
        }
        self.registry.update(name, |s| {
            if s.phase != SyncPhase::Failed {
                s.enter(SyncPhase::Stopped);
            }
        });
        Ok(Output::Done(format!("sync {name} stopped; START SYNC {name} resumes it")))
    }

    /// REFRESH SYNC name: the running sync copies its collection again beside its stream,
    /// upserting every row and deleting the rows whose documents are gone at the end; the table
    /// stays readable and current throughout.
    pub(super) fn refresh_sync(&mut self, name: &str) -> Result<Output> {
        let entry = self.syncs.get(name).ok_or_else(|| unknown_sync(name))?;
        if entry.database.is_some() {
            return Err(Error::user(format!(
                "sync {name} is a database sync; REFRESH SYNC copies one collection's sync again"
            ))
            .with_hint("name the sync of one collection, as SHOW SYNCS lists it"));
        }
        if entry.task.as_ref().is_none_or(|task| task.is_finished()) {
            return Err(Error::user(format!("sync {name} is not running"))
                .with_hint(format!("START SYNC {name} first; REFRESH works on a running sync")));
        }
        entry.refresh.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Output::Done(format!(
            "sync {name}: copying the collection again beside its stream; SHOW SYNCS shows the \
             progress"
        )))
    }

    /// START SYNC name: runs a stopped (or failed) sync again from its table's checkpoint.
    pub(super) async fn start_sync(&mut self, name: &str) -> Result<Output> {
        let entry = self.syncs.get(name).ok_or_else(|| unknown_sync(name))?;
        if entry.task.as_ref().is_some_and(|task| !task.is_finished()) {
            return Err(Error::user(format!("sync {name} is running"))
                .with_hint(format!("STOP SYNC {name} first, or SHOW SYNC STATUS {name}")));
        }
        let create = entry.create.clone();
        let entry = self.start(&create).await?;
        self.syncs.insert(name.to_string(), entry);
        Ok(Output::Done(match self.mode {
            Mode::Once => format!("sync {name} ran from its checkpoint"),
            Mode::Background => format!("sync {name} started from its checkpoint"),
        }))
    }

    fn record_failure(&self, name: &str, result: &Result<()>) {
        if let Err(err) = result {
            self.registry.failed(name, err);
        }
    }

    /// EXPLAIN SYNC name / EXPLAIN CREATE SYNC ...
    pub(super) async fn explain_sync(&self, explain: &ExplainSync) -> Result<Output> {
        let create = match explain {
            ExplainSync::Create(create) => create.as_ref().clone(),
            ExplainSync::Named(name) => self
                .syncs
                .get(&name.value)
                .map(|e| e.create.clone())
                .ok_or_else(|| unknown_sync(&name.value))?,
        };
        if create.collections.is_some() {
            return self.explain_database_sync(&create).await;
        }
        let sync = self.build_sync(&create).await?;
        if sync.plan().evolving {
            crate::sync::evolve::leave_out_untyped(&sync).await?;
        }
        let plan = sync.plan();
        let schema = iceberg_schema(&plan.output_schema, &plan.key)?;
        let partition: Vec<String> = create.partition_by.iter().map(|p| p.to_string()).collect();
        let mongo = format!(
            "find {}.{} filter={} projection={} sort={{\"_id\":1}}",
            sync.database,
            sync.collection,
            json(&plan.mongo_filter),
            plan.mongo_projection.as_ref().map_or("(all fields)".to_string(), json),
        );
        let fields: Vec<String> = schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| {
                let required = if f.required { " NOT NULL" } else { "" };
                let key = if f.name == plan.key { " (key)" } else { "" };
                format!("{}: {}{required}{key}", f.name, f.field_type)
            })
            .collect();
        let sections = [
            ("sync", create.to_string()),
            ("logical_plan", format!("{}", plan.logical_plan.display_indent())),
            ("mongodb_query", mongo),
            ("target_table", create.target.to_string()),
            ("target_schema", fields.join("\n")),
            (
                "partition_spec",
                if partition.is_empty() { "unpartitioned".into() } else { partition.join(", ") },
            ),
            ("dead_letters", dead_letter::table_ident(&sync.target).to_string()),
            ("schema_changes", schema_policy(&create, plan.evolving)),
            (
                "source_fields",
                super::describe::lines(plan.sample_reports(), plan.sampled()).join("\n"),
            ),
        ];
        let column = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
        rows(RecordBatch::try_from_iter([
            ("item", column(sections.iter().map(|(k, _)| k.to_string()).collect())),
            ("value", column(sections.iter().map(|(_, v)| v.clone()).collect())),
        ])?)
    }

    /// SHOW SYNCS: one short row per sync, to fit 100 columns (every detail is in SHOW SYNC
    /// STATUS).
    pub(super) fn show_syncs(&self) -> Result<Output> {
        let mut all = self.registry.all();
        // A database sync's row counts what its collections' syncs (`name/collection`) did.
        let members: Vec<(String, u64, u64)> = all
            .iter()
            .filter_map(|(n, s)| {
                Some((n.split_once('/')?.0.to_string(), s.rows_copied, s.events_applied))
            })
            .collect();
        for (parent, rows, events) in members {
            if let Some(status) = all.get_mut(&parent) {
                status.rows_copied += rows;
                status.events_applied += events;
            }
        }
        let now = std::time::SystemTime::now();
        let text = |f: &dyn Fn(&SyncStatus) -> String| {
            Arc::new(StringArray::from(all.values().map(f).collect::<Vec<_>>())) as ArrayRef
        };
        let count = |f: &dyn Fn(&SyncStatus) -> u64| {
            Arc::new(UInt64Array::from(all.values().map(f).collect::<Vec<_>>())) as ArrayRef
        };
        let names = all.keys().cloned().collect::<Vec<_>>();
        rows(RecordBatch::try_from_iter([
            ("name", Arc::new(StringArray::from(names)) as ArrayRef),
            ("phase", text(&|s| s.phase.to_string())),
            ("rows", count(&|s| s.rows_copied)),
            ("events", count(&|s| s.events_applied)),
            ("lag", text(&|s| format!("{}s", s.lag(now).as_secs()))),
            ("last_commit", text(&|s| s.last_commit.map(clock_time).unwrap_or_default())),
            ("error", text(&|s| shortened(s.last_error.as_deref().unwrap_or_default(), 32))),
        ])?)
    }

    /// SHOW SYNC STATUS [name]: everything known about one sync (or each), one record per
    /// sync, shown one field per line.
    pub(super) fn show_sync_status(&self, name: Option<&str>) -> Result<Output> {
        let all = self.registry.all();
        if let Some(name) = name.filter(|n| !all.contains_key(*n)) {
            return Err(unknown_sync(name));
        }
        let selected: Vec<_> =
            all.iter().filter(|(n, _)| name.is_none_or(|w| w == n.as_str())).collect();
        let now = std::time::SystemTime::now();
        let text = |f: &dyn Fn(&SyncStatus) -> String| {
            Arc::new(StringArray::from(selected.iter().map(|(_, s)| f(s)).collect::<Vec<_>>()))
                as ArrayRef
        };
        let count = |f: &dyn Fn(&SyncStatus) -> u64| {
            Arc::new(UInt64Array::from(selected.iter().map(|(_, s)| f(s)).collect::<Vec<_>>()))
                as ArrayRef
        };
        let names = Arc::new(StringArray::from(
            selected.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>(),
        )) as ArrayRef;
        let batch = RecordBatch::try_from_iter([
            ("name", names),
            ("phase", text(&|s| s.phase.to_string())),
            ("source", text(&|s| s.source.clone())),
            ("target", text(&|s| s.target.clone())),
            ("rows_copied", count(&|s| s.rows_copied)),
            ("events_applied", count(&|s| s.events_applied)),
            ("transactions", count(&|s| s.transactions)),
            ("largest_transaction", count(&|s| s.largest_transaction)),
            ("transactions_split", count(&|s| s.transactions_split)),
            ("valid_through", text(&|s| s.valid_through.map(format_time).unwrap_or_default())),
            ("rows_skipped", count(&|s| s.rows_skipped)),
            ("dead_letters", count(&|s| s.dead_letters)),
            ("schema_changes", count(&|s| s.schema_changes)),
            ("values_stringified", count(&|s| s.values_stringified)),
            ("last_schema_change", text(&|s| s.last_schema_change.clone().unwrap_or_default())),
            ("commits", count(&|s| s.commits)),
            ("last_commit", text(&|s| s.last_commit.map(format_time).unwrap_or_default())),
            ("retries", count(&|s| s.retries)),
            ("lag_seconds", count(&|s| s.lag(now).as_secs())),
            (
                "last_event_age_seconds",
                text(&|s| {
                    s.last_event_age(now).map(|a| a.as_secs().to_string()).unwrap_or_default()
                }),
            ),
            ("last_error", text(&|s| s.last_error.clone().unwrap_or_default())),
            ("compactions", count(&|s| s.compactions)),
            ("snapshots_expired", count(&|s| s.snapshots_expired)),
            ("maintenance_errors", count(&|s| s.maintenance_errors)),
            ("last_maintenance", text(&|s| s.last_maintenance.clone().unwrap_or_default())),
        ])?;
        let Output::Rows(stream) = rows(batch)? else { unreachable!("rows gives rows") };
        Ok(Output::Record(stream))
    }

    /// DROP SYNC name [PURGE]: stops it; PURGE also drops the target table.
    pub(super) async fn drop_sync(
        &mut self,
        name: &str,
        purge: bool,
        if_exists: bool,
    ) -> Result<Output> {
        let Some(mut entry) = self.syncs.remove(name) else {
            if if_exists {
                return Ok(Output::Done(format!("sync {name} does not exist")));
            }
            return Err(unknown_sync(name));
        };
        if purge && entry.create.collections.is_some() {
            self.syncs.insert(name.to_string(), entry);
            return Err(Error::user(format!(
                "DROP SYNC {name} PURGE: {name} is a database sync, whose tables are not dropped \
                 in one statement"
            ))
            .with_hint(format!("DROP SYNC {name}, then drop the tables you no longer want")));
        }
        stop_task(&mut entry).await;
        self.registry.remove(name);
        let members: Vec<String> = self
            .registry
            .all()
            .into_keys()
            .filter(|n| n.strip_prefix(name).is_some_and(|rest| rest.starts_with('/')))
            .collect();
        for member in members {
            self.registry.remove(&member);
        }
        if purge {
            let parts = super::name_parts(&entry.create.target);
            let catalog = self
                .iceberg_catalog(parts.first().map(String::as_str))?
                .get()
                .await?
                .catalog
                .clone();
            let ident = table_ident(&entry.create);
            catalog
                .drop_table(&ident)
                .await
                .map_err(|e| Error::iceberg(format!("dropping {}", entry.create.target), e))?;
            return Ok(Output::Done(format!(
                "sync {name} dropped, table {} dropped",
                entry.create.target
            )));
        }
        Ok(Output::Done(format!("sync {name} dropped; table {} kept", entry.create.target)))
    }

    /// Stops every sync: each commits what it has read, with its checkpoint, and returns.
    /// Waits at most `timeout` for them; returns the names of the syncs that failed (before or
    /// while stopping), or an error when the time ran out.
    pub async fn shutdown(&mut self, timeout: std::time::Duration) -> Result<Vec<String>> {
        self.stop.cancel();
        let tasks: Vec<_> = self.syncs.values_mut().filter_map(|entry| entry.task.take()).collect();
        let stopped = futures::future::join_all(tasks);
        if tokio::time::timeout(timeout, stopped).await.is_err() {
            return Err(Error::user(format!(
                "the syncs did not stop within {} s; what they had not committed is read again \
                 from their checkpoints at the next start",
                timeout.as_secs_f64()
            ))
            .with_hint("raise --shutdown-timeout"));
        }
        Ok(self.failed_syncs())
    }

    /// The status of every sync, shared with the tasks running them (for `--http`).
    pub fn registry(&self) -> crate::sync::status::Registry {
        self.registry.clone()
    }

    /// The syncs whose last state is `failed`.
    pub fn failed_syncs(&self) -> Vec<String> {
        let all = self.registry.all();
        all.into_iter().filter(|(_, s)| s.phase == SyncPhase::Failed).map(|(n, _)| n).collect()
    }

    /// Whether any sync was created.
    pub fn has_syncs(&self) -> bool {
        !self.syncs.is_empty()
    }

    /// Sets how syncs run.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }
}

pub(super) fn unknown_sync(name: &str) -> Error {
    Error::user(format!("no sync named {name}"))
        .with_hint("SHOW SYNCS lists the syncs of this session")
}

fn json(doc: &bson::Document) -> String {
    crate::mongo::scan::json(doc)
}

/// The time of day of `time` (UTC), for the short SHOW SYNCS.
fn clock_time(time: std::time::SystemTime) -> String {
    utc(time, "%H:%M:%S")
}

/// `text` cut to `max` characters, an ellipsis marking the cut.
fn shortened(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max && line.len() == text.len() {
        return text.to_string();
    }
    let cut: String = line.chars().take(max - 1).collect();
    format!("{cut}…")
}

fn format_time(time: std::time::SystemTime) -> String {
    utc(time, "%Y-%m-%d %H:%M:%S UTC")
}

/// `time` in UTC as `pattern` (chrono's format) has it.
fn utc(time: std::time::SystemTime, pattern: &str) -> String {
    let secs = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    arrow::temporal_conversions::timestamp_s_to_datetime(secs)
        .map(|t| t.format(pattern).to_string())
        .unwrap_or_default()
}

/// How the sync's target schema follows the documents, for EXPLAIN.
fn schema_policy(create: &CreateSync, evolving: bool) -> String {
    let options = &create.options;
    if evolving {
        format!(
            "SELECT *: new fields become optional columns (nested ones too), int widens to long \
             and decimals to more digits; a value of another type follows on_type_change = '{}'",
            options.on_type_change.name()
        )
    } else {
        format!(
            "fixed by the SELECT list; a value that does not cast follows on_error = '{}'",
            options.on_error.name()
        )
    }
}

/// Stops a sync's task and waits until it is gone, so nothing of it still writes when its
/// table is dropped or rebuilt.
async fn stop_task(entry: &mut SyncEntry) {
    let Some(mut task) = entry.task.take() else { return };
    entry.stop.cancel();
    if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
        task.abort();
        let _ = task.await;
    }
}
