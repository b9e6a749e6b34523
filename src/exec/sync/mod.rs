//! The sync statements' control: CREATE SYNC (planned, target prepared, snapshot run inline with
//! `--once` or in the background otherwise), START / STOP / REFRESH / DROP SYNC, and shutdown.
//! Building a sync is in build.rs, EXPLAIN SYNC in explain.rs, SHOW SYNCS and SHOW SYNC STATUS
//! in show.rs.

mod build;
mod explain;
mod show;

use std::sync::Arc;

use super::{Output, Session};
use crate::sql::CreateSync;
use crate::sync::database::DatabaseSync;
use crate::sync::status::SyncPhase;
use crate::sync::target::table_ident;
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

impl Session {
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
        let database = Arc::new(self.database_sync(create)?);
        let (stop, shared) = (database.stop.clone(), database.clone());
        let glob = create.collections.as_ref().map_or("*", |p| p.glob.as_str());
        let source = format!("{}.{glob}", create.source);
        let task = self
            .launch(create, source, move |mode| match mode {
                Mode::Once => Box::pin(database.run(true, ONCE_ATTEMPTS)),
                Mode::Background => Box::pin(database.run_and_report()),
            })
            .await?;
        Ok(SyncEntry {
            create: create.clone(),
            task,
            stop,
            refresh: Default::default(),
            database: Some(shared),
        })
    }

    /// Runs a sync as `run` does in this session's mode: to completion here (`--once`, its
    /// failure recorded), or in the background, as a task in the sync's tracing span.
    async fn launch(
        &mut self,
        create: &CreateSync,
        source: String,
        run: impl FnOnce(Mode) -> futures::future::BoxFuture<'static, Result<()>>,
    ) -> Result<Option<tokio::task::JoinHandle<Result<()>>>> {
        let name = &create.name.value;
        self.registry.starting(name, source, create.target.to_string());
        match self.mode {
            Mode::Once => {
                let result = run(Mode::Once).await;
                self.record_failure(name, &result);
                result.map(|()| None)
            }
            Mode::Background => {
                let span = crate::logging::sync_span(name);
                let task = tracing::Instrument::instrument(run(Mode::Background), span);
                Ok(Some(tokio::spawn(task)))
            }
        }
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
        let sync = self.build_sync_with_retries(create).await?;
        let (stop, refresh) = (sync.stop.clone(), sync.refresh.clone());
        let task = self
            .launch(create, create.source.to_string(), move |mode| match mode {
                Mode::Once => {
                    Box::pin(async move { sync.run_with_retries(true, ONCE_ATTEMPTS).await })
                }
                Mode::Background => Box::pin(sync.run_and_report(false, u32::MAX)),
            })
            .await?;
        Ok(SyncEntry { create: create.clone(), task, stop, refresh, database: None })
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
                return Err(Error::internal(format!("sync {name} failed while stopping: {join}")));
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
