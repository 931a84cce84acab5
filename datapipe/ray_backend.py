"""The only module that imports Ray.

Ray's API has churned (``compute`` -> ``concurrency`` -> ``compute``); this
adapter absorbs that, so stages and workflows never see Ray.

Execution of a streaming step (one *wave* of input shards)::

    from_items(shards) -> map_batches(_ReadShard)        tasks, one per shard, yields batches
                       -> map_batches(_StageChain)        actor pool: models load once per actor
                       -> map_batches(_WriteParts)        tasks: Parquet parts into _tmp/
    driver: consumes the small (shard, file, rows) tables, then the runner commits the wave.

The stage chain is *fused* into one actor pool by default: on a 2-core machine a
separate actor pool per stage would pin a CPU per stage and leave none to the
others, and moving Arrow batches between operators costs more than it buys. With
``engine.fuse: false`` every stage gets its own operator (actor pool for
``needs_model`` stages, tasks otherwise), which suits clusters with GPU stages.

Resources: a stage declares what one worker needs (``Stage.resources``: CPUs, GPUs,
memory); the stage actors ask Ray for exactly that (a fused chain for the most any of
its stages needs), so GPU stages are placed only on nodes with GPUs, one worker per GPU.
Workflows pass theirs to :meth:`Engine.map`; GPU maps, and maps that load a model, run in
actors that live for that map only (one per GPU; the model loads once per actor and its
memory is freed when the map ends).

A local Ray (no ``RAY_ADDRESS``) is trimmed to what a batch job uses: no API server,
autoscaler monitor or (when quiet) log monitor, no prestarted or lingering idle workers,
and an object store sized to what a wave keeps in flight (``_LOCAL_SYSTEM_CONFIG``,
``_trim_local_ray``; figures: ``bench/ray_footprint.py``).

Workers report stats and reject samples by writing small JSON files under the
wave's temp folder (synchronously, before the batch is returned), so the runner
can merge them from disk once the wave finishes; nothing goes through actors.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from . import lineage
from .schema import SHARD_COL
from .stage import Resources
from .stats import StageStats

log = logging.getLogger("datapipe.ray")


# ---------------------------------------------------------------------------
# worker-side callables (pickled to Ray workers; no Ray imports needed inside)

def _text_bytes(batch: pa.Table) -> int:
    col = "text" if "text" in batch.column_names else ("html" if "html" in batch.column_names else None)
    if col is None or batch.num_rows == 0:
        return 0
    total = 0
    for c in (["text", "html"] if "html" in batch.column_names else ["text"]):
        if c in batch.column_names:
            total += pc.sum(pc.binary_length(batch[c])).as_py() or 0
    return total


class _PartWriter:
    """Writes one JSON part file per batch: stats per (shard, stage) and reject samples."""

    def __init__(self, parts_dir: str, samples_per_reason: int, excerpt_chars: int):
        self.parts_dir = Path(parts_dir)
        self.samples = samples_per_reason
        self.excerpt = excerpt_chars

    def write(self, key: str, stats: list[dict], rejects: list[dict]) -> None:
        """Write one part named by ``key``, a digest of the batch's input rows: when Ray retries
        a batch whose worker died after writing, the retry overwrites the same part instead of
        counting the batch twice."""
        if not stats and not rejects:
            return
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        path = self.parts_dir / f"{key}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stats": stats, "rejects": rejects}, ensure_ascii=False, default=str))
        os.replace(tmp, path)

    def reject_samples(self, stage, label: str, rejected: pa.Table) -> list[dict]:
        from .rejects import reject_rows
        if self.samples == 0:
            return []
        return reject_rows(rejected, stage=label, cap=self.samples, excerpt_chars=self.excerpt,
                           columns=["id", "url", "reason", SHARD_COL, *getattr(stage, "outputs", ())])


def _batch_key(batch: pa.Table, salt: str) -> str:
    import hashlib
    h = hashlib.sha1(salt.encode())
    # the values, not the buffers: a batch is often a zero-copy slice of a bigger block
    h.update("\x1f".join(map(str, batch["id"].to_pylist())).encode())
    return h.hexdigest()[:24]


def _maybe_inject_fault() -> None:
    """Fault injection for the crash-resume tests: ``DATAPIPE_FAULT_KILL_WORKER=<probability>``
    SIGKILLs the worker process at the start of a batch (seeded by ``DATAPIPE_FAULT_SEED``)."""
    p = os.environ.get("DATAPIPE_FAULT_KILL_WORKER")
    if not p:
        return
    import random
    import signal
    global _FAULT_RNG
    if _FAULT_RNG is None:
        _FAULT_RNG = random.Random(f"{os.environ.get('DATAPIPE_FAULT_SEED', '0')}-{os.getpid()}")
    if _FAULT_RNG.random() < float(p):
        os.kill(os.getpid(), signal.SIGKILL)


_FAULT_RNG = None


def _group_counts(batch: pa.Table) -> dict[str, tuple[int, int]]:
    """rows and text bytes per shard in ``batch``."""
    if batch.num_rows == 0:
        return {}
    shards = batch[SHARD_COL]
    if pc.count_distinct(shards).as_py() == 1:
        return {shards[0].as_py(): (batch.num_rows, _text_bytes(batch))}
    out = {}
    for s in pc.unique(shards).to_pylist():
        sub = batch.filter(pc.equal(shards, s))
        out[s] = (sub.num_rows, _text_bytes(sub))
    return out


class _StageChain:
    """Runs a list of stages on each batch; counts everything per (shard, stage)."""

    def __init__(self, specs: list[dict], parts_dir: str, samples_per_reason: int, excerpt_chars: int):
        from .stage import build_stage
        self.stages = [build_stage(s["name"], s.get("options") or {}) for s in specs]
        self.labels = [s.get("label") or s["name"] for s in specs]
        for st in self.stages:
            st.ensure_setup()  # once per worker, before the first batch
        self.parts = _PartWriter(parts_dir, samples_per_reason, excerpt_chars)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from .stage import apply_stage
        _maybe_inject_fault()
        key = _batch_key(batch, "|".join(self.labels))
        stats: list[dict] = []
        rejects: list[dict] = []
        drops: list = []  # lineage (datapipe.lineage)
        for st, label in zip(self.stages, self.labels):
            before = _group_counts(batch)
            t0 = time.process_time()
            res = apply_stage(st, batch)
            dt = time.process_time() - t0
            after = _group_counts(res.kept)
            dropped_by_shard: dict[str, dict[str, int]] = defaultdict(dict)
            if res.rejected is not None and res.rejected.num_rows:
                tbl = res.rejected.group_by([SHARD_COL, "reason"]).aggregate([("reason", "count")])
                for r in tbl.to_pylist():
                    dropped_by_shard[r[SHARD_COL]][r["reason"]] = r["reason_count"]
                rejects.extend(self.parts.reject_samples(st, label, res.rejected))
                drops.append(lineage.drop_records(res.rejected, stage=label, score_columns=getattr(st, "outputs", ())))
            counters = st.counters() or {}
            total_rows = sum(n for n, _ in before.values()) or 1
            for shard, (n_in, b_in) in before.items():
                n_out, b_out = after.get(shard, (0, 0))
                share = n_in / total_rows
                stats.append(StageStats(
                    stage=label, rows_in=n_in, rows_out=n_out, bytes_in=b_in, bytes_out=b_out,
                    seconds=dt * share, dropped=dropped_by_shard.get(shard, {}),
                    # counters are per batch; attribute them to the batch's first shard
                    counters=counters if shard == next(iter(before)) else {},
                ).to_dict() | {"shard": shard})
            batch = res.kept
            if batch.num_rows == 0:
                break
        lineage.write_part(self.parts.parts_dir.parent / "lineage", key, drops)
        self.parts.write(key, stats, rejects)
        return batch


_TASK_CHAIN: dict[str, _StageChain] = {}


def _chain_fn(specs: list[dict], **chain_kwargs):
    """The stage chain as a plain function, for stages run as Ray *tasks* (no model to keep):
    each worker process builds (and sets up) the chain once and reuses it for every batch."""
    key = json.dumps([specs, chain_kwargs], sort_keys=True, default=str)

    def run(batch: pa.Table) -> pa.Table:
        chain = _TASK_CHAIN.get(key)
        if chain is None:
            _TASK_CHAIN.clear()  # an earlier wave's chain (its parts folder is gone)
            chain = _TASK_CHAIN[key] = _StageChain(specs, **chain_kwargs)
        return chain(batch)
    return run


class _MapActor:
    """One worker of an actor map (:meth:`Engine.map` of GPU or model work): runs ``fn(x)``."""

    def run(self, fn, x):
        return fn(x)


class _ReadShard:
    """Reads one shard per input row; yields batches tagged with the shard key."""

    def __init__(self, input_cfg: dict, batch_size: int, parts_dir: str):
        from .config import InputConfig
        self.input_cfg = InputConfig.model_validate(input_cfg)
        self.batch_size = batch_size
        self.parts = _PartWriter(parts_dir, 0, 0)

    def __call__(self, rows: pa.Table):
        from .io import InputError, apply_storage_options, read_shard
        apply_storage_options(self.input_cfg.storage_options)  # this worker opens the remote files
        for row in rows.to_pylist():
            shard, paths = row["shard"], json.loads(row["paths"])
            stats = StageStats(stage="read")
            t0 = time.process_time()
            try:
                for tbl in read_shard(paths, input_cfg=self.input_cfg, batch_size=self.batch_size, stats=stats):
                    stats.seconds += time.process_time() - t0
                    yield tbl.append_column(SHARD_COL, pa.array([shard] * tbl.num_rows, pa.string()))
                    t0 = time.process_time()
            except (InputError, OSError, EOFError) as e:
                # an unreadable file is a counted, logged skip, not a lost run
                log.warning("shard %s: %s: %s", shard, type(e).__name__, e)
                stats.counters["unreadable_file"] = stats.counters.get("unreadable_file", 0) + 1
            stats.seconds += time.process_time() - t0
            stats.shards = 1
            self.parts.write(f"read-{shard}", [stats.to_dict() | {"shard": shard}], [])


class _WriteParts:
    """Writes each batch as Parquet parts, one per (shard[, partition value]), into a temp folder."""

    def __init__(self, out_dir: str, compression: str, partition_by: str | None):
        self.out_dir = Path(out_dir)
        self.compression = compression
        self.partition_by = partition_by

    def __call__(self, batch: pa.Table) -> pa.Table:
        from .rundir import write_parquet_atomic
        rows_out = {"shard": [], "file": [], "rows": [], "bytes": [], "partition": []}
        if batch.num_rows == 0:
            return pa.table(rows_out, schema=_WRITE_SCHEMA)
        for shard in pc.unique(batch[SHARD_COL]).to_pylist():
            sub = batch.filter(pc.equal(batch[SHARD_COL], shard)).drop_columns([SHARD_COL])
            groups = [(None, sub)]
            if self.partition_by and self.partition_by in sub.column_names:
                col = pc.fill_null(pc.cast(sub[self.partition_by], pa.string()), "none")
                groups = [(v, sub.filter(pc.equal(col, v))) for v in pc.unique(col).to_pylist()]
            for part, tbl in groups:
                path = self.out_dir / shard / f"{uuid.uuid4().hex}.parquet"
                size = write_parquet_atomic(tbl, path, compression=self.compression)
                rows_out["shard"].append(shard)
                rows_out["file"].append(str(path))
                rows_out["rows"].append(tbl.num_rows)
                rows_out["bytes"].append(size)
                rows_out["partition"].append(part)
        return pa.table(rows_out, schema=_WRITE_SCHEMA)


_WRITE_SCHEMA = pa.schema([("shard", pa.string()), ("file", pa.string()), ("rows", pa.int64()),
                           ("bytes", pa.int64()), ("partition", pa.string())])


# ---------------------------------------------------------------------------
# driver side

class Engine:
    """Owns the Ray connection. ``RAY_ADDRESS`` set: join that cluster; else a local Ray."""

    def __init__(self, *, object_store_memory: int | None = None, read_ahead_mb: int | None = None,
                 num_workers: int | None = None, quiet: bool = False):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        import ray
        self._ray = ray
        self.address = os.environ.get("RAY_ADDRESS") or None
        self.started_here = False
        self._placements: dict[str, tuple[Resources, bool]] = {}
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING,
                                          log_to_driver=not quiet)
            if self.address:
                _check_reachable(self.address)
                kwargs["address"] = self.address
                # ship our code to workers that may not have it installed
                import datapipe, stages, classifiers  # noqa: E401
                kwargs["runtime_env"] = {"py_modules": [datapipe, stages, classifiers],
                                         "env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}}
            else:
                # "local": always a new embedded Ray, never a cluster someone left running here;
                # trimmed to what a batch job uses (see _LOCAL_SYSTEM_CONFIG and _trim_local_ray)
                kwargs["address"] = "local"
                kwargs["num_cpus"] = cpus = os.cpu_count() or 1
                # the store holds what is in flight: Ray Data's read-ahead budget (twice, for
                # blocks being handed over) and workflow map results; not Ray's 30% of RAM
                kwargs["object_store_memory"] = object_store_memory or (
                    2 * _read_ahead_bytes(read_ahead_mb, num_workers or cpus) + 256 * 2**20)
                kwargs["_system_config"] = dict(_LOCAL_SYSTEM_CONFIG)
            try:
                ray.init(**kwargs)
            except ConnectionError as e:
                raise EngineError(f"cannot reach the Ray cluster at RAY_ADDRESS={self.address}: {e}") from None
            except Exception as e:
                if self.address:
                    raise EngineError(f"cannot connect to Ray at RAY_ADDRESS={self.address}: {e}") from None
                raise
            self.started_here = True
            if not self.address:
                _trim_local_ray(ray, keep_log_monitor=not quiet)
        global _apply
        if _apply is None:
            _apply = ray.remote(_apply_impl)
        import ray.data
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # deterministic output order, same as a re-run
        ctx.enable_progress_bars = not quiet
        try:
            ctx.enable_operator_progress_bars = not quiet
            ctx.print_on_execution_start = False
        except Exception:  # pragma: no cover - attribute churn across Ray versions
            pass

    @property
    def num_cpus(self) -> int:
        return int(self._ray.cluster_resources().get("CPU", 1))

    @property
    def num_gpus(self) -> int:
        """GPUs in the cluster (what Ray advertises; 0 on a CPU-only machine)."""
        return int(self._ray.cluster_resources().get("GPU", 0))

    def shutdown(self) -> None:
        if self.started_here and self._ray.is_initialized():
            self._ray.shutdown()

    # resources -----------------------------------------------------------
    def fit(self, res: Resources, *, label: str = "work") -> int:
        """How many workers needing ``res`` the cluster holds at once (GPU work: one per GPU).
        Work needing a resource the cluster lacks is refused here, not left waiting forever."""
        total = self._ray.cluster_resources()
        limits = []
        for need, have, what in ((res.cpus, total.get("CPU", 0), "CPU"), (res.gpus, total.get("GPU", 0), "GPU"),
                                 (res.memory_mb or 0, total.get("memory", 0) / 2**20, "MiB of memory")):
            if need > 0:
                if have < need:
                    raise EngineError(f"{label} needs {need:g} {what} per worker; the Ray cluster has {have:g}")
                limits.append(int(have // need))
        return max(1, min(limits)) if limits else max(1, int(total.get("CPU", 1)))

    def _placement(self, spec: dict) -> tuple[Resources, bool]:
        """(resources, needs_model) of a stage spec; read from an instance (both may depend on its
        options), built once per engine."""
        key = json.dumps(spec, sort_keys=True, default=str)
        if key not in self._placements:
            from .stage import build_stage
            st = build_stage(spec["name"], spec.get("options") or {})
            self._placements[key] = (st.resources, bool(st.needs_model))
        return self._placements[key]

    # streaming step -------------------------------------------------------
    def run_stream(self, *, shards: list[tuple[str, list[str]]], input_cfg: dict, specs: list[dict],
                   tmp_dir: str, batch_size: int, rows_per_file: int, compression: str,
                   partition_by: str | None, num_workers: int | None, fuse: bool,
                   samples_per_reason: int, excerpt_chars: int, read_ahead_mb: int | None = None) -> list[dict]:
        """Run read -> stages -> write for ``shards``; returns written part descriptors."""
        import ray.data
        parts_dir = str(Path(tmp_dir) / "parts")
        out_dir = str(Path(tmp_dir) / "out")
        workers = num_workers or max(1, self.num_cpus)
        # Ray Data lets readers run ahead of the stage workers up to a share of the whole object
        # store (GBs): readers are ~50x faster than extraction, so they fill it and every reader
        # process maps the pages. A budget of a few batches per worker keeps them all busy.
        budget = _read_ahead_bytes(read_ahead_mb, workers)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.resource_limits = ctx.execution_options.resource_limits.copy(
            object_store_memory=budget)
        items = [{"shard": k, "paths": json.dumps(p)} for k, p in shards]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        # read and write tasks ask for no CPU slot: the stage actors hold one each, and a
        # fractional request would wait forever for a free slot on a machine with N actors on N CPUs
        # ...and a zero-CPU task has no concurrency limit: Ray would start one worker process per
        # shard (~150 MB and ~2 CPU-s of imports each). One reader per stage worker keeps up with them.
        io_pool = ray.data.TaskPoolStrategy(size=max(1, min(workers, len(items))))
        ds = ds.map_batches(_read_fn(input_cfg, batch_size, parts_dir), batch_size=1,
                            batch_format="pyarrow", num_cpus=0, compute=io_pool)
        chain_kwargs = dict(parts_dir=parts_dir, samples_per_reason=samples_per_reason, excerpt_chars=excerpt_chars)
        groups = [specs] if fuse else [[s] for s in specs]
        groups = [g for g in groups if g]
        for group in groups:
            placed = [self._placement(s) for s in group]
            res = functools.reduce(Resources.merge, [r for r, _ in placed])
            label = "stage " + "+".join(s["name"] for s in group)
            # Unfused, every operator's workers must fit at once (a fixed pool waiting for a CPU
            # that another pool holds waits forever), so each asks its share of its CPUs; GPUs
            # and memory are asked in full: they are what placement is about.
            cpus = res.cpus if len(groups) == 1 else res.cpus / len(groups)
            args = _remote_args(Resources(cpus=cpus, gpus=res.gpus, memory_mb=res.memory_mb))
            size = min(workers, self.fit(res, label=label))
            if fuse or any(m for _, m in placed) or res.gpus:
                # models load once per actor and stay loaded for the whole wave
                ds = ds.map_batches(
                    _StageChain, fn_constructor_kwargs=dict(specs=group, **chain_kwargs),
                    batch_size=batch_size, batch_format="pyarrow",
                    compute=ray.data.ActorPoolStrategy(size=size), **args)
            else:
                ds = ds.map_batches(_chain_fn(group, **chain_kwargs), batch_size=batch_size,
                                    batch_format="pyarrow", compute=ray.data.TaskPoolStrategy(size=size), **args)
        ds = ds.map_batches(_write_fn(out_dir, compression, partition_by), batch_size=rows_per_file,
                            batch_format="pyarrow", num_cpus=0, compute=io_pool)
        written: list[dict] = []
        for b in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            written.extend(b.to_pylist())
        return written

    # generic parallel map for workflows ------------------------------------
    def map(self, fn: Callable, items: Iterable, *, resources: Resources | None = None,
            needs_model: bool = False, num_cpus: float | None = None, max_in_flight: int | None = None) -> list:
        """``[fn(x) for x in items]`` in parallel; results in input order.

        ``resources``: what one call needs (default: one CPU; ``num_cpus`` is a shorthand).
        Plain CPU work runs as Ray tasks, at most twice as many in flight as fit. GPU work, and
        work that loads a model (``needs_model``), runs in as many actors as fit -- one per GPU
        for ``gpus=1`` -- that exist only for this map: copies never outnumber GPUs, each is
        placed on a node with the resource, a model loads once per actor and its memory is
        freed when the map ends (an idle task worker would keep it)."""
        ray = self._ray
        if resources is None:
            resources = Resources(cpus=1.0 if num_cpus is None else num_cpus)
        items = list(items)
        if not items:
            return []
        # fn may be a partial or a bound method, which ray.remote rejects: wrap it in a task
        fn_ref = ray.put(fn)
        fit = self.fit(resources, label=getattr(fn, "__name__", "map"))
        if resources.gpus or needs_model:
            return self._map_actors(fn_ref, items, resources, min(fit, len(items)))
        remote = _apply.options(max_retries=2, **_remote_args(resources))
        limit = max_in_flight or fit * 2
        results = [None] * len(items)
        pending: dict = {}
        it = iter(enumerate(items))
        for i, x in it:
            pending[remote.remote(fn_ref, x)] = i
            if len(pending) >= limit:
                break
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                results[pending.pop(ref)] = ray.get(ref)
            for i, x in it:
                pending[remote.remote(fn_ref, x)] = i
                break
        return results

    def _map_actors(self, fn_ref, items: list, res: Resources, n: int) -> list:
        ray = self._ray
        from ray.util import ActorPool
        cls = ray.remote(_MapActor).options(max_restarts=2, max_task_retries=2, **_remote_args(res))
        actors = [cls.remote() for _ in range(n)]
        try:
            return list(ActorPool(actors).map(lambda a, x: a.run.remote(fn_ref, x), items))
        finally:
            for a in actors:
                ray.kill(a)


def _remote_args(res: Resources) -> dict:
    """Ray's options for ``res`` (memory in bytes; zero GPUs and no memory are left out)."""
    out: dict[str, Any] = {"num_cpus": res.cpus}
    if res.gpus:
        out["num_gpus"] = res.gpus
    if res.memory_mb:
        out["memory"] = res.memory_mb * 2**20
    return out


