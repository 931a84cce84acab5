"""``datapipe report RUN_DIR [--out FILE]``: write the run's HTML report (``RUN_DIR/report/index.html``).

The page is self-contained (charts and their JavaScript inlined) and is built from the run
directory alone, so it works on a copied run and on one still going. See ``datapipe/report/``.
"""
from __future__ import annotations

from . import error as _err


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write a self-contained HTML report of a run (funnel, drops, histograms)")
    p.add_argument("run_dir")
    p.add_argument("--out", help="where to write the page (default: RUN_DIR/report/index.html)")
    p.set_defaults(fn=cmd_report)


def cmd_report(args) -> int:
    from datapipe.report import ReportError, build_report
    try:
        path = build_report(args.run_dir, out=args.out)
    except ReportError as e:
        return _err(str(e))
    print(f"report: {path}")
    return 0
