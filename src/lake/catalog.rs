//! Connecting to an Iceberg catalog from an ATTACH statement: the embedded SQL catalog on SQLite,
//! or a REST catalog with S3 storage.
//!
//! - No `catalog` option, or `catalog 'sql'`: the URI names a local directory (a path, relative to
//!   the current directory, or `file:///abs/dir`), or the SQLite file itself
//!   (`sqlite:///abs/dir/catalog.db`). The directory is the warehouse and is created if missing;
//!   the catalog is `<warehouse>/catalog.db`, kept in WAL mode so readers such as pyiceberg do not
//!   block misql's commits. Its rows carry the catalog name [`SQL_CATALOG_NAME`], so
//!   `pyiceberg.catalog.sql.SqlCatalog("misql", uri="sqlite:///<warehouse>/catalog.db",
//!   warehouse="file://<warehouse>")` sees the same tables.
//! - `catalog 'rest'`: the URI is the catalog's `http(s)://` endpoint; `warehouse`, `credential`,
//!   `token`, `prefix`, `oauth2-server-uri`, `s3.*` and `client.*` are passed on to the REST client
//!   and to the FileIO. The catalog is contacted at once, so a wrong address fails at ATTACH.
//!   With `"rest.sigv4-enabled" 'true'` every catalog request is signed with SigV4 (S3 Tables,
//!   Glue; see [`crate::lake::sigv4`]), and without `s3.access-key-id` the S3 storage uses the
//!   same AWS credentials.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use iceberg::{Catalog, CatalogBuilder};
use iceberg_catalog_rest::RestCatalogBuilder;
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};
use iceberg_storage_opendal::{CustomAwsCredentialLoader, OpenDalResolvingStorageFactory};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

use crate::lake::rest_failure;
use crate::lake::retry::retry_transient;
use crate::lake::sigv4::{self, SigV4, StorageCredentials, forward::Forwarder};
use crate::{Error, Result};

/// Fixed catalog name stored in the SQL catalog's rows, so pyiceberg's `SqlCatalog("misql", ...)`
/// sees the same tables.
pub const SQL_CATALOG_NAME: &str = "misql";

/// The file name of the SQLite catalog inside the warehouse directory.
pub const SQLITE_FILE_NAME: &str = "catalog.db";

/// How long ATTACH waits for a REST catalog to answer before giving up.
const REST_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Options that only a REST catalog understands.
const REST_ONLY_OPTIONS: [&str; 4] = ["credential", "token", "prefix", "oauth2-server-uri"];

/// Which kind of catalog a connection talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogKind {
    /// The embedded SQL catalog: `<warehouse>/catalog.db` plus data under `warehouse`.
    Sql {
        /// The warehouse directory, absolute.
        warehouse: PathBuf,
    },
    /// A REST catalog.
    Rest {
        /// The catalog's base URI, e.g. `http://127.0.0.1:8181` (no trailing slash).
        uri: String,
    },
}

/// A connected Iceberg catalog.
#[derive(Debug, Clone)]
pub struct IcebergConnection {
    /// The catalog, ready to use.
    pub catalog: Arc<dyn Catalog>,
    /// What kind of catalog it is, and where.
    pub kind: CatalogKind,
    /// How requests to a SigV4-signed REST catalog are signed (`None`: they are not).
    pub sigv4: Option<Arc<SigV4>>,
    /// The signing forwarder the REST client talks through, kept running while this lives.
    pub forwarder: Option<Arc<Forwarder>>,
    /// The commit path's REST session (HTTP client and token), shared by the commits through
    /// this connection.
    pub commits: crate::lake::commit::CommitSession,
}

/// Connects to the Iceberg catalog an `ATTACH 'uri' AS name (TYPE iceberg, ...)` names.
///
/// `options` are the ATTACH options other than TYPE, keys lower-cased (as the parser gives them).
pub async fn connect(uri: &str, options: &[(String, String)]) -> Result<IcebergConnection> {
    match option(options, "catalog").map(str::to_ascii_lowercase).as_deref() {
        None | Some("sql") => connect_sql(uri, options).await,
        Some("rest") => connect_rest(uri, options).await,
        Some(other) => Err(Error::user(format!("unknown Iceberg catalog type `{other}`"))
            .with_hint("CATALOG must be 'sql' (the default, an embedded catalog) or 'rest'")),
    }
}

fn option<'a>(options: &'a [(String, String)], key: &str) -> Option<&'a str> {
    options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------------
// Embedded SQL catalog
// ---------------------------------------------------------------------------------------------

/// Where the embedded catalog keeps its SQLite file and its data.
#[derive(Debug, PartialEq, Eq)]
struct SqlLocation {
    warehouse: PathBuf,
    database: PathBuf,
}

