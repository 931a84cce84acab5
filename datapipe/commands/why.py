"""``datapipe why RUN_DIR ID_OR_URL...``: where did each document go?

Prints, for each document id or URL, the stage and reason that dropped it with the scores that
stage wrote, or the output file that holds it, from the run's lineage (``datapipe/lineage.py``).
``--json`` prints one JSON object per line. Exit status 1 when a key matches no document.
"""
from __future__ import annotations

from . import error as _err


def register(subparsers) -> None:
    p = subparsers.add_parser("why", help="print the fate of documents (dropped by which stage and rule, or kept where)")
    p.add_argument("run_dir")
    p.add_argument("keys", nargs="+", metavar="ID_OR_URL")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(fn=cmd_why)


def cmd_why(args) -> int:
    import json
    from datapipe.lineage import format_fate, why
    try:
        fates = why(args.run_dir, args.keys)
    except FileNotFoundError as e:
        return _err(str(e))
    for f in fates:
        print(json.dumps(f, ensure_ascii=False, default=str) if args.json else format_fate(f))
    return 1 if any(f["fate"] == "unknown" for f in fates) else 0
