#!/usr/bin/env bash
# Many syncs in one process: peak memory and per-sync throughput for 1, 5 and 20 syncs in one
# `misql -f` daemon.
#
#   benches/many_syncs.sh [DOCS] [UPDATES]     defaults 3000 documents and 1000 updates per collection
#   COUNTS="1 5 20" MISQL=target/release/misql benches/many_syncs.sh
#
# It builds nothing: it copies target/debug/misql (or $MISQL) into its temporary directory and
# runs the copy. It starts its own SecantusDB (in memory, on a free loopback port; see
# benches/lib.sh), then for each N in COUNTS:
#
#  1. loads N collections of DOCS orders each (examples/load_orders.py) into database many_N;
#  2. starts `misql -f syncs.sql --http ADDR` with one `CREATE SYNC` per collection (explicit
#     SELECT, PARTITION BY day(created_at), flush_interval 1s) and polls /metrics every 0.2 s:
#     the snapshot time is until every sync's phase is `streaming`; snapshot docs/s = N * DOCS /
#     that time, per sync = DOCS / that time;
#  3. applies UPDATES `$set` updates to each collection (pymongo bulk writes, collections
#     interleaved) and polls until the sum of misql_sync_events_applied_total reaches N * UPDATES:
#     events/s across the daemon and per sync, from the end of the writes' start;
#  4. peak RSS: the highest process_resident_memory_bytes seen while polling; then SIGTERM
#     (misql commits and exits) and the next N.
#
# SecantusDB is a Python server and bounds every figure here (reads ~29k small docs/s, ~14k
# change events/s, both shared by all syncs); what this shows is how misql divides the work and
# how its memory grows with the number of syncs.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCS=${1:-3000}
UPDATES=${2:-1000}
COUNTS=${COUNTS:-"1 5 20"}

# shellcheck source=benches/lib.sh
. benches/lib.sh

daemon_bench many-syncs
echo "SecantusDB at $URI; misql: ${MISQL:-target/debug/misql}" >&2

port=$(free_port)
results=()
for n in $COUNTS; do
  db="many_$n"
  for i in $(seq 1 "$n"); do
    "$PY" examples/load_orders.py "$URI" "$DOCS" "$db.c$i" >/dev/null
  done
  file="$tmp/syncs_$n.sql"
  : >"$file"
  for i in $(seq 1 "$n"); do
    echo "CREATE SYNC s$i FROM mongo.$db.c$i INTO iceberg.$db.c$i SELECT _id, customer.name AS customer, total::DECIMAL(18,2) AS total, status, created_at PARTITION BY day(created_at) WITH (flush_interval = '1s');" >>"$file"
  done
  MONGODB_URI=$URI "$tmp/misql" --warehouse "$tmp/wh_$n" -f "$file" --http "127.0.0.1:$port" \
    >/dev/null 2>"$tmp/daemon_$n.log" &
  daemon=$!
  line=$("$PY" - "$port" "$n" "$DOCS" "$UPDATES" "$URI" "$db" <<'PYTHON'
import sys, threading
sys.path.insert(0, "benches")
from pymongo import MongoClient, UpdateOne
from scrape import Scraper, wait_for
port, n, docs, updates, uri, db = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
metrics = Scraper(port)

def streaming():
    got = metrics.scrape()
    return got and got[0] == n
snapshot = wait_for(f"not all {n} syncs streaming", streaming, 600)

client = MongoClient(uri)
ids = {i: [d["_id"] for d in client[db][f"c{i}"].find({}, {"_id": 1})] for i in range(1, n + 1)}
def write(i):
    coll = client[db][f"c{i}"]
    ops = [UpdateOne({"_id": ids[i][k % len(ids[i])]}, {"$set": {"status": f"u{k}"}}) for k in range(updates)]
    for k in range(0, len(ops), 500):
        coll.bulk_write(ops[k:k + 500], ordered=False)
threads = [threading.Thread(target=write, args=(i,)) for i in range(1, n + 1)]
for t in threads: t.start()

def applied():
    got = metrics.scrape()
    return got and got[1] >= n * updates
stream = wait_for(f"not all {n * updates} events applied", applied, 900)
for t in threads: t.join()
peak = metrics.peak
print(f"{n} {snapshot:.2f} {n * docs / snapshot:.0f} {docs / snapshot:.0f} {stream:.2f} {n * updates / stream:.0f} {updates / stream:.0f} {peak / 1e6:.0f}")
PYTHON
)
  stop_daemon "$tmp/daemon_$n.log"
  results+=("$line")
  echo "$n syncs done: $line" >&2
done

echo
echo "| syncs | snapshot s | docs/s (all) | docs/s per sync | stream s | events/s (all) | events/s per sync | peak RSS MB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for line in "${results[@]}"; do
  read -r n snap dall dper str eall eper rss <<<"$line"
  echo "| $n | $snap | $dall | $dper | $str | $eall | $eper | $rss |"
done