async fn connect_sql(uri: &str, options: &[(String, String)]) -> Result<IcebergConnection> {
    let rest_only = |k: &str| REST_ONLY_OPTIONS.contains(&k) || sigv4::OPTIONS.contains(&k);
    if let Some((key, _)) = options.iter().find(|(k, _)| rest_only(k)) {
        return Err(Error::user(format!(
            "option `{key}` applies to a REST catalog, but ATTACH '{uri}' opens an embedded SQL catalog"
        ))
        .with_hint(format!(
            "for a REST catalog add CATALOG 'rest' (ATTACH 'http://host:8181' AS lake (TYPE iceberg, CATALOG 'rest', {key} '...')); otherwise remove {key}"
        )));
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Error::io("cannot read the current directory to resolve the warehouse", e))?;
    let location = sql_location(uri, option(options, "warehouse"), &cwd)?;
    let warehouse = prepare_directory(&location.warehouse)?;
    // The catalog file's directory, canonical like the warehouse (it is usually the warehouse).
    let file_name = location.database.file_name().unwrap_or(SQLITE_FILE_NAME.as_ref());
    let database = match location.database.parent() {
        Some(parent) if parent == location.warehouse => warehouse.join(file_name),
        Some(parent) => prepare_directory(parent)?.join(file_name),
        None => location.database.clone(),
    };
    if database.is_dir() {
        return Err(Error::user(format!(
            "the SQLite catalog `{}` is a directory, not a file",
            database.display()
        ))
        .with_hint("give the warehouse directory, or sqlite:///path/to/catalog.db"));
    }
    enable_wal(&database).await?;

    let warehouse_uri = file_uri(&warehouse);
    let mut props: HashMap<String, String> = options
        .iter()
        .filter(|(k, _)| k.starts_with("s3.") || k.starts_with("client."))
        .cloned()
        .collect();
    props.insert("uri".into(), format!("sqlite://{}?mode=rwc", percent_encode_path(&database)));
    props.insert("warehouse".into(), warehouse_uri);
    props.insert("sql_bind_style".into(), SqlBindStyle::QMark.to_string());
    let catalog = SqlCatalogBuilder::default()
        .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
        .load(SQL_CATALOG_NAME, props)
        .await
        .map_err(|e| {
            Error::iceberg(format!("cannot open the SQLite catalog `{}`", database.display()), e)
        })?;
    Ok(IcebergConnection {
        catalog: Arc::new(catalog),
        kind: CatalogKind::Sql { warehouse },
        sigv4: None,
        forwarder: None,
        commits: Default::default(),
    })
}

/// Resolves the ATTACH URI (and `warehouse` option) of an embedded catalog to paths; touches
/// nothing on disk.
fn sql_location(uri: &str, warehouse_option: Option<&str>, cwd: &Path) -> Result<SqlLocation> {
    let trimmed = uri.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err(Error::user(format!(
            "`{trimmed}` looks like a REST catalog, but ATTACH ... (TYPE iceberg) without CATALOG 'rest' opens an embedded SQL catalog in a local directory"
        ))
        .with_hint(format!("add CATALOG 'rest': ATTACH '{trimmed}' AS lake (TYPE iceberg, CATALOG 'rest')")));
    }
    if trimmed.is_empty() {
        return Err(Error::user("ATTACH ... (TYPE iceberg) needs a warehouse directory, got ''")
            .with_hint("e.g. ATTACH './warehouse' AS lake (TYPE iceberg)"));
    }
    let warehouse_option =
        warehouse_option.map(|w| local_path(w, "the `warehouse` option", cwd)).transpose()?;
    if let Some(rest) = strip_prefix_ignore_case(trimmed, "sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let rest = rest.split_once('?').map_or(rest, |(path, _query)| path);
        if rest.is_empty() || rest == ":memory:" {
            return Err(Error::user(format!("`{trimmed}` names no SQLite file")).with_hint(
                "e.g. sqlite:///abs/dir/catalog.db (an in-memory catalog is not supported)",
            ));
        }
        let database = cwd.join(percent_decode(rest, trimmed)?);
        let warehouse = match warehouse_option {
            Some(warehouse) => warehouse,
            None if database.is_dir() => database.clone(),
            None => database.parent().map(Path::to_path_buf).unwrap_or_else(|| cwd.to_path_buf()),
        };
        let database = if database.is_dir() { database.join(SQLITE_FILE_NAME) } else { database };
        return Ok(SqlLocation { warehouse, database });
    }
    let directory = local_path(trimmed, "the ATTACH URI", cwd)?;
    let warehouse = warehouse_option.unwrap_or_else(|| directory.clone());
    Ok(SqlLocation { warehouse, database: directory.join(SQLITE_FILE_NAME) })
}

