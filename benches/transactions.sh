#!/usr/bin/env bash
# What keeping transactions whole costs: a database sync of COLLECTIONS collections while the
# application makes transfers in transactions, each debiting an account in one collection and
# crediting one in another, with batches ending only at consistent points (the default), with
# the tables committed together at cuts of the database's stream (`consistent = true`), and with
# `max_transaction_rows = 1` (a due batch waits for no consistent point: about what misql did
# before transactions were kept whole).
#
#   benches/transactions.sh [COLLECTIONS] [RATE] [SECONDS] [CATCHUP]   defaults 20
#                                       collections, 40 transfers/s, 60 s, 2000 transfers
#   MISQL=target/release/misql benches/transactions.sh
#   MODES="whole consistent" benches/transactions.sh     only these ways
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

# shellcheck source=benches/lib.sh
. benches/lib.sh

daemon_bench transactions
kill -9 "$server"; wait "$server" 2>/dev/null || true; server=
port=$(free_port)
results=()
for mode in ${MODES:-whole consistent no-wait}; do
  start_server --noop-heartbeat-seconds 1 --oplog-max-entries 10000000
  extra=""
  [ "$mode" = no-wait ] && extra=", max_transaction_rows = 1"
  [ "$mode" = consistent ] && extra=", consistent = true"
  file="$tmp/$mode.sql"
  echo "CREATE SYNC d FROM mongo.bench_tx.* INTO iceberg.bench_tx WITH (flush_interval = '1s', max_batch_rows = 20, max_snapshots = 100000, retain_snapshots = '1d'$extra);" >"$file"
  "$PY" benches/transfers.py load "$URI" "$N"
  start_misql() {
    MONGODB_URI=$URI "$tmp/misql" --warehouse "$tmp/wh_$mode" -f "$file" --http "127.0.0.1:$port" \
      >/dev/null 2>>"$tmp/daemon_$mode.log" &
    daemon=$!
  }
  start_misql
  line=$("$PY" benches/transfers.py steady "$port" "$N" "$RATE" "$SECONDS_" "$URI" "$tmp/wh_$mode")
  stop_daemon "$tmp/daemon_$mode.log"
  # Catch-up: CATCHUP transfers made while misql is stopped, then misql started again.
  "$PY" benches/transfers.py burst "$URI" "$N" "$CATCHUP"
  restarted=$(date +%s%3N)
  start_misql
  catchup=$("$PY" benches/transfers.py catchup "$port" "$N" "$CATCHUP" "$tmp/wh_$mode" "$restarted")
  stop_daemon "$tmp/daemon_$mode.log"
  kill -9 "$server"; wait "$server" 2>/dev/null || true; server=
  results+=("$mode $line $catchup")
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
  [ "$mode" = consistent ] && label="tables together (consistent = true)"
  echo "| $label | $tps | $eps | $drain | $commits | $mean | $exact% | $cs | $ccommits | $cexact% |"
done
