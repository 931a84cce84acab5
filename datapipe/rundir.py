"""Run directory layout, atomic writes and completion markers.

    runs/<name>/
      config.yaml              the resolved config that ran
      shards.json              input shard key -> input path
      output/                  final Parquet shards (zstd)
      work/<NN>-<step>/        outputs of intermediate steps (before a workflow)
      stats/<step>/<stage>/<shard>.json   one file per (stage, shard), written as it finishes
      stats.json               merged stats of the whole run (also after resume)
      rejects/<stage>/<reason>.jsonl      samples of dropped documents (url + excerpt)
      lineage/<step>/<shard>.parquet      every dropped document: stage, reason, scores (datapipe.lineage)
      lineage/kept.parquet                every kept document and its output file
      _done/<step>/<shard>     completion markers
      _tmp/                    in-progress writes, removed on start

Every file is written to a temporary name in the same directory and renamed into
place, so a reader (or a resumed run) never sees a partial file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; run files are for everyone to read
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n")


def write_parquet_atomic(table: pa.Table, path: str | Path, *, compression: str | None = "zstd",
                         row_group_rows: int | None = None) -> int:
    """Write ``table`` to ``path`` via a temp file + rename; returns bytes written.

    ``compression``: a Parquet codec, or ``"none"``/None. ``row_group_rows``: rows per row group
    (default: pyarrow's); token streams set it because the loader reads by row group."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp, compression=None if compression == "none" else compression,
                       row_group_size=row_group_rows)
        size = tmp.stat().st_size
        os.replace(tmp, path)
        return size
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def shard_key(path: str) -> str:
    """A stable, filesystem-safe key for an input shard: basename + hash of the full path.

    A byte range of a file (``<path>#records=<start>-<end>``, ``#streams=``: see
    ``datapipe.io._common.range_spec``) is keyed ``<basename>.<start, 12 digits>-<hash>``: its
    output files then sort in file order, so the rows of a file read as ranges come in the order
    they come in read whole (the dedup workflows number documents in that order)."""
    from .io._common import split_range_spec
    real, start, _ = split_range_spec(path)
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(real.rstrip("/")))[-80:] or "shard"
    if start is not None:
        base = f"{base}.{start:012d}"
    return f"{base}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:=-]+", "_", s)[:150] or "_"


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # layout ---------------------------------------------------------------
    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def stats_dir(self) -> Path:
        return self.root / "stats"

    @property
    def rejects_dir(self) -> Path:
        return self.root / "rejects"

    @property
    def tmp(self) -> Path:
        return self.root / "_tmp"

    def step_output(self, step: str, final: bool) -> Path:
        return self.output if final else self.root / "work" / step

    def marker(self, step: str, shard: str) -> Path:
        return self.root / "_done" / step / shard

    def stats_file(self, step: str, stage: str, shard: str) -> Path:
        return self.stats_dir / step / safe_name(stage) / f"{shard}.json"

    # markers --------------------------------------------------------------
    def mark_done(self, step: str, shard: str, info: dict | None = None) -> None:
        atomic_write_json(self.marker(step, shard), info or {})

    def done_shards(self, step: str) -> set[str]:
        d = self.root / "_done" / step
        return {p.name for p in d.iterdir() if not p.name.startswith(".")} if d.is_dir() else set()

    def step_complete(self, step: str) -> bool:
        return (self.root / "_done" / f"{step}.complete").exists()

    def mark_step_complete(self, step: str) -> None:
        atomic_write_json(self.root / "_done" / f"{step}.complete", {})

    def clean_tmp(self) -> None:
        """Start a run clean: the temp folder, and temp files of atomic writes that a killed run
        left half-written (``.NAME.XXXXXXXX.tmp``; the renamed files are the only real ones)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        for p in self.root.rglob(".*.tmp"):
            p.unlink(missing_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def output_files(self, step_dir: Path | None = None) -> list[Path]:
        d = step_dir or self.output
        return sorted(p for p in d.rglob("*.parquet") if not p.name.startswith("."))
