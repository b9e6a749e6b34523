"""Reads an Iceberg table with DuckDB's iceberg extension (a third, independent reader) and prints
it as JSON, in exactly the format of read_iceberg.py.

Usage: read_duckdb.py '<catalog properties as JSON>' <namespace.table> <key column>
       read_duckdb.py --count '<catalog properties as JSON>' <namespace.table>

The catalog properties go to pyiceberg.catalog.load_catalog, as for read_iceberg.py; pyiceberg
only finds the table's current metadata file (`metadata_location`). DuckDB reads everything else
itself: `SELECT * FROM iceberg_scan('<metadata file>')` follows the snapshot, manifests, data
files and position deletes.

The extensions (parquet, avro, iceberg, and httpfs for S3) come from the duckdb-ext-* wheels that
scripts/setup-test-env.sh installs; they are loaded by path, unsigned, with automatic extension
download switched off. Tables on the local file system (misql's embedded SQLite catalog) and on
S3 (a REST catalog's: the catalog properties' s3.endpoint, s3.access-key-id and
s3.secret-access-key become a DuckDB S3 secret, path-style, plain HTTP for an http:// endpoint)
can be read; any other metadata location exits with status 2 and a one-line message on stderr.

Rows: every row is printed as one JSON object per line, sorted by the key column, the values
formatted as read_iceberg.py formats them: decimals as strings (exact), timestamps, dates and
times as ISO-8601 strings (timestamptz in UTC, "+00:00"), binary values as hex strings, UUIDs as
their canonical text, structs as objects, lists as arrays and maps as arrays of [key, value]
pairs in file order.

Known difference from read_iceberg.py: pyiceberg 0.12 reads a null list of structs (and, by the
same code, a null map with struct values) as empty ([]): its Arrow projection rebuilds those
arrays from their offsets without the validity bitmap (apache/iceberg-python#251, #3833).
DuckDB prints null, which is what the data file holds. Every other value prints identically.

--count: prints {"rows": n, "seconds": t}: n from `SELECT count(*)`, t the wall time of a full
`SELECT *` (execution and fetchall, not the extension loading, the catalog lookup or any JSON
conversion). Fails if the full read does not return n rows.
"""
import importlib.metadata
import json
import sys
import time
import urllib.parse

from pyiceberg.catalog import load_catalog

# Values print as read_iceberg.py prints them (it sits beside this script).
from read_iceberg import plain as plain_scalar
from read_iceberg import sort_key

try:
    import duckdb
except ImportError:
    sys.stderr.write("read_duckdb.py: duckdb is not installed; run scripts/setup-test-env.sh\n")
    sys.exit(1)

# In load order: iceberg needs the other two.
EXTENSIONS = ("parquet", "avro", "iceberg")

# Map key types DuckDB's Python client cannot make dict keys of: such maps come back as
# {"key": [keys], "value": [values]} instead of {key: value}.
UNHASHABLE_KEY_TYPES = {"struct", "list", "array", "map", "union"}


def fail(status, message):
    sys.stderr.write(f"read_duckdb.py: {message}\n")
    sys.exit(status)


def extension_path(name):
    """The .duckdb_extension file the duckdb-ext-<name> wheel installed."""
    distribution = f"duckdb-ext-{name}"
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        fail(1, f"{distribution} is not installed; run scripts/setup-test-env.sh")
    for file in dist.files or ():
        if file.name == f"{name}.duckdb_extension":
            return str(dist.locate_file(file))
    fail(1, f"{distribution} holds no {name}.duckdb_extension")


