//! The REST catalogs the tests run on: SeaweedFS's own (`weed mini`, [`seaweed()`]) and rustberg
//! ([`rustberg()`], over SeaweedFS's S3). A test of the REST path takes a [`RestCatalog`] and is
//! run once per catalog by thin `#[tokio::test]` wrappers.

use super::duckdb::duckdb_rows;
use super::pyiceberg::{PyCatalog, pyiceberg_rows};
use super::rustberg::rustberg;
use super::seaweed::seaweed;

/// One of the REST catalogs the tests run on; each is started once per test process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestCatalog {
    /// SeaweedFS's Iceberg REST catalog (OAuth2 client credentials; table bucket `warehouse`).
    Seaweed,
    /// rustberg without authentication, its warehouse in SeaweedFS's bucket `rustberg`.
    Rustberg,
}

impl RestCatalog {
    /// The catalog's address, `http://127.0.0.1:PORT` (starts the server on first use).
    pub fn rest_uri(self) -> &'static str {
        match self {
            RestCatalog::Seaweed => &seaweed().rest_uri,
            RestCatalog::Rustberg => &rustberg().rest_uri,
        }
    }

    /// The S3 endpoint the tables' files are in: SeaweedFS's, for both.
    pub fn s3_endpoint(self) -> &'static str {
        &seaweed().s3_endpoint
    }

    /// The `warehouse` option: `s3://warehouse` (SeaweedFS's table bucket) or
    /// `s3://rustberg/warehouse`.
    pub fn warehouse(self) -> &'static str {
        match self {
            RestCatalog::Seaweed => &seaweed().warehouse,
            RestCatalog::Rustberg => &rustberg().warehouse,
        }
    }

    /// The ATTACH options, as the parser gives them to `misql::lake::catalog::connect`.
    pub fn options(self) -> Vec<(String, String)> {
        match self {
            RestCatalog::Seaweed => seaweed().options(),
            RestCatalog::Rustberg => rustberg().options(),
        }
    }

    /// `ATTACH '<rest uri>' AS <name> (TYPE iceberg, CATALOG 'rest', ...)`.
    pub fn attach_sql(self, name: &str) -> String {
        match self {
            RestCatalog::Seaweed => seaweed().attach_sql(name),
            RestCatalog::Rustberg => rustberg().attach_sql(name),
        }
    }

    /// [`Self::attach_sql`] with the catalog at `rest_uri` and S3 at `s3_endpoint` (proxies in
    /// front of them), and `extra` options (`, key 'value'...`) appended.
    pub fn attach_sql_via(
        self,
        name: &str,
        rest_uri: &str,
        s3_endpoint: &str,
        extra: &str,
    ) -> String {
        match self {
            RestCatalog::Seaweed => seaweed().attach_sql_via(name, rest_uri, s3_endpoint, extra),
            RestCatalog::Rustberg => rustberg().attach_sql_via(name, rest_uri, s3_endpoint, extra),
        }
    }

    /// The catalog as pyiceberg (and DuckDB's reader) opens it.
    pub fn py(self) -> PyCatalog {
        match self {
            RestCatalog::Seaweed => PyCatalog::seaweed(seaweed()),
            RestCatalog::Rustberg => PyCatalog::rustberg(rustberg()),
        }
    }

    /// pyiceberg reads `table` (`namespace.name`) with the keys of `expected`, in key order
    /// (so it applies the position deletes), and DuckDB reads from S3 what pyiceberg reads.
    pub fn assert_read_alike(self, table: &str, expected: &[serde_json::Value]) {
        let py = pyiceberg_rows(&self.py(), table, "_id");
        let ids =
            |rows: &[serde_json::Value]| rows.iter().map(|r| r["_id"].clone()).collect::<Vec<_>>();
        assert_eq!(ids(&py), ids(expected), "pyiceberg's keys of {table}");
        let duck = duckdb_rows(&self.py(), table, "_id");
        assert_eq!(duck, py, "DuckDB reads from S3 what pyiceberg reads");
    }
}

/// One test per REST catalog: `on_each_rest_catalog!(name, body)` defines a module `name` with
/// the tests `seaweedfs` and `rustberg`, each awaiting `body(RestCatalog::…)` (`body` being an
/// `async fn(RestCatalog)`, or a closure returning a future). `cargo test rustberg` picks the
/// rustberg ones.
macro_rules! on_each_rest_catalog {
    ($(#[$attr:meta])* $name:ident, $body:expr $(,)?) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn seaweedfs() {
                ($body)($crate::support::rest_catalog::RestCatalog::Seaweed).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn rustberg() {
                ($body)($crate::support::rest_catalog::RestCatalog::Rustberg).await;
            }
        }
    };
}
pub(crate) use on_each_rest_catalog;
