//! The compare-and-swap that makes a new table metadata current in the catalog, the last step of
//! every commit: for the embedded SQL catalog, the next metadata
//! file plus an `UPDATE iceberg_tables ... WHERE metadata_location = <current>` in a SQLite
//! transaction whose COMMIT is checked; for a REST catalog, a `POST .../tables/<name>` with the
//! proposal's requirements and updates.
//!
//! iceberg-rust 0.10.1 cannot do this for us: a `TableCommit` cannot be built outside the crate
//! and its transaction actions cannot be extended.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ::iceberg::table::Table;
use ::iceberg::{MetadataLocation, TableIdent};
use iceberg_catalog_rest::CommitTableRequest;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::Proposal;
use crate::iceberg::catalog::{CatalogKind, IcebergConnection, SQL_CATALOG_NAME, SQLITE_FILE_NAME};
use crate::iceberg::rest_failure::{is_transient_status, oauth_error, refuses_credential};
use crate::iceberg::retry::retry_transient;
use crate::iceberg::sigv4::SigV4;
use crate::{Error, ErrorKind, Result};

/// How long a SQLite write waits for a lock held by another process.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The REST spec version sent as `x-client-version` (what iceberg-catalog-rest sends).
const REST_SPEC_VERSION: &str = "0.14.1";
/// Timeout of one commit request to a REST catalog, unless the ATTACH option
/// [`REST_TIMEOUT_OPTION`] gives one.
const REST_TIMEOUT: Duration = Duration::from_secs(60);
/// ATTACH option: the timeout of a commit request to a REST catalog, in milliseconds (the name
/// Iceberg Java's HTTP client uses).
pub const REST_TIMEOUT_OPTION: &str = "rest.client.socket-timeout-ms";

/// What a compare-and-swap did.
pub(crate) enum Swap {
    /// The catalog now points at the new metadata.
    Done,
    /// Another writer committed first; nothing changed.
    Conflict,
    /// The catalog failed in a way that leaves open whether it committed (the error to report
    /// if it did not).
    Unknown(Error),
}

/// The catalog-specific half of a commit.
pub(crate) struct Committer(Kind);

enum Kind {
    Sql(SqlCommitter),
    Rest(Box<RestCommitter>),
}

impl Committer {
    /// A committer for `table` in the catalog of `conn`.
    pub(crate) fn new(conn: &IcebergConnection, table: &Table) -> Result<Self> {
        Ok(Self(match &conn.kind {
            CatalogKind::Sql { warehouse } => Kind::Sql(SqlCommitter::new(warehouse)),
            CatalogKind::Rest { uri } => {
                Kind::Rest(Box::new(RestCommitter::new(uri, table, conn.sigv4.clone())?))
            }
        }))
    }

    /// Makes `proposal` the table's metadata if the catalog still has `base`'s.
    pub(crate) async fn swap(&mut self, base: &Table, proposal: &Proposal) -> Result<Swap> {
        match &mut self.0 {
            Kind::Sql(sql) => sql.swap(base, proposal).await,
            Kind::Rest(rest) => rest.swap(base, proposal).await,
        }
    }
}

// ----- SQL catalog

/// Commits to misql's embedded SQL catalog: `<warehouse>/catalog.db`.
struct SqlCommitter {
    database: PathBuf,
}

