//! Log output: plain lines (the default) or one JSON object per line (`--log-format json`), on
//! stderr, filtered by `RUST_LOG`. In JSON every line a sync logs carries its name (`"sync"`).

use std::io::Write;
use std::sync::Mutex;
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

/// Set while the interactive shell runs: snapshot progress is shown on demand (`\\progress`)
/// instead of as a bar drawn over the prompt.
static IN_SHELL: AtomicBool = AtomicBool::new(false);

/// Log lines held while the shell reads a line that is not empty (`None` when the shell does
/// not read). rustyline 17's external printer would print them above the prompt, but with it
/// installed the editor stops taking keys that arrive together (its `select` ignores what it
/// has buffered), so they wait here until the line is entered. While the line is empty they
/// are printed at once, followed by the prompt again.
static HELD: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Whether the line the shell reads has text in it (see [`line_typed`]).
static TYPING: AtomicBool = AtomicBool::new(false);

/// The shell's prompt, printed again after a log line shown while the line is empty.
pub const PROMPT: &str = "misql> ";

/// At most this many log lines are held; older ones are dropped (and counted).
const MAX_HELD: usize = 1000;

/// Installs the global subscriber.
pub fn init(format: LogFormat, ansi: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "misql=info,warn".into());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| LogWriter(Vec::new()));
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

/// The shell starts: no progress bars from now on.
pub fn enter_shell() {
    IN_SHELL.store(true, Ordering::Relaxed);
}

/// The shell reads a line: log lines are held (while the line has text) until
/// [`release_logs`].
pub fn hold_logs() {
    TYPING.store(false, Ordering::Relaxed);
    HELD.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Vec::new);
}

/// The line being read has text in it (`true`) or is empty again.
pub fn line_typed(typing: bool) {
    TYPING.store(typing, Ordering::Relaxed);
}

/// The line was entered: the held log lines go to stderr, and new ones go there at once.
pub fn release_logs() {
    let held = HELD.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
    let mut stderr = std::io::stderr().lock();
    for line in held {
        let _ = stderr.write_all(line.as_bytes());
    }
}

/// Whether the interactive shell runs (progress bars would be drawn over its prompt).
pub fn in_shell() -> bool {
    IN_SHELL.load(Ordering::Relaxed)
}

/// One log line, collected and written whole (or held) when dropped.
struct LogWriter(Vec<u8>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_some() && !TYPING.load(Ordering::Relaxed) {
            // Nothing typed: the line goes above a fresh prompt (the cursor stays after it,
            // where the editor expects it).
            // The terminal is in raw mode while the editor reads: a line feed needs its return.
            let text = String::from_utf8_lossy(&self.0).replace('\n', "\r\n");
            let _ = write!(std::io::stderr(), "\r\x1b[2K{text}{PROMPT}");
            return;
        }
        if let Some(held) = held.as_mut() {
            if held.len() >= MAX_HELD {
                let dropped = held.len() + 1 - MAX_HELD;
                held.drain(..dropped);
            }
            held.push(String::from_utf8_lossy(&self.0).into_owned());
            return;
        }
        drop(held);
        let _ = std::io::stderr().write_all(&self.0);
    }
}
