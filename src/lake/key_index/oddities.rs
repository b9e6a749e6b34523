//! The oddities met while indexing a table's keys (a key in more than one live row, a null
//! key): counted while reading, then refused or reported once per call.

use super::key::{Key, key_text};
use crate::{Error, Result};

/// Counts of oddities met while indexing, reported once per call.
#[derive(Debug, Default)]
pub(super) struct Oddities {
    pub(super) duplicates: u64,
    first_duplicate: Option<String>,
    pub(super) nulls: u64,
}

impl Oddities {
    pub(super) fn duplicate(&mut self, key: Option<Key<'_>>) {
        self.duplicates += 1;
        if self.first_duplicate.is_none() {
            self.first_duplicate = Some(key_text(key));
        }
    }

    /// A table with a key in more than one live row cannot be kept in sync: which row would an
    /// update replace? Two writers that copied the same rows leave such a table.
    pub(super) fn refuse_duplicates(&self, table: &str) -> Result<()> {
        if self.duplicates == 0 {
            return Ok(());
        }
        Err(Error::user(format!(
            "{table} has {} key(s) in more than one live row (for example {}): its rows are \
             duplicated, so it cannot be kept equal to its collection",
            self.duplicates,
            self.first_duplicate.as_deref().unwrap_or("?")
        ))
        .with_hint(
            "another process may have written the same sync; stop it, then CREATE OR REPLACE \
             SYNC copies the collection again into a fresh table",
        ))
    }

    pub(super) fn report(&self, what: &str) {
        if self.duplicates > 0 {
            tracing::warn!(
                duplicates = self.duplicates,
                example = self.first_duplicate.as_deref().unwrap_or(""),
                "{what}: {} key(s) were present in more than one live row; the row read last \
                 is kept in the key index",
                self.duplicates
            );
        }
        if self.nulls > 0 {
            tracing::warn!(
                nulls = self.nulls,
                "{what}: {} live row(s) have a null key and cannot be deleted by key",
                self.nulls
            );
        }
    }
}
