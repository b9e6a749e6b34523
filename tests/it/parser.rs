//! The statement parser: every statement form from `sql/valid/*.sql` parses, prints back as SQL
//! that parses to the same statement, and snapshots readably; every file in `sql/invalid/*.sql`
//! fails with a message, a hint and a position that points at the culprit.

use std::fmt::Write;
use std::fs;

use misql::Error;
use misql::sql::{
    CreateSync, ExplainSync, Parsed, Statement, SyncOption, is_complete, parse_with_env,
};

/// A fixed environment, so fixtures behave the same on every machine.
fn env(name: &str) -> Option<String> {
    match name {
        "MONGO_USER" => Some("app".to_string()),
        "MONGO_HOST" => Some("db.internal:27017".to_string()),
        "S3_SECRET" => Some("s3cr3t".to_string()),
        _ => None,
    }
}

fn parse(sql: &str) -> misql::Result<Vec<Parsed>> {
    parse_with_env(sql, &env)
}

#[test]
fn valid_fixtures_parse_and_round_trip() {
    insta::glob!("sql/valid/*.sql", |path| {
        let sql = fs::read_to_string(path).expect("fixture is readable");
        let parsed = parse(&sql).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        for statement in &parsed {
            assert_round_trips(statement);
        }
        insta::assert_snapshot!(render_statements(&parsed));
    });
}

#[test]
fn invalid_fixtures_fail_with_a_position_and_a_hint() {
    insta::glob!("sql/invalid/*.sql", |path| {
        let sql = fs::read_to_string(path).expect("fixture is readable");
        match parse(&sql) {
            Ok(parsed) => panic!("{} parsed: {parsed:?}", path.display()),
            Err(error) => insta::assert_snapshot!(render_error(&sql, &error)),
        }
    });
}

/// `parse(display(s)) == s`, ignoring the SELECT text, which is kept as written.
fn assert_round_trips(parsed: &Parsed) {
    let printed = parsed.statement.to_string();
    let again =
        parse(&printed).unwrap_or_else(|error| panic!("`{printed}` does not parse: {error}"));
    assert_eq!(again.len(), 1, "`{printed}` is one statement");
    assert_eq!(without_text(&again[0].statement), without_text(&parsed.statement), "{printed}");
}

fn without_text(statement: &Statement) -> Statement {
    let mut statement = statement.clone();
    match &mut statement {
        Statement::CreateSync(sync) => sync.projection_text = None,
        Statement::ExplainSync(ExplainSync::Create(sync)) => sync.projection_text = None,
        _ => {}
    }
    statement
}

fn render_statements(parsed: &[Parsed]) -> String {
    let mut out = String::new();
    for statement in parsed {
        let location = statement.location;
        writeln!(out, "-- at {location}: {}", statement.text.replace('\n', "\n-- ")).unwrap();
        writeln!(out, "{}", statement.statement).unwrap();
        out.push_str(&render_fields(&statement.statement));
        out.push('\n');
    }
    out
}

fn render_fields(statement: &Statement) -> String {
    match statement {
        Statement::Attach(attach) => {
            let options: Vec<String> =
                attach.options.iter().map(|(key, value)| format!("{key}={value}")).collect();
            format!(
                "    kind: {}\n    uri: {}\n    options: [{}]\n",
                attach.kind.name(),
                attach.uri,
                options.join(", ")
            )
        }
        Statement::CreateSync(sync) => render_sync(sync),
        Statement::ExplainSync(ExplainSync::Create(sync)) => render_sync(sync),
        Statement::Sql(sql) => format!("    sql: {}\n", kind_of(&sql.to_string())),
        _ => String::new(),
    }
}

/// The first word of a plain SQL statement, e.g. `SELECT`.
fn kind_of(sql: &str) -> &str {
    sql.split_whitespace().next().unwrap_or_default()
}

