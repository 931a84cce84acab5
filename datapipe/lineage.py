"""Lineage: the fate of every document of a run, and ``datapipe why``'s answers from it.

A run directory keeps one compact record per document the read stage yielded::

    lineage/<step>/<shard>.parquet   documents dropped in that step: id, url, stage, reason and
                                     the dropping stage's scores (its output columns and the
                                     workflow's reject columns such as ``dup_of``, as JSON)
    lineage/kept.parquet             documents in the curated output: id, url, output file
                                     (relative to the run directory)

Drops are recorded where they happen: the engine's stage chain writes one part per batch
(next to its stats parts, keyed the same way so a retried batch overwrites its part) and the
runner commits them per shard with the shard's stats (:func:`commit_wave`); every workflow
records its drops in :func:`datapipe.workflow.finish_shard` (:func:`write_workflow_drops`).
``kept.parquet`` is rebuilt from the output files when the run finishes (:func:`write_kept`),
so a resumed run's record is whole. The counts agree with ``stats.json`` exactly: drops by
(stage, reason) with each stage's ``dropped``, kept rows with the output's rows.

Scores are JSON text per dropped row (a per-row loop over dropped rows only: each stage has
its own score columns, and one string column keeps the files one schema).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .rundir import join, write_parquet_atomic
from .schema import SHARD_COL

LINEAGE_DIR = "lineage"
KEPT_FILE = "kept.parquet"
DROP_SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("stage", pa.string()),
                         ("reason", pa.string()), ("scores", pa.string())])
KEPT_SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("file", pa.string())])
#: columns never recorded as scores (the document itself, the schema's base columns, bookkeeping)
_NOT_SCORES = {"id", "url", "text", "html", "tokens", "embedding", "source", "fetch_time", "reason", SHARD_COL}


def _str_col(t: pa.Table, name: str) -> pa.Array:
    if name not in t.column_names:
        return pa.nulls(t.num_rows, pa.string())
    c = t[name]
    c = c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c
    return c if c.type == pa.string() else pc.cast(c, pa.string())


def _scores_json(t: pa.Table, columns: Sequence[str]) -> pa.Array:
    cols = [c for c in dict.fromkeys(columns) if c in t.column_names and c not in _NOT_SCORES]
    if not cols or t.num_rows == 0:
        return pa.nulls(t.num_rows, pa.string())
    rows = t.select(cols).to_pylist()
    return pa.array([json.dumps(r, ensure_ascii=False, default=str) for r in rows], pa.string())


def drop_records(rejected: pa.Table | None, *, stage: str, score_columns: Sequence[str] = ()) -> pa.Table | None:
    """Lineage rows of the rows ``stage`` dropped (``rejected`` carries ``reason``; the engine's
    ``_shard`` column is kept for :func:`commit_wave`). ``score_columns``: the stage's outputs
    (and reject columns) worth showing; only those present are recorded."""
    if rejected is None or rejected.num_rows == 0:
        return None
    n = rejected.num_rows
    t = pa.table([_str_col(rejected, "id"), _str_col(rejected, "url"), pa.array([stage] * n, pa.string()),
                  _str_col(rejected, "reason"), _scores_json(rejected, score_columns)], schema=DROP_SCHEMA)
    if SHARD_COL in rejected.column_names:
        t = t.append_column(SHARD_COL, _str_col(rejected, SHARD_COL))
    return t


def write_part(folder: str | Path, key: str, tables: Iterable[pa.Table | None]) -> None:
    """One batch's drop records as ``folder/<key>.parquet`` (a retried batch overwrites it)."""
    ts = [t for t in tables if t is not None and t.num_rows]
    if ts:
        # folder: local, or a URL (a run directory on an object store: workers write the wave there)
        write_parquet_atomic(pa.concat_tables(ts, promote_options="default"), join(folder, f"{key}.parquet"))


def commit_wave(parts: str | Path, dest: str | Path, shards: Sequence[str]) -> None:
    """Split a wave's batch parts by shard into ``dest/<shard>.parquet`` (every shard of the wave
    gets its file, empty when nothing was dropped, so a redone shard never keeps a stale one)."""
    files = sorted(str(p) for p in Path(parts).glob("*.parquet")) if Path(parts).is_dir() else []
    t = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default") if files else None
    for shard in shards:
        sub = DROP_SCHEMA.empty_table()
        if t is not None and t.num_rows:
            sub = t.filter(pc.equal(t[SHARD_COL], shard)).select(DROP_SCHEMA.names)
        write_parquet_atomic(sub, Path(dest) / f"{shard}.parquet")


def write_workflow_drops(folder: str | Path | None, shard: str, rejected: pa.Table | None, *, stage: str,
                         score_columns: Sequence[str] = ()) -> None:
    """A workflow shard's drop records as ``folder/<shard>.parquet`` (no-op without a folder)."""
    if folder is None:
        return
    t = drop_records(rejected, stage=stage, score_columns=score_columns)
    t = DROP_SCHEMA.empty_table() if t is None else t.select(DROP_SCHEMA.names)
    write_parquet_atomic(t, Path(folder) / f"{shard}.parquet")


