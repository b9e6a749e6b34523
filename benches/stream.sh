#!/usr/bin/env bash
# The stream benchmark: how fast a sync applies change events, how long a MongoDB write takes to
# become an Iceberg commit, and how much memory the key index takes per key.
#
#   benches/stream.sh [N_DOCS] [N_UPDATES]      defaults 10000 and 20000
#   BENCH_SELECT=star benches/stream.sh ...    the same with a `SELECT *` sync
#
# The reference size is N_UPDATES=100000 (benches/stream.sh 10000 100000): about a minute here on
# a quiet machine, a few minutes when the cores are busy, almost all of it in SecantusDB (a
# Python server: ~9k inserts/s in bulk, ~4k `$set` updates/s, 9–14k change events/s with
# updateLookup; reading 20k updates took 3x longer while a build ran). The script builds `misql`
# and the examples read_changes and key_index_size in release, starts its own SecantusDB
# (`.venv/bin/secantusd-py`, from scripts/setup-test-env.sh) on a free loopback port with
# in-memory storage and an oplog big enough for every event (its default cap of 100000 entries
# would silently move an old resume token forward), and removes everything on exit. Then:
#
#  1. load N_DOCS orders into bench.orders (examples/load_orders.py) and snapshot them with
#     `misql --once -f sync.sql` (sync.sql: CREATE SYNC ... WITH (flush_interval = '1s'));
#  2. start-up: `misql --once -f sync.sql` again with no pending event. That run only plans the
#     sync (which samples the collection for its schema: timed alone with a DESCRIBE), opens the
#     table, builds the key index, opens the change stream and sees it empty: it is the fixed
#     cost included in every drain below;
#  3. apply N_UPDATES `$set` updates with pymongo (bulk writes of 1000 UpdateOne, cycling over the
#     documents): the source's write rate;
#  4. source baseline: examples/read_changes reads the same N_UPDATES events with the Rust driver,
#     from the same resume token, opened as a sync opens it (fullDocument: updateLookup) and
#     drained the same way (until an empty getMore), counting only;
#  5. drain: `misql --once -f sync.sql` applies all pending events and exits.
#       end to end events/s = N_UPDATES / drain time            (start-up included)
#       engine, wall    = drain time - source read time     (what misql adds on top of
#                             reading the stream: key index build, BSON -> Arrow, Parquet and
#                             position-delete files, commits. misql reads, then applies each
#                             batch, without overlap, so the two add up; the source read is the
#                             floor no change to misql's engine can go below on this server.
#                             When it is within the read's run-to-run noise (~10%) no rate is
#                             printed: the source bounds the drain)
#       engine, CPU     = misql's CPU time - the reader's CPU time for the same events, as
#                         events per CPU second: the engine's own cost, measurable even when
#                         the wall-clock difference is noise (start-up included);
#     the table is then checked: N_DOCS rows, and every updated row holds its last update;
#  6. key index: examples/key_index_size builds the index the stream phase keeps
#     (KeyIndex::build over the table after the drain) and prints heap bytes / keys;
#  7. latency: `misql -f sync.sql` runs as a daemon; once it has committed a warm-up document,
#     LATENCY_DOCS (default 200) new orders are inserted ~50 ms apart, each with `written_at`
#     (client clock, same machine). After the daemon is stopped, each order's commit is found
#     exactly: the data files each snapshot added (from the table's manifests, with pyiceberg) are
#     read for their `_id`s. Latency = the commit's time - written_at, where the commit's time is
#     the modification time of the first metadata JSON whose current snapshot is that commit
#     (the catalog's compare-and-swap follows it within milliseconds), and also the snapshot's
#     `timestamp-ms` (taken by misql before it writes manifests and metadata: a lower bound).
set -euo pipefail
cd "$(dirname "$0")/.."

N_DOCS=${1:-10000}
N_UPDATES=${2:-20000}
LATENCY_DOCS=${LATENCY_DOCS:-200}
for n in "$N_DOCS" "$N_UPDATES" "$LATENCY_DOCS"; do
  case $n in '' | *[!0-9]* | 0) echo "usage: benches/stream.sh [N_DOCS] [N_UPDATES] (positive integers)" >&2; exit 2 ;; esac
done
# Each step is bounded: generous for these machines, scaled with the sizes.
LOAD_TIMEOUT=$((120 + N_DOCS / 500))
RUN_TIMEOUT=$((120 + N_DOCS / 1000 + N_UPDATES / 200))

# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building misql and examples read_changes, key_index_size (release)..." >&2
cargo build --quiet --release --bin misql --example read_changes --example key_index_size
target_dir=$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
MISQL=$target_dir/release/misql
READ_CHANGES=$target_dir/release/examples/read_changes
KEY_INDEX_SIZE=$target_dir/release/examples/key_index_size

tmp=$(mktemp -d "${TMPDIR:-/tmp}/misql-stream-bench.XXXXXX")
server=
daemon=
cleanup() {
  if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server --oplog-max-entries $((2 * (N_DOCS + N_UPDATES + LATENCY_DOCS) + 10000))
WAREHOUSE=$tmp/warehouse

# BENCH_SELECT=star measures a `SELECT *` sync instead: whole documents, each batch checked for
# new fields before it is converted.
if [ "${BENCH_SELECT:-}" = star ]; then
  select_clause=
else
  select_clause="SELECT _id, customer.name AS customer, items, total::DECIMAL(18,2) AS total,
         created_at, status, priority"
fi
cat >"$tmp/sync.sql" <<EOF
CREATE SYNC bench FROM mongo.bench.orders INTO iceberg.bench.orders
  $select_clause
  WITH (flush_interval = '1s');
EOF

# The Python helpers, one file, a subcommand each.
cat >"$tmp/helpers.py" <<'EOF'
import datetime, glob, json, os, sqlite3, statistics, sys, time

def metadata_path(warehouse):
    """The table's current metadata JSON, from the SQLite catalog."""
    db = sqlite3.connect(f"file:{warehouse}/catalog.db?mode=ro", uri=True, timeout=10)
    try:
        (location,) = db.execute(
            "SELECT metadata_location FROM iceberg_tables WHERE table_namespace = 'bench' "
            "AND table_name = 'orders'").fetchone()
    finally:
        db.close()
    return location.removeprefix("file://")

def metadata(warehouse):
    return json.load(open(metadata_path(warehouse)))

def state(warehouse):
    """`SNAPSHOTS RESUME_TOKEN_HEX` of the table now."""
    meta = metadata(warehouse)
    current = meta.get("current-snapshot-id")
    snap = next(s for s in meta.get("snapshots", []) if s["snapshot-id"] == current)
    print(len(meta.get("snapshots", [])), snap["summary"].get("misql.resume-token", "-"))

def updates(uri, n):
    """n `$set` updates cycling over the documents in _id order; prints the rate."""
    from pymongo import MongoClient, UpdateOne
    coll = MongoClient(uri).bench.orders
    ids = [d["_id"] for d in coll.find({}, {"_id": 1}).sort("_id", 1)]
    started = time.monotonic()
    for start in range(0, n, 1000):
        coll.bulk_write([UpdateOne({"_id": ids[i % len(ids)]}, {"$set": {"status": "updated", "priority": i}})
                         for i in range(start, min(start + 1000, n))])
    seconds = time.monotonic() - started
    print(f"updates={n} seconds={seconds:.3f}")

def expected(n_docs, n_updates):
    """`ROWS UPDATED_ROWS SUM_OF_LAST_PRIORITIES` the table must hold after the drain."""
    last = {}
    for i in range(n_updates):
        last[i % n_docs] = i
    print(n_docs, len(last), sum(last.values()))

def commits(warehouse, since):
    return len(metadata(warehouse).get("snapshots", [])) - since

def wait_commit(warehouse, since, limit):
    """Waits until the table has more than `since` snapshots."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if commits(warehouse, since) > 0:
                return
        except Exception:
            pass
        time.sleep(0.05)
    sys.exit(f"no commit within {limit} s")

def latency_writes(uri, warehouse, k, out):
    """Waits for the daemon to commit a warm-up order, then writes k orders ~50 ms apart,
    each with written_at; records (_id, written_at) and waits for the commits to settle."""
    from bson import ObjectId
    from bson.decimal128 import Decimal128
    from pymongo import MongoClient
    coll = MongoClient(uri).bench.orders
    def order(i):
        return {"_id": ObjectId(), "status": "latency", "priority": i,
                "customer": {"name": f"Latency {i}", "email": f"l{i}@example.com",
                             "address": {"city": "Oslo", "zip": "00150"}},
                "items": [{"sku": "SKU-0001", "qty": 1, "price": 9.99}],
                "total": Decimal128("9.99"), "created_at": datetime.datetime(2024, 6, 1)}
    since = len(metadata(warehouse).get("snapshots", []))
    coll.insert_one(order(-1))
    wait_commit(warehouse, since, 120)  # the daemon is streaming
    start = time.time()
    written = []
    for i in range(k):
        time.sleep(max(0.0, start + i * 0.05 - time.time()))
        doc = order(i)
        now = time.time()
        doc["written_at"] = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        coll.insert_one(doc)
        written.append((str(doc["_id"]), now))
    json.dump({"since": len(metadata(warehouse).get("snapshots", [])), "written": written},
              open(out, "w"))
    # Settled: no new commit for 3 s (flush_interval is 1 s), at most 60 s.
    last, changed, deadline = None, time.monotonic(), time.monotonic() + 60
    while time.monotonic() < deadline and time.monotonic() - changed < 3:
        n = len(metadata(warehouse).get("snapshots", []))
        if n != last:
            last, changed = n, time.monotonic()
        time.sleep(0.1)

def latency_report(warehouse, written_file):
    """Finds the snapshot that added each written order; prints latency statistics as JSON."""
    import pyarrow.parquet as pq
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.manifest import DataFileContent
    written = dict(json.load(open(written_file))["written"])
    table = SqlCatalog("misql", uri=f"sqlite:///{warehouse}/catalog.db",
                       warehouse=f"file://{warehouse}").load_table("bench.orders")
    snapshots = {s.snapshot_id: s for s in table.metadata.snapshots}
    # First metadata file (by mtime) that made each snapshot current.
    visible = {}
    for path in glob.glob(f"{warehouse}/bench/orders/metadata/*.metadata.json"):
        current = json.load(open(path)).get("current-snapshot-id")
        mtime = os.stat(path).st_mtime_ns / 1e9
        if current is not None and mtime < visible.get(current, float("inf")):
            visible[current] = mtime
    first = min(t for _, t in written.items())
    committed = {}  # _id -> snapshot id
    for manifest in table.current_snapshot().manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io):
            snap = snapshots[entry.snapshot_id]
            if entry.data_file.content != DataFileContent.DATA or snap.timestamp_ms / 1000 < first - 5:
                continue
            path = entry.data_file.file_path.removeprefix("file://")
            for key in pq.read_table(path, columns=["_id"]).column("_id").to_pylist():
                if key in written:
                    prior = committed.get(key)
                    if prior is None or snapshots[prior].timestamp_ms > snap.timestamp_ms:
                        committed[key] = entry.snapshot_id
    by_visible = sorted(visible[s] - written[k] for k, s in committed.items())
    by_stamp = sorted(snapshots[s].timestamp_ms / 1000 - written[k] for k, s in committed.items())
    def pct(values, p):
        return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")
    json.dump({"written": len(written), "found": len(committed),
               "commits": len(set(committed.values())),
               "visible": [pct(by_visible, 50), pct(by_visible, 99), by_visible[-1] if by_visible else float("nan")],
               "stamp": [pct(by_stamp, 50), pct(by_stamp, 99), by_stamp[-1] if by_stamp else float("nan")]},
              sys.stdout)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "state": state(*args)
elif cmd == "updates": updates(args[0], int(args[1]))
elif cmd == "expected": expected(int(args[0]), int(args[1]))
elif cmd == "latency-writes": latency_writes(args[0], args[1], int(args[2]), args[3])
elif cmd == "latency-report": latency_report(*args)
else: sys.exit(f"unknown helper {cmd}")
EOF
helper() { "$PY" "$tmp/helpers.py" "$@"; }


# misql_once NAME: `misql --once -f sync.sql`, timed into $tmp/NAME.m, log in $tmp/NAME.log.
misql_once() {
  measure "$tmp/$1.m" "$RUN_TIMEOUT" env RUST_LOG=misql=info,warn \
    "$MISQL" --once --warehouse "$WAREHOUSE" --mongodb-uri "$URI" -f "$tmp/sync.sql" \
    >"$tmp/$1.out" 2>"$tmp/$1.log" || { cat "$tmp/$1.log" >&2; exit 1; }
}

echo "loading $N_DOCS documents into bench.orders at $URI..." >&2
measure "$tmp/load.m" "$LOAD_TIMEOUT" "$PY" examples/load_orders.py "$URI" "$N_DOCS" bench.orders >&2

echo "misql --once: snapshot..." >&2
misql_once snapshot
read -r snaps_before token < <(helper state "$WAREHOUSE")
[ "$token" != - ] || { echo "the snapshot saved no resume token" >&2; exit 1; }

echo "misql --once: start-up alone (no pending event)..." >&2
misql_once startup
read -r snaps_idle _ < <(helper state "$WAREHOUSE")
[ "$snaps_idle" = "$snaps_before" ] || echo "warning: the idle run committed $((snaps_idle - snaps_before)) snapshot(s)" >&2
"$KEY_INDEX_SIZE" "$WAREHOUSE" bench.orders >"$tmp/index_snapshot.out"
# Part of every start-up: planning the sync samples the collection for its schema.
measure "$tmp/describe.m" "$RUN_TIMEOUT" "$MISQL" --mongodb-uri "$URI" -e "DESCRIBE mongo.bench.orders" >/dev/null

echo "applying $N_UPDATES \$set updates with pymongo..." >&2
helper updates "$URI" "$N_UPDATES" >"$tmp/updates.out"

echo "reading the change stream with the Rust driver (source baseline)..." >&2
measure "$tmp/raw.m" "$RUN_TIMEOUT" "$READ_CHANGES" "$URI" bench orders "$token" >"$tmp/raw.out"

echo "misql --once: drain $N_UPDATES events..." >&2
misql_once drain
read -r snaps_after _ < <(helper state "$WAREHOUSE")
echo "reading the change stream again (the source read's run-to-run spread)..." >&2
measure "$tmp/raw2.m" "$RUN_TIMEOUT" "$READ_CHANGES" "$URI" bench orders "$token" >"$tmp/raw2.out"
"$KEY_INDEX_SIZE" "$WAREHOUSE" bench.orders >"$tmp/index_drain.out"

# What the table holds, read back by misql, against what it must hold.
"$MISQL" --warehouse "$WAREHOUSE" --mongodb-uri "$URI" --format csv -e \
  "SELECT count(*) AS n, sum(CASE WHEN status = 'updated' THEN 1 ELSE 0 END) AS updated,
          sum(CASE WHEN status = 'updated' THEN CAST(priority AS BIGINT) ELSE 0 END) AS priorities
   FROM iceberg.bench.orders" 2>"$tmp/check.log" | tail -n 1 | tr ',' ' ' >"$tmp/check.out" || true
helper expected "$N_DOCS" "$N_UPDATES" >"$tmp/expected.out"

echo "latency: misql -f sync.sql as a daemon, $LATENCY_DOCS writes ~50 ms apart..." >&2
RUST_LOG=misql=info,warn "$MISQL" --warehouse "$WAREHOUSE" --mongodb-uri "$URI" -f "$tmp/sync.sql" \
  >"$tmp/daemon.out" 2>"$tmp/daemon.log" &
daemon=$!
helper latency-writes "$URI" "$WAREHOUSE" "$LATENCY_DOCS" "$tmp/written.json" \
  || { cat "$tmp/daemon.log" >&2; exit 1; }
kill -INT "$daemon" 2>/dev/null || true
wait "$daemon" 2>/dev/null || true
daemon=
helper latency-report "$WAREHOUSE" "$tmp/written.json" >"$tmp/latency.json"

"$PY" - "$tmp" "$N_DOCS" "$N_UPDATES" "$((snaps_after - snaps_before))" <<'EOF'
import json, re, sys
tmp, n_docs, n_updates, drain_commits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def m(name):
    seconds, rss, cpu = open(f"{tmp}/{name}.m").read().split()
    return float(seconds), int(rss), float(cpu)

def fields(name):
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", open(f"{tmp}/{name}.out").read())}

load_s, _, _ = m("load")
snap_s, _, _ = m("snapshot")
start_s, _, start_cpu = m("startup")
describe_s, _, _ = m("describe")
drain_s, drain_rss, drain_cpu = m("drain")
raw_cpu = (m("raw")[2] + m("raw2")[2]) / 2
upd = fields("updates")
raw, raw2 = fields("raw"), fields("raw2")
raw_events = int(raw["events"])
# The reader's own clock (connect to the empty getMore, no process start-up), both runs.
raw_runs = [raw["seconds"], raw2["seconds"]]
raw_s = sum(raw_runs) / 2
idx_snap, idx_drain = fields("index_snapshot"), fields("index_drain")
check = open(f"{tmp}/check.out").read().split()
expected = open(f"{tmp}/expected.out").read().split()
lat = json.load(open(f"{tmp}/latency.json"))

rate = lambda n, s: f"{n / s:8.0f}/s  ({s:.2f} s)" if s > 0 else "     n/a"
engine_s = drain_s - raw_s
print()
print(f"documents: {n_docs}, update events: {n_updates}")
print(f"load (pymongo insert_many):   {rate(n_docs, load_s)}")
print(f"misql --once snapshot:        {rate(n_docs, snap_s)}  docs, end to end")
print(f"source writes ($set, pymongo):{rate(n_updates, upd['seconds'])}  updates (bulk of 1000)")
print(f"source read (Rust driver):    {rate(raw_events, raw_s)}  events, updateLookup, mean of 2 runs"
      f" ({raw_runs[0]:.2f} s before the drain, {raw_runs[1]:.2f} s after)"
      + ("" if raw_events == n_updates == int(raw2["events"]) else f"  (read {raw_events} events, expected {n_updates}!)"))
print(f"misql start-up, 0 events:     {start_s:8.2f} s  (plan: sample the collection, open the table; key index build;"
      f" open the stream, empty getMore), misql CPU {start_cpu:.2f} s")
print(f"  of which schema sampling:   {describe_s:8.2f} s  (a DESCRIBE alone, its process start included; key index"
      f" build: see below)")
print(f"misql --once drain:           {rate(n_updates, drain_s)}  events, END TO END (start-up included),"
      f" {drain_commits} commit(s), peak RSS {drain_rss / 1024:.0f} MB")
print(f"  without start-up:           {rate(n_updates, drain_s - start_s)}")
# Engine only, two ways. Wall clock: the drain minus the source read. When the source bounds
# the drain this difference is small, comparable with the spread between the two reads, and says
# little (it is printed with that spread). CPU: misql's CPU time minus the Rust reader's for the
# same events, i.e. what misql spends beyond reading the stream (the server runs on the other
# core), per event: measurable even when the wall-clock difference is noise.
spread = abs(raw_runs[0] - raw_runs[1])
note = f"wall, start-up included; the two source reads differ by {spread:.2f} s"
if engine_s > 0:
    print(f"  engine only (drain - read): {rate(n_updates, engine_s)}  {note}")
else:
    print(f"  engine only (drain - read): {engine_s:8.2f} s  {note}: the source bounds the drain")
engine_cpu = drain_cpu - raw_cpu
print(f"  engine CPU (misql - reader):{rate(n_updates, engine_cpu)}  events per CPU second"
      f" (misql {drain_cpu:.2f} s CPU, reader {raw_cpu:.2f} s CPU)")
ok = check == expected
print(f"table after the drain:        rows, updated rows, sum of last priorities = {' '.join(check) or '?'}"
      + ("  (as expected)" if ok else f"  (EXPECTED {' '.join(expected)}!)"))
print(f"key index after snapshot:     {idx_snap['bytes_per_key']:.1f} bytes/key  ({int(idx_snap['keys'])} keys,"
      f" {int(idx_snap['files'])} file(s), built in {idx_snap['build_seconds']:.2f} s)")
print(f"key index after drain:        {idx_drain['bytes_per_key']:.1f} bytes/key  ({int(idx_drain['keys'])} keys,"
      f" {int(idx_drain['files'])} file(s), built in {idx_drain['build_seconds']:.2f} s)")
v, s = lat["visible"], lat["stamp"]
print(f"latency write -> commit (flush_interval 1s, {lat['found']}/{lat['written']} writes, ~50 ms apart,"
      f" {lat['commits']} commit(s)):")
print(f"  to metadata written:        p50 {v[0] * 1000:6.0f} ms   p99 {v[1] * 1000:6.0f} ms   max {v[2] * 1000:6.0f} ms")
print(f"  to snapshot timestamp-ms:   p50 {s[0] * 1000:6.0f} ms   p99 {s[1] * 1000:6.0f} ms   max {s[2] * 1000:6.0f} ms")
if not ok or lat["found"] != lat["written"] or raw_events != n_updates:
    sys.exit("the benchmark's checks failed (see above)")
EOF
