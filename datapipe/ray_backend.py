"""The only module that imports Ray.

Ray's API has churned (``compute`` -> ``concurrency`` -> ``compute``); this
adapter absorbs that, so stages and workflows never see Ray. One concern in one module
(~1,200 lines, the largest file on purpose): the layout rule "only ray_backend imports Ray"
(tests/test_layout.py) keeps every Ray call, and every Ray version quirk, here.

Execution of a streaming step (one *wave* of input shards), fused (the default)::

    driver: ActorPool(_ShardWorker x workers).map_unordered(shards)
    _ShardWorker.run(shard): read the shard batch by batch -> the stage chain -> Parquet parts
                             into _tmp/ -> returns (shard, file, rows) descriptors
    driver: the runner commits the wave from the descriptors and the stats files.

One process per worker does all of a shard's work, as datatrove's tasks do: no Ray Data
operators, no reader/writer processes, nothing between stages in the object store. The actors
(models loaded once) live for the step, across its waves. Shards are small enough to balance
(byte ranges of big WARCs, :func:`datapipe.io.split_crawl_files`).

With ``engine.fuse: false`` the step streams through Ray Data instead, an operator per stage
(actor pools for ``needs_model`` stages, tasks otherwise), for GPU stages that should scale
apart from the CPU stages on a cluster::

    from_items(shards) -> map_batches(_ReadShard) -> map_batches(_StageChain) per stage
                       -> map_batches(_WriteParts)

Resources: a stage declares what one worker needs (``Stage.resources``: CPUs, GPUs,
memory); the stage actors ask Ray for exactly that (a fused chain for the most any of
its stages needs), so GPU stages are placed only on nodes with GPUs, one worker per GPU.
Workflows pass theirs to :meth:`Engine.map`; GPU maps, and maps that load a model, run in
actors that live for that map only (one per GPU; the model loads once per actor and its
memory is freed when the map ends).

A local Ray (no ``RAY_ADDRESS``) is trimmed to what a batch job uses: no API server,
autoscaler monitor or (unless verbose) log monitor, no prestarted or lingering idle workers,
and an object store sized to what a wave keeps in flight (``_LOCAL_SYSTEM_CONFIG``,
``_trim_local_ray``; figures: ``bench/ray_footprint.py``). Its workers run on jemalloc where it
is installed (``engine.malloc``, :func:`worker_malloc`). After each batch a worker hands
malloc's freed pages back to the OS (``_release_free_memory``).

Workers report stats and reject samples by writing small JSON files under the
wave's temp folder (synchronously, before the batch is returned), so the runner
can merge them from disk once the wave finishes; the driver reads the same files for
its progress line (``_WaveWatch``). A stage that raises is reported once by name, shard
and input file with the exception's last frames (``TaskFailure`` -> ``WorkFailed``). By
default Ray's own console output is kept off the driver's terminal (``Engine.__init__``).
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from . import lineage
from .rundir import is_url, join, list_files, location, parent, read_file, write_file
from .schema import SHARD_COL
from .progress import Poller, Progress
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
        self.parts_dir = location(parts_dir)  # a local folder, or a URL (a run directory on an object store)
        self.samples = samples_per_reason
        self.excerpt = excerpt_chars

    def write(self, key: str, stats: list[dict], rejects: list[dict]) -> None:
        """Write one part named by ``key``, a digest of the batch's input rows: when Ray retries
        a batch whose worker died after writing, the retry overwrites the same part instead of
        counting the batch twice."""
        if not stats and not rejects:
            return
        if is_url(self.parts_dir):  # an object store: one upload, seen whole or not at all
            write_file(join(self.parts_dir, f"{key}.json"),
                       json.dumps({"stats": stats, "rejects": rejects}, ensure_ascii=False, default=str).encode())
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


def _maybe_inject_fault_in_shard(shard: str, batch_no: int) -> None:
    """Fault injection for the watchdog tests, deterministic per shard:
    ``DATAPIPE_FAULT_KILL_ONCE_DIR=<dir>``: SIGKILL the worker at a shard's second batch, once
    per shard (a marker file in ``dir`` records it, so the retry runs through);
    ``DATAPIPE_FAULT_HANG_SHARD=<text>``: block forever in the first batch of shards whose key
    contains ``text``."""
    import signal
    hang = os.environ.get("DATAPIPE_FAULT_HANG_SHARD")
    if hang and hang in shard and batch_no == 0:
        while True:
            time.sleep(3600)
    once = os.environ.get("DATAPIPE_FAULT_KILL_ONCE_DIR")
    if once and batch_no == 1:
        import hashlib
        marker = Path(once) / hashlib.sha1(shard.encode()).hexdigest()
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


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


#: where Linux distributions install jemalloc (Debian/Ubuntu ``libjemalloc2``, Fedora/RHEL ``jemalloc``)
_JEMALLOC_PATHS = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                   "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2")


def worker_malloc(setting: str, *, local: bool) -> str | None:
    """The allocator library the Ray workers preload (``engine.malloc``), or None for the C
    library's own. ``auto``: jemalloc when it is installed here, for a local Ray only (a cluster's
    nodes are not this machine); ``system``: never; a path: that library, local or on a cluster
    (it must exist at that path on every node). Extraction allocates and frees millions of small
    lxml nodes per shard; on jemalloc a run takes 14% less CPU than on glibc's malloc
    (``bench/README.md``)."""
    if setting == "system":
        return None
    if setting == "auto":
        if not local or not sys.platform.startswith("linux"):
            return None
        return next((p for p in _JEMALLOC_PATHS if os.path.isfile(p)), None)
    if not os.path.isabs(setting):
        raise EngineError(f"engine.malloc: {setting!r} is not auto, system or an absolute path to a "
                          "malloc library (e.g. /usr/lib/x86_64-linux-gnu/libjemalloc.so.2)")
    if local and not os.path.isfile(setting):
        raise EngineError(f"engine.malloc: {setting} does not exist (install jemalloc, e.g. "
                          "apt install libjemalloc2, or set engine.malloc: auto)")
    return setting


@functools.cache
def _jemalloc_purge():
    """jemalloc's ``mallctl`` when this process runs on jemalloc (``engine.malloc``), else None."""
    import ctypes
    try:
        mallctl = ctypes.CDLL(None).mallctl
    except (OSError, AttributeError):
        return None
    return lambda *_: mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0))  # 4096: every arena


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (another libc). Parsing HTML leaves freed lxml trees in
    malloc's arenas; a worker that never hands them back holds ~85 MiB more at steady state
    (extraction over realpages, one process: 271 -> 194 MiB RSS with a trim per batch)."""
    import ctypes
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def _release_free_memory() -> None:
    trim = _jemalloc_purge() or _malloc_trim()
    if trim is not None:
        trim(0)


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

    def __init__(self, specs: list[dict], parts_dir: str, samples_per_reason: int, excerpt_chars: int,
                 plugin_paths: tuple = ()):
        from .stage import add_plugin_paths, build_stage
        add_plugin_paths(list(plugin_paths))  # where the driver imported module:Class stages from
        self.stages = [build_stage(s["name"], s.get("options") or {}) for s in specs]
        self.labels = [s.get("label") or s["name"] for s in specs]
        for st, label in zip(self.stages, self.labels):
            try:
                st.ensure_setup()  # once per worker, before the first batch
            except Exception as e:
                raise TaskFailure(_last_frames(e), "setting the stage up", label) from None
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
            try:
                res = apply_stage(st, batch)
            except Exception as e:
                raise TaskFailure(_last_frames(e), f"a batch of {batch.num_rows} document(s)", label,
                                  tuple(pc.unique(batch[SHARD_COL]).to_pylist())) from None
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
        lineage.write_part(join(parent(self.parts.parts_dir), "lineage"), key, drops)
        self.parts.write(key, stats, rejects)
        _release_free_memory()
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


class _ShardWorker:
    """One worker of a fused streaming step: builds and sets up the stage chain once, then per
    call reads one shard, runs the chain batch by batch and writes the kept rows as Parquet
    parts of up to ``rows_per_file`` rows; returns their descriptors (as ``_WriteParts``)."""

    def __init__(self, input_cfg: dict, specs: list[dict], batch_size: int, rows_per_file: int, compression: str,
                 partition_by: str | None, samples_per_reason: int, excerpt_chars: int, stack_dir: str | None = None,
                 plugin_paths: tuple = ()):
        self.stack_file = None
        if stack_dir:  # the watchdog's SIGUSR1 dumps every thread's Python stack here, even in C code
            import faulthandler
            import signal
            try:
                Path(stack_dir).mkdir(parents=True, exist_ok=True)
                self.stack_file = open(Path(stack_dir) / f"worker-{os.getpid()}.txt", "a")
                faulthandler.register(signal.SIGUSR1, file=self.stack_file, all_threads=True)
            except (OSError, AttributeError, ValueError):
                self.stack_file = None
        self.reader = _ReadShard(input_cfg, batch_size, "")
        self.chain = _StageChain(specs, "", samples_per_reason, excerpt_chars, plugin_paths) if specs else None
        self.rows_per_file, self.compression, self.partition_by = rows_per_file, compression, partition_by

    def where(self) -> tuple[int, str, str | None]:
        """pid, node id and stack file: how the driver reaches this process when it hangs."""
        import ray
        return os.getpid(), ray.get_runtime_context().get_node_id(), getattr(self.stack_file, "name", None)

    def run(self, shard: str, paths: list[str], parts_dir: str, out_dir: str) -> list[dict]:
        self.reader.parts.parts_dir = location(parts_dir)
        if self.chain is not None:
            self.chain.parts.parts_dir = location(parts_dir)
        writer = _WriteParts(out_dir, self.compression, self.partition_by)
        out: list[dict] = []
        buf: list[pa.Table] = []
        n = 0

        def flush(final: bool) -> None:  # files of exactly rows_per_file rows, the rest at the end
            nonlocal buf, n
            if not buf:
                return
            tbl = pa.concat_tables(buf, promote_options="default")
            while tbl.num_rows >= self.rows_per_file or (final and tbl.num_rows):
                out.extend(writer(tbl.slice(0, self.rows_per_file)).to_pylist())
                tbl = tbl.slice(self.rows_per_file)
            buf, n = ([tbl] if tbl.num_rows else []), tbl.num_rows
        for i, batch in enumerate(self.reader(pa.table({"shard": [shard], "paths": [json.dumps(paths)]}))):
            _maybe_inject_fault_in_shard(shard, i)
            kept = self.chain(batch) if self.chain is not None else batch
            if kept.num_rows:
                buf.append(kept)
                n += kept.num_rows
                if n >= self.rows_per_file:
                    flush(False)
        flush(True)
        return out


class _MapActor:
    """One worker of an actor map (:meth:`Engine.map` of GPU or model work): runs ``fn(x)``."""

    def run(self, fn, x):
        return _apply_impl(fn, x)


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
            except Exception as e:  # a reader bug: name the shard, not Ray's wrappers
                raise TaskFailure(_last_frames(e), "reading", "read", (shard,)) from None
            stats.seconds += time.process_time() - t0
            stats.shards = 1
            self.parts.write(f"read-{shard}", [stats.to_dict() | {"shard": shard}], [])


class _WriteParts:
    """Writes each batch as Parquet parts, one per (shard[, partition value]), into a temp folder."""

    def __init__(self, out_dir: str, compression: str, partition_by: str | None):
        self.out_dir = location(out_dir)
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
                path = join(self.out_dir, shard, f"{uuid.uuid4().hex}.parquet")
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
                 num_workers: int | None = None, quiet: bool = False, verbose: bool = False,
                 log_dir: str | Path | None = None, guard: Guard | None = None, malloc: str = "auto"):
        """``quiet``: no progress lines. ``verbose``: Ray's own log lines and progress on the
        console as Ray prints them. Otherwise (the default) the console gets datapipe's progress
        and problems only: worker output stays in Ray's session logs, Ray Data logs to its file,
        and what Ray's C++ core writes to the driver's stderr goes to ``driver-stderr.log`` in
        Ray's session log folder (or ``log_dir`` when that is not on this machine). ``malloc``:
        the allocator the workers preload (:func:`worker_malloc`)."""
        self.show_progress = not quiet
        self.verbose = verbose
        self.step_label = ""
        self._restore_stderr: Callable[[], None] | None = None
        self.guard = guard or Guard(log_dir=log_dir)
        self.failed: dict[str, str] = {}  # shards failed by name in the current wave (-> why)
        self.pin_node: str | None = None  # map() work runs on this node only (on_driver_node)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        import ray
        self._ray = ray
        self.address = os.environ.get("RAY_ADDRESS") or None
        self.started_here = False
        self._placements: dict[str, tuple[Resources, bool]] = {}
        self.malloc = None  # the allocator library the workers preload, when this engine started Ray
        if not ray.is_initialized():
            self.malloc = preload = worker_malloc(malloc, local=not self.address)
            kwargs: dict[str, Any] = dict(include_dashboard=False,
                                          logging_level=logging.INFO if verbose else logging.WARNING,
                                          log_to_driver=verbose)
            if self.address:
                _check_reachable(self.address)
                kwargs["address"] = self.address
                # ship our code to workers that may not have it installed
                import datapipe, stages, classifiers  # noqa: E401
                from .stage import plugin_packages  # and the user's own stage packages (module:Class)
                kwargs["runtime_env"] = {"py_modules": [datapipe, stages, classifiers, *plugin_packages()],
                                         "env_vars": {"RAY_USAGE_STATS_ENABLED": "0",
                                                      **({"LD_PRELOAD": preload} if preload else {})}}
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
                # a local Ray's processes inherit the driver's environment: the raylet, and so the
                # workers it starts, preload the allocator; the driver's own environment is restored
                with _env(LD_PRELOAD=" ".join(filter(None, [preload, os.environ.get("LD_PRELOAD")]))
                          if preload and not self.address else None):
                    ray.init(**kwargs)
            except ConnectionError as e:
                raise EngineError(f"cannot reach the Ray cluster at RAY_ADDRESS={self.address}: {e}") from None
            except Exception as e:
                if self.address:
                    raise EngineError(f"cannot connect to Ray at RAY_ADDRESS={self.address}: {e}") from None
                raise
            self.started_here = True
            if not self.address:
                _trim_local_ray(ray, keep_log_monitor=verbose)
            session = _session_log_dir(ray)
            if verbose:
                print(f"Ray's logs: {session or '(on the head node)'}", file=sys.stderr)
            else:
                self._restore_stderr = _divert_native_stderr(session or log_dir)
        global _apply
        if _apply is None:
            _apply = ray.remote(_apply_impl)
        self._pool: tuple[str, list] | None = None  # the stage-chain actors of the running step

    def _ray_data(self):
        """Ray Data, set up on first use (only ``engine.fuse: false`` streams through it)."""
        import ray.data
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # deterministic output order, same as a re-run
        ctx.enable_progress_bars = self.verbose  # datapipe's own progress lines replace Ray Data's
        try:
            ctx.enable_operator_progress_bars = self.verbose
            ctx.print_on_execution_start = False
        except Exception:  # pragma: no cover - attribute churn across Ray versions
            pass
        if not self.verbose:  # Ray Data's console handler; its file log (ray-data.log) keeps everything
            for h in logging.getLogger("ray.data").handlers:
                if not isinstance(h, logging.FileHandler) and type(h).__name__ != "SessionFileHandler":
                    h.setLevel(logging.ERROR)
        return ray.data

    @property
    def num_cpus(self) -> int:
        return int(self._ray.cluster_resources().get("CPU", 1))

    @property
    def num_gpus(self) -> int:
        """GPUs in the cluster (what Ray advertises; 0 on a CPU-only machine)."""
        return int(self._ray.cluster_resources().get("GPU", 0))

    def shutdown(self) -> None:
        try:
            if self.started_here and self._ray.is_initialized():
                self._ray.shutdown()
        finally:
            if self._restore_stderr is not None:
                self._restore_stderr()
                self._restore_stderr = None

    def nodes(self) -> list[dict]:
        """The cluster's live nodes (Ray's node records)."""
        return [n for n in self._ray.nodes() if n.get("Alive")]

    @contextlib.contextmanager
    def on_driver_node(self):
        """Inside this block ``map`` runs its work on the driver's node, sized to that node: a
        workflow over the driver's staging copy of a run directory on an object store, whose files
        other nodes do not see. (Soft affinity: work the node cannot hold at all, such as a GPU
        stage on a node without one, is refused by ``fit`` first.)"""
        self.pin_node = self._ray.get_runtime_context().get_node_id()
        try:
            yield
        finally:
            self.pin_node = None

    def _pinned(self) -> dict:
        if not self.pin_node:
            return {}
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(self.pin_node, soft=True)}

    def probe_nodes(self, path: str, expect: str, timeout: float = 120.0,
                    storage_options: dict | None = None) -> dict[str, str | None]:
        """Read ``path`` in a task pinned to every live node: {node address: None when it read
        ``expect``, else why not} (``datapipe check``: every node sees the run directory).
        ``path`` may be a URL; ``storage_options`` (``input.storage_options``) then reach the task
        as they reach the run's read tasks."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        task = self._ray.remote(num_cpus=0, max_retries=0)(_read_probe)
        refs = {n["NodeManagerAddress"] + f" ({n['NodeID'][:8]})": task.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(path, storage_options)
            for n in self.nodes()}
        out: dict[str, str | None] = {}
        for node, ref in refs.items():
            try:
                got = self._ray.get(ref, timeout=timeout)
                out[node] = None if got == expect else (got or "other content")
            except Exception as e:  # noqa: BLE001 - a node that cannot run the probe is reported
                out[node] = f"probe task failed: {type(e).__name__}: {e}"
        return out

    # resources -----------------------------------------------------------
    def fit(self, res: Resources, *, label: str = "work") -> int:
        """How many workers needing ``res`` the cluster holds at once (GPU work: one per GPU).
        Work needing a resource the cluster lacks is refused here, not left waiting forever."""
        total, where = self._ray.cluster_resources(), "the Ray cluster"
        if self.pin_node:
            total = next((n.get("Resources", {}) for n in self.nodes() if n["NodeID"] == self.pin_node), total)
            where = "the driver's node (workflows over a run directory on an object store run there)"
        limits = []
        for need, have, what in ((res.cpus, total.get("CPU", 0), "CPU"), (res.gpus, total.get("GPU", 0), "GPU"),
                                 (res.memory_mb or 0, total.get("memory", 0) / 2**20, "MiB of memory")):
            if need > 0:
                if have < need:
                    raise EngineError(f"{label} needs {need:g} {what} per worker; {where} has {have:g}")
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
                   samples_per_reason: int, excerpt_chars: int, read_ahead_mb: int | None = None,
                   progress: Progress | None = None) -> list[dict]:
        """Run read -> stages -> write for ``shards``; returns written part descriptors.
        ``progress`` is fed from the per-batch stats files the workers write (``_WaveWatch``).

        Fused (the default): each shard is one call on a stage-chain actor that reads it, runs
        the stages batch by batch and writes its Parquet parts (``_ShardWorker``): one process
        per worker, as datatrove runs, nothing between stages in the object store. Unfused:
        a Ray Data pipeline with an operator per stage (``_stream_ray_data``)."""
        parts_dir = str(join(tmp_dir, "parts"))  # tmp_dir: a local folder or a URL
        out_dir = str(join(tmp_dir, "out"))
        workers = num_workers or max(1, self.num_cpus)
        labels = [sp.get("label") or sp["name"] for sp in specs] or ["read"]
        watch = _WaveWatch(parts_dir, shards, labels[0], labels[-1], progress)
        self.failed = {}
        try:
            with Poller(watch.poll, period=1.0 if progress is None or progress.tty else 5.0):
                if fuse:
                    from .stage import plugin_paths
                    written = self._stream_actors(shards, dict(
                        input_cfg=input_cfg, specs=specs, batch_size=batch_size, rows_per_file=rows_per_file,
                        compression=compression, partition_by=partition_by, samples_per_reason=samples_per_reason,
                        excerpt_chars=excerpt_chars, plugin_paths=tuple(plugin_paths())),
                        parts_dir, out_dir, workers, watch)
                else:
                    written = self._stream_ray_data(shards, input_cfg, specs, parts_dir, out_dir, workers, batch_size,
                                                    rows_per_file, compression, partition_by, samples_per_reason,
                                                    excerpt_chars, read_ahead_mb)
        except Exception as e:
            f = _find_failure(e)
            if f is None:
                raise
            paths = dict(shards)
            inputs = sorted({p for sh in f.shards for p in paths.get(sh, [])})
            raise WorkFailed(
                f"stage {f.stage or '?'} failed" + (f" on shard {', '.join(f.shards)}" if f.shards else "")
                + (f" (input: {', '.join(inputs)})" if inputs else "") + f", {f.where}:\n{f.detail}") from None
        watch.finish()
        return written

    def _stream_actors(self, shards: list[tuple[str, list[str]]], chain: dict, parts_dir: str, out_dir: str,
                       workers: int, watch: "_WaveWatch") -> list[dict]:
        """Shards to the stage-chain actors, one at a time each, with a watchdog: a worker that
        dies (OOM killer, Ray's memory monitor, a crash in C) is reported with its shard and the
        shard is redone, up to ``guard.retries`` times; a shard that makes no progress (no batch
        finished) for ``guard.hang_after()`` seconds is reported with the worker's Python stack,
        then waited on or cancelled and retried (``guard.on_hang``). A shard out of retries is
        failed by name (``self.failed``) while the others go on."""
        ray = self._ray
        key = json.dumps(chain, sort_keys=True, default=str)
        if self._pool is None or self._pool[0] != key:
            self.end_stream()
            res = functools.reduce(Resources.merge, [self._placement(s)[0] for s in chain["specs"]], Resources())
            n = max(1, min(workers, self.fit(res, label="stage " + "+".join(s["name"] for s in chain["specs"]))))
            # restarts are ours to count (per shard, below), so Ray restarts a dead actor forever
            # and never retries a call itself
            cls = ray.remote(_ShardWorker).options(max_restarts=-1, max_task_retries=0, **_remote_args(res))
            actors = [cls.remote(**chain, stack_dir=self.guard.stack_dir) for _ in range(n)]
            self._pool = (key, actors)
            self._where = dict(zip(range(n), ray.get([a.where.remote() for a in actors])))
        actors = self._pool[1]
        guard = self.guard
        queue = list(reversed(shards))  # pop() from the end: input order
        idle = list(range(len(actors)))
        running: dict = {}  # ref -> (actor index, shard, paths, started)
        hung: dict[str, int] = {}  # shard -> times reported without progress since
        out: list[dict] = []
        while queue or running:
            while idle and queue:
                i = idle.pop()
                sh, paths = queue.pop()
                running[actors[i].run.remote(sh, paths, parts_dir, out_dir)] = (i, sh, paths, time.monotonic())
            ready, _ = ray.wait(list(running), num_returns=1, timeout=guard.check_s)
            for ref in ready:
                i, sh, paths, t0 = running.pop(ref)
                idle.append(i)
                try:
                    out.extend(ray.get(ref))
                    watch.shard_done(time.monotonic() - t0)
                    hung.pop(sh, None)
                except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
                    pid = self._where[i][0]
                    self._where[i] = _refresh_where(actors[i], self._where[i])
                    if self._where[i][0] == pid and sh not in hung:
                        queue.append((sh, paths))  # sent while it restarted: not this shard's doing
                        continue
                    cause = f"pid {pid} " + ("cancelled after it hung" if sh in hung else _death_cause(e))
                    n = guard.attempts[sh] = guard.attempts.get(sh, 0) + 1
                    if n > guard.retries:
                        self.failed[sh] = f"worker {cause}; failed {n} time(s)"
                        guard.report("failed", sh, paths, f"worker {cause}; out of retries ({guard.retries})")
                    else:
                        guard.report("worker_died", sh, paths, f"worker {cause}; redoing the shard "
                                     f"(retry {n} of {guard.retries})")
                        queue.append((sh, paths))
                    hung.pop(sh, None)
                except Exception as e:  # a stage raised: no retry (it would raise again); the others go on
                    f = _find_failure(e)
                    if f is None:
                        raise
                    last = f.detail.strip().splitlines()[-1] if f.detail.strip() else "an error"
                    self.failed[sh] = f"stage {f.stage or '?'} raised {last}"
                    guard.report("failed", sh, paths, f"stage {f.stage or '?'} raised on {f.where}:\n{f.detail}")
            now = time.monotonic()
            for ref, (i, sh, paths, t0) in list(running.items()):
                quiet_for = now - max(t0, watch.last_batch.get(sh, 0.0))
                limit = guard.hang_after(watch)
                if quiet_for < limit * (1 + hung.get(sh, 0)):
                    continue
                hung[sh] = hung.get(sh, 0) + 1
                pid, node, stack_file = self._where[i]
                where = _dump_stack(ray, pid, node, stack_file)
                action = "still waiting" if guard.on_hang == "wait" else "cancelling it to retry"
                guard.report("hang", sh, paths, f"no progress for {quiet_for:.0f}s (limit {limit:.0f}s) on worker "
                             f"pid {pid}{where}; {action}", pid=pid, node=node, stack_file=stack_file)
                if guard.on_hang == "retry":
                    ray.kill(actors[i], no_restart=False)  # the call fails with RayActorError: redone above
        return out

    def end_stream(self) -> None:
        """Stop the stage-chain actors of the step that ended (their models' memory with them)."""
        if self._pool is not None:
            for a in self._pool[1]:
                try:
                    self._ray.kill(a)
                except Exception:
                    pass
            self._pool = None

    def _stream_ray_data(self, shards, input_cfg, specs, parts_dir, out_dir, workers, batch_size, rows_per_file,
                         compression, partition_by, samples_per_reason, excerpt_chars, read_ahead_mb) -> list[dict]:
        ray_data = self._ray_data()
        # Ray Data lets readers run ahead of the stage workers up to a share of the whole object
        # store (GBs): readers are ~50x faster than extraction, so they fill it and every reader
        # process maps the pages. A budget of a few batches per worker keeps them all busy.
        budget = _read_ahead_bytes(read_ahead_mb, workers)
        ctx = ray_data.DataContext.get_current()
        ctx.execution_options.resource_limits = ctx.execution_options.resource_limits.copy(
            object_store_memory=budget)
        items = [{"shard": k, "paths": json.dumps(p)} for k, p in shards]
        ds = ray_data.from_items(items, override_num_blocks=len(items))
        # read and write tasks ask for no CPU slot: the stage actors hold one each, and a
        # fractional request would wait forever for a free slot on a machine with N actors on N CPUs
        # ...and a zero-CPU task has no concurrency limit: Ray would start one worker process per
        # shard (~150 MB and ~2 CPU-s of imports each). One reader per stage worker keeps up with them.
        io_pool = ray_data.TaskPoolStrategy(size=max(1, min(workers, len(items))))
        ds = ds.map_batches(_read_fn(input_cfg, batch_size, parts_dir), batch_size=1,
                            batch_format="pyarrow", num_cpus=0, compute=io_pool)
        from .stage import plugin_paths
        chain_kwargs = dict(parts_dir=parts_dir, samples_per_reason=samples_per_reason, excerpt_chars=excerpt_chars,
                            plugin_paths=tuple(plugin_paths()))
        groups = [[s] for s in specs]
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
            if any(m for _, m in placed) or res.gpus:
                # models load once per actor and stay loaded for the whole wave
                ds = ds.map_batches(
                    _StageChain, fn_constructor_kwargs=dict(specs=group, **chain_kwargs),
                    batch_size=batch_size, batch_format="pyarrow",
                    compute=ray_data.ActorPoolStrategy(size=size), **args)
            else:
                ds = ds.map_batches(_chain_fn(group, **chain_kwargs), batch_size=batch_size,
                                    batch_format="pyarrow", compute=ray_data.TaskPoolStrategy(size=size), **args)
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
        name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "map")
        fit = self.fit(resources, label=name)
        prog = Progress(f"{self.step_label}: {name.strip('_')}" if self.step_label else name.strip("_"), len(items),
                        unit="tasks", enabled=self.show_progress)
        try:
            if resources.gpus or needs_model:
                return self._map_actors(fn_ref, items, resources, min(fit, len(items)), prog)
            return self._map_tasks(fn_ref, items, resources, max_in_flight or fit * 2, prog)
        except Exception as e:
            f = _find_failure(e)
            if f is None:
                raise
            raise WorkFailed(f"{self.step_label or 'workflow'}: {name} failed on {f.where}:\n{f.detail}") from None
        finally:
            prog.close(only_if_long=True)

    def _map_tasks(self, fn_ref, items: list, resources: Resources, limit: int, prog: Progress) -> list:
        ray = self._ray
        remote = _apply.options(max_retries=2, **_remote_args(resources), **self._pinned())
        results = [None] * len(items)
        finished = 0
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
                finished += 1
            prog.update(done=finished)
            for i, x in it:
                pending[remote.remote(fn_ref, x)] = i
                break
        return results

    def _map_actors(self, fn_ref, items: list, res: Resources, n: int, prog: Progress) -> list:
        ray = self._ray
        from ray.util import ActorPool
        cls = ray.remote(_MapActor).options(max_restarts=2, max_task_retries=2, **_remote_args(res), **self._pinned())
        actors = [cls.remote() for _ in range(n)]
        try:
            out = []
            for r in ActorPool(actors).map(lambda a, x: a.run.remote(fn_ref, x), items):
                out.append(r)
                prog.update(done=len(out))
            return out
        finally:
            for a in actors:
                ray.kill(a)


