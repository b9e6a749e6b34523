"""The workload and the measurements of benches/transactions.sh (run by it; see there).

transfers.py load URI N                 N collections of 20 accounts in database bench_tx
transfers.py steady PORT N RATE SECONDS URI WAREHOUSE
                                        RATE transfers/s for SECONDS s; prints: transfers/s made,
                                        events/s applied, seconds after the last write until
                                        applied, commits, mean commit ms, % commits exact
transfers.py burst URI N COUNT          COUNT transfers as fast as 4 threads can
transfers.py catchup PORT N COUNT WAREHOUSE SINCE_MS
                                        waits until misql (started again) applied COUNT
                                        transfers; prints: seconds, its commits with changes,
                                        % of them exact
"""
import random
import sys
import threading
import time
import urllib.request

sys.path.insert(0, "benches")
from pymongo import MongoClient  # noqa: E402
from scrape import Scraper, wait_for  # noqa: E402

ACCOUNTS = 20


def transfer(client, n, rng):
    """Moves 1 from an account of one collection to an account of another, in a transaction."""
    db = client["bench_tx"]
    a, b = rng.sample(range(n), 2)
    x, y = rng.randrange(ACCOUNTS), rng.randrange(ACCOUNTS)

    def body(session):
        db[f"c{a}"].update_one({"_id": x}, {"$inc": {"balance": -1}}, session=session)
        db[f"c{b}"].update_one({"_id": y}, {"$inc": {"balance": 1}}, session=session)

    with client.start_session() as session:
        session.with_transaction(body)  # retries a write conflict between the threads


def in_threads(count, work):
    threads = [threading.Thread(target=work, args=(t, count // 4)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count // 4 * 4


def exact_share(warehouse, n, keep):
    """Commits with changes that `keep` selects, and how many have misql.valid-through."""
    from pyiceberg.catalog import load_catalog

    props = {"type": "sql", "uri": f"sqlite:///{warehouse}/catalog.db", "warehouse": f"file://{warehouse}"}
    catalog = load_catalog("misql", **props)
    exact = total = 0
    for i in range(n):
        for s in catalog.load_table(f"bench_tx.c{i}").snapshots():
            p = s.summary.additional_properties
            if s.summary.operation.value == "replace" or "misql.first-change-time" not in p or not keep(s):
                continue
            total += 1
            exact += "misql.valid-through" in p
    return total, 100 * exact / max(total, 1)


def commit_totals(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    got = {"commits": 0.0, "sum": 0.0, "count": 0.0}
    names = {"misql_sync_commits_total": "commits", "misql_sync_commit_duration_seconds_sum": "sum",
             "misql_sync_commit_duration_seconds_count": "count"}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if 'sync="d/' in name and name.split("{")[0] in names:
            got[names[name.split("{")[0]]] += float(value)
    return got


def steady(port, n, rate, seconds, uri, warehouse):
    metrics = Scraper(port, lambda line: 'sync="d/' in line)
    wait_for(f"not all {n} syncs streaming", lambda: (metrics.scrape() or (0, 0))[0] >= n, 900)
    base = metrics.scrape()[1]
    before = commit_totals(port)
    client = MongoClient(uri)

    def work(seed, count):
        rng = random.Random(seed)
        for _ in range(count):
            transfer(client, n, rng)
            time.sleep(4 / rate)

    started = time.monotonic()
    made = in_threads(rate * seconds, work)
    events = 2 * made
    written = time.monotonic()
    applied = lambda: (metrics.scrape() or (0, 0))[1] - base >= events  # noqa: E731
    drain = wait_for(f"not all {events} events applied", applied, 900)
    after = commit_totals(port)
    commits = after["commits"] - before["commits"]
    mean_ms = 1000 * (after["sum"] - before["sum"]) / max(after["count"] - before["count"], 1)
    _, exact = exact_share(warehouse, n, lambda s: True)
    made_rate, event_rate = made / (written - started), events / (written - started + drain)
    print(f"{made_rate:.1f} {event_rate:.0f} {drain:.1f} {commits:.0f} {mean_ms:.0f} {exact:.0f}")


def burst(uri, n, count):
    client = MongoClient(uri)

    def work(seed, count):
        rng = random.Random(100 + seed)
        for _ in range(count):
            transfer(client, n, rng)

    in_threads(count, work)


def catchup(port, n, count, warehouse, since_ms):
    metrics = Scraper(port, lambda line: 'sync="d/' in line)
    started = time.monotonic()
    wait_for("misql did not answer", lambda: metrics.scrape(), 300)
    # The counters start again with the process: every change of the catch-up is counted anew.
    events = 2 * (count // 4 * 4)
    wait_for(f"not all {events} events applied", lambda: (metrics.scrape() or (0, 0))[1] >= events, 900)
    seconds = time.monotonic() - started
    total, exact = exact_share(warehouse, n, lambda s: s.timestamp_ms >= since_ms)
    print(f"{seconds:.1f} {total} {exact:.0f}")


def main():
    what, args = sys.argv[1], sys.argv[2:]
    if what == "load":
        db = MongoClient(args[0])["bench_tx"]
        for i in range(int(args[1])):
            db[f"c{i}"].insert_many([{"_id": k, "balance": 1000} for k in range(ACCOUNTS)])
    elif what == "steady":
        steady(args[0], int(args[1]), int(args[2]), int(args[3]), args[4], args[5])
    elif what == "burst":
        burst(args[0], int(args[1]), int(args[2]))
    elif what == "catchup":
        catchup(args[0], int(args[1]), int(args[2]), args[3], int(args[4]))


if __name__ == "__main__":
    main()
