"""Readers for non-crawl sources: JSONL, Parquet and plain text files.

Rows get stable ids (an ``id`` field when present, else file + line/row number),
``source`` from the config unless the row has one, and base columns cast to the
document schema. Rows with no usable text are skipped and counted.
:func:`iter_export_batches` reads a Hugging Face ``datasets`` export whose columns have other
names than ours (``content`` for code, ``short_book_title`` ...), renamed through a mapping.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Iterable, Iterator, Optional

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..schema import conform, doc_id, set_column
from ..stats import StageStats
from ._common import open_text


def _finish(rows: list[dict], path: str, source: str) -> pa.Table:
    return conform(pa.Table.from_pylist(rows))


def iter_jsonl_batches(path: str, *, source: str, batch_size: int, text_field: str, stats: StageStats) -> Iterator[pa.Table]:
    rows: list[dict] = []
    base = os.path.basename(path)
    with open_text(path) as fh:
        for lineno, line in enumerate(fh):
            if not line.strip():
                continue
            stats.rows_in += 1
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                stats.dropped["bad_json"] = stats.dropped.get("bad_json", 0) + 1
                continue
            if not isinstance(rec, dict):
                stats.dropped["bad_json"] = stats.dropped.get("bad_json", 0) + 1
                continue
            text = rec.pop(text_field, None)
            if not isinstance(text, str) or not text.strip():
                stats.dropped["no_text"] = stats.dropped.get("no_text", 0) + 1
                continue
            rec["text"] = text
            rec["id"] = str(rec["id"]) if rec.get("id") is not None else doc_id(base, lineno)
            rec.setdefault("source", source)
            for k in ("url", "content_type", "fetch_time"):
                if rec.get(k) is not None and not isinstance(rec[k], str):
                    rec[k] = str(rec[k])
            if rec.get("fetch_time"):
                from ..schema import parse_time
                rec["fetch_time"] = parse_time(rec["fetch_time"])
            # nested values would make schemas drift between batches; keep them as JSON text
            for k, v in list(rec.items()):
                if isinstance(v, (dict, list)):
                    rec[k] = json.dumps(v, ensure_ascii=False)
            rows.append(rec)
            stats.rows_out += 1
            stats.bytes_out += len(text.encode("utf-8", "replace"))
            if len(rows) >= batch_size:
                yield _finish(rows, path, source)
                rows = []
    if rows:
        yield _finish(rows, path, source)


def iter_parquet_batches(path: str, *, source: str, batch_size: int, text_field: str, stats: StageStats) -> Iterator[pa.Table]:
    with fsspec.open(path, "rb") as fh:
        pf = pq.ParquetFile(fh)
        yield from _documents(pf.iter_batches(batch_size=batch_size), os.path.basename(path), source=source,
                              text_field=text_field, stats=stats)


def _documents(batches: Iterable[pa.RecordBatch], base: str, *, source: str, text_field: str,
               stats: StageStats) -> Iterator[pa.Table]:
    """Record batches of a columnar file (Parquet, Arrow) as document batches: ``text_field`` renamed
    to ``text``, ids from the file name and row number where the rows have none, ``source`` from
    the config where they have none, base columns conformed; rows without text counted, dropped."""
    offset = 0
    for rb in batches:
        tbl = pa.Table.from_batches([rb])
        n = tbl.num_rows
        stats.rows_in += n
        if text_field != "text" and text_field in tbl.column_names:
            if "text" in tbl.column_names:
                tbl = tbl.drop_columns(["text"])
            tbl = tbl.rename_columns(["text" if c == text_field else c for c in tbl.column_names])
        if "id" not in tbl.column_names:
            tbl = tbl.append_column("id", pa.array([doc_id(base, offset + i) for i in range(n)], pa.string()))
        if "source" not in tbl.column_names:
            tbl = tbl.append_column("source", pa.array([source] * n, pa.string()))
        tbl = conform(tbl)
        has_text = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(tbl["text"])), 0), False)
        n_bad = n - (pc.sum(has_text).as_py() or 0)
        if n_bad:
            stats.dropped["no_text"] = stats.dropped.get("no_text", 0) + n_bad
            tbl = tbl.filter(has_text)
        offset += n
        stats.rows_out += tbl.num_rows
        stats.bytes_out += pc.sum(pc.binary_length(tbl["text"])).as_py() or 0
        if tbl.num_rows:
            yield tbl


def _rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Record batches of ``size`` rows (the last one shorter), whatever size they were written in."""
    for rb in batches:
        for start in range(0, rb.num_rows, size):
            yield rb.slice(start, size)


