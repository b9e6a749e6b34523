//! Where a collection of a database sync reads its change events: its share of the database's
//! one change stream ([`super::database::router::Router`]), from a position in it.

use std::sync::{Arc, Mutex};

use bson::{RawDocumentBuf, Timestamp};

use super::database::router::Router;
use crate::mongo::change_stream::Reader;

/// A position in the database's change stream: a resume token, and the cluster time at or
/// before it (`None`: unknown, the oldest there is). Positions are ordered by that time.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// The resume token.
    pub token: RawDocumentBuf,
    /// The cluster time at or before the token.
    pub time: Option<Timestamp>,
}

impl Position {
    /// Whether `self` comes before `other` (an unknown time comes first).
    pub fn before(&self, other: &Position) -> bool {
        match (self.time, other.time) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => (a.time, a.increment) < (b.time, b.increment),
            _ => false,
        }
    }
}

/// A collection's share of the database stream.
pub struct Feed {
    router: Arc<Router>,
    collection: String,
    /// Where the collection's stream starts when its table has no checkpoint.
    pub start: Position,
    /// The events routed to the collection since `start`, taken by the first stream phase.
    first: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<crate::mongo::change_stream::Read>>>,
}

impl Feed {
    /// The feed of `collection`, whose events since `start` arrive on `events`.
    pub fn new(
        router: Arc<Router>,
        collection: &str,
        start: Position,
        events: tokio::sync::mpsc::UnboundedReceiver<crate::mongo::change_stream::Read>,
    ) -> Self {
        Self { router, collection: collection.to_string(), start, first: Mutex::new(Some(events)) }
    }

    /// The group commit of the database's tables, if they commit together.
    pub fn group(&self) -> Option<&Arc<super::database::group::Group>> {
        self.router.group()
    }

    /// Where the database stream has got to (its start when not opened yet): a re-copy follows
    /// the stream from there.
    pub fn now(&self) -> Position {
        self.router.position().unwrap_or_else(|| self.start.clone())
    }

    /// The events after `from` (the sync's checkpoint): the ones routed since the start, the
    /// first time; after that (a retry), the router goes back to `from` if it is past it.
    pub fn reader(&self, from: Position) -> Reader {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        let events = match first {
            Some(events) => events,
            None => self.router.subscribe(&self.collection, Some(from)),
        };
        Reader::from_channel(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: Option<(u32, u32)>) -> Position {
        let time = time.map(|(time, increment)| Timestamp { time, increment });
        Position { token: RawDocumentBuf::new(), time }
    }

    #[test]
    fn positions_are_ordered_by_their_cluster_time_an_unknown_one_first() {
        assert!(at(Some((5, 1))).before(&at(Some((5, 2)))));
        assert!(at(Some((5, 9))).before(&at(Some((6, 0)))));
        assert!(!at(Some((6, 0))).before(&at(Some((5, 9)))));
        assert!(!at(Some((5, 1))).before(&at(Some((5, 1)))), "not before itself");
        assert!(at(None).before(&at(Some((0, 1)))));
        assert!(!at(Some((0, 1))).before(&at(None)));
        assert!(!at(None).before(&at(None)));
    }
}
