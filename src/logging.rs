//! Log output: plain lines (the default) or one JSON object per line (`--log-format json`), on
//! stderr, filtered by `RUST_LOG`. In JSON every line a sync logs carries its name (`"sync"`).

use std::sync::atomic::{AtomicBool, Ordering};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-… INFO misql::sync: sync orders: …`
    #[default]
    Plain,
    /// `{"timestamp": …, "level": "INFO", "fields": {"message": …}, "sync": "orders", …}`
    Json,
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber.
pub fn init(format: LogFormat, ansi: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "misql=info,warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.with_ansi(ansi).init(),
        LogFormat::Json => {
            JSON.store(true, Ordering::Relaxed);
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init();
        }
    }
}

/// The span a sync's work runs in: in JSON logs it names the sync on every line (`"span":
/// {"sync": …}`); plain lines, which say `sync <name>:` themselves, stay as they are.
pub fn sync_span(name: &str) -> tracing::Span {
    if JSON.load(Ordering::Relaxed) {
        tracing::info_span!("sync", sync = %name)
    } else {
        tracing::Span::none()
    }
}
