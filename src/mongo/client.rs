//! A MongoDB deployment attached under a name. The driver client is created on first use, so a
//! statement that never touches MongoDB never needs the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bson::{RawDocumentBuf, doc};
use futures::TryStreamExt;
use mongodb::Client;
use mongodb::options::ClientOptions;
use tokio::sync::OnceCell;

use super::infer::Inference;
use crate::{Error, Result};

/// Default number of documents sampled to infer a collection's schema.
pub const DEFAULT_SAMPLE_SIZE: usize = 1000;

/// How long to wait for a reachable server when the URI does not say
/// (`serverSelectionTimeoutMS`). The driver's own default of 30 s is long for a shell.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A sample size shared by the sources of one session that, when set, replaces each source's
/// own (`SET misql.sample_size = N`). Clones share the setting.
#[derive(Debug, Clone, Default)]
pub struct SampleSizeOverride(Arc<AtomicUsize>);

impl SampleSizeOverride {
    /// The overriding sample size, if one is set.
    pub fn get(&self) -> Option<usize> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// Sets (`Some`, at least 1) or clears (`None`) the override.
    pub fn set(&self, sample_size: Option<usize>) {
        self.0.store(sample_size.map_or(0, |n| n.max(1)), Ordering::Relaxed);
    }

    /// Sets the override until the returned guard is dropped — also when the statement that
    /// needed it is cancelled (Ctrl-C in the shell) — then puts the previous setting back.
    pub fn scoped(&self, sample_size: usize) -> ScopedSampleSize {
        let previous = self.get();
        self.set(Some(sample_size));
        ScopedSampleSize { setting: self.clone(), previous }
    }
}

/// Restores a [`SampleSizeOverride`] when dropped.
#[derive(Debug)]
pub struct ScopedSampleSize {
    setting: SampleSizeOverride,
    previous: Option<usize>,
}

impl Drop for ScopedSampleSize {
    fn drop(&mut self) {
        self.setting.set(self.previous);
    }
}

/// An attached MongoDB deployment.
#[derive(Debug)]
pub struct MongoSource {
    uri: String,
    sample_size: usize,
    sample_override: SampleSizeOverride,
    client: OnceCell<Client>,
    /// The change history last measured, and when (shared by the syncs of the deployment).
    history: std::sync::Mutex<Option<(std::time::Instant, Option<std::time::Duration>)>>,
}

