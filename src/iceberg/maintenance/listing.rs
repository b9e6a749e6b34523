//! Listing the files under a table's location with their age, to find orphans (files no
//! snapshot references: left by a killed writer, or by a commit that failed). iceberg-rust's
//! `FileIO` cannot list, so this uses opendal (already under iceberg's storage) for S3, and the
//! file system directly for local warehouses.

use std::time::SystemTime;

use ::iceberg::table::Table;
use futures::TryStreamExt;

use crate::{Error, Result};

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
        .map_err(|e| Error::plan(format!("listing {dir}: {e}")))?
        .map_err(|e| Error::plan(format!("listing the files under {location}: {e}")))?;
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
    let failed = |e: opendal::Error| Error::plan(format!("listing {scheme}{bucket}/{prefix}: {e}"));
    let operator = opendal::Operator::new(builder).map_err(failed)?.finish();
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
