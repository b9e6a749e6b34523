"""Reads an Iceberg table with pyiceberg (an independent reader) and prints it as JSON.

Usage: read_iceberg.py '<catalog properties as JSON>' <namespace.table> <key column>
       read_iceberg.py --schemas '<catalog properties as JSON>' <namespace.table>
       read_iceberg.py --files '<catalog properties as JSON>' <namespace.table>
       read_iceberg.py --delete '<catalog properties as JSON>' <namespace.table> '<filter>'
       read_iceberg.py --history '<catalog properties as JSON>' <namespace.table> <column>
       read_iceberg.py --cuts '<catalog properties as JSON>' <column> <namespace.table>...
       read_iceberg.py --metadata <column> <metadata file>...

The catalog properties go to pyiceberg.catalog.load_catalog; they include "type" ("sql" or
"rest") and a "name".

Rows: every row is printed as one JSON object per line, sorted by the key column. Decimals become
strings (exact), timestamps and dates ISO-8601 strings, binary values hex strings, UUIDs their
canonical text.

--schemas: the table's schema history, one JSON object per line in schema id order:
{"schema_id": n, "current": bool, "identifier_fields": [names], "fields": [field, ...]}, where a
field is {"name": ..., "type": ..., "required": bool} and a type is pyiceberg's text for a
primitive ("int", "long", "double", "string", "decimal(18, 2)", "timestamptz", ...),
{"struct": [field, ...]}, {"list": type, "element_required": bool} or
{"map": [key type, value type], "value_required": bool}.

--files: every file the current snapshot references, one JSON object per line:
{"path": ..., "kind": "manifest list" | "manifest" | "data" | "position deletes" |
"equality deletes", "exists": bool}, "exists" asked of the table's FileIO (the object store).

--history: every snapshot still in the table's metadata, read by time travel, one JSON object per
line in sequence-number order: {"snapshot_id": n, "sequence_number": n, "operation": ...,
"rows": n, "sum": sum of the column's values (null ones left out), "summary": {...}}.

--cuts: the consistent cuts of several tables a sync keeps, found from their snapshot summaries
as docs/transactions.md describes: a snapshot with "misql.valid-through" V is exact at V and stays
so until just before the "misql.first-change-time" of the next snapshot that has one, compactions
("replace") passed over (when there is none yet, at V only). Each cluster time that is some snapshot's V and at which every table has
such a snapshot is printed, one JSON object per line, oldest first: {"time": "s,i", "tables":
{name: {"snapshot_id": n, "rows": n, "sum": sum of the column}}}.
--metadata: each table state named by a metadata file (read with pyiceberg's StaticTable, no
catalog), its current snapshot: one JSON object per line, in the order given: {"location": ...,
"rows": n, "sum": sum of the column}.
"""
import datetime
import decimal
import json
import sys
import uuid

from pyiceberg.catalog import load_catalog
from pyiceberg.types import ListType, MapType, StructType


def plain(value):
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # pyarrow gives maps as lists of (key, value) tuples
        return [plain(v) for v in value]
    return value


def sort_key(row, key):
    value = row.get(key)
    return (value is None, str(type(value)), value if value is not None else 0)


def type_json(field_type):
    if isinstance(field_type, StructType):
        return {"struct": [field_json(f) for f in field_type.fields]}
    if isinstance(field_type, ListType):
        return {
            "list": type_json(field_type.element_type),
            "element_required": field_type.element_required,
        }
    if isinstance(field_type, MapType):
        return {
            "map": [type_json(field_type.key_type), type_json(field_type.value_type)],
            "value_required": field_type.value_required,
        }
    return str(field_type)


def field_json(field):
    return {"name": field.name, "type": type_json(field.field_type), "required": field.required}


def open_table(props_json, table_name):
    props = json.loads(props_json)
    name = props.pop("name", "misql")
    catalog = load_catalog(name, **props)
    return catalog.load_table(table_name)


def print_schemas(table):
    current = table.schema().schema_id
    out = sys.stdout
    for schema_id, schema in sorted(table.schemas().items()):
        identifiers = [schema.find_column_name(i) for i in schema.identifier_field_ids]
        line = {
            "schema_id": schema_id,
            "current": schema_id == current,
            "identifier_fields": identifiers,
            "fields": [field_json(f) for f in schema.fields],
        }
        out.write(json.dumps(line))
        out.write("\n")


def referenced_files(table):
    snapshot = table.current_snapshot()
    if snapshot is None:
        return
    io = table.io
    yield "manifest list", snapshot.manifest_list
    for manifest in snapshot.manifests(io):
        yield "manifest", manifest.manifest_path
        for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
            kind = {0: "data", 1: "position deletes", 2: "equality deletes"}
            yield kind[int(entry.data_file.content)], entry.data_file.file_path


