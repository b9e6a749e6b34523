//! Snapshot progress: a bar with rows, rows/s and ETA on a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Progress of one snapshot.
pub struct Progress {
    sync: String,
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    start_rows: u64,
    last_log: Instant,
}

impl Progress {
    /// Progress for `sync` over about `total` documents, `done` of them copied before.
    pub fn new(sync: &str, total: u64, done: u64) -> Self {
        let bar = (std::io::stderr().is_terminal() && !crate::logging::in_shell()).then(|| {
            let bar = ProgressBar::new(total.max(done));
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {human_pos}/{human_len} rows {per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(format!("sync {sync}"));
            bar.set_position(done);
            bar
        });
        let now = Instant::now();
        Self { sync: sync.to_string(), bar, total, started: now, start_rows: done, last_log: now }
    }

    /// `rows` are copied so far.
    pub fn set(&mut self, rows: u64) {
        match &self.bar {
            Some(bar) => {
                if rows > bar.length().unwrap_or(0) {
                    bar.set_length(rows);
                }
                bar.set_position(rows);
            }
            None if self.last_log.elapsed() >= LOG_EVERY && !crate::logging::in_shell() => {
                self.last_log = Instant::now();
                tracing::info!(
                    "sync {}: {rows} of about {} rows copied ({:.0} rows/s)",
                    self.sync,
                    self.total,
                    self.rate(rows)
                );
            }
            None => {}
        }
    }

    /// The snapshot is complete with `rows` copied.
    pub fn finish(&self, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::info!(
            "sync {}: snapshot complete, {rows} rows ({:.0} rows/s)",
            self.sync,
            self.rate(rows)
        );
    }

    fn rate(&self, rows: u64) -> f64 {
        (rows - self.start_rows.min(rows)) as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }
}
