"""``datapipe check CONFIG [--input ...] [--run-dir DIR] [--estimate] [--fast]``: every problem
of a run found before any work, in one list (see ``datapipe/preflight.py`` for what is checked).

Exit codes are ``run``'s: 2 for a config, input or run-directory problem, 4 when the run
directory's disk is not writable or too small, 3 when the Ray cluster cannot be reached or
lacks what a stage needs; with problems of several kinds, 2 wins (fix the config first).
``datapipe run`` runs the fast part (``fast=True``) before it starts.
"""
from __future__ import annotations

import sys

from . import problems_exit_code


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="check a run before it starts: config, models, inputs, run dir, Ray "
                                            "(every problem in one list); --estimate projects its cost")
    p.add_argument("config")
    p.add_argument("--input", nargs="+", help="as for `datapipe run` (default: input.paths, else the sample crawl)")
    p.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    p.add_argument("--estimate", action="store_true",
                   help="run the streaming stages on a sample and project CPU-hours, survivors and output size")
    p.add_argument("--sample-docs", type=int, default=200, help="records sampled by --estimate (default 200)")
    p.add_argument("--fast", action="store_true", help="only what `datapipe run` checks first (no models, no Ray)")
    p.set_defaults(fn=cmd_check)


def cmd_check(args) -> int:
    from datapipe.cli import default_sample_crawl
    from datapipe.config import ConfigError, read_config_file
    from datapipe.preflight import preflight
    inputs = args.input
    if not inputs:
        try:
            paths = (read_config_file(args.config) or {}).get("input", {}).get("paths")
        except (ConfigError, AttributeError):
            paths = None
        inputs = None if paths else default_sample_crawl()
    rep = preflight(args.config, inputs=inputs, run_dir=args.run_dir, fast=args.fast,
                    estimate=args.estimate, sample_docs=args.sample_docs)
    print(rep.text())
    if rep.estimate is not None:
        print()
        print(rep.estimate.table())
    code = problems_exit_code(rep.problems)
    if code:
        print(f"datapipe check: {len(rep.problems)} problem(s) in {rep.seconds:.1f}s; the run would not start "
              f"(exit {code})", file=sys.stderr)
    else:
        print(f"\ndatapipe check: no problems ({rep.seconds:.1f}s)")
    return code
