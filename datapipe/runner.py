"""Plan, execute and resume a pipeline run.

The stage list of a config is cut into *steps*: runs of streaming stages, and
global workflows (dedup, percentiles) between them. A streaming step reads its
shards (input files or byte ranges of large ones, ``datapipe.io.split_crawl_files``;
or the previous step's Parquet files), runs the stage chain
on Ray and writes Parquet; a workflow step reads all of the previous step's files
and writes one file per input. The last step writes to ``output/``, earlier ones
to ``work/<step>/``.

Resume: each shard of each step gets a completion marker once its output files,
stats and reject samples are in place. A re-run with the same config skips done
shards and re-does the rest from scratch (their stale files are removed first),
so the final output equals an uninterrupted run's: nothing lost, nothing twice.
Streaming shards are committed in *waves* (``engine.shards_per_wave``): the
markers of a wave are written when the wave's Ray Data execution has finished.

What must match to resume (the config with every option resolved, the inputs) and how
a refusal is worded is ``datapipe/resume.py``'s.

A run directory on an object store (``--run-dir s3://...``) is worked on in a local staging
copy (``datapipe/rundir.py``): pulled from the store when the runner starts, so resume sees
the markers the store holds; each wave, workflow and the final stats pushed as they commit,
the markers after the files they vouch for.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import yaml

from . import lineage
from .config import PipelineConfig
from .io import apply_storage_options, resolve_inputs, shard_weight, split_crawl_files
from .progress import Progress
from .resume import digest, fingerprint_fields, fingerprint_record, resume_refusal, run_config
from .rejects import reject_rows
from .rundir import RunDir, atomic_write_json, atomic_write_text, is_url, safe_name, shard_key
from .stage import Workflow, WorkflowContext, get_stage_class
from .stats import StageStats, format_table, merge, merge_stats_dir

log = logging.getLogger("datapipe.runner")


class RunError(RuntimeError):
    """The run cannot start (e.g. the run directory holds a run of another config)."""


class StorageError(RunError):
    """The run directory's disk is full or not writable. Free space and re-run to resume."""


#: refuse to start with less free space than this on the run directory's disk
MIN_FREE_BYTES = int(float(os.environ.get("DATAPIPE_MIN_FREE_MB", "64")) * 2**20)

_STORAGE_ERRNOS = {28, 122, 30, 13}  # ENOSPC, EDQUOT, EROFS, EACCES


def _storage_cause(e: BaseException) -> OSError | None:
    """The disk error behind ``e``, also when Ray wrapped it in a task error."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
            return e
        e = e.__cause__ or e.__context__ or getattr(e, "cause", None)
    return None


def check_free_space(root: Path) -> None:
    probe = root
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < MIN_FREE_BYTES:
        raise StorageError(f"{root}: only {free / 2**20:.1f} MiB free on its disk (need at least "
                           f"{MIN_FREE_BYTES / 2**20:.0f} MiB; DATAPIPE_MIN_FREE_MB sets the bound)")


@dataclass
class Step:
    index: int
    kind: str                 # "stream" | "workflow"
    specs: list[dict]

    @property
    def name(self) -> str:
        first = self.specs[0]["name"] if self.specs else "read"
        return f"{self.index:02d}-{first}"

    @property
    def stage_names(self) -> list[str]:
        return [s["label"] for s in self.specs]


@dataclass
class RunResult:
    run_dir: Path
    stats: list[StageStats]
    wall_seconds: float
    cores: int
    output_files: list[Path] = field(default_factory=list)
    shards_skipped: int = 0
    shards_run: int = 0
    #: the run directory's URL when it is on an object store (``run_dir`` is then its staging copy)
    url: str | None = None

    def table(self) -> str:
        return format_table(self.stats, cores=self.cores, wall_seconds=self.wall_seconds)


def plan_steps(cfg: PipelineConfig) -> list[Step]:
    steps: list[Step] = []
    current: list[dict] = []
    seen: dict[str, int] = {}
    for spec in cfg.stages:
        # a stage used twice (e.g. a length check before and after a rewrite) is counted apart
        seen[spec.name] = seen.get(spec.name, 0) + 1
        label = spec.name if seen[spec.name] == 1 else f"{spec.name}#{seen[spec.name]}"
        d = {"name": spec.name, "options": spec.resolved(), "label": label}
        if issubclass(get_stage_class(spec.name), Workflow):
            if current or not steps:
                steps.append(Step(len(steps) + 1, "stream", current))
                current = []
            steps.append(Step(len(steps) + 1, "workflow", [d]))
        else:
            current.append(d)
    if current or not steps:
        steps.append(Step(len(steps) + 1, "stream", current))
    return steps


def _step_files(step_dir: Path) -> list[Path]:
    return sorted((p for p in step_dir.rglob("*.parquet") if not p.name.startswith(".")),
                  key=lambda p: (p.name, str(p)))


def _remove_shard_files(step_dir: Path, shard: str) -> list[Path]:
    """Remove a shard's output files from an earlier, unfinished try; returns them."""
    gone = sorted(step_dir.rglob(f"{shard}-*.parquet")) if step_dir.is_dir() else []
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