def write_kept(run_dir: str | Path, output_files: Sequence[Path]) -> int:
    """``lineage/kept.parquet`` from the output files (id, url, file); returns its rows."""
    root = Path(run_dir)
    parts = []
    for f in output_files:
        names = pq.read_schema(f).names
        t = pq.read_table(f, columns=[c for c in ("id", "url") if c in names])
        rel = os.path.relpath(f, root)
        parts.append(pa.table([_str_col(t, "id"), _str_col(t, "url"), pa.array([rel] * t.num_rows, pa.string())],
                              schema=KEPT_SCHEMA))
    kept = pa.concat_tables(parts) if parts else KEPT_SCHEMA.empty_table()
    write_parquet_atomic(kept, root / LINEAGE_DIR / KEPT_FILE)
    return kept.num_rows


# ---------------------------------------------------------------------------
# reading

def has_lineage(run_dir: str | Path) -> bool:
    return (Path(run_dir) / LINEAGE_DIR / KEPT_FILE).exists()


def _drop_files(run_dir: Path) -> list[tuple[str, str]]:
    base = run_dir / LINEAGE_DIR
    return [(p.parent.name, str(p)) for p in sorted(base.glob("*/*.parquet")) if not p.name.startswith(".")]


def load(run_dir: str | Path) -> tuple[pa.Table, pa.Table]:
    """(drops with a ``step`` column, kept) of a run."""
    root = Path(run_dir)
    if not has_lineage(root):
        raise FileNotFoundError(f"{run_dir}: no {LINEAGE_DIR}/{KEPT_FILE} (not a finished run directory, or a run "
                                "made before lineage was recorded)")
    drops = []
    for step, f in _drop_files(root):
        t = pq.read_table(f)
        drops.append(t.append_column("step", pa.array([step] * t.num_rows, pa.string())))
    d = pa.concat_tables(drops) if drops else DROP_SCHEMA.append(pa.field("step", pa.string())).empty_table()
    return d, pq.read_table(root / LINEAGE_DIR / KEPT_FILE)


def totals(run_dir: str | Path) -> tuple[dict[tuple[str, str], int], int]:
    """({(stage, reason): documents dropped}, documents kept) from the lineage."""
    drops, kept = load(run_dir)
    out: dict[tuple[str, str], int] = {}
    if drops.num_rows:
        for r in drops.group_by(["stage", "reason"]).aggregate([([], "count_all")]).to_pylist():
            out[(r["stage"], r["reason"])] = r["count_all"]
    return out, kept.num_rows


def _scan(files: list[str], keys: pa.Array, columns: list[str] | None = None) -> pa.Table | None:
    """Rows of ``files`` whose id or url is one of ``keys`` (a filtered scan: memory holds the matches)."""
    import pyarrow.dataset as ds
    if not files:
        return None
    flt = ds.field("id").isin(keys) | ds.field("url").isin(keys)
    return ds.dataset(files, format="parquet").to_table(columns=columns, filter=flt)


def why(run_dir: str | Path, keys: Sequence[str]) -> list[dict]:
    """The fate of each key (a document id or URL): one dict per matching document, or one
    ``{"key": k, "fate": "unknown"}`` when no document of the run has that id or URL. The
    lineage files are scanned with the keys as a filter, so a large run is never loaded whole."""
    root = Path(run_dir)
    if not has_lineage(root):
        load(root)  # raises the error that names what is missing
    want = pa.array(list(keys), pa.string())
    rows_d = []
    by_step: dict[str, list[str]] = {}
    for step, f in _drop_files(root):
        by_step.setdefault(step, []).append(f)
    for step, files in by_step.items():
        t = _scan(files, want)
        rows_d += [r | {"step": step} for r in t.to_pylist()]
    rows_k = _scan([str(root / LINEAGE_DIR / KEPT_FILE)], want).to_pylist()
    out = []
    for k in keys:
        found = False
        for r in rows_d:
            if k in (r["id"], r["url"]):
                found = True
                out.append({"key": k, "fate": "dropped", "id": r["id"], "url": r["url"], "step": r["step"],
                            "stage": r["stage"], "reason": r["reason"],
                            "scores": json.loads(r["scores"]) if r["scores"] else {}})
        for r in rows_k:
            if k in (r["id"], r["url"]):
                found = True
                out.append({"key": k, "fate": "kept", "id": r["id"], "url": r["url"], "file": r["file"]})
        if not found:
            out.append({"key": k, "fate": "unknown"})
    return out


def format_fate(f: dict) -> str:
    if f["fate"] == "unknown":
        return f"{f['key']}: no document of this run has this id or URL"
    head = f"{f['id']}" + (f"  {f['url']}" if f.get("url") else "")
    if f["fate"] == "kept":
        return f"{head}\n  kept: {f['file']}"
    scores = "  ".join(f"{k}={v}" for k, v in f["scores"].items())
    return f"{head}\n  dropped by {f['stage']} (step {f['step']}): {f['reason']}" + (f"\n  scores: {scores}" if scores else "")
