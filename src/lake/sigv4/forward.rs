//! A signing forwarder on loopback for the requests of the iceberg-catalog-rest client.
//!
//! Why a forwarder: that client (0.10.1) takes a `reqwest::Client` (`with_client`) but has no
//! per-request hook, and reqwest 0.12 has no request middleware; the alternatives were to write
//! misql's own client for every catalog call (namespaces, tables, config, load, create, drop,
//! rename) or to fork the crate. So the REST client is pointed at `http://127.0.0.1:PORT/<path>`
//! and this task receives each request whole, signs it for the real catalog ([`SigV4::sign`]:
//! the real host, the body's hash) and sends it there over the real scheme (https for AWS),
//! then hands the answer back. misql's own requests (the commit and its settling reads) sign
//! directly and do not pass here.
//!
//! A refusal of the signature is noted on the [`SigV4`] and its body replaced by an Iceberg
//! `ErrorModel` whose message is the one-sentence explanation, so whichever call failed says
//! what is wrong. When the catalog cannot be reached, the connection to the client is closed
//! without an answer, so the client sees what it would have seen without the forwarder.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio::task::AbortHandle;

use super::SigV4;
use crate::{Error, Result};

/// Headers that belong to one connection and are not forwarded (RFC 9110 §7.6.1), plus the
/// ones the forwarder sets itself.
const NOT_FORWARDED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// A running forwarder; stops when dropped.
#[derive(Debug)]
pub struct Forwarder {
    /// The URI to give the REST client: `http://127.0.0.1:PORT` plus the catalog URI's path.
    pub local_uri: String,
    task: AbortHandle,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where requests go: the catalog's `scheme://authority` (the path comes with each request).
#[derive(Debug, Clone)]
struct Upstream {
    origin: String,
}

/// Starts a forwarder to the catalog at `upstream` (its `http(s)://host[:port][/path]`).
pub async fn start(
    upstream: &str,
    sigv4: Arc<SigV4>,
    client: reqwest::Client,
) -> Result<Forwarder> {
    let (origin, path) = split_uri(upstream)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| {
        Error::io("cannot listen on 127.0.0.1 for the catalog's signing forwarder", e)
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the signing forwarder's address", e))?
        .port();
    let state = Arc::new((Upstream { origin }, sigv4, client));
    let task = crate::listen::serve(listener, "catalog signing forwarder", move |request| {
        let state = state.clone();
        async move {
            let (upstream, sigv4, client) = &*state;
            forward(request, upstream, sigv4, client).await
        }
    });
    Ok(Forwarder { local_uri: format!("http://127.0.0.1:{port}{path}"), task: task.abort_handle() })
}

/// `https://host:port/a/b` → (`https://host:port`, `/a/b`).
fn split_uri(uri: &str) -> Result<(String, String)> {
    let bad = || {
        Error::user(format!("the catalog URI `{uri}` has no host")).with_hint(
            "e.g. ATTACH 'https://s3tables.us-east-1.amazonaws.com/iceberg' AS lake (...)",
        )
    };
    let (scheme, rest) = uri.split_once("://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(bad());
    }
    Ok((format!("{scheme}://{authority}"), path.trim_end_matches('/').to_string()))
}

/// One request: read whole, signed, sent on; its answer handed back. An `Err` closes the
/// client's connection without an answer (the catalog could not be reached).
async fn forward(
    request: Request<Incoming>,
    upstream: &Upstream,
    sigv4: &SigV4,
    client: &reqwest::Client,
) -> std::result::Result<Response<Full<Bytes>>, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(failed(400, &format!("the request body could not be read: {e}"))),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", upstream.origin);
    let mut headers = parts.headers;
    for name in NOT_FORWARDED {
        headers.remove(name);
    }
    if let Err(e) = sigv4.sign(parts.method.as_str(), &url, &mut headers, &body).await {
        let message = e.to_string();
        sigv4.note_refusal(&message);
        return Ok(failed(503, &message));
    }
    let answer = client.request(parts.method, &url).headers(headers).body(body).send().await?;
    let status = answer.status();
    let mut headers = answer.headers().clone();
    let body = answer.bytes().await?;
    let error_type = headers.get("x-amzn-errortype").and_then(|v| v.to_str().ok());
    let text = String::from_utf8_lossy(&body);
    if let Some(sentence) = sigv4.explain(status.as_u16(), error_type, &text) {
        tracing::warn!("{url}: {sentence}");
        sigv4.note_refusal(&sentence);
        return Ok(failed(status.as_u16(), &sentence));
    }
    for name in NOT_FORWARDED {
        headers.remove(name);
    }
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// An Iceberg `ErrorModel` answer with `status` and `message`.
fn failed(status: u16, message: &str) -> Response<Full<Bytes>> {
    let kind = match status {
        401 => "NotAuthorizedException",
        403 => "ForbiddenException",
        503 => "ServiceUnavailableException",
        _ => "BadRequestException",
    };
    let body = serde_json::json!({ "error": { "message": message, "type": kind, "code": status } });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::split_uri;

    #[test]
    fn a_catalog_uri_splits_into_origin_and_path() {
        let (origin, path) =
            split_uri("https://s3tables.us-east-1.amazonaws.com/iceberg/").unwrap();
        assert_eq!(origin, "https://s3tables.us-east-1.amazonaws.com");
        assert_eq!(path, "/iceberg");
        let (origin, path) = split_uri("http://127.0.0.1:8181").unwrap();
        assert_eq!((origin.as_str(), path.as_str()), ("http://127.0.0.1:8181", ""));
        assert!(split_uri("http:///x").is_err());
    }
}
