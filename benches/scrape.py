"""Reading misql's /metrics in the daemon benchmarks (imported by their inline Python).

Scraper(port, counts=lambda line: True).scrape() returns (syncs streaming, change events applied
in total) or None when the daemon does not answer yet, and keeps the highest resident memory
seen in .peak (bytes). `counts` says which sync lines count as syncs (a database sync's own row
is not a collection's). wait_for(what, check, limit) polls check() every 0.2 s until it returns
a true value, and exits with `what` when `limit` seconds pass first.
"""
import sys
import time
import urllib.request


class Scraper:
    def __init__(self, port, counts=lambda line: True):
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.counts = counts
        self.peak = 0.0

    def scrape(self):
        try:
            text = urllib.request.urlopen(self.url, timeout=10).read().decode()
        except Exception:
            return None
        streaming, applied = 0, 0.0
        for line in text.splitlines():
            if line.startswith("misql_sync_phase{") and 'phase="streaming"} 1' in line:
                streaming += self.counts(line)
            elif line.startswith("misql_sync_events_applied_total{"):
                applied += float(line.rsplit(" ", 1)[1])
            elif line.startswith("process_resident_memory_bytes "):
                self.peak = max(self.peak, float(line.split()[1]))
        return streaming, applied


def wait_for(what, check, limit):
    start = time.monotonic()
    while True:
        got = check()
        if got:
            return time.monotonic() - start
        if time.monotonic() > start + limit:
            sys.exit(f"{what} after {limit} s")
        time.sleep(0.2)
