//! CHECK SYNC and `misql --check`: each sync's table compared with its collection
//! ([`crate::sync::check`]), as one result table.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};

use super::show::rows;
use super::sync::unknown_sync;
use super::{Output, Session};
use crate::sql::CreateSync;
use crate::{Error, Result};

impl Session {
    /// CHECK SYNC name: compares the sync's table with its collection (see `sync::check`).
    pub(super) async fn check_sync(&mut self, name: &str) -> Result<Output> {
        let entry = self.syncs.get(name).ok_or_else(|| unknown_sync(name))?;
        if entry.database.is_some() {
            return Err(Error::user(format!(
                "sync {name} is a database sync; CHECK SYNC compares one collection's sync"
            ))
            .with_hint("name the sync of one collection, as SHOW SYNCS lists it"));
        }
        let create = entry.create.clone();
        self.check_syncs(&[create]).await
    }

    /// Compares each sync's table with its collection, without running the syncs: one row per
    /// `_id` range (sync, range, missing, extra, different, example); the output is a failure
    /// when any differs.
    pub async fn check_syncs(&mut self, creates: &[CreateSync]) -> Result<Output> {
        let mut columns: [Vec<String>; 3] = Default::default();
        let mut counts: [Vec<u64>; 3] = Default::default();
        let mut differing = Vec::new();
        for create in creates {
            let sync = self.builder().build(create).await?;
            for report in crate::sync::check::check(&sync).await? {
                if report.differs() {
                    differing.push(format!("{} {}", sync.name, report.range));
                }
                columns[0].push(sync.name.clone());
                columns[1].push(report.range.clone());
                columns[2].push(report.examples());
                let found = [&report.missing, &report.extra, &report.different];
                for (count, keys) in counts.iter_mut().zip(found) {
                    count.push(keys.len() as u64);
                }
            }
        }
        let text = |values: &Vec<String>| Arc::new(StringArray::from(values.clone())) as ArrayRef;
        let number = |values: &Vec<u64>| {
            Arc::new(arrow::array::UInt64Array::from(values.clone())) as ArrayRef
        };
        let batch = RecordBatch::try_from_iter([
            ("sync", text(&columns[0])),
            ("range", text(&columns[1])),
            ("missing", number(&counts[0])),
            ("extra", number(&counts[1])),
            ("different", number(&counts[2])),
            ("example", text(&columns[2])),
        ])?;
        let Output::Rows(stream) = rows(batch)? else { unreachable!("rows gives rows") };
        if differing.is_empty() {
            return Ok(Output::Rows(stream));
        }
        let error = Error::user(format!(
            "the table differs from its collection in {}",
            differing.join(", ")
        ))
        .with_hint("REFRESH SYNC copies the collection again under the running sync, repairing it");
        Ok(Output::Differs(stream, error))
    }
}
