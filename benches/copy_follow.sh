#!/usr/bin/env bash
# The copy-beside-the-stream benchmark: what a user sees of a long copy while the application
# writes. Two parts, each on its own SecantusDB:
#
#   benches/copy_follow.sh [N] [HISTORY_N]     (defaults 200000 and 30000)
#
# 1. visibility: N orders; a misql daemon (release build) syncs them while the application
#    updates 20 orders a second and inserts a marker order every 2 s: how long a marker inserted
#    during the copy takes to be visible in the table (goal: flush_interval + 1 s), how long the
#    copy takes with those writes, misql's peak RSS. Compare the copy's length with
#    `benches/snapshot.sh N` (the same copy with no writes, against a raw driver read).
# 2. history: HISTORY_N orders on a server that keeps 10 s of change history
#    (--oplog-retention-seconds 10, pruned every 1,000 writes), misql reading through a relay
#    that passes 100 KB/s from the server, the application making 60 changes a second over its
#    own connection: time to reach streaming, re-copies (goal 0), lag while the writes go on
#    (goal under 20 s).
# Everything it starts is stopped and its temporary files removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-200000}
HISTORY_N=${2:-30000}
# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building misql (release)..." >&2
cargo build --quiet --release --bin misql
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
MISQL=$target_dir/release/misql

tmp=$(mktemp -d "${TMPDIR:-/tmp}/misql-copy-follow.XXXXXX")
server=
relay=
cleanup() {
  for pid in $relay $server; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== visibility: $N orders, writes during the copy" >&2
start_server --noop-heartbeat-seconds 1
timeout $((120 + N / 500)) "$PY" examples/load_orders.py "$URI" "$N" bench.orders >&2
timeout 1200 "$PY" benches/copy_follow.py visibility "$MISQL" "$URI" "$N" "$tmp"
kill "$server"; wait "$server" 2>/dev/null || true; server=

echo "== history: $HISTORY_N orders, 10 s of change history, a 100 KB/s link" >&2
start_server --oplog-retention-seconds 10
timeout $((120 + HISTORY_N / 500)) "$PY" examples/load_orders.py "$URI" "$HISTORY_N" bench.orders >&2
relay_port=$(free_port)
upstream_port=${URI#mongodb://127.0.0.1:}
upstream_port=${upstream_port%%/*}
"$PY" - "$relay_port" "$upstream_port" 100000 <<'PYTHON' &
# A relay that passes what the server sends at most RATE bytes a second per connection.
import asyncio, sys
port, upstream, rate = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

async def pipe(reader, writer, limit):
    try:
        while data := await reader.read(max(1, rate // 10) if limit else 65536):
            writer.write(data)
            await writer.drain()
            if limit:
                await asyncio.sleep(len(data) / rate)
    finally:
        writer.close()

async def serve(client_r, client_w):
    server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
    await asyncio.gather(pipe(client_r, server_w, False), pipe(server_r, client_w, True),
                         return_exceptions=True)

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await asyncio.sleep(1800)

asyncio.run(main())
PYTHON
relay=$!
sleep 1
timeout 900 "$PY" benches/copy_follow.py history "$MISQL" "$URI" "$tmp" \
  "mongodb://127.0.0.1:$relay_port/?directConnection=true"
