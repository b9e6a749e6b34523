#!/usr/bin/env bash
# The whole test suite: installs the test server if needed, then runs every test against it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-env.sh
cargo test "$@"
