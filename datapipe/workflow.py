"""The workflow kit: what every global pass does around its own decisions.

A workflow (the dedups, perplexity buckets, quality top fraction) decides per document over
the whole run, then rewrites every shard: read it, join the decisions to its rows, write the
kept rows atomically with ``ctx.write``, hand a reject sample (:mod:`datapipe.rejects`) to the
run, and report one :class:`~datapipe.stats.StageStats` per shard, as the engine does for
streaming stages. A workflow writes only its ``decide`` function::

    def _decide(table, shard_index, *, work):          # module level: it is pickled to workers
        dec = rows_by_gid(list_parquet(f"{work}/drops"), shard_index, table.num_rows,
                          {"reason": pa.scalar(None, pa.string())})
        return Decisions(table, dec["reason"])

    stats = filter_shards(ctx, self.name, functools.partial(_decide, work=work))

A document is addressed by its *gid*: ``shard_index << 32 | row``, where the shard index is
the position of its file in ``ctx.inputs`` (the runner passes them sorted). Decision files
sorted by gid and written with small row groups (``DECISION_ROW_GROUP``) let each shard's
task read only the row groups of its own gid range (Parquet statistics push-down).

Every parallel step goes through ``ctx.engine.map`` (or runs in a loop when there is no
engine) with plain, picklable functions, so the same code runs on a laptop, on a Ray
cluster, or in tests.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .lineage import write_workflow_drops
from .rejects import sample_rejects
from .stats import StageStats

ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1
#: row groups of decision files: small, so a shard's task reads little else
DECISION_ROW_GROUP = 16_384


# ---------------------------------------------------------------------------
# shards and gids

def shard_name(path: str) -> str:
    """A shard's name in stats and reject files: its file name without ``.parquet``."""
    base = os.path.basename(path)
    return base[:-len(".parquet")] if base.endswith(".parquet") else base


def gids(shard_index: int, start: int, n: int) -> np.ndarray:
    """The gids of rows ``start .. start + n`` of shard ``shard_index``."""
    return (np.int64(shard_index) << np.int64(ROW_BITS)) + np.arange(start, start + n, dtype=np.int64)


def list_parquet(folder: str | Path) -> list[str]:
    """Parquet files under ``folder``, sorted; none while it does not exist (temp files left out)."""
    p = Path(folder)
    return sorted(str(f) for f in p.rglob("*.parquet") if not f.name.startswith(".")) if p.is_dir() else []


def read_gid_range(files: list[str], shard_index: int, columns: list[str]) -> pa.Table | None:
    """Rows of decision files whose ``gid`` belongs to one shard (row-group push-down)."""
    import pyarrow.dataset as ds
    if not files:
        return None
    lo = shard_index << ROW_BITS
    hi = (shard_index + 1) << ROW_BITS
    d = ds.dataset(files, format="parquet")
    return d.to_table(columns=columns, filter=(ds.field("gid") >= lo) & (ds.field("gid") < hi))


def rows_by_gid(files: list[str], shard_index: int, n: int, fill: dict[str, pa.Scalar]) -> dict[str, pa.Array]:
    """Decision columns joined to the ``n`` rows of one shard, by gid.

    ``fill`` names the columns to read, each with the scalar that rows without a decision get
    (its type is the column's; a null scalar leaves them null, as it does null decisions)."""
    dec = read_gid_range(files, shard_index, ["gid", *fill])
    pos = np.full(n, -1, dtype=np.int64)
    if dec is not None and dec.num_rows:
        pos[dec["gid"].to_numpy() & ROW_MASK] = np.arange(dec.num_rows)
    idx = pa.array(pos, mask=pos < 0)
    out = {}
    for name, default in fill.items():
        col = dec[name].combine_chunks().cast(default.type) if dec is not None else pa.nulls(0, default.type)
        v = col.take(idx)
        out[name] = pc.fill_null(v, default) if default.is_valid else v
    return out


def text_bytes(table: pa.Table) -> int:
    """UTF-8 bytes of ``text``: the ``bytes_in``/``bytes_out`` of a shard's stats."""
    if "text" not in table.column_names or table.num_rows == 0:
        return 0
    return int(pc.sum(pc.binary_length(table["text"])).as_py() or 0)


# ---------------------------------------------------------------------------
# the engine

def engine_cpus(engine) -> int:
    """CPUs the engine has (1 without one): workflows size their hash partitions by it."""
    try:
        return max(1, int(getattr(engine, "num_cpus", 1)))
    except Exception:  # pragma: no cover - engine without a cluster
        return 1


def portable_ctx(ctx):
    """The context without the engine and reject sink, so it can travel to workers."""
    return dataclasses.replace(ctx, engine=None, reject_sink=None)


def run_on(engine, fn: Callable, items, **map_options) -> list[Any]:
    """``engine.map(fn, items)``, or a loop without an engine; results in input order.
    ``map_options`` go to ``engine.map`` (``resources=``, ``needs_model=``)."""
    items = list(items)
    return engine.map(fn, items, **map_options) if engine is not None else [fn(x) for x in items]


def timed_map(engine, fn: Callable, items, **map_options) -> tuple[list, list[float]]:
    """``engine.map`` (a loop without an engine) that also returns each task's CPU seconds.

    The task is a plain function (Ray's ``remote`` takes functions, not ``partial``
    objects); cloudpickle ships it with the partial it calls. ``map_options`` go to
    ``engine.map`` (``resources=``, ``needs_model=``)."""
    def task(x, _fn=fn):
        t0 = time.process_time()
        r = _fn(x)
        return r, time.process_time() - t0

    out = run_on(engine, task, items, **map_options)
    return [r for r, _ in out], [c for _, c in out]


