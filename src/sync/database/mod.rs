//! A database sync (`CREATE SYNC shop FROM mongo.shop.* INTO lake.shop`): every collection the
//! pattern takes becomes a sync of its own (`shop/orders` into `lake.shop.orders`, `SELECT *`
//! rules), each with its own table, checkpoint and commits, all fed by one change stream of the
//! database ([`router::Router`]). A collection that appears later is picked up while the others
//! go on; a dropped or renamed one ends its sync and keeps its table.

pub mod group;
pub mod router;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::SyncTask;
use super::feed::{Feed, Position};
use super::status::{Registry, SyncPhase};
use crate::mongo::change_stream::{cluster_time, token_to_raw, watch_database};
use crate::mongo::client::MongoSource;
use crate::sql::{CollectionPattern, CreateSync, glob_matches};
use crate::{Error, ErrorKind, Result};

/// The collections whose names match a database sync's glob, by what it does with them.
#[derive(Debug, Default)]
pub struct Collections {
    /// Synced, each into a table of its own.
    pub taken: Vec<String>,
    /// Left out by EXCLUDE.
    pub excluded: Vec<String>,
    /// Left out because a sync of their own reads them.
    pub elsewhere: Vec<String>,
}

/// Builds (plans and prepares) the sync of one collection.
pub type Build = Arc<dyn Fn(CreateSync) -> BoxFuture<'static, Result<SyncTask>> + Send + Sync>;

/// Collections planned at the same time when a database sync starts.
const PLANNED_AT_ONCE: usize = 8;

/// A database sync.
pub struct DatabaseSync {
    /// Its name.
    pub name: String,
    /// Its statement (`collections` set).
    pub create: CreateSync,
    /// The deployment.
    pub source: Arc<MongoSource>,
    /// The database.
    pub database: String,
    /// Collections other syncs of the session read: left out.
    pub taken_elsewhere: std::sync::Mutex<HashSet<String>>,
    /// The stop token of each collection's running sync.
    members: std::sync::Mutex<HashMap<String, tokio_util::sync::CancellationToken>>,
    /// Where progress is reported.
    pub registry: Registry,
    /// Stops it and every collection's sync.
    pub stop: tokio_util::sync::CancellationToken,
    /// Builds a collection's sync.
    pub build: Build,
}

impl DatabaseSync {
    fn pattern(&self) -> &CollectionPattern {
        self.create.collections.as_ref().expect("a database sync has a collection pattern")
    }