class _WaveWatch:
    """The driver's view of a running wave, read from the stats files workers write under
    ``parts/``: one per stage-chain batch (docs into the chain, docs kept by its last stage)
    and ``read-<shard>.json`` per shard read. Each file is read once."""

    def __init__(self, parts_dir: str, shards: list[tuple[str, list[str]]], first_label: str, last_label: str,
                 progress: Progress | None):
        from .io import shard_weight
        self.dir = location(parts_dir)
        self.progress = progress
        self.first, self.last = first_label, last_label
        self.weights = {k: shard_weight(p) for k, p in shards} if progress is not None else {}
        self.wave_weight = sum(self.weights.values()) or 1
        self.seen: set[str] = set()
        self.shards_read = self.read_weight = self.docs_read = 0
        self.docs_in = self.docs_out = 0
        self.last_batch: dict[str, float] = {}  # shard -> when its latest batch was seen done
        self.longest_gap = 0.0  # the longest a shard went without a batch (or a whole shard took)
        # a step of several waves: this wave adds to what the earlier ones did
        p = progress
        self.base = (p.done, p.docs_in, p.docs_out, p.weight_done) if p is not None else (0, 0, 0, 0)

    def shard_done(self, seconds: float) -> None:
        self.longest_gap = max(self.longest_gap, min(seconds, self._gap_cap))

    _gap_cap = 3600.0

    def poll(self) -> None:
        now = time.monotonic()
        for f in list_files(self.dir, ".json"):
            name = f.rsplit("/", 1)[-1]
            if name in self.seen:
                continue
            try:
                d = json.loads(read_file(f))
            except (OSError, ValueError):
                continue  # being replaced: read it next time
            self.seen.add(name)
            for st in d.get("stats", []):
                if st["stage"] == "read":
                    self.shards_read += 1
                    self.docs_read += st.get("rows_out", 0)
                    self.read_weight += self.weights.get(st.get("shard"), 0)
                    continue
                if st["stage"] == self.first:
                    self.docs_in += st.get("rows_in", 0)
                    sh = st.get("shard")
                    if sh in self.last_batch:
                        self.longest_gap = max(self.longest_gap, now - self.last_batch[sh])
                    self.last_batch[sh] = now
                if st["stage"] == self.last:
                    self.docs_out += st.get("rows_out", 0)
        if self.progress is None:
            return
        p, (done0, in0, out0, w0) = self.progress, self.base
        frac = None
        if self.read_weight and self.docs_read:  # docs in the wave, estimated from the shards read
            est_total = self.docs_read * self.wave_weight / self.read_weight
            frac = (w0 + min(1.0, self.docs_in / est_total) * self.wave_weight) / (p.weight_total or 1)
        p.update(done=done0 + self.shards_read, docs_in=in0 + self.docs_in, docs_out=out0 + self.docs_out, frac=frac)

    def finish(self) -> None:
        """The wave is committed: its whole weight is done."""
        if self.progress is not None:
            self.poll()
            self.progress.weight_done = self.base[3] + self.wave_weight


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


