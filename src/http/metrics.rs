//! `GET /metrics`: the syncs' status as Prometheus metrics (OpenMetrics text), read from the
//! status registry at each scrape, plus the process's resident memory, start time and build.

use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::sync::status::{COMMIT_BUCKETS, Registry, SyncPhase, SyncStatus};

/// Every phase a sync can be in, for `misql_sync_phase`.
const PHASES: [SyncPhase; 9] = [
    SyncPhase::Starting,
    SyncPhase::Copying,
    SyncPhase::Streaming,
    SyncPhase::Retrying,
    SyncPhase::Failed,
    SyncPhase::Stopped,
    SyncPhase::Standby,
    SyncPhase::Dropped,
    SyncPhase::Copied,
];

/// A counter per sync: name (without `_total`), help, value.
type CounterOf = (&'static str, &'static str, fn(&SyncStatus) -> u64);

/// A gauge per sync: name, help, value at a time.
type GaugeOf = (&'static str, &'static str, fn(&SyncStatus, SystemTime) -> f64);

const COUNTERS: [CounterOf; 12] = [
    ("misql_sync_rows_copied", "Rows copied by the snapshot.", |s| s.rows_copied),
    ("misql_sync_events_applied", "Change events applied.", |s| s.events_applied),
    ("misql_sync_transactions", "MongoDB transactions applied.", |s| s.transactions),
    (
        "misql_sync_transactions_split",
        "Transactions larger than max_transaction_rows, committed in parts.",
        |s| s.transactions_split,
    ),
    ("misql_sync_commits", "Commits to the target table.", |s| s.commits),
    ("misql_sync_rows_skipped", "Documents left out (on_error = 'skip').", |s| s.rows_skipped),
    ("misql_sync_dead_letters", "Documents written to the dead-letter table.", |s| s.dead_letters),
    ("misql_sync_retries", "Retries after transient errors and other writers' commits.", |s| {
        s.retries
    }),
    ("misql_sync_errors", "Errors met (retried or final).", |s| s.errors),
    ("misql_sync_recopies", "Copies of the collection made again (history lost, REFRESH).", |s| {
        s.recopies
    }),
    ("misql_sync_compactions", "Compactions the sync committed to its own table.", |s| {
        s.compactions
    }),
    (
        "misql_sync_maintenance_errors",
        "Maintenance steps (compaction, expiry, orphan sweep) that failed; each is tried again later.",
        |s| s.maintenance_errors,
    ),
];

/// The collector registered for `/metrics`.
#[derive(Debug)]
pub struct SyncMetrics {
    registry: Registry,
    started: SystemTime,
}

impl SyncMetrics {
    /// Metrics of the syncs in `registry`, for a process started at `started`.
    pub fn new(registry: Registry, started: SystemTime) -> Self {
        Self { registry, started }
    }
}

impl Collector for SyncMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let syncs = self.registry.all();
        let now = SystemTime::now();
        let label = |name: &str| vec![("sync".to_string(), name.to_string())];

        let mut family = encoder.encode_descriptor(
            "misql_sync_phase",
            "1 for the sync's current phase.",
            None,
            MetricType::Gauge,
        )?;
        for (name, status) in &syncs {
            for phase in PHASES {
                let labels = vec![
                    ("sync".to_string(), name.clone()),
                    ("phase".to_string(), phase.to_string()),
                ];
                let value = i64::from(status.phase == phase);
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        for (metric, help, value) in COUNTERS {
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for (name, status) in &syncs {
                ConstCounter::new(value(status)).encode(family.encode_family(&label(name))?)?;
            }
        }
        for (metric, help, value) in GAUGES {
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Gauge)?;
            for (name, status) in &syncs {
                ConstGauge::new(value(status, now)).encode(family.encode_family(&label(name))?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "misql_sync_commit_duration_seconds",
            "How long commits to the target table took.",
            None,
            MetricType::Histogram,
        )?;
        for (name, status) in &syncs {
            let h = &status.commit_seconds;
            let bounds = COMMIT_BUCKETS.iter().copied().chain([f64::INFINITY]);
            let buckets: Vec<(f64, u64)> = bounds.zip(h.counts.iter().copied()).collect();
            family
                .encode_family(&label(name))?
                .encode_histogram::<Vec<(String, String)>>(h.sum, h.count, &buckets, None)?;
        }
        encode_process(&mut encoder, self.started)
    }
}

/// The gauges per sync: each reads a status at a time.
const GAUGES: [GaugeOf; 9] = [
    (
        "misql_sync_lag_seconds",
        "Now minus the cluster time of the oldest change not committed (or since the stream was \
         last read idle); 0 when caught up.",
        |s, now| s.lag(now).as_secs_f64(),
    ),
    (
        "misql_sync_last_event_age_seconds",
        "Seconds since the last change was applied (-1 before the first).",
        |s, now| s.last_event_age(now).map_or(-1.0, |age| age.as_secs_f64()),
    ),
    (
        "misql_sync_valid_through_timestamp_seconds",
        "The cluster time (Unix seconds) the table is exact at as of its last exact commit; 0 before one.",
        |s, _| {
            let since = s.valid_through.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
            since.map_or(0.0, |d| d.as_secs_f64())
        },
    ),
    (
        "misql_sync_largest_transaction_rows",
        "The most changes one MongoDB transaction made.",
        |s, _| s.largest_transaction as f64,
    ),
    ("misql_sync_key_index_bytes", "Estimated heap size of the key index.", |s, _| {
        s.key_index_bytes as f64
    }),
    (
        "misql_sync_source_history_seconds",
        "The change history the source keeps (its oplog's oldest to newest entry); -1 \
         when it cannot be read.",
        |s, _| s.history_window.map_or(-1.0, |w| w.as_secs_f64()),
    ),
    (
        "misql_sync_history_margin_seconds",
        "The source's change history minus the sync's lag: how much further behind it \
         may fall before it must copy again; -1 when unknown.",
        |s, now| s.history_margin(now).map_or(-1.0, |m| m.as_secs_f64()),
    ),
    (
        "misql_sync_copy_keys_remembered",
        "Keys changed during a copy that it remembers (bounded by the writes during one \
         chunk's read).",
        |s, _| s.copy_keys_remembered as f64,
    ),
    (
        "misql_sync_snapshot_rows_estimated",
        "The collection's estimated document count when the snapshot started.",
        |s, _| s.snapshot_rows_estimated as f64,
    ),
];

/// Process metrics: resident memory, start time, build.
fn encode_process(
    encoder: &mut DescriptorEncoder,
    started: SystemTime,
) -> Result<(), std::fmt::Error> {
    if let Some(bytes) = resident_bytes() {
        let help = "Resident memory size in bytes.";
        let metric = encoder.encode_descriptor(
            "process_resident_memory_bytes",
            help,
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(bytes as f64).encode(metric)?;
    }
    let start = started.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let help = "Start time of the process since the Unix epoch in seconds.";
    let metric =
        encoder.encode_descriptor("process_start_time_seconds", help, None, MetricType::Gauge)?;
    ConstGauge::new(start.as_secs_f64()).encode(metric)?;
    let mut metric =
        encoder.encode_descriptor("misql_build", "misql's version.", None, MetricType::Info)?;
    metric.encode_info(&vec![("version".to_string(), env!("CARGO_PKG_VERSION").to_string())])
}

/// The resident set size, from `/proc/self/statm` (Linux; `None` elsewhere).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
