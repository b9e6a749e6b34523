//! The change stream of one collection: opened with `fullDocument: updateLookup`, resumed after a
//! stored token; resume tokens travel as raw BSON documents (that is how checkpoints keep them).

use bson::{RawDocumentBuf, Timestamp, doc};
use mongodb::ClientSession;
use mongodb::change_stream::event::{ChangeStreamEvent, ResumeToken};
use mongodb::change_stream::session::SessionChangeStream;
use mongodb::options::FullDocumentType;

use super::client::MongoSource;
use crate::{Error, ErrorKind, Result};

/// One change event, the document as raw BSON.
pub type Event = ChangeStreamEvent<RawDocumentBuf>;

/// How long the server may hold a read of an idle stream: an idle stream still answers this
/// often, so a stream that stays silent much longer has stalled (see [`SILENT_LIMIT`]).
pub const MAX_AWAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A stream that gives nothing (not even an empty answer) for this long has stalled; the sync
/// opens it again from its checkpoint.
pub const SILENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A change stream and the session it reads in. An update event's document is looked up when
/// the server answers the read that returns it, so it can hold later changes than the event;
/// the session's cluster time after that read bounds how much later (see [`Read::Event`]).
pub struct Watched {
    stream: SessionChangeStream<Event>,
    session: ClientSession,
    /// The session's last cluster time and its timestamp (read out once per new value).
    seen: Option<(mongodb::ClusterTime, Timestamp)>,
}

impl Watched {
    /// The stream's resume token now.
    pub fn resume_token(&self) -> Option<ResumeToken> {
        self.stream.resume_token()
    }

    /// The next event, if the server has one now (at most one read).
    pub async fn next_if_any(&mut self) -> Result<Option<Event>, mongodb::error::Error> {
        self.stream.next_if_any(&mut self.session).await
    }

    /// The latest cluster time the server reported to this stream's reads.
    pub fn seen(&mut self) -> Option<Timestamp> {
        let current = self.session.cluster_time()?;
        if self.seen.as_ref().is_none_or(|(known, _)| known != current) {
            // The driver keeps the timestamp private; its BSON form names it.
            let time =
                bson::serialize_to_document(current).ok()?.get_timestamp("clusterTime").ok()?;
            self.seen = Some((current.clone(), time));
        }
        self.seen.as_ref().map(|(_, time)| *time)
    }
}

/// Opens the change stream of `database.collection` with `fullDocument: updateLookup`, after
/// `resume_after` when given. The driver's error is returned as is, so the caller can tell a
/// lost resume point from an unreachable server.
pub async fn watch(
    source: &MongoSource,
    database: &str,
    collection: &str,
    resume_after: Option<&RawDocumentBuf>,
) -> Result<Watched, mongodb::error::Error> {
    open(source, database, Some(collection), resume_after).await
}

/// Opens the change stream of a whole database (`db.watch()`), `fullDocument: updateLookup`,
/// after `resume_after` when given.
pub async fn watch_database(
    source: &MongoSource,
    database: &str,
    resume_after: Option<&RawDocumentBuf>,
) -> Result<Watched, mongodb::error::Error> {
    open(source, database, None, resume_after).await
}

/// The stream of `database.collection`, or of the whole database, in a session of its own.
async fn open(
    source: &MongoSource,
    database: &str,
    collection: Option<&str>,
    resume_after: Option<&RawDocumentBuf>,
) -> Result<Watched, mongodb::error::Error> {
    let client = source.client().await.map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
    let token = resume_after
        .map(token_from_raw)
        .transpose()
        .map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
    let mut session = client.start_session().causal_consistency(false).await?;
    let database = client.database(database);
    let stream = match collection {
        Some(name) => {
            let collection = database.collection::<RawDocumentBuf>(name);
            configured(collection.watch(), token, &mut session).await?
        }
        None => configured(database.watch(), token, &mut session).await?.with_type::<Event>(),
    };
    Ok(Watched { stream, session, seen: None })
}

/// `watch` with misql's options, in `session`.
async fn configured<T>(
    watch: mongodb::action::Watch<'_, T>,
    token: Option<ResumeToken>,
    session: &mut ClientSession,
) -> Result<SessionChangeStream<ChangeStreamEvent<T>>, mongodb::error::Error>
where
    T: serde::de::DeserializeOwned + Unpin + Send + Sync,
{
    watch
        .full_document(FullDocumentType::UpdateLookup)
        .resume_after(token)
        .max_await_time(MAX_AWAIT)
        .session(session)
        .await
}

/// A resume token as a raw BSON document, for the checkpoint.
pub fn token_to_raw(token: &ResumeToken) -> Result<RawDocumentBuf> {
    bson::serialize_to_raw_document_buf(token).map_err(|e| {
        let message = format!("the server's resume token cannot be stored: {e}");
        Error::remote(ErrorKind::Permanent, message)
    })
}

/// A resume token back from its raw BSON document.
pub fn token_from_raw(raw: &RawDocumentBuf) -> Result<ResumeToken> {
    bson::deserialize_from_slice(raw.as_bytes()).map_err(|e| {
        let message = format!("the stored resume token is unreadable: {e}");
        Error::remote(ErrorKind::Permanent, message)
    })
}

/// The deployment's cluster time now (the `operationTime` of a `ping`); `None` when the server
/// does not report one.
pub async fn cluster_time(source: &MongoSource) -> Option<Timestamp> {
    let client = source.client().await.ok()?;
    let reply = client.database("admin").run_command(doc! { "ping": 1 }).await.ok()?;
    reply.get_timestamp("operationTime").ok()
}

