//! A database sync's tables committed together (`WITH (consistent = true)`): every commit of
//! every table is made at a cut the router chose in the database's one change stream, and the
//! tables that have something to commit at that cut commit it at once
//! ([`crate::lake::commit::commit_together`]: one SQLite transaction, or one REST
//! `transactions/commit`). So every state of the catalog is a state MongoDB's database had.
//!
//! The protocol, for a cut numbered `epoch`:
//! 1. a member whose batch is due asks for a cut ([`Group::want`]);
//! 2. the router picks the next consistent point of the stream, opens the epoch
//!    ([`Group::open`], expecting every collection it has a reader for, a collection whose sync
//!    is still starting included) and sends the cut to every reader, in stream order;
//! 3. each expected member ends its batch at the cut, and either hands its change to the group
//!    ([`Group::commit`], waiting for the outcome) or says it has none ([`Group::pass`]);
//! 4. once every expected member has answered (or left: a failed member's sync restarts from
//!    its table's checkpoint, and the group goes on without waiting for it; a reader that is
//!    gone leaves too), the epoch's
//!    changes are committed together, epochs strictly in order.
//!
//! A member that fails leaves the group; its table lags the others until its sync has caught up
//! again (its `misql.valid-through` says how far it is exact). A change that no longer applies
//! fails alone; a commit the catalog refuses fails for every table of the epoch, each of which
//! then restarts from its own checkpoint — nothing is applied twice or lost.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iceberg::table::Table;
use tokio::sync::oneshot;

use crate::lake::catalog::IcebergConnection;
use crate::lake::commit::{Change, commit_together};
use crate::{Error, Result};

/// The tables of one database sync committed together.
pub struct Group {
    state: Mutex<State>,
    /// Whether a member wants a cut: `state.wanted.is_some()`, written with it under the lock,
    /// read without the lock by the router before every event it routes.
    wants: AtomicBool,
    /// How long a member waits for a cut, and the router for a consistent point.
    pub flush_interval: Duration,
    /// The largest transaction kept whole.
    pub max_transaction_rows: usize,
}

#[derive(Default)]
struct State {
    /// Members that stopped following their stream (failed, standing by, ended) and have not
    /// joined again: cuts do not wait for them.
    absent: HashSet<String>,
    next_epoch: u64,
    epochs: BTreeMap<u64, Epoch>,
    /// An epoch's changes are being committed.
    committing: bool,
    /// Since when a member wants a cut.
    wanted: Option<Instant>,
}

#[derive(Default)]
struct Epoch {
    /// The members that have not answered yet.
    waiting: HashSet<String>,
    parts: Vec<Part>,
}

struct Part {
    connection: IcebergConnection,
    table: Table,
    change: Change,
    reply: oneshot::Sender<Result<Table>>,
}

