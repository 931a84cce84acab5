"""``datapipe tune-filters LABELS... --config CONFIG [--keep-good 0.95] [--out overlay.yaml]``

Threshold curves of every heuristic rule of CONFIG on the user's labelled documents (JSONL
``text`` + ``label``), and a proposed overlay for an objective: the cascade keeps at least
``--keep-good`` of the good documents and drops as many bad ones as the search finds.
``--holdout`` of the labels (stratified, seeded) is set aside before anything is tuned and
reported separately: the figure to believe. The overlay is YAML (``stages: {label: {option:
value}}``) that ``datapipe run CONFIG --overlay FILE`` and ``datapipe refilter RUN --overlay
FILE`` apply. Logic: :mod:`datapipe.tune`.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import error as _err


def register(sub) -> None:
    p = sub.add_parser("tune-filters", help="threshold curves on labelled documents and a proposed overlay")
    p.add_argument("labels", nargs="+", help="JSONL files with text and label (1/0, good/bad)")
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--keep-good", type=float, default=0.95, help="objective: least share of good documents kept")
    p.add_argument("--holdout", type=float, default=0.3, help="share of the labels held out of tuning (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", action="append", metavar="STAGE.OPTION",
                   help="tune only these thresholds (repeatable); default: every threshold of the text filters")
    p.add_argument("--loosen-only", action="store_true", help="never tighten a threshold beyond the config's")
    p.add_argument("--min-move-precision", type=float, default=0.8,
                   help="a tightening step must drop at least this share of bad documents among those it adds "
                        "(on the DCLM labels, 5-fold cross-validation found no tightening setting that keeps 90%% of good documents out of sample: bench/README.md)")
    p.add_argument("--out", default="tune-filters-overlay.yaml", help="overlay file to write")
    p.add_argument("--curves", metavar="FILE", help="write every curve (tuning and held-out) as JSON")
    p.add_argument("--language", metavar="LANG", help="tune LANG's per_language thresholds (rows langid or the "
                   "labels' lang call LANG); other languages keep theirs")
    p.add_argument("--text-field", default="text")
    p.add_argument("--label-field", default="label")
    p.set_defaults(fn=run)


def _fmt(v) -> str:
    return "off" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def run(args) -> int:
    import numpy as np
    import yaml

    from .. import tune
    from ..config import ConfigError, load_config
    from ..rundir import atomic_write_text

    if not 0 < args.keep_good <= 1:
        return _err(f"--keep-good must be in (0, 1], got {args.keep_good}")
    if not 0 <= args.holdout < 1:
        return _err(f"--holdout must be in [0, 1), got {args.holdout}")
    try:
        cfg = load_config(args.config)
        labels = tune.load_labels(args.labels, text_field=args.text_field, label_field=args.label_field)
    except (ConfigError, tune.LabelError) as e:
        return _err(str(e))
    stages = tune.text_filters(cfg)
    if not stages:
        return _err(f"{args.config}: no text filters to tune")
    good = np.asarray(labels["good"].to_pylist(), dtype=bool)
    scored = tune.score_labels(labels, stages, language=args.language)
    if args.language:
        n_lang = int(scored.tunables[0].tuned.sum()) if scored.tunables else 0
        print(f"tuning the per_language.{args.language} thresholds: {n_lang} of {labels.num_rows} documents are "
              f"{args.language}; the others keep their thresholds")
    if args.holdout:
        tr, te = tune.split(good, args.holdout, args.seed, groups=tune.text_groups(labels))
        train, held = scored.subset(tr), scored.subset(te)
    else:
        train, held = scored, None
    print(f"{labels.num_rows} labelled documents ({int(good.sum())} good, {int((~good).sum())} bad); "
          f"tuning on {len(train.good)}" + (f", held out {len(held.good)} (seed {args.seed})" if held else "")
          + f"; cascade: {' -> '.join(s.label for s in stages)}")
    keys = {t.key for t in train.tunables}
    bad_keys = sorted(set(args.only or []) - keys)
    if bad_keys:
        return _err(f"--only {', '.join(bad_keys)}: not a threshold of the config's text filters; "
                    f"known: {', '.join(sorted(keys))}")
    tunable = set(args.only) if args.only else keys

    # curves: a handful of points per rule here, every point in --curves
    all_curves = {}
    print("\nper-rule curves (tuning split; the rule alone | the cascade with the other thresholds as configured):")
    for t in train.tunables:
        c = tune.curve(train, t)
        entry = {"op": t.op, "config_value": t.value, "tuning": c}
        if held is not None:
            ht = next(x for x in held.tunables if x.key == t.key)
            entry["held_out"] = tune.curve(held, ht)
        all_curves[t.key] = entry
        alone_now = tune.result(t.fails(t.value), train.good)
        if t.op in ("true", "set") or (alone_now.good_dropped + alone_now.bad_dropped == 0 and t.value is not None
                                       and not any(p["alone_bad_dropped"] > 0.05 for p in c)):
            continue
        print(f"  {t.key} ({t.rule}, drop when {t.column} {t.op} value; config {_fmt(t.value)}):")
        pts = [p for p in c if p["value"] is None or p["value"] == t.value] + \
              [c[i] for i in np.linspace(1, len(c) - 1, min(6, len(c) - 1)).round().astype(int)]
        seen = set()
        for p in pts:
            if repr(p["value"]) in seen:
                continue
            seen.add(repr(p["value"]))
            print(f"    {_fmt(p['value']):>9}: alone keeps {100 * p['alone_good_kept']:5.1f}% good, drops "
                  f"{100 * p['alone_bad_dropped']:5.1f}% bad | cascade {100 * p['cascade_good_kept']:5.1f}% / "
                  f"{100 * p['cascade_bad_dropped']:5.1f}%")
    if args.curves:
        atomic_write_text(Path(args.curves), json.dumps(all_curves, indent=1, default=str))
        print(f"all curves: {args.curves}")

    values = tune.propose(train, keep_good=args.keep_good, tune=tunable, loosen_only=args.loosen_only,
                          min_move_precision=args.min_move_precision)
    overlay = tune.overlay_dict(train, values)
    print(f"\nobjective: the cascade keeps >= {100 * args.keep_good:g}% of good documents, drops the most bad")
    for name, s in (("tuning split", train), ("held-out split", held)):
        if s is None:
            continue
        print(f"  {name:<15} config:   {tune.result(tune.evaluate(s)[0], s.good).line()}")
        r = tune.result(tune.evaluate(s, values)[0], s.good)
        met = "meets" if r.good_kept >= args.keep_good - 1e-9 else "MISSES"
        print(f"  {name:<15} proposed: {r.line()}  ({met} the objective)")
    print("proposed changes:" if overlay["stages"] else "proposed changes: none")
    base = train.values()
    for key, v in values.items():
        if v != base[key]:
            where = f" (per_language.{args.language})" if args.language else ""
            print(f"  {key}{where}: {_fmt(base[key])} -> {_fmt(v)}")
    r_tr = tune.result(tune.evaluate(train, values)[0], train.good)
    head = (f"# datapipe tune-filters {' '.join(args.labels)} --config {args.config} --keep-good {args.keep_good}"
            f" --holdout {args.holdout} --seed {args.seed} --min-move-precision {args.min_move_precision}"
            + (" --loosen-only" if args.loosen_only else "") + (f" --language {args.language}" if args.language else "")
            + "\n"
            f"# tuning split: {r_tr.line()}\n")
    if held is not None:
        head += f"# held-out split: {tune.result(tune.evaluate(held, values)[0], held.good).line()}\n"
    atomic_write_text(Path(args.out), head + yaml.safe_dump(overlay, sort_keys=False))
    print(f"overlay written: {args.out}  (datapipe run {args.config} --overlay {args.out})")
    return 0