# ---------------------------------------------------------------------------
# the per-shard decision pass

@dataclass
class Decisions:
    """What a workflow decided for one shard's rows.

    ``table``: the shard with the columns the workflow sets (kept rows are written from it);
    ``reasons``: one per row, null keeps the row, else why it is dropped; ``reject_columns``:
    columns only the reject samples carry (one value per row, e.g. ``dup_of``); ``counters``:
    the shard's counters (zeros are left out); ``rejects_from``: the rows the reject samples
    show, aligned with ``table`` when they differ from it (``dedup_lines`` shows each dropped
    document's text before its lines were removed)."""
    table: pa.Table
    reasons: pa.Array | pa.ChunkedArray
    reject_columns: dict[str, pa.Array] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    rejects_from: pa.Table | None = None


def finish_shard(stage: str, shard_path: str, ctx, rows_in: int, bytes_in: int, kept: pa.Table,
                 rejected: pa.Table | None, seconds: float, counters: dict | None = None,
                 score_columns: tuple[str, ...] = ()) -> dict:
    """Write the shard's kept rows with ``ctx.write`` and its drops to the run's lineage
    (``score_columns``: what the workflow wrote that explains a drop); return its stats and a
    reject sample."""
    ctx.write(shard_path, kept)
    write_workflow_drops(getattr(ctx, "lineage_dir", None), shard_name(shard_path), rejected, stage=stage,
                         score_columns=score_columns)
    dropped: dict[str, int] = {}
    if rejected is not None and rejected.num_rows:
        for r in pc.value_counts(rejected["reason"]).to_pylist():
            dropped[r["values"]] = r["counts"]
    st = StageStats(stage=stage, rows_in=rows_in, rows_out=kept.num_rows, bytes_in=bytes_in,
                    bytes_out=text_bytes(kept), seconds=seconds, dropped=dropped,
                    counters={k: int(v) for k, v in (counters or {}).items() if v})
    return {"stats": st, "rejects": sample_rejects(rejected, ctx.samples_per_reason, excerpt_chars=ctx.excerpt_chars)}


def decide_shard(item: tuple[int, str], *, stage: str, ctx, decide: Callable[[pa.Table, int], Decisions]) -> dict:
    """One shard's task: read it, ``decide(table, shard_index)``, split and finish the shard."""
    si, path = item
    t0 = time.process_time()
    table = pq.read_table(path)
    n = table.num_rows
    bytes_in = text_bytes(table)
    d = decide(table, si)
    reasons = d.reasons.combine_chunks() if isinstance(d.reasons, pa.ChunkedArray) else d.reasons
    if len(reasons) != n or d.table.num_rows != n:
        raise ValueError(f"{stage}: {len(reasons)} decisions and {d.table.num_rows} rows for a shard of {n} rows")
    drop = pc.is_valid(reasons)
    kept = d.table.filter(pc.invert(drop))
    rejected = None
    if kept.num_rows < n:
        src = d.rejects_from if d.rejects_from is not None else d.table
        rejected = src.filter(drop).append_column("reason", reasons.filter(drop))
        for name, col in d.reject_columns.items():
            rejected = rejected.append_column(name, col.filter(drop))
    scores = tuple(c for c in d.table.column_names if c not in table.column_names) + tuple(d.reject_columns)
    return finish_shard(stage, path, ctx, n, bytes_in, kept, rejected, time.process_time() - t0, d.counters,
                        score_columns=scores)


def collect(ctx, stage: str, results: list[dict], inputs: list[str], *, shard_cpu=None,
            global_cpu: float = 0.0) -> dict[str, StageStats]:
    """Hand reject samples to the run directory; return ``{input file name: StageStats}``.

    ``shard_cpu``: CPU seconds of every task of each input; ``global_cpu``: CPU seconds of the
    partition tasks, booked on the first shard so the merged stats count the whole workflow once."""
    out = {}
    for i, (path, res) in enumerate(zip(inputs, results)):
        if res.get("rejects") is not None:
            ctx.rejects(stage, shard_name(path), res["rejects"])
        st = res["stats"]
        if shard_cpu is not None:
            st.seconds = float(shard_cpu[i])
        if i == 0:
            st.seconds += global_cpu
        out[os.path.basename(path)] = st
    return out


def filter_shards(ctx, stage: str, decide: Callable[[pa.Table, int], Decisions], *,
                  shard_cpu: list[float] | None = None, global_cpu: float = 0.0) -> dict[str, StageStats]:
    """Apply ``decide`` to every shard of ``ctx.inputs`` in parallel (see the module docstring).

    ``decide`` must pickle (a module-level function or a ``partial`` of one). ``shard_cpu``:
    CPU seconds earlier steps spent on each shard; ``global_cpu``: on the whole run. Returns
    ``{input file name: StageStats}`` in input order, seconds included."""
    task = functools.partial(decide_shard, stage=stage, ctx=portable_ctx(ctx), decide=decide)
    results, cpu = timed_map(ctx.engine, task, list(enumerate(ctx.inputs)))
    if shard_cpu is not None:
        cpu = [a + b for a, b in zip(shard_cpu, cpu)]
    return collect(ctx, stage, results, ctx.inputs, shard_cpu=cpu, global_cpu=global_cpu)