class Runner:
    def __init__(self, cfg: PipelineConfig, *, inputs: list[str] | None = None, run_dir: str | Path | None = None,
                 quiet: bool = False, fresh: bool = False, verbose: bool = False):
        self.cfg = cfg
        self.quiet = quiet
        self.verbose = verbose
        specs = inputs if inputs else cfg.input.paths
        if not specs:
            raise RunError("no input: give --input (files, folders, globs, *.paths.gz, URLs) or input.paths in the config")
        apply_storage_options(cfg.input.storage_options)
        self.inputs = split_crawl_files(
            resolve_inputs(specs, base_url=cfg.input.base_url, format=cfg.input.format),
            format=cfg.input.format, shard_bytes=cfg.input.shard_bytes, min_shards=cfg.input.min_shards)
        self.rd = RunDir(run_dir or Path("runs") / cfg.name)
        self.steps = plan_steps(cfg)
        self.run_config = run_config(cfg, self.inputs)
        self.fingerprint = digest(fingerprint_fields(self.run_config))
        if fresh and self.rd.root.exists():
            shutil.rmtree(self.rd.root)
        if self.rd.mirror is not None:
            try:
                if fresh:
                    self.rd.mirror.clear()
                self.rd.pull()  # the store's state, not what an earlier run left in staging
            except OSError as e:
                raise StorageError(f"{self.rd.name}: cannot read the run directory ({type(e).__name__}: {e})") from None
        self._check_resumable()

    # ------------------------------------------------------------------
    def _check_resumable(self) -> None:
        why = resume_refusal(self.rd.root, self.cfg, self.inputs, self.run_config, name=self.rd.name)
        if why:
            raise RunError(why)
        # same fingerprint, yet finished input shards this run does not plan (a datapipe that keyed
        # shards otherwise): redoing them would leave their old files beside the new ones
        unknown = self.rd.done_shards(self.steps[0].name) - {shard_key(p) for p in self.inputs}
        if unknown:
            raise RunError(f"{self.rd.name} holds finished shards this run does not plan ({sorted(unknown)[0]}"
                           f"{', ...' if len(unknown) > 1 else ''}); use another --run-dir, or --fresh to start over")

    def _say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def _write_run_header(self) -> None:
        root = self.rd.root
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / "config.yaml", yaml.safe_dump(self.run_config, sort_keys=False, allow_unicode=True))
        atomic_write_json(root / "fingerprint.json", fingerprint_record(self.cfg, self.fingerprint))
        atomic_write_json(root / "plan.json", [
            {"step": s.name, "kind": s.kind, "stages": s.stage_names} for s in self.steps])
        self.rd.publish(root / "config.yaml", root / "fingerprint.json", root / "plan.json")

    # ------------------------------------------------------------------
    def run(self, *, stop_after_waves: int | None = None) -> RunResult:
        from .ray_backend import Engine, Guard, WorkFailed
        t0 = time.time()
        check_free_space(self.rd.root)
        try:
            self._write_run_header()
            self.rd.clean_tmp()
        except OSError as e:
            if _storage_cause(e) or self.rd.mirror is not None:  # a store's refusal (no bucket, no rights)
                raise StorageError(f"{self.rd.name}: cannot write the run directory: {e}") from None
            raise
        ecfg = self.cfg.engine
        engine = Engine(object_store_memory=ecfg.object_store_memory, read_ahead_mb=ecfg.read_ahead_mb, malloc=ecfg.malloc,
                        num_workers=ecfg.num_workers, quiet=self.quiet, verbose=self.verbose,
                        log_dir=self.rd.root / "logs",
                        guard=Guard(retries=ecfg.shard_retries, hang_s=ecfg.hang_after_s, floor_s=ecfg.hang_floor_s,
                                    on_hang=ecfg.on_hang, log_dir=self.rd.root / "logs"))
        failed: dict[str, str] = {}
        cores = engine.num_cpus
        waves_done = 0
        run_count = skipped = 0
        prev_files: list[Path] | None = None
        try:
            for i, step in enumerate(self.steps):
                final = i == len(self.steps) - 1
                out_dir = self.rd.step_output(step.name, final)
                if prev_files is None:
                    shards = [(shard_key(p), [p]) for p in self.inputs]
                    input_cfg = self.cfg.input.model_dump()
                else:  # the previous step's files, as workers on every node reach them
                    shards = [(p.stem, [self.rd.remote_path(p)]) for p in prev_files]
                    input_cfg = self.cfg.input.model_dump() | {"format": "parquet", "text_field": "text"}
                done = self.rd.done_shards(step.name)
                pending = [s for s in shards if s[0] not in done]
                skipped += len(shards) - len(pending)
                engine.step_label = engine.guard.step = step.name
                if step.kind == "workflow":
                    if not self.rd.step_complete(step.name):
                        # the driver's staging copy on an object store (workflows run there; README: limits)
                        self._run_workflow(step, [p for _, ps in shards for p in ps] if prev_files is None
                                           else [str(p) for p in prev_files], out_dir, engine)
                        run_count += len(shards)
                else:
                    stale = [p for shard, _ in pending for p in _remove_shard_files(out_dir, shard)]
                    self.rd.unpublish(*stale)  # files an unfinished try uploaded before its marker
                    per_wave = self.cfg.engine.shards_per_wave or max(8, 4 * cores)
                    n_waves = (len(pending) + per_wave - 1) // per_wave
                    if len(shards) > len(pending):
                        self._say(f"[{step.name}] {len(shards) - len(pending)} of {len(shards)} shard(s) already done")
                    prog = Progress(step.name, len(pending), unit="shards", enabled=not self.quiet and bool(pending))
                    prog.weight_total = sum(shard_weight(ps) for _, ps in pending)
                    for w in range(n_waves):
                        if stop_after_waves is not None and waves_done >= stop_after_waves:
                            raise _Stopped()
                        wave = pending[w * per_wave:(w + 1) * per_wave]
                        failed.update(self._run_wave(step, wave, input_cfg, out_dir, engine, final, prog))
                        waves_done += 1
                        run_count += len(wave)
                    engine.end_stream()
                    prog.close()
                    if failed:  # the shards that did finish are committed; a re-run redoes the rest
                        break
                    self.rd.mark_step_complete(step.name)
                prev_files = _step_files(out_dir)
        except _Stopped:
            self._say(f"stopped after {waves_done} wave(s) (test hook)")
        except Exception as e:
            cause = _storage_cause(e)
            if cause is None and "No space left on device" in str(e):
                cause = OSError(28, "No space left on device")
            if cause is not None:
                raise StorageError(
                    f"{self.rd.name}: {cause.strerror or cause} while writing; finished shards are kept — "
                    f"free space and run the same command again to resume") from None
            raise
        finally:
            engine.shutdown()
            shutil.rmtree(self.rd.tmp, ignore_errors=True)
            if self.rd.mirror is not None:
                try:
                    self.rd.mirror.delete(["_tmp"], recursive=True)
                except Exception as e:  # noqa: BLE001 - a store gone away: the next run cleans up
                    log.warning("%s: could not remove _tmp/: %s", self.rd.name, e)
        stats = self.finalize()
        if failed:
            raise WorkFailed(f"{len(failed)} shard(s) failed, the rest of the step is committed:\n" + "\n".join(
                f"  {sh}: {why}" for sh, why in sorted(failed.items()))
                + f"\n(details: {self.rd.root / 'logs' / 'problems.jsonl'})")
        wall = time.time() - t0
        summary = {"wall_seconds": round(wall, 3), "cores": cores, "shards_run": run_count,
                   "shards_skipped": skipped, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(self.rd.root / "last_run.json", summary)
        self.rd.publish(self.rd.root / "last_run.json")
        return RunResult(self.rd.root, stats, wall, cores, self.rd.output_files(), skipped, run_count, url=self.rd.url)

    # ------------------------------------------------------------------
    def _run_wave(self, step: Step, wave: list[tuple[str, list[str]]], input_cfg: dict, out_dir: Path,
                  engine, final: bool, progress: Progress | None = None) -> dict[str, str]:
        """Run one wave and commit its shards; returns the shards the engine failed (not committed)."""
        name = f"wave-{uuid.uuid4().hex[:8]}"
        tmp = self.rd.tmp / name
        # where workers write: the store itself for a run directory on one (every node reaches it)
        work_tmp = self.rd.wave_tmp(name)
        e = self.cfg.engine
        t0 = time.time()
        written = engine.run_stream(
            shards=wave, input_cfg=input_cfg, specs=step.specs, tmp_dir=str(work_tmp),
            batch_size=e.batch_size, rows_per_file=self.cfg.output.rows_per_file,
            compression=self.cfg.output.compression,
            partition_by=self.cfg.output.partition_by if final else None,
            num_workers=e.num_workers, fuse=e.fuse, read_ahead_mb=e.read_ahead_mb,
            samples_per_reason=self.cfg.rejects.samples_per_reason, excerpt_chars=self.cfg.rejects.excerpt_chars,
            progress=progress,
        )
        if self.rd.mirror is not None:  # the small files to the driver; Parquet parts are copied within the store
            self.rd.mirror.fetch(f"_tmp/{name}", tmp, skip=("out/",))
        # ---- commit: stats, rejects, files, then the marker (crash before the marker = redo)
        stats_parts: dict[tuple[str, str], StageStats] = {}
        rejects: dict[str, list[dict]] = defaultdict(list)
        for f in sorted((tmp / "parts").glob("*.json")) if (tmp / "parts").is_dir() else []:
            d = json.loads(f.read_text())
            for s in d["stats"]:
                key = (s["shard"], s["stage"])
                st = StageStats.from_dict(s)
                stats_parts[key] = stats_parts[key] + st if key in stats_parts else st
            for r in d["rejects"]:
                rejects[r.get("_shard")].append(r)
        by_shard_files: dict[str, list[dict]] = defaultdict(list)
        for w in written:
            by_shard_files[w["shard"]].append(w)
        order = ["read"] + step.stage_names if step.index == 1 else step.stage_names
        failed = dict(engine.failed)
        lineage_dir = self.rd.root / lineage.LINEAGE_DIR / step.name
        lineage.commit_wave(tmp / "lineage", lineage_dir, [s for s, _ in wave if s not in failed])
        with self.rd.commit() as commit:  # on an object store: the files, then the markers
            for shard, _ in wave:
                if shard in failed:
                    continue
                for stage in order:
                    st = stats_parts.get((shard, stage))
                    if st is None:
                        st = StageStats(stage=stage)  # all rows dropped upstream: zero in, zero out
                    st.shards = 1
                    atomic_write_json(self.rd.stats_file(step.name, stage, shard), st.to_dict())
                    commit.add(self.rd.stats_file(step.name, stage, shard))
                files = by_shard_files.get(shard, [])
                wst = StageStats(stage="write", rows_in=sum(w["rows"] for w in files),
                                 rows_out=sum(w["rows"] for w in files), bytes_out=sum(w["bytes"] for w in files),
                                 shards=1)
                atomic_write_json(self.rd.stats_file(step.name, "write", shard), wst.to_dict())
                commit.add(self.rd.stats_file(step.name, "write", shard), lineage_dir / f"{shard}.parquet",
                           *self._write_reject_parts(step.name, shard, rejects.get(shard, [])))
                counters: dict[str | None, int] = defaultdict(int)
                for w in files:
                    part = w["partition"]
                    n = counters[part]
                    counters[part] += 1
                    dest_dir = out_dir / f"{self.cfg.output.partition_by}={safe_name(part)}" if part is not None else out_dir
                    commit.move(w["file"], dest_dir / f"{shard}-{n:05d}.parquet")
                commit.mark_done(step.name, shard, {"files": len(files), "rows": wst.rows_out})
        shutil.rmtree(tmp, ignore_errors=True)
        if self.rd.mirror is not None:
            self.rd.mirror.delete([f"_tmp/{name}"], recursive=True)
        if self.verbose:
            self._say(f"[{step.name}] committed {len(wave) - len(failed)} shard(s) in {time.time() - t0:.1f}s")
        return failed

    def _write_reject_parts(self, step: str, shard: str, rows: list[dict]) -> list[Path]:
        by_key: dict[tuple[str, str], list[dict]] = defaultdict(list)
        cap = self.cfg.rejects.samples_per_reason
        for r in rows:
            k = (r["stage"], r["reason"])
            if len(by_key[k]) < cap:
                r = {k2: v for k2, v in r.items() if k2 != "_shard"}
                by_key[k].append(r)
        paths = []
        for (stage, reason), items in by_key.items():
            path = self.rd.rejects_dir / "_parts" / safe_name(stage) / safe_name(reason) / f"{shard}.jsonl"
            atomic_write_text(path, "".join(json.dumps(x, ensure_ascii=False, default=str) + "\n" for x in items))
            paths.append(path)
        return paths

    def _reject_sink(self, step: str):
        cap = self.cfg.rejects.samples_per_reason
        excerpt = self.cfg.rejects.excerpt_chars

        def sink(stage: str, shard: str, table: pa.Table) -> None:
            self._write_reject_parts(step, shard, reject_rows(table, stage=stage, cap=cap, excerpt_chars=excerpt))
        return sink

    def _run_workflow(self, step: Step, inputs: list[str], out_dir: Path, engine) -> None:
        from .stage import build_stage
        spec = step.specs[0]
        wf = build_stage(spec["name"], spec["options"])
        shutil.rmtree(out_dir, ignore_errors=True)
        self.rd.unpublish(out_dir, recursive=True)  # what an unfinished try uploaded
        out_dir.mkdir(parents=True, exist_ok=True)
        work = self.rd.root / "work" / f"{step.name}-intermediate"
        work.mkdir(parents=True, exist_ok=True)
        ctx = WorkflowContext(inputs=inputs, output_dir=str(out_dir), work_dir=str(work), engine=engine,
                              compression=self.cfg.output.compression, reject_sink=self._reject_sink(step.name),
                              samples_per_reason=self.cfg.rejects.samples_per_reason,
                              excerpt_chars=self.cfg.rejects.excerpt_chars,
                              lineage_dir=str(self.rd.root / lineage.LINEAGE_DIR / step.name))
        t0 = time.time()
        # a run directory on an object store: the workflow reads and writes the driver's staging
        # copy, so its tasks run on the driver's node (streaming steps use every node, through the store)
        with engine.on_driver_node() if self.rd.mirror is not None else contextlib.nullcontext():
            result = wf.run(ctx) or {}
        with self.rd.commit() as commit:  # on an object store: everything the step wrote, then its markers
            for key, sts in result.items():
                shard = Path(key).name
                shard = shard[:-len(".parquet")] if shard.endswith(".parquet") else shard
                for st in (sts if isinstance(sts, (list, tuple)) else [sts]):
                    st.shards = 1
                    atomic_write_json(self.rd.stats_file(step.name, st.stage, shard), st.to_dict())
                commit.mark_done(step.name, shard)
            # what the workflow wrote, as the funnel's last row when this is the run's last step
            import pyarrow.parquet as pq
            files = sorted(out_dir.rglob("*.parquet"))
            rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
            atomic_write_json(self.rd.stats_file(step.name, "write", "_all"), StageStats(
                stage="write", rows_in=rows, rows_out=rows, bytes_out=sum(f.stat().st_size for f in files),
                shards=1).to_dict())
            commit.add(out_dir, work, self.rd.stats_dir / step.name, self.rd.root / lineage.LINEAGE_DIR / step.name,
                       self.rd.rejects_dir / "_parts")
            commit.mark_step_complete(step.name)
        self._say(f"[{step.name}] {len(result)} shard(s), {rows:,} docs kept  done in {time.time() - t0:.1f}s")

    # ------------------------------------------------------------------
    def finalize(self) -> list[StageStats]:
        """Merge per-shard stats and reject samples from disk (whole run, also after resume)."""
        order = ["read"] + [n for st in self.steps for n in st.stage_names] + ["write"]
        all_stats: list[StageStats] = []
        for step in self.steps:
            d = self.rd.stats_dir / step.name
            if d.is_dir():
                step_stats = merge_stats_dir(d, order)
                # the write stage of intermediate steps is bookkeeping, not part of the funnel
                if step is not self.steps[-1]:
                    step_stats = [s for s in step_stats if s.stage != "write"]
                all_stats.extend(step_stats)
        merged = merge(all_stats, order)
        atomic_write_json(self.rd.root / "stats.json", {
            "stages": [s.to_dict() for s in merged],
            "steps": [{"step": s.name, "kind": s.kind, "stages": s.stage_names,
                       "complete": self.rd.step_complete(s.name)} for s in self.steps],
        })
        merge_rejects(self.rd, self.cfg.rejects.samples_per_reason)
        kept = self.rd.root / lineage.LINEAGE_DIR / lineage.KEPT_FILE
        if self.steps and self.rd.step_complete(self.steps[-1].name):
            lineage.write_kept(self.rd.root, self.rd.output_files())
        rejects = [p for p in self.rd.rejects_dir.iterdir() if p.name != "_parts"] if self.rd.rejects_dir.is_dir() else []
        self.rd.publish(self.rd.root / "stats.json", *rejects, kept, self.rd.root / "logs")
        return merged


class _Stopped(Exception):
    pass


def merge_rejects(rd: RunDir, cap: int) -> None:
    parts = rd.rejects_dir / "_parts"
    if not parts.is_dir():
        return
    for stage_dir in sorted(p for p in parts.iterdir() if p.is_dir()):
        for reason_dir in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
            lines: list[str] = []
            for f in sorted(reason_dir.glob("*.jsonl")):
                for line in f.read_text().splitlines():
                    if len(lines) < cap:
                        lines.append(line)
            atomic_write_text(rd.rejects_dir / stage_dir.name / f"{reason_dir.name}.jsonl", "".join(l + "\n" for l in lines))


def run_pipeline(cfg: PipelineConfig, *, inputs: list[str] | None = None, run_dir: str | Path | None = None,
                 quiet: bool = False, fresh: bool = False, stop_after_waves: int | None = None,
                 verbose: bool = False) -> RunResult:
    return Runner(cfg, inputs=inputs, run_dir=run_dir, quiet=quiet, fresh=fresh,
                  verbose=verbose).run(stop_after_waves=stop_after_waves)


def load_stats(run_dir: str | Path) -> list[StageStats]:
    if is_url(run_dir):  # one small file: read it from the store
        import fsspec
        try:
            with fsspec.open(f"{str(run_dir).rstrip('/')}/stats.json", "rt") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise FileNotFoundError(f"{run_dir}: no stats.json (is this a run directory?)") from None
        return [StageStats.from_dict(d) for d in data["stages"]]
    p = Path(run_dir) / "stats.json"
    if not p.exists():
        raise FileNotFoundError(f"{run_dir}: no stats.json (is this a run directory?)")
    return [StageStats.from_dict(d) for d in json.loads(p.read_text())["stages"]]
