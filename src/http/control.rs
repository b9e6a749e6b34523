//! Control of a running daemon over `--http`: `POST /syncs/NAME/stop`, `/start` and `/refresh`
//! (as Kafka Connect's REST API pauses, resumes and restarts connectors). A daemon started with
//! `-f` has no shell; these run the same statements as STOP SYNC, START SYNC and REFRESH SYNC.
//! Control is refused unless the request carries `Authorization: Bearer <token>` with the token
//! given by `--http-token` (or `--http-token-file`); without a token it is off. The metrics and
//! health endpoints stay open.

use std::time::Duration;

use sqlparser::ast::Ident;
use tokio::sync::{mpsc, oneshot};

use crate::sql::Statement;

/// How long a control request waits for the daemon to carry it out (a stop commits first).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// One control request, carried out by the daemon's loop.
pub struct ControlRequest {
    /// The statement to run.
    pub statement: Statement,
    /// Where the outcome goes: the confirmation, or the error as the user reads it.
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// What the HTTP server needs to accept control requests.
#[derive(Clone)]
pub struct Control {
    token: String,
    requests: mpsc::Sender<ControlRequest>,
}

impl Control {
    /// Control with `token`, and the receiver the daemon takes requests from. An empty token
    /// is refused by the caller.
    pub fn new(token: String) -> (Self, mpsc::Receiver<ControlRequest>) {
        let (requests, receiver) = mpsc::channel(16);
        (Self { token, requests }, receiver)
    }
}

/// An answer: HTTP status and JSON body.
pub type Answer = (hyper::StatusCode, String);

fn json(status: hyper::StatusCode, key: &str, text: &str) -> Answer {
    (status, format!("{}\n", serde_json::json!({ key: text })))
}

/// The statement a control path names: `/syncs/NAME/stop|start|refresh`.
pub fn statement(path: &str) -> Option<Statement> {
    let rest = path.strip_prefix("/syncs/")?;
    let (name, action) = rest.rsplit_once('/')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let name = Ident::new(name);
    match action {
        "stop" => Some(Statement::StopSync { name }),
        "start" => Some(Statement::StartSync { name }),
        "refresh" => Some(Statement::RefreshSync { name }),
        _ => None,
    }
}

/// Whether `header` (the Authorization header's value) carries the token, compared in time
/// independent of where the first difference is.
fn authorized(token: &str, header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else { return false };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Carries out a control request for `statement`, or says why not.
pub async fn handle(
    control: Option<&Control>,
    authorization: Option<&str>,
    statement: Statement,
) -> Answer {
    use hyper::StatusCode;
    let Some(control) = control else {
        return json(
            StatusCode::FORBIDDEN,
            "error",
            "control is off: start misql with --http-token (or --http-token-file) to allow it",
        );
    };
    if !authorized(&control.token, authorization) {
        return json(
            StatusCode::UNAUTHORIZED,
            "error",
            "missing or wrong token: send `Authorization: Bearer <the --http-token>`",
        );
    }
    let (reply, outcome) = oneshot::channel();
    if control.requests.send(ControlRequest { statement, reply }).await.is_err() {
        return json(StatusCode::SERVICE_UNAVAILABLE, "error", "misql is shutting down");
    }
    match tokio::time::timeout(REPLY_TIMEOUT, outcome).await {
        Ok(Ok(Ok(message))) => json(StatusCode::OK, "message", &message),
        Ok(Ok(Err(error))) => json(StatusCode::CONFLICT, "error", &error),
        Ok(Err(_)) => json(StatusCode::SERVICE_UNAVAILABLE, "error", "misql is shutting down"),
        Err(_) => json(
            StatusCode::ACCEPTED,
            "message",
            "still being carried out; SHOW SYNCS or /metrics shows the outcome",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_paths_name_a_sync_and_an_action() {
        assert_eq!(statement("/syncs/orders/stop").unwrap().to_string(), "STOP SYNC orders");
        assert_eq!(statement("/syncs/orders/start").unwrap().to_string(), "START SYNC orders");
        assert_eq!(statement("/syncs/o/refresh").unwrap().to_string(), "REFRESH SYNC o");
        assert!(statement("/syncs/orders/drop").is_none());
        assert!(statement("/syncs//stop").is_none());
        assert!(statement("/syncs/a/b/stop").is_none());
        assert!(statement("/metrics").is_none());
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        assert!(authorized("s3cret", Some("Bearer s3cret")));
        assert!(!authorized("s3cret", Some("Bearer s3cre")));
        assert!(!authorized("s3cret", Some("Bearer s3cret2")));
        assert!(!authorized("s3cret", Some("s3cret")));
        assert!(!authorized("s3cret", None));
    }
}
