"""The one document schema that flows between stages.

Every batch is a ``pyarrow.Table``. The base columns below are present on every
batch after reading; stages add columns named ``<stage>_<field>`` (``lid_lang``,
``ppl``, ``quality_score`` ...). Text uses 64-bit offsets (``large_string``) so a
batch of long pages can never overflow the 2 GiB limit of 32-bit offsets.

Raw crawl batches (before extraction) carry ``html`` (decoded page, large_string)
and a null ``text``; the extraction stage fills ``text`` and drops ``html``.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any, Iterable

import pyarrow as pa

#: the shard a row came from; internal bookkeeping, never written to outputs
SHARD_COL = "_shard"

BASE_FIELDS: list[pa.Field] = [
    pa.field("id", pa.string()),  # never null in practice; nullable so every shard has one schema
    pa.field("text", pa.large_string()),
    pa.field("source", pa.string()),
    pa.field("url", pa.string()),
    pa.field("fetch_time", pa.timestamp("s", tz="UTC")),
    pa.field("content_type", pa.string()),
]
BASE_SCHEMA = pa.schema(BASE_FIELDS)
BASE_COLUMNS = tuple(f.name for f in BASE_FIELDS)

#: raw crawl records before extraction
RAW_SCHEMA = pa.schema(BASE_FIELDS + [pa.field("html", pa.large_string())])


def doc_id(*parts: Any) -> str:
    """A stable document id: 16 hex chars of sha1 over the given parts.

    WARC records use their WARC-Record-ID; other sources use (file, offset/line).
    The same input always yields the same id, across runs and machines.
    """
    h = hashlib.sha1()
    for p in parts:
        h.update(str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()[:16]


def parse_time(value: str | None) -> datetime | None:
    """Parse a WARC-Date / ISO-8601 string to an aware UTC datetime, or None."""
    if not value:
        return None
    v = value.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        for fmt in ("%Y%m%d%H%M%S", "%Y-%m-%dT%H:%M:%S"):
            try:
                dt = datetime.strptime(v[:14] if fmt == "%Y%m%d%H%M%S" else v[:19], fmt)
                break
            except ValueError:
                continue
        else:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def table_from_rows(rows: Iterable[dict], schema: pa.Schema = BASE_SCHEMA) -> pa.Table:
    """Build a table in ``schema`` from dict rows (missing keys become null)."""
    rows = list(rows)
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.table(cols, schema=schema)


def conform(table: pa.Table) -> pa.Table:
    """Cast base columns to their canonical types (e.g. ``string`` -> ``large_string`` text).

    Readers for JSONL/Parquet sources call this so every source has the same schema.
    Missing base columns are added as nulls; extra columns are kept.
    """
    n = table.num_rows
    for f in BASE_FIELDS:
        if f.name not in table.column_names:
            table = set_column(table, f, pa.nulls(n, f.type))
        elif table.schema.field(f.name).type != f.type:
            table = set_column(table, f, table.column(f.name).cast(f.type))
    return table


def set_column(table: pa.Table, column: str | pa.Field, values: Any) -> pa.Table:
    """``table`` with ``column`` replaced where it stands, or appended when it is new.

    How every stage adds its output columns: re-scoring a scored table keeps the column order.
    ``column`` is a name, or a field (to set the type, nullability or metadata); ``values`` an
    Arrow array or anything ``pa.array`` takes (typed by the field when one is given).
    """
    is_field = isinstance(column, pa.Field)
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values, type=column.type if is_field else None)
    name = column.name if is_field else column
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), column, values)
    return table.append_column(column, values)


def empty_like(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
