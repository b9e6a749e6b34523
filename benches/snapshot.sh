#!/usr/bin/env bash
# The snapshot benchmark: how fast `misql --once` copies a MongoDB collection into an Iceberg
# table, against a raw full read of the same collection with the Rust driver.
#
#   benches/snapshot.sh [N]        N order documents (default 20000)
#   PARALLEL="2 4" benches/snapshot.sh [N]   also with those snapshot_parallelism values
#
# The reference size is N=200000: about 2 minutes here, most of it loading (pymongo into
# SecantusDB, 5-12k docs/s). The script builds `misql` and `examples/raw_read.rs` in release,
# starts its own SecantusDB (`.venv/bin/secantusd-py`, installed by scripts/setup-test-env.sh) on
# a free loopback port with in-memory storage, loads N documents into bench.orders with
# examples/load_orders.py, then times each of these end to end:
#   - raw_read: every document as raw BSON, counted (the baseline),
#   - misql --once: a CREATE SYNC of bench.orders into a fresh temporary warehouse,
#   - the same with WITH (snapshot_parallelism = P) for each P in $PARALLEL (default 4),
#   - misql --once of a `SELECT *` sync (whole documents, each batch checked for new fields),
#   - raw_read --sort-id --fields=...: the query misql sends (`_id` order and its projection),
#   - raw_read --sort-id: `_id` order alone,
# and prints docs/s for each, misql/raw, misql's peak RSS and CPU time, and the split of misql's
# wall time before and after the first batch of documents arrives (from its log), then checks
# the row count of the table. Everything it starts is stopped and its temporary files removed
# on exit; every step has a time limit.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-20000}
case $N in '' | *[!0-9]*) echo "usage: benches/snapshot.sh [N]" >&2; exit 2 ;; esac
# Generous for these machines, and scaled with N.
LOAD_TIMEOUT=$((120 + N / 500))
RUN_TIMEOUT=$((120 + N / 1000))

# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building misql and examples/raw_read (release)..." >&2
cargo build --quiet --release --bin misql --example raw_read
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
MISQL=$target_dir/release/misql
RAW_READ=$target_dir/release/examples/raw_read

tmp=$(mktemp -d "${TMPDIR:-/tmp}/misql-bench.XXXXXX")
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server


echo "loading $N documents into bench.orders at $URI..." >&2
measure "$tmp/load.m" "$LOAD_TIMEOUT" "$PY" examples/load_orders.py "$URI" "$N" bench.orders >&2

echo "raw driver read..." >&2
measure "$tmp/raw.m" "$RUN_TIMEOUT" "$RAW_READ" "$URI" bench orders >"$tmp/raw.out"

echo "misql --once snapshot..." >&2
sql="CREATE SYNC bench FROM mongo.bench.orders INTO iceberg.bench.orders SELECT _id, customer.name AS customer, items, total::DECIMAL(18,2) AS total, created_at, status"
# The top-level fields that SELECT uses: the projection misql pushes into its find.
fields=_id,status,customer,items,total,created_at
measure "$tmp/misql.m" "$RUN_TIMEOUT" \
  env RUST_LOG=misql=debug,warn "$MISQL" --once --warehouse "$tmp/warehouse" --mongodb-uri "$URI" -e "$sql" \
  >"$tmp/misql.out" 2>"$tmp/misql.log" || { cat "$tmp/misql.log" >&2; exit 1; }

# The same sync into a table of its own, reading P _id ranges at once.
par_sql() {
  local with="WITH (snapshot_parallelism = $1)"
  sed "s/SYNC bench FROM/SYNC bench_p$1 FROM/; s/bench.orders SELECT/bench.orders_p$1 SELECT/" <<<"$sql $with"
}
for p in ${PARALLEL-4}; do
  echo "misql --once snapshot, snapshot_parallelism = $p..." >&2
  measure "$tmp/par$p.m" "$RUN_TIMEOUT" \
    "$MISQL" --once --warehouse "$tmp/warehouse" --mongodb-uri "$URI" \
    -e "$(par_sql "$p")" \
    >/dev/null 2>"$tmp/par$p.log" || { cat "$tmp/par$p.log" >&2; exit 1; }
  "$MISQL" --warehouse "$tmp/warehouse" --mongodb-uri "$URI" --format csv \
    -e "SELECT count(*) FROM iceberg.bench.orders_p$p" 2>/dev/null | tail -n 1 >"$tmp/par$p.rows"
done

