#!/usr/bin/env bash
# Installs what the tests and the demo need besides Rust: a Python virtual environment in
# .venv with SecantusDB (a MongoDB-wire-compatible server) and pymongo, at pinned versions.
# Idempotent: re-running it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SECANTUS_VERSION=0.7.0b3
PYMONGO_VERSION=4.20.0

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import importlib.metadata as m; assert m.version('SecantusDB') == '$SECANTUS_VERSION'" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check \
    "SecantusDB==$SECANTUS_VERSION" "pymongo==$PYMONGO_VERSION"
fi
echo "test environment ready: .venv/bin/secantusd-py"
