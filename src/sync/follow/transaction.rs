//! MongoDB transactions in the change stream: the events of one multi-document transaction
//! carry the same session (`lsid`) and `txnNumber` (and one cluster time), and come one after
//! another. A batch must not end between two of them, or a reader of the table between two
//! commits would see half of the transaction. [`Transactions`] tells where a transaction is
//! open, where it ends, and when one grows past the bound it may be held whole up to.
//!
//! A transaction ends at the first read that is not part of it: an event of another
//! transaction or of none, an idle answer (the server hands over a transaction's events
//! together, so the stream cannot be idle in the middle of one), or a database stream that has
//! passed a later cluster time.

use bson::{Document, Timestamp};

use crate::mongo::change_stream::Event;

/// One transaction: its session and its number in that session.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionId {
    lsid: Document,
    number: i64,
}

impl TransactionId {
    /// The transaction `event` belongs to, if any.
    pub fn of(event: &Event) -> Option<Self> {
        Self::new(event.lsid.clone()?, event.txn_number?)
    }

    /// Transaction `number` of session `lsid`.
    pub fn new(lsid: Document, number: i64) -> Option<Self> {
        Some(Self { lsid, number })
    }
}

impl std::fmt::Display for TransactionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let session = match self.lsid.get("id") {
            Some(bson::Bson::Binary(binary)) => {
                binary.bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            }
            Some(other) => other.to_string(),
            None => self.lsid.to_string(),
        };
        write!(f, "txnNumber {} of session {session}", self.number)
    }
}

/// The transaction being read.
#[derive(Debug)]
struct Open {
    id: TransactionId,
    time: Option<Timestamp>,
    /// Its events in all.
    total: usize,
    /// It was committed in parts.
    split: bool,
}

/// Transactions read from one stream.
#[derive(Debug, Default)]
pub struct Transactions {
    open: Option<Open>,
    /// Transactions that ended since the counts were last taken.
    ended: u64,
    /// Transactions committed in parts since the counts were last taken.
    split: u64,
    /// The most events one ended transaction had, since the counts were last taken.
    largest: usize,
}

/// What [`Transactions`] counted since they were last taken.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Transactions that ended.
    pub ended: u64,
    /// Transactions committed in parts.
    pub split: u64,
    /// The most events in one of them.
    pub largest: usize,
}

impl Transactions {
    /// Whether a transaction is open: the batch may not end here.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Ends the open transaction when an event of transaction `id` (`None`: of none) is not
    /// part of it; returns true when it did.
    pub fn ends_at(&mut self, id: Option<&TransactionId>) -> bool {
        let ends = self.open.as_ref().is_some_and(|open| id != Some(&open.id));
        if ends {
            self.end();
        }
        ends
    }

    /// Notes an event of transaction `id` (`None`: of none) at `time`, after [`Self::ends_at`].
    pub fn note(&mut self, id: Option<TransactionId>, time: Option<Timestamp>) {
        if let Some(id) = id {
            let open = self.open.get_or_insert(Open { id, time, total: 0, split: false });
            open.total += 1;
        }
    }

    /// The stream is idle: every transaction read so far is whole.
    pub fn idle(&mut self) {
        self.end();
    }

    /// A database stream handed over everything up to `time`: a transaction before it is whole.
    pub fn passed(&mut self, time: Timestamp) {
        if self.open.as_ref().is_some_and(|open| open.time.is_some_and(|t| t < time)) {
            self.end();
        }
    }

    /// The open transaction, marked as committed in parts (counted once), and its events so far.
    pub fn split(&mut self) -> Option<(TransactionId, usize)> {
        let open = self.open.as_mut()?;
        if !open.split {
            self.split += 1;
        }
        open.split = true;
        Some((open.id.clone(), open.total))
    }

    /// Takes the counts since the last call.
    pub fn take_counts(&mut self) -> Counts {
        let counts = Counts { ended: self.ended, split: self.split, largest: self.largest };
        (self.ended, self.split, self.largest) = (0, 0, 0);
        counts
    }

    fn end(&mut self) {
        if let Some(open) = self.open.take() {
            self.ended += 1;
            self.largest = self.largest.max(open.total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(session: i32, number: i64) -> Option<TransactionId> {
        Some(TransactionId { lsid: bson::doc! { "id": session }, number })
    }

    fn at(increment: u32) -> Option<Timestamp> {
        Some(Timestamp { time: 100, increment })
    }

    impl Transactions {
        fn event(&mut self, id: Option<TransactionId>, time: Option<Timestamp>) -> bool {
            let ends = self.ends_at(id.as_ref());
            self.note(id, time);
            ends
        }
    }

    #[test]
    fn a_transaction_is_open_until_an_event_outside_it() {
        let mut t = Transactions::default();
        assert!(!t.event(None, at(1)));
        assert!(!t.is_open());
        assert!(!t.event(txn(1, 1), at(2)));
        assert!(!t.event(txn(1, 1), at(2)));
        assert!(t.is_open());
        assert!(t.event(txn(1, 2), at(3)), "the next transaction of the session ends it");
        assert!(t.is_open());
        assert!(t.event(None, at(4)));
        assert!(!t.is_open());
        assert_eq!(t.take_counts(), Counts { ended: 2, split: 0, largest: 2 });
        assert_eq!(t.take_counts(), Counts::default());
    }

    #[test]
    fn another_session_with_the_same_number_is_another_transaction() {
        let mut t = Transactions::default();
        t.event(txn(1, 7), at(1));
        assert!(t.event(txn(2, 7), at(2)));
    }

    #[test]
    fn idle_ends_it_and_a_database_stream_ends_it_past_its_time() {
        let mut t = Transactions::default();
        t.event(txn(1, 1), at(5));
        t.passed(Timestamp { time: 100, increment: 5 });
        assert!(t.is_open(), "other events at the same cluster time may still come");
        t.passed(Timestamp { time: 100, increment: 6 });
        assert!(!t.is_open());
        t.event(txn(1, 2), at(7));
        t.idle();
        assert!(!t.is_open());
        assert_eq!(t.take_counts().ended, 2);
    }

    #[test]
    fn a_split_transaction_is_counted_once() {
        let mut t = Transactions::default();
        assert_eq!(t.split(), None);
        for _ in 0..4 {
            t.event(txn(1, 1), at(1));
        }
        assert_eq!(t.split().map(|(_, total)| total), Some(4));
        t.event(txn(1, 1), at(1));
        assert_eq!(t.split().map(|(_, total)| total), Some(5));
        t.idle();
        assert_eq!(t.take_counts(), Counts { ended: 1, split: 1, largest: 5 });
    }

    #[test]
    fn names_the_session_and_number() {
        let id = TransactionId {
            lsid: bson::doc! { "id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![0xab, 0x01] } },
            number: 3,
        };
        assert_eq!(id.to_string(), "txnNumber 3 of session ab01");
    }
}
