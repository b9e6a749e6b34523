//! The follow loop: the change stream is read from the first second of a sync, and a copy of
//! the collection (a new sync's, or a re-copy's) runs beside it ([`crate::sync::copy`]). Each
//! round reads a batch — change events, last change per key wins, and the chunks of the copy
//! the stream has passed — then commits it: new data files plus position deletes for the rows
//! they replace, in one snapshot with the checkpoint (the stream's token and every range's
//! mark). Nothing is applied twice and nothing is lost: the token and the marks move only with
//! the data they cover.

mod apply;
mod changes;
pub(crate) mod cut;
mod read;
mod stream;
pub(crate) mod transaction;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{RawDocumentBuf, Timestamp};
use iceberg::table::Table;

use super::SyncTask;
use super::checkpoint::{Checkpoint, Phase};
use super::copy::merge::StreamPosition;
use super::copy::{Copy, CopyStart};
use super::database::group::{Group, Membership};
use super::feed::Position;
use super::sink::Sink;
use super::status::{SyncPhase, SyncStatus};
use crate::Result;
use crate::lake::key_index::KeyIndex;
use crate::lake::live::live_entries;
use crate::mongo::change_stream::{Read, cluster_time, history_window};
use apply::{apply, between_batches, reindex_if_moved, system_time};
use changes::Changes;
use cut::Cut;
use read::Batch;
use stream::{Stream, open};

/// Why the follow loop ended.
#[derive(Debug)]
pub enum End {
    /// Everything up to the start of the run is copied and applied (`--once`).
    Drained,
    /// The sync was stopped; what it had read is committed.
    Stopped,
    /// The collection of a database sync was dropped or renamed: its table is kept as it is.
    Dropped(String),
    /// The stream cannot continue from its position (history lost, collection dropped or
    /// renamed): the collection is copied again under a new stream.
    Recopy(String),
    /// The deployment has no change streams: the copy is complete and nothing follows.
    Unfollowed(String),
}

/// Where a run starts.
#[derive(Debug, Clone, Default)]
pub struct Start {
    /// The stream's position; `None`: from now.
    pub position: Option<Position>,
    /// The copy to make beside the stream, if any.
    pub copy: Option<CopyStart>,
    /// The table was left exact (its checkpoint has a valid-through time, or it is new); when
    /// not, it may hold documents read as late as now, and is exact again once the stream has
    /// passed now.
    pub exact: bool,
}

/// How often the sync looks at the source's change history (measured at most every
/// [`crate::mongo::change_stream::HISTORY_EVERY`] per deployment), from a minute after it starts.
const HISTORY_EVERY: Duration = Duration::from_secs(60);

/// How long a read waits, once the batch is due, for a consistent cut (the rest of an open
/// transaction comes at once, an idle answer within a second; a longer silence is caught by
/// `SILENT_LIMIT`).
const CUT_WAIT: Duration = Duration::from_secs(1);

