"""Reads an Iceberg table with pyiceberg (an independent reader) and prints its rows as JSON.

Usage: read_iceberg.py '<catalog properties as JSON>' <namespace.table> <key column>

The catalog properties go to pyiceberg.catalog.load_catalog; they include "type" ("sql" or
"rest") and a "name". Every row is printed as one JSON object per line, sorted by the key column.
Decimals become strings (exact), timestamps and dates ISO-8601 strings, binary values hex strings,
UUIDs their canonical text.
"""
import datetime
import decimal
import json
import sys
import uuid

from pyiceberg.catalog import load_catalog


def plain(value):
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # pyarrow gives maps as lists of (key, value) tuples
        return [plain(v) for v in value]
    return value


def sort_key(row, key):
    value = row.get(key)
    return (value is None, str(type(value)), value if value is not None else 0)


def main():
    props = json.loads(sys.argv[1])
    table_name = sys.argv[2]
    key = sys.argv[3]
    name = props.pop("name", "misql")
    catalog = load_catalog(name, **props)
    table = catalog.load_table(table_name)
    rows = table.scan().to_arrow().to_pylist()
    rows.sort(key=lambda row: sort_key(row, key))
    out = sys.stdout
    for row in rows:
        out.write(json.dumps({k: plain(v) for k, v in row.items()}, sort_keys=True))
        out.write("\n")


if __name__ == "__main__":
    main()
