"""``datapipe mix [--dry-run] RUN_DIR --spec SPEC.yaml [--out DIR]`` and
``datapipe export-megatron STREAM_DIR [--prefix PREFIX]``.

``mix`` plans a mixture over a run's curated output (from ``n_tokens``), prints the plan
table and, without ``--dry-run``, writes shuffled Parquet token streams and a manifest to
``RUN_DIR/mix/<spec name>/`` (see ``datapipe/mix/``). The curated output is only read,
so a changed spec re-mixes in seconds. ``export-megatron`` turns a token stream into
Megatron-LM's ``.bin/.idx``.
"""
from __future__ import annotations

import json

from . import error as _err


def cmd_mix(args) -> int:
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
    m.add_argument("run_dir", help="a finished run directory (reads RUN_DIR/output, never changes it)")
    m.add_argument("--spec", required=True, help="mixture spec YAML (e.g. configs/mix/default.yaml)")
    m.add_argument("--dry-run", action="store_true", help="print the plan only; write nothing")
    m.add_argument("--out", help="output folder (default: RUN_DIR/mix/<spec name>)")
    m.add_argument("--json", action="store_true", help="print the plan as JSON")
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(fn=cmd_mix)

    e = sub.add_parser("export-megatron", help="write Megatron-LM .bin/.idx from a token stream")
    e.add_argument("stream_dir", help="a token-stream folder (RUN_DIR/mix/<name>)")
    e.add_argument("--prefix", help="output prefix (default: STREAM_DIR/megatron/<name>_text_document)")
    e.set_defaults(fn=cmd_export_megatron)
