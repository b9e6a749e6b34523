//! The swap in a REST catalog: `POST .../tables/<name>`, or, for several tables at once,
//! `POST .../transactions/commit`.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use ::iceberg::table::Table;
use iceberg_catalog_rest::CommitTableRequest;

use super::{Proposal, REST_SPEC_VERSION, REST_TIMEOUT, REST_TIMEOUT_OPTION, Swap};
use crate::lake::rest_failure::{is_transient_status, oauth_error, refuses_credential};
use crate::lake::retry::retry_transient;
use crate::lake::sigv4::SigV4;
use crate::{Error, ErrorKind, Result};

/// Commits to a REST catalog: `POST {uri}/v1/{prefix}/namespaces/{ns}/tables/{table}`.
///
/// The settings come from the table's FileIO properties, which iceberg-catalog-rest fills with
/// the catalog's effective configuration (the server's defaults and overrides, such as
/// `prefix`, merged with the ATTACH options) plus the table's own config from `load_table`:
/// `prefix`, `token`, `credential`, `oauth2-server-uri`, `scope`, `audience`, `resource` and
/// `header.*`. With SigV4 every request (the token exchange too) is signed as the last step.
pub(super) struct RestCommitter {
    uri: String,
    /// Whether the catalog commits several tables atomically (asked once).
    transactions: Option<bool>,
    props: HashMap<String, String>,
    client: reqwest::Client,
    token: Option<String>,
    sigv4: Option<std::sync::Arc<SigV4>>,
}

impl RestCommitter {
    pub(super) fn new(
        uri: &str,
        table: &Table,
        sigv4: Option<std::sync::Arc<SigV4>>,
    ) -> Result<Self> {
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
        let uri = uri.trim_end_matches('/').to_string();
        Ok(Self { uri, transactions: None, props, client, token, sigv4 })
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
                return Err(Error::user(format!("the REST catalog header `{key}` is not valid"))
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
                Error::user(format!(
                    "the REST catalog's token endpoint {endpoint} sent no access_token: {text}"
                ))
            })
    }

    pub(super) async fn swap(&mut self, base: &Table, staged: &Proposal) -> Result<Swap> {
        let name = base.identifier();
        let body = encode(&commit_request(base, staged), &name.to_string())?;
        let url =
            self.url(&["namespaces", &name.namespace().to_url_string(), "tables", name.name()]);
        let what = format!("the commit of {} to {name}", staged.what);
        self.send_commit(&url, body, &what, &name.to_string()).await
    }

    /// Every table's requirements and updates in one `POST /v1/{prefix}/transactions/commit`
    /// (a `CommitTransactionRequest`, which iceberg-catalog-rest 0.10 has no type for): the
    /// catalog applies all of them or none.
    pub(super) async fn swap_all(&mut self, parts: &[(&Table, &Proposal)]) -> Result<Swap> {
        let names: Vec<String> = parts.iter().map(|(t, _)| t.identifier().to_string()).collect();
        let names = names.join(", ");
        let changes: Vec<CommitTableRequest> =
            parts.iter().map(|(base, staged)| commit_request(base, staged)).collect();
        let body = encode(&serde_json::json!({ "table-changes": changes }), &names)?;
        let url = self.url(&["transactions", "commit"]);
        let what = format!("the commit of {} tables together ({names})", parts.len());
        self.send_commit(&url, body, &what, &names).await
    }

    /// Whether the catalog's config lists `POST /v1/{prefix}/transactions/commit` among its
    /// `endpoints` (asked once; a catalog that cannot be asked, or lists no endpoints, does not
    /// commit several tables atomically as far as misql knows).
    pub(super) async fn commits_transactions(&mut self) -> bool {
        if let Some(known) = self.transactions {
            return known;
        }
        let known = match self.endpoints().await {
            Ok(endpoints) => endpoints.iter().any(|e| e == TRANSACTIONS_ENDPOINT),
            Err(e) => {
                tracing::warn!("cannot read the REST catalog's config endpoints: {e}");
                return false;
            }
        };
        self.transactions = Some(known);
        known
    }

    /// The `endpoints` of the catalog's `GET /v1/config` answer (for the ATTACH's warehouse).
    async fn endpoints(&mut self) -> Result<Vec<String>> {
        let config = format!("{}/v1/config", self.uri);
        let mut url = reqwest::Url::parse(&config).map_err(|e| {
            Error::user(format!("the REST catalog URL `{config}` is not valid: {e}"))
        })?;
        if let Some(warehouse) = self.props.get("warehouse") {
            url.query_pairs_mut().append_pair("warehouse", warehouse);
        }
        let mut headers = self.headers()?;
        if let Some(token) = self.bearer().await? {
            let bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"));
            headers.insert(reqwest::header::AUTHORIZATION, bearer.map_err(|_| bad_token())?);
        }
        let url = self.sign("GET", url.as_str(), &mut headers, b"").await?;
        let response = self
            .client
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| http_error(url.as_str(), e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| http_error(url.as_str(), e))?;
        if !status.is_success() {
            return Err(Error::user(format!("GET {url} answered {status}: {}", text.trim())));
        }
        let config: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::user(format!("GET {url} answered no JSON ({e}): {text}")))?;
        let endpoints = config.get("endpoints").and_then(|e| e.as_array());
        Ok(endpoints.into_iter().flatten().filter_map(|e| e.as_str().map(str::to_string)).collect())
    }

    /// Sends a commit (`what`, to the tables `to`) and says what the answer means.
    async fn send_commit(
        &mut self,
        url: &str,
        body: Vec<u8>,
        what: &str,
        to: &str,
    ) -> Result<Swap> {
        let mut headers = self.headers()?;
        if let Some(token) = self.bearer().await? {
            let bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"));
            headers.insert(reqwest::header::AUTHORIZATION, bearer.map_err(|_| bad_token())?);
        }
        let url = self.sign("POST", url, &mut headers, &body).await?;
        let builder = self.client.post(url.clone()).headers(headers).body(body);
        let response = match builder.send().await {
            Ok(response) => response,
            // Not connected: the request never left.
            Err(e) if e.is_connect() => return Err(http_error(url.as_str(), e)),
            // The request may have reached the catalog before the connection failed.
            Err(e) => {
                let message = format!(
                    "{what} was sent to the REST catalog, but no answer came back ({e}); whether \
                     it was committed is unknown"
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
                            "the REST catalog answered {status} to {what}; whether it was \
                             committed is unknown: {}",
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
                    return Err(Error::user(format!("cannot commit to {to}: {said}")));
                }
                let hint = match status {
                    401 | 403 | 419 => "check the credential and token options",
                    404 => "the table or namespace is gone from the catalog",
                    _ => "nothing was committed",
                };
                Err(Error::user(format!(
                    "the REST catalog refused the commit to {to} ({url}): {status}: {text}"
                ))
                .with_hint(hint))
            }
        }
    }
}

