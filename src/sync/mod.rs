//! A sync: its plan (SELECT → compiled projection, key, target schema), its target table, and
//! the phases that fill it. The snapshot phase is here; the change-stream phase builds on the
//! checkpoint it leaves.

pub mod checkpoint;
pub mod database;
pub mod dead_letter;
pub mod evolve;
pub mod feed;
pub mod lease;
pub mod maintain;
pub mod plan;
pub mod progress;
pub mod sink;
pub mod snapshot;
pub mod status;
pub mod stream;
pub mod target;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use iceberg::{Catalog, TableIdent};

use crate::iceberg::catalog::IcebergConnection;

use crate::mongo::client::MongoSource;
use crate::sql::CreateSync;
use crate::{Error, ErrorKind, Result};
use checkpoint::Phase;
use plan::SyncPlan;
use status::{Registry, SyncPhase, SyncStatus};

/// The longest wait between two attempts of a sync whose server or catalog is unavailable.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The longest a standby waits between looks at the lease.
const MAX_STANDBY_POLL: Duration = Duration::from_secs(5);

/// Everything a running sync needs.
pub struct Sync {
    /// The sync's name.
    pub name: String,
    /// The statement that defined it.
    pub create: CreateSync,
    /// The compiled plan (replaced when a `SELECT *` sync's schema grows).
    pub plan: RwLock<Arc<SyncPlan>>,
    /// The MongoDB deployment of the source.
    pub source: Arc<MongoSource>,
    /// Source database.
    pub database: String,
    /// Source collection.
    pub collection: String,
    /// The Iceberg catalog of the target.
    pub catalog: Arc<dyn Catalog>,
    /// The same catalog with what its own commit path needs.
    pub connection: IcebergConnection,
    /// The target table.
    pub target: TableIdent,
    /// Where progress is reported.
    pub registry: Registry,
    /// What the sync's own table maintenance has done, kept across restarts of the stream.
    pub maintenance: std::sync::Mutex<maintain::Maintenance>,
    /// Cancelled to stop the sync: it commits what it has read, with its checkpoint, and
    /// returns (STOP SYNC, SIGTERM).
    pub stop: tokio_util::sync::CancellationToken,
    /// For a collection of a database sync: the database's change stream it reads from.
    pub feed: Option<feed::Feed>,
}

