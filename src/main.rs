//! The `misql` command: the REPL, `-f FILE`, `-e SQL`, or statements piped on stdin.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use misql::exec::{DEFAULT_MONGODB_URI, DEFAULT_WAREHOUSE, Mode, Session};
use misql::logging::LogFormat;
use misql::output::Format;
use misql::script::{self, Origin};

/// Keep Apache Iceberg tables in sync with MongoDB collections, one SQL statement per sync.
///
/// With no -f or -e, misql opens an interactive shell on a terminal, or runs the statements
/// piped on standard input. Errors go to stderr as `error: <what> at line L, column C`; the
/// exit status is non-zero when any statement fails.
#[derive(Debug, Parser)]
#[command(name = "misql", version, after_help = AFTER_HELP)]
struct Args {
    /// Run the statements in FILE (repeatable; files run in order).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<String>,

    /// Run the SQL statement(s) given inline (repeatable; after the files).
    #[arg(short = 'e', long = "execute", value_name = "SQL")]
    statements: Vec<String>,

    /// Output format for result rows.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,

    /// Run every CREATE SYNC until its collection is copied and every change made before the
    /// run began is applied, then exit (instead of running as a daemon).
    #[arg(long)]
    once: bool,

    /// Compare the table of every CREATE SYNC in the files (or of each SYNC named) with its
    /// collection, without starting anything; exit 0 when all are equal, 1 when any differs.
    #[arg(long, conflicts_with = "once")]
    check: bool,

    /// With --check: the syncs to check (all when none is named).
    #[arg(value_name = "SYNC", requires = "check")]
    syncs: Vec<String>,

    /// Warehouse directory of the embedded Iceberg catalog attached as `iceberg`.
    #[arg(long, env = "MISQL_WAREHOUSE", default_value = DEFAULT_WAREHOUSE, value_name = "DIR")]
    warehouse: String,

    /// MongoDB deployment attached as `mongo` unless an ATTACH names it.
    #[arg(long, env = "MONGODB_URI", default_value = DEFAULT_MONGODB_URI, value_name = "URI")]
    mongodb_uri: String,

    /// On SIGTERM or Ctrl-C, how long the syncs get to commit what they have read (`10s`,
    /// `500ms`, `1m`); past it misql exits non-zero without committing (the checkpoints make
    /// that safe). A second signal exits at once.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    shutdown_timeout: Duration,

    /// Serve GET /metrics (Prometheus), /healthz and /readyz on ADDR, e.g. 0.0.0.0:9187
    /// (off by default).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,

    /// Allow control over --http (POST /syncs/NAME/stop, /start, /refresh) to requests that
    /// carry `Authorization: Bearer TOKEN`. Without a token, control is off.
    #[arg(long, env = "MISQL_HTTP_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    http_token: Option<String>,

    /// Like --http-token, the token read from FILE (e.g. a mounted secret).
    #[arg(long, value_name = "FILE", conflicts_with = "http_token")]
    http_token_file: Option<String>,

    /// Log lines on stderr: plain text, or one JSON object per line (each line of a sync names
    /// it). `RUST_LOG` filters them.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Plain)]
    log_format: LogFormatArg,
}

/// `--log-format`
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Plain,
    Json,
}

/// `10s`, `500ms`, `2m` or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number: u64 = text[..digits].parse().map_err(|_| format!("not a duration: {text}"))?;
    match text[digits..].trim() {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        unit => Err(format!("unknown unit `{unit}` in {text}: use ms, s or m")),
    }
}

const AFTER_HELP: &str = "\
Examples:
  misql -e \"SHOW COLLECTIONS FROM mongo.shop\"
  misql -e \"SELECT _id, total FROM mongo.shop.orders LIMIT 5\" --format csv
  misql -f syncs.sql              run syncs as a daemon
  misql --once -f syncs.sql       copy each sync's collection (and its changes so far), then exit
  echo \"DESCRIBE mongo.shop.orders;\" | misql

