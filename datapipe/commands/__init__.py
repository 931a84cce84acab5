"""Sub-commands beyond run/stats/inspect. Each module defines ``register(subparsers)``
that adds its parser and sets ``fn`` (a function ``args -> exit code``). The CLI loads
every module here; keep imports inside the command functions so ``datapipe --help`` is fast.

:func:`error` and the exit codes are the one way every command (and ``datapipe/cli.py``)
reports a user error: one line on stderr, no traceback.
"""
from __future__ import annotations

import sys

EXIT_FAILED = 1   # a stage or workflow raised on some input (the message names it; re-run resumes)
EXIT_USAGE = 2    # bad config, input, arguments or run directory
EXIT_ENGINE = 3   # the Ray cluster cannot be reached
EXIT_STORAGE = 4  # the run directory's disk is full or not writable


#: the exit code of each kind of pre-flight problem (datapipe/preflight.py)
EXIT_BY_KIND = {"usage": EXIT_USAGE, "storage": EXIT_STORAGE, "engine": EXIT_ENGINE}


def problems_exit_code(problems) -> int:
    """``run``'s exit code for pre-flight problems (0: none); a usage problem wins (fix it first)."""
    codes = [EXIT_BY_KIND.get(p.kind, EXIT_USAGE) for p in problems]
    return 0 if not codes else EXIT_USAGE if EXIT_USAGE in codes else min(codes)


def error(msg: str, code: int = EXIT_USAGE, *, prog: str = "datapipe") -> int:
    """Print ``<prog>: error: <msg>`` on stderr and return ``code``, the command's exit status."""
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return code
