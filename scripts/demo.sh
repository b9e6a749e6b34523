#!/usr/bin/env bash
# The misql demo: uses the MongoDB at $MONGODB_URI, or starts a local MongoDB-compatible server
# (SecantusDB) when it is not set, loads sample orders, and runs sql/demo.sql: explore the
# collection, then sync it into an Iceberg table under target/demo-warehouse.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test-env.sh >/dev/null
if [ -z "${MONGODB_URI:-}" ]; then
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  .venv/bin/secantusd-py --host 127.0.0.1 --port "$port" --storage-path :memory: --log-level WARNING >/dev/null 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  export MONGODB_URI="mongodb://127.0.0.1:$port/?directConnection=true"
  for _ in $(seq 1 100); do
    (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
  done
  echo "started a local SecantusDB at $MONGODB_URI"
fi
.venv/bin/python examples/load_orders.py "$MONGODB_URI" 2000
cargo run --quiet -- --once --warehouse target/demo-warehouse -f sql/demo.sql