Environment:
  MONGODB_URI      the deployment attached as `mongo` (default mongodb://localhost:27017)
  MISQL_WAREHOUSE  the embedded Iceberg catalog attached as `iceberg` (default ./warehouse)
  RUST_LOG         log filter, e.g. misql=debug";

fn main() -> ExitCode {
    let args = Args::parse();
    let log_format = match args.log_format {
        LogFormatArg::Plain => LogFormat::Plain,
        LogFormatArg::Json => LogFormat::Json,
    };
    misql::logging::init(log_format, std::io::stderr().is_terminal());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut session = Session::new(&args.mongodb_uri, &args.warehouse);
    session.set_mode(if args.once { Mode::Once } else { Mode::Background });
    let control = match control_token(&args) {
        Ok(Some(token)) => Some(misql::http::control::Control::new(token)),
        Ok(None) => None,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let (control, requests) = control.map_or((None, None), |(c, r)| (Some(c), Some(r)));
    if let Some(addr) = &args.http
        && let Err(err) = runtime.block_on(misql::http::serve(addr, session.registry(), control))
    {
        eprintln!("error: {}", err.user_facing());
        return ExitCode::FAILURE;
    }
    if args.files.is_empty() && args.statements.is_empty() {
        if std::io::stdin().is_terminal() {
            return match misql::repl::run(&runtime, &mut session, args.format) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: the shell failed: {err}");
                    ExitCode::FAILURE
                }
            };
        }
        let mut text = String::new();
        if let Err(err) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("error: reading standard input: {err}");
            return ExitCode::FAILURE;
        }
        let stop = listen_for_stop(&runtime);
        return run_all(&runtime, &mut session, [(Origin::Stdin, text)], args.format, stop).0;
    }
    let mut sources = Vec::new();
    for path in &args.files {
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push((Origin::File(path.clone()), text)),
            Err(err) => {
                eprintln!("error: cannot read {path}: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    sources.extend(args.statements.iter().map(|s| (Origin::Inline, s.clone())));
    if args.check {
        return run_check(&runtime, &mut session, sources, &args);
    }
    let stop = listen_for_stop(&runtime);
    let (code, stopped) = run_all(&runtime, &mut session, sources, args.format, stop.clone());
    if stopped && args.once {
        return ExitCode::from(130);
    }
    if code != ExitCode::SUCCESS || args.once || !session.has_syncs() {
        return code;
    }
    run_daemon(&runtime, &mut session, &args, stop, requests)
}

/// `--check`: the files' syncs compared with their collections.
fn run_check(
    runtime: &tokio::runtime::Runtime,
    session: &mut Session,
    sources: Vec<(Origin, String)>,
    args: &Args,
) -> ExitCode {
    let text: String = sources.iter().map(|(_, text)| format!("{text}\n;\n")).collect();
    let origin = match sources.as_slice() {
        [(origin, _)] => origin.clone(),
        _ => Origin::Inline,
    };
    let mut stdout = std::io::stdout().lock();
    let checked = script::check(session, &text, &args.syncs, args.format, &mut stdout);
    match runtime.block_on(checked) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", script::render(&failure, &origin, &text));
            ExitCode::FAILURE
        }
    }
}

/// A stop signal (SIGTERM, SIGINT), once one came: its name.
type Stop = tokio::sync::watch::Receiver<Option<&'static str>>;

/// Listens for SIGTERM and SIGINT from the start (as PID 1 in a container, a signal without a
/// handler is ignored): the first is recorded in the returned [`Stop`]; the second exits at
/// once.
fn listen_for_stop(runtime: &tokio::runtime::Runtime) -> Stop {
    let (tx, rx) = tokio::sync::watch::channel(None);
    runtime.spawn(async move {
        let first = match stop_signal().await {
            Ok(signal) => signal,
            Err(err) => {
                tracing::warn!("cannot listen for SIGTERM and SIGINT: {err}");
                return;
            }
        };
        let _ = tx.send(Some(first));
        if let Ok(again) = stop_signal().await {
            eprintln!("misql: {again} again: exiting without committing");
            std::process::exit(130);
        }
    });
    rx
}