@contextlib.contextmanager
def _env(**values: str | None):
    """``os.environ`` with ``values`` set (None: left as it is) for the ``with`` block."""
    saved = {k: os.environ.get(k) for k, v in values.items() if v is not None}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


def read_parquet(paths: list[str]):
    """Parquet files as a Ray Dataset (``datapipe.Result.to_ray``): joins the Ray already started,
    or ``RAY_ADDRESS``, else starts a local one."""
    import ray.data
    return ray.data.read_parquet(paths)


def _read_probe(path: str, storage_options: dict | None = None) -> str:
    from .io import apply_storage_options
    apply_storage_options(storage_options)
    try:  # a local path, or a URL (a run directory on an object store)
        return read_file(path).decode()
    except Exception as e:  # noqa: BLE001 - whatever keeps this node from reading it is the answer
        return f"{type(e).__name__}: {e}"


def _apply_impl(fn, x):
    try:
        return fn(x)
    except Exception as e:
        raise TaskFailure(_last_frames(e), repr(x)[:300]) from None
    finally:  # a workflow task's arrays are garbage now: an idle worker should not keep their pages
        _release_free_memory()


def _last_frames(e: BaseException, n: int = 4) -> str:
    """The exception's own last ``n`` frames and message, the part a person reads first."""
    return "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=-n)).rstrip()


