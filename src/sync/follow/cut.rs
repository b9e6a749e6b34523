//! Where a batch may end so that the table shows a state MongoDB had: a consistent cut of the
//! stream. Two things make a cut inconsistent:
//!
//! - **Half a transaction**: the events of one transaction come one after another, and a cut
//!   between two of them shows part of it ([`Transactions`]).
//! - **A document newer than the cut**: an update event's document is looked up when the
//!   server answers the read that returns the event (`fullDocument: updateLookup`), so it can
//!   hold changes made after the event. A cut at cluster time P is exact only when every
//!   document in the batch was looked up no later than P, and every event up to P was read.
//!   The session's cluster time after the read bounds the lookup time.
//!
//! So a batch may end before an event that begins after every lookup in the batch and is not
//! part of an open transaction; at an idle answer (everything up to the server's time was
//! read); or where a database stream has passed every lookup. The cluster time of that cut is
//! the time the table is exact at (`misql.valid-through`).

use bson::Timestamp;

use super::transaction::{TransactionId, Transactions};

/// The state of the batch being read, as far as where it may end is concerned.
#[derive(Debug)]
pub struct Cut {
    /// The transactions read, and the one open.
    pub transactions: Transactions,
    /// The latest time a document now in the table or in the batch was looked up at, since
    /// the last exact commit.
    looked_up: Option<Timestamp>,
    /// The latest event time read.
    last: Option<Timestamp>,
    /// The batch may end before the next read, and the table is then exact at this time
    /// (`Some(None)`: exact, at a time not known).
    exact: Option<Option<Timestamp>>,
    /// Exact only after the next idle answer.
    until_idle: bool,
}

impl Default for Cut {
    fn default() -> Self {
        Self {
            transactions: Transactions::default(),
            looked_up: None,
            last: None,
            exact: Some(None),
            until_idle: false,
        }
    }
}

impl Cut {
    /// The table may hold documents looked up as late as `time` (`None`: at a time not known,
    /// so it is exact again at the next idle answer).
    pub fn looked_up_by(&mut self, time: Option<Timestamp>) {
        match time {
            Some(_) => self.looked_up = self.looked_up.max(time),
            None => self.until_idle = true,
        }
        self.exact = None;
    }

    /// Whether the batch may end here.
    pub fn may_end(&self) -> bool {
        self.exact.is_some()
    }

    /// Before an event of transaction `id` at `time` is added: ends the open transaction if the
    /// event is not part of it, and tells whether the batch may end before the event.
    pub fn before_event(&mut self, id: Option<&TransactionId>, time: Option<Timestamp>) -> bool {
        self.transactions.ends_at(id);
        let after_lookups = match (self.looked_up, time) {
            (None, _) => true,
            (Some(looked_up), Some(time)) => looked_up < time,
            (Some(_), None) => false,
        };
        if !self.transactions.is_open() && after_lookups && !self.until_idle {
            self.exact = Some(self.looked_up.max(self.last));
        }
        self.may_end()
    }

    /// Adds an event of transaction `id` at `time`; `looked_up`: the time its document was
    /// looked up by (an update's), `None` when the event carries its own document.
    pub fn add(
        &mut self,
        id: Option<TransactionId>,
        time: Option<Timestamp>,
        looked_up: Option<Timestamp>,
    ) {
        self.transactions.note(id, time);
        self.looked_up = self.looked_up.max(looked_up);
        self.last = self.last.max(time);
        let settled = self.looked_up.is_none_or(|l| time.is_some_and(|t| l <= t));
        // Only an event outside transactions ends where it is: a transaction's next event may
        // share its time.
        let closed = !self.transactions.is_open() && !self.until_idle;
        self.exact = (settled && closed).then_some(time);
    }

    /// The stream is idle: everything up to `seen`, the server's time then, was read — and
    /// every document read so far (by this process or one before it) was looked up before the
    /// empty read was asked for.
    pub fn idle(&mut self, seen: Option<Timestamp>) {
        self.transactions.idle();
        self.until_idle = false;
        self.exact = Some(seen.max(self.last).max(self.looked_up));
    }

    /// A database stream handed over everything of this collection up to `time`.
    pub fn passed(&mut self, time: Timestamp) {
        self.transactions.passed(time);
        let settled = self.looked_up.is_none_or(|l| l <= time) && !self.until_idle;
        if !self.transactions.is_open() && settled {
            self.exact = Some(Some(time));
        }
    }

