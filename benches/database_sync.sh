#!/usr/bin/env bash
# A database of many collections: one database sync (`CREATE SYNC d FROM mongo.db.* INTO
# iceberg.db`, one change stream) against one `CREATE SYNC` per collection (one stream each),
# on the same data, in one `misql -f` daemon each.
#
#   benches/database_sync.sh [COLLECTIONS] [DOCS] [UPDATES]   defaults 100 collections of 200
#                                                             documents, 50 updates each
#   MISQL=target/release/misql benches/database_sync.sh 200
#
# It builds nothing: it copies target/debug/misql (or $MISQL) into its temporary directory and
# runs the copy. It starts its own SecantusDB (in memory, on a free loopback port; see
# benches/lib.sh), loads COLLECTIONS collections of DOCS orders (examples/load_orders.py) into
# database bench_db, then for each way of syncing them:
#
#  1. starts `misql -f syncs.sql --http ADDR` (SELECT * syncs, flush_interval 1s) and polls
#     /metrics every 0.2 s until every collection's sync is `streaming` (each has committed its
#     snapshot): the time from the start of the process to the first commit of every table;
#  2. applies UPDATES `$set` updates to each collection (values of its own for each way of syncing:
#     an update that changes nothing makes no change event) (pymongo bulk writes from 8 threads) and
#     polls until the syncs applied them all: events/s across the database;
#  3. while it streams, the server's open connections and cursors (serverStatus), and misql's
#     peak RSS (process_resident_memory_bytes);
#  4. SIGTERM (misql commits and exits), and the tables are dropped with the warehouse.
#
# SecantusDB is a Python server: it bounds the absolute figures; the comparison is what counts.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-100}
DOCS=${2:-200}
UPDATES=${3:-50}

# shellcheck source=benches/lib.sh
. benches/lib.sh

daemon_bench database-sync
echo "SecantusDB at $URI; misql: ${MISQL:-target/debug/misql}; $N collections of $DOCS documents" >&2
for i in $(seq 1 "$N"); do
  "$PY" examples/load_orders.py "$URI" "$DOCS" "bench_db.c$i" >/dev/null
done

port=$(free_port)
results=()
for mode in database separate; do
  file="$tmp/$mode.sql"
  if [ "$mode" = database ]; then
    echo "CREATE SYNC d FROM mongo.bench_db.* INTO iceberg.bench_db WITH (flush_interval = '1s');" >"$file"
  else
    : >"$file"
    for i in $(seq 1 "$N"); do
      echo "CREATE SYNC s$i FROM mongo.bench_db.c$i INTO iceberg.bench_db.c$i WITH (flush_interval = '1s');" >>"$file"
    done
  fi
  launched=$(date +%s.%N)
  MONGODB_URI=$URI "$tmp/misql" --warehouse "$tmp/wh_$mode" -f "$file" --http "127.0.0.1:$port" \
    >/dev/null 2>"$tmp/daemon_$mode.log" &
  daemon=$!
  line=$("$PY" - "$port" "$N" "$UPDATES" "$URI" "$mode" "$launched" <<'PYTHON'
import sys, time
sys.path.insert(0, "benches")
from concurrent.futures import ThreadPoolExecutor
from pymongo import MongoClient, UpdateOne
from scrape import Scraper, wait_for
port, n, updates, uri, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
launched = float(sys.argv[6])
client = MongoClient(uri)
# In the database sync, the collections' syncs are named d/<collection>.
metrics = Scraper(port, lambda line: mode == "separate" or 'sync="d/' in line)

def streaming():
    got = metrics.scrape()
    return got and got[0] >= n
wait_for(f"not all {n} syncs streaming", streaming, 900)
first_commits = time.time() - launched

db = client["bench_db"]
ids = {i: [d["_id"] for d in db[f"c{i}"].find({}, {"_id": 1})] for i in range(1, n + 1)}
def write(i):
    ops = [UpdateOne({"_id": ids[i][k % len(ids[i])]}, {"$set": {"status": f"{mode}-{k}"}}) for k in range(updates)]
    db[f"c{i}"].bulk_write(ops, ordered=False)
server = {"connections": 0, "cursors": 0}
def applied():
    status = client.admin.command("serverStatus")
    server["connections"] = max(server["connections"], status["connections"]["current"])
    server["cursors"] = max(server["cursors"], status["metrics"]["cursor"]["open"]["total"])
    got = metrics.scrape()
    return got and got[1] >= n * updates
with ThreadPoolExecutor(8) as pool:
    writes = [pool.submit(write, i) for i in range(1, n + 1)]
    stream = wait_for(f"not all {n * updates} events applied", applied, 900)
print(f"{mode} {first_commits:.1f} {n * updates / stream:.0f} {server['connections']} {server['cursors']} {metrics.peak / 1e6:.0f}")
PYTHON
)
  stop_daemon "$tmp/daemon_$mode.log"
  results+=("$line")
  echo "$mode done: $line" >&2
done

echo
echo "$N collections of $DOCS documents, $UPDATES updates each"
echo
echo "| syncs | first commit of every table (s) | events/s | open connections | open cursors | peak RSS MB |"
echo "| --- | --: | --: | --: | --: | --: |"
for line in "${results[@]}"; do
  read -r mode first eps conns curs rss <<<"$line"
  label="one database sync"
  [ "$mode" = separate ] && label="$N CREATE SYNC statements"
  echo "| $label | $first | $eps | $conns | $curs | $rss |"
done
