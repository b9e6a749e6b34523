//! What a failed request to a REST catalog means: a refused credential (permanent), a catalog
//! that is down for a moment (transient), or something else.
//!
//! misql's own requests (the token exchange of a commit) see the HTTP status and body, typed.
//! iceberg-catalog-rest's errors give no status: it is only in their text
//! (`Unexpected, context: { code: 503 Service Unavailable, operation: auth, ... }`), so
//! [`parse`] is the one place that reads that text, with unit tests over the library's real
//! messages.

use crate::ErrorKind;

/// What a failed REST catalog request said, as far as its error tells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestFailure {
    /// The HTTP status the catalog answered (`None`: no answer, or not said).
    pub status: Option<u16>,
    /// The request was the OAuth2 token exchange.
    pub token_exchange: bool,
    /// The OAuth2 `error` code of the answer (`invalid_client`, `unauthorized_client`, ...), or
    /// the `type` of an Iceberg `ErrorModel` answer.
    pub oauth_error: Option<String>,
    /// What the answer said in words (`error_description`, or an Iceberg error's message).
    pub description: Option<String>,
    /// No HTTP answer came: the connection was refused or lost, or the request timed out.
    pub no_answer: bool,
}

impl RestFailure {
    /// Whether the catalog refused the credential (see [`refuses_credential`]).
    pub fn refused_credential(&self) -> bool {
        self.status.is_some_and(|status| {
            refuses_credential(status, self.oauth_error.as_deref(), self.token_exchange)
        })
    }

    /// Whether trying again later may get through: no answer, or a status that says the
    /// catalog is busy or failing (see [`is_transient_status`]).
    pub fn is_transient(&self) -> bool {
        self.no_answer || self.status.is_some_and(is_transient_status)
    }

    /// The kind this failure is, when it says: a refused credential is permanent, a catalog
    /// that did not answer or failed is transient; `None` for anything else.
    pub fn kind(&self) -> Option<ErrorKind> {
        if self.refused_credential() {
            Some(ErrorKind::Permanent)
        } else if self.is_transient() {
            Some(ErrorKind::Transient)
        } else {
            None
        }
    }

    /// The status and what the answer said, for a message: `401 (Invalid client credentials)`.
    pub fn answer(&self) -> String {
        let status = self.status.map_or_else(|| "an error".to_string(), |s| s.to_string());
        match self.description.as_deref().or(self.oauth_error.as_deref()) {
            Some(words) => format!("{status} ({words})"),
            None => status,
        }
    }
}

/// Whether an answer refuses the credential itself (so retrying with it cannot help): a 400 or
/// 401 whose OAuth2 error is `invalid_client` or `unauthorized_client`, or a 401 or 403 to the
/// token exchange. A 5xx, a 429 or a lost connection never is.
pub fn refuses_credential(status: u16, oauth_error: Option<&str>, token_exchange: bool) -> bool {
    let refused_client = matches!(oauth_error, Some("invalid_client" | "unauthorized_client"));
    match status {
        400 | 401 if refused_client => true,
        401 | 403 => token_exchange,
        _ => false,
    }
}

/// Statuses that say the server is busy or failing, not that the request is wrong: 408, 429
/// and every 5xx.
pub fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// The OAuth2 `error` and `error_description` of a token endpoint's answer body (RFC 6749,
/// 5.2), or the message of an Iceberg `ErrorModel` body; `(None, None)` for anything else.
pub fn oauth_error(body: &str) -> (Option<String>, Option<String>) {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body.trim()) else {
        return (None, None);
    };
    let text = |value: Option<&serde_json::Value>| value.and_then(|v| v.as_str()).map(String::from);
    match json.get("error") {
        Some(serde_json::Value::Object(model)) => {
            (text(model.get("type")), text(model.get("message")))
        }
        error => (text(error), text(json.get("error_description"))),
    }
}