/// A local path from a plain path or a `file:///abs` URI; relative paths against `cwd`.
fn local_path(text: &str, what: &str, cwd: &Path) -> Result<PathBuf> {
    let text = text.trim();
    if let Some(rest) = strip_prefix_ignore_case(text, "file:") {
        let path = match rest.strip_prefix("//") {
            Some(after) if after.starts_with('/') => after,
            Some(_) => {
                return Err(Error::user(format!("{what} `{text}` is not an absolute file URI"))
                    .with_hint("write file:///absolute/dir (three slashes), or a plain path"));
            }
            None => rest,
        };
        if !path.starts_with('/') {
            return Err(Error::user(format!("{what} `{text}` is not an absolute file URI"))
                .with_hint("write file:///absolute/dir (three slashes), or a plain path"));
        }
        return Ok(PathBuf::from(percent_decode(path, text)?));
    }
    if let Some((scheme, _)) = text.split_once("://")
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        let hint = match scheme.to_ascii_lowercase().as_str() {
            "mongodb" | "mongodb+srv" => {
                "a MongoDB deployment is attached with (TYPE mongodb)".to_string()
            }
            "s3" | "s3a" | "gs" | "abfss" => format!(
                "an embedded catalog keeps its files in a local directory; for tables in object storage use a REST catalog: ATTACH 'http://host:8181' AS lake (TYPE iceberg, CATALOG 'rest', warehouse '{text}')"
            ),
            _ => "use a directory path, file:///abs/dir or sqlite:///abs/dir/catalog.db, or CATALOG 'rest' with an http:// URI".to_string(),
        };
        return Err(Error::user(format!(
            "{what} `{text}` has the scheme `{scheme}://`, which an embedded Iceberg catalog cannot use"
        ))
        .with_hint(hint));
    }
    Ok(cwd.join(text))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// Creates `dir` if missing and returns its canonical absolute path.
fn prepare_directory(dir: &Path) -> Result<PathBuf> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::user(format!(
            "the Iceberg warehouse `{}` is a file, not a directory",
            dir.display()
        ))
        .with_hint("ATTACH a directory (it is created if missing), e.g. ATTACH './warehouse' AS lake (TYPE iceberg)"));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::io(format!("cannot create the Iceberg warehouse directory `{}`", dir.display()), e)
    })?;
    std::fs::canonicalize(dir).map_err(|e| {
        Error::io(format!("cannot resolve the Iceberg warehouse directory `{}`", dir.display()), e)
    })
}

/// Opens the SQLite file once (creating it) and switches it to WAL mode, which persists in the
/// file: readers (pyiceberg, a second misql) then no longer block commits.
async fn enable_wal(database: &Path) -> Result<()> {
    let fail = |e: sqlx::Error| {
        Error::io(
            format!("cannot open the SQLite catalog `{}`", database.display()),
            std::io::Error::other(e),
        )
    };
    let connection = SqliteConnectOptions::new()
        .filename(database)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .map_err(fail)?;
    sqlx::Connection::close(connection).await.map_err(fail)
}

/// `file:///abs/path` without a trailing slash.
fn file_uri(path: &Path) -> String {
    let text = path.to_string_lossy();
    let text = text.trim_end_matches('/');
    format!("file://{}", if text.is_empty() { "/" } else { text })
}

/// Percent-encodes what a URL path cannot hold literally (sqlx decodes it again).
fn percent_encode_path(path: &Path) -> String {
    let mut out = String::new();
    for byte in path.to_string_lossy().bytes() {
        if byte.is_ascii_alphanumeric() || b"/-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str, whole: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(Error::user(format!("`{whole}` has a bad %-escape"))
                    .with_hint("write a literal % as %25"));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        Error::user(format!("`{whole}` decodes to a path that is not UTF-8"))
            .with_hint("use a plain path instead of a URI")
    })
}

// ---------------------------------------------------------------------------------------------
// REST catalog
// ---------------------------------------------------------------------------------------------

async fn connect_rest(uri: &str, options: &[(String, String)]) -> Result<IcebergConnection> {
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
        Some(sentence) => Error::user(format!("cannot attach the Iceberg REST catalog at {uri}: {sentence}"))
            .with_hint(format!(
                "SigV4 signs as service '{}' in region '{}' with credentials from {}; see \"rest.signing-name\", \"rest.signing-region\" and the AWS credentials (environment, AWS_PROFILE, web identity)",
                sigv4.service,
                sigv4.region,
                sigv4.credentials.origin()
            )),
        None => rest_error(uri, None, error),
    }
}

/// The REST client's and FileIO's properties: everything the user gave but the SigV4 options
/// (misql's own; its keys stay out of the tables' FileIO), plus path-style S3 in us-east-1
/// unless told otherwise (what S3-compatible stores such as MinIO and SeaweedFS need).
/// Whether the ATTACH asks the REST catalog for vended storage credentials
/// (`"header.X-Iceberg-Access-Delegation" 'vended-credentials'`).
fn asks_for_vended_credentials(options: &[(String, String)]) -> bool {
    options.iter().any(|(key, value)| {
        key.eq_ignore_ascii_case("header.x-iceberg-access-delegation")
            && value.split(',').any(|v| v.trim() == "vended-credentials")
    })
}

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
/// unknown warehouse and any other refusal are permanent.
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
        return Error::user(format!(
            "the Iceberg REST catalog at {at} answered 404 Not Found to listing namespaces: no such warehouse or prefix"
        ))
        .with_hint("check the warehouse option (e.g. warehouse 's3://warehouse') and the prefix option, if any");
    }
    if failure.refused_credential() {
        return Error::user(format!(
            "the Iceberg REST catalog at {at} refused the credential: {}",
            failure.answer()
        ))
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
    Error::user(format!("the Iceberg REST catalog at {at} refused to list namespaces: {said}"))
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
