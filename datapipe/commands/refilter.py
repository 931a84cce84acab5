"""``datapipe refilter RUN_DIR --stage S --set key=value ...`` or ``--overlay FILE``

Re-applies a filter's thresholds to the scored output of a run, without re-scoring
(every filter writes its score columns before it decides). Options not given with
``--set`` keep the values the run recorded in its ``config.yaml``. Prints what the new
thresholds would keep and drop, per reason; ``--write DIR`` writes the kept rows.

The output holds only documents that passed every stage, so refilter answers
"what if this threshold were stricter" exactly. ``--overlay`` (``datapipe tune-filters``
output) applies each of its stages in the run's order, each to what the previous kept. Rows a looser threshold would bring
back were dropped before the later stages scored them: re-run the pipeline for those.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from . import error as _err


def register(sub) -> None:
    p = sub.add_parser("refilter", help="re-apply a filter with new thresholds to a run's scored output")
    p.add_argument("run_dir")
    p.add_argument("--stage", help="stage name as in the config (name#2 for a second use)")
    p.add_argument("--overlay", metavar="FILE", help="apply every stage of an overlay (datapipe tune-filters), in "
                   "the run's stage order; --set then applies to --stage on top")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="option to change (YAML value), repeatable: --set max_non_alpha_words_ratio=0.7")
    p.add_argument("--write", metavar="DIR", help="write the kept rows as Parquet into DIR")
    p.set_defaults(fn=run)


def run(args) -> int:
    if args.overlay:
        return _run_overlay(args)
    if not args.stage:
        return _err("refilter: give --stage (with --set) or --overlay")
    return _run_one(args)


def _run_overlay(args) -> int:
    """Each stage of the overlay in turn, each on the rows the previous one kept."""
    import shutil
    import tempfile

    import yaml

    from ..config import ConfigError, load_overlay, merge_stage_options, stage_labels

    try:
        overlay = load_overlay(args.overlay)
    except ConfigError as e:
        return _err(str(e))
    cfg_file = Path(args.run_dir) / "config.yaml"
    if not cfg_file.exists():
        return _err(f"{args.run_dir}: no config.yaml (is this a run directory?)")
    raw = yaml.safe_load(cfg_file.read_text()).get("stages", [])
    order = stage_labels(raw)
    recorded = {l: (next(iter(e.values())) or {}) if isinstance(e, dict) else {} for l, e in zip(order, raw)}
    # per_language merges per language: an overlay for one language keeps the run's others
    changes = {k: {o: x for o, x in merge_stage_options(recorded.get(k, {}), v).items() if o in v}
               for k, v in overlay["stages"].items()}
    missing = sorted(set(changes) - set(order))
    if missing:
        return _err(f"{args.overlay}: stage(s) {missing} are not in {cfg_file}")
    if args.stage:
        changes.setdefault(args.stage, {}).update(
            {kv.split("=", 1)[0].strip(): yaml.safe_load(kv.split("=", 1)[1]) for kv in args.set if "=" in kv})
    labels = [l for l in order if l in changes]
    if not labels:
        return _err(f"{args.overlay}: no stage to refilter")
    tmp = Path(tempfile.mkdtemp(prefix="refilter-"))
    try:
        src = Path(args.run_dir)
        for i, label in enumerate(labels):
            last = i == len(labels) - 1
            out = Path(args.write) if (last and args.write) else tmp / f"step{i}"
            step = argparse.Namespace(run_dir=str(src), stage=label, overlay=None, write=str(out) if (
                args.write or not last) else None, set=[f"{k}={json.dumps(v)}" for k, v in changes[label].items()])
            rc = _run_one(step)
            if rc:
                return rc
            if not last:  # the next stage reads what this one kept, with the run's config.yaml beside it
                nxt = tmp / f"run{i}"
                nxt.mkdir()
                shutil.move(str(tmp / f"step{i}"), str(nxt / "output"))
                shutil.copy(cfg_file, nxt / "config.yaml")
                src = nxt
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _run_one(args) -> int:
    import yaml
    import pyarrow.parquet as pq

    from ..config import _options_model
    from ..refilter import refilter
    from ..rundir import write_parquet_atomic
    from ..stage import StageError, get_stage_class, stage_options

    root = Path(args.run_dir)
    cfg_file = root / "config.yaml"
    if not cfg_file.exists():
        return _err(f"{root}: no config.yaml (is this a run directory?)")
    cfg = yaml.safe_load(cfg_file.read_text())
    # find the stage's options as the run used them, by label (name, name#2, ...)
    seen: Counter = Counter()
    scored_with = None
    name = args.stage.split("#")[0]
    for entry in cfg.get("stages", []):
        (n, opts), = entry.items()
        seen[n] += 1
        label = n if seen[n] == 1 else f"{n}#{seen[n]}"
        if label == args.stage:
            scored_with = opts or {}
    if scored_with is None:
        return _err(f"stage {args.stage!r} is not in {cfg_file}")
    changes = {}
    for kv in args.set:
        if "=" not in kv:
            return _err(f"--set {kv!r}: expected KEY=VALUE")
        k, v = kv.split("=", 1)
        changes[k.strip()] = yaml.safe_load(v)
    options = dict(scored_with, **changes)
    try:
        cls = get_stage_class(name)
        _options_model(cls).model_validate(options)
    except KeyError:
        return _err(f"unknown stage {name!r}")
    except Exception as e:  # pydantic ValidationError: name the key
        errs = getattr(e, "errors", lambda: [])()
        if errs:
            key = ".".join(map(str, errs[0]["loc"]))
            msg = "unknown option" if errs[0]["type"] == "extra_forbidden" else errs[0]["msg"]
            return _err(f"--set {key}: {msg} (stage {args.stage})")
        return _err(f"--set for {args.stage}: {e}")
    unrecorded = sorted(set(stage_options(cls)) - set(options))
    if unrecorded:  # a run directory of a datapipe that recorded only the options the config wrote
        print(f"note: {cfg_file} records no value for {', '.join(unrecorded)} of {args.stage} (written by an "
              "older datapipe): today's defaults are used for them", file=sys.stderr)
    files = sorted(p for p in (root / "output").rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        return _err(f"{root}/output holds no Parquet files")
    t0 = time.time()
    n_in = n_out = 0
    reasons: Counter = Counter()
    for f in files:
        table = pq.read_table(f)
        try:
            kept, r = refilter(table, name, options, scored_with=scored_with)
        except StageError as e:
            return _err(str(e))
        n_in += table.num_rows
        n_out += kept.num_rows
        reasons.update(x for x in r.to_pylist() if x is not None)
        if args.write:
            write_parquet_atomic(kept, Path(args.write) / f.relative_to(root / "output"))
    dt = time.time() - t0
    print(f"refilter {args.stage} with {json.dumps(changes)} over {len(files)} file(s) in {dt:.2f}s")
    print(f"  documents in output: {n_in:,}; kept now: {n_out:,} ({100.0 * n_out / max(n_in, 1):.1f}%)")
    for reason, n in reasons.most_common():
        print(f"  - {reason:<44}{n:>10,}")
    if args.write:
        print(f"  kept rows written to {args.write}")
    return 0
