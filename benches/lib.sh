# Shared by the benchmark scripts (sourced, not run, from the project's root): installs the test
# environment if needed and sets PY (the .venv Python); starting SecantusDB and timing a command.
# Expects tmp (the script's temporary directory) for all but daemon_bench, which makes it.

scripts/setup-test-env.sh >/dev/null
PY=.venv/bin/python

# free_port: prints a free loopback TCP port.
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server [EXTRA ARGS...]: starts SecantusDB on a free loopback port with in-memory storage
# (log in $tmp/server.log), waits until it listens, and sets `server` (its pid, for cleanup) and
# URI.
start_server() {
  local port
  port=$(free_port)
  .venv/bin/secantusd-py --host 127.0.0.1 --port "$port" --storage-path :memory: --log-level WARNING \
    "$@" >"$tmp/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
  done
  URI="mongodb://127.0.0.1:$port/?directConnection=true"
}

# measure OUT LIMIT CMD...: runs CMD with a time limit and writes "wall_seconds peak_rss_kb
# cpu_seconds" to OUT (RSS and user+system CPU from CMD's rusage).
measure() {
  local out=$1 limit=$2
  shift 2
  "$PY" - "$out" "$limit" "$@" <<'PYTHON'
import resource, subprocess, sys, time
out, limit, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
start = time.monotonic()
try:
    code = subprocess.run(cmd, timeout=limit).returncode
except subprocess.TimeoutExpired:
    sys.exit(f"timed out after {limit:.0f} s: {' '.join(cmd)}")
seconds = time.monotonic() - start
# The rusage of the children waited for: CMD alone (ru_maxrss is in kilobytes on Linux).
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    f.write(f"{seconds:.3f} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime:.3f}\n")
sys.exit(code)
PYTHON
}

# daemon_bench NAME: the setup of a benchmark that runs misql daemons: a temporary directory
# ($tmp, misql-NAME.XXXXXX), a copy of target/debug/misql (or $MISQL) in it as $tmp/misql (a
# rebuild during the run changes nothing), SecantusDB started with a no-op heartbeat every second
# and an oplog big enough for every event, and a cleanup on exit that kills the daemon ($daemon,
# when set) and the server and removes the directory.
daemon_bench() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/misql-$1.XXXXXX")
  server=
  daemon=
  trap 'bench_cleanup' EXIT
  cp "${MISQL:-target/debug/misql}" "$tmp/misql"
  start_server --noop-heartbeat-seconds 1 --oplog-max-entries 10000000
}

bench_cleanup() {
  if [ -n "$daemon" ]; then kill -9 "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}

# stop_daemon LOG: SIGTERM to $daemon (misql commits and exits); when it exits non-zero, the end
# of its LOG on stderr.
stop_daemon() {
  kill -TERM "$daemon"
  if ! wait "$daemon"; then
    echo "misql exited non-zero; the end of its log ($1):" >&2
    tail -20 "$1" >&2
  fi
  daemon=
}
