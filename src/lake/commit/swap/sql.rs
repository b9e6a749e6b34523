//! The swap in misql's embedded SQL catalog (`<warehouse>/catalog.db`, pyiceberg's layout).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ::iceberg::table::Table;
use ::iceberg::{MetadataLocation, TableIdent};
use futures::future::join_all;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::{Proposal, SQLITE_BUSY_TIMEOUT, Swap};
use crate::lake::catalog::{SQL_CATALOG_NAME, SQLITE_FILE_NAME};
use crate::{Error, ErrorKind, Result};

/// Commits to misql's embedded SQL catalog: `<warehouse>/catalog.db`.
pub(super) struct SqlCommitter {
    database: PathBuf,
}

/// One table's pointer move: from its base's metadata file to the next one.
struct Move<'a> {
    name: &'a TableIdent,
    table: &'a Table,
    current: &'a str,
    next: String,
}

impl SqlCommitter {
    pub(super) fn new(warehouse: &Path) -> Self {
        Self { database: warehouse.join(SQLITE_FILE_NAME) }
    }

    fn fail(&self, what: &str, e: sqlx::Error) -> Error {
        Error::io(
            format!("{what} in the SQLite catalog `{}`", self.database.display()),
            std::io::Error::other(e),
        )
    }

    async fn connect(&self) -> Result<sqlx::SqliteConnection> {
        if !self.database.is_file() {
            return Err(Error::user(format!(
                "row-level commits go through the catalog file `{}`, which does not exist",
                self.database.display()
            ))
            .with_hint(format!(
                "attach the warehouse directory that holds {SQLITE_FILE_NAME} (a catalog file \
                 with another name, or outside the warehouse, is not supported for row-level \
                 commits yet)"
            )));
        }
        SqliteConnectOptions::new()
            .filename(&self.database)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .connect()
            .await
            .map_err(|e| self.fail("cannot open the catalog", e))
    }