class TaskFailure(Exception):
    """Raised in a worker: the code that failed (``detail``: last frames) and where. Plain
    strings, so it pickles across Ray and the driver can print it without Ray's wrappers."""

    def __init__(self, detail: str, where: str = "", stage: str = "", shards: tuple[str, ...] = ()):
        super().__init__(detail, where, stage, shards)
        self.detail, self.where, self.stage, self.shards = detail, where, stage, tuple(shards)

    def __str__(self) -> str:
        return self.detail


class WorkFailed(RuntimeError):
    """A stage or workflow raised on some input: the run stops (finished shards are kept and a
    re-run resumes); the message names the stage, shard and input and ends with the frames."""


def _find_failure(e: BaseException) -> TaskFailure | None:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, TaskFailure):
            return e
        cause = getattr(e, "cause", None)
        if isinstance(cause, TaskFailure):
            return cause
        e = e.__cause__ or e.__context__ or (cause if isinstance(cause, BaseException) else None)
    return None


class Guard:
    """The watchdog's settings and its reports for one run: ``retries`` per shard after a worker
    died or hung; ``hang_s`` a fixed no-progress limit, else ``max(floor_s, 10 x`` the longest
    a batch has taken in this step so far``)``; ``on_hang``: ``retry`` or ``wait``. Every report
    goes to the console once and to ``problems.jsonl`` in ``log_dir``."""

    def __init__(self, *, retries: int = 3, hang_s: float | None = None, floor_s: float = 300.0,
                 on_hang: str = "retry", log_dir: str | Path | None = None, check_s: float = 2.0):
        self.retries, self.hang_s, self.floor_s, self.on_hang = retries, hang_s, floor_s, on_hang
        self.log_dir = Path(log_dir) if log_dir else None
        self.stack_dir = str(self.log_dir / "stacks") if self.log_dir else None
        self.check_s = check_s
        self.attempts: dict[str, int] = {}
        self.step = ""

    def hang_after(self, watch: "_WaveWatch") -> float:
        if self.hang_s is not None:
            return self.hang_s
        return max(self.floor_s, 10 * watch.longest_gap)

    def report(self, kind: str, shard: str, paths: list[str], msg: str, **extra) -> None:
        line = f"[{self.step}] {kind.replace('_', ' ')}: shard {shard} (input {', '.join(paths)}): {msg}"
        print(line, file=sys.stderr, flush=True)
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "kind": kind, "step": self.step, "shard": shard,
                   "inputs": paths, "message": msg, **extra}
            with open(self.log_dir / "problems.jsonl", "a") as fh:
                fh.write(json.dumps(rec, default=str) + "\n")


