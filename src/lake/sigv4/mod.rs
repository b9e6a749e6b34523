//! SigV4-signed REST catalogs: Amazon S3 Tables (`https://s3tables.<region>.amazonaws.com/iceberg`,
//! signing name `s3tables`), AWS Glue (`https://glue.<region>.amazonaws.com/iceberg`, `glue`) and
//! any REST catalog behind API Gateway (`execute-api`).
//!
//! The ATTACH options are the ones pyiceberg and Iceberg Java read: `"rest.sigv4-enabled" 'true'`,
//! `"rest.signing-name"` (default `execute-api`), `"rest.signing-region"` (default: the `s3.region`
//! or `client.region` option, else `AWS_REGION` / the profile's region), and optionally
//! `"rest.access-key-id"`, `"rest.secret-access-key"`, `"rest.session-token"`; without keys, the
//! AWS credential chain ([`credentials`]).
//!
//! Every catalog request is signed by [`SigV4::sign`] (the `aws-sigv4` crate: the payload's
//! SHA-256 in `x-amz-content-sha256`, `x-amz-security-token` for temporary credentials; a bearer
//! token the request already carries moves to `Original-Authorization`, as pyiceberg and Iceberg
//! Java do). misql's own requests (the commit, the token exchange) call it directly; the requests
//! of the iceberg-catalog-rest client go through [`forward`], a signing forwarder on loopback.
//! A refusal of the signature is turned into one sentence by [`refusal`].

pub mod credentials;
pub mod forward;
pub mod refusal;

use std::sync::Arc;
use std::time::SystemTime;

use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

pub use credentials::{CredentialSource, StorageCredentials};

use crate::{Error, Result};

/// ATTACH option: sign catalog requests with SigV4.
pub const ENABLED_OPTION: &str = "rest.sigv4-enabled";
/// ATTACH option: the service name in the signature's scope.
pub const SIGNING_NAME_OPTION: &str = "rest.signing-name";
/// ATTACH option: the region in the signature's scope.
pub const SIGNING_REGION_OPTION: &str = "rest.signing-region";
/// ATTACH options: fixed keys (else the AWS credential chain).
pub const ACCESS_KEY_OPTION: &str = "rest.access-key-id";
/// See [`ACCESS_KEY_OPTION`].
pub const SECRET_KEY_OPTION: &str = "rest.secret-access-key";
/// See [`ACCESS_KEY_OPTION`].
pub const SESSION_TOKEN_OPTION: &str = "rest.session-token";
/// Every option this module reads (the ATTACH parser accepts them for TYPE iceberg).
pub const OPTIONS: [&str; 6] = [
    ENABLED_OPTION,
    SIGNING_NAME_OPTION,
    SIGNING_REGION_OPTION,
    ACCESS_KEY_OPTION,
    SECRET_KEY_OPTION,
    SESSION_TOKEN_OPTION,
];
/// The signing name when the ATTACH gives none (API Gateway), as in pyiceberg and Iceberg Java.
pub const DEFAULT_SIGNING_NAME: &str = "execute-api";

/// How one attached catalog signs its requests.
#[derive(Debug)]
pub struct SigV4 {
    /// The signing name (service): `s3tables`, `glue`, `execute-api`.
    pub service: String,
    /// The signing region.
    pub region: String,
    /// The credentials, refreshed before they expire.
    pub credentials: Arc<CredentialSource>,
    /// The last refusal of a signature the forwarder saw, in words (see [`refusal`]).
    last_refusal: std::sync::Mutex<Option<String>>,
}

/// Which SigV4 settings the ATTACH `options` ask for; `None` unless `"rest.sigv4-enabled"` is
/// true. The region falls back to the options' `s3.region` / `client.region`, then to the AWS
/// environment (`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile).
pub async fn from_options(options: &[(String, String)]) -> Result<Option<Arc<SigV4>>> {
    let get = |key: &str| options.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim());
    if !enabled(get(ENABLED_OPTION))? {
        if let Some(key) = OPTIONS[1..].iter().find(|key| get(key).is_some()) {
            return Err(Error::user(format!(
                "option \"{key}\" signs catalog requests, but \"{ENABLED_OPTION}\" is not 'true'"
            ))
            .with_hint(format!("add \"{ENABLED_OPTION}\" 'true', or remove \"{key}\"")));
        }
        return Ok(None);
    }
    let service = get(SIGNING_NAME_OPTION).unwrap_or(DEFAULT_SIGNING_NAME).to_string();
    let region = match get(SIGNING_REGION_OPTION).or(get("s3.region")).or(get("client.region")) {
        Some(region) => region.to_string(),
        None => environment_region().await.ok_or_else(|| {
            Error::user("a SigV4-signed catalog needs a signing region, and none is set").with_hint(
                format!(
                    "add \"{SIGNING_REGION_OPTION}\" 'us-east-1' (the catalog's region) to the \
                     ATTACH, or set AWS_REGION"
                ),
            )
        })?,
    };
    let credentials = match (get(ACCESS_KEY_OPTION), get(SECRET_KEY_OPTION)) {
        (Some(key), Some(secret)) => {
            CredentialSource::fixed(key, secret, get(SESSION_TOKEN_OPTION))
        }
        (None, None) => CredentialSource::chain(&region).await,
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::user(format!(
                "\"{ACCESS_KEY_OPTION}\" and \"{SECRET_KEY_OPTION}\" go together: one is missing"
            ))
            .with_hint("give both, or neither to use the AWS credential chain"));
        }
    };
    Ok(Some(Arc::new(SigV4 {
        service,
        region,
        credentials: Arc::new(credentials),
        last_refusal: std::sync::Mutex::new(None),
    })))
}

