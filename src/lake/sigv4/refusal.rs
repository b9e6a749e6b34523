//! What an AWS service's refusal of a SigV4 signature means, in one sentence that names what is
//! wrong: the secret, an expired or unknown session token, the signing region, the signing name,
//! the clock. AWS says it in a JSON `message` (API Gateway, Glue, S3 Tables) or an XML `Message`,
//! with the error's name in the `x-amzn-errortype` header or the body.

use super::SigV4;

/// The sentence for a refused request (`status`, the `x-amzn-errortype` header, the body), or
/// `None` when the answer is not a refusal of the signature.
pub fn explain(status: u16, error_type: Option<&str>, body: &str, sigv4: &SigV4) -> Option<String> {
    if !matches!(status, 400 | 401 | 403) {
        return None;
    }
    let said = format!("{} {body}", error_type.unwrap_or_default());
    let lower = said.to_ascii_lowercase();
    let key = sigv4.credentials.current_key_id().unwrap_or_else(|| "?".to_string());
    let origin = sigv4.credentials.origin();
    let (region, service) = (&sigv4.region, &sigv4.service);
    let sentence = if lower.contains("expiredtoken")
        || lower.contains("token included in the request is expired")
    {
        format!(
            "the session token of access key id {key} (from {origin}) has expired; \
             temporary credentials must be renewed before they expire"
        )
    } else if lower.contains("signature we calculated does not match")
        || lower.contains("signaturedoesnotmatch")
    {
        format!(
            "the catalog refused the SigV4 signature: the secret access key does not match \
             access key id {key} (from {origin})"
        )
    } else if lower.contains("scoped to a valid region")
        || lower.contains("authorizationheadermalformed")
    {
        format!(
            "the catalog refused the SigV4 signature: the signing region '{region}' is not the \
             catalog's region{}; set \"rest.signing-region\"",
            quoted_after(&said, "expecting").map(|r| format!(" ('{r}')")).unwrap_or_default()
        )
    } else if lower.contains("scoped to correct service") {
        let expected = quoted_after(&said, "service:")
            .map(|s| format!(", it expects '{s}'"))
            .unwrap_or_default();
        format!(
            "the catalog refused the SigV4 signature: the signing name '{service}' is wrong{expected}; \
             set \"rest.signing-name\""
        )
    } else if lower.contains("signature expired") || lower.contains("requesttimetooskewed") {
        "the catalog refused the SigV4 signature: the request's time is too far from the catalog's \
         clock; check this machine's clock"
            .to_string()
    } else if lower.contains("security token included in the request is invalid")
        || lower.contains("unrecognizedclient")
        || lower.contains("invalidclienttokenid")
        || lower.contains("invalidaccesskeyid")
    {
        format!(
            "the catalog does not know access key id {key} (from {origin}), or its session token \
             is not valid"
        )
    } else if lower.contains("missingauthenticationtoken")
        || lower.contains("missing authentication token")
    {
        "the catalog found no SigV4 signature on the request".to_string()
    } else {
        return None;
    };
    Some(sentence)
}

/// The first '...'-quoted word after `marker` in `text`.
fn quoted_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let at = text.to_ascii_lowercase().find(&marker.to_ascii_lowercase())? + marker.len();
    let rest = &text[at..];
    let start = rest.find('\'')? + 1;
    let end = rest[start..].find('\'')? + start;
    Some(&rest[start..end])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::lake::sigv4::CredentialSource;

    fn sigv4() -> SigV4 {
        SigV4 {
            service: "execute-api".into(),
            region: "eu-west-1".into(),
            credentials: Arc::new(CredentialSource::fixed("AKIDEXAMPLE", "secret", None)),
            last_refusal: std::sync::Mutex::new(None),
        }
    }

    #[test]
    fn a_wrong_secret_is_named() {
        let body = r#"{"message":"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."}"#;
        let said = explain(403, Some("InvalidSignatureException"), body, &sigv4()).unwrap();
        assert!(said.contains("secret access key does not match"), "{said}");
        assert!(said.contains("the ATTACH options"), "{said}");
    }

    #[test]
    fn an_expired_token_is_named() {
        let body = r#"{"message":"The security token included in the request is expired"}"#;
        let said = explain(403, Some("ExpiredTokenException"), body, &sigv4()).unwrap();
        assert!(said.contains("has expired"), "{said}");
    }

    #[test]
    fn a_wrong_region_is_named() {
        let body = r#"{"message":"Credential should be scoped to a valid region. "}"#;
        let said = explain(403, None, body, &sigv4()).unwrap();
        assert!(said.contains("signing region 'eu-west-1'"), "{said}");
    }

    #[test]
    fn a_wrong_signing_name_is_named_with_the_expected_one() {
        let body = r#"{"message":"Credential should be scoped to correct service: 'glue'. "}"#;
        let said = explain(403, None, body, &sigv4()).unwrap();
        assert!(said.contains("signing name 'execute-api' is wrong, it expects 'glue'"), "{said}");
    }

    #[test]
    fn other_refusals_are_not_signature_refusals() {
        let body = r#"{"error":{"message":"Namespace does not exist","type":"NoSuchNamespaceException","code":404}}"#;
        assert_eq!(explain(404, None, body, &sigv4()), None);
        assert_eq!(explain(403, None, r#"{"message":"User is not authorized"}"#, &sigv4()), None);
    }
}