def _death_cause(e: BaseException) -> str:
    text = str(e)
    if "OutOfMemoryError" in text or "memory monitor" in text:
        return "was killed by Ray's memory monitor (out of memory)"
    if "OOM" in text:
        return "was killed, likely by the OOM killer"
    return "was killed or crashed (a signal, the OOM killer, a crash in C code)"


def _refresh_where(actor, old, wait_s: float = 300.0):
    """The restarted actor's pid, once Ray has restarted it (calls fail while it restarts)."""
    import ray
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            return ray.get(actor.where.remote(), timeout=max(1.0, deadline - time.monotonic()))
        except ray.exceptions.ActorUnavailableError:
            time.sleep(0.5)
        except Exception:
            return old
    return old


def _signal_pid(pid: int) -> None:
    import signal
    os.kill(pid, signal.SIGUSR1)


def _dump_stack(ray, pid: int, node: str, stack_file: str | None) -> str:
    """Ask the hung worker for its Python stack (SIGUSR1 -> faulthandler, on its node); returns
    a note for the report: the innermost datapipe frame and where the dump is."""
    if not stack_file:
        return ""
    try:
        if node == ray.get_runtime_context().get_node_id():
            _signal_pid(pid)
        else:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
            ray.get(ray.remote(_signal_pid).options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(pid), timeout=30)
        time.sleep(1.0)
    except Exception as e:
        return f" (stack not dumped: {type(e).__name__})"
    frame = ""
    try:
        dump = Path(stack_file).read_text(errors="replace").rsplit("Current thread", 1)[-1]
        for line in dump.splitlines():  # innermost first
            if "/stages/" in line or "/datapipe/" in line or "/classifiers/" in line:
                frame = line.strip()
                break
    except OSError:
        pass
    return f"; {('in ' + frame + '; ') if frame else ''}stack in {stack_file}"


