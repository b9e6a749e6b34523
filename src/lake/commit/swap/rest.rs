//! The swap in a REST catalog: `POST .../tables/<name>`, or, for several tables at once,
//! `POST .../transactions/commit`, sent through the connection's [`RestSession`], and what the
//! catalog's answer means.

use ::iceberg::table::Table;
use iceberg_catalog_rest::CommitTableRequest;

use super::session::RestSession;
use super::{Proposal, Swap};
use crate::lake::rest_failure::{is_transient_status, oauth_error, refuses_credential};
use crate::{Error, ErrorKind, Result};

/// Commits `staged` on `base`: `POST {uri}/v1/{prefix}/namespaces/{ns}/tables/{table}`.
pub(super) async fn swap(session: &RestSession, base: &Table, staged: &Proposal) -> Result<Swap> {
    let name = base.identifier();
    let body = encode(&commit_request(base, staged), &name.to_string())?;
    let url =
        session.url(&["namespaces", &name.namespace().to_url_string(), "tables", name.name()]);
    let what = format!("the commit of {} to {name}", staged.what);
    send_commit(session, &url, body, &what, &name.to_string()).await
}

/// Every table's requirements and updates in one `POST /v1/{prefix}/transactions/commit` (a
/// `CommitTransactionRequest`, which iceberg-catalog-rest 0.10 has no type for): the catalog
/// applies all of them or none.
pub(super) async fn swap_all(session: &RestSession, parts: &[(&Table, &Proposal)]) -> Result<Swap> {
    let names: Vec<String> = parts.iter().map(|(t, _)| t.identifier().to_string()).collect();
    let names = names.join(", ");
    let changes: Vec<CommitTableRequest> =
        parts.iter().map(|(base, staged)| commit_request(base, staged)).collect();
    let body = encode(&serde_json::json!({ "table-changes": changes }), &names)?;
    let url = session.url(&["transactions", "commit"]);
    let what = format!("the commit of {} tables together ({names})", parts.len());
    send_commit(session, &url, body, &what, &names).await
}

/// Sends a commit (`what`, to the tables `to`) and says what the answer means. A token the
/// catalog refuses (401, 419: nothing was committed) is renewed once and the commit sent again.
async fn send_commit(
    session: &RestSession,
    url: &str,
    body: Vec<u8>,
    what: &str,
    to: &str,
) -> Result<Swap> {
    let mut renewed = false;
    let response = loop {
        let request = session.request(reqwest::Method::POST, url).await?.body(body.clone());
        let response = match session.send(request).await? {
            Ok(response) => response,
            // Not connected: the request never left.
            Err(e) if e.is_connect() || e.is_builder() => return Err(http_error(url, e)),
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
        if matches!(status, 401 | 419) && !renewed && session.refused().await {
            renewed = true;
            continue;
        }
        break response;
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
        _ => Err(refused(session, response, url, to).await),
    }
}

/// The error of a commit to `to` the catalog refused (`response`, not a 2xx, 409 or 5xx).
async fn refused(session: &RestSession, response: reqwest::Response, url: &str, to: &str) -> Error {
    let status = response.status().as_u16();
    let error_type = response.headers().get("x-amzn-errortype").cloned();
    let text = response.text().await.unwrap_or_default();
    let error_type = error_type.as_ref().and_then(|v| v.to_str().ok());
    let kind = status_kind(status);
    if let Some(said) = session.sigv4().and_then(|s| s.explain(status, error_type, &text)) {
        return Error::remote(kind, format!("cannot commit to {to}: {said}"));
    }
    let hint = match status {
        401 | 403 | 419 => "check the credential and token options",
        404 => "the table or namespace is gone from the catalog",
        _ => "nothing was committed",
    };
    Error::remote(
        kind,
        format!("the REST catalog refused the commit to {to} ({url}): {status}: {text}"),
    )
    .with_hint(hint)
}

/// The kind of an answer with HTTP `status` that is not a success: transient where the catalog
/// is busy or failing for now, else permanent.
pub(super) fn status_kind(status: u16) -> ErrorKind {
    if is_transient_status(status) { ErrorKind::Transient } else { ErrorKind::Permanent }
}

/// One table's part of a commit request.
fn commit_request(base: &Table, staged: &Proposal) -> CommitTableRequest {
    CommitTableRequest {
        identifier: Some(base.identifier().clone()),
        requirements: staged.requirements.clone(),
        updates: staged.updates.clone(),
    }
}

fn encode(request: &impl serde::Serialize, to: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(request)
        .map_err(|e| Error::internal(format!("cannot encode the commit to {to} as JSON: {e}")))
}

/// A token endpoint's answer `status` with `body`, not a token: a refused credential
/// (permanent), a catalog failing for now (transient), or another refusal (permanent).
pub(super) fn token_refused(endpoint: &str, status: u16, body: &str) -> Error {
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
    Error::remote(
        ErrorKind::Permanent,
        format!("the REST catalog's token endpoint {endpoint} answered {status}: {said}"),
    )
    .with_hint("check the credential, scope, audience and oauth2-server-uri options")
}

pub(super) fn http_error(url: &str, e: reqwest::Error) -> Error {
    Error::Unavailable {
        message: format!("cannot reach the REST catalog at {url}: {e}"),
        hint: Some("the sync retries from its checkpoint".to_string()),
    }
}