fn enabled(value: Option<&str>) -> Result<bool> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Error::user(format!(
            "option \"{ENABLED_OPTION}\" must be 'true' or 'false', got '{other}'"
        ))
        .with_hint(format!("write \"{ENABLED_OPTION}\" 'true'"))),
    }
}

async fn environment_region() -> Option<String> {
    use aws_config::meta::region::ProvideRegion;
    let region = aws_config::default_provider::region::default_provider().region().await;
    region.map(|r| r.to_string())
}

impl SigV4 {
    /// Signs a request to `url` (already percent-encoded) in place: adds `x-amz-date`,
    /// `x-amz-content-sha256` (the SHA-256 of `body`), `x-amz-security-token` with temporary
    /// credentials, and `authorization`. The signature covers every header in `headers` but
    /// `user-agent`, plus `host` (from `url`), so no header may change after this.
    pub async fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &mut HeaderMap,
        body: &[u8],
    ) -> Result<()> {
        let credentials = self.credentials.get().await?;
        if let Some(bearer) = headers.remove(AUTHORIZATION) {
            headers.insert(HeaderName::from_static("original-authorization"), bearer);
        }
        for name in ["x-amz-date", "x-amz-security-token", "x-amz-content-sha256"] {
            headers.remove(name);
        }
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| signing_failed(url, &e))?
            .into();
        let pairs = headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let signable = SignableRequest::new(method, url, pairs, SignableBody::Bytes(body))
            .map_err(|e| signing_failed(url, &e))?;
        let (instructions, _signature) =
            sign(signable, &params).map_err(|e| signing_failed(url, &e))?.into_parts();
        let (added, _params) = instructions.into_parts();
        for header in added {
            let value =
                HeaderValue::from_str(header.value()).map_err(|e| signing_failed(url, &e))?;
            headers.insert(header.name(), value);
        }
        Ok(())
    }

    /// What a signature refusal means (see [`refusal::explain`]), from an answer's status,
    /// `x-amzn-errortype` header and body; `None` if it is not one.
    pub fn explain(&self, status: u16, error_type: Option<&str>, body: &str) -> Option<String> {
        refusal::explain(status, error_type, body, self)
    }

    /// Notes a refusal the forwarder saw, for the error of the request that failed.
    pub(crate) fn note_refusal(&self, sentence: &str) {
        if let Ok(mut last) = self.last_refusal.lock() {
            *last = Some(sentence.to_string());
        }
    }

    /// The last refusal the forwarder saw, taken.
    pub fn take_refusal(&self) -> Option<String> {
        self.last_refusal.lock().ok()?.take()
    }
}

fn signing_failed(url: &str, e: &dyn std::fmt::Display) -> Error {
    Error::user(format!("cannot sign the catalog request to {url} with SigV4: {e}"))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn sigv4() -> SigV4 {
        SigV4 {
            service: "s3tables".into(),
            region: "us-west-2".into(),
            credentials: Arc::new(CredentialSource::fixed("ASIAEXAMPLE", "secret", Some("tok"))),
            last_refusal: std::sync::Mutex::new(None),
        }
    }

    #[tokio::test]
    async fn a_signed_request_carries_the_body_hash_the_token_and_the_scope() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        let body = br#"{"requirements":[]}"#;
        let url = "https://s3tables.us-west-2.amazonaws.com/iceberg/v1/ns/tables/t";
        sigv4().sign("POST", url, &mut headers, body).await.unwrap();
        let get = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_string();
        assert_eq!(get("x-amz-content-sha256"), hex::encode(Sha256::digest(body)));
        assert_eq!(get("x-amz-security-token"), "tok");
        assert_eq!(get("original-authorization"), "Bearer abc");
        let authorization = get("authorization");
        assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/"));
        assert!(authorization.contains("/us-west-2/s3tables/aws4_request"), "{authorization}");
        let signed = authorization.split("SignedHeaders=").nth(1).unwrap();
        for header in ["content-type;", "host;", "x-amz-content-sha256;", "x-amz-security-token"] {
            assert!(signed.contains(header), "{header} unsigned: {authorization}");
        }
    }

    #[tokio::test]
    async fn signing_options_without_sigv4_enabled_are_refused() {
        let options = [("rest.signing-name".to_string(), "glue".to_string())];
        let error = from_options(&options).await.unwrap_err().to_string();
        assert!(error.contains("\"rest.sigv4-enabled\" is not 'true'"), "{error}");
        let options = [(ENABLED_OPTION.to_string(), "yes".to_string())];
        assert!(from_options(&options).await.is_err());
    }
}
