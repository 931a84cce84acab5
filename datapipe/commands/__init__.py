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


def error(msg: str, code: int = EXIT_USAGE, *, prog: str = "datapipe") -> int:
    """Print ``<prog>: error: <msg>`` on stderr and return ``code``, the command's exit status."""
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return code