/// Keeps the syncs running until SIGTERM or Ctrl-C, then stops them: each commits what it has
/// read, within `timeout`. A sync that fails stays failed (logged, in SHOW SYNCS) while the
/// others go on; the exit status is non-zero if one had failed, or if the time ran out. A second
/// signal exits at once.
fn run_daemon(
    runtime: &tokio::runtime::Runtime,
    session: &mut Session,
    args: &Args,
    stop: Stop,
    requests: Option<Requests>,
) -> ExitCode {
    let timeout = args.shutdown_timeout;
    runtime.block_on(async {
        let signal = match serve_until_stopped(session, args, stop, requests).await {
            Ok(signal) => signal,
            Err(err) => {
                eprintln!("error: cannot listen for signals: {err}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            "{signal}: stopping the syncs, committing what they have read (at most {} s)",
            timeout.as_secs_f64()
        );
        match session.shutdown(timeout).await {
            Ok(failed) if failed.is_empty() => {
                tracing::info!("every sync stopped with its batch committed");
                ExitCode::SUCCESS
            }
            Ok(failed) => {
                eprintln!("error: sync(s) failed: {} (see SHOW SYNC STATUS)", failed.join(", "));
                ExitCode::FAILURE
            }
            Err(err) => {
                eprintln!("error: {}", err.user_facing());
                ExitCode::FAILURE
            }
        }
    })
}

/// Control requests from `--http`, when a token allows them.
type Requests = tokio::sync::mpsc::Receiver<misql::http::control::ControlRequest>;

/// The control token of `--http-token` or `--http-token-file`; an empty one is an error.
fn control_token(args: &Args) -> Result<Option<String>, String> {
    let token = match (&args.http_token, &args.http_token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("--http-token-file {path}: cannot read it: {e}"))?
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    if token.is_empty() {
        return Err("the --http token is empty; give a long random one".to_string());
    }
    if args.http.is_none() {
        return Err("--http-token needs --http ADDR to serve control on".to_string());
    }
    Ok(Some(token))
}

/// Runs until SIGTERM or SIGINT (named in the result), reloading the files on each SIGHUP and
/// carrying out control requests from `--http`.
async fn serve_until_stopped(
    session: &mut Session,
    args: &Args,
    mut stop: Stop,
    mut requests: Option<Requests>,
) -> std::io::Result<&'static str> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        let next_request = async {
            match requests.as_mut() {
                Some(requests) => requests.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            signal = stop.wait_for(Option::is_some) => {
                let signal = signal.map_err(std::io::Error::other)?;
                return Ok(signal.unwrap_or("SIGTERM"));
            }
            _ = hangup.recv() => reload(session, args).await,
            Some(request) = next_request => control(session, request).await,
        }
    }
}

/// Carries out one control request from `--http`.
async fn control(session: &mut Session, request: misql::http::control::ControlRequest) {
    let text = request.statement.to_string();
    tracing::info!("--http: {text}");
    let parsed = misql::sql::Parsed {
        statement: request.statement,
        location: misql::Location::new(1, 1),
        text,
    };
    let outcome = match session.execute(&parsed).await {
        Ok(misql::exec::Output::Done(message)) => Ok(message),
        Ok(_) => Ok("done".to_string()),
        Err(err) => Err(err.user_facing().to_string()),
    };
    let _ = request.reply.send(outcome);
}

/// SIGHUP: reads the files again and applies them (see `Session::reload`); a file that cannot
/// be read or parsed changes nothing.
async fn reload(session: &mut Session, args: &Args) {
    tracing::info!("SIGHUP: reloading {}", args.files.join(", "));
    let mut texts = Vec::new();
    for path in &args.files {
        match std::fs::read_to_string(path) {
            Ok(text) => texts.push(text),
            Err(err) => {
                tracing::error!("reload: cannot read {path}: {err}; nothing changed");
                return;
            }
        }
    }
    texts.extend(args.statements.iter().cloned());
    match misql::exec::parse_all(&texts) {
        Ok(statements) => {
            let done = session.reload(&statements).await;
            tracing::info!("reload done: {done:?}");
        }
        Err(err) => tracing::error!("reload: {}; nothing changed", err.user_facing()),
    }
}

/// Waits for SIGTERM or SIGINT (Ctrl-C); names the one that came.
async fn stop_signal() -> std::io::Result<&'static str> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => Ok("SIGTERM"),
        result = tokio::signal::ctrl_c() => result.map(|()| "SIGINT"),
    }
}

/// Runs each source in order; stops at the first failure, or when a stop signal comes (then
/// the second value is true).
fn run_all(
    runtime: &tokio::runtime::Runtime,
    session: &mut Session,
    sources: impl IntoIterator<Item = (Origin, String)>,
    format: Format,
    mut stop: Stop,
) -> (ExitCode, bool) {
    let mut stdout = std::io::stdout().lock();
    for (origin, text) in sources {
        let result = runtime.block_on(async {
            tokio::select! {
                result = script::run(session, &text, format, &mut stdout) => Some(result),
                _ = stop.wait_for(Option::is_some) => None,
            }
        });
        match result {
            Some(Ok(())) => {}
            Some(Err(failure)) => {
                eprintln!("{}", script::render(&failure, &origin, &text));
                return (ExitCode::FAILURE, false);
            }
            None => {
                let signal = stop.borrow().unwrap_or("a signal");
                eprintln!("misql: {signal} while running the statements: stopping");
                return (ExitCode::SUCCESS, true);
            }
        }
    }
    (ExitCode::SUCCESS, false)
}
