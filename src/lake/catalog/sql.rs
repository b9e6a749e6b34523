//! The embedded SQL catalog: where its SQLite file and warehouse are (from the ATTACH URI and the
//! `warehouse` option), preparing them, and opening the catalog.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::CatalogBuilder;
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

use super::{
    CatalogKind, IcebergConnection, REST_ONLY_OPTIONS, SQL_CATALOG_NAME, SQLITE_FILE_NAME, option,
};
use crate::lake::sigv4;
use crate::{Error, Result};

/// Where the embedded catalog keeps its SQLite file and its data.
#[derive(Debug, PartialEq, Eq)]
struct SqlLocation {
    warehouse: PathBuf,
    database: PathBuf,
}

pub(super) async fn connect_sql(
    uri: &str,
    options: &[(String, String)],
) -> Result<IcebergConnection> {
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