impl Group {
    /// A group whose cuts come at most `flush_interval` after a member asks, keeping
    /// transactions of up to `max_transaction_rows` changes whole.
    pub fn new(flush_interval: Duration, max_transaction_rows: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            wants: AtomicBool::new(false),
            flush_interval,
            max_transaction_rows,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `member` follows its stream from now on, until the returned membership is dropped (then
    /// no cut waits for it any more).
    pub fn join(self: &Arc<Self>, member: &str) -> Membership {
        let mut state = self.state();
        state.absent.remove(member);
        let seen = state.next_epoch.checked_sub(1);
        Membership { group: self.clone(), member: member.to_string(), seen }
    }

    /// A member's batch is due, and the newest cut it has read is `seen`: the router should
    /// cut soon — unless a later cut is already open (and on its way to the member).
    fn want(&self, seen: Option<u64>) {
        let mut state = self.state();
        if state.next_epoch.checked_sub(1) > seen {
            return;
        }
        state.wanted.get_or_insert_with(Instant::now);
        self.wants.store(true, Ordering::Release);
    }

    /// Since when a member wants a cut, if one does. Locks the group only when one does.
    pub fn wanted(&self) -> Option<Instant> {
        if !self.wants.load(Ordering::Acquire) {
            return None;
        }
        self.state().wanted
    }

    /// Opens the next cut, which the members `readers` answer (every collection whose reader
    /// the cut is sent to, one whose sync is still starting included, but not one that is
    /// absent); returns its number.
    pub fn open(&self, readers: impl IntoIterator<Item = String>) -> u64 {
        let mut state = self.state();
        state.wanted = None;
        self.wants.store(false, Ordering::Release);
        let epoch = state.next_epoch;
        state.next_epoch += 1;
        let waiting = readers.into_iter().filter(|r| !state.absent.contains(r)).collect();
        state.epochs.insert(epoch, Epoch { waiting, parts: Vec::new() });
        epoch
    }

    /// Whether `member` is to answer cut `epoch` (a member that joined after it was opened
    /// reads on to the next one).
    pub fn expects(&self, epoch: u64, member: &str) -> bool {
        self.state().epochs.get(&epoch).is_some_and(|e| e.waiting.contains(member))
    }

    /// `member` has nothing to commit at cut `epoch`.
    pub fn pass(self: &Arc<Self>, epoch: u64, member: &str) {
        let mut state = self.state();
        if let Some(e) = state.epochs.get_mut(&epoch) {
            e.waiting.remove(member);
        }
        self.advance(state);
    }

    /// Commits `change` to `table` with the other changes of cut `epoch`; returns the table
    /// after it.
    pub async fn commit(
        self: &Arc<Self>,
        epoch: u64,
        member: &str,
        connection: &IcebergConnection,
        table: &Table,
        change: Change,
    ) -> Result<Table> {
        let (reply, outcome) = oneshot::channel();
        {
            let mut state = self.state();
            let e = state.epochs.get_mut(&epoch);
            let Some(e) = e.filter(|e| e.waiting.contains(member)) else {
                return Err(Error::internal(format!(
                    "{member} committed at cut {epoch}, which does not wait for it"
                )));
            };
            e.waiting.remove(member);
            let connection = connection.clone();
            e.parts.push(Part { connection, table: table.clone(), change, reply });
            self.advance(state);
        }
        outcome.await.unwrap_or_else(|_| {
            Err(Error::Unavailable {
                message: format!("the group commit of cut {epoch} ended without an outcome"),
                hint: Some("the sync restarts from its checkpoint".to_string()),
            })
        })
    }

    /// `member` stopped following its stream (or its reader is gone): no cut waits for it any
    /// more.
    pub fn leave(self: &Arc<Self>, member: &str) {
        let mut state = self.state();
        state.absent.insert(member.to_string());
        for e in state.epochs.values_mut() {
            e.waiting.remove(member);
        }
        self.advance(state);
    }

    /// Commits the oldest cut once every member has answered it (one at a time, in order).
    fn advance(self: &Arc<Self>, mut state: std::sync::MutexGuard<'_, State>) {
        if state.committing {
            return;
        }
        let ready = state.epochs.first_key_value().is_some_and(|(_, e)| e.waiting.is_empty());
        if !ready {
            return;
        }
        let Some((epoch, e)) = state.epochs.pop_first() else { return };
        if e.parts.is_empty() {
            return self.advance(state);
        }
        state.committing = true;
        drop(state);
        let group = self.clone();
        tokio::spawn(async move {
            let (replies, parts): (Vec<_>, Vec<_>) =
                e.parts.into_iter().map(|p| (p.reply, (p.connection, p.table, p.change))).unzip();
            let connection = parts[0].0.clone();
            let tables: Vec<(Table, Change)> = parts.into_iter().map(|(_, t, c)| (t, c)).collect();
            let count = tables.len();
            let started = Instant::now();
            let results = commit_together(&connection, tables).await;
            tracing::debug!(
                "cut {epoch}: {count} table(s) committed together in {} ms",
                started.elapsed().as_millis()
            );
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
            let mut state = group.state();
            state.committing = false;
            group.advance(state);
        });
    }
}

/// A member following its stream; dropping it leaves the group.
pub struct Membership {
    group: Arc<Group>,
    member: String,
    /// The newest cut the member has read (or that was open when it joined).
    seen: Option<u64>,
}

impl Membership {
    /// The member's batch is due: asks for a cut, unless one it has not read yet is open.
    pub fn want(&self) {
        self.group.want(self.seen);
    }

    /// The member read cut `epoch`.
    pub fn seen(&mut self, epoch: u64) {
        self.seen = self.seen.max(Some(epoch));
    }

    /// The group.
    pub fn group(&self) -> &Arc<Group> {
        &self.group
    }

    /// The member's name in the group (its collection).
    pub fn name(&self) -> &str {
        &self.member
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.group.leave(&self.member);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(group: &Group, epoch: u64) -> Option<Vec<String>> {
        let state = group.state();
        let mut names: Vec<String> = state.epochs.get(&epoch)?.waiting.iter().cloned().collect();
        names.sort();
        Some(names)
    }

    #[test]
    fn a_cut_waits_for_the_members_it_is_sent_to_until_they_answer_or_leave() {
        let group = Group::new(Duration::from_secs(1), 10);
        let a = group.join("a");
        let first = group.open(["a".to_string()]);
        let second = group.open(["a".to_string(), "b".to_string()]);
        assert!(group.expects(first, "a") && !group.expects(first, "b"), "b came later");
        assert_eq!(waiting(&group, second), Some(vec!["a".into(), "b".into()]));
        group.pass(first, "a");
        assert_eq!(waiting(&group, first), None, "answered by all: done");
        group.leave("b");
        assert_eq!(waiting(&group, second), Some(vec!["a".into()]), "b's reader is gone");
        drop(a);
        assert_eq!(waiting(&group, second), None, "a left");
        let third = group.open(["a".to_string(), "b".to_string()]);
        assert_eq!(waiting(&group, third), Some(vec![]), "both absent");
        let _b = group.join("b");
        let fourth = group.open(["a".to_string(), "b".to_string()]);
        assert_eq!(waiting(&group, fourth), Some(vec!["b".into()]), "b joined again");
    }

    #[test]
    fn asking_for_a_cut_is_remembered_until_one_opens_and_the_member_reads_it() {
        let group = Group::new(Duration::from_secs(1), 10);
        let mut member = group.join("a");
        assert!(group.wanted().is_none());
        member.want();
        let since = group.wanted();
        member.want();
        assert_eq!(group.wanted(), since, "the first ask counts");
        let epoch = group.open(["a".to_string()]);
        assert!(group.wanted().is_none());
        member.want();
        assert!(group.wanted().is_none(), "a cut the member has not read yet is on its way");
        member.seen(epoch);
        member.want();
        assert!(group.wanted().is_some());
    }

    #[test]
    fn the_flag_read_without_the_lock_follows_the_wanted_time() {
        let group = Group::new(Duration::from_secs(1), 10);
        let in_step =
            |group: &Group| group.wants.load(Ordering::Acquire) == group.state().wanted.is_some();
        let mut member = group.join("a");
        assert!(in_step(&group) && !group.wants.load(Ordering::Acquire));
        member.want();
        assert!(in_step(&group) && group.wants.load(Ordering::Acquire));
        let epoch = group.open(["a".to_string()]);
        assert!(in_step(&group) && !group.wants.load(Ordering::Acquire));
        member.want();
        assert!(in_step(&group), "a cut on its way: nothing wanted");
        member.seen(epoch);
        member.want();
        assert!(in_step(&group) && group.wants.load(Ordering::Acquire));
    }
}
