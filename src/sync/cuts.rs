//! Consistent cuts of the tables syncs keep, found from their snapshot summaries alone (so any
//! engine can find them the same way; docs/transactions.md says how):
//!
//! - a snapshot whose summary has `misql.valid-through` V holds exactly what MongoDB held at
//!   cluster time V (every change up to V, none after, no part of a transaction);
//! - it stays so until just before the `misql.first-change-time` of the next snapshot that has
//!   one (compactions, `replace` snapshots, change no row); while there is none, it is known to
//!   be exact at V only.
//!
//! Tables of one MongoDB deployment share cluster time, so snapshots of several tables that
//! are exact at the same time T show one state of the deployment: no transaction across them
//! is seen in part.

use std::collections::HashMap;

use bson::Timestamp;
use iceberg::spec::Operation;
use iceberg::table::Table;

use super::checkpoint::{FIRST_CHANGE, VALID_THROUGH};

/// A snapshot exact from a cluster time until just before another (or at `from` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The snapshot.
    pub snapshot_id: i64,
    /// Its `misql.valid-through` time.
    pub from: Timestamp,
    /// The first change after it, when one is committed.
    pub until: Option<Timestamp>,
}

impl Span {
    /// Whether the snapshot is known to be exact at `time`.
    fn holds_at(&self, time: Timestamp) -> bool {
        self.from <= time && self.until.map_or(time == self.from, |until| time < until)
    }
}

/// The spans of `table`'s snapshots that are exact, oldest first.
pub fn spans(table: &Table) -> Vec<Span> {
    let mut snapshots: Vec<_> = table.metadata().snapshots().collect();
    snapshots.sort_by_key(|s| s.sequence_number());
    let time_of = |props: &HashMap<String, String>, key: &str| {
        let (seconds, increment) = props.get(key)?.split_once(',')?;
        Some(Timestamp { time: seconds.parse().ok()?, increment: increment.parse().ok()? })
    };
    let mut spans = Vec::new();
    for (i, snapshot) in snapshots.iter().enumerate() {
        let props = &snapshot.summary().additional_properties;
        let Some(from) = time_of(props, VALID_THROUGH) else { continue };
        let until = snapshots[i + 1..]
            .iter()
            .filter(|s| s.summary().operation != Operation::Replace)
            .find_map(|s| time_of(&s.summary().additional_properties, FIRST_CHANGE));
        spans.push(Span { snapshot_id: snapshot.snapshot_id(), from, until });
    }
    spans
}

/// The newest time at which every table (its spans each) has an exact snapshot, and those
/// snapshots in the order of the tables; `None` when there is none.
pub fn newest_common(tables: &[Vec<Span>]) -> Option<(Timestamp, Vec<i64>)> {
    let mut times: Vec<Timestamp> = tables.iter().flatten().map(|s| s.from).collect();
    times.sort();
    times.dedup();
    times.into_iter().rev().find_map(|time| {
        let chosen: Option<Vec<i64>> = tables
            .iter()
            .map(|spans| spans.iter().rev().find(|s| s.holds_at(time)).map(|s| s.snapshot_id))
            .collect();
        Some((time, chosen?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: u32) -> Timestamp {
        Timestamp { time, increment: 0 }
    }

    fn span(snapshot_id: i64, from: u32, until: Option<u32>) -> Span {
        Span { snapshot_id, from: at(from), until: until.map(at) }
    }

    #[test]
    fn one_table_is_read_at_its_newest_exact_snapshot() {
        let spans = vec![span(1, 10, Some(12)), span(2, 15, None)];
        assert_eq!(newest_common(&[spans]), Some((at(15), vec![2])));
    }

    #[test]
    fn a_quiet_table_holds_until_its_next_change() {
        let busy = vec![span(1, 10, Some(11)), span(2, 12, Some(13)), span(3, 14, None)];
        let quiet = vec![span(7, 9, Some(13)), span(8, 13, None)];
        // At 14 the quiet table's newest snapshot is exact at 13 only; at 12 both hold.
        assert_eq!(newest_common(&[busy, quiet]), Some((at(12), vec![2, 7])));
    }

    #[test]
    fn no_common_time_is_none() {
        let a = vec![span(1, 10, Some(11))];
        let b = vec![span(2, 12, None)];
        assert_eq!(newest_common(&[a, b]), None);
        assert_eq!(newest_common(&[vec![span(1, 10, None)], vec![]]), None);
    }
}