/// Follows the stream from `start.position`, copying `start.copy` beside it. With `drain`,
/// returns once the copy is complete and every change made before the run began is applied
/// (at the first event after the cluster time at the start, or when the stream is idle);
/// otherwise runs until stopped, an error, or a stream that cannot continue.
pub async fn run(sync: &SyncTask, table: Table, start: Start, drain: bool) -> Result<End> {
    // A database sync's collection ends its drain when the database stream is idle.
    let stop_after =
        if drain && sync.feed.is_none() { cluster_time(&sync.source).await } else { None };
    let index = KeyIndex::build(&table, &sync.plan().key).await?;
    let index_bytes = index.heap_bytes() as u64;
    sync.status(|s| s.key_index_bytes = index_bytes);
    let (stream, token, time) = match open(sync, start.position.as_ref()).await? {
        Ok(opened) => opened,
        Err(end) => return Ok(end),
    };
    let copy = match start.copy {
        Some(copy) => Some(Copy::start(sync, copy).await?),
        None => None,
    };
    // Once the stream is open (its reader is dropped before the membership: a cut sent to a
    // reader that is gone never waits for it).
    let membership = sync.feed.as_ref().and_then(|f| f.group()).map(|g| g.join(&sync.collection));
    let mut cut = Cut::default();
    if !start.exact {
        cut.looked_up_by(cluster_time(&sync.source).await);
    }
    let mut follower = Follower {
        // A database stream may start before this table's checkpoint (another table needed
        // it): the events before it are already in the table.
        skip_before: sync.feed.as_ref().and(start.position.as_ref().and_then(|p| p.time)),
        sink: Sink::new(sync, table)?,
        sync,
        index,
        stream,
        copy,
        position: StreamPosition::default(),
        saved_token: start.position.map(|p| p.token),
        read_token: token,
        saved_time: time,
        last_commit: Instant::now(),
        last_heard: Instant::now(),
        history_checked: Some(Instant::now()),
        cut,
        held: None,
        inexact: false,
        membership,
    };
    follower.enter_phase();
    loop {
        let batch = follower.read_batch(drain, stop_after).await?;
        if let Some(end) = follower.commit_batch(batch, drain).await? {
            return Ok(end);
        }
    }
}

/// The state of a running follow loop.
struct Follower<'a> {
    sync: &'a SyncTask,
    sink: Sink<'a>,
    index: KeyIndex,
    stream: Stream,
    copy: Option<Copy>,
    position: StreamPosition,
    /// The token of the last commit.
    saved_token: Option<RawDocumentBuf>,
    /// The token after the last read.
    read_token: Option<RawDocumentBuf>,
    /// A cluster time at or before the saved token.
    saved_time: Option<Timestamp>,
    skip_before: Option<Timestamp>,
    last_commit: Instant,
    last_heard: Instant,
    /// When the source's change history was last measured.
    history_checked: Option<Instant>,
    /// Where the batch may end (whole transactions, documents no newer than the cut).
    cut: Cut,
    /// The first read of the next batch: the event before which the last batch ended.
    held: Option<Read>,
    /// A batch was committed without a consistent cut since the last one with.
    inexact: bool,
    /// The group of a database sync whose tables commit together (after `stream`: dropped
    /// after it).
    membership: Option<Membership>,
}

