//! The interactive shell: multi-line input until `;`, history in `~/.misql_history`, Ctrl-C
//! cancels the running statement (not the shell), Ctrl-D exits.

mod helper;

use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{Config, Editor};
use tokio::runtime::Runtime;

use crate::exec::Session;
use crate::output::Format;
use crate::script::{self, Origin};

pub use helper::{ReplHelper, is_command};

const HELP: &str = "\
Statements end with `;` and may span lines. Examples:
  SHOW DATABASES;
  SHOW COLLECTIONS FROM mongo.shop;
  DESCRIBE mongo.shop.orders;
  SELECT _id, customer.name, total FROM mongo.shop.orders LIMIT 5;
  EXPLAIN SELECT _id FROM mongo.shop.orders WHERE status = 'paid';
  EXPLAIN CREATE SYNC orders FROM mongo.shop.orders INTO iceberg.shop.orders;
  CREATE SYNC orders FROM mongo.shop.orders INTO iceberg.shop.orders
    SELECT _id, total::DECIMAL(18,2) AS total, created_at PARTITION BY day(created_at);
  CREATE SYNC events FROM mongo.app.events INTO iceberg.app.events
    WITH (on_type_change = 'stringify');   -- SELECT *: the table follows the documents
  SHOW SYNCS;   SHOW SYNC STATUS orders;   DROP SYNC orders;
  DESCRIBE iceberg.shop.orders;   SELECT count(*) FROM iceberg.shop.orders;
Shell commands:
  \\?          this help
  \\q          quit (or Ctrl-D)
Ctrl-C cancels the running statement.";

/// Runs the shell until Ctrl-D or `\q`.
pub fn run(runtime: &Runtime, session: &mut Session, format: Format) -> rustyline::Result<()> {
    let config = Config::builder().auto_add_history(false).build();
    let mut editor: Editor<ReplHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ReplHelper { names: session.names() }));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path); // a missing history file is normal on first use
    }
    println!("misql {} — type \\? for help, Ctrl-D to exit", env!("CARGO_PKG_VERSION"));
    loop {
        match editor.readline("misql> ") {
            Ok(input) if input.trim().is_empty() => continue,
            Ok(input) => {
                editor.add_history_entry(input.as_str())?;
                if is_command(&input) {
                    match input.trim() {
                        "\\?" | "\\h" | "help" => println!("{HELP}"),
                        "\\q" | "quit" | "exit" => break,
                        other => {
                            eprintln!("error: unknown command {other}; \\? lists the commands")
                        }
                    }
                    continue;
                }
                run_statement(runtime, session, &input, format);
                if let Some(helper) = editor.helper_mut() {
                    helper.names = session.names(); // ATTACH and CREATE SYNC add names
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(err) => return Err(err),
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path); // losing history must not fail the shell
    }
    Ok(())
}

/// Runs one input, cancelled by Ctrl-C.
fn run_statement(runtime: &Runtime, session: &mut Session, input: &str, format: Format) {
    let started = std::time::Instant::now();
    let outcome = runtime.block_on(async {
        let mut stdout = std::io::stdout();
        tokio::select! {
            result = script::run(session, input, format, &mut stdout) => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    match outcome {
        Some(Ok(())) => eprintln!("({:.3}s)", started.elapsed().as_secs_f64()),
        Some(Err(failure)) => eprintln!("{}", script::render(&failure, &Origin::Stdin, input)),
        None => eprintln!("cancelled"),
    }
}

/// `~/.misql_history`, when there is a home directory.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".misql_history"))
}
