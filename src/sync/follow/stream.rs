//! The change-stream side of the follow loop: opening the stream (from a position or from
//! now), reading it with a timeout, and what its errors mean (history lost, no change streams
//! at all, a stream gone silent).

use std::time::Duration;

use bson::{RawDocumentBuf, Timestamp};

use super::End;
use crate::mongo::change_stream::{Read, Reader, cluster_time, token_to_raw, watch};
use crate::sync::SyncTask;
use crate::sync::feed::Position;
use crate::{Error, Result};

/// Server error codes meaning the resume point is gone: ChangeStreamHistoryLost,
/// ChangeStreamFatalError, InvalidResumeToken.
const HISTORY_LOST: [i32; 3] = [286, 280, 260];

/// Server error codes meaning the deployment has no change streams at all: a standalone server
/// (40573), a server that does not know the stage (40324), or the command (59, 115).
const NO_CHANGE_STREAMS: [i32; 4] = [40573, 40324, 59, 115];

fn command_code(err: &mongodb::error::Error) -> Option<i32> {
    match err.kind.as_ref() {
        mongodb::error::ErrorKind::Command(command) => Some(command.code),
        _ => None,
    }
}

/// Whether `err` says the change stream cannot be resumed from its token.
pub(super) fn history_lost(err: &mongodb::error::Error) -> bool {
    command_code(err).is_some_and(|code| HISTORY_LOST.contains(&code))
}

/// Why the resume point is gone, for the log and the status.
pub(super) fn lost(err: &mongodb::error::Error) -> String {
    format!(
        "the change stream cannot resume from the saved token ({})",
        crate::error::mongo_reason(err)
    )
}

/// The reads of the stream: a change stream, or none on a deployment without them.
pub(super) enum Stream {
    Reading(Reader),
    Unfollowed(String),
}

/// Opens the stream at `from` (from now when `None`); with the token it starts at, when known,
/// and a cluster time at or before it. `Err(end)` when it cannot be resumed there.
pub(super) async fn open(
    sync: &SyncTask,
    from: Option<&Position>,
) -> Result<Result<(Stream, Option<RawDocumentBuf>, Option<Timestamp>), End>> {
    if let Some(feed) = &sync.feed {
        let from = from.cloned().unwrap_or_else(|| feed.start.clone());
        let time = from.time;
        return Ok(Ok((Stream::Reading(feed.reader(from)), None, time)));
    }
    let time = match from {
        Some(from) => from.time,
        None => cluster_time(&sync.source).await,
    };
    let token = from.map(|p| &p.token);
    match watch(&sync.source, &sync.database, &sync.collection, token).await {
        Ok(stream) => {
            let first = stream.resume_token().map(|t| token_to_raw(&t)).transpose()?;
            Ok(Ok((Stream::Reading(Reader::spawn(stream)), first, time)))
        }
        Err(err) if history_lost(&err) => Ok(Err(End::Recopy(lost(&err)))),
        Err(err) if command_code(&err).is_some_and(|c| NO_CHANGE_STREAMS.contains(&c)) => {
            let reason = format!(
                "the deployment has no change streams ({}): the collection is copied once and \
                 changes are not followed",
                crate::error::mongo_reason(&err)
            );
            tracing::warn!("sync {}: {reason}", sync.name);
            Ok(Ok((Stream::Unfollowed(reason), None, time)))
        }
        Err(err) => Err(sync.source.unreachable("opening the change stream", err)),
    }
}

/// The next read of the stream, or an elapsed timeout after `left` (pending forever when there
/// is no stream). Cancel-safe.
/// Whether `stream` has reads waiting to be received (see [`Reader::has_queued`]).
pub(super) fn has_queued(stream: &Stream) -> bool {
    matches!(stream, Stream::Reading(reader) if reader.has_queued())
}

pub(super) async fn next_read(
    stream: &mut Stream,
    left: Duration,
) -> Result<Option<Read>, tokio::time::error::Elapsed> {
    match stream {
        Stream::Reading(reader) => tokio::time::timeout(left, reader.recv()).await,
        Stream::Unfollowed(_) => tokio::time::timeout(left, std::future::pending()).await,
    }
}

pub(super) fn raw(
    token: Option<mongodb::change_stream::event::ResumeToken>,
) -> Result<Option<RawDocumentBuf>> {
    token.map(|t| token_to_raw(&t)).transpose()
}

/// The error for a change stream that gave nothing for `silent`: transient, so the sync opens
/// it again from its checkpoint.
pub(super) fn stalled(sync: &SyncTask, silent: Duration) -> Error {
    Error::Unavailable {
        message: format!(
            "the change stream of {}.{} gave nothing for {} s (not even an empty answer)",
            sync.database,
            sync.collection,
            silent.as_secs()
        ),
        hint: Some("the sync opens it again from its checkpoint".to_string()),
    }
}
