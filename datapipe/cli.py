"""``datapipe`` command line.

    datapipe run CONFIG [--input PATH ...] [--run-dir DIR] [--fresh]
    datapipe check CONFIG [--input PATH ...] [--run-dir DIR] [--estimate]
    datapipe stats RUN_DIR
    datapipe inspect RUN_DIR --stage S [--reason R] [--n N]
    datapipe sample-crawl OUT_DIR

Config and input problems print one line each naming the file and key (every problem the
fast pre-flight check finds, ``datapipe/preflight.py``) and exit 2; Ray connection problems
exit 3; a stage that raises on some input, or a shard whose worker died or hung more often
than ``engine.shard_retries``, stops the run with exit 1, naming the stage, shard and input
file (with the exception's last frames). No tracebacks for user errors.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from pathlib import Path

from .commands import EXIT_ENGINE, EXIT_FAILED, EXIT_STORAGE, EXIT_USAGE, error as _err, problems_exit_code

DEFAULT_SAMPLE_DIR = Path("runs") / "_sample_crawl"


def default_sample_crawl(out_dir: Path = DEFAULT_SAMPLE_DIR) -> list[str]:
    """Build (once) the project's own sample crawl and return its WARC files."""
    from .samplecrawl import build_sample_crawl
    marker = out_dir / "_complete"
    if not marker.exists():
        print(f"building the sample crawl in {out_dir} ...", file=sys.stderr)
        build_sample_crawl(out_dir)
        marker.write_text("ok\n")
    return sorted(str(p) for p in out_dir.glob("*.warc.gz"))


def cmd_run(args) -> int:
    from .config import ConfigError, load_config
    from .io import InputError
    from .ray_backend import EngineError, WorkFailed
    from .runner import RunError, StorageError, run_pipeline
    config_error = None
    try:
        cfg = load_config(args.config, overlay=args.overlay)
    except ConfigError as e:
        cfg, config_error = None, e  # the check below lists every problem, not only this one
    inputs = args.input or (cfg.input.paths if cfg else None)
    if not inputs and cfg is not None:
        inputs = default_sample_crawl()
    # the fast pre-flight check (datapipe/preflight.py): every config, input and run-dir problem at once
    from .preflight import preflight
    rep = preflight(cfg or args.config, inputs=inputs, run_dir=args.run_dir, fast=True, no_input_ok=True)
    for w in rep.warnings:
        print(f"datapipe: warning: {w}", file=sys.stderr)
    for p in rep.problems:
        _err(p.message)
    if rep.problems:
        return problems_exit_code(rep.problems)
    if cfg is None:  # a problem the check cannot see (an overlay's): the loader's own message
        return _err(str(config_error), EXIT_USAGE)
    try:
        res = run_pipeline(cfg, inputs=inputs, run_dir=args.run_dir, quiet=args.quiet, fresh=args.fresh,
                           verbose=args.verbose)
    except StorageError as e:
        return _err(str(e), EXIT_STORAGE)
    except (InputError, RunError) as e:
        return _err(str(e), EXIT_USAGE)
    except EngineError as e:
        return _err(str(e), EXIT_ENGINE)
    except WorkFailed as e:
        return _err(f"{e}\nfinished shards are kept: fix the cause and run the same command to resume",
                    EXIT_FAILED)
    where = res.url or str(res.run_dir)  # an object store's URL (res.run_dir is then its staging copy)
    print(f"\nrun directory: {where}")
    print(f"output: {len(res.output_files)} Parquet file(s) in {where}/output"
          + (f"  (resumed: {res.shards_skipped} shard(s) were already done)" if res.shards_skipped else ""))
    print()
    print(res.table())
    return _after_run(cfg, res, args)


def _after_run(cfg, res, args) -> int:
    """The steps after curation that a config asks for: mixture/token streams, then the report."""
    if cfg.mix and not args.no_mix:
        from .mix import MixError, run_mix
        spec = Path(cfg.mix)
        if not spec.exists() and cfg.source_file:  # relative to the config file's folder
            for base in (Path(cfg.source_file).parent, Path(cfg.source_file).parent.parent):
                if (base / cfg.mix).exists():
                    spec = base / cfg.mix
                    break
        try:
            plan = run_mix(res.run_dir, spec, quiet=args.quiet)
        except MixError as e:
            return _err(f"mix {cfg.mix}: {e}", EXIT_USAGE)
        print()
        print(plan.table())
        from .rundir import RunDir
        RunDir(res.run_dir).publish(Path(plan.out_dir))  # on an object store: uploaded beside the run
        print(f"token streams: {plan.out_dir} (manifest.json)")
    if cfg.report:
        from .report import build_report
        path = build_report(res.run_dir)
        print(f"report: {path}")
    return 0