impl SqlCommitter {
    fn new(warehouse: &Path) -> Self {
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
            return Err(Error::plan(format!(
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
    async fn swap(&mut self, base: &Table, staged: &Proposal) -> Result<Swap> {
        let name = base.identifier();
        let context = || format!("committing to {name}");
        let Some(current) = base.metadata_location() else {
            return Err(Error::plan(format!("{name} was loaded without a metadata location")));
        };
        let next = MetadataLocation::from_str(current)
            .map_err(|e| Error::iceberg(context(), e))?
            .with_next_version()
            .with_new_metadata(&staged.metadata);
        staged
            .metadata
            .write_to(base.file_io(), &next)
            .await
            .map_err(|e| Error::iceberg(context(), e))?;
        let next = next.to_string();

        let outcome = match self.update(name, current, &next).await {
            Ok(Some(swap)) => swap,
            // COMMIT failed (e.g. SQLITE_BUSY): see what the catalog holds now.
            Ok(None) => match self.current_location(name).await {
                Ok(Some(location)) if location == next => Swap::Done,
                Ok(_) => Swap::Conflict,
                Err(e) => return Ok(Swap::Unknown(e)),
            },
            Err(e) => {
                let _ = base.file_io().delete(&next).await;
                return Err(e);
            }
        };
        if let Swap::Conflict = outcome {
            let _ = base.file_io().delete(&next).await;
            if self.current_location(name).await?.is_none() {
                return Err(Error::plan(format!(
                    "cannot commit to {name}: the SQLite catalog `{}` has no such table",
                    self.database.display()
                ))
                .with_hint(format!(
                    "row-level commits go to the catalog file `{SQLITE_FILE_NAME}` in the \
                     warehouse directory; attach the warehouse directory, not another file"
                )));
            }
        }
        Ok(outcome)
    }

    /// The compare-and-swap itself, the same statement iceberg-catalog-sql runs (with the same
    /// namespace encoding: levels joined by `.`). `Ok(None)` when the COMMIT failed.
    async fn update(&self, name: &TableIdent, current: &str, next: &str) -> Result<Option<Swap>> {
        let mut connection = self.connect().await?;
        let mut transaction =
            connection.begin().await.map_err(|e| self.fail("cannot begin a transaction", e))?;
        let result = sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ?
             WHERE catalog_name = ? AND table_name = ? AND table_namespace = ?
               AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)
               AND metadata_location = ?",
        )
        .bind(next)
        .bind(current)
        .bind(SQL_CATALOG_NAME)
        .bind(name.name())
        .bind(name.namespace().join("."))
        .bind(current)
        .execute(&mut *transaction)
        .await
        .map_err(|e| self.fail(&format!("cannot update {name}"), e))?;
        let outcome = match result.rows_affected() {
            1 => match transaction.commit().await {
                Ok(()) => Some(Swap::Done),
                Err(e) => {
                    tracing::debug!(table = %name, error = %e, "COMMIT of a catalog update failed");
                    None
                }
            },
            0 => {
                let _ = transaction.rollback().await;
                Some(Swap::Conflict)
            }
            n => {
                let _ = transaction.rollback().await;
                return Err(Error::plan(format!(
                    "the SQLite catalog `{}` has {n} rows for {name}",
                    self.database.display()
                ))
                .with_hint("the catalog file is damaged; nothing was committed"));
            }
        };
        let _ = connection.close().await;
        Ok(outcome)
    }
}

// ----- REST catalog

/// Commits to a REST catalog: `POST {uri}/v1/{prefix}/namespaces/{ns}/tables/{table}`.
///
/// The settings come from the table's FileIO properties, which iceberg-catalog-rest fills with
/// the catalog's effective configuration (the server's defaults and overrides, such as
/// `prefix`, merged with the ATTACH options) plus the table's own config from `load_table`:
/// `prefix`, `token`, `credential`, `oauth2-server-uri`, `scope`, `audience`, `resource` and
/// `header.*`. With SigV4 every request (the token exchange too) is signed as the last step.
struct RestCommitter {
    uri: String,
    props: HashMap<String, String>,
    client: reqwest::Client,
    token: Option<String>,
    sigv4: Option<std::sync::Arc<SigV4>>,
}

impl RestCommitter {
    fn new(uri: &str, table: &Table, sigv4: Option<std::sync::Arc<SigV4>>) -> Result<Self> {
        let props = table.file_io().config().props().clone();
        let timeout = props
            .get(REST_TIMEOUT_OPTION)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map_or(REST_TIMEOUT, Duration::from_millis);
        let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| {
            Error::io("cannot set up an HTTP client for the REST catalog", std::io::Error::other(e))
        })?;
        let token = props.get("token").cloned();
        Ok(Self { uri: uri.trim_end_matches('/').to_string(), props, client, token, sigv4 })
    }

    fn url(&self, parts: &[&str]) -> String {
        let mut segments = vec![self.uri.as_str(), "v1"];
        if let Some(prefix) = self.props.get("prefix").filter(|p| !p.is_empty()) {
            segments.push(prefix.trim_matches('/'));
        }
        segments.extend_from_slice(parts);
        segments.join("/")
    }

    fn headers(&self) -> Result<reqwest::header::HeaderMap> {
        use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-client-version", HeaderValue::from_static(REST_SPEC_VERSION));
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(concat!("misql/", env!("CARGO_PKG_VERSION"))),
        );
        for (key, value) in &self.props {
            let Some(key) = key.strip_prefix("header.") else { continue };
            let (Ok(key), Ok(value)) = (HeaderName::from_str(key), HeaderValue::from_str(value))
            else {
                return Err(Error::plan(format!("the REST catalog header `{key}` is not valid"))
                    .with_hint("header.<name> options need a valid HTTP header name and value"));
            };
            headers.insert(key, value);
        }
        Ok(headers)
    }

