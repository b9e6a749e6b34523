//! Listing the files under a table's location with their age, to find orphans (files no
//! snapshot references: left by a killed writer, or by a commit that failed). iceberg-rust's
//! `FileIO` cannot list, so this uses opendal (already under iceberg's storage) for S3, and the
//! file system directly for local warehouses.

use std::time::SystemTime;

use ::iceberg::table::Table;
use futures::TryStreamExt;

use crate::{Error, ErrorKind, Result};

/// A file found under a location.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The file's path, in the form the table's metadata uses.
    pub path: String,
    /// When the file was last written, where the storage says.
    pub modified: Option<SystemTime>,
}

/// Every file under `location` (a directory: `location/`), recursively.
pub async fn list(table: &Table, location: &str) -> Result<Vec<Listed>> {
    let dir = format!("{}/", location.trim_end_matches('/'));
    if let Some(rest) = dir.strip_prefix("s3://").or_else(|| dir.strip_prefix("s3a://")) {
        let scheme = &dir[..dir.len() - rest.len()];
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        return list_s3(table, scheme, bucket, prefix).await;
    }
    let (scheme, path) = match dir.strip_prefix("file://") {
        Some(path) => ("file://", path.to_string()),
        None => ("", dir.clone()),
    };
    let listed = tokio::task::spawn_blocking(move || walk(std::path::Path::new(&path)))
        .await
        .map_err(|e| Error::internal(format!("listing {dir}: the listing task failed: {e}")))?
        .map_err(|e| Error::io(format!("listing the files under {location}"), e))?;
    Ok(listed
        .into_iter()
        .map(|(path, modified)| Listed { path: format!("{scheme}{path}"), modified })
        .collect())
}

/// Files under a local directory (none when it does not exist).
fn walk(dir: &std::path::Path) -> std::io::Result<Vec<(String, Option<SystemTime>)>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                found.push((entry.path().to_string_lossy().into_owned(), metadata.modified().ok()));
            }
        }
    }
    Ok(found)
}

/// Objects under `prefix` in an S3 bucket, with the table's S3 settings.
///
/// Iceberg's `FileIO` cannot list, so this builds its own opendal operator; the mapping of the
/// `s3.*` properties is written here because iceberg-storage-opendal keeps its own
/// (`s3_config_parse`) private to the crate. It maps only what a listing needs.
async fn list_s3(table: &Table, scheme: &str, bucket: &str, prefix: &str) -> Result<Vec<Listed>> {
    let props = table.file_io().config().props();
    let get = |key: &str| props.get(key).cloned();
    let mut builder = opendal::services::S3::default()
        .bucket(bucket)
        .region(&get("s3.region").or_else(|| get("client.region")).unwrap_or("us-east-1".into()));
    if let Some(endpoint) = get("s3.endpoint") {
        builder = builder.endpoint(&endpoint);
    }
    if let Some(key) = get("s3.access-key-id") {
        builder = builder.access_key_id(&key);
    }
    if let Some(secret) = get("s3.secret-access-key") {
        builder = builder.secret_access_key(&secret);
    }
    if let Some(token) = get("s3.session-token") {
        builder = builder.session_token(&token);
    }
    let path_style = get("s3.path-style-access").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !path_style {
        builder = builder.enable_virtual_host_style();
    }
    let location = format!("{scheme}{bucket}/{prefix}");
    let failed = |e: opendal::Error| listing_error(&location, &e);
    // Timeouts and retries as the table's own FileIO has them (iceberg-storage-opendal).
    let operator = opendal::Operator::new(builder)
        .map_err(failed)?
        .layer(opendal::layers::TimeoutLayer::new())
        .layer(opendal::layers::RetryLayer::new().with_jitter())
        .finish();
    let lister = operator.lister_with(prefix).recursive(true).await.map_err(failed)?;
    let entries: Vec<opendal::Entry> = lister.try_collect().await.map_err(failed)?;
    Ok(entries
        .into_iter()
        .filter(|e| !e.path().ends_with('/'))
        .map(|e| Listed {
            path: format!("{scheme}{bucket}/{}", e.path().trim_start_matches('/')),
            modified: e.metadata().last_modified().map(SystemTime::from),
        })
        .collect())
}

/// A failed listing of `location` as misql's error, its kind from what the store said: a
/// failure that may pass (the store calls it temporary, or could not be reached or answered
/// with an error of its own, retries included) is transient; a refusal (permissions, a bad
/// configuration, no such bucket) is permanent.
fn listing_error(location: &str, error: &opendal::Error) -> Error {
    tracing::debug!("listing {location}: {error:?}");
    let said = error.message().lines().next().unwrap_or_default();
    let message = format!(
        "cannot list the files under {location}: the object store failed ({}): {said}{}",
        error.kind(),
        innermost_cause(error).map(|c| format!(": {c}")).unwrap_or_default()
    );
    match storage_kind(error) {
        ErrorKind::Permanent => Error::remote(ErrorKind::Permanent, message).with_hint(
            "check the S3 settings (s3.endpoint, s3.access-key-id, s3.secret-access-key) and \
             that the bucket exists",
        ),
        _ => Error::Unavailable {
            message,
            hint: Some("the object store may be overloaded or unreachable; try again".into()),
        },
    }
}

/// What a retry can do about an object-store error: temporary failures, rate limits and
/// failures of the store itself (`Unexpected`: a 5xx, a dropped connection, retries run out)
/// may pass; the rest (permission denied, not found, bad configuration) do not.
fn storage_kind(error: &opendal::Error) -> ErrorKind {
    use opendal::ErrorKind as Store;
    if error.is_temporary() || matches!(error.kind(), Store::Unexpected | Store::RateLimited) {
        ErrorKind::Transient
    } else {
        ErrorKind::Permanent
    }
}

/// The deepest cause under `error` (for a lost connection, the HTTP client's or the OS's words).
fn innermost_cause(error: &opendal::Error) -> Option<String> {
    let mut current = std::error::Error::source(error)?;
    while let Some(next) = current.source() {
        current = next;
    }
    Some(current.to_string())
}

#[cfg(test)]
mod tests {
    use opendal::ErrorKind as Store;

    use super::*;

    #[test]
    fn a_listing_error_takes_its_kind_from_the_store() {
        let temporary = opendal::Error::new(Store::Unexpected, "send http request").set_temporary();
        assert_eq!(storage_kind(&temporary), ErrorKind::Transient);
        let retried_out =
            opendal::Error::new(Store::Unexpected, "send http request").set_persistent();
        assert_eq!(storage_kind(&retried_out), ErrorKind::Transient);
        assert_eq!(
            storage_kind(&opendal::Error::new(Store::RateLimited, "slow down")),
            ErrorKind::Transient
        );
        for kind in [Store::PermissionDenied, Store::NotFound, Store::ConfigInvalid] {
            assert_eq!(
                storage_kind(&opendal::Error::new(kind, "refused")),
                ErrorKind::Permanent,
                "{kind}"
            );
        }
    }

    #[test]
    fn a_temporary_listing_failure_is_transient_and_says_where() {
        let error = opendal::Error::new(Store::Unexpected, "send http request").set_temporary();
        let error = listing_error("s3://warehouse/shop/orders/", &error);
        assert!(error.is_transient(), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("cannot list the files under s3://warehouse/shop/orders/"),
            "{error}"
        );
        let refused = opendal::Error::new(Store::PermissionDenied, "access denied");
        assert!(!listing_error("s3://warehouse/", &refused).is_transient());
    }
}
