//! A REST catalog's HTTP session for commits, one per catalog connection: one HTTP client, the
//! bearer token (exchanged once, and again when it expires or the catalog refuses it), and
//! whether the catalog commits several tables at once (asked once).
//!
//! iceberg-catalog-rest does its own OAuth2 exchange, but its client and token are private to
//! the crate (`RestCatalog` exposes neither), and misql's commit cannot go through it: it sends
//! snapshots with delete files and multi-table transactions, which the crate's `TableCommit`
//! (not constructible outside the crate) cannot express. So the commit path authenticates
//! itself, with the same options (`token`, `credential`, `oauth2-server-uri`, `scope`, ...).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use super::rest::{http_error, token_refused};
use super::{REST_SPEC_VERSION, REST_TIMEOUT, REST_TIMEOUT_OPTION};
use crate::lake::retry::retry_transient;
use crate::lake::sigv4::SigV4;
use crate::{Error, ErrorKind, Result};

/// An exchanged token is renewed this long before the catalog said it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// The endpoint a REST catalog lists in its config when it commits several tables atomically.
const TRANSACTIONS_ENDPOINT: &str = "POST /v1/{prefix}/transactions/commit";

/// A bearer token from an OAuth2 exchange.
struct Token {
    value: String,
    /// When to exchange again (`None`: the catalog did not say).
    renew_at: Option<Instant>,
}

/// See the module documentation. The settings come from a table's FileIO properties, which
/// iceberg-catalog-rest fills with the catalog's effective configuration (the server's defaults
/// and overrides, such as `prefix`, merged with the ATTACH options): `prefix`, `token`,
/// `credential`, `oauth2-server-uri`, `scope`, `audience`, `resource`, `warehouse` and
/// `header.*`. With SigV4 every request (the token exchange too) is signed as the last step.
pub(crate) struct RestSession {
    uri: String,
    props: HashMap<String, String>,
    client: reqwest::Client,
    /// misql's headers and the `header.*` options, sent with every request.
    headers: HeaderMap,
    sigv4: Option<Arc<SigV4>>,
    exchanged: tokio::sync::Mutex<Option<Token>>,
    transactions: tokio::sync::OnceCell<bool>,
}

impl std::fmt::Debug for RestSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestSession").field("uri", &self.uri).finish_non_exhaustive()
    }
}

