#!/usr/bin/env bash
# What keeping transactions whole costs: a database sync of COLLECTIONS collections while the
# application makes transfers in transactions, each debiting an account in one collection and
# crediting one in another, with batches ending only at consistent points (the default) against
# `max_transaction_rows = 1` (a due batch waits for no consistent point: about what misql did
# before transactions were kept whole).
#
#   benches/transactions.sh [COLLECTIONS] [RATE] [SECONDS] [CATCHUP]   defaults 20
#                                       collections, 40 transfers/s, 60 s, 2000 transfers
#   MISQL=target/release/misql benches/transactions.sh
#
# It builds nothing: it copies target/debug/misql (or $MISQL). For each way it starts SecantusDB
# afresh (benches/lib.sh), loads COLLECTIONS collections of 20 accounts, starts `misql -f` (a
# database sync, flush_interval 1s, max_batch_rows 20) with --http, waits until every collection
# streams, then makes RATE transfers a second for SECONDS seconds from 4 threads and waits until
# every change is applied. From /metrics: change events applied per second of the run, how long
# after the last write the last change was applied, commits, their mean duration, and the share
# of commits made at a consistent point (their snapshot has misql.valid-through: counted from the
# tables' metadata with pyiceberg). Then misql is stopped, CATCHUP transfers are made as fast as
# 4 threads can, and misql is started again: how long it takes to apply them, and how many of
# its commits with changes were made at a consistent point (documents are looked up as they are
# now, so a sync that is behind finds none until it has caught up).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-20}
RATE=${2:-40}
SECONDS_=${3:-60}
CATCHUP=${4:-2000}

scripts/setup-test-env.sh >/dev/null
PY=.venv/bin/python
# shellcheck source=benches/lib.sh
. benches/lib.sh

daemon_bench transactions
kill -9 "$server"; wait "$server" 2>/dev/null || true; server=
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
results=()
for mode in whole no-wait; do
  start_server --noop-heartbeat-seconds 1 --oplog-max-entries 10000000
  extra=""
  [ "$mode" = no-wait ] && extra=", max_transaction_rows = 1"
  file="$tmp/$mode.sql"
  echo "CREATE SYNC d FROM mongo.bench_tx.* INTO iceberg.bench_tx WITH (flush_interval = '1s', max_batch_rows = 20, max_snapshots = 100000, retain_snapshots = '1d'$extra);" >"$file"
  "$PY" - "$URI" "$N" <<'PYTHON'
import sys
from pymongo import MongoClient
db = MongoClient(sys.argv[1])["bench_tx"]
for i in range(int(sys.argv[2])):
    db[f"c{i}"].insert_many([{"_id": k, "balance": 1000} for k in range(20)])
