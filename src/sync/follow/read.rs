//! The read side of the follow loop: a batch of change events and copied chunks, read until it
//! is due and then on to a consistent cut (see [`super::cut`]).

use std::time::{Instant, SystemTime};

use bson::Timestamp;
use mongodb::change_stream::event::{OperationType, ResumeToken};

use super::apply::system_time;
use super::changes::{Changes, Effect, add, is_change};
use super::stream::{Stream, has_queued, history_lost, lost, next_read, raw, stalled};
use super::transaction::TransactionId;
use super::{CUT_WAIT, End, Follower};
use crate::mongo::change_stream::{Event, Read, SILENT_LIMIT};
use crate::sync::copy::Copy;
use crate::sync::copy::merge::StreamPosition;
use crate::{Error, Result};

/// One round's reads.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) changes: Changes,
    /// Stopped while reading.
    pub(super) stopping: bool,
    /// The batch ends at the next consistent cut (a read said so).
    ending: bool,
    /// Events added after the batch was due, waiting for a consistent cut.
    overdue: usize,
    /// Everything up to now was read (an idle answer, or an event after the drain's end).
    pub(super) caught_up: bool,
    /// The stream ended with this.
    pub(super) ended: Option<End>,
    /// The group cut (of a database sync whose tables commit together) the batch ended at.
    pub(super) cut: Option<u64>,
}

/// What a read means for the batch being read.
enum Flow {
    Continue,
    Break,
}

/// How the batch is being read.
#[derive(Clone, Copy)]
struct Reading {
    /// The batch is full or its time is up: it ends at the next consistent cut.
    due: bool,
    /// A `--once` run: an idle stream ends it.
    drain: bool,
    /// A `--once` run ends at the first event after this time.
    stop_after: Option<Timestamp>,
}

