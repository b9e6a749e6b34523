//! Several tables' changes committed at once, all or none, where the catalog can: the embedded
//! SQL catalog (one SQLite transaction) and REST catalogs that list
//! `POST /v1/{prefix}/transactions/commit` in their config. A database sync with
//! `consistent = true` commits its tables this way, so that every state of the catalog is one
//! state of the MongoDB database. Elsewhere each change is committed on its own, in turn.
//!
//! The retries are those of one table's commit (see the parent module), for the group: a lost
//! swap reloads every table, checks each change on its new base and swaps them all again; an
//! unknown outcome is settled by reading every table back. A change that no longer applies
//! (its guard refuses the new base) or cannot be built fails alone, and the others go on
//! without it.

use ::iceberg::table::Table;
use futures::future::join_all;

use super::swap::{Committer, Swap};
use super::{
    Change, Content, MAX_WAIT, MIN_WAIT, Settled, Staged, commit_change, confirm,
    expire_metadata_files, outrun, reload, retries_of, settle, validate,
};
use crate::lake::catalog::IcebergConnection;
use crate::{Error, ErrorKind, Result};

/// Commits each change to its table, all together where the catalog can do it atomically.
/// Returns, in the order given, each table reloaded after its commit or the error it met.
pub async fn commit_together(
    conn: &IcebergConnection,
    parts: Vec<(Table, Change)>,
) -> Vec<Result<Table>> {
    let Some((first, _)) = parts.first() else { return Vec::new() };
    let committer = match Committer::new(conn, first) {
        Ok(committer) => committer,
        Err(e) => return parts.iter().map(|_| Err(e.shared())).collect(),
    };
    if parts.len() == 1 || !committer.atomic().await {
        let mut results = Vec::with_capacity(parts.len());
        for (table, change) in &parts {
            results.push(commit_change(conn, table, change).await);
        }
        return results;
    }
    let mut group = Group::new(conn, &parts).await;
    group.commit(&committer).await;
    group.results()
}

/// The group's state across attempts.
struct Group<'a> {
    conn: &'a IcebergConnection,
    parts: &'a [(Table, Change)],
    /// The table each change is built on now.
    bases: Vec<Table>,
    /// Each part's outcome, once it has one.
    results: Vec<Option<Result<Table>>>,
    retries: u32,
}

impl<'a> Group<'a> {
    async fn new(conn: &'a IcebergConnection, parts: &'a [(Table, Change)]) -> Self {
        let mut results = Vec::with_capacity(parts.len());
        for (table, change) in parts {
            results.push(if change.is_empty() {
                Some(reload(conn, table.identifier()).await)
            } else if let Content::Snapshot { data, deletes } = &change.content {
                validate::check_contents(table.identifier(), data, deletes).err().map(Err)
            } else {
                None
            });
        }
        let bases = parts.iter().map(|(table, _)| table.clone()).collect();
        let retries = parts.iter().map(|(table, _)| retries_of(table)).min().unwrap_or_default();
        Self { conn, parts, bases, results, retries }
    }

    /// The parts still without an outcome.
    fn open(&self) -> Vec<usize> {
        (0..self.parts.len()).filter(|i| self.results[*i].is_none()).collect()
    }