def connect(s3=None):
    """A DuckDB connection with the extensions loaded; `s3` (the catalog properties) when the
    table is in S3."""
    con = duckdb.connect(
        ":memory:",
        config={
            "allow_unsigned_extensions": True,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )
    for name in EXTENSIONS + (("httpfs",) if s3 is not None else ()):
        path = extension_path(name)
        con.execute("LOAD '" + path.replace("'", "''") + "'")
    if s3 is not None:
        endpoint = urllib.parse.urlparse(s3.get("s3.endpoint", "https://s3.amazonaws.com"))
        con.execute(
            "CREATE SECRET misql_s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, "
            "URL_STYLE ?, USE_SSL ?)",
            [
                s3.get("s3.access-key-id", ""),
                s3.get("s3.secret-access-key", ""),
                s3.get("s3.region", "us-east-1"),
                endpoint.netloc,
                "path" if s3.get("s3.path-style-access", "false") == "true" else "vhost",
                endpoint.scheme != "http",
            ],
        )
    # timestamptz values come back in the session time zone: make it UTC, as pyarrow gives them.
    con.execute("SET TimeZone = 'UTC'")
    return con


def metadata_file(props_json, table_name):
    """The table's current metadata file, found through the catalog: (a local path or an s3://
    URL, a connection able to read it)."""
    props = json.loads(props_json)
    name = props.pop("name", "misql")
    location = load_catalog(name, **props).load_table(table_name).metadata_location
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "file":
        return urllib.parse.unquote(parsed.path), connect()
    if parsed.scheme == "":
        return location, connect()
    if parsed.scheme in ("s3", "s3a"):
        return "s3://" + location.split("://", 1)[1], connect(s3=props)
    fail(2, f"DuckDB cannot read {parsed.scheme}:// here: {table_name} is at {location}")


def plain(value, column_type):
    """`value` as read_iceberg.py prints it, `column_type` (a DuckDBPyType) telling maps from
    structs."""
    if value is None:
        return None
    kind = column_type.id
    if kind == "struct":
        fields = dict(column_type.children)
        return {k: plain(v, fields[k]) for k, v in value.items()}
    if kind in ("list", "array"):
        element = column_type.children[0][1]
        return [plain(v, element) for v in value]
    if kind == "map":
        (_, key_type), (_, value_type) = column_type.children
        if key_type.id in UNHASHABLE_KEY_TYPES:
            pairs = zip(value["key"], value["value"])
        else:
            pairs = value.items()
        # pyarrow gives maps as lists of (key, value) tuples, which read_iceberg.py prints as
        # [key, value] arrays
        return [[plain(k, key_type), plain(v, value_type)] for k, v in pairs]
    return plain_scalar(value)


SCAN = "SELECT * FROM iceberg_scan(?)"


def print_rows(props_json, table_name, key):
    path, con = metadata_file(props_json, table_name)
    result = con.sql(SCAN, params=[path])
    columns = list(zip(result.columns, result.types))
    rows = [dict(zip(result.columns, values)) for values in result.fetchall()]
    rows.sort(key=lambda row: sort_key(row, key))
    out = sys.stdout
    for row in rows:
        line = {name: plain(row[name], column_type) for name, column_type in columns}
        out.write(json.dumps(line, sort_keys=True))
        out.write("\n")


def print_count(props_json, table_name):
    path, con = metadata_file(props_json, table_name)
    (count,) = con.sql("SELECT count(*) FROM iceberg_scan(?)", params=[path]).fetchone()
    started = time.perf_counter()
    rows = con.sql(SCAN, params=[path]).fetchall()
    seconds = time.perf_counter() - started
    if len(rows) != count:
        fail(1, f"count(*) says {count} rows but SELECT * returned {len(rows)} for {table_name}")
    sys.stdout.write(json.dumps({"rows": count, "seconds": seconds}))
    sys.stdout.write("\n")


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "--count":
        print_count(args[1], args[2])
    elif len(args) == 3 and not args[0].startswith("--"):
        print_rows(args[0], args[1], args[2])
    else:
        fail(2, "usage: read_duckdb.py [--count] '<catalog properties as JSON>' "
                "<namespace.table> [<key column>]")


if __name__ == "__main__":
    main()
