"""Loads sample order documents into MongoDB (shop.orders) for the misql demo and benchmarks.

Usage: python load_orders.py MONGODB_URI [COUNT] [DB.COLLECTION]
COUNT defaults to 2000, DB.COLLECTION to shop.orders.
The documents have a nested customer, an items array, a Decimal128 total, a date and an
ObjectId _id, like the ones the tests generate. Re-running replaces the collection.
"""
import datetime
import random
import sys

from bson.decimal128 import Decimal128
from pymongo import MongoClient

STATUSES = ["paid", "pending", "shipped", "test"]
CITIES = ["Lisbon", "Oslo", "Quito", "Kyoto", "Accra"]


def order(i, rng):
    items = [
        {"sku": f"SKU-{rng.randrange(5000):04}", "qty": rng.randrange(1, 6), "price": rng.randrange(100, 10000) / 100}
        for _ in range(rng.randrange(1, 5))
    ]
    cents = rng.randrange(100, 100000)
    return {
        "status": rng.choice(STATUSES),
        "customer": {
            "name": f"Customer {rng.randrange(1000)}",
            "email": f"c{i}@example.com",
            "address": {"city": rng.choice(CITIES), "zip": f"{rng.randrange(99999):05}"},
        },
        "items": items,
        "total": Decimal128(f"{cents // 100}.{cents % 100:02}"),
        "created_at": datetime.datetime(2024, 1, 1) + datetime.timedelta(minutes=37 * i),
        "priority": rng.randrange(3),
    }


def main():
    uri = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    target = sys.argv[3] if len(sys.argv) > 3 else "shop.orders"
    db, _, name = target.partition(".")
    if not db or not name:
        sys.exit(f"DB.COLLECTION expected, got {target!r}")
    rng = random.Random(42)
    orders = MongoClient(uri)[db][name]
    orders.drop()
    chunk = 10000
    for start in range(0, count, chunk):
        orders.insert_many([order(i, rng) for i in range(start, min(start + chunk, count))])
    print(f"loaded {count} orders into {target}")


if __name__ == "__main__":
    main()
