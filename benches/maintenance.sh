#!/usr/bin/env bash
# The maintenance benchmark: what a long-streamed table costs to keep and to read, what OPTIMIZE
# and VACUUM give back, and whether a sync's own maintenance (auto_optimize) keeps a table that
# streams for a long time as cheap as a fresh copy, with commits that do not slow down.
#
#   benches/maintenance.sh [MINUTES]        MINUTES of streaming in step 2 (default 4; 0.5 works)
#   LONG_COMMITS=3000 RATE=20 benches/maintenance.sh 4        (the defaults)
#   MISQL=target/release/misql benches/maintenance.sh          another misql binary
#
# It builds nothing: it copies target/debug/misql (or $MISQL) into its temporary directory first
# and runs the copy, so a rebuild during the run changes nothing. That binary must log its
# commits (`sync NAME: committed snapshot ID in N ms`, src/sync/sink.rs, at debug). It starts
# its own SecantusDB (`.venv/bin/secantusd-py`, from scripts/setup-test-env.sh) on a free
# loopback port, in memory, with a no-op oplog heartbeat every second and an oplog big enough
# for every event of the run (its default cap of 100000 entries would silently move an old
# resume token forward), and removes everything on exit (server, daemon, warehouse). Steps (each
# bounded by a time limit):
#
#  1. load 2000 orders into bench.orders (examples/load_orders.py: ObjectId _id, customer,
#     items, Decimal128 total, status, priority, created_at 37 min apart: 52 days, so 52 day
#     partitions);
#  2. "after streaming": `misql -f a.sql` as a daemon, sync `a` INTO iceberg.bench.streamed,
#     PARTITION BY day(created_at), flush_interval 250ms and no maintenance (auto_optimize =
#     false, max_snapshots = 100000, retain_snapshots = '30d'). Once its snapshot is committed,
#     RATE single-document `$set` updates per second (pymongo, paced by the clock; a random
#     document each, its total or its status alternately) for MINUTES minutes. Then the daemon is
#     stopped (SIGTERM, SIGKILL after 5 s; misql only handles Ctrl-C, so SIGTERM ends it at once,
#     as a crash would) and `misql --once -f a.sql` drains what it had not committed;
#  3. the figures of the table (benches/table_figures.py, in-process: live data files, live
#     delete files, manifests of the current snapshot, snapshots, current metadata JSON bytes,
#     files and bytes under the table's folder and, of them, the metadata JSON files (the old
#     ones stay on disk: they explain most of the bytes), rows; full read with pyiceberg (load_table +
#     scan().to_arrow()) and with DuckDB's iceberg_scan, best of 3 after a warm-up), and misql's
#     own full read: `misql --format json -e "SELECT * FROM iceberg.bench.X" >/dev/null`, a
#     process each (start-up included), best of 3 (JSON, not CSV: the CSV writer refuses the
#     `items` list of structs);
#  4. "after OPTIMIZE + VACUUM": `OPTIMIZE iceberg.bench.streamed`, then `VACUUM
#     iceberg.bench.streamed RETAIN '0s'` (wall time of each process and its report), figures;
#  5. "fresh copy": sync `b` INTO iceberg.bench.fresh, same SELECT and partitioning, default
#     options, `misql --once`; figures (the reference: what the same rows cost at best);
#  6. "maintained": `misql -f c.sql` as a daemon, sync `c` INTO iceberg.bench.maintained,
#     flush_interval 250ms and the default maintenance (auto_optimize, max_snapshots 50,
#     retain_snapshots 1h), logging with RUST_LOG=misql::sync::sink=debug,info. The same workload
#     runs until the log has LONG_COMMITS commit lines after the snapshot (at most LONG_COMMITS *
#     0.6 s + 300 s); the daemon is stopped and drained as in 2; figures. A daemon that makes no
#     commit for STALL_SECONDS (default 60) while the updates go on, and that used less than 2%
#     of a core meanwhile, is stuck (a slow one, busy with its maintenance, is not): the end of
#     its log, the warehouse files it holds open and its sockets are recorded and printed at the
#     end, and it is restarted (at most MAX_RESTARTS times, default 20; the run goes on towards
#     LONG_COMMITS within the same time limit, the restarted daemon's log appended to the first
#     one's). From the daemon's log (RUST_LOG also has misql::sync::stream=debug: the key index
#     rebuilds after compactions):
#     the commit time (`committed snapshot ... in N ms`, the commit alone: manifests, metadata
#     JSON, catalog swap; the sync's maintenance runs between commits and is not in it) p50 and
#     p99 of the first 500 and of the last 500 commits after the snapshot (of the first and last
#     half when there are fewer than 1000), the time those commits took (the commit rate), the
#     compactions (partitions each, time each), expiries and key index rebuilds it logged, and
#     the longest gap between two commits;
#  7. correctness: every table holds as many rows as the collection (2000: the workload only
#     updates), and its (_id, total, status) set equals the collection's (pyiceberg against
#     pymongo), for `streamed` after the drain and after OPTIMIZE + VACUUM, `fresh`, and
#     `maintained` after its drain;
#  8. a Markdown table of the figures, one column per state, with the ratios of the two
#     maintained states to the fresh copy, the commit times, and the targets with PASS/FAIL
#     (informational: the exit status is non-zero only when a correctness check failed):
#       after OPTIMIZE + VACUUM: no delete file, every other figure within 1.5x of the fresh copy
#       (rows and the metadata-JSON-files rows aside: those explain the others);
#       long run: full reads within 2x of the fresh copy, metadata JSON under 100 KiB, commit p99
#       of the last 500 commits within 1.5x of the first 500.
#
# Timings on a 2-core machine that also builds and tests are noisy; the sub-second reads of a
# 2000-row table above all (reported with their process start-up for misql).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-4}
LONG_COMMITS=${LONG_COMMITS:-3000}
RATE=${RATE:-20}
N_DOCS=2000
is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]] && awk -v n="$1" 'BEGIN { exit !(n > 0) }'; }
is_number "$MINUTES" || { echo "usage: benches/maintenance.sh [MINUTES] (a positive number)" >&2; exit 2; }
is_number "$RATE" || { echo "RATE must be a positive number of updates per second" >&2; exit 2; }
case $LONG_COMMITS in '' | *[!0-9]* | 0) echo "LONG_COMMITS must be a positive integer" >&2; exit 2 ;; esac
STREAM_SECONDS=$(awk -v m="$MINUTES" 'BEGIN { printf "%.1f", m * 60 }')
LONG_TIMEOUT=$(awk -v n="$LONG_COMMITS" 'BEGIN { printf "%d", n * 0.6 + 300 }')
# Time limits of the other steps: generous for a busy 2-core machine.
LOAD_TIMEOUT=120
RUN_TIMEOUT=600     # a --once drain or copy, OPTIMIZE, VACUUM, a misql read
READY_TIMEOUT=300   # a daemon's snapshot
FIGURES_TIMEOUT=900 # table_figures.py (8 full reads with a metadata JSON of thousands of snapshots)
STALL_SECONDS=${STALL_SECONDS:-60} # no commit for this long, no CPU used: the daemon is stuck
MAX_RESTARTS=${MAX_RESTARTS:-20}   # stuck daemons restarted in the long run, at most
case $STALL_SECONDS in '' | *[!0-9]* | 0) echo "STALL_SECONDS must be a positive integer" >&2; exit 2 ;; esac
case $MAX_RESTARTS in '' | *[!0-9]*) echo "MAX_RESTARTS must be an integer" >&2; exit 2 ;; esac