/// Reads what iceberg-catalog-rest's error text says about the answer: its `code` (the HTTP
/// status), whether `operation: auth` (the token exchange) failed, the body under `json`, and
/// whether the request got no answer at all ("Failed to execute http request"). Other errors
/// give a default (empty) failure.
pub fn parse(text: &str) -> RestFailure {
    let mut failure = RestFailure {
        no_answer: text.starts_with("Unexpected => Failed to execute http request"),
        ..RestFailure::default()
    };
    // Only the error's own context (`<Kind>, context: { ...`), not one of a source below it.
    let Some((kind, context)) = text.split_once(", context: { ") else { return failure };
    if kind.contains(' ') {
        return failure;
    }
    // The context's values are free text; the body (`json`) comes last, before ` } => `.
    let (fields, body) = match context.split_once("json: ") {
        Some((fields, rest)) => (fields, rest.rsplit_once(" } => ").map_or(rest, |(b, _)| b)),
        None => (context.split_once(" } => ").map_or(context, |(f, _)| f), ""),
    };
    for field in fields.split(", ") {
        match field.split_once(": ") {
            // `code` in the errors of its token exchange and commits, `status` in those of an
            // answer it did not expect (a GET of the config or the namespaces).
            Some(("code" | "status", value)) => {
                failure.status = value.split(' ').next().and_then(|code| code.parse().ok());
            }
            Some(("operation", "auth")) => failure.token_exchange = true,
            _ => {}
        }
    }
    (failure.oauth_error, failure.description) = oauth_error(body);
    if failure.description.is_none() && failure.status.is_some() && body.is_empty() {
        // An Iceberg `ErrorModel` answer: its message follows ` => `.
        failure.description = text.split_once(" } => ").map(|(_, message)| message.to_string());
    }
    failure
}