def _read_ahead_bytes(read_ahead_mb: int | None, workers: int) -> int:
    """Ray Data's object-store budget for a streaming step: ``engine.read_ahead_mb``, or 64 MiB
    per stage worker, at least 256."""
    return (read_ahead_mb or max(256, 64 * workers)) * 2**20


#: Ray settings for the embedded local Ray (never applied to a cluster joined by RAY_ADDRESS).
#: A batch job wants no worker processes beyond its work: Ray's defaults prestart one worker per
#: CPU when the driver connects and keep up to one idle worker per CPU forever (each holds what
#: its last task imported or loaded, 100-700 MB). Here workers start on demand and one idle for
#: 5 s exits -- long enough to be reused across the short driver-side gaps between waves and
#: workflow maps (a new worker costs ~1 CPU-second of imports).
_LOCAL_SYSTEM_CONFIG = {
    "prestart_worker_first_driver": False,
    "enable_worker_prestart": False,
    "num_workers_soft_limit": 0,
    "idle_worker_killing_time_threshold_ms": 5000,
}


def _trim_local_ray(ray, *, keep_log_monitor: bool) -> None:
    """Stop the helper processes of a local Ray that a batch job never uses: the API server
    ("dashboard", started even with include_dashboard=False), the autoscaler monitor (nothing to
    scale), and the log monitor when worker output is not shown (``quiet``). ``ray.init`` has no
    option to skip them; the dashboard and runtime-env agents stay (the raylet needs them)."""
    try:
        node = ray._private.worker._global_node
        node.kill_dashboard(check_alive=False)
        node.kill_monitor(check_alive=False)
        if not keep_log_monitor:
            node.kill_log_monitor(check_alive=False)
    except Exception as e:  # noqa: BLE001 - private API: a Ray upgrade may move it; the run goes on
        log.debug("could not stop Ray's unused helper processes: %s", e)


def _apply_impl(fn, x):
    return fn(x)


_apply = None


class EngineError(RuntimeError):
    """Ray could not be started or reached."""


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes: Ray itself retries an unreachable GCS for ~100 s."""
    import socket
    addr = address.split("://", 1)[-1]
    if addr in ("auto", "local") or ":" not in addr:
        return
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        raise EngineError(f"cannot reach the Ray cluster at RAY_ADDRESS={address}: {e}") from None


def _read_fn(input_cfg: dict, batch_size: int, parts_dir: str):
    reader = _ReadShard(input_cfg, batch_size, parts_dir)

    def read(rows: pa.Table):
        yield from reader(rows)
    return read


def _write_fn(out_dir: str, compression: str, partition_by: str | None):
    writer = _WriteParts(out_dir, compression, partition_by)

    def write(batch: pa.Table) -> pa.Table:
        return writer(batch)
    return write