    /// A bearer token: the configured `token`, else one from an OAuth2 client-credentials
    /// exchange of the configured `credential` (`client_id:secret` or `secret`); none without
    /// either. An exchange that fails for a moment (no answer, a 5xx) is tried again a few
    /// times before its error is returned.
    async fn bearer(&mut self) -> Result<Option<String>> {
        if self.token.is_some() {
            return Ok(self.token.clone());
        }
        let Some(credential) = self.props.get("credential") else { return Ok(None) };
        let endpoint = self
            .props
            .get("oauth2-server-uri")
            .cloned()
            .unwrap_or_else(|| format!("{}/v1/oauth/tokens", self.uri));
        let body = self.token_request(credential);
        let what = format!("the token exchange with {endpoint}");
        let token = retry_transient(&what, || self.exchange(&endpoint, &body)).await?;
        self.token = Some(token.clone());
        Ok(Some(token))
    }

    /// The form of an OAuth2 client-credentials exchange of `credential`.
    fn token_request(&self, credential: &str) -> String {
        let (client_id, secret) = match credential.split_once(':') {
            Some((id, secret)) => (Some(id), secret),
            None => (None, credential),
        };
        let mut form: Vec<(&str, &str)> =
            vec![("grant_type", "client_credentials"), ("client_secret", secret)];
        if let Some(id) = client_id {
            form.push(("client_id", id));
        }
        form.push(("scope", self.props.get("scope").map_or("catalog", String::as_str)));
        for key in ["audience", "resource"] {
            if let Some(value) = self.props.get(key) {
                form.push((key, value));
            }
        }
        form.iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// One token exchange at `endpoint`: the access token, or what its failure means.
    async fn exchange(&self, endpoint: &str, body: &str) -> Result<String> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        self.sign("POST", endpoint, &mut headers, body.as_bytes()).await?;
        let response = self
            .client
            .post(endpoint)
            .headers(headers)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| http_error(endpoint, e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| http_error(endpoint, e))?;
        if !status.is_success() {
            return Err(token_refused(endpoint, status.as_u16(), &text));
        }
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("access_token").and_then(|t| t.as_str()).map(str::to_string))
            .ok_or_else(|| {
                Error::plan(format!(
                    "the REST catalog's token endpoint {endpoint} sent no access_token: {text}"
                ))
            })
    }

    async fn swap(&mut self, base: &Table, staged: &Proposal) -> Result<Swap> {
        let name = base.identifier();
        let request = CommitTableRequest {
            identifier: Some(name.clone()),
            requirements: staged.requirements.clone(),
            updates: staged.updates.clone(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| {
            Error::io(format!("cannot encode the commit to {name}"), std::io::Error::other(e))
        })?;
        let url =
            self.url(&["namespaces", &name.namespace().to_url_string(), "tables", name.name()]);
        let mut headers = self.headers()?;
        if let Some(token) = self.bearer().await? {
            let bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"));
            headers.insert(reqwest::header::AUTHORIZATION, bearer.map_err(|_| bad_token())?);
        }
        let url = self.sign("POST", &url, &mut headers, &body).await?;
        let builder = self.client.post(url.clone()).headers(headers).body(body);
        let response = match builder.send().await {
            Ok(response) => response,
            // Not connected: the request never left.
            Err(e) if e.is_connect() => return Err(http_error(url.as_str(), e)),
            // The request may have reached the catalog before the connection failed.
            Err(e) => {
                let message = format!(
                    "the commit of {} to {name} was sent to the REST catalog, but no answer came \
                     back ({e}); whether it was committed is unknown",
                    staged.what
                );
                return Ok(Swap::Unknown(Error::commit(ErrorKind::CommitUnknown, message)));
            }
        };
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(Swap::Done),
            409 => Ok(Swap::Conflict),
            500 | 502 | 503 | 504 => {
                let text = response.text().await.unwrap_or_default();
                Ok(Swap::Unknown(
                    Error::commit(
                        ErrorKind::CommitUnknown,
                        format!(
                            "the REST catalog answered {status} to the commit of {} to {name}; \
                             whether it was committed is unknown: {}",
                            staged.what,
                            text.trim()
                        ),
                    )
                    .with_hint("the sync reads the table back and retries from its checkpoint"),
                ))
            }
            _ => {
                let error_type = response.headers().get("x-amzn-errortype").cloned();
                let text = response.text().await.unwrap_or_default();
                let error_type = error_type.as_ref().and_then(|v| v.to_str().ok());
                if let Some(said) =
                    self.sigv4.as_ref().and_then(|s| s.explain(status, error_type, &text))
                {
                    return Err(Error::plan(format!("cannot commit to {name}: {said}")));
                }
                let hint = match status {
                    401 | 403 | 419 => "check the credential and token options",
                    404 => "the table or namespace is gone from the catalog",
                    _ => "nothing was committed",
                };
                Err(Error::plan(format!(
                    "the REST catalog refused the commit to {name} ({url}): {status}: {text}"
                ))
                .with_hint(hint))
            }
        }
    }
}

