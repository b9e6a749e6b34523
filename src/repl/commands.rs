//! The shell's backslash commands, psql and DuckDB style, kept in one table: `\?` prints it,
//! tab completion offers its names, and [`Command::parse`] reads a line into one of them.

use std::path::PathBuf;

use crate::output::Format;

/// A backslash command with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `\?`: the commands and example statements.
    Help,
    /// `\q`: leave the shell.
    Quit,
    /// `\l`: the databases of every attached MongoDB.
    Databases,
    /// `\dt [name]`: collections and tables (of a database or namespace, or of everything).
    Tables(Option<String>),
    /// `\d name`: describe a collection or table.
    Describe(String),
    /// `\timing`: print how long each statement took, or not.
    Timing,
    /// `\format table|csv|json|expanded`: how results are printed.
    Format(Format),
    /// `\x`: expanded output (one `field | value` line per column) on or off.
    Expanded,
    /// `\i file`: run the statements of a file.
    Include(PathBuf),
    /// `\o [file]`: send results to a file, or back to the screen.
    Output(Option<PathBuf>),
    /// `\progress`: how far the running syncs are.
    Progress,
    /// `\refresh`: forget the names tab completion fetched.
    Refresh,
}

/// One row of the command table: name, arguments, what it does.
pub struct Entry {
    /// The command as typed.
    pub name: &'static str,
    /// Its arguments, for the help.
    pub args: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// Every command, in the order `\?` lists them.
pub const COMMANDS: &[Entry] = &[
    Entry { name: "\\?", args: "", help: "this help" },
    Entry { name: "\\q", args: "", help: "quit (or Ctrl-D)" },
    Entry { name: "\\l", args: "", help: "list the databases of the attached MongoDB deployments" },
    Entry {
        name: "\\dt",
        args: "[name]",
        help: "list collections and tables (of mongo.db or iceberg.ns; of all without a name)",
    },
    Entry { name: "\\d", args: "name", help: "describe a collection or table" },
    Entry { name: "\\x", args: "", help: "expanded output (one field per line) on or off" },
    Entry { name: "\\format", args: "table|csv|json|expanded", help: "how results are printed" },
    Entry { name: "\\timing", args: "", help: "show how long each statement took, or not" },
    Entry { name: "\\i", args: "file", help: "run the statements of a file" },
    Entry {
        name: "\\o",
        args: "[file]",
        help: "send results to a file; without one, to the screen",
    },
    Entry { name: "\\progress", args: "", help: "how far the running syncs are" },
    Entry { name: "\\refresh", args: "", help: "fetch the names Tab completes again" },
];

impl Command {
    /// Reads a command line (`\dt mongo.shop`, `quit`). The error says what is wrong.
    pub fn parse(line: &str) -> Result<Command, String> {
        let line = line.trim().trim_end_matches(';').trim();
        let (name, arg) = match line.split_once(char::is_whitespace) {
            Some((name, arg)) => (name, Some(arg.trim()).filter(|a| !a.is_empty())),
            None => (line, None),
        };
        let required = |what: &str| {
            arg.map(str::to_string).ok_or_else(|| format!("{name} needs {what}: {name} {what}"))
        };
        let none = |command: Command| match arg {
            Some(extra) => Err(format!("{name} takes no argument (got `{extra}`)")),
            None => Ok(command),
        };
        match name.to_ascii_lowercase().as_str() {
            "\\?" | "\\h" | "\\help" | "help" => none(Command::Help),
            "\\q" | "\\quit" | "quit" | "exit" => none(Command::Quit),
            "\\l" => none(Command::Databases),
            "\\dt" => Ok(Command::Tables(arg.map(str::to_string))),
            "\\d" => required("a name").map(Command::Describe),
            "\\timing" => none(Command::Timing),
            "\\x" => none(Command::Expanded),
            "\\format" => {
                let value = required("a format")?;
                let format = <Format as clap::ValueEnum>::from_str(&value, true).map_err(|_| {
                    format!("unknown format `{value}`: table, csv, json or expanded")
                })?;
                Ok(Command::Format(format))
            }
            "\\i" => required("a file").map(|f| Command::Include(PathBuf::from(f))),
            "\\o" => Ok(Command::Output(arg.map(PathBuf::from))),
            "\\progress" => none(Command::Progress),
            "\\refresh" => none(Command::Refresh),
            _ => Err(format!("unknown command {name}; \\? lists the commands")),
        }
    }
}

/// The command table as `\?` prints it.
pub fn help() -> String {
    let width = COMMANDS.iter().map(|c| c.name.len() + 1 + c.args.len()).max().unwrap_or(0);
    COMMANDS
        .iter()
        .map(|c| format!("  {:width$}  {}", format!("{} {}", c.name, c.args).trim_end(), c.help))
        .collect::<Vec<_>>()
        .join("\n")
}