impl RestSession {
    pub(super) fn new(
        uri: &str,
        props: HashMap<String, String>,
        sigv4: Option<Arc<SigV4>>,
    ) -> Result<Self> {
        let timeout = props
            .get(REST_TIMEOUT_OPTION)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map_or(REST_TIMEOUT, Duration::from_millis);
        let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| {
            Error::io("cannot set up an HTTP client for the REST catalog", std::io::Error::other(e))
        })?;
        let uri = uri.trim_end_matches('/').to_string();
        let headers = headers(&props)?;
        Ok(Self {
            uri,
            props,
            client,
            headers,
            sigv4,
            exchanged: tokio::sync::Mutex::default(),
            transactions: tokio::sync::OnceCell::new(),
        })
    }

    pub(super) fn sigv4(&self) -> Option<&SigV4> {
        self.sigv4.as_deref()
    }

    /// `{uri}/v1/{prefix}/{parts...}`.
    pub(super) fn url(&self, parts: &[&str]) -> String {
        let mut segments = vec![self.uri.as_str(), "v1"];
        if let Some(prefix) = self.props.get("prefix").filter(|p| !p.is_empty()) {
            segments.push(prefix.trim_matches('/'));
        }
        segments.extend_from_slice(parts);
        segments.join("/")
    }

    /// A request to `url` with misql's headers, the `header.*` options and the bearer token.
    pub(super) async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder> {
        let url = reqwest::Url::parse(url).map_err(|e| {
            Error::internal(format!("the REST catalog URL `{url}` is not valid: {e}"))
        })?;
        let mut headers = self.headers.clone();
        if let Some(token) = self.bearer().await? {
            let bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::remote(
                    ErrorKind::Permanent,
                    "the REST catalog's token cannot be sent as an HTTP header",
                )
                .with_hint("check the token option")
            })?;
            headers.insert(AUTHORIZATION, bearer);
        }
        Ok(self.client.request(method, url).headers(headers))
    }

    /// Signs `request` with SigV4 when the catalog asks for it (over the URL as sent,
    /// percent-encoded as on the wire, and the body), then sends it.
    pub(super) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<std::result::Result<reqwest::Response, reqwest::Error>> {
        let mut request = match request.build() {
            Ok(request) => request,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(sigv4) = &self.sigv4 {
            let body = request.body().and_then(|b| b.as_bytes()).unwrap_or_default().to_vec();
            let (method, url) = (request.method().to_string(), request.url().to_string());
            sigv4.sign(&method, &url, request.headers_mut(), &body).await?;
        }
        Ok(self.client.execute(request).await)
    }

    /// A bearer token: the configured `token`, else one from an OAuth2 client-credentials
    /// exchange of the configured `credential` (`client_id:secret` or `secret`), kept until it
    /// expires or [`Self::refused`] drops it; none without either. An exchange that fails for a
    /// moment (no answer, a 5xx) is tried again a few times before its error is returned.
    async fn bearer(&self) -> Result<Option<String>> {
        if let Some(token) = self.props.get("token") {
            return Ok(Some(token.clone()));
        }
        let Some(credential) = self.props.get("credential") else { return Ok(None) };
        let mut exchanged = self.exchanged.lock().await;
        if let Some(token) = exchanged.as_ref()
            && token.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(Some(token.value.clone()));
        }
        let endpoint = self
            .props
            .get("oauth2-server-uri")
            .cloned()
            .unwrap_or_else(|| format!("{}/v1/oauth/tokens", self.uri));
        let what = format!("the token exchange with {endpoint}");
        let token = retry_transient(&what, || self.exchange(&endpoint, credential)).await?;
        let value = token.value.clone();
        *exchanged = Some(token);
        Ok(Some(value))
    }

    /// The catalog refused a request with a token (401, 419): drops an exchanged token, and
    /// says whether a new one can be had (a configured `token` cannot be renewed).
    pub(super) async fn refused(&self) -> bool {
        if self.props.contains_key("token") || !self.props.contains_key("credential") {
            return false;
        }
        *self.exchanged.lock().await = None;
        true
    }

    /// The form of an OAuth2 client-credentials exchange of `credential`.
    fn token_form<'a>(&'a self, credential: &'a str) -> Vec<(&'a str, &'a str)> {
        let (client_id, secret) = match credential.split_once(':') {
            Some((id, secret)) => (Some(id), secret),
            None => (None, credential),
        };
        let mut form = vec![("grant_type", "client_credentials"), ("client_secret", secret)];
        if let Some(id) = client_id {
            form.push(("client_id", id));
        }
        form.push(("scope", self.props.get("scope").map_or("catalog", String::as_str)));
        for key in ["audience", "resource"] {
            if let Some(value) = self.props.get(key) {
                form.push((key, value));
            }
        }
        form
    }

    /// One token exchange at `endpoint`: the access token, or what its failure means.
    async fn exchange(&self, endpoint: &str, credential: &str) -> Result<Token> {
        let url = reqwest::Url::parse(endpoint).map_err(|e| {
            Error::user(format!("the OAuth2 token endpoint `{endpoint}` is not valid: {e}"))
                .with_hint("check the oauth2-server-uri option")
        })?;
        let request = self.client.post(url).form(&self.token_form(credential));
        let response = self.send(request).await?.map_err(|e| http_error(endpoint, e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| http_error(endpoint, e))?;
        if !status.is_success() {
            return Err(token_refused(endpoint, status.as_u16(), &text));
        }
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let Some(value) = answer.get("access_token").and_then(|t| t.as_str()) else {
            return Err(Error::remote(
                ErrorKind::Permanent,
                format!(
                    "the REST catalog's token endpoint {endpoint} sent no access_token: {text}"
                ),
            ));
        };
        let renew_at = answer.get("expires_in").and_then(|s| s.as_u64()).map(|seconds| {
            Instant::now() + Duration::from_secs(seconds).saturating_sub(EXPIRY_MARGIN)
        });
        Ok(Token { value: value.to_string(), renew_at })
    }

    /// Whether the catalog's config lists `POST /v1/{prefix}/transactions/commit` among its
    /// `endpoints` (asked once per session; a catalog that cannot be asked now is asked again
    /// next time, and does not commit several tables atomically as far as misql knows).
    pub(super) async fn commits_transactions(&self) -> bool {
        let known = self.transactions.get_or_try_init(|| async {
            let endpoints = self.endpoints().await?;
            Ok::<_, Error>(endpoints.iter().any(|e| e == TRANSACTIONS_ENDPOINT))
        });
        match known.await {
            Ok(known) => *known,
            Err(e) => {
                tracing::warn!("cannot read the REST catalog's config endpoints: {e}");
                false
            }
        }
    }

    /// The `endpoints` of the catalog's `GET /v1/config` answer (for the ATTACH's warehouse).
    async fn endpoints(&self) -> Result<Vec<String>> {
        let config = format!("{}/v1/config", self.uri);
        let mut url = reqwest::Url::parse(&config).map_err(|e| {
            Error::user(format!("the REST catalog URL `{config}` is not valid: {e}"))
        })?;
        if let Some(warehouse) = self.props.get("warehouse") {
            url.query_pairs_mut().append_pair("warehouse", warehouse);
        }
        let url = url.to_string();
        let mut renewed = false;
        let response = loop {
            let request = self.request(reqwest::Method::GET, &url).await?;
            let response = self.send(request).await?.map_err(|e| http_error(&url, e))?;
            if matches!(response.status().as_u16(), 401 | 419) && !renewed && self.refused().await {
                renewed = true;
                continue;
            }
            break response;
        };
        let status = response.status();
        let text = response.text().await.map_err(|e| http_error(&url, e))?;
        if !status.is_success() {
            return Err(Error::remote(
                super::rest::status_kind(status.as_u16()),
                format!("GET {url} answered {status}: {}", text.trim()),
            ));
        }
        let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::remote(ErrorKind::Permanent, format!("GET {url} answered no JSON ({e}): {text}"))
        })?;
        let endpoints = config.get("endpoints").and_then(|e| e.as_array());
        Ok(endpoints.into_iter().flatten().filter_map(|e| e.as_str().map(str::to_string)).collect())
    }
}

