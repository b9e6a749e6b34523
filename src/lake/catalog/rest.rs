//! A REST catalog: its client and storage properties, SigV4 signing through the forwarder, the
//! first request (retried through a blip), and what its refusals mean for the user.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::{Catalog, CatalogBuilder};
use iceberg_catalog_rest::RestCatalogBuilder;
use iceberg_storage_opendal::{CustomAwsCredentialLoader, OpenDalResolvingStorageFactory};

use super::{CatalogKind, IcebergConnection, REST_CONNECT_TIMEOUT, SQL_CATALOG_NAME, option};
use crate::lake::rest_failure;
use crate::lake::retry::retry_transient;
use crate::lake::sigv4::{self, SigV4, StorageCredentials};
use crate::{Error, ErrorKind, Result};

pub(super) async fn connect_rest(
    uri: &str,
    options: &[(String, String)],
) -> Result<IcebergConnection> {
    let uri = uri.trim().trim_end_matches('/').to_string();
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(Error::user(format!(
            "CATALOG 'rest' needs the catalog's http:// or https:// address, got `{uri}`"
        ))
        .with_hint("e.g. ATTACH 'http://localhost:8181' AS lake (TYPE iceberg, CATALOG 'rest', warehouse 's3://warehouse'); for a local directory drop CATALOG 'rest'"));
    }
    let sigv4 = sigv4::from_options(options).await?;
    let forwarder = match &sigv4 {
        Some(sigv4) => {
            Some(Arc::new(sigv4::forward::start(&uri, sigv4.clone(), upstream_client()?).await?))
        }
        None => None,
    };
    let client_uri = forwarder.as_ref().map_or(uri.as_str(), |f| f.local_uri.as_str());
    let mut props = rest_props(client_uri, options);
    let mut storage = OpenDalResolvingStorageFactory::new();
    if let Some(sigv4) = &sigv4 {
        props.insert(
            "s3.region".into(),
            option(options, "s3.region").unwrap_or(&sigv4.region).into(),
        );
        // The storage signs with the catalog's credentials unless the ATTACH gives S3 keys, or
        // asks the catalog to vend them with each table (they arrive in the table's FileIO
        // properties; a loader set here would take their place).
        if option(options, "s3.access-key-id").is_none() && !asks_for_vended_credentials(options) {
            let credentials = StorageCredentials(sigv4.credentials.clone());
            storage =
                storage.with_s3_credential_loader(CustomAwsCredentialLoader::new(credentials));
        }
    }
    let catalog = RestCatalogBuilder::default()
        .with_storage_factory(Arc::new(storage))
        .load(SQL_CATALOG_NAME, props)
        .await
        .map_err(|e| {
            Error::iceberg(format!("cannot set up the Iceberg REST catalog at {uri}"), e)
        })?;
    // The first request: a catalog that fails for a moment (a 503, a lost connection) is asked
    // again a few times before ATTACH gives up.
    let warehouse = option(options, "warehouse");
    let listed = retry_transient("listing the REST catalog's namespaces", || async {
        catalog.list_namespaces(None).await.map_err(|e| match sigv4.as_deref() {
            Some(sigv4) => signed_rest_error(&uri, sigv4, &e),
            None => rest_error(&uri, warehouse, &e),
        })
    });
    match tokio::time::timeout(REST_CONNECT_TIMEOUT, listed).await {
        Err(_) => {
            return Err(Error::Unavailable {
                message: format!(
                    "cannot reach the Iceberg REST catalog at {uri}: no answer within {} s",
                    REST_CONNECT_TIMEOUT.as_secs()
                ),
                hint: Some(unreachable_hint()),
            });
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) => {}
    }
    Ok(IcebergConnection {
        catalog: Arc::new(catalog),
        kind: CatalogKind::Rest { uri },
        sigv4,
        forwarder,
        commits: Default::default(),
    })
}

/// The client the signing forwarder sends to the real catalog with.
fn upstream_client() -> Result<reqwest::Client> {
    reqwest::Client::builder().connect_timeout(REST_CONNECT_TIMEOUT).build().map_err(|e| {
        Error::io("cannot set up an HTTP client for the REST catalog", std::io::Error::other(e))
    })
}

/// The error of the first request to a SigV4-signed catalog: a refused signature in one
/// sentence (what the forwarder noted), else as [`rest_error`].
fn signed_rest_error(uri: &str, sigv4: &SigV4, error: &iceberg::Error) -> Error {
    match sigv4.take_refusal() {
        Some(sentence) => Error::remote(ErrorKind::Permanent, format!("cannot attach the Iceberg REST catalog at {uri}: {sentence}"))
            .with_hint(format!(
                "SigV4 signs as service '{}' in region '{}' with credentials from {}; see \"rest.signing-name\", \"rest.signing-region\" and the AWS credentials (environment, AWS_PROFILE, web identity)",
                sigv4.service,
                sigv4.region,
                sigv4.credentials.origin()
            )),
        None => rest_error(uri, None, error),
    }
}