def iter_arrow_batches(path: str, *, source: str, batch_size: int, text_field: str,
                       stats: StageStats) -> Iterator[pa.Table]:
    """An Arrow IPC file, as ``datasets.Dataset.save_to_disk`` writes them (``data-*.arrow``: the
    streaming format; the random-access file format is read too). Columns as for Parquet."""
    with fsspec.open(path, "rb") as fh:
        try:
            reader = pa.ipc.open_stream(fh)
            batches: Iterable[pa.RecordBatch] = reader
        except pa.ArrowInvalid:
            fh.seek(0)
            f = pa.ipc.open_file(fh)
            batches = (f.get_batch(i) for i in range(f.num_record_batches))
        # ids from the dataset's folder name too: every saved dataset names its files data-00000-of-...
        base = "/".join(path.rstrip("/").rsplit("/", 2)[-2:])
        yield from _documents(_rebatch(batches, batch_size), base, source=source, text_field=text_field, stats=stats)


def iter_text_batches(path: str, *, source: str, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    """A plain-text file is one document."""
    stats.rows_in += 1
    with open_text(path) as fh:
        text = fh.read()
    if not text.strip():
        stats.dropped["no_text"] = stats.dropped.get("no_text", 0) + 1
        return
    stats.rows_out += 1
    stats.bytes_out += len(text.encode("utf-8", "replace"))
    yield conform(pa.table({"id": [doc_id(path)], "text": pa.array([text], pa.large_string()),
                            "source": [source], "url": pa.array([None], pa.string())}))


def _peek_columns(path: str) -> list[str]:
    if path.lower().endswith(".parquet"):
        import pyarrow.parquet as pq
        with fsspec.open(path, "rb") as fh:
            return pq.ParquetFile(fh).schema_arrow.names
    with open_text(path) as fh:
        for line in fh:
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    return []
                return list(rec) if isinstance(rec, dict) else []
    return []


def iter_export_batches(path: str, *, source: str, batch_size: int, stats: StageStats,
                        text_candidates: Iterable[str], rename: dict[str, str],
                        extra: dict[str, pa.DataType],
                        fill: Optional[Callable[[pa.Table], pa.Table]] = None) -> Iterator[pa.Table]:
    """Read a ``datasets`` export (Parquet/JSONL): the first present of ``text_candidates`` is the
    text; ``rename`` maps export column names to ours (first present wins); every name in
    ``extra`` ends up as a column of that type (null when the export lacks it); ``fill`` may
    derive more columns per batch. ``source`` comes from the config unless the rows have one."""
    cols = _peek_columns(path)
    text_field = next((c for c in text_candidates if c in cols), "text")
    reader = iter_parquet_batches if path.lower().endswith(".parquet") else iter_jsonl_batches
    for tbl in reader(path, source=source, batch_size=batch_size, text_field=text_field, stats=stats):
        for theirs, ours in rename.items():
            if theirs in tbl.column_names and ours not in tbl.column_names:
                tbl = tbl.rename_columns([ours if c == theirs else c for c in tbl.column_names])
        for name, typ in extra.items():
            if name not in tbl.column_names:
                tbl = set_column(tbl, name, pa.nulls(tbl.num_rows, typ))
            elif tbl.schema.field(name).type != typ:
                col = tbl[name]
                if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
                    # e.g. The Stack's ``max_stars_repo_licenses``: a list; keep the first entry
                    col = pa.array([(v[0] if v else None) for v in col.to_pylist()], pa.string())
                tbl = set_column(tbl, name, col.cast(typ))
        if fill is not None:
            tbl = fill(tbl)
        yield tbl