def print_files(table):
    out = sys.stdout
    for kind, path in referenced_files(table):
        exists = table.io.new_input(path).exists()
        out.write(json.dumps({"path": path, "kind": kind, "exists": exists}))
        out.write("\n")


def print_history(table, column):
    out = sys.stdout
    for snapshot in sorted(table.snapshots(), key=lambda s: s.sequence_number):
        values = table.scan(snapshot_id=snapshot.snapshot_id, selected_fields=(column,))
        values = values.to_arrow().column(column).to_pylist()
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        line = {
            "snapshot_id": snapshot.snapshot_id,
            "sequence_number": snapshot.sequence_number,
            "operation": str(snapshot.summary.operation.value) if snapshot.summary else None,
            "rows": len(values),
            "sum": plain(sum(v for v in values if v is not None)),
            "summary": summary,
        }
        out.write(json.dumps(line))
        out.write("\n")


def cluster_time(text):
    seconds, increment = text.split(",")
    return (int(seconds), int(increment))


def exact_spans(table):
    """(valid-through, end or None, snapshot) for each exact snapshot of the table."""
    snapshots = sorted(table.snapshots(), key=lambda s: s.sequence_number)
    props = [s.summary.additional_properties if s.summary else {} for s in snapshots]
    # A compaction ("replace") changes no row, whatever properties it carries.
    changing = [s.summary is None or s.summary.operation.value != "replace" for s in snapshots]
    spans = []
    for i, snapshot in enumerate(snapshots):
        if "misql.valid-through" not in props[i]:
            continue
        later = [
            p["misql.first-change-time"]
            for p, changes in zip(props[i + 1:], changing[i + 1:])
            if changes and "misql.first-change-time" in p
        ]
        end = cluster_time(later[0]) if later else None
        spans.append((cluster_time(props[i]["misql.valid-through"]), end, snapshot))
    return spans


def snapshot_at(spans, time):
    for start, end, snapshot in reversed(spans):
        if start <= time and (time < end if end is not None else time == start):
            return snapshot
    return None


def print_cuts(props_json, column, names):
    tables = {name: open_table(props_json, name) for name in names}
    spans = {name: exact_spans(table) for name, table in tables.items()}
    times = sorted({start for table_spans in spans.values() for start, _, _ in table_spans})
    out = sys.stdout
    for time in times:
        chosen = {name: snapshot_at(spans[name], time) for name in names}
        if any(snapshot is None for snapshot in chosen.values()):
            continue
        line = {"time": "%d,%d" % time, "tables": {}}
        for name, snapshot in chosen.items():
            scan = tables[name].scan(snapshot_id=snapshot.snapshot_id, selected_fields=(column,))
            values = scan.to_arrow().column(column).to_pylist()
            line["tables"][name] = {
                "snapshot_id": snapshot.snapshot_id,
                "rows": len(values),
                "sum": plain(sum(v for v in values if v is not None)),
            }
        out.write(json.dumps(line))
        out.write("\n")


def print_metadata_sums(column, locations):
    from pyiceberg.table import StaticTable

    out = sys.stdout
    for location in locations:
        table = StaticTable.from_metadata(location)
        values = table.scan(selected_fields=(column,)).to_arrow().column(column).to_pylist()
        line = {
            "location": location,
            "rows": len(values),
            "sum": plain(sum(v for v in values if v is not None)),
        }
        out.write(json.dumps(line))
        out.write("\n")


def main():
    if sys.argv[1] == "--metadata":
        print_metadata_sums(sys.argv[2], sys.argv[3:])
        return
    if sys.argv[1] == "--cuts":
        print_cuts(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    if sys.argv[1] == "--history":
        print_history(open_table(sys.argv[2], sys.argv[3]), sys.argv[4])
        return
    if sys.argv[1] == "--schemas":
        print_schemas(open_table(sys.argv[2], sys.argv[3]))
        return
    if sys.argv[1] == "--files":
        print_files(open_table(sys.argv[2], sys.argv[3]))
        return
    if sys.argv[1] == "--delete":
        # Another writer: deletes the rows matching the filter behind misql's back.
        open_table(sys.argv[2], sys.argv[3]).delete(delete_filter=sys.argv[4])
        print(json.dumps({"deleted": sys.argv[4]}))
        return
    table = open_table(sys.argv[1], sys.argv[2])
    key = sys.argv[3]
    rows = table.scan().to_arrow().to_pylist()
    rows.sort(key=lambda row: sort_key(row, key))
    out = sys.stdout
    for row in rows:
        out.write(json.dumps({k: plain(v) for k, v in row.items()}, sort_keys=True))
        out.write("\n")


if __name__ == "__main__":
    main()