def _session_log_dir(ray) -> str | None:
    try:
        d = ray._private.worker._global_node.get_logs_dir_path()
        return d if d and os.path.isdir(d) else None
    except Exception:
        return None


def _divert_native_stderr(log_dir: str | Path | None) -> Callable[[], None] | None:
    """Point file descriptor 2 (where Ray's C++ core logs from inside the driver) at
    ``log_dir/driver-stderr.log``; Python's ``sys.stderr`` and the handlers that wrote to it
    keep the console. Returns the function that undoes it."""
    if log_dir is None:
        return None
    try:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        sys.stderr.flush()
        console_fd = os.dup(2)
        fd = os.open(str(Path(log_dir) / "driver-stderr.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except (OSError, ValueError, AttributeError):
        return None
    old = sys.stderr
    new = os.fdopen(os.dup(console_fd), "w", buffering=1, encoding=getattr(old, "encoding", None) or "utf-8",
                    errors="backslashreplace")
    moved = []
    for lg in [logging.getLogger()] + [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
                                        if not n.startswith("ray")]:
        for h in getattr(lg, "handlers", []):
            # logging's last-resort handler reads sys.stderr through a property: it follows by itself
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is old \
                    and not isinstance(type(h).__dict__.get("stream"), property):
                h.setStream(new)
                moved.append(h)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stderr = new

    def restore() -> None:
        try:
            new.flush()
        except (OSError, ValueError):
            pass
        os.dup2(console_fd, 2)
        os.close(console_fd)
        sys.stderr = old
        for h in moved:
            h.setStream(old)
        new.close()
    return restore


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