    /// A database sync (see the fields); nothing runs yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        create: CreateSync,
        source: Arc<MongoSource>,
        database: String,
        taken_elsewhere: HashSet<String>,
        registry: Registry,
        stop: tokio_util::sync::CancellationToken,
        build: Build,
    ) -> Self {
        Self {
            name: create.name.value.clone(),
            create,
            source,
            database,
            taken_elsewhere: std::sync::Mutex::new(taken_elsewhere),
            members: Default::default(),
            registry,
            stop,
            build,
        }
    }

    fn elsewhere(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.taken_elsewhere.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the sync takes `collection` (by its pattern, and not read by another sync).
    pub fn takes(&self, collection: &str) -> bool {
        self.pattern().takes(collection) && !self.elsewhere().contains(collection)
    }

    /// A sync of its own now reads `collection`: the database sync leaves it out from now on,
    /// and its sync of the collection, if one runs, stops (committing what it read). Returns
    /// the name of that sync when one was stopped.
    pub fn hand_over(&self, collection: &str, to: &str) -> Option<String> {
        if !self.pattern().takes(collection) {
            return None;
        }
        tracing::info!(
            "sync {}: {}.{collection} is left to sync {to}, which reads it on its own",
            self.name,
            self.database
        );
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        self.elsewhere().insert(collection.to_string());
        let stop = members.get(collection)?;
        stop.cancel();
        Some(self.member_name(collection))
    }

    /// The name of a collection's sync: `shop/orders`.
    pub fn member_name(&self, collection: &str) -> String {
        format!("{}/{collection}", self.name)
    }

    /// The definition of a collection's sync: `SELECT *` from it into `namespace.<collection>`.
    pub fn member(&self, collection: &str) -> CreateSync {
        let mut source = self.create.source.0.clone();
        source.push(ObjectNamePart::Identifier(Ident::new(collection)));
        let mut target = self.create.target.0.clone();
        target.push(ObjectNamePart::Identifier(Ident::new(collection)));
        CreateSync {
            name: Ident::new(self.member_name(collection)),
            source: ObjectName(source),
            target: ObjectName(target),
            collections: None,
            or_replace: false,
            if_not_exists: false,
            ..self.create.clone()
        }
    }

    /// The collections of the database now, sorted, by what the sync does with them.
    pub async fn collections(&self) -> Result<Collections> {
        let names = self.source.collection_names(&self.database).await?;
        let pattern = self.pattern();
        let elsewhere = self.elsewhere().clone();
        let mut found = Collections::default();
        for name in names.into_iter().filter(|c| glob_matches(&pattern.glob, c)) {
            let list = if !pattern.takes(&name) {
                &mut found.excluded
            } else if elsewhere.contains(&name) {
                &mut found.elsewhere
            } else {
                &mut found.taken
            };
            list.push(name);
        }
        Ok(found)
    }

    /// The database stream's position now: its resume token, and the cluster time just before.
    async fn position_now(&self) -> Result<Position> {
        let time = cluster_time(&self.source).await;
        let mut stream = watch_database(&self.source, &self.database, None)
            .await
            .map_err(|e| self.source.unreachable("opening the database's change stream", e))?;
        if stream.resume_token().is_none() {
            let _ = stream.next_if_any().await;
        }
        let token = stream.resume_token().ok_or_else(|| {
            Error::remote(
                ErrorKind::Permanent,
                format!("the change stream of database {} gives no resume token", self.database),
            )
        })?;
        Ok(Position { token: token_to_raw(&token)?, time })
    }

    fn status(&self, change: impl FnOnce(&mut super::status::SyncStatus)) {
        self.registry.update(&self.name, change);
    }

    /// [`Self::run`] until stopped, as a task of its own: a failure is logged and marks the sync
    /// `failed` (the other syncs go on); a stop marks it `stopped`.
    pub async fn run_and_report(self: Arc<Self>) -> Result<()> {
        let result = self.clone().run(false, u32::MAX).await;
        self.registry.ended(&self.name, self.stop.is_cancelled(), &result);
        result
    }

    /// Runs the database sync: every collection's sync, and the one stream feeding them —
    /// until stopped, or (`drain`, `--once`) until every collection is copied and caught up.
    pub async fn run(self: Arc<Self>, drain: bool, attempts: u32) -> Result<()> {
        self.status(|s| s.enter(SyncPhase::Starting));
        let Collections { taken: collections, elsewhere, .. } = self.collections().await?;
        for collection in &elsewhere {
            tracing::info!(
                "sync {}: {}.{collection} is left out: another sync reads it",
                self.name,
                self.database
            );
        }
        let start = self.position_now().await?;
        let this = self.clone();
        let takes = Box::new(move |c: &str| this.takes(c));
        let options = &self.create.options;
        let group = options
            .consistent
            .then(|| group::Group::new(options.flush_interval, options.max_transaction_rows));
        let (router, mut discovered) =
            router::Router::new(self.source.clone(), &self.database, takes, group);
        let (mut members, oldest) =
            self.start_members(&router, collections, &start, drain, attempts).await;
        // The router runs until every collection's sync has ended: a stopping sync may still
        // wait for the group's last cut.
        let router_stop = tokio_util::sync::CancellationToken::new();
        let routing = tokio::spawn(router.clone().run(oldest, router_stop.clone()));
        self.status(|s| s.enter(SyncPhase::Streaming));
        tracing::info!(
            "sync {}: {} collections of {}, one change stream",
            self.name,
            members.len(),
            self.database
        );
        let result = self.follow(&router, &mut discovered, &mut members, drain, attempts).await;
        router_stop.cancel();
        let _ = routing.await;
        result
    }

    /// Builds the syncs of `collections` (a few at a time) and starts each, fed by the router
    /// from `start`; returns their tasks, and the oldest position the router must read from
    /// (a collection's checkpoint may be older than `start`).
    async fn start_members(
        &self,
        router: &Arc<router::Router>,
        collections: Vec<String>,
        start: &Position,
        drain: bool,
        attempts: u32,
    ) -> (HashMap<String, tokio::task::JoinHandle<Result<()>>>, Position) {
        let builds = futures::stream::iter(collections)
            .map(|c| {
                let build = (self.build)(self.member(&c));
                async move { (c, build.await) }
            })
            .buffer_unordered(PLANNED_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        let mut oldest = start.clone();
        let mut members = HashMap::new();
        for (collection, built) in builds {
            let sync = match built {
                Ok(sync) => sync,
                Err(err) => {
                    self.member_failed(router, &collection, &err);
                    continue;
                }
            };
            if let Some(position) = checkpoint_position(&sync).await
                && position.before(&oldest)
            {
                oldest = position;
            }
            let events = router.subscribe(&collection, None);
            let handle = self.spawn_member(
                sync,
                router,
                &collection,
                start.clone(),
                events,
                drain,
                attempts,
            );
            members.extend(handle.map(|h| (collection, h)));
        }
        (members, oldest)
    }

    /// Picks up new collections until stopped (or, with `drain`, until every collection's sync
    /// has ended), then waits for the collections' syncs.
    async fn follow(
        &self,
        router: &Arc<router::Router>,
        discovered: &mut tokio::sync::mpsc::UnboundedReceiver<router::Discovered>,
        members: &mut HashMap<String, tokio::task::JoinHandle<Result<()>>>,
        drain: bool,
        attempts: u32,
    ) -> Result<()> {
        let mut failed = Vec::new();
        loop {
            if drain && members.values().all(|m| m.is_finished()) {
                break;
            }
            let found = tokio::select! {
                found = discovered.recv() => found,
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)), if drain => continue,
            };
            let Some(found) = found else { break };
            if members.get(&found.collection).is_some_and(|m| !m.is_finished()) {
                continue; // its sync runs (and reads again from its checkpoint after a retry)
            }
            tracing::info!(
                "sync {}: new collection {}.{}: copying it, then following it",
                self.name,
                self.database,
                found.collection
            );
            let sync = match (self.build)(self.member(&found.collection)).await {
                Ok(sync) => sync,
                Err(err) => {
                    self.member_failed(router, &found.collection, &err);
                    continue;
                }
            };
            let handle = self.spawn_member(
                sync,
                router,
                &found.collection,
                found.start,
                found.events,
                drain,
                attempts,
            );
            members.extend(handle.map(|h| (found.collection, h)));
        }
        for (collection, member) in members.drain() {
            if let Ok(Err(_)) = member.await {
                failed.push(collection);
            }
        }
        if !self.stop.is_cancelled() && !failed.is_empty() && drain {
            failed.sort();
            return Err(Error::user(format!(
                "sync {}: the syncs of {} failed (SHOW SYNC STATUS shows why)",
                self.name,
                failed.join(", ")
            )));
        }
        Ok(())
    }

    /// Starts the sync of `collection`, fed from `start` by `events`.
    #[allow(clippy::too_many_arguments)]
    fn spawn_member(
        &self,
        mut sync: SyncTask,
        router: &Arc<router::Router>,
        collection: &str,
        start: Position,
        events: tokio::sync::mpsc::UnboundedReceiver<crate::mongo::change_stream::Read>,
        drain: bool,
        attempts: u32,
    ) -> Option<tokio::task::JoinHandle<Result<()>>> {
        sync.stop = self.stop.child_token();
        // Under the members' lock, so a hand-over either sees this sync or keeps it from
        // starting.
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if !self.takes(collection) {
            return None;
        }
        members.insert(collection.to_string(), sync.stop.clone());
        drop(members);
        sync.feed = Some(Feed::new(router.clone(), collection, start, events));
        let name = sync.name.clone();
        let (source, target) = (sync.create.source.to_string(), sync.create.target.to_string());
        self.registry.starting(&name, source, target);
        let span = crate::logging::sync_span(&name);
        let run = sync.run_and_report(drain, attempts);
        Some(tokio::spawn(tracing::Instrument::instrument(run, span)))
    }

    fn member_failed(&self, router: &router::Router, collection: &str, err: &Error) {
        if let Some(group) = router.group() {
            group.leave(collection); // its events were kept for it: no cut waits for it
        }
        let name = self.member_name(collection);
        tracing::error!("sync {name}: {}", err.user_facing());
        self.registry.failed(&name, err);
    }
}

/// Where the table of `sync` says its stream is, when it has a checkpoint with a token.
async fn checkpoint_position(sync: &SyncTask) -> Option<Position> {
    let table = sync.load_table().await.ok()?;
    let checkpoint = super::sink::checkpoint_of(&table).ok()??;
    if checkpoint.sync != sync.name {
        return None;
    }
    let token = checkpoint.resume_token?;
    Some(Position { token, time: checkpoint.resume_time })
}
