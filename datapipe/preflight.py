"""Pre-flight check of a run: every problem found before any work, in one list.

``datapipe check CONFIG --input ... [--run-dir ...]`` runs all of it; ``datapipe run`` (and
``datapipe.Pipeline.run``) runs the fast part first (``fast=True``) and does not start when it
finds a problem. What is checked, in order:

- **config**: every key and type, unknown keys, stages and options with a "did you mean"
  (:func:`datapipe.config.check_config`), and every stage built once (a missing model file);
- **models** (not fast): every stage's ``setup()`` runs here once (the model files load);
- **inputs**: each ``--input`` resolves, and the first record of each file (of a spread sample
  of at most :data:`FIRST_RECORD_FILES` files) parses with the configured ``input.format``;
  a file that yields no record (a junk ``.warc.gz``: one ``corrupt`` record) is a problem (in
  ``run``'s fast part, only when no file read parses: a bad file among good ones is a warning,
  and the run counts it as unreadable, as it always has);
- **run directory**: writable, and its disk's free space against an estimate of what the run
  writes (outputs and intermediates; measured with ``estimate=True``, else a rough ratio; in
  the fast part only the runner's own floor, ``DATAPIPE_MIN_FREE_MB``, stops the run). On an
  object store (a URL): a probe object is written and removed, and the free space is that of
  the driver's staging copy (``datapipe/rundir.py``);
- **Ray** (not fast; fast only checks that ``RAY_ADDRESS`` answers): the cluster is reachable
  and holds what each stage declares (``Stage.resources``), and every node reads a probe file
  that the driver wrote into the run directory (workers that cannot see it would fail hours in).

``estimate=True`` projects CPU-hours, documents surviving each stage and the output size of the
whole run from a sample of its records (``datapipe/estimate.py``).

Problems carry a ``kind`` (``usage``, ``storage``, ``engine``): the command maps it to ``run``'s
exit codes (2, 4, 3); a usage problem wins, since it is the one to fix first.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence


from .config import ConfigError, PipelineConfig, check_config, read_config_file
from .rundir import is_url, join, staging_dir, write_file
from .estimate import Estimate, fmt_bytes, QuietLogger, spread, estimate_run, input_bytes
from .stage import Stage, StageError, build_stage
from .stats import StageStats

#: files whose first record is read (spread over the input list): all of a small input
FIRST_RECORD_FILES = 32
FIRST_RECORD_FILES_FAST = 4
#: rough bytes written per input byte and step when nothing was measured (extracted text of a
#: WARC is ~10-20% of its gzipped size; JSONL/Parquet text passes through)
_ROUGH_OUTPUT_RATIO = {"warc": 0.15}


@dataclass
class Problem:
    """One thing that would fail the run. ``kind``: usage (config, input, run dir contents),
    storage (run dir not writable or too small), engine (Ray cluster)."""
    check: str
    message: str
    kind: str = "usage"

    def __str__(self) -> str:
        return self.message


@dataclass
class CheckReport:
    config: Optional[PipelineConfig]
    inputs: list[str]
    run_dir: "Optional[Path | str]"  # a local folder, or an object-store URL
    problems: list[Problem] = field(default_factory=list)
    #: findings that do not stop a run (``fast``: a bad input file among good ones, a tight disk)
    warnings: list[str] = field(default_factory=list)
    #: one line per check that passed (what was looked at, with its figures)
    passed: list[str] = field(default_factory=list)
    estimate: Optional[Estimate] = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def text(self) -> str:
        out = [f"ok    {x}" for x in self.passed] + [f"warn  {x}" for x in self.warnings]
        out += [f"FAIL  [{p.check}] {p.message}" for p in self.problems]
        return "\n".join(out)


# ---------------------------------------------------------------------------

def preflight(config: "str | Path | PipelineConfig | dict", *, inputs: Optional[Sequence[str]] = None,
              run_dir: "str | Path | None" = None, fast: bool = False, estimate: bool = False,
              sample_docs: int = 200, no_input_ok: bool = False) -> CheckReport:
    """Check a run before it starts; returns every problem found (see the module docstring).

    ``config``: a config file, its data, or a validated :class:`PipelineConfig`. ``inputs``:
    as ``--input`` (default ``input.paths``). ``fast``: what ``datapipe run`` checks first
    (no model loading, no Ray, fewer first records). ``estimate``: sample and project the run.
    ``no_input_ok``: no input anywhere is not a problem (the caller has a default: ``run``'s sample crawl)."""
    t0 = time.time()
    rep = CheckReport(config=None, inputs=[], run_dir=None)
    cfg, construct_failed = _check_config(config, rep)
    if cfg is None:
        cfg = PipelineConfig()  # a config so broken that nothing is left: check the rest with defaults
    else:
        rep.config = cfg
    if not fast and rep.config is not None:
        _check_models(cfg, construct_failed, rep)
    files = _check_inputs(cfg, inputs, rep, fast=fast, no_input_ok=no_input_ok)
    rep.inputs = files
    if estimate and files and rep.config is not None:
        try:
            rep.estimate = estimate_run(cfg, files, sample_docs=sample_docs, skip=construct_failed)
            rep.passed.append(f"estimate: {rep.estimate.sample_docs} document(s) sampled")
        except Exception as e:  # noqa: BLE001 - the estimate is advice; its failure is a finding
            rep.problems.append(Problem("estimate", f"sampling the stages failed: {type(e).__name__}: {e}"))
    root = str(run_dir).rstrip("/") if run_dir and is_url(run_dir) else Path(run_dir) if run_dir else Path("runs") / cfg.name
    rep.run_dir = root
    _check_run_dir(cfg, root, files, rep, fast=fast)
    if fast:
        _check_ray_address(rep)
    elif rep.config is not None:
        _check_ray(cfg, root, rep)
    rep.seconds = time.time() - t0
    return rep


def _check_config(config, rep: CheckReport) -> tuple[Optional[PipelineConfig], set[int]]:
    """The config's problems; returns the config (bad parts at their defaults) and an empty set
    that :func:`_check_models` fills with the positions of stages that cannot be set up."""
    if isinstance(config, PipelineConfig):
        cfg, problems, file = config, [], config.source_file
    else:
        file = str(config) if isinstance(config, (str, Path)) else None
        try:
            data = read_config_file(config) if isinstance(config, (str, Path)) else config
        except ConfigError as e:
            rep.problems.append(Problem("config", str(e)))
            return None, set()
        cfg, problems = check_config(data, file=file)
    for e in problems:
        rep.problems.append(Problem("config", str(e)))
    failed: set[int] = set()
    if cfg is not None:
        rep.passed.append(f"config {file or '(in code)'}: {len(cfg.stages)} stage(s)" + (" valid" if not problems else ""))
    return cfg, failed


def _check_models(cfg: PipelineConfig, failed: set[int], rep: CheckReport) -> None:
    """Every stage's ``setup()`` once, in this process: its models and lists load."""
    loaded = 0
    for i, s in enumerate(cfg.stages):
        if i in failed:
            continue
        try:
            st = build_stage(s.name, s.resolved())
        except StageError:
            failed.add(i)
            continue
        if isinstance(st, Stage):
            try:
                st.ensure_setup()
                loaded += 1
            except Exception as e:  # noqa: BLE001 - any failure to load is the finding
                failed.add(i)
                rep.problems.append(Problem("models", f"{cfg.source_file or 'config'}: stages[{i}].{s.name}: "
                                            f"setup failed: {type(e).__name__}: {e}"))
    rep.passed.append(f"models: {loaded} stage(s) set up (models and lists load)")


def _check_inputs(cfg: PipelineConfig, inputs: Optional[Sequence[str]], rep: CheckReport, *, fast: bool,
                  no_input_ok: bool = False) -> list[str]:
    from .io import InputError, apply_storage_options, resolve_inputs
    specs = list(inputs or cfg.input.paths)
    if not specs and no_input_ok:
        return []
    if not specs:
        rep.problems.append(Problem("input", "no input: give --input (files, folders, globs, *.paths.gz, URLs) "
                                    "or input.paths in the config"))
        return []
    apply_storage_options(cfg.input.storage_options)
    files: list[str] = []
    for spec in specs:
        try:
            files.extend(resolve_inputs([spec], base_url=cfg.input.base_url, format=cfg.input.format))
        except (InputError, OSError, ValueError) as e:
            rep.problems.append(Problem("input", str(e) if str(spec) in str(e) else f"{spec}: {e}"))
    files = list(dict.fromkeys(files))
    if not files:
        return []
    # `check` reports every file whose first record does not parse. `run` (fast) reads a few and
    # refuses only when none of the files it read parses (a run over nothing); a bad file among
    # good ones is a warning, and the run counts it (an unreadable file is a counted, logged skip)
    order = spread(files, FIRST_RECORD_FILES_FAST if fast else FIRST_RECORD_FILES)
    if fast:
        order += [f for f in spread(files, FIRST_RECORD_FILES) if f not in order]
    bad: list[str] = []
    checked = 0
    quiet = QuietLogger("datapipe.io")  # the reader's own warning would say it again: the problem names it
    for f in order:
        if fast and checked >= FIRST_RECORD_FILES_FAST and len(bad) < checked:
            break  # one parses: enough for the fast part
        checked += 1
        why = _first_record_problem(cfg, f)
        if why:
            bad.append(why)
    quiet.restore()
    if fast and len(bad) < checked:
        rep.warnings.extend(bad)
    else:
        rep.problems.extend(Problem("input", m) for m in bad)
    rep.passed.append(f"inputs: {len(files)} file(s) resolved; first record of {checked - len(bad)} of {checked} "
                      f"checked file(s) parses")
    return files


def _first_record_problem(cfg: PipelineConfig, f: str) -> Optional[str]:
    """Why the first record of input ``f`` does not parse with ``input.format`` (None: it does)."""
    from .io import read_shard
    stats = StageStats(stage="read")
    try:
        gen = read_shard([f], input_cfg=cfg.input, batch_size=1, stats=stats)
        try:
            batch = next(gen, None)
        finally:
            gen.close()
    except Exception as e:  # noqa: BLE001 - what the reader raises is the finding
        return f"{f}: cannot be read as {cfg.input.format}: {type(e).__name__}: {e}"
    if batch is None or batch.num_rows == 0:
        why = ", ".join(f"{k}: {v}" for k, v in {**stats.dropped, **stats.counters}.items()) or "the file is empty"
        return f"{f}: no record parses as input.format {cfg.input.format} ({why})"
    return None


def _probe_store(url: str) -> str | None:
    """Write and remove a probe object under ``url``: None, or why it failed."""
    probe = f"{url}/.datapipe-check-{uuid.uuid4().hex[:8]}"
    try:
        write_file(probe, b"datapipe check\n")
    except Exception as e:  # noqa: BLE001 - every way a store refuses is the answer (no bucket, no rights, no network)
        return f"{type(e).__name__}: {e}"
    _remove_quietly(probe)
    return None


def _check_run_dir(cfg: PipelineConfig, root: "Path | str", files: list[str], rep: CheckReport, *, fast: bool) -> None:
    from .runner import MIN_FREE_BYTES, plan_steps
    from .io import detect_format
    where = root
    if is_url(root):  # an object store: writable there, and room on the driver for the staging copy
        why = _probe_store(str(root))
        if why:
            rep.problems.append(Problem("run_dir", f"{root}: cannot write to the run directory ({why}); "
                                        "credentials come from the usual variables of the store's library "
                                        "(AWS_* for s3://) or input.storage_options", kind="storage"))
            return
        root = staging_dir(str(root))
        where = f"{where} (staging copy {root})"
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        rep.problems.append(Problem("run_dir", f"{where}: {probe} is not a folder", kind="storage"))
        return
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".datapipe-check-"):
            pass
    except OSError as e:
        rep.problems.append(Problem("run_dir", f"{where}: not writable ({probe}: {e.strerror or e})", kind="storage"))
        return
    free = shutil.disk_usage(probe).free
    try:
        n_steps = len(plan_steps(cfg)) if rep.config is not None else 1
    except Exception:  # noqa: BLE001 - an unplannable config is reported by the config check
        n_steps = 1
    in_bytes = input_bytes(files, remote_lookups=8 if fast else 200) if files else 0  # `run` waits on few
    if rep.estimate is not None and rep.estimate.sample_docs:
        need = rep.estimate.output_bytes * n_steps
        how = "measured by --estimate"
    else:
        fmt = detect_format(files[0], cfg.input.format) if files else cfg.input.format
        need = in_bytes * _ROUGH_OUTPUT_RATIO.get(fmt, 1.0) * n_steps
        how = f"rough: {_ROUGH_OUTPUT_RATIO.get(fmt, 1.0):.0%} of the input per step; --estimate measures it"
    need = max(need, MIN_FREE_BYTES)
    line = (f"run dir {where}: writable, {fmt_bytes(free)} free; the run writes ~{fmt_bytes(need)} "
            f"({n_steps} step(s) over {fmt_bytes(in_bytes)} of input, {how})")
    short = f"{where}: only {fmt_bytes(free)} free on its disk; the run writes ~{fmt_bytes(need)} ({how})"
    if free < MIN_FREE_BYTES or (free < need and not fast):
        rep.problems.append(Problem("run_dir", short, kind="storage"))
    elif free < need:  # `run`: the estimate is rough; the run stops cleanly (exit 4, resumable) if the disk fills
        rep.warnings.append(short)
    else:
        rep.passed.append(line)


