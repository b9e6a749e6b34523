//! Reloading a running daemon's files (SIGHUP): a `CREATE SYNC` that is new starts, one no
//! longer in the files stops (its table kept), a changed definition replaces the running one
//! only when the statement says `OR REPLACE` (otherwise the error is logged and the running sync
//! is left alone), the others are untouched. `ATTACH` and `SET` statements run again; the rest
//! is skipped. Each decision is logged.

use std::collections::BTreeSet;

use super::Session;
use crate::Result;
use crate::sql::{CreateSync, Parsed, Statement};

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Syncs started (new in the files).
    pub started: Vec<String>,
    /// Syncs replaced (changed, with OR REPLACE).
    pub replaced: Vec<String>,
    /// Syncs stopped (gone from the files).
    pub stopped: Vec<String>,
    /// Syncs left as they run, with why (changed without OR REPLACE, or a statement failed).
    pub refused: Vec<String>,
}

/// The definition of a sync without the words that only say how to create it.
fn definition(create: &CreateSync) -> String {
    CreateSync { or_replace: false, if_not_exists: false, ..create.clone() }.to_string()
}

impl Session {
    /// Applies the statements of the daemon's files, read again (see the module documentation).
    pub async fn reload(&mut self, statements: &[Parsed]) -> Reloaded {
        let mut done = Reloaded::default();
        let mut wanted = BTreeSet::new();
        for parsed in statements {
            match &parsed.statement {
                Statement::Attach(_) | Statement::Sql(_) if is_setup(&parsed.statement) => {
                    if let Err(e) = self.execute(parsed).await {
                        tracing::error!("reload: `{}` failed: {}", parsed.text, e.user_facing());
                    }
                }
                Statement::CreateSync(create) => {
                    wanted.insert(create.name.value.clone());
                    self.reload_sync(create, &mut done).await;
                }
                other => tracing::debug!("reload: skipping `{other}`"),
            }
        }
        let gone: Vec<String> =
            self.syncs.keys().filter(|name| !wanted.contains(*name)).cloned().collect();
        for name in gone {
            match self.drop_sync(&name, false, true).await {
                Ok(_) => {
                    tracing::info!(
                        "reload: sync {name} is no longer in the files: stopped (its table is kept)"
                    );
                    done.stopped.push(name);
                }
                Err(e) => tracing::error!("reload: stopping sync {name}: {}", e.user_facing()),
            }
        }
        done
    }

    /// One `CREATE SYNC` of the files, against what runs.
    async fn reload_sync(&mut self, create: &CreateSync, done: &mut Reloaded) {
        let name = create.name.value.clone();
        let running = self.syncs.get(&name).map(|entry| definition(&entry.create));
        let decision = match running {
            None => "started",
            Some(running) if running == definition(create) => {
                tracing::info!("reload: sync {name} is unchanged");
                return;
            }
            Some(_) if !create.or_replace => {
                tracing::error!(
                    "reload: sync {name} changed in the files, but the statement does not say OR \
                     REPLACE; the running definition stays (write CREATE OR REPLACE SYNC {name} \
                     to replace it)"
                );
                done.refused.push(name);
                return;
            }
            Some(_) => "replaced",
        };
        let create = CreateSync { if_not_exists: false, ..create.clone() };
        match self.create_sync(&create).await {
            Ok(_) if decision == "started" => {
                tracing::info!("reload: sync {name} is new: started");
                done.started.push(name);
            }
            Ok(_) => {
                tracing::info!("reload: sync {name} changed: replaced");
                done.replaced.push(name);
            }
            Err(e) => {
                tracing::error!("reload: sync {name} not {decision}: {}", e.user_facing());
                done.refused.push(name);
            }
        }
    }
}

/// `ATTACH` and `SET` set the session up; they run again on reload.
fn is_setup(statement: &Statement) -> bool {
    match statement {
        Statement::Attach(_) => true,
        Statement::Sql(sql) => matches!(**sql, sqlparser::ast::Statement::Set(_)),
        _ => false,
    }
}

/// Parses the text of the daemon's sources; the first syntax error fails the reload as a whole.
pub fn parse_all(texts: &[String]) -> Result<Vec<Parsed>> {
    let mut statements = Vec::new();
    for text in texts {
        statements.extend(crate::sql::parse(text)?);
    }
    Ok(statements)
}