/// Whether the ATTACH asks the REST catalog for vended storage credentials
/// (`"header.X-Iceberg-Access-Delegation" 'vended-credentials'`).
fn asks_for_vended_credentials(options: &[(String, String)]) -> bool {
    options.iter().any(|(key, value)| {
        key.eq_ignore_ascii_case("header.x-iceberg-access-delegation")
            && value.split(',').any(|v| v.trim() == "vended-credentials")
    })
}

/// The REST client's and FileIO's properties: everything the user gave but the SigV4 options
/// (misql's own; its keys stay out of the tables' FileIO), plus path-style S3 in us-east-1
/// unless told otherwise (what S3-compatible stores such as MinIO and SeaweedFS need). The S3
/// keys are iceberg-storage-opendal's own (`s3.endpoint`, `s3.access-key-id`, ...), passed on
/// as given: misql maps none of them itself.
fn rest_props(uri: &str, options: &[(String, String)]) -> HashMap<String, String> {
    let mut props: HashMap<String, String> = options
        .iter()
        .filter(|(k, _)| k != "catalog" && !sigv4::OPTIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    props.insert("uri".into(), uri.to_string());
    props.entry("s3.path-style-access".into()).or_insert_with(|| "true".into());
    props.entry("s3.region".into()).or_insert_with(|| "us-east-1".into());
    props
}

fn unreachable_hint() -> String {
    "check that the catalog server is running and that the URI (scheme, host and port) is right, e.g. ATTACH 'http://localhost:8181' AS lake (TYPE iceberg, CATALOG 'rest', ...)".to_string()
}

/// Turns the error of the first request to a REST catalog into what the user should fix: a
/// catalog that did not answer, or failed (a 5xx), is transient; a refused credential, an
/// unknown warehouse and any other refusal are permanent (the catalog's answer, which names the
/// option to fix in its hint).
fn rest_error(uri: &str, warehouse: Option<&str>, error: &iceberg::Error) -> Error {
    let failure = rest_failure::of(error);
    if failure.no_answer || has_io_source(error) {
        return Error::Unavailable {
            message: format!(
                "cannot reach the Iceberg REST catalog at {uri}: {}",
                innermost_cause(error)
            ),
            hint: Some(unreachable_hint()),
        };
    }
    if failure.is_transient() {
        return Error::Unavailable {
            message: format!(
                "the Iceberg REST catalog at {uri} failed to answer: {}",
                failure.answer()
            ),
            hint: Some("the catalog is busy or failing; try again".to_string()),
        };
    }
    let at = match warehouse {
        Some(warehouse) => format!("{uri} (warehouse '{warehouse}')"),
        None => uri.to_string(),
    };
    if error.kind() == iceberg::ErrorKind::NamespaceNotFound {
        // iceberg-rust's words for a 404 on GET .../namespaces.
        return Error::remote(ErrorKind::Permanent, format!(
            "the Iceberg REST catalog at {at} answered 404 Not Found to listing namespaces: no such warehouse or prefix"
        ))
        .with_hint("check the warehouse option (e.g. warehouse 's3://warehouse') and the prefix option, if any");
    }
    if failure.refused_credential() {
        return Error::remote(
            ErrorKind::Permanent,
            format!(
                "the Iceberg REST catalog at {at} refused the credential: {}",
                failure.answer()
            ),
        )
        .with_hint(
            "check the credential option ('<client id>:<secret>'), or give a token instead",
        );
    }
    let hint = match failure.status {
        Some(401 | 403) => "check the credential ('<client id>:<secret>') or token options",
        _ if failure.token_exchange => {
            "check the credential ('<client id>:<secret>') or token options"
        }
        Some(404) => {
            "check the warehouse option (e.g. warehouse 's3://warehouse') and the URI's path"
        }
        _ => "check the URI and the warehouse, credential and token options",
    };
    // The status and what the answer said, when known (not the headers of the answer).
    let said = match failure.status {
        Some(_) => failure.answer(),
        None => error.to_string(),
    };
    Error::remote(
        ErrorKind::Permanent,
        format!("the Iceberg REST catalog at {at} refused to list namespaces: {said}"),
    )
    .with_hint(hint)
}

/// An I/O error under `error`: the REST client got no HTTP answer (connection refused, DNS,
/// TLS).
fn has_io_source(error: &iceberg::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = current {
        if cause.is::<std::io::Error>() {
            return true;
        }
        current = cause.source();
    }
    false
}

/// The deepest cause, which for a network error is the OS's words ("Connection refused").
fn innermost_cause(error: &iceberg::Error) -> String {
    let mut last: Option<&(dyn std::error::Error + 'static)> = None;
    let mut current: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = current {
        last = Some(cause);
        current = cause.source();
    }
    match last {
        Some(cause) => cause.to_string(),
        None => error.message().to_string(),
    }
}