    /// A database stream's router cut the stream here for its tables' group commit: at a
    /// consistent point exact at `exact` (the open transaction, if any, ended before it), or
    /// at none (a transaction larger than the bound is split). The table is exact there when
    /// its own lookups agree.
    pub fn group_cut(&mut self, exact: Option<Timestamp>) {
        let Some(time) = exact else {
            let _ = self.transactions.split();
            self.exact = None;
            return;
        };
        self.transactions.idle();
        let settled = self.looked_up.is_none_or(|l| l <= time) && !self.until_idle;
        self.exact = settled.then_some(Some(time));
    }

    /// Where a commit now leaves the table: exact (`Some`, at the time when known), or not.
    pub fn exact(&self) -> Option<Option<Timestamp>> {
        self.exact
    }

    /// A commit was made here: when it was exact, the lookups start again.
    pub fn committed(&mut self) {
        if self.exact.is_some() {
            self.looked_up = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(increment: u32) -> Option<Timestamp> {
        Some(Timestamp { time: 100, increment })
    }

    fn txn(number: i64) -> Option<TransactionId> {
        TransactionId::new(bson::doc! { "id": 1 }, number)
    }

    #[test]
    fn events_with_their_own_documents_end_where_they_are() {
        let mut cut = Cut::default();
        assert!(cut.may_end());
        assert!(cut.before_event(None, at(1)));
        cut.add(None, at(1), None);
        assert!(cut.may_end());
        assert_eq!(cut.exact(), Some(at(1)));
    }

    #[test]
    fn a_looked_up_document_needs_the_stream_past_its_lookup() {
        let mut cut = Cut::default();
        cut.add(None, at(1), at(5)); // an update at 1, looked up at 5
        assert!(!cut.may_end());
        assert!(!cut.before_event(None, at(4)), "an event up to 5 may be in the document");
        cut.add(None, at(4), at(5));
        assert!(!cut.before_event(None, at(5)));
        cut.add(None, at(5), None);
        assert!(cut.may_end(), "every event up to the lookup is read");
        assert!(cut.before_event(None, at(6)));
        assert_eq!(cut.exact(), Some(at(5)));
    }

    #[test]
    fn an_idle_answer_or_a_database_stream_passing_the_lookup_ends_it() {
        let mut cut = Cut::default();
        cut.add(None, at(1), at(5));
        assert!(!cut.may_end());
        cut.idle(at(6));
        assert_eq!(cut.exact(), Some(at(6)));
        cut.committed();
        cut.add(None, at(7), at(9));
        cut.passed(Timestamp { time: 100, increment: 8 });
        assert!(!cut.may_end());
        cut.passed(Timestamp { time: 100, increment: 9 });
        assert_eq!(cut.exact(), Some(at(9)));
    }

    #[test]
    fn never_inside_a_transaction() {
        let mut cut = Cut::default();
        assert!(cut.before_event(txn(1).as_ref(), at(2)));
        cut.add(txn(1), at(2), None);
        assert!(!cut.may_end());
        assert!(!cut.before_event(txn(1).as_ref(), at(2)));
        cut.add(txn(1), at(2), None);
        assert!(cut.before_event(txn(2).as_ref(), at(3)), "the next transaction begins");
        cut.add(txn(2), at(3), None);
        cut.idle(None);
        assert!(cut.may_end());
        assert_eq!(cut.transactions.take_counts().ended, 2);
    }

    #[test]
    fn a_table_left_inexact_is_exact_past_the_start_or_at_the_next_idle_answer() {
        let mut cut = Cut::default();
        cut.looked_up_by(at(5));
        assert!(!cut.may_end());
        assert!(!cut.before_event(None, at(5)));
        cut.add(None, at(5), None);
        assert!(cut.may_end());
        let mut cut = Cut::default();
        cut.looked_up_by(None);
        assert!(!cut.before_event(None, at(9)));
        cut.add(None, at(9), None);
        cut.passed(Timestamp { time: 100, increment: 10 });
        assert!(!cut.may_end());
        cut.idle(None);
        assert_eq!(cut.exact(), Some(at(9)));
    }

    #[test]
    fn a_commit_elsewhere_keeps_the_lookups_it_wrote() {
        let mut cut = Cut::default();
        cut.add(None, at(1), at(5));
        assert_eq!(cut.exact(), None);
        cut.committed();
        assert!(!cut.before_event(None, at(3)), "the table holds a document looked up at 5");
        cut.add(None, at(3), None);
        assert!(cut.before_event(None, at(6)));
    }
}