/// The endpoint a REST catalog lists in its config when it commits several tables atomically.
const TRANSACTIONS_ENDPOINT: &str = "POST /v1/{prefix}/transactions/commit";

/// One table's part of a commit request.
fn commit_request(base: &Table, staged: &Proposal) -> CommitTableRequest {
    CommitTableRequest {
        identifier: Some(base.identifier().clone()),
        requirements: staged.requirements.clone(),
        updates: staged.updates.clone(),
    }
}

fn encode(request: &impl serde::Serialize, to: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(request).map_err(|e| {
        Error::io(format!("cannot encode the commit to {to}"), std::io::Error::other(e))
    })
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
            .map_err(|e| Error::user(format!("the REST catalog URL `{url}` is not valid: {e}")))?;
        if let Some(sigv4) = &self.sigv4 {
            sigv4.sign(method, parsed.as_str(), headers, body).await?;
        }
        Ok(parsed)
    }
}

fn bad_token() -> Error {
    Error::user("the REST catalog's token cannot be sent as an HTTP header")
        .with_hint("check the token option")
}

/// A token endpoint's answer `status` with `body`, not a token: a refused credential
/// (permanent), a catalog failing for now (transient), or another refusal (permanent).
fn token_refused(endpoint: &str, status: u16, body: &str) -> Error {
    let (oauth_error, description) = oauth_error(body);
    let said = description.or(oauth_error.clone()).unwrap_or_else(|| body.trim().to_string());
    if refuses_credential(status, oauth_error.as_deref(), true) {
        return Error::user(format!(
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
    Error::user(format!("the REST catalog's token endpoint {endpoint} answered {status}: {said}"))
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