/// How often a deployment's change history is measured: on mongod the oldest oplog entry is
/// one read, but a server that scans its oplog for it (SecantusDB: about 3 s for 100k entries,
/// blocking every client) must not be asked often.
pub const HISTORY_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// How much change history the deployment keeps now: from the oldest entry of its oplog
/// (`local.oplog.rs`, first in natural order) to the cluster time now; measured at most every
/// [`HISTORY_EVERY`] per deployment. `None` where the user may not read it (or the server has
/// no oplog).
pub async fn history_window(source: &MongoSource) -> Option<std::time::Duration> {
    if let Some(window) = source.history_measured(HISTORY_EVERY) {
        return window;
    }
    let window = measure_history(source).await;
    source.set_history(window);
    window
}

async fn measure_history(source: &MongoSource) -> Option<std::time::Duration> {
    let client = source.client().await.ok()?;
    let oplog = client.database("local").collection::<bson::Document>("oplog.rs");
    let oldest = oplog.find_one(doc! {}).projection(doc! { "ts": 1 }).await.ok()??;
    let oldest = oldest.get_timestamp("ts").ok()?;
    let now = cluster_time(source).await?;
    Some(std::time::Duration::from_secs(u64::from(now.time.saturating_sub(oldest.time))))
}

/// What the reader of a change stream hands over.
pub enum Read {
    /// An event, the stream's resume token right after it, and the server's cluster time when
    /// it answered the read that returned the event: an update's looked-up document holds no
    /// change made after that time.
    Event(Box<Event>, Option<ResumeToken>, Option<Timestamp>),
    /// No event for now, and the stream's resume token (an idle stream's token moves too). The
    /// instant is when the empty read was asked for: every change committed before then has
    /// been handed over (a copy's chunk read at a cluster time known before it may be merged).
    /// The cluster time is the server's when it answered: every change up to it was handed over.
    Idle(Option<ResumeToken>, std::time::Instant, Option<Timestamp>),
    /// A shared stream (a database's) handed over every change of this reader up to this
    /// cluster time and resume token; changes of other collections went past.
    Passed(Timestamp, Option<ResumeToken>),
    /// The stream failed; nothing follows.
    Failed(mongodb::error::Error),
    /// A database stream's router cut the stream here for a group commit of the database's
    /// tables: every change before it is in the batch, none after.
    Cut(GroupCut),
}

/// A point in a database's stream where every table of the database commits together.
#[derive(Debug, Clone)]
pub struct GroupCut {
    /// Its number, in the order cuts are made.
    pub epoch: u64,
    /// The cluster time the tables are exact at with it (every change up to it, no part of a
    /// transaction, no document looked up later); `None` when the cut could not wait for a
    /// consistent point (a transaction larger than `max_transaction_rows`, or a stream behind
    /// its documents' lookups for longer than `flush_interval`).
    pub exact: Option<Timestamp>,
    /// The stream's position at the cut.
    pub token: Option<ResumeToken>,
}

/// Events buffered between the reader and the batching loop.
const READ_AHEAD: usize = 4096;

/// Reads a change stream in a task of its own, so that the batching loop can wait for it with a
/// timeout, or stop, without ever dropping a read midway (the driver resumes a stream after a
/// network error inside `next_if_any`; a read cut off by a timeout while it resumes can leave
/// the stream stalled). The task ends with the reader.
pub struct Reader {
    rx: Reads,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Where a [`Reader`]'s reads come from: its own task (bounded read-ahead), or a router that
/// shares one stream among several readers.
enum Reads {
    Own(tokio::sync::mpsc::Receiver<Read>),
    Routed(tokio::sync::mpsc::UnboundedReceiver<Read>),
}

impl Reader {
    /// Starts reading `stream`.
    pub fn spawn(mut stream: Watched) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let task = tokio::spawn(async move {
            loop {
                let asked = std::time::Instant::now();
                let read = match stream.next_if_any().await {
                    Ok(Some(event)) => {
                        tracing::trace!("change stream: {:?} event", event.operation_type);
                        Read::Event(Box::new(event), stream.resume_token(), stream.seen())
                    }
                    Ok(None) => {
                        tracing::trace!("change stream: nothing new");
                        Read::Idle(stream.resume_token(), asked, stream.seen())
                    }
                    Err(err) => Read::Failed(err),
                };
                let failed = matches!(read, Read::Failed(_));
                if tx.send(read).await.is_err() || failed {
                    return;
                }
            }
        });
        Self { rx: Reads::Own(rx), task: Some(task) }
    }

    /// Reads handed over by a router (see `sync::database::router`).
    pub fn from_channel(rx: tokio::sync::mpsc::UnboundedReceiver<Read>) -> Self {
        Self { rx: Reads::Routed(rx), task: None }
    }

    /// The next read (`None` once the reader stopped after a failure). Cancel-safe.
    pub async fn recv(&mut self) -> Option<Read> {
        match &mut self.rx {
            Reads::Own(rx) => rx.recv().await,
            Reads::Routed(rx) => rx.recv().await,
        }
    }

    /// Whether reads are waiting to be received: an idle read followed by more was idle only
    /// when it was made, and the reader is not caught up.
    pub fn has_queued(&self) -> bool {
        match &self.rx {
            Reads::Own(rx) => !rx.is_empty(),
            Reads::Routed(rx) => !rx.is_empty(),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
