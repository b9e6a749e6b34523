//! The interactive shell: multi-line input until `;`, history in `~/.misql_history`, Ctrl-C
//! cancels the running statement (not the shell), Ctrl-D exits.

mod commands;
mod helper;
mod names;

use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{Config, Editor};
use tokio::runtime::Runtime;

use crate::exec::Session;
use crate::output::Format;
use crate::script::{self, Origin};

pub use commands::{COMMANDS, Command};
pub use helper::{ReplHelper, is_command};
pub use names::Sources;

const EXAMPLES: &str = "\
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
Tab completes keywords, databases, collections, tables and field names.
Shell commands:";

/// What the shell remembers between statements.
struct Shell {
    format: Format,
    /// The format `\x` goes back to.
    unexpanded: Format,
    timing: bool,
    /// Where results go (`\o file`), the screen when `None`.
    output: Option<(PathBuf, std::fs::File)>,
}

/// Runs the shell until Ctrl-D or `\q`.
pub fn run(runtime: &Runtime, session: &mut Session, format: Format) -> rustyline::Result<()> {
    let config = Config::builder().auto_add_history(false).build();
    let mut editor: Editor<ReplHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ReplHelper::new(session, runtime.handle().clone())));
    crate::logging::enter_shell();
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path); // a missing history file is normal on first use
    }
    println!("misql {} — type \\? for help, Ctrl-D to exit", env!("CARGO_PKG_VERSION"));
    let mut shell = Shell { format, unexpanded: format, timing: true, output: None };
    loop {
        crate::logging::hold_logs();
        let line = editor.readline(crate::logging::PROMPT);
        crate::logging::release_logs();
        match line {
            Ok(input) if input.trim().is_empty() => continue,
            Ok(input) => {
                editor.add_history_entry(input.as_str())?;
                if is_command(&input) {
                    match Command::parse(&input) {
                        Ok(Command::Quit) => break,
                        Ok(Command::Refresh) => {
                            if let Some(helper) = editor.helper() {
                                helper.forget();
                            }
                            shell.command(runtime, session, Command::Refresh);
                        }
                        Ok(command) => shell.command(runtime, session, command),
                        Err(message) => eprintln!("error: {message}"),
                    }
                } else {
                    shell.statement(runtime, session, &input, &Origin::Stdin);
                }
                if let Some(helper) = editor.helper_mut() {
                    helper.refresh_names(session); // ATTACH and CREATE SYNC add names
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

impl Shell {
    /// Runs one backslash command.
    fn command(&mut self, runtime: &Runtime, session: &mut Session, command: Command) {
        let sql = |text: String| Some(text);
        let statement = match command {
            Command::Help => {
                println!("{EXAMPLES}\n{}\nCtrl-C cancels the running statement.", commands::help());
                None
            }
            Command::Quit => None,
            Command::Databases => sql("SHOW DATABASES".into()),
            Command::Tables(None) => sql("SHOW COLLECTIONS; SHOW TABLES".into()),
            Command::Tables(Some(name)) if session.is_mongo_name(&name) => {
                sql(format!("SHOW COLLECTIONS FROM {name}"))
            }
            Command::Tables(Some(name)) => sql(format!("SHOW TABLES FROM {name}")),
            Command::Describe(name) => sql(format!("DESCRIBE {name}")),
            Command::Timing => {
                self.timing = !self.timing;
                eprintln!("timing is {}", if self.timing { "on" } else { "off" });
                None
            }
            Command::Format(format) => {
                (self.format, self.unexpanded) = (format, format);
                eprintln!("results are printed as {format:?}");
                None
            }
            Command::Expanded => {
                let expanded = self.format != Format::Expanded;
                self.format = if expanded { Format::Expanded } else { self.unexpanded };
                eprintln!("expanded display is {}", if expanded { "on" } else { "off" });
                None
            }
            Command::Include(path) => match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let origin = Origin::File(path.display().to_string());
                    self.statement(runtime, session, &text, &origin);
                    None
                }
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", path.display());
                    None
                }
            },
            Command::Output(None) => {
                self.output = None;
                eprintln!("results go to the screen");
                None
            }
            Command::Output(Some(path)) => {
                match std::fs::File::create(&path) {
                    Ok(file) => {
                        eprintln!("results go to {}", path.display());
                        self.output = Some((path, file));
                    }
                    Err(e) => eprintln!("error: cannot write {}: {e}", path.display()),
                }
                None
            }
            Command::Progress => {
                eprintln!("{}", session.progress());
                None
            }
            Command::Refresh => {
                eprintln!("the names Tab completes are fetched again on the next Tab");
                None
            }
        };
        if let Some(text) = statement {
            self.statement(runtime, session, &text, &Origin::Stdin);
        }
    }

    /// Runs one input, cancelled by Ctrl-C.
    fn statement(
        &mut self,
        runtime: &Runtime,
        session: &mut Session,
        input: &str,
        origin: &Origin,
    ) {
        let started = std::time::Instant::now();
        let format = self.format;
        let outcome = runtime.block_on(async {
            let mut stdout = std::io::stdout();
            let out: &mut dyn std::io::Write = match &mut self.output {
                Some((_, file)) => file,
                None => &mut stdout,
            };
            tokio::select! {
                result = script::run(session, input, format, out) => Some(result),
                _ = tokio::signal::ctrl_c() => None,
            }
        });
        match outcome {
            Some(Ok(())) if self.timing => {
                eprintln!("({:.3}s)", started.elapsed().as_secs_f64())
            }
            Some(Ok(())) => {}
            Some(Err(failure)) => eprintln!("{}", script::render(&failure, origin, input)),
            None => eprintln!("cancelled"),
        }
    }
}

/// `~/.misql_history`, when there is a home directory.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".misql_history"))
}
