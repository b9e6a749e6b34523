//! One change stream for a whole database (`db.watch()`), its events handed to the syncs of the
//! collections they belong to.
//!
//! Each collection's sync keeps its own checkpoint; the router routes, and, for a database
//! sync whose tables commit together (`consistent = true`, [`super::group`]), cuts the stream
//! where they commit: at a consistent point of the whole database (no transaction open in any
//! collection, every looked-up document settled), once a collection's batch is due. When a
//! sync has to read again from an older position than the router has reached (it failed and
//! retries from its checkpoint), the router goes back to that position: the other syncs then
//! see events they already have again, which they skip (those before the last change they
//! committed). An event of a collection no sync reads yet, which
//! the database sync takes, is "discovered": a channel is opened for it at once (so nothing is
//! lost while its sync is planned and copies the collection) and the controller is told.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::change_stream::event::OperationType;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::group::Group;
use crate::mongo::change_stream::{
    Event, GroupCut, Read, Reader, cluster_time, token_from_raw, token_to_raw, watch_database,
};
use crate::mongo::client::MongoSource;
use crate::sync::feed::Position;
use crate::sync::follow::cut::Cut;
use crate::sync::follow::transaction::TransactionId;

/// How often the syncs are told how far the stream is.
const PASSED_EVERY: Duration = Duration::from_millis(200);

/// The longest wait before the router opens its stream again after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A collection seen in the stream that the database sync takes and no sync reads yet.
pub struct Discovered {
    /// The collection.
    pub collection: String,
    /// Its events, from the one that revealed it.
    pub events: UnboundedReceiver<Read>,
    /// The stream position just before that event.
    pub start: Position,
}

/// Routes one database's change stream.
pub struct Router {
    source: Arc<MongoSource>,
    database: String,
    takes: Box<dyn Fn(&str) -> bool + Send + Sync>,
    state: Mutex<State>,
    rewind: tokio::sync::Notify,
    discovered: UnboundedSender<Discovered>,
    /// The tables' group commit, when the database sync has `consistent = true`.
    group: Option<Arc<Group>>,
    /// Where the whole stream may be cut for the group (transactions and lookups of every
    /// collection).
    cutter: Mutex<Cutter>,
}

/// The router's side of the group commit: where the database's stream may be cut.
#[derive(Default)]
struct Cutter {
    cut: Cut,
    /// Events routed since a member asked for a cut.
    overdue: usize,
}

#[derive(Default)]
struct State {
    subscribers: HashMap<String, UnboundedSender<Read>>,
    /// Where the stream has got to (the last event or idle answer routed).
    at: Option<Position>,
    /// A position before `at` that a subscriber needs the stream to go back to.
    rewind: Option<Position>,
    /// When the subscribers were last told how far the stream is.
    told_passed: Option<std::time::Instant>,
}

