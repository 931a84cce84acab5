"""Shared pieces of the readers in :mod:`datapipe.io`; submodules take them from here, never
from the package ``__init__`` (which imports the submodules: no import cycle).

- :class:`InputError`: the input names nothing readable (re-exported as ``datapipe.io.InputError``).
- :func:`bump` / :func:`count`: add to a counter dict / to ``stats.dropped``.
- :func:`open_binary`: a byte stream for a local or fsspec path, decompressed by suffix
  (``.bz2`` incl. multistream, ``.gz``, ``.zst``, ``.xz``).
- :func:`open_text`: the same, decoded as UTF-8.
- :func:`build_batch`: dict rows -> a table in the document schema, extra columns typed.
- :func:`range_spec` / :func:`split_range_spec`: the name of a shard that is a byte range of one
  file, ``<path>#<unit>=<start>-<end>`` (``streams``: whole bz2 streams of a Wikimedia multistream
  dump, :mod:`.wikipedia`; ``records``: whole records of a WARC/WET/ARC file, :mod:`.warc`).
  Not a file name: only the format's reader opens it. The run directory keys it on the range
  (:func:`datapipe.rundir.shard_key`), so ids, resume markers and outputs are per range.
"""
from __future__ import annotations

import bz2
import gzip
import io
import re
from typing import Optional

import fsspec
import pyarrow as pa

from ..schema import conform
from ..stats import StageStats

EXPORT_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".ndjson")


class InputError(ValueError):
    """The input spec names nothing readable (no such file, empty glob ...)."""


#: units of :func:`range_spec`
RANGE_UNITS = ("streams", "records")
_RANGE = re.compile(r"^(?P<path>.+)#(?P<unit>" + "|".join(RANGE_UNITS) + r")=(?P<start>\d+)-(?P<end>\d+)$")


def range_spec(path: str, unit: str, start: int, end: int) -> str:
    """``("/d/x.warc.gz", "records", 0, 100)`` -> ``"/d/x.warc.gz#records=0-100"``: the whole
    ``unit`` (records, bz2 streams) that start in bytes ``[start, end)`` of ``path``."""
    if unit not in RANGE_UNITS:
        raise ValueError(f"range unit must be one of {RANGE_UNITS}, not {unit!r}")
    return f"{path}#{unit}={start}-{end}"


def split_range_spec(spec: str, unit: Optional[str] = None) -> tuple[str, Optional[int], Optional[int]]:
    """``/d/x.xml.bz2#streams=10-20`` -> ``("/d/x.xml.bz2", 10, 20)``; a plain path (or, when
    ``unit`` is given, a range of another unit) -> ``(spec, None, None)``."""
    m = _RANGE.match(spec)
    if not m or (unit is not None and m.group("unit") != unit):
        return spec, None, None
    return m.group("path"), int(m.group("start")), int(m.group("end"))


def bump(d: dict[str, int], key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


def count(stats: StageStats, reason: str, n: int = 1) -> None:
    bump(stats.dropped, reason, n)


def open_binary(path: str):
    """Open ``path`` for reading bytes, decompressing by suffix. ``bz2`` reads every stream of a
    multistream file (Wikimedia's ``*-multistream.xml.bz2`` is many concatenated streams)."""
    fh = fsspec.open(path, "rb").open()
    p = path.lower()
    if p.endswith(".bz2"):
        return bz2.BZ2File(fh)
    if p.endswith(".gz"):
        return gzip.GzipFile(fileobj=fh)
    if p.endswith(".zst"):
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
    if p.endswith(".xz"):
        import lzma
        return lzma.LZMAFile(fh)
    return fh


def open_text(path: str) -> io.TextIOWrapper:
    """:func:`open_binary` decoded as UTF-8 (undecodable bytes replaced, never an error)."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8", errors="replace")


def is_export(path: str) -> bool:
    return path.lower().endswith(EXPORT_SUFFIXES)


def build_batch(rows: list[dict], extra: dict[str, pa.DataType]) -> pa.Table:
    """Rows -> document schema plus the typed ``extra`` columns (missing values are null)."""
    base = {"id": pa.string(), "text": pa.large_string(), "source": pa.string(), "url": pa.string(),
            "fetch_time": pa.timestamp("s", tz="UTC"), "content_type": pa.string()}
    cols = {}
    for name, typ in {**base, **extra}.items():
        cols[name] = pa.array([r.get(name) for r in rows], typ)
    return conform(pa.table(cols))


def batched(rows, batch_size: int, extra: dict[str, pa.DataType]):
    """Group dict rows into ``build_batch`` tables of ``batch_size`` rows."""
    buf: list[dict] = []
    for r in rows:
        buf.append(r)
        if len(buf) >= batch_size:
            yield build_batch(buf, extra)
            buf = []
    if buf:
        yield build_batch(buf, extra)


