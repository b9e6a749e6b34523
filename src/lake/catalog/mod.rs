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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use iceberg::Catalog;

use crate::lake::sigv4::{SigV4, forward::Forwarder};
use crate::{Error, Result};

mod rest;
mod sql;

use rest::connect_rest;
use sql::connect_sql;

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