fn render_sync(sync: &CreateSync) -> String {
    let mut out = String::new();
    let flags = format!("or_replace={} if_not_exists={}", sync.or_replace, sync.if_not_exists);
    writeln!(out, "    name: {} ({flags})", sync.name).unwrap();
    writeln!(out, "    source: {} -> target: {}", sync.source, sync.target).unwrap();
    if let Some(pattern) = &sync.collections {
        writeln!(out, "    collections: {} excluding {:?}", pattern.glob, pattern.exclude).unwrap();
    }
    match (&sync.projection, &sync.projection_text) {
        (Some(items), Some(text)) => {
            writeln!(out, "    select ({} items) as written: {text}", items.len()).unwrap();
        }
        _ => writeln!(out, "    select: * (schema evolution)").unwrap(),
    }
    if let Some(selection) = &sync.selection {
        writeln!(out, "    where: {selection}").unwrap();
    }
    for field in &sync.partition_by {
        writeln!(out, "    partition: {:?} of {}", field.transform, field.column).unwrap();
    }
    let options = &sync.options;
    let given: Vec<&str> = options.given.iter().map(|option| option.name()).collect();
    writeln!(out, "    options given: [{}]", given.join(", ")).unwrap();
    writeln!(
        out,
        "    effective: flush_interval={:?} max_batch_rows={} max_batch_bytes={} on_error={} \
         on_type_change={} sample_size={} target_file_size={} compression={} delete_mode={} \
         auto_optimize={} retain_snapshots={:?} max_snapshots={}",
        options.flush_interval,
        options.max_batch_rows,
        options.max_batch_bytes,
        options.on_error.name(),
        options.on_type_change.name(),
        options.sample_size,
        options.target_file_size,
        options.compression,
        options.delete_mode.name(),
        options.auto_optimize,
        options.retain_snapshots,
        options.max_snapshots,
    )
    .unwrap();
    out
}

/// The error as the CLI prints it, its hint, and the line it points into with a caret.
fn render_error(sql: &str, error: &Error) -> String {
    let Error::Sql { location, hint, .. } = error else {
        panic!("not a SQL error: {error:?}");
    };
    let line_number = usize::try_from(location.line).unwrap();
    let line = sql.lines().nth(line_number - 1).unwrap_or_default();
    let caret = " ".repeat(usize::try_from(location.column).unwrap() - 1);
    let hint = hint.as_deref().unwrap_or("(none)");
    format!("error: {error}\nhint: {hint}\n{line_number:>3} | {line}\n    | {caret}^\n")
}

fn error_of(sql: &str) -> Error {
    match parse(sql) {
        Ok(parsed) => panic!("`{sql}` parsed: {parsed:?}"),
        Err(error) => error,
    }
}

#[test]
fn unknown_option_names_the_closest_valid_one() {
    let error = error_of("CREATE SYNC s FROM m.d.c INTO l.n.t WITH (flush_intervl = '5s')");
    assert_eq!(error.to_string(), "unknown option `flush_intervl` at line 1, column 43");
    assert_eq!(error.hint(), Some("did you mean `flush_interval`?"));
}

#[test]
fn unset_environment_variable_is_reported_at_its_literal() {
    let error = error_of("ATTACH 'mongodb://u:${MONGO_PASSWORD}@h' AS m (TYPE mongodb)");
    assert_eq!(
        error.to_string(),
        "environment variable MONGO_PASSWORD is not set at line 1, column 8"
    );
    assert_eq!(error.hint(), Some("export MONGO_PASSWORD=... or remove ${MONGO_PASSWORD}"));
}

#[test]
fn environment_variables_are_substituted_in_plain_sql_literals() {
    let parsed =
        parse("SELECT '${MONGO_USER}', \"${MONGO_USER}\" FROM t -- ${MONGO_USER}").unwrap();
    assert_eq!(parsed[0].statement.to_string(), "SELECT 'app', \"${MONGO_USER}\" FROM t");
    assert_eq!(parsed[0].text, "SELECT '${MONGO_USER}', \"${MONGO_USER}\" FROM t");
}

#[test]
fn parse_reads_variables_from_the_process_environment() {
    // cargo sets CARGO_PKG_NAME for the test process.
    let parsed = misql::sql::parse("SELECT '${CARGO_PKG_NAME}'").unwrap();
    assert_eq!(parsed[0].statement.to_string(), "SELECT 'misql'");
}

#[test]
fn a_doubled_dollar_keeps_a_literal_placeholder() {
    let parsed = parse("ATTACH '$${MONGO_USER}-$$-${MONGO_USER}' AS m (TYPE mongodb)").unwrap();
    let Statement::Attach(attach) = &parsed[0].statement else { panic!("not an ATTACH") };
    assert_eq!(attach.uri, "${MONGO_USER}-$$-app");
}

#[test]
fn statements_know_their_position_and_text() {
    let parsed = parse("SHOW SYNCS;\n\n  -- next\n  STOP SYNC orders ;\nSELECT 1").unwrap();
    let positions: Vec<String> =
        parsed.iter().map(|p| format!("{} {:?}", p.location, p.text)).collect();
    assert_eq!(
        positions,
        [
            "line 1, column 1 \"SHOW SYNCS\"",
            "line 4, column 3 \"STOP SYNC orders\"",
            "line 5, column 1 \"SELECT 1\"",
        ]
    );
}