impl MongoSource {
    /// The change history measured less than `fresh` ago (`Some(None)`: it could not be read),
    /// or `None` when it is to be measured again.
    pub fn history_measured(
        &self,
        fresh: std::time::Duration,
    ) -> Option<Option<std::time::Duration>> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.filter(|(at, _)| at.elapsed() < fresh).map(|(_, window)| window)
    }

    /// Keeps a measurement of the change history.
    pub fn set_history(&self, window: Option<std::time::Duration>) {
        *self.history.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), window));
    }

    /// A deployment at `uri`; nothing is contacted yet.
    pub fn new(uri: impl Into<String>, sample_size: usize) -> Self {
        Self {
            uri: uri.into(),
            sample_size,
            sample_override: SampleSizeOverride::default(),
            client: OnceCell::new(),
            history: std::sync::Mutex::new(None),
        }
    }

    /// The same source, its sample size replaced by `sample_override` whenever that is set.
    pub fn with_sample_override(mut self, sample_override: SampleSizeOverride) -> Self {
        self.sample_override = sample_override;
        self
    }

    /// The connection string, as attached.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Number of documents sampled to infer a schema: the session's override if set, else the
    /// size given at ATTACH.
    pub fn sample_size(&self) -> usize {
        self.sample_override.get().unwrap_or(self.sample_size)
    }

    /// The driver client, created on first call.
    pub async fn client(&self) -> Result<&Client> {
        self.client.get_or_try_init(|| connect(&self.uri)).await
    }

    /// Names of the databases, without MongoDB's own (`admin`, `config`, `local`).
    pub async fn database_names(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        let mut names = client
            .list_database_names()
            .await
            .map_err(|e| self.unreachable("listing databases", e))?;
        names.retain(|name| !matches!(name.as_str(), "admin" | "config" | "local"));
        names.sort();
        Ok(names)
    }

    /// Names of the collections of `database`, sorted.
    pub async fn collection_names(&self, database: &str) -> Result<Vec<String>> {
        let client = self.client().await?;
        let mut names = client
            .database(database)
            .list_collection_names()
            .await
            .map_err(|e| self.unreachable(&format!("listing collections of {database}"), e))?;
        names.retain(|name| !name.starts_with("system."));
        names.sort();
        Ok(names)
    }

    /// Samples up to `sample_size` documents of `database.collection` with `$sample` and infers
    /// their schema. `None` when the collection does not exist.
    pub async fn infer(
        &self,
        database: &str,
        collection: &str,
        sample_size: usize,
    ) -> Result<Option<Inference>> {
        let client = self.client().await?;
        let coll = client.database(database).collection::<bson::Document>(collection);
        let context = || format!("sampling {database}.{collection}");
        let pipeline = [doc! { "$sample": { "size": sample_size as i64 } }];
        let mut cursor = coll
            .aggregate(pipeline)
            .with_type::<RawDocumentBuf>()
            .await
            .map_err(|e| self.unreachable(&context(), e))?;
        let mut inference = Inference::new();
        while let Some(doc) = cursor.try_next().await.map_err(|e| Error::mongo(context(), e))? {
            inference.observe(&doc)?;
        }
        if inference.sampled() == 0
            && !self.collection_names(database).await?.iter().any(|c| c == collection)
        {
            return Ok(None);
        }
        Ok(Some(inference))
    }

    /// A driver error with a hint about where the URI comes from.
    pub fn unreachable(&self, doing: &str, source: mongodb::error::Error) -> Error {
        let err = Error::mongo(format!("{doing} at {}", redact(&self.uri)), source);
        if !is_connection_error(&err) {
            return err;
        }
        let Error::Mongo { source, .. } = &err else { return err };
        Error::Unavailable {
            message: format!(
                "cannot reach MongoDB: {doing} at {}: {}",
                redact(&self.uri),
                cause(source)
            ),
            hint: Some(
                "is the server running? Set MONGODB_URI or ATTACH 'mongodb://host:port' AS mongo (TYPE mongodb)"
                    .into(),
            ),
        }
    }
}

/// The short reason a server could not be reached: the driver's server-selection error lists
/// the whole topology; the first I/O error in it is what a user needs.
fn cause(source: &mongodb::error::Error) -> String {
    let text = source.to_string();
    for marker in
        ["Connection refused", "timed out", "No route to host", "failed to lookup address"]
    {
        if let Some(at) = text.find(marker) {
            let end = text[at..].find([',', '}']).map_or(text.len(), |e| at + e);
            return text[at..end].trim().to_string();
        }
    }
    match *source.kind {
        mongodb::error::ErrorKind::ServerSelection { .. } => "no server answered in time".into(),
        _ => text,
    }
}

/// Whether the error means the server could not be reached at all.
fn is_connection_error(err: &Error) -> bool {
    match err {
        Error::Mongo { source, .. } => matches!(
            *source.kind,
            mongodb::error::ErrorKind::ServerSelection { .. } | mongodb::error::ErrorKind::Io(_)
        ),
        _ => false,
    }
}

/// Parses the URI and builds a client; the driver connects lazily on the first operation.
async fn connect(uri: &str) -> Result<Client> {
    let mut options = ClientOptions::parse(uri)
        .await
        .map_err(|e| Error::mongo(format!("invalid connection string {}", redact(uri)), e))?;
    options.server_selection_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
    options.app_name.get_or_insert_with(|| "misql".to_string());
    Client::with_options(options).map_err(|e| Error::mongo("creating the MongoDB client", e))
}

/// The URI with any password replaced by `***`, for messages.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else { return uri.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => uri.to_string(),
    }
}
