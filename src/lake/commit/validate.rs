//! What must hold before a change is swapped in: files of the right content, position deletes
//! that still point at live data files after a rebase, and metadata that loads back.

use ::iceberg::TableIdent;
use ::iceberg::spec::{DataContentType, DataFile, TableMetadata};
use ::iceberg::table::Table;

use crate::lake::lineage::{committed_since, data_files_removed};
use crate::{Error, ErrorKind, Result};

/// Data files must hold data; delete files, deletes (equality deletes with their field ids).
pub(super) fn check_contents(
    name: &TableIdent,
    data: &[DataFile],
    deletes: &[DataFile],
) -> Result<()> {
    if let Some(file) = data.iter().find(|f| f.content_type() != DataContentType::Data) {
        return Err(Error::internal(format!(
            "cannot commit `{}` to {name} as a data file: it holds {:?}",
            file.file_path(),
            file.content_type()
        ))
        .with_hint("pass delete files as delete_files"));
    }
    for file in deletes {
        match file.content_type() {
            DataContentType::Data => {
                return Err(Error::internal(format!(
                    "cannot commit `{}` to {name} as a delete file: it holds data",
                    file.file_path()
                ))
                .with_hint("pass data files as data_files"));
            }
            DataContentType::EqualityDeletes
                if file.equality_ids().is_none_or(|ids| ids.is_empty()) =>
            {
                return Err(Error::internal(format!(
                    "the equality delete file `{}` for {name} names no equality field ids",
                    file.file_path()
                ))
                .with_hint("write equality deletes with EqualityDeleteWriterConfig"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// After a lost compare-and-swap: position deletes stay right on the new base only if no commit
/// since `first_parent` removed data files (a rewrite moves the rows they point at: the change is
/// [`ErrorKind::Superseded`], to be computed again from the new table).
pub(super) fn check_no_data_files_removed(base: &Table, first_parent: Option<i64>) -> Result<()> {
    let name = base.identifier();
    let Some(since) = committed_since(base.metadata(), first_parent) else {
        return Err(Error::commit(
            ErrorKind::Conflict,
            format!(
                "cannot commit position deletes to {name}: its main branch no longer descends from \
                 snapshot {}, which they were written against",
                first_parent.unwrap_or_default()
            ),
        )
        .with_hint("rerun from the last checkpoint"));
    };
    if let Some(snapshot) = since.into_iter().find(|s| data_files_removed(s) > 0) {
        return Err(Error::commit(
            ErrorKind::Superseded,
            format!(
                "cannot commit position deletes to {name}: a concurrent {} commit (snapshot {}) \
                 removed {} data files, which the deletes may point into",
                snapshot.summary().operation.as_str(),
                snapshot.snapshot_id(),
                data_files_removed(snapshot)
            ),
        )
        .with_hint(
            "rerun from the last checkpoint; the rows are read again from the new table state",
        ));
    }
    Ok(())
}

/// The new metadata must load back with the parser that reads it later (iceberg-rust parses
/// metadata JSON with serde_json's default recursion limit of 128): a table is never moved to,
/// or created in, a state that no reader can open.
pub fn check_loads_back(name: &TableIdent, metadata: &TableMetadata) -> Result<()> {
    let json = serde_json::to_vec(metadata)
        .map_err(|e| Error::internal(format!("cannot encode the new metadata of {name}: {e}")))?;
    serde_json::from_slice::<TableMetadata>(&json).map_err(|e| {
        Error::user(format!(
            "the new metadata of {name} would not load back ({e}); nothing was committed"
        ))
        .with_hint(
            "a schema nested this deep cannot be read back by Iceberg readers; select the deep \
             field as text (to_json) or leave it out",
        )
    })?;
    Ok(())
}
