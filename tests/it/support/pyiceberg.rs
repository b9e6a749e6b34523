//! pyiceberg (PyPI) as an independent reader of the tables misql writes: `read_iceberg.py` opens
//! a catalog, scans a table to Arrow and prints its rows as JSON lines, or prints the table's
//! schema history.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::rustberg::Rustberg;
use super::seaweed::Seaweed;

/// The version the tests are written against.
pub const PYICEBERG_VERSION: &str = "0.12.0";

/// A catalog as pyiceberg opens it.
#[derive(Debug, Clone)]
pub enum PyCatalog {
    /// The embedded SQL catalog misql keeps in `<warehouse>/catalog.db`.
    Sql {
        /// The warehouse directory, absolute.
        warehouse: PathBuf,
    },
    /// A REST catalog with S3 storage.
    Rest {
        /// `http://host:port`
        uri: String,
        /// e.g. `s3://warehouse`
        warehouse: String,
        /// `client_id:secret`; none for a catalog without authentication (rustberg here)
        credential: Option<String>,
        /// `http://host:port`
        s3_endpoint: String,
        /// S3 access key id.
        access_key: String,
        /// S3 secret key.
        secret_key: String,
    },
}

impl PyCatalog {
    /// misql's embedded catalog in `warehouse` (an absolute directory).
    pub fn sql(warehouse: &Path) -> Self {
        PyCatalog::Sql { warehouse: warehouse.to_path_buf() }
    }

    /// The REST catalog of a running seaweedfs.
    pub fn seaweed(server: &Seaweed) -> Self {
        PyCatalog::Rest {
            uri: server.rest_uri.clone(),
            warehouse: server.warehouse.clone(),
            credential: Some(server.credential()),
            s3_endpoint: server.s3_endpoint.clone(),
            access_key: server.access_key.clone(),
            secret_key: server.secret_key.clone(),
        }
    }

    /// The REST catalog of a running rustberg (no credential; S3 of its SeaweedFS).
    pub fn rustberg(server: &Rustberg) -> Self {
        PyCatalog::Rest {
            uri: server.rest_uri.clone(),
            warehouse: server.warehouse.clone(),
            credential: None,
            s3_endpoint: server.s3.s3_endpoint.clone(),
            access_key: server.s3.access_key.clone(),
            secret_key: server.s3.secret_key.clone(),
        }
    }

    /// The properties `pyiceberg.catalog.load_catalog` gets.
    pub(crate) fn properties(&self) -> serde_json::Value {
        match self {
            PyCatalog::Sql { warehouse } => serde_json::json!({
                "name": misql::lake::catalog::SQL_CATALOG_NAME,
                "type": "sql",
                "uri": format!("sqlite:///{}", warehouse.join("catalog.db").display()),
                "warehouse": format!("file://{}", warehouse.display()),
            }),
            PyCatalog::Rest { uri, warehouse, credential, s3_endpoint, access_key, secret_key } => {
                let mut properties = serde_json::json!({
                    "name": "rest",
                    "type": "rest",
                    "uri": uri,
                    "warehouse": warehouse,
                    "s3.endpoint": s3_endpoint,
                    "s3.access-key-id": access_key,
                    "s3.secret-access-key": secret_key,
                    "s3.region": "us-east-1",
                    "s3.path-style-access": "true",
                });
                if let Some(credential) = credential {
                    properties["credential"] = credential.as_str().into();
                }
                properties
            }
        }
    }
}

/// Every row of `table` (`namespace.table`) as pyiceberg reads it, sorted by column `key`; one
/// JSON object per row (decimals as strings, timestamps as ISO-8601 strings). Panics with the
/// script's stderr if pyiceberg fails.
pub fn pyiceberg_rows(catalog: &PyCatalog, table: &str, key: &str) -> Vec<serde_json::Value> {
    pyiceberg_rows_timed(catalog, table, key).0
}

/// [`pyiceberg_rows`], and how long the Python process took.
pub fn pyiceberg_rows_timed(
    catalog: &PyCatalog,
    table: &str,
    key: &str,
) -> (Vec<serde_json::Value>, Duration) {
    let started = Instant::now();
    let rows = run_script(&[&catalog.properties().to_string(), table, key], table);
    (rows, started.elapsed())
}

/// The schema history of `table` (`namespace.table`) as pyiceberg reads it: one JSON object per
/// schema, in schema id order: `{"schema_id": n, "current": bool, "identifier_fields": [..],
/// "fields": [{"name": .., "type": .., "required": bool}, ..]}`, a type being pyiceberg's text
/// for a primitive (`"int"`, `"long"`, `"string"`, `"decimal(18, 2)"`…) or
/// `{"struct": [fields]}`, `{"list": type, "element_required": bool}`,
/// `{"map": [key, value], "value_required": bool}`.
pub fn pyiceberg_schemas(catalog: &PyCatalog, table: &str) -> Vec<serde_json::Value> {
    run_script(&["--schemas", &catalog.properties().to_string(), table], table)
}