#[test]
fn the_default_sync_options_are_documented_values() {
    let parsed = parse("CREATE SYNC s FROM m.d.c INTO l.n.t").unwrap();
    let Statement::CreateSync(sync) = &parsed[0].statement else { panic!("not a CREATE SYNC") };
    let options = &sync.options;
    assert_eq!(options.flush_interval, std::time::Duration::from_secs(10));
    assert_eq!(options.max_batch_rows, 100_000);
    assert_eq!(options.max_batch_bytes, 64 << 20);
    assert_eq!(options.max_transaction_rows, 10_000);
    assert_eq!(options.sample_size, 1000);
    assert_eq!(options.target_file_size, 128 << 20);
    assert_eq!(options.compression, "zstd");
    assert!(options.auto_optimize);
    assert_eq!(options.retain_snapshots, std::time::Duration::from_secs(3600));
    assert_eq!(options.max_snapshots, 50);
    assert!(options.given.is_empty());
    assert_eq!(options.lease_ttl, std::time::Duration::from_secs(30));
    assert_eq!(options.snapshot_parallelism, 1);
    assert!(!options.consistent);
    assert_eq!(SyncOption::ALL.len(), 16);
}

#[test]
fn an_empty_input_has_no_statements() {
    assert_eq!(parse("").unwrap(), []);
    assert_eq!(parse(" ;; -- nothing\n;").unwrap(), []);
}

#[test]
fn a_buffer_is_complete_when_it_ends_with_a_semicolon() {
    assert!(is_complete("SELECT 1;"));
    assert!(is_complete("SELECT 1;  -- trailing comment\n"));
    assert!(is_complete("CREATE SYNC s\n  FROM m.d.c\n  INTO l.n.t;\n"));
    assert!(!is_complete("SELECT 1"));
    assert!(!is_complete(""));
    assert!(!is_complete("SELECT 1 -- ;"));
    assert!(!is_complete("SELECT ';'"));
    assert!(!is_complete("/* ; */"));
}

#[test]
fn an_unterminated_string_or_comment_is_never_complete() {
    assert!(!is_complete("SELECT 'abc;"));
    assert!(!is_complete("SELECT 1; /* open comment;"));
}

#[test]
fn a_backslash_command_is_complete_without_a_semicolon() {
    assert!(is_complete("\\q"));
    assert!(is_complete("  \\help"));
}

#[test]
fn tab_completion_offers_sync_options_and_their_quoted_values() {
    use rustyline::completion::Completer;
    // The shell completes the session's names: attached catalogs (connected on first use).
    let session = misql::exec::Session::new("mongodb://127.0.0.1:9", "/nonexistent/warehouse");
    assert_eq!(session.names(), ["mongo", "iceberg"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let helper = misql::repl::ReplHelper::new(&session, runtime.handle().clone());
    let history = rustyline::history::MemHistory::new();
    let ctx = rustyline::Context::new(&history);
    let complete = |line: &str| -> Vec<String> {
        let (_, pairs) = helper.complete(line, line.len(), &ctx).unwrap();
        pairs.into_iter().map(|p| p.replacement).collect()
    };
    let create = "CREATE SYNC s FROM mongo.d.c INTO iceberg.n.t WITH (";
    assert_eq!(complete(&format!("{create}on_t")), ["on_type_change"]);
    assert_eq!(complete(&format!("{create}on_type_change = 'st")), ["'stringify'"]);
    assert_eq!(complete(&format!("{create}on_error = 'd")), ["'dead_letter'"]);
    assert_eq!(complete(&format!("{create}max_batch_rows = 10, comp")), ["compression"]);
    assert_eq!(complete(&format!("{create}compression = 'z")), ["'zstd'"]);
    assert_eq!(complete("SELECT * FROM ice"), ["iceberg"]);
    assert_eq!(complete("desc"), ["describe"], "lower case stays lower case");
    assert_eq!(complete("\\tim"), ["\\timing"], "backslash commands");
    // Names below a catalog that cannot be reached: nothing, within the fetch wait.
    let started = std::time::Instant::now();
    assert!(complete("DESCRIBE mongo.sh").is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "Tab never hangs");
}

#[test]
fn collection_globs_match_names() {
    use misql::sql::glob_matches;
    assert!(glob_matches("*", "orders"));
    assert!(glob_matches("log_*", "log_app"));
    assert!(!glob_matches("log_*", "blog_app"));
    assert!(glob_matches("*_log", "app_log"));
    assert!(glob_matches("a*b*c", "axxbyyc"));
    assert!(!glob_matches("a*b*c", "acb"));
    assert!(!glob_matches("a*a", "a"), "the prefix and suffix may not overlap");
    assert!(glob_matches("orders", "orders"));
    assert!(!glob_matches("orders", "orders2"));
}
