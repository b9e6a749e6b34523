//! A sync: its plan (SELECT → compiled projection, key, target schema), its target table, and
//! the loop that fills it: the change stream followed from the first second, with a copy of the
//! collection beside it while one is needed ([`follow`], [`copy`]).

pub mod check;
pub mod checkpoint;
pub mod copy;
pub mod cuts;
pub mod database;
pub mod dead_letter;
pub mod evolve;
pub mod feed;
pub mod follow;
pub mod lease;
pub mod maintain;
pub mod plan;
pub mod progress;
pub mod sink;
pub mod status;
pub mod target;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use iceberg::{Catalog, TableIdent};

use crate::lake::catalog::IcebergConnection;

use crate::mongo::client::MongoSource;
use crate::sql::CreateSync;
use crate::{ErrorKind, Result};
use checkpoint::{Checkpoint, Phase};
use copy::CopyStart;
use plan::SyncPlan;
use status::{Registry, SyncPhase, SyncStatus};

/// The longest wait between two attempts of a sync whose server or catalog is unavailable.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The longest a standby waits between looks at the lease.
const MAX_STANDBY_POLL: Duration = Duration::from_secs(5);

/// Everything a running sync needs.
pub struct SyncTask {
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
    /// Set to ask for a re-copy beside the stream (REFRESH SYNC); the sync clears it when the
    /// re-copy begins.
    pub refresh: Arc<std::sync::atomic::AtomicBool>,
    /// For a collection of a database sync: the database's change stream it reads from.
    pub feed: Option<feed::Feed>,
}

impl SyncTask {
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

    /// Runs the sync: opens (or creates) the target, then follows the change stream with a copy
    /// beside it while its checkpoint says one is missing — until the copy is complete and the
    /// stream has no more events with `drain` (`--once`), or until an error otherwise. A stream
    /// that cannot continue (history lost, collection dropped) is opened again from now with a
    /// re-copy beside it.
    pub async fn run(&self, drain: bool) -> Result<()> {
        self.status(|s| s.enter(SyncPhase::Starting));
        if self.plan().evolving {
            evolve::leave_out_untyped(self).await?;
        }
        let (mut table, checkpoint) =
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
        let Some(mut start) = self.start_of(checkpoint.as_ref()) else { return Ok(()) };
        loop {
            match follow::run(self, table, start, drain).await? {
                follow::End::Drained | follow::End::Stopped => return Ok(()),
                follow::End::Dropped(reason) => {
                    tracing::warn!("sync {}: {reason}; its table is kept", self.name);
                    self.status(|s| {
                        s.enter(SyncPhase::Dropped);
                        s.last_error = Some(format!("{reason}; the table is kept"));
                    });
                    return Ok(());
                }
                follow::End::Unfollowed(reason) => {
                    self.status(|s| {
                        s.enter(SyncPhase::Copied);
                        s.last_error = Some(reason);
                    });
                    return Ok(());
                }
                follow::End::Recopy(reason) => {
                    tracing::warn!("sync {}: {reason}; copying the collection again", self.name);
                    self.status(|s| {
                        s.recopies += 1;
                        s.last_error = Some(format!("{reason}; copying the collection again"));
                    });
                    table = self.load_table().await?;
                    start = self.recopy_start(&table);
                }
            }
        }
    }

    /// Where a run starts from the table's checkpoint: a new table is copied beside a stream
    /// opened now; a copy in progress (or a table of the earlier copy-then-follow design, whose
    /// token was taken before its copy) continues its ranges beside the stream from its token;
    /// a complete copy just follows. `None`: the table was copied where there was no change
    /// stream, and nothing more is to be done.
    fn start_of(&self, checkpoint: Option<&Checkpoint>) -> Option<follow::Start> {
        let Some(checkpoint) = checkpoint else {
            let copy = Some(CopyStart::default());
            return Some(follow::Start { position: None, copy, exact: true });
        };
        let position = checkpoint
            .resume_token
            .clone()
            .map(|token| feed::Position { token, time: checkpoint.resume_time });
        if checkpoint.phase == Phase::Streaming {
            let rows = checkpoint.rows;
            self.status(|s| s.rows_copied = rows);
            tracing::info!(
                "sync {}: copy already complete; following the change stream",
                self.name
            );
            if position.is_none() {
                tracing::warn!("sync {}: no resume token; changes are not followed", self.name);
                self.status(|s| s.enter(SyncPhase::Copied));
                return None;
            }
        }
        let copy = (checkpoint.phase == Phase::Snapshot).then(|| CopyStart {
            ranges: checkpoint.ranges.clone(),
            recopy_after: checkpoint.recopy_after,
            rows: checkpoint.rows,
        });
        Some(follow::Start { position, copy, exact: checkpoint.valid_through.is_some() })
    }

    /// A re-copy of the collection over `table`, beside a stream from now.
    fn recopy_start(&self, table: &iceberg::table::Table) -> follow::Start {
        let after = table.metadata().last_sequence_number();
        follow::Start {
            position: self.feed.as_ref().map(feed::Feed::now),
            copy: Some(CopyStart { ranges: Vec::new(), recopy_after: Some(after), rows: 0 }),
            exact: false,
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
        self.leave_group();
        self.registry.ended(&self.name, self.stop.is_cancelled(), &result);
        result
    }

    /// A collection of a database sync whose tables commit together: the group's cuts do not
    /// wait for it until it follows its stream again.
    fn leave_group(&self) {
        if let Some(group) = self.feed.as_ref().and_then(|f| f.group()) {
            group.leave(&self.collection);
        }
    }

    async fn retrying(&self, drain: bool, attempts: u32) -> Result<()> {
        let mut backoff = Duration::from_secs(1);
        let mut attempt = 1;
        let mut standing_by = false;
        loop {
            let started = Instant::now();
            let commits = self.commits();
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
            // Not following while it waits (before it ever followed, too).
            self.leave_group();
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
                if started.elapsed() > MAX_BACKOFF || self.commits() > commits {
                    // It ran a while, or made progress: this is a new outage.
                    backoff = Duration::from_secs(1);
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

    /// Commits this sync made so far (its progress, for the backoff).
    fn commits(&self) -> u64 {
        self.registry.get(&self.name, |s| s.commits).unwrap_or(0)
    }

    /// The target table as the catalog has it now.
    pub(crate) async fn load_table(&self) -> Result<iceberg::table::Table> {
        crate::lake::retry::load_table(self.catalog.as_ref(), &self.target).await
    }
}