impl Follower<'_> {
    /// Reads change events and copied chunks until the batch is full (`max_batch_rows`,
    /// `max_batch_bytes`), `flush_interval` has passed, the stream ends or the sync stops —
    /// and then on to a consistent cut (see [`cut`]; [`Self::no_cut_coming`] says how long).
    pub(super) async fn read_batch(
        &mut self,
        drain: bool,
        stop_after: Option<Timestamp>,
    ) -> Result<Batch> {
        let options = &self.sync.create.options;
        let mut batch = Batch::default();
        let started = Instant::now();
        let mut due_since = None;
        loop {
            let full = batch.changes.len() >= options.max_batch_rows
                || batch.changes.bytes >= options.max_batch_bytes;
            let left = options.flush_interval.checked_sub(started.elapsed());
            let due = batch.ending || full || left.is_none();
            let due_for = due.then(|| due_since.get_or_insert_with(Instant::now).elapsed());
            if !due {
                due_since = None;
            }
            if self.batch_ends(&batch, due_for) {
                break;
            }
            let wait = left.filter(|_| !due).unwrap_or(CUT_WAIT);
            // A group member's batch ends at the group's cut, not before an event of its own.
            let how = Reading { due: due && self.group().is_none(), drain, stop_after };
            let reading = self.copy.as_ref().is_some_and(Copy::reading);
            let flow = match self.held.take() {
                Some(read) => self.take(Ok(Some(read)), &mut batch, how)?,
                None => tokio::select! {
                    next = next_read(&mut self.stream, wait) => self.take(next, &mut batch, how)?,
                    received = receive(&mut self.copy), if reading => {
                        received?;
                        Flow::Continue
                    }
                    _ = self.sync.stop.cancelled(), if !batch.stopping => {
                        batch.stopping = true;
                        Flow::Break
                    }
                },
            };
            self.merge_chunks(&mut batch.changes);
            if matches!(flow, Flow::Break) {
                batch.ending = true;
            }
        }
        tracing::debug!(
            "sync {}: read a batch of {} changes ({} events) in {} ms{}",
            self.sync.name,
            batch.changes.len(),
            batch.changes.events,
            started.elapsed().as_millis(),
            if batch.caught_up { ", caught up" } else { "" }
        );
        Ok(batch)
    }

    /// Whether the batch ends now; `due_for`: how long it has been due, if it is. A group
    /// member's batch ends at a cut of the group (asked for once it is due) — or, stopping,
    /// with none when none came for `flush_interval` and two more reads; any other at a
    /// consistent cut of its own once due, or without one (see [`Self::no_cut_coming`]).
    fn batch_ends(&mut self, batch: &Batch, due_for: Option<std::time::Duration>) -> bool {
        if batch.ended.is_some() {
            return true;
        }
        if let Some(membership) = &self.membership {
            if due_for.is_some() {
                membership.want();
            }
            let flush_interval = membership.group().flush_interval;
            let waited = due_for.is_some_and(|d| d >= flush_interval + 2 * CUT_WAIT);
            return batch.cut.is_some() || (batch.stopping && waited);
        }
        let Some(due_for) = due_for else { return false };
        if self.cut.may_end() {
            return true;
        }
        if self.no_cut_coming(batch, due_for) {
            self.end_without_cut(!self.copying() && !batch.stopping);
            return true;
        }
        false
    }

    /// Whether a due batch, due for `due_for`, stops waiting for a consistent cut: the open
    /// transaction, if any, is past `max_transaction_rows` (or the batch past twice
    /// `max_batch_bytes`); or no transaction is open and only documents looked up after the
    /// stream's position keep it open — while the collection is copied (the table is not
    /// exact before the copy ends anyway), while the sync stops, or for `flush_interval` more
    /// (a sync behind the stream finds no exact cut until it has caught up).
    fn no_cut_coming(&self, batch: &Batch, due_for: std::time::Duration) -> bool {
        let options = &self.sync.create.options;
        let oversize = batch.changes.bytes >= options.max_batch_bytes.saturating_mul(2);
        if batch.overdue > options.max_transaction_rows || oversize {
            return true;
        }
        let waited = due_for >= options.flush_interval;
        !self.cut.transactions.is_open() && (self.copying() || batch.stopping || waited)
    }

    /// Whether a copy of the collection is still to be completed.
    fn copying(&self) -> bool {
        self.copy.is_some()
    }

    /// Commits the batch without a consistent cut, and says why (the lookups' case once per
    /// catch-up, and only when `say`).
    fn end_without_cut(&mut self, say: bool) {
        let bound = self.sync.create.options.max_transaction_rows;
        match self.cut.transactions.split() {
            Some((id, total)) => tracing::warn!(
                "sync {}: a MongoDB transaction ({id}) changed more than max_transaction_rows = \
                 {bound} rows ({total} so far): it is committed in parts, and a reader of the \
                 table may see part of it",
                self.sync.name
            ),
            None if !self.inexact && say => tracing::info!(
                "sync {}: no consistent point within flush_interval of a full batch (the stream \
                 is behind, and updated documents are read as they are now): committing without \
                 one until it has caught up",
                self.sync.name
            ),
            None => {}
        }
        self.inexact = true;
    }

    /// Takes one read of the stream into the batch.
    fn take(
        &mut self,
        next: Result<Option<Read>, tokio::time::error::Elapsed>,
        batch: &mut Batch,
        how: Reading,
    ) -> Result<Flow> {
        if next.is_ok() {
            self.last_heard = Instant::now();
        }
        let read = match next {
            Err(_elapsed) if self.last_heard.elapsed() >= SILENT_LIMIT => {
                return Err(stalled(self.sync, self.last_heard.elapsed()));
            }
            Err(_elapsed) => return Ok(Flow::Break),
            Ok(None) => return Err(Error::internal("the change stream reader stopped")),
            Ok(Some(read)) => read,
        };
        match read {
            Read::Failed(err) if history_lost(&err) => {
                batch.ended = Some(End::Recopy(lost(&err)));
                Ok(Flow::Break)
            }
            Read::Failed(err) => Err(Error::mongo("reading the change stream", err)),
            Read::Event(event, token, seen) => self.take_event(event, token, seen, batch, how),
            Read::Passed(time, token) => {
                self.read_token = raw(token)?.or(self.read_token.take());
                self.cut.passed(time);
                self.position.read_change(Some(time));
                self.sync.status(|s| s.caught_up_at = Some(system_time(time)));
                Ok(Flow::Continue)
            }
            Read::Cut(cut) => {
                let Some(membership) = &mut self.membership else { return Ok(Flow::Continue) };
                membership.seen(cut.epoch);
                if !membership.group().expects(cut.epoch, membership.name()) {
                    return Ok(Flow::Continue); // cut before this member joined: the next one
                }
                self.read_token = raw(cut.token)?.or(self.read_token.take());
                self.cut.group_cut(cut.exact);
                if let Some(time) = cut.exact {
                    self.position.read_change(Some(time));
                }
                batch.cut = Some(cut.epoch);
                Ok(Flow::Break)
            }
            Read::Idle(token, asked, seen) => {
                self.read_token = raw(token)?.or(self.read_token.take());
                self.position.read_idle(asked);
                self.cut.idle(seen);
                let asked = std::time::SystemTime::now() - asked.elapsed();
                self.sync.status(|s| s.caught_up_at = Some(asked));
                // Read ahead while the sync committed, an idle answer followed by more reads
                // says only that there was a pause then: the batch goes on.
                if has_queued(&self.stream) {
                    return Ok(Flow::Continue);
                }
                batch.caught_up = true;
                Ok(if how.drain || !batch.changes.is_empty() {
                    Flow::Break
                } else {
                    Flow::Continue
                })
            }
        }
    }

    /// Merges the copied chunks the stream has passed into `changes` (once the stream has a
    /// position to commit them with).
    fn merge_chunks(&mut self, changes: &mut Changes) {
        let unfollowed = matches!(self.stream, Stream::Unfollowed(_));
        if self.read_token.is_none() && self.saved_token.is_none() && !unfollowed {
            return;
        }
        let Some(copy) = &mut self.copy else { return };
        let passed = if unfollowed { StreamPosition::finished() } else { self.position };
        let room = self.sync.create.options.max_batch_rows.saturating_sub(changes.len());
        copy.merge_ready(&passed, room, |id, doc| changes.set(id, Some(doc)));
    }

    /// Takes one change event into the batch, or holds it for the next batch when the batch is
    /// due and may end before it.
    fn take_event(
        &mut self,
        event: Box<Event>,
        token: Option<ResumeToken>,
        seen: Option<Timestamp>,
        batch: &mut Batch,
        how: Reading,
    ) -> Result<Flow> {
        let time = event.cluster_time;
        if self.skip_before.is_some_and(|t| time.is_some_and(|c| c < t)) {
            self.read_token = raw(token)?.or(self.read_token.take());
            return Ok(Flow::Continue);
        }
        let transaction = TransactionId::of(&event);
        if self.cut.before_event(transaction.as_ref(), time) && how.due {
            // The batch ends before this event, which begins the next one.
            self.held = Some(Read::Event(event, token, seen));
            return Ok(Flow::Break);
        }
        let looked_up = seen.filter(|_| event.operation_type == OperationType::Update);
        self.cut.add(transaction, time, looked_up);
        batch.overdue += usize::from(how.due);
        let first = batch.changes.is_empty();
        match add(self.sync, &mut batch.changes, &event)? {
            Effect::Ends(reason) => {
                // What came before is applied; the end is read again after a restart.
                batch.ended = Some(match self.sync.feed {
                    Some(_) => End::Dropped(reason),
                    None => End::Recopy(reason),
                });
                return Ok(Flow::Break);
            }
            Effect::Changed(id) => {
                if first {
                    let read = time.map(system_time);
                    self.sync
                        .status(|s| s.pending_since = read.or(Some(std::time::SystemTime::now())));
                }
                if let Some(copy) = &mut self.copy {
                    copy.changed(&id, time);
                }
            }
            Effect::Nothing => {}
        }
        self.read_token = raw(token)?.or(self.read_token.take());
        self.position.read_change(time);
        let caught_up =
            (!is_change(&event)).then(|| time.map_or_else(SystemTime::now, system_time));
        self.sync.status(|s| s.caught_up_at = caught_up);
        if how.stop_after.is_some_and(|t| time.is_some_and(|c| c > t)) {
            batch.caught_up = true; // everything before the start is in this batch
            return Ok(Flow::Break);
        }
        Ok(Flow::Continue)
    }
}

/// The copy's next chunk, if a copy reads. Cancel-safe.
async fn receive(copy: &mut Option<Copy>) -> Result<()> {
    match copy {
        Some(copy) => copy.receive().await,
        None => std::future::pending().await,
    }
}