# shellcheck source=benches/lib.sh
. benches/lib.sh

tmp=$(mktemp -d "${TMPDIR:-/tmp}/misql-maintenance-bench.XXXXXX")
server=
daemon=
# stop_daemon: SIGTERM, then SIGKILL when it is still running 5 s later.
stop_daemon() {
  [ -n "$daemon" ] || return 0
  kill -TERM "$daemon" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
  daemon=
}
cleanup() {
  stop_daemon
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The binary, copied: a rebuild during the run does not change what is measured.
source_bin=${MISQL:-target/debug/misql}
[ -x "$source_bin" ] || { echo "no misql binary at $source_bin (build it, or set MISQL)" >&2; exit 2; }
cp "$source_bin" "$tmp/misql"
MISQL_BIN=$tmp/misql
if ! grep -qa "committed snapshot " "$MISQL_BIN"; then
  echo "$source_bin does not log its commits ('sync NAME: committed snapshot ID in N ms', src/sync/sink.rs);" \
    "rebuild it or set MISQL to a binary that does" >&2
  exit 2
fi

# Every event of the run fits in the oplog: the updates of both workloads at most, the documents,
# one heartbeat a second over the whole run (estimated), twice over.
events=$(awk -v r="$RATE" -v s="$STREAM_SECONDS" -v l="$LONG_TIMEOUT" -v d="$N_DOCS" \
  'BEGIN { t = s + l + 3600; printf "%d", 2 * (d + r * (s + l) + t) + 10000 }')
start_server --noop-heartbeat-seconds 1 --oplog-max-entries "$events"
WAREHOUSE=$tmp/warehouse
LOG_FILTER=misql::sync::sink=debug,misql::sync::stream=debug,info

SELECT="SELECT _id, customer.name AS customer, items, total::DECIMAL(18,2) AS total,
         created_at, status, priority"
cat >"$tmp/a.sql" <<EOF
CREATE SYNC a FROM mongo.bench.orders INTO iceberg.bench.streamed
  $SELECT
  PARTITION BY day(created_at)
  WITH (flush_interval = '250ms', auto_optimize = false, max_snapshots = 100000,
        retain_snapshots = '30d');
EOF
cat >"$tmp/b.sql" <<EOF
CREATE SYNC b FROM mongo.bench.orders INTO iceberg.bench.fresh
  $SELECT
  PARTITION BY day(created_at);
EOF
cat >"$tmp/c.sql" <<EOF
CREATE SYNC c FROM mongo.bench.orders INTO iceberg.bench.maintained
  $SELECT
  PARTITION BY day(created_at)
  WITH (flush_interval = '250ms');
EOF

# The Python helpers, one file, a subcommand each.
cat >"$tmp/helpers.py" <<'EOF'
import os, random, re, sys, time

COMMIT = "committed snapshot "
# The daemon's snapshot is committed: copied now, or by an earlier run (a restarted daemon).
SNAPSHOT_DONE = re.compile(r"snapshot (already )?complete")

class LogCommits:
    """Counts the commit lines a daemon's log has after its snapshot, reading what is new."""
    def __init__(self, path):
        self.path, self.offset, self.rest, self.started, self.commits = path, 0, "", False, 0
    def poll(self):
        with open(self.path, errors="replace") as f:
            f.seek(self.offset)
            data = f.read()
            self.offset = f.tell()
        lines = (self.rest + data).split("\n")
        self.rest = lines.pop()
        for line in lines:
            if SNAPSHOT_DONE.search(line):
                self.started = True
            elif self.started and COMMIT in line:
                self.commits += 1
        return self.commits

def wait_ready(log, offset, pid, limit):
    """Waits until the daemon's log, from byte `offset` on, says its snapshot is complete (the
    daemon still running)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with open(log, errors="replace") as f:
            f.seek(offset)
            if SNAPSHOT_DONE.search(f.read()):
                return
        try:
            os.kill(int(pid), 0)
        except OSError:
            sys.exit(f"the daemon exited before its snapshot was complete:\n{open(log).read()[-3000:]}")
        time.sleep(0.2)
    sys.exit(f"no complete snapshot within {limit} s:\n{open(log).read()[-3000:]}")

def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far (None when it is gone)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def updates(uri, rate, seconds, log=None, commits=0, stall=0.0, pid=None):
    """`$set` updates of random documents, `rate` a second (paced by the clock), for `seconds`,
    or until `log` has `commits` commit lines after the snapshot (then `seconds` is the limit,
    and the run ends early, exit status 4, when the log has no new commit line for `stall`
    seconds while the daemon `pid` used less than 2% of a core: it is stuck, not busy). Prints
    `updates=N seconds=S commits=C`; exit status 3 when the time limit ended the run before
    `commits`."""
    from bson.decimal128 import Decimal128
    from pymongo import MongoClient
    coll = MongoClient(uri).bench.orders
    ids = [d["_id"] for d in coll.find({}, {"_id": 1})]
    rng = random.Random(2 if log else 1)
    statuses = ["paid", "pending", "shipped", "refunded", "cancelled", "test"]
    counter = LogCommits(log) if log else None
    start = time.monotonic()
    n, next_poll, count = 0, start, 0
    last_count, last_change, stalled = -1, start, False
    cpu = []  # (time, the daemon's CPU seconds), one sample a poll
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        if counter and now >= next_poll:
            count = counter.poll()
            if count >= commits:
                break
            if pid:
                cpu.append((now, cpu_seconds(pid)))
                cpu = [c for c in cpu if c[0] >= now - stall - 5]
            if count != last_count:
                last_count, last_change = count, now
            elif stall and now - last_change >= stall:
                window = [c for c in cpu if c[0] >= now - stall and c[1] is not None]
                used = window[-1][1] - window[0][1] if len(window) > 1 else 0.0
                if used < 0.02 * stall:
                    stalled = True
                    break
            next_poll = now + 0.5
        due = start + n / rate
        if due > now:
            time.sleep(min(due - now, 0.5))
            continue
        if n % 2:
            cents = rng.randrange(100, 100000)
            change = {"total": Decimal128(f"{cents // 100}.{cents % 100:02}")}
        else:
            change = {"status": rng.choice(statuses)}
        coll.update_one({"_id": rng.choice(ids)}, {"$set": change})
        n += 1
    elapsed = time.monotonic() - start
    if counter:
        count = counter.poll()
    print(f"updates={n} seconds={elapsed:.3f} commits={count}")
    if stalled:
        print(f"no commit for {stall:.0f} s after {count} commits, and no CPU used: the daemon is stuck",
              file=sys.stderr)
        sys.exit(4)
    if counter and count < commits:
        print(f"only {count} of {commits} commits within {seconds:.0f} s", file=sys.stderr)
        sys.exit(3)

def check(uri, warehouse, name, out):
    """The table's rows against the collection: the count, and the (_id, total, status) sets.
    Writes `OK ...` or `FAILED ...` to `out`; exits non-zero on a difference."""
    from pymongo import MongoClient
    from pyiceberg.catalog import load_catalog
    catalog = load_catalog("misql", type="sql", uri=f"sqlite:///{warehouse}/catalog.db",
                           warehouse=f"file://{warehouse}")
    rows = catalog.load_table(name).scan(selected_fields=("_id", "total", "status")).to_arrow().to_pylist()
    table = [(r["_id"], r["total"], r["status"]) for r in rows]
    docs = [(str(d["_id"]), d.get("total").to_decimal() if d.get("total") is not None else None,
             d.get("status"))
            for d in MongoClient(uri).bench.orders.find({}, {"total": 1, "status": 1})]
    ids = [r[0] for r in table]
    problems = []
    if len(table) != len(docs):
        problems.append(f"{len(table)} rows, the collection has {len(docs)} documents")
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} duplicate _id(s)")
    only_table, only_mongo = set(table) - set(docs), set(docs) - set(table)
    if only_table or only_mongo:
        problems.append(f"{len(only_mongo)} document(s) differ, e.g. collection "
                        f"{sorted(only_mongo, key=str)[:3]} table {sorted(only_table, key=str)[:3]}")
    text = f"{name}: {len(table)} rows, " + ("; ".join(problems) if problems else "equal to the collection")
    open(out, "w").write(("FAILED " if problems else "OK ") + text + "\n")
    print(("FAILED: " if problems else "OK: ") + text, file=sys.stderr)
    sys.exit(1 if problems else 0)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "wait-ready": wait_ready(args[0], int(args[1]), args[2], float(args[3]))
elif cmd == "updates": updates(args[0], float(args[1]), float(args[2]),
                               *([args[3], int(args[4]), float(args[5]), args[6]] if len(args) > 3 else []))
elif cmd == "check": check(*args)
else: sys.exit(f"unknown helper {cmd}")
EOF
helper() { "$PY" "$tmp/helpers.py" "$@"; }

# start_daemon NAME: `misql -f NAME.sql` in the background (log appended to NAME.log: a
# restarted daemon continues it); waits for its snapshot.
start_daemon() {
  local offset
  offset=$(stat -c %s "$tmp/$1.log" 2>/dev/null || echo 0)
  RUST_LOG=$LOG_FILTER "$MISQL_BIN" --warehouse "$WAREHOUSE" --mongodb-uri "$URI" -f "$tmp/$1.sql" \
    >>"$tmp/$1.out" 2>>"$tmp/$1.log" &
  daemon=$!
  helper wait-ready "$tmp/$1.log" "$offset" "$daemon" "$READY_TIMEOUT"
}

# stall_report NAME: what a stuck daemon is doing, appended to stalls.txt: the end of its log,
# the files it holds open in the warehouse (with their sizes), its sockets (Recv-Q: replies
# nobody reads).
stall_report() {
  {
    echo "--- $(date -u +%FT%TZ): daemon $1 (pid $daemon) made no commit and used no CPU for $STALL_SECONDS s; last log lines:"
    tail -n 6 "$tmp/$1.log" | cut -c1-300
    echo "open files in the warehouse:"
    for fd in /proc/"$daemon"/fd/*; do
      target=$(readlink "$fd" 2>/dev/null) || continue
      case $target in "$WAREHOUSE"/*) echo "  $(stat -c '%s bytes, modified %y' "$target" 2>/dev/null): ${target#"$WAREHOUSE"/}" ;; esac
    done
    echo "sockets (State Recv-Q Send-Q):"
    ss -tnp 2>/dev/null | grep "pid=$daemon," | awk '{ print "  " $1, $2, $3, $4, $5 }' || true
  } >>"$tmp/stalls.txt"
}

# once NAME: `misql --once -f NAME.sql`, timed into NAME.once.m (log NAME.once.log).
once() {
  measure "$tmp/$1.once.m" "$RUN_TIMEOUT" env RUST_LOG=$LOG_FILTER \
    "$MISQL_BIN" --once --warehouse "$WAREHOUSE" --mongodb-uri "$URI" -f "$tmp/$1.sql" \
    >"$tmp/$1.once.out" 2>"$tmp/$1.once.log" || { tail -n 30 "$tmp/$1.once.log" >&2; exit 1; }
}

# statement NAME SQL: one statement, JSON output to NAME.json, timed into NAME.m.
statement() {
  measure "$tmp/$1.m" "$RUN_TIMEOUT" env RUST_LOG=warn \
    "$MISQL_BIN" --warehouse "$WAREHOUSE" --format json -e "$2" \
    >"$tmp/$1.json" 2>"$tmp/$1.log" || { cat "$tmp/$1.log" >&2; exit 1; }
}

# figures STATE TABLE: table_figures.py into STATE.fig, misql's full read (best of 3) into
# STATE.misql.
figures() {
  echo "figures of bench.$2 ($1)..." >&2
  timeout "$FIGURES_TIMEOUT" "$PY" benches/table_figures.py "$WAREHOUSE" "bench.$2" >"$tmp/$1.fig"
  local best=
  for i in 1 2 3; do
    measure "$tmp/$1.read$i.m" "$RUN_TIMEOUT" "$MISQL_BIN" --warehouse "$WAREHOUSE" --mongodb-uri "$URI" \
      --format json -e "SELECT * FROM iceberg.bench.$2" >/dev/null 2>"$tmp/$1.read.log" \
      || { cat "$tmp/$1.read.log" >&2; exit 1; }
    read -r seconds _ <"$tmp/$1.read$i.m"
    best=$(awk -v a="$best" -v b="$seconds" 'BEGIN { print (a == "" || b < a) ? b : a }')
  done
  echo "$best" >"$tmp/$1.misql"
}

# check STATE TABLE: the table against the collection (result in STATE.check); a difference is
# reported at the end and makes the exit status non-zero.
check() {
  timeout "$RUN_TIMEOUT" "$PY" "$tmp/helpers.py" check "$URI" "$WAREHOUSE" "bench.$2" "$tmp/$1.check" \
    || [ -s "$tmp/$1.check" ] || echo "FAILED bench.$2: the check did not run" >"$tmp/$1.check"
}

echo "loading $N_DOCS orders into bench.orders at $URI..." >&2
measure "$tmp/load.m" "$LOAD_TIMEOUT" "$PY" examples/load_orders.py "$URI" "$N_DOCS" bench.orders >&2

echo "after streaming: daemon a (no maintenance), $RATE updates/s for $MINUTES min..." >&2
start_daemon a
timeout $(awk -v s="$STREAM_SECONDS" 'BEGIN { printf "%d", s + 120 }') \
  "$PY" "$tmp/helpers.py" updates "$URI" "$RATE" "$STREAM_SECONDS" >"$tmp/a.updates"
kill -0 "$daemon" 2>/dev/null || { tail -n 30 "$tmp/a.log" >&2; echo "daemon a died" >&2; exit 1; }
stop_daemon
echo "draining sync a with --once..." >&2
once a
figures streamed streamed
check streamed streamed

echo "OPTIMIZE + VACUUM of bench.streamed..." >&2
statement optimize "OPTIMIZE iceberg.bench.streamed"
statement vacuum "VACUUM iceberg.bench.streamed RETAIN '0s'"
figures optimized streamed
check optimized streamed

echo "fresh copy: sync b with --once..." >&2
once b
figures fresh fresh
check fresh fresh

echo "maintained: daemon c (default maintenance) until $LONG_COMMITS commits (at most $LONG_TIMEOUT s)..." >&2
# A daemon that makes no commit and uses no CPU for STALL_SECONDS while the workload runs is stuck: what it is
# doing is recorded (stalls.txt, printed at the end), it is stopped and started again, at most
# MAX_RESTARTS times, and the run goes on to LONG_COMMITS within the same time limit.
start_daemon c
long_end=ok
restarts=0
deadline=$((SECONDS + LONG_TIMEOUT))
while :; do
  left=$((deadline - SECONDS))
  [ "$left" -gt 0 ] || { long_end=timeout; break; }
  rc=0
  timeout $((left + 120)) "$PY" "$tmp/helpers.py" updates "$URI" "$RATE" "$left" \
    "$tmp/c.log" "$LONG_COMMITS" "$STALL_SECONDS" "$daemon" >>"$tmp/c.updates" || rc=$?
  kill -0 "$daemon" 2>/dev/null || { tail -n 30 "$tmp/c.log" >&2; echo "daemon c died" >&2; exit 1; }
  case $rc in
    0) break ;;
    4)
      stall_report c
      if [ "$restarts" -ge "$MAX_RESTARTS" ]; then long_end=stalled; break; fi
      restarts=$((restarts + 1))
      echo "daemon c is stuck (no commit and no CPU for $STALL_SECONDS s): restarting it ($restarts of at most $MAX_RESTARTS)..." >&2
      stop_daemon
      start_daemon c
      ;;
    *) long_end=timeout; break ;;
  esac
done
stop_daemon
echo "draining sync c with --once..." >&2
once c
figures maintained maintained
check maintained maintained

"$PY" - "$tmp" "$MINUTES" "$RATE" "$LONG_COMMITS" "$long_end" "$restarts" "$STALL_SECONDS" <<'PYTHON'
import datetime, glob, json, os, re, sys
tmp, minutes, rate, long_commits, long_end, restarts, stall_seconds = sys.argv[1:8]
restarts = int(restarts)

def figures(state):
    fig = json.load(open(f"{tmp}/{state}.fig"))
    fig["misql_s"] = float(open(f"{tmp}/{state}.misql").read())
    return fig

def wall(name):
    return float(open(f"{tmp}/{name}.m").read().split()[0])

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")

def kv(path):
    """The `key=value` figures of every line of `path`, summed."""
    total = {}
    for k, v in re.findall(r"(\w+)=([\d.]+)", open(path).read()):
        total[k] = total.get(k, 0.0) + float(v)
    return total

states = ["streamed", "optimized", "fresh", "maintained"]
figs = {s: figures(s) for s in states}
fresh = figs["fresh"]
ROWS = [
    ("live data files", "data_files", "{:.0f}"),
    ("live delete files", "delete_files", "{:.0f}"),
    ("manifests (current snapshot)", "manifests", "{:.0f}"),
    ("snapshots", "snapshots", "{:.0f}"),
    ("metadata JSON (KB)", "metadata_bytes", "{:.1f}"),
    ("files on disk", "files_on_disk", "{:.0f}"),
    ("bytes on disk (KB)", "bytes_on_disk", "{:.0f}"),
    ("metadata JSON files on disk", "metadata_files", "{:.0f}"),
    ("metadata JSON files on disk (KB)", "metadata_files_bytes", "{:.0f}"),
    ("rows", "rows", "{:.0f}"),
    ("full read, pyiceberg (s)", "pyiceberg_s", "{:.3f}"),
    ("full read, DuckDB (s)", "duckdb_s", "{:.3f}"),
    ("full read, misql process (s)", "misql_s", "{:.3f}"),
]
KB = {"metadata_bytes", "bytes_on_disk", "metadata_files_bytes"}

def value(state, key):
    v = figs[state][key]
    return v / 1024 if key in KB else v

def ratio(state, key):
    a, b = figs[state][key], fresh[key]
    if b == 0:
        return "=" if a == 0 else "inf"
    return f"{a / b:.2f}x"

print()
print(f"# misql maintenance benchmark: {minutes} min of streaming at {rate} updates/s, "
      f"long run of {long_commits} commits")
print()
print("| figure | after streaming | after OPTIMIZE+VACUUM | fresh copy | maintained (long run end) "
      "| OPTIMIZE+VACUUM / fresh | maintained / fresh |")
print("|---|--:|--:|--:|--:|--:|--:|")
for label, key, fmt in ROWS:
    cells = [fmt.format(value(s, key)) for s in states]
    print(f"| {label} | " + " | ".join(cells) + f" | {ratio('optimized', key)} | {ratio('maintained', key)} |")
print()

a_upd, c_upd = kv(f"{tmp}/a.updates"), kv(f"{tmp}/c.updates")
def summary(name):
    """misql's own line about a --once run (on stderr, with the log)."""
    lines = re.findall(r"^sync \w+: snapshot complete.*$", open(f"{tmp}/{name}.once.log").read(), re.M)
    return lines[-1] if lines else "?"
COMMIT_LINE = re.compile(r"^(\S+) .*committed snapshot \d+ in (\d+) ms", re.M)
def log_commits(name):
    """(time, ms) of each commit line after the daemon's first snapshot."""
    text = open(f"{tmp}/{name}.log", errors="replace").read()
    after = text.split("snapshot complete", 1)[-1]
    return [(datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp(), int(ms))
            for t, ms in COMMIT_LINE.findall(after)]
def longest_gap(commits):
    times = [t for t, _ in commits]
    return max((b - a for a, b in zip(times, times[1:])), default=float("nan"))
a_all = log_commits("a")
a_commits = [ms for _, ms in a_all]
print(f"streaming (sync a): {a_upd['updates']:.0f} updates in {a_upd['seconds']:.0f} s "
      f"({a_upd['updates'] / a_upd['seconds']:.1f}/s), {len(a_commits)} commits, longest gap between "
      f"commits {longest_gap(a_all):.1f} s; drain --once {wall('a.once'):.1f} s: {summary('a')}")
opt = json.loads(open(f"{tmp}/optimize.json").read().splitlines()[0])
vac = json.loads(open(f"{tmp}/vacuum.json").read().splitlines()[0])
print(f"OPTIMIZE: {wall('optimize'):.2f} s wall (process), report "
      + ", ".join(f"{k}={v}" for k, v in opt.items() if k != "table"))
print(f"VACUUM RETAIN '0s': {wall('vacuum'):.2f} s wall (process), report "
      + ", ".join(f"{k}={v}" for k, v in vac.items() if k != "table"))
print(f"fresh copy (sync b, --once): {wall('b.once'):.1f} s: {summary('b')}")

c_all = log_commits("c")
c_commits = [ms for _, ms in c_all]
c_log = open(f"{tmp}/c.log", errors="replace").read()
compactions = len(re.findall(r"sync c: compacted", c_log))
expiries = len(re.findall(r"sync c: expired", c_log))
ended = {"ok": "",
         "timeout": f" (FEWER than {long_commits}: the time limit ended the run)",
         "stalled": f" (FEWER than {long_commits}: the daemon got stuck {restarts + 1} times)"}[long_end]
print(f"long run (sync c): {c_upd['updates']:.0f} updates in {c_upd['seconds']:.0f} s "
      f"({c_upd['updates'] / c_upd['seconds']:.1f}/s), {len(c_commits)} commits{ended}, "
      f"{compactions} compactions and {expiries} snapshot expiries logged, longest gap between commits "
      f"{longest_gap(c_all):.1f} s; drain --once {wall('c.once'):.1f} s: {summary('c')}")
def numbers(pattern, text):
    return [float(x) for x in re.findall(pattern, text)]
def spread(values, unit=""):
    if not values:
        return "none"
    return f"{len(values)}, p50 {pct(values, 50):.0f}{unit}, max {max(values):.0f}{unit}"
optimize_ms = numbers(r"OPTIMIZE: .*table=bench\.maintained elapsed_ms=(\d+)", c_log)
parts = numbers(r"sync c: compacted (\d+) partitions", c_log)
reindex_ms = numbers(r"sync c: key index rebuilt after a compaction in (\d+) ms", c_log)
k = min(20, len(parts))
if parts:
    print(f"  compactions (in the sync): {spread(optimize_ms, ' ms')}; partitions each: first {k} "
          f"{sum(parts[:k]) / k:.1f} on average, last {k} {sum(parts[-k:]) / k:.1f} (of 52)")
print(f"  key index rebuilds after compactions: {spread(reindex_ms, ' ms')}")
w = min(500, len(c_all) // 2)
if w > 1:
    first_s = c_all[w - 1][0] - c_all[0][0]
    last_s = c_all[-1][0] - c_all[-w][0]
    print(f"  commit rate: first {w} commits in {first_s:.0f} s ({w / max(first_s, 1e-9):.2f}/s), "
          f"last {w} in {last_s:.0f} s ({w / max(last_s, 1e-9):.2f}/s)")
stalls = restarts + (long_end == "stalled")
print(f"daemon c stuck (no commit and no CPU for {stall_seconds} s while updates went on): {stalls} time(s)"
      + (f", restarted {restarts} time(s); what it was doing:" if stalls else ""))
if stalls:
    for line in open(f"{tmp}/stalls.txt"):
        print(f"    {line.rstrip()}")

window = min(500, len(c_commits) // 2)
first, last = c_commits[:window], c_commits[len(c_commits) - window:]
p99_ratio = pct(last, 99) / pct(first, 99) if window and pct(first, 99) > 0 else float("nan")
if window:
    print(f"commit time, first {window} commits: p50 {pct(first, 50)} ms, p99 {pct(first, 99)} ms, max {max(first)} ms")
    print(f"commit time, last {window} commits:  p50 {pct(last, 50)} ms, p99 {pct(last, 99)} ms, max {max(last)} ms")
    print(f"commit p99 last/first: {p99_ratio:.2f}")
else:
    print("commit time: no commit lines in the log of sync c")
if a_commits:
    print(f"(sync a, no maintenance: first {min(500, len(a_commits) // 2)} commits p99 "
          f"{pct(a_commits[:min(500, len(a_commits) // 2)] or a_commits, 99)} ms, last p99 "
          f"{pct(a_commits[-min(500, max(1, len(a_commits) // 2)):], 99)} ms)")

# Warnings and errors misql logged (every run of the benchmark).
problems = []
for path in sorted(glob.glob(f"{tmp}/*.log")):
    lines = open(path, errors="replace").read().splitlines()
    for i, line in enumerate(lines):
        if re.search(r"\b(WARN|ERROR)\b|panicked", line):
            # a panic's message is on the next line
            more = f"  {lines[i + 1].strip()}" if "panicked" in line and i + 1 < len(lines) else ""
            problems.append(f"{os.path.basename(path)}: {line.rstrip()}{more}")
print(f"misql warnings/errors in its logs: {len(problems)}")
for line in problems[:10]:
    print(f"  {line[:400]}")

print()
print("targets (informational):")
def verdict(ok):
    return "PASS" if ok else "FAIL"
o = figs["optimized"]
over = [label for label, key, _ in ROWS
        if key not in ("rows", "delete_files", "metadata_files", "metadata_files_bytes")
        and o[key] > 1.5 * fresh[key]]
print(f"  {verdict(o['delete_files'] == 0)}  after OPTIMIZE+VACUUM: no delete files ({o['delete_files']})")
print(f"  {verdict(not over)}  after OPTIMIZE+VACUUM: every figure within 1.5x of the fresh copy"
      + (f" (over: {', '.join(over)})" if over else ""))
m = figs["maintained"]
for label, key in (("pyiceberg", "pyiceberg_s"), ("DuckDB", "duckdb_s"), ("misql", "misql_s")):
    print(f"  {verdict(m[key] <= 2 * fresh[key])}  long run: full read with {label} within 2x of the fresh copy "
          f"({m[key]:.3f} s vs {fresh[key]:.3f} s: {m[key] / fresh[key]:.2f}x)")
print(f"  {verdict(m['metadata_bytes'] < 100 * 1024)}  long run: metadata JSON under 100 KiB "
      f"({m['metadata_bytes'] / 1024:.1f} KiB)")
print(f"  {verdict(p99_ratio <= 1.5)}  long run: commit p99 of the last {window} within 1.5x of the first {window} "
      f"({p99_ratio:.2f}x)")

print()
print("correctness:")
failed = False
for state in ("streamed", "optimized", "fresh", "maintained"):
    text = open(f"{tmp}/{state}.check").read().strip()
    print(f"  {text}")
    failed |= not text.startswith("OK")
if failed:
    sys.exit("a correctness check failed (see above)")
PYTHON