def cmd_stats(args) -> int:
    from .runner import load_stats
    from .stats import format_table
    try:
        stats = load_stats(args.run_dir)
    except FileNotFoundError as e:
        return _err(str(e), EXIT_USAGE)
    last = Path(args.run_dir) / "last_run.json"
    info = json.loads(last.read_text()) if last.exists() else {}
    if args.json:
        print(json.dumps([s.to_dict() for s in stats], indent=1))
    else:
        print(format_table(stats, cores=info.get("cores"), wall_seconds=info.get("wall_seconds")))
    return 0


def cmd_inspect(args) -> int:
    root = Path(args.run_dir) / "rejects"
    if not root.is_dir():
        return _err(f"{args.run_dir}: no rejects/ folder (is this a run directory?)", EXIT_USAGE)
    stages = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "_parts")
    if args.stage not in stages:
        return _err(f"no rejects for stage {args.stage!r}; stages with rejects: {', '.join(stages) or 'none'}", EXIT_USAGE)
    files = sorted((root / args.stage).glob("*.jsonl"))
    if args.reason:
        files = [f for f in files if f.stem == args.reason or f.stem.endswith(":" + args.reason)]
        if not files:
            reasons = [f.stem for f in sorted((root / args.stage).glob("*.jsonl"))]
            return _err(f"no reason {args.reason!r} in stage {args.stage}; reasons: {', '.join(reasons)}", EXIT_USAGE)
    for f in files:
        rows = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
        print(f"== {args.stage} / {f.stem}: {len(rows)} sample(s)")
        for r in rows[: args.n]:
            scores = {k: v for k, v in r.items() if k not in ("id", "url", "reason", "excerpt", "stage")}
            print(f"-- {r.get('url') or r.get('id')}" + (f"  {scores}" if scores else ""))
            excerpt = (r.get("excerpt") or "").strip().replace("\n", " ⏎ ")
            print(textwrap.indent(textwrap.shorten(excerpt, 400, placeholder=" …") or "(empty)", "   "))
        print()
    return 0


def cmd_sample_crawl(args) -> int:
    out = Path(args.out_dir)
    (out / "_complete").unlink(missing_ok=True)
    for p in default_sample_crawl(out):
        print(p)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="datapipe", description="Pretraining-data curation pipeline on Ray.")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run a pipeline config (resumes an interrupted run)")
    r.add_argument("config")
    r.add_argument("--input", nargs="+", help="WARC/JSONL/Parquet files, folders, globs, *.paths.gz or URLs")
    r.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    r.add_argument("--fresh", action="store_true", help="delete the run directory first")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.add_argument("--verbose", action="store_true",
                   help="Ray's own log lines and progress bars too (default: datapipe's progress and problems only)")
    r.add_argument("--no-mix", action="store_true", help="skip the mixture step of the config")
    r.add_argument("--overlay", help="YAML of stage option changes over the config (datapipe tune-filters writes one)")
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("stats", help="print the funnel table of a run")
    s.add_argument("run_dir")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_stats)

    i = sub.add_parser("inspect", help="show samples of documents a stage dropped")
    i.add_argument("run_dir")
    i.add_argument("--stage", required=True)
    i.add_argument("--reason")
    i.add_argument("--n", type=int, default=5)
    i.set_defaults(fn=cmd_inspect)

    b = sub.add_parser("sample-crawl", help="build the deterministic sample crawl")
    b.add_argument("out_dir")
    b.set_defaults(fn=cmd_sample_crawl)

    import importlib
    import pkgutil
    from . import commands
    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"{commands.__name__}.{mod}").register(sub)
    return p


#: commands that read a run directory, and what of one on an object store they read (prefixes; () = all):
#: they read a throwaway local copy of it. Other commands that take a RUN_DIR write into it.
_READS_RUN_DIR = {"stats": ("stats.json", "last_run.json"), "inspect": ("rejects/",),
                  "why": ("lineage/",), "show": ()}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("DATAPIPE_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    url = getattr(args, "run_dir", None) if args.cmd not in ("run", "check", "report") else None
    from .rundir import is_url, local_copy
    if url and is_url(url):  # a run directory on an object store (datapipe/rundir.py)
        if args.cmd not in _READS_RUN_DIR:
            return _err(f"datapipe {args.cmd} needs a local run directory; {url} is on an object store: copy it "
                        "here first (e.g. `aws s3 sync URL DIR`, or fsspec's get)", EXIT_USAGE)
        try:
            with local_copy(url, only=_READS_RUN_DIR[args.cmd]) as root:
                args.run_dir = str(root)
                return args.fn(args)
        except OSError as e:
            return _err(f"{url}: cannot read the run directory ({type(e).__name__}: {e})", EXIT_STORAGE)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
