//! SHOW SYNCS (one short row per sync) and SHOW SYNC STATUS (everything known about each).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};

use super::unknown_sync;
use crate::Result;
use crate::exec::show::rows;
use crate::exec::{Output, Session};
use crate::sync::status::SyncStatus;

impl Session {
    /// SHOW SYNCS: one short row per sync, to fit 100 columns (every detail is in SHOW SYNC
    /// STATUS).
    pub(in crate::exec) fn show_syncs(&self) -> Result<Output> {
        let mut all = self.registry.all();
        // A database sync's row counts what its collections' syncs (`name/collection`) did.
        let members: Vec<(String, u64, u64)> = all
            .iter()
            .filter_map(|(n, s)| {
                Some((n.split_once('/')?.0.to_string(), s.rows_copied, s.events_applied))
            })
            .collect();
        for (parent, rows, events) in members {
            if let Some(status) = all.get_mut(&parent) {
                status.rows_copied += rows;
                status.events_applied += events;
            }
        }
        let now = std::time::SystemTime::now();
        let text = |f: &dyn Fn(&SyncStatus) -> String| {
            Arc::new(StringArray::from(all.values().map(f).collect::<Vec<_>>())) as ArrayRef
        };
        let count = |f: &dyn Fn(&SyncStatus) -> u64| {
            Arc::new(UInt64Array::from(all.values().map(f).collect::<Vec<_>>())) as ArrayRef
        };
        let names = all.keys().cloned().collect::<Vec<_>>();
        rows(RecordBatch::try_from_iter([
            ("name", Arc::new(StringArray::from(names)) as ArrayRef),
            ("phase", text(&|s| s.phase.to_string())),
            ("rows", count(&|s| s.rows_copied)),
            ("events", count(&|s| s.events_applied)),
            ("lag", text(&|s| format!("{}s", s.lag(now).as_secs()))),
            ("last_commit", text(&|s| s.last_commit.map(clock_time).unwrap_or_default())),
            ("error", text(&|s| shortened(s.last_error.as_deref().unwrap_or_default(), 32))),
        ])?)
    }

    /// SHOW SYNC STATUS [name]: everything known about one sync (or each), one record per
    /// sync, shown one field per line.
    pub(in crate::exec) fn show_sync_status(&self, name: Option<&str>) -> Result<Output> {
        let all = self.registry.all();
        if let Some(name) = name.filter(|n| !all.contains_key(*n)) {
            return Err(unknown_sync(name));
        }
        let selected: Vec<_> =
            all.iter().filter(|(n, _)| name.is_none_or(|w| w == n.as_str())).collect();
        let now = std::time::SystemTime::now();
        let text = |f: &dyn Fn(&SyncStatus) -> String| {
            Arc::new(StringArray::from(selected.iter().map(|(_, s)| f(s)).collect::<Vec<_>>()))
                as ArrayRef
        };
        let count = |f: &dyn Fn(&SyncStatus) -> u64| {
            Arc::new(UInt64Array::from(selected.iter().map(|(_, s)| f(s)).collect::<Vec<_>>()))
                as ArrayRef
        };
        let names = Arc::new(StringArray::from(
            selected.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>(),
        )) as ArrayRef;
        let batch = RecordBatch::try_from_iter([
            ("name", names),
            ("phase", text(&|s| s.phase.to_string())),
            ("source", text(&|s| s.source.clone())),
            ("target", text(&|s| s.target.clone())),
            ("rows_copied", count(&|s| s.rows_copied)),
            ("events_applied", count(&|s| s.events_applied)),
            ("transactions", count(&|s| s.transactions)),
            ("largest_transaction", count(&|s| s.largest_transaction)),
            ("transactions_split", count(&|s| s.transactions_split)),
            ("valid_through", text(&|s| s.valid_through.map(format_time).unwrap_or_default())),
            ("rows_skipped", count(&|s| s.rows_skipped)),
            ("dead_letters", count(&|s| s.dead_letters)),
            ("schema_changes", count(&|s| s.schema_changes)),
            ("values_stringified", count(&|s| s.values_stringified)),
            ("last_schema_change", text(&|s| s.last_schema_change.clone().unwrap_or_default())),
            ("commits", count(&|s| s.commits)),
            ("last_commit", text(&|s| s.last_commit.map(format_time).unwrap_or_default())),
            ("retries", count(&|s| s.retries)),
            ("lag_seconds", count(&|s| s.lag(now).as_secs())),
            (
                "last_event_age_seconds",
                text(&|s| {
                    s.last_event_age(now).map(|a| a.as_secs().to_string()).unwrap_or_default()
                }),
            ),
            ("last_error", text(&|s| s.last_error.clone().unwrap_or_default())),
            ("compactions", count(&|s| s.compactions)),
            ("snapshots_expired", count(&|s| s.snapshots_expired)),
            ("maintenance_errors", count(&|s| s.maintenance_errors)),
            ("last_maintenance", text(&|s| s.last_maintenance.clone().unwrap_or_default())),
        ])?;
        let Output::Rows(stream) = rows(batch)? else { unreachable!("rows gives rows") };
        Ok(Output::Record(stream))
    }
}

/// The time of day of `time` (UTC), for the short SHOW SYNCS.
fn clock_time(time: std::time::SystemTime) -> String {
    utc(time, "%H:%M:%S")
}

/// `text` cut to `max` characters, an ellipsis marking the cut.
fn shortened(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max && line.len() == text.len() {
        return text.to_string();
    }
    let cut: String = line.chars().take(max - 1).collect();
    format!("{cut}…")
}

fn format_time(time: std::time::SystemTime) -> String {
    utc(time, "%Y-%m-%d %H:%M:%S UTC")
}

/// `time` in UTC as `pattern` (chrono's format) has it.
fn utc(time: std::time::SystemTime, pattern: &str) -> String {
    let secs = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    arrow::temporal_conversions::timestamp_s_to_datetime(secs)
        .map(|t| t.format(pattern).to_string())
        .unwrap_or_default()
}