impl Sync {
    /// The compiled plan as of now.
    pub fn plan(&self) -> Arc<SyncPlan> {
        self.plan.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the plan (after the input schema grew).
    pub(crate) fn set_plan(&self, plan: SyncPlan) {
        *self.plan.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(plan);
    }

    /// Updates this sync's status.
    pub fn status(&self, change: impl FnOnce(&mut SyncStatus)) {
        self.registry.update(&self.name, change);
    }

    /// Runs the sync: opens (or creates) the target, copies what its checkpoint says is
    /// missing, then follows the change stream — until it has no more events with `drain`
    /// (`--once`), or until an error otherwise.
    pub async fn run(&self, drain: bool) -> Result<()> {
        self.status(|s| s.enter(SyncPhase::Starting));
        if self.plan().evolving {
            evolve::leave_out_untyped(self).await?;
        }
        let (mut table, mut checkpoint) =
            target::prepare(&self.connection, &self.create, &self.plan()).await?;
        if drain {
            lease::check(self, &table)?;
        } else {
            table = lease::acquire(self, &table).await?;
        }
        if self.plan().evolving {
            table = evolve::reconcile(self, table).await?;
        }
        let rolled_back = dead_letter::recover(&self.connection, &table).await?;
        if rolled_back > 0 {
            tracing::warn!(
                "sync {}: rolled back {rolled_back} dead-letter commit(s) whose rows were not committed; they are written again with their batch",
                self.name
            );
        }
        if checkpoint.as_ref().is_none_or(|c| c.phase == Phase::Snapshot) {
            self.status(|s| s.enter(SyncPhase::Snapshot));
            table = snapshot::run(self, table, checkpoint.take()).await?;
            if self.stop.is_cancelled() {
                return Ok(());
            }
            checkpoint = sink::checkpoint_of(&table)?;
        } else {
            let rows = checkpoint.as_ref().map_or(0, |c| c.rows);
            self.status(|s| s.rows_copied = rows);
            tracing::info!("sync {}: snapshot already complete", self.name);
        }
        let mut checkpoint = checkpoint.ok_or_else(|| {
            Error::plan(format!("sync {}: the snapshot left no checkpoint", self.name))
        })?;
        loop {
            match stream::run(self, table, checkpoint, drain).await? {
                stream::StreamEnd::Drained | stream::StreamEnd::Stopped => return Ok(()),
                stream::StreamEnd::Dropped(reason) => {
                    tracing::warn!("sync {}: {reason}; its table is kept", self.name);
                    self.status(|s| {
                        s.enter(SyncPhase::Dropped);
                        s.last_error = Some(format!("{reason}; the table is kept"));
                    });
                    return Ok(());
                }
                stream::StreamEnd::Resnapshot(reason) => {
                    tracing::warn!("sync {}: {reason}; copying the collection again", self.name);
                    self.status(|s| {
                        s.enter(SyncPhase::Snapshot);
                        s.last_error = Some(format!("{reason}; copied the collection again"));
                    });
                    let current = self.load_table().await?;
                    table = snapshot::replace(self, current).await?;
                    if self.stop.is_cancelled() {
                        return Ok(());
                    }
                    checkpoint = sink::checkpoint_of(&table)?.ok_or_else(|| {
                        Error::plan(format!(
                            "sync {}: no checkpoint after copying again",
                            self.name
                        ))
                    })?;
                    self.status(|s| s.enter(SyncPhase::Streaming));
                }
            }
        }
    }

    /// [`Self::run`], retried while the error's kind allows, at most `attempts` times. Each
    /// attempt resumes from the table's checkpoint, so nothing is lost or applied twice:
    /// transient errors (an unreachable server or catalog, a conflict, a commit whose outcome
    /// stayed unknown) wait 1 s doubling to 60 s; a batch superseded by another writer's commit
    /// for this sync continues at once from the checkpoint that writer left.
    pub async fn run_with_retries(&self, drain: bool, attempts: u32) -> Result<()> {
        let result = self.retrying(drain, attempts).await;
        if result.is_ok() && self.stop.is_cancelled() {
            lease::release(self).await;
        }
        result
    }

    /// [`Self::run_with_retries`] as a task of its own: a failure is logged and marks the sync
    /// `failed` (the other syncs go on); a stop marks it `stopped`.
    pub async fn run_and_report(self, drain: bool, attempts: u32) -> Result<()> {
        let result = self.run_with_retries(drain, attempts).await;
        match &result {
            Err(err) => {
                tracing::error!("sync {}: {}", self.name, err.user_facing());
                self.registry.failed(&self.name, err);
            }
            Ok(()) if self.stop.is_cancelled() => {
                tracing::info!("sync {}: stopped, its batch committed", self.name);
                self.status(|s| s.enter(SyncPhase::Stopped));
            }
            Ok(()) => {}
        }
        result
    }

    async fn retrying(&self, drain: bool, attempts: u32) -> Result<()> {
        let mut backoff = Duration::from_secs(1);
        let mut attempt = 1;
        let mut standing_by = false;
        loop {
            let started = Instant::now();
            let err = match self.run(drain).await {
                Err(err) if err.kind() == ErrorKind::LeaseHeld && !drain => err,
                Err(err)
                    if err.is_transient()
                        && err.kind() != ErrorKind::LeaseHeld
                        && attempt < attempts
                        && !self.stop.is_cancelled() =>
                {
                    err
                }
                result => return result,
            };
            let message = err.user_facing().to_string();
            let wait = if err.kind() == ErrorKind::LeaseHeld {
                // A standby: look at the lease again a few times per its time to live.
                if !standing_by {
                    tracing::info!("sync {}: {message}; standing by", self.name);
                    standing_by = true;
                }
                self.status(|s| {
                    s.enter(SyncPhase::Standby);
                    s.last_error = Some(message);
                });
                (self.create.options.lease_ttl / 3)
                    .clamp(Duration::from_millis(200), MAX_STANDBY_POLL)
            } else {
                standing_by = false;
                if started.elapsed() > MAX_BACKOFF {
                    backoff = Duration::from_secs(1); // it ran a while: a new outage
                }
                let wait = match err.kind() {
                    ErrorKind::Superseded => Duration::ZERO,
                    _ => backoff,
                };
                tracing::warn!(
                    "sync {}: {message}; retrying in {}s ({:?})",
                    self.name,
                    wait.as_secs(),
                    err.kind()
                );
                self.status(|s| {
                    s.enter(SyncPhase::Retrying);
                    s.retries += 1;
                    s.errors += 1;
                    s.last_error = Some(message);
                });
                if wait > Duration::ZERO {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                attempt += 1;
                wait
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => return Ok(()),
            }
        }
    }

    /// The target table as the catalog has it now.
    pub(crate) async fn load_table(&self) -> Result<iceberg::table::Table> {
        self.catalog
            .load_table(&self.target)
            .await
            .map_err(|e| Error::iceberg(format!("loading {}", self.create.target), e))
    }

    /// Where the change stream is at this moment, taken before the snapshot starts so no
    /// change made during the snapshot is missed later: the database stream's position the
    /// database sync chose, or the collection stream's resume token with the cluster time just
    /// before it. `None` (with a warning) when the deployment has no change streams.
    pub async fn start_position(&self) -> Result<Option<feed::Position>> {
        if let Some(feed) = &self.feed {
            return Ok(Some(feed.start.clone()));
        }
        let time = crate::mongo::change_stream::cluster_time(&self.source).await;
        let client = self.source.client().await?;
        let coll = client.database(&self.database).collection::<bson::Document>(&self.collection);
        let mut stream = match coll.watch().await {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(
                    "sync {}: no change stream ({}); only the snapshot is copied",
                    self.name,
                    crate::error::mongo_reason(&err)
                );
                return Ok(None);
            }
        };
        if stream.resume_token().is_none() {
            let _ = stream.next_if_any().await;
        }
        let Some(token) = stream.resume_token() else { return Ok(None) };
        let token = crate::mongo::change_stream::token_to_raw(&token)?;
        Ok(Some(feed::Position { token, time }))
    }
}