/// [`parse`] of an iceberg-rust error.
pub fn of(error: &::iceberg::Error) -> RestFailure {
    parse(&error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// iceberg-catalog-rest 0.10.1's error for a status it did not expect
    /// (`deserialize_unexpected_catalog_error`): the status under `status`, the headers, then
    /// the body.
    const UNEXPECTED_400: &str = r#"Unexpected, context: { status: 400 Bad Request, headers: {"content-type": "application/json", "content-length": "121"}, json: {"error":{"message":"unknown warehouse s3://nowhere","type":"BadRequestException","code":400}} } => Received response with unexpected status code"#;

    const UNEXPECTED_503: &str = r#"Unexpected, context: { status: 503 Service Unavailable, headers: {"content-length": "0"} } => Received response with unexpected status code"#;

    #[test]
    fn an_unexpected_status_is_read_with_the_message_of_its_body() {
        let failure = parse(UNEXPECTED_400);
        assert_eq!(failure.status, Some(400));
        assert!(!failure.is_transient() && !failure.token_exchange);
        assert_eq!(failure.answer(), "400 (unknown warehouse s3://nowhere)");
        let failure = parse(UNEXPECTED_503);
        assert_eq!(failure.status, Some(503));
        assert!(failure.is_transient(), "a 503 is tried again");
    }

    /// iceberg-catalog-rest 0.10.1's words for SeaweedFS refusing a wrong secret.
    const WRONG_SECRET: &str = r#"Unexpected, context: { code: 401 Unauthorized, operation: auth, url: http://127.0.0.1:17109/v1/oauth/tokens, json: {"error":"invalid_client","error_description":"Invalid client credentials"} } => Received unexpected response, source: invalid type: string "invalid_client", expected struct ErrorModel at line 1 column 25"#;
    /// ... for a token endpoint answering 503 (here: the tests' fault proxy).
    const TOKEN_503: &str = "Unexpected, context: { code: 503 Service Unavailable, operation: auth, url: http://127.0.0.1:36157/v1/oauth/tokens, json: fault proxy: 503 before forwarding } => Received unexpected response, source: expected ident at line 1 column 3";
    /// ... for a token endpoint answering 500.
    const TOKEN_500: &str = "Unexpected, context: { code: 500 Internal Server Error, operation: auth, url: http://127.0.0.1:34707/v1/oauth/tokens, json: fault proxy: 500 after forwarding } => Received unexpected response, source: expected ident at line 1 column 3";
    /// ... for a token exchange whose connection was lost (or refused).
    const TOKEN_DROPPED: &str = "Unexpected => Failed to execute http request, source: error sending request for url (http://127.0.0.1:37769/v1/oauth/tokens)";

    #[test]
    fn a_wrong_secret_is_a_refused_credential() {
        let failure = parse(WRONG_SECRET);
        assert_eq!(failure.status, Some(401));
        assert!(failure.token_exchange);
        assert_eq!(failure.oauth_error.as_deref(), Some("invalid_client"));
        assert!(failure.refused_credential());
        assert_eq!(failure.kind(), Some(ErrorKind::Permanent));
        assert_eq!(failure.answer(), "401 (Invalid client credentials)");
    }

    #[test]
    fn a_token_endpoint_answering_5xx_is_transient_not_a_refused_credential() {
        for (text, status) in [(TOKEN_503, 503), (TOKEN_500, 500)] {
            let failure = parse(text);
            assert_eq!(failure.status, Some(status), "{text}");
            assert!(failure.token_exchange && !failure.refused_credential(), "{text}");
            assert_eq!(failure.kind(), Some(ErrorKind::Transient), "{text}");
        }
    }

    #[test]
    fn a_lost_connection_is_transient() {
        let failure = parse(TOKEN_DROPPED);
        assert!(failure.no_answer && failure.status.is_none());
        assert_eq!(failure.kind(), Some(ErrorKind::Transient));
    }

    #[test]
    fn the_context_of_a_storage_error_below_is_not_read() {
        let text = "Unexpected => Failure in doing io operation, source: Unexpected (temporary) at read, context: { code: 503, service: s3 } => send http request";
        assert_eq!(parse(text), RestFailure::default());
    }

    #[test]
    fn a_port_number_is_not_a_status() {
        let text = "Unexpected, context: { url: http://127.0.0.1:401/v1/config } => Received response with unexpected status code";
        assert_eq!(parse(text).status, None);
        assert_eq!(parse(text).kind(), None);
    }

    #[test]
    fn an_iceberg_error_model_answer_gives_its_status_and_message() {
        // The library's conversion of an `ErrorModel` body (types.rs: `From<ErrorModel>`).
        let error = ::iceberg::Error::new(::iceberg::ErrorKind::DataInvalid, "Not authorized")
            .with_context("type", "NotAuthorizedException")
            .with_context("code", "401");
        let failure = of(&error);
        assert_eq!(failure.status, Some(401));
        assert_eq!(failure.description.as_deref(), Some("Not authorized"));
        assert!(!failure.refused_credential(), "not said to be the token exchange");
    }

    #[test]
    fn only_a_refusal_of_the_client_or_of_the_exchange_refuses_the_credential() {
        assert!(refuses_credential(400, Some("invalid_client"), false));
        assert!(refuses_credential(401, Some("unauthorized_client"), false));
        assert!(refuses_credential(401, None, true));
        assert!(refuses_credential(403, None, true));
        assert!(!refuses_credential(400, Some("invalid_grant"), true));
        assert!(!refuses_credential(401, None, false));
        for status in [500, 502, 503, 504, 429, 408] {
            assert!(!refuses_credential(status, Some("invalid_client"), true), "{status}");
            assert!(is_transient_status(status), "{status}");
        }
        assert!(!is_transient_status(404));
    }

    #[test]
    fn oauth_and_iceberg_bodies_are_read() {
        let oauth =
            r#"{"error":"invalid_client","error_description":"Invalid client credentials"}"#;
        assert_eq!(
            oauth_error(oauth),
            (Some("invalid_client".into()), Some("Invalid client credentials".into()))
        );
        let model =
            r#"{"error":{"message":"down","type":"ServiceUnavailableException","code":503}}"#;
        assert_eq!(
            oauth_error(model),
            (Some("ServiceUnavailableException".into()), Some("down".into()))
        );
        assert_eq!(oauth_error("fault proxy: 503 before forwarding"), (None, None));
    }
}