    /// The table's current metadata location, `None` if the catalog has no such table.
    async fn current_location(&self, name: &TableIdent) -> Result<Option<String>> {
        let mut connection = self.connect().await?;
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT metadata_location FROM iceberg_tables
             WHERE catalog_name = ? AND table_name = ? AND table_namespace = ?
               AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)",
        )
        .bind(SQL_CATALOG_NAME)
        .bind(name.name())
        .bind(name.namespace().join("."))
        .fetch_optional(&mut connection)
        .await
        .map_err(|e| self.fail(&format!("cannot look up {name}"), e))?;
        let _ = connection.close().await;
        Ok(row.and_then(|(location,)| location))
    }

    /// Writes the next metadata file and swaps the catalog's pointer to it, if the catalog still
    /// points at the base's.
    pub(super) async fn swap(&self, base: &Table, staged: &Proposal) -> Result<Swap> {
        self.swap_all(&[(base, staged)]).await
    }

    /// Writes each table's next metadata file and swaps every pointer in one SQLite
    /// transaction, if the catalog still points at every base's.
    pub(super) async fn swap_all(&self, parts: &[(&Table, &Proposal)]) -> Result<Swap> {
        let mut moves = Vec::with_capacity(parts.len());
        for (base, staged) in parts {
            let name = base.identifier();
            let Some(current) = base.metadata_location() else {
                return Err(Error::internal(format!(
                    "{name} was loaded without a metadata location"
                )));
            };
            let next = MetadataLocation::from_str(current)
                .map_err(|e| Error::iceberg(format!("committing to {name}"), e))?
                .with_next_version()
                .with_new_metadata(&staged.metadata);
            moves.push((Move { name, table: base, current, next: next.to_string() }, next));
        }
        let written = join_all(
            parts
                .iter()
                .zip(&moves)
                .map(|((base, staged), (_, next))| staged.metadata.write_to(base.file_io(), next)),
        )
        .await;
        let moves: Vec<Move> = moves.into_iter().map(|(found, _)| found).collect();
        if let Some((found, Err(e))) = moves.iter().zip(written).find(|(_, w)| w.is_err()) {
            let context = format!("committing to {}", found.name);
            remove_next(&moves).await;
            return Err(Error::iceberg(context, e));
        }
        let outcome = match self.update(&moves).await {
            Ok(Some(swap)) => swap,
            // COMMIT failed (e.g. SQLITE_BUSY): see what the catalog holds now.
            Ok(None) => self.settle(&moves).await,
            Err(e) => {
                remove_next(&moves).await;
                return Err(e);
            }
        };
        if let Swap::Conflict = outcome {
            remove_next(&moves).await;
            for found in &moves {
                self.check_exists(found.name).await?;
            }
        }
        Ok(outcome)
    }

    /// After a COMMIT whose outcome is not known: what the catalog holds (all moved, none, or
    /// not readable).
    async fn settle(&self, moves: &[Move<'_>]) -> Swap {
        let mut moved = 0;
        for found in moves {
            match self.current_location(found.name).await {
                Ok(Some(location)) if location == found.next => moved += 1,
                Ok(_) => {}
                Err(e) => return Swap::Unknown(e),
            }
        }
        if moved == moves.len() { Swap::Done } else { Swap::Conflict }
    }

    /// An error when the catalog has no table `name` (a conflict on a table that is not there).
    async fn check_exists(&self, name: &TableIdent) -> Result<()> {
        if self.current_location(name).await?.is_some() {
            return Ok(());
        }
        Err(Error::user(format!(
            "cannot commit to {name}: the SQLite catalog `{}` has no such table",
            self.database.display()
        ))
        .with_hint(format!(
            "row-level commits go to the catalog file `{SQLITE_FILE_NAME}` in the warehouse \
             directory; attach the warehouse directory, not another file"
        )))
    }

    /// The compare-and-swap itself, the same statement iceberg-catalog-sql runs (with the same
    /// namespace encoding: levels joined by `.`), once per table in one transaction: every
    /// table moves or none. `Ok(None)` when the COMMIT failed.
    async fn update(&self, moves: &[Move<'_>]) -> Result<Option<Swap>> {
        let mut connection = self.connect().await?;
        let mut transaction =
            connection.begin().await.map_err(|e| self.fail("cannot begin a transaction", e))?;
        for found in moves {
            let name = found.name;
            let result = sqlx::query(
                "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ?
                 WHERE catalog_name = ? AND table_name = ? AND table_namespace = ?
                   AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)
                   AND metadata_location = ?",
            )
            .bind(&found.next)
            .bind(found.current)
            .bind(SQL_CATALOG_NAME)
            .bind(name.name())
            .bind(name.namespace().join("."))
            .bind(found.current)
            .execute(&mut *transaction)
            .await
            .map_err(|e| self.fail(&format!("cannot update {name}"), e))?;
            match result.rows_affected() {
                1 => {}
                0 => {
                    let _ = transaction.rollback().await;
                    return Ok(Some(Swap::Conflict));
                }
                n => {
                    let _ = transaction.rollback().await;
                    return Err(Error::remote(
                        ErrorKind::Permanent,
                        format!(
                            "the SQLite catalog `{}` has {n} rows for {name}",
                            self.database.display()
                        ),
                    )
                    .with_hint("the catalog file is damaged; nothing was committed"));
                }
            }
        }
        let outcome = match transaction.commit().await {
            Ok(()) => Some(Swap::Done),
            Err(e) => {
                tracing::debug!(error = %e, "COMMIT of a catalog update failed");
                None
            }
        };
        let _ = connection.close().await;
        Ok(outcome)
    }
}

/// Removes the next metadata files of a swap that did not happen, best effort.
async fn remove_next(moves: &[Move<'_>]) {
    join_all(moves.iter().map(|found| found.table.file_io().delete(&found.next))).await;
}