PYTHON
  MONGODB_URI=$URI "$tmp/misql" --warehouse "$tmp/wh_$mode" -f "$file" --http "127.0.0.1:$port" \
    >/dev/null 2>"$tmp/daemon_$mode.log" &
  daemon=$!
  line=$("$PY" - "$port" "$N" "$RATE" "$SECONDS_" "$URI" "$mode" "$tmp/wh_$mode" <<'PYTHON'
import random, sys, threading, time, urllib.request
sys.path.insert(0, "benches")
from pymongo import MongoClient
from scrape import Scraper, wait_for
port, n, rate, seconds, uri, mode, warehouse = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
metrics = Scraper(port, lambda line: 'sync="d/' in line)
wait_for(f"not all {n} syncs streaming", lambda: (metrics.scrape() or (0, 0))[0] >= n, 900)
base = metrics.scrape()[1]

def totals():
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    got = {"commits": 0.0, "sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        if not 'sync="d/' in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("misql_sync_commits_total"):
            got["commits"] += float(value)
        elif name.startswith("misql_sync_commit_duration_seconds_sum"):
            got["sum"] += float(value)
        elif name.startswith("misql_sync_commit_duration_seconds_count"):
            got["count"] += float(value)
    return got

before = totals()
client = MongoClient(uri)
db = client["bench_tx"]
made = [0]
def transfers(seed, count):
    rng = random.Random(seed)
    for _ in range(count):
        a, b = rng.sample(range(n), 2)
        x, y = rng.randrange(20), rng.randrange(20)
        def transfer(s):
            db[f"c{a}"].update_one({"_id": x}, {"$inc": {"balance": -1}}, session=s)
            db[f"c{b}"].update_one({"_id": y}, {"$inc": {"balance": 1}}, session=s)
        with client.start_session() as s:
            s.with_transaction(transfer)  # retries a write conflict between the threads
        made[0] += 1
        time.sleep(4 / rate)
started = time.monotonic()
threads = [threading.Thread(target=transfers, args=(t, rate * seconds // 4)) for t in range(4)]
for t in threads: t.start()
for t in threads: t.join()
events = 2 * made[0]
written = time.monotonic()
drain = wait_for(f"not all {events} events applied", lambda: (metrics.scrape() or (0, 0))[1] - base >= events, 900)
elapsed = written - started + drain
after = totals()
commits = after["commits"] - before["commits"]
mean_ms = 1000 * (after["sum"] - before["sum"]) / max(after["count"] - before["count"], 1)

from pyiceberg.catalog import load_catalog
catalog = load_catalog("misql", **{"type": "sql", "uri": f"sqlite:///{warehouse}/catalog.db", "warehouse": f"file://{warehouse}"})
exact = total = 0
for i in range(n):
    for s in catalog.load_table(f"bench_tx.c{i}").snapshots():
        p = s.summary.additional_properties
        if p.get("misql.phase") != "streaming" or s.summary.operation.value == "replace":
            continue
        total += 1
        exact += "misql.valid-through" in p
print(f"{mode} {made[0] / (written - started):.1f} {events / elapsed:.0f} {drain:.1f} {commits:.0f} {mean_ms:.0f} {100 * exact / max(total, 1):.0f}")
PYTHON
)
  stop_daemon "$tmp/daemon_$mode.log"
  # Catch-up: CATCHUP transfers made while misql is stopped, then misql started again.
  "$PY" - "$URI" "$N" "$CATCHUP" <<'PYTHON'
import random, sys, threading
from pymongo import MongoClient
uri, n, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = MongoClient(uri)
db = client["bench_tx"]
def transfers(seed):
    rng = random.Random(100 + seed)
    for _ in range(count // 4):
        a, b = rng.sample(range(n), 2)
        x, y = rng.randrange(20), rng.randrange(20)
        def transfer(s):
            db[f"c{a}"].update_one({"_id": x}, {"$inc": {"balance": -1}}, session=s)
            db[f"c{b}"].update_one({"_id": y}, {"$inc": {"balance": 1}}, session=s)
        with client.start_session() as s:
            s.with_transaction(transfer)
threads = [threading.Thread(target=transfers, args=(t,)) for t in range(4)]
for t in threads: t.start()
for t in threads: t.join()
PYTHON
  restarted=$(date +%s%3N)
  MONGODB_URI=$URI "$tmp/misql" --warehouse "$tmp/wh_$mode" -f "$file" --http "127.0.0.1:$port" \
    >>/dev/null 2>>"$tmp/daemon_$mode.log" &
  daemon=$!
  catchup=$("$PY" - "$port" "$N" "$CATCHUP" "$tmp/wh_$mode" "$restarted" <<'PYTHON'
import sys, time
sys.path.insert(0, "benches")
from scrape import Scraper, wait_for
port, n, count, warehouse, restarted = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
metrics = Scraper(port, lambda line: 'sync="d/' in line)
started = time.monotonic()
wait_for("misql did not answer", lambda: metrics.scrape(), 300)
# The counters start again with the process: every change of the catch-up is counted anew.
wait_for(f"not all {2 * (count // 4 * 4)} events applied", lambda: (metrics.scrape() or (0, 0))[1] >= 2 * (count // 4 * 4), 900)
seconds = time.monotonic() - started
from pyiceberg.catalog import load_catalog
catalog = load_catalog("misql", **{"type": "sql", "uri": f"sqlite:///{warehouse}/catalog.db", "warehouse": f"file://{warehouse}"})
exact = total = 0
for i in range(n):
    for s in catalog.load_table(f"bench_tx.c{i}").snapshots():
        p = s.summary.additional_properties
        if s.timestamp_ms < restarted or s.summary.operation.value == "replace" or "misql.first-change-time" not in p:
            continue
        total += 1
        exact += "misql.valid-through" in p
print(f"{seconds:.1f} {total} {100 * exact / max(total, 1):.0f}")
PYTHON
)
  stop_daemon "$tmp/daemon_$mode.log"
  kill -9 "$server"; wait "$server" 2>/dev/null || true; server=
  results+=("$line $catchup")
  echo "$mode done: $line $catchup" >&2
done

echo
echo "$N collections, transfers over two of them at $RATE/s for $SECONDS_ s"
echo
echo "| batches end | transfers/s made | events/s applied | applied after the last write (s) | commits | mean commit ms | commits at a consistent point | catch-up of $CATCHUP transfers (s) | its commits with changes | at a consistent point |"
echo "| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: |"
for line in "${results[@]}"; do
  read -r mode tps eps drain commits mean exact cs ccommits cexact <<<"$line"
  label="at consistent points (default)"
  [ "$mode" = no-wait ] && label="anywhere (max_transaction_rows = 1)"
  echo "| $label | $tps | $eps | $drain | $commits | $mean | $exact% | $cs | $ccommits | $cexact% |"
done
