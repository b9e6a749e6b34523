"""Figures of one Iceberg table of misql's embedded catalog, for benches/maintenance.sh: what the
table costs to keep and to read. Prints one JSON line.

Usage: table_figures.py WAREHOUSE NAMESPACE.TABLE      (run with the .venv Python)

  data_files      live data files (entries of the current snapshot's manifests, deleted
                  entries left out)
  delete_files    live delete files (position and equality deletes), the same way
  manifests       manifests the current snapshot lists
  snapshots       snapshots in the table metadata
  metadata_bytes  size of the current metadata JSON (the file the catalog points to)
  files_on_disk   files under WAREHOUSE/NAMESPACE/TABLE (data, metadata, anything), and
  bytes_on_disk   their total size
  metadata_files  of those, the metadata JSON files (*.metadata.json: the current one and the
                  older ones still on disk), and
  metadata_files_bytes  their total size
  rows            rows of a full read with pyiceberg (DuckDB must read as many)
  pyiceberg_s     full read with pyiceberg, in-process: load_table (catalog lookup and metadata
                  JSON parse) + scan().to_arrow(); best of 3 after one warm-up read
  duckdb_s        full read with DuckDB's iceberg extension, in-process, exactly as
                  tests/it/support/read_duckdb.py --count times it (`SELECT * FROM
                  iceberg_scan('<metadata file>')`, execution and fetchall); best of 3 after one
                  warm-up read. The metadata file is looked up once, through pyiceberg.
"""
import json
import os
import sys
import time

# No __pycache__ written under tests/.
sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "it", "support"))

from pyiceberg.catalog import load_catalog  # noqa: E402
from pyiceberg.manifest import DataFileContent  # noqa: E402

import read_duckdb  # noqa: E402  (tests/it/support/read_duckdb.py: its metadata_file() and SCAN)

RUNS = 3


def best_of(runs, read):
    """Runs `read` once to warm up, then `runs` times; the shortest wall time and the last result."""
    result = read()
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        result = read()
        best = min(best, time.perf_counter() - started)
    return best, result


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: table_figures.py WAREHOUSE NAMESPACE.TABLE")
    warehouse, name = os.path.abspath(sys.argv[1]), sys.argv[2]
    namespace, _, table_name = name.partition(".")
    # The embedded catalog as pyiceberg opens it (tests/it/support/pyiceberg.rs; the catalog
    # name is misql::lake::catalog::SQL_CATALOG_NAME).
    props = {
        "name": "misql",
        "type": "sql",
        "uri": f"sqlite:///{warehouse}/catalog.db",
        "warehouse": f"file://{warehouse}",
    }
    catalog_props = {k: v for k, v in props.items() if k != "name"}
    catalog = load_catalog(props["name"], **catalog_props)
    table = catalog.load_table(name)
    io = table.io

    data_files = delete_files = manifests = 0
    snapshot = table.current_snapshot()
    if snapshot is not None:
        listed = snapshot.manifests(io)
        manifests = len(listed)
        for manifest in listed:
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                if entry.data_file.content == DataFileContent.DATA:
                    data_files += 1
                else:
                    delete_files += 1
    metadata_path = table.metadata_location.removeprefix("file://")
    metadata_bytes = os.path.getsize(metadata_path)

    files_on_disk = bytes_on_disk = metadata_files = metadata_files_bytes = 0
    for root, _, files in os.walk(os.path.join(warehouse, namespace, table_name)):
        for file in files:
            size = os.path.getsize(os.path.join(root, file))
            files_on_disk += 1
            bytes_on_disk += size
            if file.endswith(".metadata.json"):
                metadata_files += 1
                metadata_files_bytes += size

    pyiceberg_s, arrow = best_of(RUNS, lambda: catalog.load_table(name).scan().to_arrow())
    rows = arrow.num_rows

    path, con = read_duckdb.metadata_file(json.dumps(props), name)
    duckdb_s, duck_rows = best_of(
        RUNS, lambda: len(con.sql(read_duckdb.SCAN, params=[path]).fetchall()))
    if duck_rows != rows:
        sys.exit(f"table_figures.py: {name}: pyiceberg read {rows} rows, DuckDB {duck_rows}")

    print(json.dumps({
        "table": name,
        "data_files": data_files,
        "delete_files": delete_files,
        "manifests": manifests,
        "snapshots": len(table.metadata.snapshots),
        "metadata_bytes": metadata_bytes,
        "files_on_disk": files_on_disk,
        "bytes_on_disk": bytes_on_disk,
        "metadata_files": metadata_files,
        "metadata_files_bytes": metadata_files_bytes,
        "rows": rows,
        "pyiceberg_s": round(pyiceberg_s, 4),
        "duckdb_s": round(duckdb_s, 4),
    }))


if __name__ == "__main__":
    main()
