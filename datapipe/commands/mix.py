"""``datapipe mix [--dry-run] RUN_DIR --spec SPEC.yaml [--out DIR]``,
``datapipe mix search RUN_DIR --spec SPEC.yaml --target TARGET [--candidates N ...]`` and
``datapipe export-megatron STREAM_DIR [--prefix PREFIX]``.

``mix`` plans a mixture over a run's curated output (from ``n_tokens``), prints the plan
table and, without ``--dry-run``, writes shuffled Parquet token streams and a manifest to
``RUN_DIR/mix/<spec name>/`` (see ``datapipe/mix/``). The curated output is only read,
so a changed spec re-mixes in seconds. ``export-megatron`` turns a token stream into
Megatron-LM's ``.bin/.idx``.

``mix search`` (:mod:`datapipe.mix.search`) trains small proxy LMs on candidate mixtures of the
spec's groups and writes the mixture predicted best for the target set as a new spec. It shares
the ``mix`` parser (``search`` as the first word; a run directory named ``search`` is given as
``./search``), so the two read the same way on the command line.
"""
from __future__ import annotations

import argparse
import json

from . import error as _err


def cmd_mix(args) -> int:
    if args.run_dir == "search":
        return cmd_mix_search(args)
    if args.search_run_dir:
        return _err(f"unexpected argument {args.search_run_dir!r} (did you mean `datapipe mix search RUN_DIR`?)")
    from datapipe.mix import MixError, run_mix
    try:
        plan = run_mix(args.run_dir, args.spec, dry_run=args.dry_run, out_dir=args.out, quiet=args.quiet)
    except MixError as e:
        return _err(str(e))
    if args.json:
        print(json.dumps(plan.to_dict(), indent=1))
    else:
        print(plan.table())
        if args.dry_run:
            print(f"\ndry run: nothing written (would write {plan.out_dir})")
        else:
            print(f"\ntoken streams: {plan.out_dir}  (manifest.json lists the shards)")
    return 0


def cmd_mix_search(args) -> int:
    from datapipe.mix import MixError
    from datapipe.mix.proxy import ProxyConfig
    from datapipe.mix.search import SearchOptions, search_mixture
    from datapipe.ray_backend import EngineError
    if not args.search_run_dir:
        return _err("usage: datapipe mix search RUN_DIR --spec SPEC.yaml --target TARGET")
    if not args.target:
        return _err("mix search: --target is required (a folder of JSONL/Parquet files with a `text` field)")
    try:
        proxy = ProxyConfig.preset(args.proxy, tokens=args.proxy_tokens)
    except ValueError as e:
        return _err(str(e))
    opts = SearchOptions(candidates=args.candidates, seed=args.seed, proxy=proxy, device=args.device,
                         keep_streams=args.keep_streams)
    try:
        res = search_mixture(args.search_run_dir, args.spec, args.target, options=opts, engine=args.engine,
                             out_spec=args.out, fresh=args.fresh, quiet=args.quiet)
    except MixError as e:
        return _err(str(e))
    except EngineError as e:
        from . import EXIT_ENGINE
        return _err(str(e), EXIT_ENGINE)
    print(json.dumps(res.data, indent=1) if args.json else res.table())
    return 0


def cmd_export_megatron(args) -> int:
    from datapipe.tokenstream import export_megatron
    try:
        b, i = export_megatron(args.stream_dir, args.prefix)
    except (FileNotFoundError, ValueError) as e:
        return _err(str(e))
    print(b)
    print(i)
    return 0


def register(sub) -> None:
    m = sub.add_parser("mix", help="plan a data mixture and write shuffled Parquet token streams")
    m.add_argument("run_dir", help="a finished run directory (reads RUN_DIR/output, never changes it), "
                   "or `search` followed by RUN_DIR for the mixture search")
    m.add_argument("search_run_dir", nargs="?", help=argparse.SUPPRESS)
    m.add_argument("--spec", required=True, help="mixture spec YAML (e.g. configs/mix/default.yaml)")
    m.add_argument("--dry-run", action="store_true", help="print the plan only; write nothing")
    m.add_argument("--out", help="output folder (default: RUN_DIR/mix/<spec name>); with `search`: the spec "
                   "to write (default: RUN_DIR/mix_search/<spec name>/<spec name>-searched.yaml)")
    m.add_argument("--json", action="store_true", help="print the plan as JSON")
    m.add_argument("--quiet", action="store_true")
    s = m.add_argument_group("mix search RUN_DIR --spec SPEC --target TARGET (proxy-model mixture search)")
    s.add_argument("--target", help="target set: a folder (or file) of JSONL/Parquet with a `text` field")
    s.add_argument("--candidates", type=int, default=16, help="candidate mixtures (default 16)")
    s.add_argument("--seed", type=int, default=0, help="candidates, held-out sample and proxy training seed")
    s.add_argument("--proxy", default="cpu", help="proxy preset: cpu (default) | gpu (datapipe/mix/proxy.py)")
    s.add_argument("--proxy-tokens", type=int, help="training tokens per candidate (default: the preset's)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--engine", default="ray", choices=["ray", "local"],
                   help="ray: candidates in parallel, one per worker (default); local: one after another here")
    s.add_argument("--keep-streams", action="store_true", help="keep each candidate's token stream")
    s.add_argument("--fresh", action="store_true", help="discard an earlier search of this spec and start over")
    m.set_defaults(fn=cmd_mix)

    e = sub.add_parser("export-megatron", help="write Megatron-LM .bin/.idx from a token stream")
    e.add_argument("stream_dir", help="a token-stream folder (RUN_DIR/mix/<name>)")
    e.add_argument("--prefix", help="output prefix (default: STREAM_DIR/megatron/<name>_text_document)")
    e.set_defaults(fn=cmd_export_megatron)
