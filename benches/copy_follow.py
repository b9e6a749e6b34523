"""The copy-beside-the-stream benchmark (run by benches/copy_follow.sh, which builds misql, starts
SecantusDB and loads the orders).

Usage: copy_follow.py visibility MISQL URI N TMP
       copy_follow.py history    MISQL URI TMP RELAY_URI

visibility: a misql daemon syncs bench.orders (N orders) while the application updates 20 orders
a second and inserts a marker order every 2 s. Prints, for the markers inserted while the copy
runs, how long each took to be visible in the table (pyiceberg, filtered by _id), the copy's
length (until the table's checkpoint says `streaming`), and misql's peak resident memory.

history: the server keeps little change history (the script's caller starts it so); misql reads
through a slow relay (RELAY_URI) while the application makes 60 changes a second over its own
connection. Prints the time to reach streaming, the re-copies misql made
(misql_sync_recopies_total) and its lag (misql_sync_lag_seconds) while the writes go on.
"""
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from bson import ObjectId
from pymongo import MongoClient

sys.path.insert(0, os.path.dirname(__file__))
from scrape import Scraper  # noqa: E402


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def phase(warehouse):
    """The phase in the checkpoint of bench.orders' current snapshot (None before one)."""
    meta = os.path.join(warehouse, "bench", "orders", "metadata")
    try:
        files = sorted(f for f in os.listdir(meta) if f.endswith(".metadata.json"))
    except FileNotFoundError:
        return None
    for name in reversed(files):
        try:
            data = json.load(open(os.path.join(meta, name)))
        except ValueError:
            continue  # being written
        current = data.get("current-snapshot-id")
        for snap in data.get("snapshots", []):
            if snap["snapshot-id"] == current:
                return snap["summary"].get("misql.phase")
        return None
    return None


def start_misql(misql, uri, warehouse, sql, log, port):
    path = os.path.join(os.path.dirname(warehouse), "sync.sql")
    with open(path, "w") as f:
        f.write(sql)
    return subprocess.Popen(
        [misql, "-f", path, "--warehouse", warehouse, "--mongodb-uri", uri, "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
    )


def setup(uri, tmp, name):
    """A warehouse, a port for --http, the sync, the collection and some of its _ids."""
    warehouse = os.path.join(tmp, f"{name}-warehouse")
    os.makedirs(warehouse)
    sql = ("CREATE SYNC bench FROM mongo.bench.orders INTO iceberg.bench.orders "
           "SELECT _id, status, total::DECIMAL(18,2) AS total, created_at WITH (flush_interval = '1s');")
    coll = MongoClient(uri).bench.orders
    ids = [d["_id"] for d in coll.find({}, {"_id": 1}).limit(5000)]
    return warehouse, free_port(), sql, coll, ids


def metric(port, name):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except Exception:
        return None
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def visibility(misql, uri, n, tmp):
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.expressions import EqualTo

    warehouse, port, sql, coll, ids = setup(uri, tmp, "vis")
    stop = threading.Event()
    inserted = {}

    def write():
        rng = random.Random(3)
        last_marker = 0.0
        while not stop.is_set():
            coll.update_one({"_id": rng.choice(ids)}, {"$set": {"status": "updated"}})
            if time.monotonic() - last_marker >= 2:
                marker = ObjectId()
                coll.insert_one({"_id": marker, "status": "marker", "total": 1, "created_at": None})
                inserted[str(marker)] = time.monotonic()
                last_marker = time.monotonic()
            time.sleep(0.05)

    started = time.monotonic()
    daemon = start_misql(misql, uri, warehouse, sql, os.path.join(tmp, "vis.log"), port)
    scraper = Scraper(port)
    writer = threading.Thread(target=write)
    writer.start()
    catalog = None
    visible = {}
    copy_done = None
    try:
        while time.monotonic() - started < 900:
            scraper.scrape()
            if copy_done is None and phase(warehouse) == "streaming":
                copy_done = time.monotonic()
            if catalog is None and os.path.exists(os.path.join(warehouse, "catalog.db")) and phase(warehouse):
                catalog = SqlCatalog("misql", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}")
            if catalog is not None:
                table = catalog.load_table("bench.orders")
                for marker, at in list(inserted.items()):
                    if marker in visible:
                        continue
                    rows = table.scan(row_filter=EqualTo("_id", marker), selected_fields=("_id",)).to_arrow()
                    if rows.num_rows:
                        visible[marker] = time.monotonic() - at
            if copy_done is not None and time.monotonic() - copy_done > 10:
                break
            time.sleep(0.3)
    finally:
        stop.set()
        writer.join()
        daemon.terminate()
        daemon.wait(timeout=60)
    if copy_done is None:
        sys.exit("the copy did not complete in 900 s; see " + os.path.join(tmp, "vis.log"))
    during = [visible[m] for m, at in inserted.items() if m in visible and at < copy_done]
    print(f"documents:                    {n}")
    print(f"copy (start to 'streaming'):  {copy_done - started:.1f} s, with 20 updates/s during it")
    if during:
        print(f"markers inserted during the copy: {len(during)}; visible after "
              f"median {statistics.median(during):.1f} s, max {max(during):.1f} s "
              f"(flush_interval 1 s; pyiceberg polled every ~0.3 s plus its scan time)")
    missing = [m for m in inserted if m not in visible]
    print(f"markers not visible at the end: {len(missing)}")
    print(f"misql peak RSS:               {scraper.peak / 2**20:.0f} MB")


def history(misql, uri, tmp, relay_uri):
    warehouse, port, sql, coll, ids = setup(uri, tmp, "hist")
    stop = threading.Event()
    writes = [0]

    def write():
        rng = random.Random(5)
        while not stop.is_set():
            coll.update_one({"_id": rng.choice(ids)}, {"$inc": {"n": 1}})
            writes[0] += 1
            time.sleep(1 / 60)

    started = time.monotonic()
    daemon = start_misql(misql, relay_uri, warehouse, sql, os.path.join(tmp, "hist.log"), port)
    writer = threading.Thread(target=write)
    writer.start()
    streaming_at = None
    lags = []
    try:
        while time.monotonic() - started < 600:
            if streaming_at is None and phase(warehouse) == "streaming":
                streaming_at = time.monotonic()
            if streaming_at is not None:
                lag = metric(port, "misql_sync_lag_seconds")
                if lag is not None:
                    lags.append(lag)
                if time.monotonic() - streaming_at > 30:
                    break
            time.sleep(1)
        recopies = metric(port, "misql_sync_recopies_total")
    finally:
        stop.set()
        writer.join()
        daemon.terminate()
        daemon.wait(timeout=60)
    log = open(os.path.join(tmp, "hist.log")).read()
    lost = log.count("cannot resume from the saved token")
    if recopies is None:
        recopies = log.count("copying the collection again")
    if streaming_at is None:
        print(f"never reached streaming in 600 s; history lost {lost} time(s)")
        return
    print(f"time to reach streaming:      {streaming_at - started:.1f} s ({writes[0]} writes in all)")
    print(f"re-copies:                    {recopies:.0f} (history lost {lost} time(s))")
    if lags:
        print(f"lag over 30 s of writes after: median {statistics.median(lags):.1f} s, max {max(lags):.1f} s")


if __name__ == "__main__":
    if sys.argv[1] == "visibility":
        visibility(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        history(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