impl Follower<'_> {
    fn enter_phase(&self) {
        let phase = if self.copy.is_some() { SyncPhase::Copying } else { SyncPhase::Streaming };
        self.sync.status(|s| s.enter(phase));
    }

    /// The group the tables of a database sync commit together in, if they do.
    fn group(&self) -> Option<&Arc<Group>> {
        self.membership.as_ref().map(Membership::group)
    }

    /// Commits the batch (or, on an idle stream, the token now and then); then maintenance.
    /// Returns how the loop ends, if it does.
    async fn commit_batch(&mut self, batch: Batch, drain: bool) -> Result<Option<End>> {
        let token = self.read_token.clone().or_else(|| self.saved_token.clone());
        let finished = self.copy.as_ref().is_some_and(Copy::done);
        let (may_commit, cut) = self.commit_at_cut(batch.cut, batch.ended.is_some());
        let committed = if !may_commit {
            false
        } else if !batch.changes.is_empty() || finished {
            self.commit_changes(batch.changes, token, finished).await?;
            true
        } else {
            self.commit_idle(token, drain).await?
        };
        if let Some((group, epoch)) = cut
            && !committed
        {
            self.sink.at_cut_passed();
            group.pass(epoch, &self.sync.collection);
        }
        self.count_transactions();
        self.refresh_if_asked().await?;
        self.watch_history().await;
        let recopying = self.copy.as_ref().is_some_and(|c| c.recopy_after().is_some());
        between_batches(self.sync, &mut self.sink, &mut self.index, committed, recopying).await?;
        if let Some(end) = batch.ended {
            return Ok(Some(end));
        }
        if batch.stopping {
            return Ok(Some(End::Stopped));
        }
        if self.copy.is_none()
            && let Stream::Unfollowed(reason) = &self.stream
        {
            return Ok(Some(End::Unfollowed(reason.clone())));
        }
        Ok((drain && batch.caught_up && self.copy.is_none()).then_some(End::Drained))
    }

    /// Whether a batch that ended at group cut `cut` (`ended`: with its stream) may be
    /// committed. A group member commits at the group's cuts only (or alone at the end of its
    /// stream); a batch that ended without one (a stop that found none) is read again next
    /// time. At a cut the sink commits with the group, and the cut is returned, to be passed
    /// when nothing is committed.
    fn commit_at_cut(
        &mut self,
        cut: Option<u64>,
        ended: bool,
    ) -> (bool, Option<(Arc<Group>, u64)>) {
        let Some(group) = self.group().cloned() else { return (true, None) };
        match cut {
            Some(epoch) => {
                self.sink.at_cut(group.clone(), epoch);
                (true, Some((group, epoch)))
            }
            None => (ended, None),
        }
    }

    /// Commits the batch's changes with the checkpoint at `token` (`finished`: the copy beside
    /// the stream is complete, and ends with this commit).
    async fn commit_changes(
        &mut self,
        changes: Changes,
        token: Option<RawDocumentBuf>,
        finished: bool,
    ) -> Result<()> {
        if finished {
            self.sweep_recopy().await?;
        }
        self.saved_time = changes.latest.or(self.saved_time);
        if self.sync.feed.is_some() {
            // A database stream that goes back for another collection hands over these
            // events again: they are in the table.
            self.skip_before = self.skip_before.max(self.saved_time);
        }
        let checkpoint = self.checkpoint(token.as_ref(), finished, changes.earliest);
        apply(self.sync, &mut self.sink, &mut self.index, changes, &checkpoint).await?;
        self.committed(&checkpoint);
        if checkpoint.phase == Phase::Snapshot {
            crate::failpoint::failpoint("after-snapshot-commit");
        }
        self.saved_token = token;
        self.last_commit = Instant::now();
        if let Some(copy) = &self.copy {
            let (rows, remembered) = (copy.rows(), copy.remembered() as u64);
            self.sync.status(|s| {
                s.rows_copied = rows;
                s.copy_keys_remembered = remembered;
            });
        }
        if finished && let Some(copy) = self.copy.take() {
            copy.finish();
            self.sync.status(|s| s.copy_keys_remembered = 0);
            self.enter_phase();
        }
        Ok(())
    }

    /// An idle stream still moves its token: saves it, but not more often than flush_interval
    /// (and not in a `drain` run, which must commit nothing when nothing changed). Returns
    /// whether it committed.
    async fn commit_idle(&mut self, token: Option<RawDocumentBuf>, drain: bool) -> Result<bool> {
        if token == self.saved_token
            || token.is_none()
            || drain
            || self.last_commit.elapsed() < self.sync.create.options.flush_interval
        {
            return Ok(false);
        }
        let since = self.sink.table().metadata().current_snapshot_id();
        let checkpoint = self.checkpoint(token.as_ref(), false, None);
        self.sink.commit(&checkpoint).await?;
        self.committed(&checkpoint);
        reindex_if_moved(self.sync, since, None, self.sink.table(), &mut self.index).await?;
        self.saved_token = token;
        self.last_commit = Instant::now();
        Ok(true)
    }

    /// Transactions that ended are committed: with this batch, or (ended by an idle stream
    /// after their last part) with earlier ones.
    fn count_transactions(&mut self) {
        let counts = self.cut.transactions.take_counts();
        self.sync.status(|s| {
            s.transactions += counts.ended;
            s.transactions_split += counts.split;
            s.largest_transaction = s.largest_transaction.max(counts.largest as u64);
        });
    }

    /// After a commit of `checkpoint`: the cut starts again, and the status shows where the table
    /// is exact.
    fn committed(&mut self, checkpoint: &Checkpoint) {
        self.cut.committed();
        if let Some(time) = checkpoint.valid_through {
            self.inexact = false;
            self.sync.status(|s| s.valid_through = Some(system_time(time)));
        }
    }

    /// Measures the source's change history now and then, and warns when the sync's margin (the
    /// history left beyond its lag) falls under a quarter of it.
    async fn watch_history(&mut self) {
        if self.history_checked.is_some_and(|at| at.elapsed() < HISTORY_EVERY) {
            return;
        }
        self.history_checked = Some(Instant::now());
        let window = history_window(&self.sync.source).await;
        self.sync.status(|s| s.history_window = window);
        let now = std::time::SystemTime::now();
        let status = self.sync.registry.get(&self.sync.name, SyncStatus::clone);
        let Some(status) = status else { return };
        if let (Some(window), Some(margin)) = (window, status.history_margin(now))
            && margin < window / 4
        {
            tracing::warn!(
                "sync {}: {} s behind, and the source keeps {} s of change history: if the \
                 sync falls {} s further behind it must copy its collection again",
                self.sync.name,
                status.lag(now).as_secs(),
                window.as_secs(),
                margin.as_secs()
            );
        }
    }

    /// REFRESH SYNC: a re-copy over the live table, once no copy runs.
    async fn refresh_if_asked(&mut self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.copy.is_some() || !self.sync.refresh.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let after = self.sink.table().metadata().last_sequence_number();
        tracing::info!("sync {}: REFRESH: copying the collection again", self.sync.name);
        self.sync.status(|s| s.recopies += 1);
        let start = CopyStart { ranges: Vec::new(), recopy_after: Some(after), rows: 0 };
        self.copy = Some(Copy::start(self.sync, start).await?);
        self.enter_phase();
        Ok(())
    }

    /// At the end of a re-copy: deletes every row neither a chunk nor the stream wrote since it
    /// began (in the same commit as the end of the copy).
    async fn sweep_recopy(&mut self) -> Result<()> {
        let Some(after) = self.copy.as_ref().and_then(Copy::recopy_after) else { return Ok(()) };
        let old: std::collections::HashSet<String> = live_entries(self.sink.table())
            .await?
            .into_iter()
            .filter(|live| {
                live.entry.content_type() == iceberg::spec::DataContentType::Data
                    && live.entry.sequence_number().is_some_and(|s| s <= after)
            })
            .map(|live| live.entry.file_path().to_string())
            .collect();
        let gone = self.index.remove_in_files(&old);
        if !gone.is_empty() {
            tracing::info!(
                "sync {}: the re-copy deletes {} row(s) whose documents are gone",
                self.sync.name,
                gone.len()
            );
        }
        for location in gone {
            self.sink.delete(location);
        }
        Ok(())
    }

    /// The checkpoint at `token`; `finished`: the copy is complete with this commit.
    fn checkpoint(
        &self,
        token: Option<&RawDocumentBuf>,
        finished: bool,
        first_change: Option<Timestamp>,
    ) -> Checkpoint {
        let valid_through = self.cut.exact().flatten().filter(|_| self.copy.is_none() || finished);
        let sync = self.sync;
        let copying = self.copy.as_ref().filter(|_| !finished);
        let rows = match &self.copy {
            Some(copy) => copy.rows(),
            None => sync.registry.get(&sync.name, |s| s.rows_copied).unwrap_or(0),
        };
        Checkpoint {
            sync: sync.name.clone(),
            definition_hash: sync.plan().definition_hash.clone(),
            phase: if copying.is_some() { Phase::Snapshot } else { Phase::Streaming },
            ranges: copying.map(|c| c.ranges().to_vec()).unwrap_or_default(),
            resume_token: token.cloned(),
            rows,
            resume_time: self.saved_time,
            recopy_after: copying.and_then(Copy::recopy_after),
            valid_through,
            first_change,
        }
    }
}