impl RestCommitter {
    /// Signs a request to `url` with SigV4 when the catalog asks for it; returns `url` parsed,
    /// which is what is sent (and signed: percent-encoded as on the wire).
    async fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &mut reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<reqwest::Url> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| Error::plan(format!("the REST catalog URL `{url}` is not valid: {e}")))?;
        if let Some(sigv4) = &self.sigv4 {
            sigv4.sign(method, parsed.as_str(), headers, body).await?;
        }
        Ok(parsed)
    }
}

fn bad_token() -> Error {
    Error::plan("the REST catalog's token cannot be sent as an HTTP header")
        .with_hint("check the token option")
}

/// A token endpoint's answer `status` with `body`, not a token: a refused credential
/// (permanent), a catalog failing for now (transient), or another refusal (permanent).
fn token_refused(endpoint: &str, status: u16, body: &str) -> Error {
    let (oauth_error, description) = oauth_error(body);
    let said = description.or(oauth_error.clone()).unwrap_or_else(|| body.trim().to_string());
    if refuses_credential(status, oauth_error.as_deref(), true) {
        return Error::plan(format!(
            "the REST catalog refused the credential at {endpoint}: {status} ({said})"
        ))
        .with_hint("check the credential ('<client id>:<secret>') option");
    }
    if is_transient_status(status) {
        return Error::Unavailable {
            message: format!(
                "the REST catalog's token endpoint {endpoint} answered {status}: {said}"
            ),
            hint: Some("the catalog is busy or failing; the sync tries again".to_string()),
        };
    }
    Error::plan(format!("the REST catalog's token endpoint {endpoint} answered {status}: {said}"))
        .with_hint("check the credential, scope, audience and oauth2-server-uri options")
}

fn http_error(url: &str, e: reqwest::Error) -> Error {
    Error::Unavailable {
        message: format!("cannot reach the REST catalog at {url}: {e}"),
        hint: Some("the sync retries from its checkpoint".to_string()),
    }
}

/// `application/x-www-form-urlencoded` encoding of one key or value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