/// Every file the current snapshot of `table` (`namespace.table`) references, as pyiceberg
/// finds them: one JSON object per file, `{"path": .., "kind": "manifest list" | "manifest" |
/// "data" | "position deletes" | "equality deletes", "exists": bool}`, `exists` asked of the
/// object store.
pub fn pyiceberg_files(catalog: &PyCatalog, table: &str) -> Vec<serde_json::Value> {
    run_script(&["--files", &catalog.properties().to_string(), table], table)
}

/// Every snapshot still in `table`'s metadata, read by time travel, in sequence-number order:
/// `{"snapshot_id", "sequence_number", "operation", "rows", "sum", "summary"}`, `sum` being the
/// sum of `column`'s values in that snapshot.
pub fn pyiceberg_history(catalog: &PyCatalog, table: &str, column: &str) -> Vec<serde_json::Value> {
    run_script(&["--history", &catalog.properties().to_string(), table, column], table)
}

/// The consistent cuts of `tables` found from their snapshot summaries (`misql.valid-through`
/// and `misql.first-change-time`), oldest first: `{"time": "s,i", "tables": {name:
/// {"snapshot_id", "rows", "sum"}}}`, `sum` being the sum of `column` in that table's snapshot.
pub fn pyiceberg_cuts(
    catalog: &PyCatalog,
    column: &str,
    tables: &[&str],
) -> Vec<serde_json::Value> {
    let props = catalog.properties().to_string();
    let mut args = vec!["--cuts", &props, column];
    args.extend_from_slice(tables);
    run_script(&args, &tables.join(", "))
}

/// The rows and the sum of `column` of each table state named by a metadata file (read without
/// a catalog), by location.
pub fn pyiceberg_metadata_sums(
    column: &str,
    locations: &[String],
) -> std::collections::HashMap<String, (i64, i64)> {
    let mut args = vec!["--metadata", column];
    args.extend(locations.iter().map(String::as_str));
    let lines = run_script(&args, "the metadata files");
    lines
        .iter()
        .map(|l| {
            let location = l["location"].as_str().unwrap().to_string();
            (location, (l["rows"].as_i64().unwrap(), l["sum"].as_i64().unwrap()))
        })
        .collect()
}

/// Deletes the rows of `table` that match `filter` (pyiceberg's filter syntax, e.g. `_id < 50`)
/// with pyiceberg, as another writer of the table would.
pub fn pyiceberg_delete(catalog: &PyCatalog, table: &str, filter: &str) {
    run_script(&["--delete", &catalog.properties().to_string(), table, filter], table);
}

/// Runs read_iceberg.py with `args`; its stdout as JSON lines. Panics with the script's stderr
/// if pyiceberg fails.
fn run_script(args: &[&str], table: &str) -> Vec<serde_json::Value> {
    run_reader("read_iceberg.py", args, &format!("pyiceberg could not read {table}"))
}

/// Runs the reader script `script` (in tests/it/support) with `args`; its stdout as JSON lines.
/// Panics with `failure`, the script's status, stderr and stdout when it fails.
pub(crate) fn run_reader(script: &str, args: &[&str], failure: &str) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support").join(script);
    let output = Command::new(python())
        .arg(&script)
        .args(args)
        .env("PYICEBERG_HOME", std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{failure} ({}):\n{stderr}\n{stdout}", output.status);
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad JSON from {}: {line}: {e}", script.display()))
        })
        .collect()
}

/// The project's `.venv` python, where scripts/setup-test-env.sh installs pyiceberg.
pub(crate) fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(find_python).clone()
}

fn find_python() -> PathBuf {
    if let Some(path) = std::env::var_os("PYICEBERG_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let has_pyiceberg = venv.exists()
        && Command::new(&venv)
            .args(["-c", "import pyiceberg.catalog.sql, pyarrow"])
            .output()
            .is_ok_and(|o| o.status.success());
    if has_pyiceberg {
        return venv;
    }
    panic!(
        "pyiceberg is not installed in .venv: the tests read Iceberg tables back with it.\n\
         Install it with: scripts/setup-test-env.sh\n\
         (or: python3 -m venv .venv && .venv/bin/pip install 'pyiceberg[sql-sqlite,pyarrow]=={PYICEBERG_VERSION}'),\n\
         or point PYICEBERG_PYTHON at a python that has it."
    );
}