echo "misql --once snapshot, SELECT * (schema follows the documents)..." >&2
star="CREATE SYNC star FROM mongo.bench.orders INTO iceberg.bench.orders_star"
measure "$tmp/star.m" "$RUN_TIMEOUT" \
  "$MISQL" --once --warehouse "$tmp/warehouse" --mongodb-uri "$URI" -e "$star" \
  >"$tmp/star.out" 2>"$tmp/star.log" || { cat "$tmp/star.log" >&2; exit 1; }

echo "raw driver read of the query misql sends (_id order, projection)..." >&2
measure "$tmp/same.m" "$RUN_TIMEOUT" "$RAW_READ" "$URI" bench orders --sort-id "--fields=$fields" \
  >"$tmp/same.out"

echo "raw driver read in _id order..." >&2
measure "$tmp/sorted.m" "$RUN_TIMEOUT" "$RAW_READ" "$URI" bench orders --sort-id >"$tmp/sorted.out"

# What the table holds, read back by misql.
copied=$("$MISQL" --warehouse "$tmp/warehouse" --mongodb-uri "$URI" --format csv \
  -e "SELECT count(*) FROM iceberg.bench.orders" 2>/dev/null | tail -n 1) || copied="?"

"$PY" - "$N" "$tmp" "$copied" <<'PYTHON'
import re, sys
n, tmp, copied = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def measured(name):
    seconds, rss, cpu = open(f"{tmp}/{name}.m").read().split()
    return float(seconds), int(rss), float(cpu)

def counted(name):
    return int(re.search(r"documents=(\d+)", open(f"{tmp}/{name}.out").read()).group(1))

def rate(docs, seconds):
    return f"{docs / seconds:8.0f} docs/s  ({seconds:.2f} s)"

def check(docs):
    return "" if docs == n else f"  (counted {docs}, expected {n}!)"

load_s, _, _ = measured("load")
raw_s, _, raw_cpu = measured("raw")
same_s, _, _ = measured("same")
sorted_s, _, _ = measured("sorted")
misql_s, misql_rss, misql_cpu = measured("misql")
log = open(f"{tmp}/misql.log").read()
done = re.search(r"snapshot complete, (\d+) rows \((\d+) rows/s\)", log)
commits = len(re.findall(r"committed", log))

print()
print(f"documents:            {n}")
print(f"load (pymongo):       {rate(n, load_s)}")
print(f"misql snapshot:       {rate(n, misql_s)}  end to end")
if done:
    rows, copy_rate = int(done.group(1)), int(done.group(2))
    copy_s = rows / copy_rate if copy_rate else 0.0
    print(f"  before 1st batch:   {misql_s - copy_s:8.2f} s  (start, sample, create table, count, sorted find; + exit)")
    print(f"  from 1st batch on:  {copy_s:8.2f} s  ({copy_rate} docs/s, {commits} commit(s); misql's log)")
print(f"  misql CPU:          {misql_cpu:8.2f} s  (user+sys; the rest of its wall time is waiting for MongoDB)")
star_s, star_rss, star_cpu = measured("star")
print(f"misql SELECT *:       {rate(n, star_s)}  end to end, CPU {star_cpu:.2f} s, peak RSS {star_rss / 1024:.0f} MB")
print(f"raw driver read:      {rate(counted('raw'), raw_s)}  CPU {raw_cpu:.2f} s{check(counted('raw'))}")
print(f"raw, misql's query:   {rate(counted('same'), same_s)}  (_id order + projection){check(counted('same'))}")
print(f"raw, _id order:       {rate(counted('sorted'), sorted_s)}{check(counted('sorted'))}")
print(f"misql / raw:          {raw_s / misql_s:.2f}")
print(f"misql / raw same query: {same_s / misql_s:.2f}")
print(f"misql peak RSS:       {misql_rss / 1024:.0f} MB")
for name in sorted(f for f in __import__("os").listdir(tmp) if f.startswith("par") and f.endswith(".m")):
    p = name[3:-2]
    par_s, par_rss, par_cpu = measured(name[:-2])
    print(f"snapshot_parallelism = {p}: {rate(n, par_s)}  CPU {par_cpu:.2f} s, peak RSS {par_rss / 1024:.0f} MB;"
          f" {misql_s / par_s:.2f}x parallelism 1, {same_s / par_s:.2f} of the raw same query")
    rows = open(f"{tmp}/par{p}.rows").read().strip()
    if rows != str(n):
        print(f"  rows in its table: {rows}  (expected {n}!)")
print(f"rows in the table:    {copied}" + ("" if copied == str(n) else f"  (expected {n}!)"))
PYTHON
