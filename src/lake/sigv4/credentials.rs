//! Where the AWS credentials that sign catalog requests (and S3 storage requests) come from, and
//! when they are fetched again.
//!
//! Keys in the ATTACH (`"rest.access-key-id"`, `"rest.secret-access-key"`, optionally
//! `"rest.session-token"`) are used as they are. Without them, the AWS SDK's default credential
//! chain (`aws-config`): environment variables, the shared config and credentials files with
//! `AWS_PROFILE`, web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as EKS IRSA sets),
//! ECS container credentials, EC2 instance metadata. The chain itself caches nothing, so
//! [`CredentialSource`] keeps the last credentials and fetches new ones before they expire: a
//! daemon runs for months, temporary credentials last an hour.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::Mutex;

use crate::{Error, Result};

/// Credentials expiring within this are fetched again (capped at a quarter of their lifetime).
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The credentials of one attached catalog, fetched again before they expire.
#[derive(Debug)]
pub struct CredentialSource {
    provider: SharedCredentialsProvider,
    /// Where they come from, for messages: "the ATTACH options" or "the AWS credential chain".
    origin: &'static str,
    cached: Mutex<Option<Cached>>,
}

#[derive(Debug, Clone)]
struct Cached {
    credentials: Credentials,
    fetched: SystemTime,
}

impl CredentialSource {
    /// Keys given in the ATTACH.
    pub fn fixed(access_key_id: &str, secret: &str, session_token: Option<&str>) -> Self {
        let credentials = Credentials::new(
            access_key_id,
            secret,
            session_token.map(str::to_string),
            None,
            "misql-attach",
        );
        Self::new(SharedCredentialsProvider::new(credentials), "the ATTACH options")
    }

    /// The AWS default credential chain, in `region` (web identity asks STS there).
    pub async fn chain(region: &str) -> Self {
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .region(aws_config::Region::new(region.to_string()))
            .build()
            .await;
        Self::new(SharedCredentialsProvider::new(chain), "the AWS credential chain")
    }

    fn new(provider: SharedCredentialsProvider, origin: &'static str) -> Self {
        Self { provider, origin, cached: Mutex::new(None) }
    }

    /// Where the credentials come from, for messages.
    pub fn origin(&self) -> &'static str {
        self.origin
    }

    /// The access key id in use, if credentials were fetched (for messages).
    pub fn current_key_id(&self) -> Option<String> {
        let cached = self.cached.try_lock().ok()?;
        cached.as_ref().map(|c| c.credentials.access_key_id().to_string())
    }

    /// Credentials valid for a while yet: the cached ones, or new ones when those expire soon.
    /// A failed refresh keeps credentials that have not expired yet (and logs why).
    pub async fn get(&self) -> Result<Credentials> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some(current) = cached.as_ref()
            && !needs_refresh(now, current.fetched, current.credentials.expiry())
        {
            return Ok(current.credentials.clone());
        }
        match self.provider.provide_credentials().await {
            Ok(credentials) => {
                if let Some(expiry) = credentials.expiry() {
                    let left = expiry.duration_since(now).unwrap_or_default();
                    tracing::info!(
                        access_key_id = credentials.access_key_id(),
                        "AWS credentials from {} (valid for {} s)",
                        self.origin,
                        left.as_secs()
                    );
                }
                *cached = Some(Cached { credentials: credentials.clone(), fetched: now });
                Ok(credentials)
            }
            Err(e) => match cached.as_ref() {
                Some(current) if current.credentials.expiry().is_none_or(|t| t > now) => {
                    tracing::warn!("refreshing AWS credentials from {} failed: {e}", self.origin);
                    Ok(current.credentials.clone())
                }
                _ => Err(no_credentials(self.origin, &e)),
            },
        }
    }
}

/// Whether credentials fetched at `fetched` and expiring at `expiry` are to be fetched again at
/// `now`: within [`REFRESH_BEFORE`] of expiry, or a quarter of their lifetime for short-lived
/// ones. Credentials without an expiry are kept.
pub fn needs_refresh(now: SystemTime, fetched: SystemTime, expiry: Option<SystemTime>) -> bool {
    let Some(expiry) = expiry else { return false };
    let lifetime = expiry.duration_since(fetched).unwrap_or_default();
    let margin = REFRESH_BEFORE.min(lifetime / 4);
    match expiry.duration_since(now) {
        Ok(left) => left <= margin,
        Err(_) => true,
    }
}

fn no_credentials(
    origin: &str,
    e: &aws_credential_types::provider::error::CredentialsError,
) -> Error {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    Error::Unavailable {
        message: format!(
            "cannot get AWS credentials from {origin} to sign catalog requests: {reason}"
        ),
        hint: Some(
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or \
             AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN; or give \"rest.access-key-id\" and \
             \"rest.secret-access-key\" in the ATTACH"
                .to_string(),
        ),
    }
}

/// The same credentials for the S3 storage (opendal's credential trait), so table files are read
/// and written with what signs the catalog requests, refreshed alike.
#[derive(Debug, Clone)]
pub struct StorageCredentials(pub Arc<CredentialSource>);

impl reqsign_core::ProvideCredential for StorageCredentials {
    type Credential = iceberg_storage_opendal::AwsCredential;

    async fn provide_credential(
        &self,
        _ctx: &reqsign_core::Context,
    ) -> reqsign_core::Result<Option<Self::Credential>> {
        let credentials = self
            .0
            .get()
            .await
            .map_err(|e| reqsign_core::Error::credential_invalid(e.to_string()))?;
        let expires_in = credentials
            .expiry()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| reqsign_core::time::Timestamp::from_second(d.as_secs() as i64))
            .transpose()?;
        Ok(Some(iceberg_storage_opendal::AwsCredential {
            access_key_id: credentials.access_key_id().to_string(),
            secret_access_key: credentials.secret_access_key().to_string(),
            session_token: credentials.session_token().map(str::to_string),
            expires_in,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(secs)
    }

    #[test]
    fn credentials_without_expiry_are_never_refreshed() {
        assert!(!needs_refresh(at(1_000_000), at(0), None));
    }

    #[test]
    fn hour_long_credentials_are_refreshed_five_minutes_before_expiry() {
        assert!(!needs_refresh(at(3600 - 301), at(0), Some(at(3600))));
        assert!(needs_refresh(at(3600 - 300), at(0), Some(at(3600))));
    }

    #[test]
    fn short_lived_credentials_are_refreshed_in_their_last_quarter() {
        assert!(!needs_refresh(at(29), at(0), Some(at(40))));
        assert!(needs_refresh(at(30), at(0), Some(at(40))));
    }

    #[test]
    fn expired_credentials_are_refreshed() {
        assert!(needs_refresh(at(50), at(0), Some(at(40))));
    }
}