def _check_ray_address(rep: CheckReport) -> None:
    from .ray_backend import EngineError, _check_reachable
    addr = os.environ.get("RAY_ADDRESS")
    if not addr:
        return
    try:
        _check_reachable(addr)
        rep.passed.append(f"ray: RAY_ADDRESS={addr} answers")
    except EngineError as e:
        rep.problems.append(Problem("ray", str(e), kind="engine"))


def _check_ray(cfg: PipelineConfig, root: "Path | str", rep: CheckReport) -> None:
    """Start (or join) Ray as the run would; every stage's resources fit; every node sees the run dir."""
    from .ray_backend import Engine, EngineError
    e = cfg.engine
    try:
        engine = Engine(object_store_memory=e.object_store_memory, read_ahead_mb=e.read_ahead_mb,
                        num_workers=e.num_workers, quiet=True, malloc=e.malloc)
    except EngineError as err:
        rep.problems.append(Problem("ray", str(err), kind="engine"))
        return
    remote = is_url(root)
    created = not remote and not Path(root).exists()
    try:
        fits = 0
        for i, s in enumerate(cfg.stages):
            try:
                st = build_stage(s.name, s.resolved())
            except StageError:
                continue
            try:
                engine.fit(st.resources, label=f"stages[{i}].{s.name}")
                fits += 1
            except EngineError as err:
                rep.problems.append(Problem("ray", str(err), kind="engine"))
        nodes = engine.nodes()
        rep.passed.append(f"ray: {'RAY_ADDRESS=' + engine.address if engine.address else 'local Ray'}, "
                          f"{len(nodes)} node(s), {engine.num_cpus} CPU(s), {engine.num_gpus} GPU(s); "
                          f"{fits} stage(s) fit")
        token = uuid.uuid4().hex
        # on an object store, the probe is read there by every node (workers write waves there)
        probe = join(root if remote else Path(root).resolve(), f".datapipe-probe-{token[:8]}")
        try:
            if not remote:
                Path(root).mkdir(parents=True, exist_ok=True)
            write_file(probe, token.encode())
        except Exception as err:  # noqa: BLE001 - any refusal (disk, store) is the finding
            rep.problems.append(Problem("run_dir", f"{root}: cannot write a probe file: {err}", kind="storage"))
            return
        try:
            seen = engine.probe_nodes(str(probe), token, storage_options=cfg.input.storage_options)
        finally:
            if remote:
                _remove_quietly(str(probe))
            else:
                Path(probe).unlink(missing_ok=True)
        blind = {n: why for n, why in seen.items() if why}
        for node, why in blind.items():
            hint = ("give every node the store's credentials (AWS_* variables in the nodes' environment, or "
                    "input.storage_options)" if remote else "use a folder every node mounts, or an object store URL")
            rep.problems.append(Problem("nodes", f"node {node} cannot read the run directory {root} ({why}): {hint}",
                                        kind="storage"))
        if not blind:
            rep.passed.append(f"nodes: all {len(seen)} node(s) read a probe file written to {root}")
    finally:
        engine.shutdown()
        if created:
            shutil.rmtree(root, ignore_errors=True)


def _remove_quietly(url: str) -> None:
    try:
        import fsspec
        fs, path = fsspec.core.url_to_fs(url)
        fs.rm(path)
    except Exception:  # noqa: BLE001 - a probe left behind is harmless
        pass