/// misql's headers and the `header.*` options of `props`.
fn headers(props: &HashMap<String, String>) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("x-client-version", HeaderValue::from_static(REST_SPEC_VERSION));
    headers.insert(
        reqwest::header::USER_AGENT,
        HeaderValue::from_static(concat!("misql/", env!("CARGO_PKG_VERSION"))),
    );
    for (key, value) in props {
        let Some(key) = key.strip_prefix("header.") else { continue };
        let (Ok(key), Ok(value)) = (HeaderName::from_str(key), HeaderValue::from_str(value)) else {
            return Err(Error::user(format!("the REST catalog header `{key}` is not valid"))
                .with_hint("header.<name> options need a valid HTTP header name and value"));
        };
        headers.insert(key, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(props: &[(&str, &str)]) -> RestSession {
        let props = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        RestSession::new("http://catalog.test/", props, None).unwrap()
    }

    #[test]
    fn the_token_request_is_form_encoded_by_reqwest() {
        let session = session(&[("scope", "catalog write"), ("audience", "a&b")]);
        let request = session
            .client
            .post("http://catalog.test/v1/oauth/tokens")
            .form(&session.token_form("client:se=cret"))
            .build()
            .unwrap();
        let body = request.body().and_then(|b| b.as_bytes()).unwrap();
        assert_eq!(
            std::str::from_utf8(body).unwrap(),
            "grant_type=client_credentials&client_secret=se%3Dcret&client_id=client\
             &scope=catalog+write&audience=a%26b"
        );
        let content_type = request.headers().get(reqwest::header::CONTENT_TYPE).unwrap();
        assert_eq!(content_type, "application/x-www-form-urlencoded");
    }

    #[tokio::test]
    async fn only_an_exchanged_token_is_renewed_after_a_refusal() {
        assert!(session(&[("credential", "id:secret")]).refused().await);
        assert!(!session(&[("credential", "id:secret"), ("token", "t")]).refused().await);
        assert!(!session(&[]).refused().await);
    }

    #[test]
    fn urls_carry_the_prefix() {
        let session = session(&[("prefix", "/wh/")]);
        assert_eq!(
            session.url(&["transactions", "commit"]),
            "http://catalog.test/v1/wh/transactions/commit"
        );
    }
}