    async fn commit(&mut self, committer: &Committer) {
        let uuid = uuid::Uuid::now_v7();
        let mut wait = MIN_WAIT;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_WAIT);
                self.rebase().await;
            }
            let staged = self.stage(uuid, attempt).await;
            if staged.is_empty() {
                return;
            }
            let pairs: Vec<_> =
                staged.iter().map(|(i, s)| (&self.bases[*i], &s.proposal)).collect();
            let outcome = committer.swap_all(&pairs).await;
            match outcome {
                Ok(Swap::Done) => return self.done(&staged).await,
                Ok(Swap::Conflict) => {
                    let what = "another writer committed first to one of them; building them \
                                again on the new table states";
                    self.got_past(&staged, what);
                }
                Ok(Swap::Unknown(error)) => match self.settle(&staged).await {
                    Some(true) => {
                        return self.got_past(&staged, &format!("{error}; the tables have it"));
                    }
                    Some(false) => self.got_past(
                        &staged,
                        &format!("{error}; the tables do not have it: committing it again"),
                    ),
                    None => return self.fail(&staged, &error),
                },
                Err(error) => {
                    self.remove(&staged).await;
                    return self.fail(&staged, &error);
                }
            }
            self.remove(&staged).await;
        }
        let names: Vec<String> =
            self.open().iter().map(|i| self.parts[*i].0.identifier().to_string()).collect();
        let error = outrun(&names.join(", "), self.retries);
        for i in self.open() {
            self.results[i] = Some(Err(error.shared()));
        }
    }

    /// Reloads the open parts' tables and checks that each change still applies there (all
    /// tables at once).
    async fn rebase(&mut self) {
        let this = &*self;
        let rebased = join_all(this.open().into_iter().map(|i| async move {
            let (first, change) = &this.parts[i];
            let base = reload(this.conn, first.identifier()).await;
            (i, base.and_then(|base| change.rebase(&base, first).map(|()| base)))
        }))
        .await;
        for (i, rebased) in rebased {
            match rebased {
                Ok(base) => self.bases[i] = base,
                Err(e) => self.results[i] = Some(Err(e)),
            }
        }
    }

    /// Builds every open change on its base, all at once (a part that cannot be built fails
    /// alone).
    async fn stage(&mut self, uuid: uuid::Uuid, attempt: u32) -> Vec<(usize, Staged)> {
        let this = &*self;
        let built = join_all(this.open().into_iter().map(|i| async move {
            let (first, change) = &this.parts[i];
            (i, change.stage(&this.bases[i], first, uuid, attempt).await)
        }))
        .await;
        let mut staged = Vec::new();
        for (i, built) in built {
            match built {
                Ok(s) => staged.push((i, s)),
                Err(e) => self.results[i] = Some(Err(e)),
            }
        }
        staged
    }

    /// After a swap the catalog accepted: each table reloaded, which must have its change.
    async fn done(&mut self, staged: &[(usize, Staged)]) {
        let this = &*self;
        let confirmed = join_all(staged.iter().map(|(i, s)| async move {
            let (first, change) = &this.parts[*i];
            let confirmed = confirm(this.conn, first.identifier(), change, s).await;
            if let Ok(committed) = &confirmed {
                expire_metadata_files(&this.bases[*i], committed).await;
            }
            (*i, confirmed)
        }))
        .await;
        for (i, confirmed) in confirmed {
            self.results[i] = Some(confirmed);
        }
    }

    /// Settles an unknown outcome from the tables: `Some(true)` all have it (and their results
    /// are set), `Some(false)` none has it, `None` not known (unreadable, or — which an atomic
    /// catalog does not do — some have it).
    async fn settle(&mut self, staged: &[(usize, Staged)]) -> Option<bool> {
        let this = &*self;
        let settled = join_all(staged.iter().map(|(i, s)| async move {
            let (first, change) = &this.parts[*i];
            (*i, settle(this.conn, first.identifier(), change, s).await)
        }))
        .await;
        let mut applied = Vec::new();
        for (i, settled) in settled {
            match settled {
                Settled::Applied(table) => applied.push((i, *table)),
                Settled::NotApplied => {}
                Settled::Unknown => return None,
            }
        }
        if applied.is_empty() {
            return Some(false);
        }
        if applied.len() < staged.len() {
            return None;
        }
        for (i, table) in applied {
            expire_metadata_files(&self.bases[i], &table).await;
            self.results[i] = Some(Ok(table));
        }
        Some(true)
    }

    /// Every staged part fails with `error`.
    fn fail(&mut self, staged: &[(usize, Staged)], error: &Error) {
        for (i, _) in staged {
            self.results[*i] = Some(Err(error.shared()));
        }
    }

    async fn remove(&self, staged: &[(usize, Staged)]) {
        join_all(staged.iter().map(|(i, s)| s.remove(&self.bases[*i]))).await;
    }

    /// Tells each staged part's change of a fault the group commit got past.
    fn got_past(&self, staged: &[(usize, Staged)], what: &str) {
        let names: Vec<String> =
            staged.iter().map(|(i, _)| self.parts[*i].0.identifier().to_string()).collect();
        let what = format!("commit to {} together: {what}", names.join(", "));
        for (i, _) in staged {
            self.parts[*i].1.got_past(&what);
        }
    }

    fn results(self) -> Vec<Result<Table>> {
        let unsettled = || {
            Err(Error::commit(ErrorKind::CommitUnknown, "a group commit ended without an outcome"))
        };
        self.results.into_iter().map(|r| r.unwrap_or_else(unsettled)).collect()
    }
}