impl Router {
    /// A router of `database`'s stream; collections for which `takes` is true are discovered
    /// (announced on the returned receiver) when an event shows them.
    pub fn new(
        source: Arc<MongoSource>,
        database: &str,
        takes: Box<dyn Fn(&str) -> bool + Send + Sync>,
        group: Option<Arc<Group>>,
    ) -> (Arc<Self>, UnboundedReceiver<Discovered>) {
        let (discovered, announced) = unbounded_channel();
        let router = Self {
            source,
            database: database.to_string(),
            takes,
            state: Mutex::default(),
            rewind: tokio::sync::Notify::new(),
            discovered,
            group,
            cutter: Mutex::default(),
        };
        (Arc::new(router), announced)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The group commit of the database's tables, if they commit together.
    pub fn group(&self) -> Option<&Arc<Group>> {
        self.group.as_ref()
    }

    fn cutter(&self) -> std::sync::MutexGuard<'_, Cutter> {
        self.cutter.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the stream has got to, if it has been opened.
    pub fn position(&self) -> Option<Position> {
        self.state().at.clone()
    }

    /// The events of `collection` from now on; with `from`, the stream goes back there first
    /// when it is past it.
    pub fn subscribe(&self, collection: &str, from: Option<Position>) -> UnboundedReceiver<Read> {
        let (tx, rx) = unbounded_channel();
        let mut state = self.state();
        state.subscribers.insert(collection.to_string(), tx);
        if let Some(from) = from
            && state.at.as_ref().is_some_and(|at| from.before(at))
            && state.rewind.as_ref().is_none_or(|r| from.before(r))
        {
            state.rewind = Some(from);
            self.rewind.notify_one();
        }
        rx
    }

    /// Routes the stream from `start` until `stop` is cancelled. A failed stream is opened
    /// again from where it had got to, after a backoff.
    pub async fn run(self: Arc<Self>, start: Position, stop: tokio_util::sync::CancellationToken) {
        let mut from = start;
        let mut backoff = Duration::from_secs(1);
        if self.group.is_some() {
            // A table may hold documents read up to now (an earlier run stopped at a cut that
            // was not exact): the first exact cut is past now.
            let now = cluster_time(&self.source).await;
            self.cutter().cut.looked_up_by(now);
        }
        loop {
            self.state().at = Some(from.clone());
            let stream = watch_database(&self.source, &self.database, Some(&from.token)).await;
            let mut reader = match stream {
                Ok(stream) => Reader::spawn(stream),
                Err(err) => {
                    tracing::warn!(
                        "database sync of {}: cannot open its change stream ({}); again in {} s",
                        self.database,
                        crate::error::mongo_reason(&err),
                        backoff.as_secs()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            loop {
                let read = tokio::select! {
                    read = reader.recv() => read,
                    _ = self.rewind.notified() => None,
                    _ = stop.cancelled() => return,
                };
                let Some(read) = read else { break };
                if let Read::Failed(err) = &read {
                    tracing::warn!(
                        "database sync of {}: the change stream failed ({}); opening it again",
                        self.database,
                        crate::error::mongo_reason(err)
                    );
                    self.broadcast(read);
                    break;
                }
                backoff = Duration::from_secs(1);
                self.route(read);
            }
            let mut state = self.state();
            from = state.rewind.take().or_else(|| state.at.clone()).unwrap_or(from);
        }
    }

    /// Hands one read to the syncs it concerns.
    fn route(&self, read: Read) {
        match read {
            Read::Idle(token, asked, seen) => {
                if let Some(token) = token.as_ref().and_then(|t| token_to_raw(t).ok()) {
                    let mut state = self.state();
                    let time = state.at.as_ref().and_then(|at| at.time);
                    state.at = Some(Position { token, time });
                }
                self.broadcast(Read::Idle(token, asked, seen));
                self.cut_at_idle(seen);
            }
            Read::Event(event, token, seen) => {
                self.cut_before(&event, seen);
                let event_time = event.cluster_time;
                let before = self.state().at.clone();
                let position = token.as_ref().and_then(|t| token_to_raw(t).ok()).map(|token| {
                    let time = event.cluster_time.or(before.as_ref().and_then(|b| b.time));
                    Position { token, time }
                });
                let collection = event.ns.as_ref().and_then(|ns| ns.coll.clone());
                let renamed_to = match event.operation_type {
                    OperationType::Rename => event.to.as_ref().and_then(|to| to.coll.clone()),
                    _ => None,
                };
                let ends = matches!(
                    event.operation_type,
                    OperationType::Drop | OperationType::Rename | OperationType::DropDatabase
                );
                if let Some(collection) = &collection {
                    self.deliver(collection, Read::Event(event, token, seen), before.clone(), ends);
                } else if ends {
                    self.broadcast(Read::Event(event, token, seen)); // dropDatabase
                }
                if let (Some(to), Some(position)) = (renamed_to, position.clone()) {
                    self.discover(&to, None, position);
                }
                if let Some(position) = position {
                    self.state().at = Some(position);
                }
                self.tell_passed(event_time);
            }
            Read::Passed(..) | Read::Failed(_) | Read::Cut(_) => {}
        }
    }

    /// Before `event` (read when the server's time was `seen`) is routed: cuts the stream for
    /// the group when a member asked and the stream may end here — or must (the open
    /// transaction passed `max_transaction_rows`, or no transaction is open and the lookups
    /// kept the cut waiting for `flush_interval`).
    fn cut_before(&self, event: &Event, seen: Option<bson::Timestamp>) {
        let Some(group) = &self.group else { return };
        let mut cutter = self.cutter();
        let transaction = TransactionId::of(event);
        let time = event.cluster_time;
        let may_end = cutter.cut.before_event(transaction.as_ref(), time);
        if let Some(since) = group.wanted() {
            let open = cutter.cut.transactions.is_open();
            let forced = cutter.overdue > group.max_transaction_rows
                || (!open && since.elapsed() >= group.flush_interval);
            if may_end || forced {
                self.cut(group, &mut cutter, !may_end);
            } else {
                cutter.overdue += 1;
            }
        }
        let looked_up = seen.filter(|_| event.operation_type == OperationType::Update);
        cutter.cut.add(transaction, time, looked_up);
    }

    /// After an idle answer: everything up to the server's time `seen` is routed, so the stream
    /// may be cut here.
    fn cut_at_idle(&self, seen: Option<bson::Timestamp>) {
        let Some(group) = &self.group else { return };
        let mut cutter = self.cutter();
        cutter.cut.idle(seen);
        if group.wanted().is_some() {
            self.cut(group, &mut cutter, false);
        }
    }

    /// Cuts the stream where it is for the group: opens the cut and sends it to every
    /// collection's reader. `forced`: not at a consistent point.
    fn cut(&self, group: &Arc<Group>, cutter: &mut Cutter, forced: bool) {
        if forced && let Some((id, total)) = cutter.cut.transactions.split() {
            tracing::warn!(
                "database sync of {}: a MongoDB transaction ({id}) changed more than \
                 max_transaction_rows = {} rows ({total} so far): it is committed in parts, and \
                 a reader of the tables may see part of it",
                self.database,
                group.max_transaction_rows
            );
        }
        let exact = if forced { None } else { cutter.cut.exact().flatten() };
        let mut state = self.state();
        // A collection whose reader is gone (its sync failed to start, or ended) is not waited
        // for, now or at an earlier cut.
        let gone: Vec<String> = state
            .subscribers
            .iter()
            .filter(|(_, tx)| tx.is_closed())
            .map(|(c, _)| c.clone())
            .collect();
        for collection in &gone {
            state.subscribers.remove(collection);
            group.leave(collection);
        }
        let epoch = group.open(state.subscribers.keys().cloned());
        let token = state.at.as_ref().and_then(|at| token_from_raw(&at.token).ok());
        drop(state);
        for collection in self.broadcast(Read::Cut(GroupCut { epoch, exact, token })) {
            group.leave(&collection);
        }
        if forced {
            cutter.cut.group_cut(None);
        }
        cutter.cut.committed();
        cutter.overdue = 0;
    }

    /// Sends `read` to the sync of `collection`, discovering the collection when no sync reads
    /// it and the database sync takes it; `ends`: the collection's stream ends with it.
    fn deliver(&self, collection: &str, read: Read, before: Option<Position>, ends: bool) {
        let mut state = self.state();
        let Some(tx) = state.subscribers.get(collection) else {
            drop(state);
            if !ends && let Some(before) = before {
                self.discover(collection, Some(read), before);
            }
            return;
        };
        if tx.send(read).is_err() || ends {
            state.subscribers.remove(collection);
        }
    }

    /// Opens a channel for a collection the database sync takes, with `first` in it, and
    /// announces it.
    fn discover(&self, collection: &str, first: Option<Read>, start: Position) {
        if !(self.takes)(collection) || self.state().subscribers.contains_key(collection) {
            return;
        }
        let (tx, events) = unbounded_channel();
        if let Some(first) = first {
            let _ = tx.send(first);
        }
        self.state().subscribers.insert(collection.to_string(), tx);
        let discovered = Discovered { collection: collection.to_string(), events, start };
        let _ = self.discovered.send(discovered);
    }

    /// Tells every sync, now and then, that the stream has handed over everything up to `time`
    /// and its position now (a copy beside a collection's stream waits for that, while other
    /// collections are written to; a quiet collection's checkpoint moves with it).
    fn tell_passed(&self, time: Option<bson::Timestamp>) {
        let Some(time) = time else { return };
        let mut state = self.state();
        if state.told_passed.is_some_and(|at| at.elapsed() < PASSED_EVERY) {
            return;
        }
        state.told_passed = Some(std::time::Instant::now());
        let token = state.at.as_ref().and_then(|at| token_from_raw(&at.token).ok());
        drop(state);
        self.broadcast(Read::Passed(time, token));
    }

    /// Sends `read` to every sync (an idle answer, a failure, a cut); returns the collections
    /// whose reader is gone.
    fn broadcast(&self, read: Read) -> Vec<String> {
        let state = self.state();
        let mut gone = Vec::new();
        for (collection, tx) in &state.subscribers {
            let copy = match &read {
                Read::Idle(token, asked, seen) => Read::Idle(token.clone(), *asked, *seen),
                Read::Passed(time, token) => Read::Passed(*time, token.clone()),
                Read::Event(event, token, seen) => match copy_event(event) {
                    Some(event) => Read::Event(Box::new(event), token.clone(), *seen),
                    None => continue,
                },
                Read::Failed(err) => Read::Failed(err.clone()),
                Read::Cut(cut) => Read::Cut(cut.clone()),
            };
            if tx.send(copy).is_err() {
                gone.push(collection.clone());
            }
        }
        gone
    }
}

/// A copy of `event` (the driver's event type is not `Clone`), through its BSON form; only a
/// `dropDatabase` event, which every sync gets, is copied.
fn copy_event(
    event: &crate::mongo::change_stream::Event,
) -> Option<crate::mongo::change_stream::Event> {
    let document = bson::serialize_to_document(event).ok()?;
    bson::deserialize_from_document(document).ok()
}
