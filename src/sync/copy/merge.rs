//! The merge rule of a copy beside the stream. A chunk read at cluster time Tc goes into the
//! table only once the stream has handed over every change up to Tc; then each of its rows is
//! upserted unless the stream changed its key after Tc (insert, update, replace or delete): the
//! stream's version is newer. A delete of a key not in the table yet is remembered the same
//! way, so a chunk read before the delete cannot bring the document back.

use std::collections::HashMap;
use std::time::Instant;

use bson::Timestamp;

use crate::mongo::chunk::ReadAt;

/// A cluster time as one ordered number.
fn order(time: Timestamp) -> u64 {
    (u64::from(time.time) << 32) | u64::from(time.increment)
}

/// How far the stream has handed over changes.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamPosition {
    /// The cluster time of the latest change read.
    latest: Option<u64>,
    /// When the latest empty answer was asked for.
    idle_asked: Option<Instant>,
    /// No stream is followed: every read has been passed.
    finished: bool,
}

impl StreamPosition {
    /// The position of a sync that follows no stream: past every read.
    pub fn finished() -> Self {
        Self { finished: true, ..Self::default() }
    }

    /// A change at `time` was read.
    pub fn read_change(&mut self, time: Option<Timestamp>) {
        if let Some(time) = time {
            self.latest = self.latest.max(Some(order(time)));
        }
    }

    /// An empty answer asked for at `asked` was read.
    pub fn read_idle(&mut self, asked: Instant) {
        self.idle_asked = self.idle_asked.max(Some(asked));
    }

    /// Whether every change up to `at.until` has been read: a later change was read, or an
    /// empty answer asked for after `until` was known.
    pub fn passed(&self, at: &ReadAt) -> bool {
        self.finished
            || self.latest.is_some_and(|latest| latest > order(at.until))
            || self.idle_asked.is_some_and(|asked| asked > at.known)
    }

    /// The cluster time of the latest change read.
    pub fn latest(&self) -> Option<u64> {
        self.latest
    }
}

/// The keys the stream changed while a copy runs, each with the time of its latest change.
#[derive(Debug, Default)]
pub struct ChangedKeys {
    /// `{_id: value}` as BSON bytes → cluster time of the latest change.
    times: HashMap<Vec<u8>, u64>,
}

impl ChangedKeys {
    /// The key `id` (`{_id: value}` as BSON bytes) changed at `time` (unknown: now, which keeps
    /// it out of every chunk read so far).
    pub fn changed(&mut self, id: Vec<u8>, time: Option<Timestamp>) {
        let time = time.map_or(u64::MAX, order);
        let entry = self.times.entry(id).or_insert(time);
        *entry = (*entry).max(time);
    }

    /// Whether the row of `id` read at `at` is older than a change the stream made.
    pub fn newer_than(&self, id: &[u8], at: &ReadAt) -> bool {
        self.times.get(id).is_some_and(|&time| time > order(at.since))
    }

    /// Forgets the changes at or before `floor` (no chunk still to merge was read before it).
    pub fn forget_until(&mut self, floor: u64) {
        self.times.retain(|_, time| *time > floor);
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

/// `time` as the number [`ChangedKeys::forget_until`] takes.
pub fn floor_of(time: Timestamp) -> u64 {
    order(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(time: u32, increment: u32) -> Timestamp {
        Timestamp { time, increment }
    }

    fn at(since: Timestamp, until: Timestamp) -> ReadAt {
        ReadAt { since, until, known: Instant::now() }
    }

    #[test]
    fn a_row_is_left_to_the_stream_only_when_its_key_changed_after_the_read() {
        let mut changed = ChangedKeys::default();
        changed.changed(b"a".to_vec(), Some(ts(10, 1)));
        changed.changed(b"b".to_vec(), Some(ts(10, 3)));
        let read = at(ts(10, 2), ts(10, 2));
        assert!(!changed.newer_than(b"a", &read), "a change before the read is in the row");
        assert!(changed.newer_than(b"b", &read), "a change after the read is newer");
        assert!(!changed.newer_than(b"c", &read), "an unchanged key takes the row");
    }

    #[test]
    fn a_key_keeps_its_latest_change_and_an_unknown_time_is_newest() {
        let mut changed = ChangedKeys::default();
        changed.changed(b"a".to_vec(), Some(ts(12, 0)));
        changed.changed(b"a".to_vec(), Some(ts(11, 0)));
        assert!(changed.newer_than(b"a", &at(ts(11, 5), ts(11, 5))));
        changed.changed(b"x".to_vec(), None);
        assert!(changed.newer_than(b"x", &at(ts(99, 0), ts(99, 0))));
    }

    #[test]
    fn forgetting_keeps_only_changes_after_the_floor() {
        let mut changed = ChangedKeys::default();
        changed.changed(b"a".to_vec(), Some(ts(5, 0)));
        changed.changed(b"b".to_vec(), Some(ts(7, 0)));
        changed.forget_until(floor_of(ts(5, 0)));
        assert_eq!(changed.len(), 1);
        assert!(changed.newer_than(b"b", &at(ts(6, 0), ts(6, 0))));
    }

    #[test]
    fn the_stream_passes_a_read_with_a_later_change_or_a_later_empty_answer() {
        let asked_before = Instant::now();
        let read = at(ts(20, 0), ts(20, 4));
        let mut position = StreamPosition::default();
        position.read_idle(asked_before);
        assert!(!position.passed(&read), "an empty answer asked for before the read");
        position.read_change(Some(ts(20, 4)));
        assert!(!position.passed(&read), "a change at the read time may have siblings");
        position.read_change(Some(ts(20, 5)));
        assert!(position.passed(&read));
        let mut idle = StreamPosition::default();
        std::thread::sleep(std::time::Duration::from_millis(1));
        idle.read_idle(Instant::now());
        assert!(idle.passed(&read), "an empty answer asked for after the read");
    }
}
