"""Sub-commands beyond run/stats/inspect. Each module defines ``register(subparsers)``
that adds its parser and sets ``fn`` (a function ``args -> exit code``). The CLI loads
every module here; keep imports inside the command functions so ``datapipe --help`` is fast.
"""
