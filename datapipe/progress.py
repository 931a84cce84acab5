"""What a run shows a person while it works: one progress line per step.

In a terminal the line is redrawn in place (``\\r``) about once a second; without one
(a log file, CI, ``nohup``, a scheduler) one line is printed every ``interval`` seconds
(15 by default, ``DATAPIPE_PROGRESS_INTERVAL``) and once when the step ends, so a log holds
the same figures a terminal shows and nothing else. The figures: units done of the total
(shards, or work items of a workflow pass), documents read and kept, documents per
second and the time left, estimated from the share of the input's bytes done.

The engine feeds it (:mod:`datapipe.ray_backend` polls the per-batch stats files the
workers write); nothing here knows about Ray.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, TextIO


def _fmt_secs(s: float) -> str:
    s = int(max(0, s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _fmt_n(n: float) -> str:
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}M"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 100_000:
        return f"{n / 1e3:.0f}k"
    return f"{n:,.0f}"


class Progress:
    """One step's progress line. ``done``/``total`` count ``unit`` (shards, items); ``frac``
    (0-1), when the caller knows better than ``done / total``, drives the time left."""

    def __init__(self, label: str, total: int, *, unit: str = "shards", stream: TextIO | None = None,
                 interval: float | None = None, enabled: bool = True):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        env = os.environ.get("DATAPIPE_PROGRESS_INTERVAL")
        self.interval = interval if interval is not None else (1.0 if self.tty else float(env or 15))
        self.enabled = enabled
        self.t0 = time.monotonic()
        self.done = 0
        self.docs_in = 0
        self.docs_out = 0
        self.frac: float | None = None
        # bytes of input: the step's whole, and what finished waves covered (set by the engine)
        self.weight_total = 0
        self.weight_done = 0
        self._last = 0.0 if self.tty else self.t0  # a log gets its first line after one interval
        self._width = 0
        self._lock = threading.Lock()

    def update(self, *, done: int | None = None, docs_in: int | None = None, docs_out: int | None = None,
               frac: float | None = None, force: bool = False) -> None:
        with self._lock:
            if done is not None:
                self.done = done
            if docs_in is not None:
                self.docs_in = docs_in
            if docs_out is not None:
                self.docs_out = docs_out
            if frac is not None:
                self.frac = min(1.0, max(0.0, frac))
            now = time.monotonic()
            if self.enabled and (force or now - self._last >= self.interval):
                self._last = now
                self._emit(self.line())

    def line(self) -> str:
        el = time.monotonic() - self.t0
        parts = [f"[{self.label}]", f"{self.done}/{self.total} {self.unit}"]
        if self.docs_in:
            parts.append(f"{_fmt_n(self.docs_in)} docs in, {_fmt_n(self.docs_out)} kept")
            parts.append(f"{self.docs_in / el:,.0f} docs/s" if el > 0 else "")
        frac = self.frac if self.frac is not None else (self.done / self.total if self.total else None)
        if self.done >= self.total and self.total:
            parts.append(f"done in {_fmt_secs(el)}")
        elif frac and frac > 0.01:
            parts.append(f"{_fmt_secs(el)} elapsed, ~{_fmt_secs(el * (1 - frac) / frac)} left")
        else:
            parts.append(f"{_fmt_secs(el)} elapsed")
        return "  ".join(p for p in parts if p)

    def _emit(self, text: str) -> None:
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, *, only_if_long: bool = False) -> None:
        """The final line, ending the in-place line in a terminal. ``only_if_long``: not for
        work that ended before its first line was due (a log gets no line per tiny pass)."""
        if not self.enabled:
            return
        if only_if_long and not self.tty and time.monotonic() - self.t0 < self.interval:
            self.enabled = False
            return
        with self._lock:
            self._emit(self.line())
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
            self.enabled = False


class Poller:
    """Calls ``poll()`` every ``period`` seconds on a daemon thread until stopped (the
    driver's view of work that reports only through files)."""

    def __init__(self, poll: Callable[[], None], period: float = 1.0):
        self._poll, self._period = poll, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="datapipe-progress", daemon=True)

    def __enter__(self) -> "Poller":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self._poll()
            except Exception:  # progress must never break a run
                pass

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self._poll()
        except Exception:
            pass
