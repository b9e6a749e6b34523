//! DuckDB (PyPI, with its iceberg extension) as a third independent reader of the tables misql
//! writes: `read_duckdb.py` finds a table's current metadata file through the catalog (pyiceberg's
//! `load_catalog`, nothing more), reads the rows with DuckDB's `iceberg_scan`, which follows the
//! snapshot and applies position deletes itself, and prints them as JSON lines in the format of
//! `read_iceberg.py`, so they compare with [`pyiceberg_rows`](super::pyiceberg::pyiceberg_rows).
//!
//! DuckDB reads tables on the local file system (misql's embedded catalog, [`PyCatalog::Sql`])
//! and in S3 (a REST catalog's, [`PyCatalog::Rest`]: its httpfs extension, with an S3 secret made
//! from the catalog's `s3.*` properties).
//!
//! One known difference from pyiceberg: pyiceberg 0.12 reads a null list of structs as `[]`
//! (apache/iceberg-python#251); DuckDB reads `null`, which is what the data file holds.

use super::pyiceberg::{PyCatalog, run_reader};

/// The DuckDB version the tests are written against (its extensions come from the
/// `duckdb-ext-*` wheels of the same version; see scripts/setup-test-env.sh).
pub const DUCKDB_VERSION: &str = "1.4.4";

/// Every row of `table` (`namespace.table`) as DuckDB reads it, sorted by column `key`; one JSON
/// object per row, formatted as [`pyiceberg_rows`](super::pyiceberg::pyiceberg_rows) formats
/// them (decimals as strings, timestamps as ISO-8601 strings, binary as hex). Panics with the
/// script's stderr if DuckDB fails, or if the table is neither on the local file system nor in S3.
pub fn duckdb_rows(catalog: &PyCatalog, table: &str, key: &str) -> Vec<serde_json::Value> {
    let failure = format!(
        "DuckDB {DUCKDB_VERSION} could not read {table} (DuckDB and its extensions are \
         installed by scripts/setup-test-env.sh)"
    );
    run_reader("read_duckdb.py", &[&catalog.properties().to_string(), table, key], &failure)
}
