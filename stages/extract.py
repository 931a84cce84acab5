"""Main-text extraction: ``html`` -> ``text`` with trafilatura (stage ``extract``).

Columns: reads ``html`` (decoded page, large_string) and, for rows without html,
``text``; writes ``text`` (large_string) and ``extract_status``; removes ``html``.

``extract_status`` says where each row's text came from: ``extracted`` (trafilatura
found main text), ``passthrough`` (the row already had text and no html: WET
records, JSONL/Parquet sources; left unchanged), or the failure that drops it.
Drops, each with its reason:

- ``extract:too_large``  html over ``max_html_bytes`` UTF-8 bytes, dropped before parsing
- ``extract:empty``      nothing extracted, or fewer than ``min_text_chars`` characters
- ``extract:timeout``    extraction of this one page ran past ``timeout_s``
- ``extract:error``      trafilatura raised

The status is a column (not state kept between ``score`` and ``decide``) so that
``decide`` works on scored output read back from disk, like every filter.
``counters()`` reports the outcomes of the batches since the last call
(``extracted``, ``passthrough``, ``empty``, ``timeout``, ``error``, ``too_large``)
plus ``over_budget``: pages that ran past ``timeout_s`` where the budget could not
be enforced (see below) and were kept.

Per-document time budget (``timeout_s``; 0 disables). One pathological page must
not stall a worker (datatrove issue #75, trafilatura issue #704). The stage picks,
per batch (``timeout_mode="auto"``):

- ``signal``: in a process's main thread, ``signal.setitimer(ITIMER_REAL)`` +
  SIGALRM, whose handler raises :class:`ExtractTimeout`. Plain Ray tasks and
  default (``max_concurrency=1``) Ray actors call methods in the main thread, and
  so does Ray Data's actor pool with ``enable_true_multi_threading=True,
  max_concurrent_calls_per_actor=1``.
- ``thread``: elsewhere, a watchdog timer raises the same exception in the
  extracting thread (``PyThreadState_SetAsyncExc``). This is the path inside a
  *default* Ray Data actor pool: Ray (2.60.0) runs class UDFs of
  ``map_batches(..., compute=ActorPoolStrategy(...))`` in a one-thread
  ThreadPoolExecutor, not in the main thread (``make_callable_class_single_threaded``
  in ``ray/data/_internal/execution/util.py``). Both paths were checked inside Ray
  2.60.0 with a page that never finishes: each ended as ``extract:timeout``.
  It is also used in the main thread when SIGALRM is already owned by someone
  else (an armed timer or a handler, e.g. pytest-timeout): the stage never
  replaces another owner's handler.
- ``measure``: when neither is possible (no CPython C API) or when forced with
  ``timeout_mode="measure"``: pages are measured, kept, and those over budget
  counted as ``over_budget``.

:class:`ExtractTimeout` derives from ``BaseException`` so trafilatura's own
``except Exception`` blocks cannot swallow it. Limits: both mechanisms act between
Python bytecodes, so one long C call (lxml parsing a huge document) is not cut
short, and the watchdog does not wake a blocking sleep (a signal does);
``max_html_bytes`` bounds the C part. ``re`` checks for signals while matching.

Cost (``bench/throughput.py`` / ``bench/extraction_quality.py`` on the 1,600
``realpages``, one core of the 2-core dev machine): about 20 ms of CPU per page with
trafilatura's whole cascade (``fallback_below: null``), i.e. ~50 pages per CPU-second,
the same as a hand-written trafilatura loop
(the stage adds batching and Arrow conversion, not per-page cost); per-page latency
p50 21 ms, p99 ~0.4 s, max 1.5 s, hence ``timeout_s=5``. ``fast=True`` saves ~25%
of the CPU for 1.6 points of F1 on magic-html; ``fallback_below`` (default 1000) keeps
the fallbacks for the pages where they matter, short extractions, and saves ~14% (~17.5 ms a
page) with F1 unchanged. The watchdog costs ~0.14 ms per page, the alarm ~1 us. The per-row Python loop below is the measured exception to
"vectorise": trafilatura works one document at a time and costs four orders of
magnitude more than the loop.
"""
from __future__ import annotations

import ctypes
import signal
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Literal

import pyarrow as pa
import pyarrow.compute as pc

from datapipe.schema import set_column
from datapipe.stage import Filter, StageError, register

STATUS_COL = "extract_status"
#: statuses that drop the row; the drop reason is ``extract:<status>``
FAILURES = ("empty", "timeout", "error", "too_large")
_COUNTERS = ("extracted", "passthrough", "empty", "timeout", "error", "too_large", "over_budget")
TimeoutMode = Literal["auto", "signal", "thread", "measure"]


#: the ``fallback_below`` of the extraction running in this thread (None: trafilatura's own cascade)
_FALLBACK_BELOW: ContextVar[int | None] = ContextVar("datapipe_extract_fallback_below", default=None)


def _install_fallback_gate() -> None:
    """Gate trafilatura's comparison with its fallback extractors on the length of its own text.

    trafilatura (``core._extract_and_compare``) runs readability on every page unless
    ``fast``, and jusText when the result looks unclean or short, then keeps whichever its
    heuristics prefer: ~19% of its CPU on the 1,600 realpages. When its own extractor already
    found a long text the comparison rarely changes it (``bench/README.md`` "Extraction":
    how often, and the F1 either way). The gate wraps ``trafilatura.core.compare_extraction``,
    the one name ``_extract_and_compare`` calls, and returns the main extractor's result
    unchanged when an ``extract`` stage with ``fallback_below`` is running in this thread
    (a context variable) and that result has at least ``fallback_below`` characters; every
    other call, in this process or outside the stage, goes to trafilatura unchanged.
    Installed once per process; raises :class:`StageError` if this trafilatura has no such
    hook (the option would otherwise do nothing).
    """
    import trafilatura.core as core

    current = getattr(core, "compare_extraction", None)
    if current is None or not callable(current):
        raise StageError("extract: fallback_below needs trafilatura.core.compare_extraction, "
                         "which this trafilatura version does not have; remove the option")
    if getattr(current, "_datapipe_gate", False):
        return

    def compare_extraction(cleaned_tree, raw_tree, body, text, options):  # trafilatura's signature
        below = _FALLBACK_BELOW.get()
        if below is not None and len(text) >= below:
            return body, text
        return current(cleaned_tree, raw_tree, body, text, options)

    compare_extraction._datapipe_gate = True  # type: ignore[attr-defined]
    compare_extraction.__wrapped__ = current  # type: ignore[attr-defined]
    core.compare_extraction = compare_extraction


class ExtractTimeout(BaseException):
    """Raised by the SIGALRM handler. A BaseException, so ``except Exception`` inside
    trafilatura (it has many) cannot swallow it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise ExtractTimeout()


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    """Schedule ``exc`` in another thread (None clears a pending one); CPython API."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else ctypes.c_void_p(0)
    )


class _Watchdog:
    """Raise ExtractTimeout in the calling thread if the ``with`` body runs too long.

    Used off the main thread, where SIGALRM cannot be had. The exception is
    delivered between bytecodes, like a signal handler's. On exit a pending,
    not-yet-raised exception is cleared and the body counted as timed out, so no
    exception ever leaks past the block.
    """

    __slots__ = ("_tid", "_lock", "_state", "_timer")

    def __init__(self, seconds: float) -> None:
        self._tid = threading.get_ident()
        self._lock = threading.Lock()
        self._state = "running"
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        with self._lock:
            if self._state == "running":
                self._state = "fired"
                _async_raise(self._tid, ExtractTimeout)

    def __enter__(self) -> "_Watchdog":
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> bool:
        self._timer.cancel()
        with self._lock:
            fired = self._state == "fired"
            self._state = "done"
        if fired:
            _async_raise(self._tid, None)  # drop it if it was not delivered yet
            if exc[0] is None:
                raise ExtractTimeout()
        return False


@register
class Extract(Filter):
    """Extract the main text of HTML pages with trafilatura; drop pages that yield none.

    Options (keyword-only): ``favor`` (trafilatura's focus: ``precision`` keeps less
    boilerplate, ``recall`` keeps more text, ``balanced`` sits between),
    ``fast`` (skip trafilatura's fallback extractors, readability and jusText),
    ``fallback_below`` (run the comparison with readability/jusText only when
    trafilatura's own extractor found fewer than this many characters, default 1000;
    ``None`` runs it on every page as trafilatura does; see :func:`_install_fallback_gate`),
    ``include_tables``, ``include_comments``, ``deduplicate`` (drop repeated
    segments *within* a page: each page gets its own cache, so output never depends
    on which pages a worker saw before; cross-page dedup is the dedup stages' job),
    ``max_html_bytes``, ``timeout_s`` (per page; 0 disables), ``timeout_mode``,
    ``min_text_chars``.
    Defaults were chosen with ``bench/extraction_quality.py`` (figures in ``bench/README.md``):
    ``balanced`` has the best F1 on both human-gold sets and the highest yield;
    ``fallback_below=1000`` saves ~14% of the CPU with F1 unchanged or better on every
    set (0.783 -> 0.786 on magic-html, snippet F1 0.926 -> 0.927, stia the same), where
    ``fast`` saves ~29% and loses 1.6 points.
    """

    name = "extract"
    inputs = ("html",)
    outputs = ("text", STATUS_COL)
    removes = ("html",)

    def __init__(
        self,
        *,
        favor: Literal["precision", "recall", "balanced"] = "balanced",
        fast: bool = False,
        fallback_below: int | None = 1000,
        include_tables: bool = True,
        include_comments: bool = False,
        deduplicate: bool = False,
        max_html_bytes: int = 5_000_000,
        timeout_s: float = 5.0,
        min_text_chars: int = 1,
        timeout_mode: TimeoutMode = "auto",
    ) -> None:
        if favor not in ("precision", "recall", "balanced"):
            raise StageError(f"extract: favor must be precision, recall or balanced, got {favor!r}")
        if max_html_bytes <= 0:
            raise StageError(f"extract: max_html_bytes must be > 0, got {max_html_bytes}")
        if timeout_s < 0:
            raise StageError(f"extract: timeout_s must be >= 0 (0 disables), got {timeout_s}")
        if timeout_mode not in ("auto", "signal", "thread", "measure"):
            raise StageError(f"extract: timeout_mode must be auto, signal, thread or measure, got {timeout_mode!r}")
        if fallback_below is not None and (isinstance(fallback_below, bool) or not isinstance(fallback_below, int)
                                           or fallback_below < 0):
            raise StageError(f"extract: fallback_below must be a number of characters >= 0 or null, got {fallback_below!r}")
        if min_text_chars < 1:
            raise StageError(f"extract: min_text_chars must be >= 1, got {min_text_chars}")
        self.favor = favor
        self.fast = bool(fast)
        self.fallback_below = None if fallback_below is None else int(fallback_below)
        self.include_tables = bool(include_tables)
        self.include_comments = bool(include_comments)
        self.deduplicate = bool(deduplicate)
        self.max_html_bytes = int(max_html_bytes)
        self.timeout_s = float(timeout_s)
        self.min_text_chars = int(min_text_chars)
        self.timeout_mode = timeout_mode
        self._options = None  # trafilatura Extractor, built in setup()
        self._lru_cls = None
        self._extract_fn = None
        self._counts = dict.fromkeys(_COUNTERS, 0)

    # -- lifecycle -----------------------------------------------------------
    def setup(self) -> None:
        # heavy import (lxml, justext, htmldate ...): here, never at module import
        import trafilatura
        from trafilatura.deduplication import LRUCache
        from trafilatura.settings import Extractor

        # One Extractor reused for every page: trafilatura copies it before changing
        # it (recall escalation), and building one per call costs a date lookup.
        # Equivalent to extract(..., output_format="txt", with_metadata=False, fast=...).
        self._options = Extractor(
            output_format="txt",
            with_metadata=False,
            fast=self.fast,
            precision=self.favor == "precision",
            recall=self.favor == "recall",
            comments=self.include_comments,
            tables=self.include_tables,
            dedup=False,
        )
        self._lru_cls = LRUCache
        self._extract_fn = trafilatura.extract
        if self.fallback_below is not None and not self.fast:
            _install_fallback_gate()

    def _extract_one(self, html: str) -> str | None:
        """Extract one page (the unit the time budget applies to)."""
        if self.deduplicate:
            # a fresh cache per page: reproducible whatever the page order
            self._options.dedup = self._lru_cls(maxsize=4096)
        if self.fallback_below is None or self.fast:
            return self._extract_fn(html, options=self._options)
        token = _FALLBACK_BELOW.set(self.fallback_below)
        try:
            return self._extract_fn(html, options=self._options)
        finally:
            _FALLBACK_BELOW.reset(token)

    # -- the time budget -----------------------------------------------------
    def _pick_mode(self) -> str:
        """How this call can enforce the budget: signal, thread or measure."""
        if self.timeout_s <= 0:
            return "off"
        main = threading.current_thread() is threading.main_thread()
        if self.timeout_mode in ("auto", "signal") and main and hasattr(signal, "setitimer"):
            owned = signal.getitimer(signal.ITIMER_REAL)[0] > 0 or signal.getsignal(signal.SIGALRM) not in (
                signal.SIG_DFL, signal.SIG_IGN, None)
            if not owned:  # someone else's alarm (pytest-timeout, a watchdog): leave it alone
                return "signal"
        if self.timeout_mode in ("auto", "thread") and hasattr(ctypes, "pythonapi"):
            return "thread"
        return "measure"

    @contextmanager
    def _budget(self) -> Iterator[str]:
        """Set up the budget for one batch (own SIGALRM if that is the mode)."""
        mode = self._pick_mode()
        if mode != "signal":
            yield mode
            return
        prev = signal.signal(signal.SIGALRM, _on_alarm)
        try:
            yield mode
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, prev if prev is not None else signal.SIG_DFL)

    def _run_budgeted(self, html: str, mode: str) -> tuple[str | None, str]:
        """(text, status) for one page under the time budget."""
        t0 = time.perf_counter()
        try:
            if mode == "signal":
                signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
                try:
                    text = self._extract_one(html)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            elif mode == "thread":
                with _Watchdog(self.timeout_s):
                    text = self._extract_one(html)
            else:
                text = self._extract_one(html)
        except ExtractTimeout:
            return None, "timeout"
        except Exception:  # noqa: BLE001 - any parser failure is one dropped page
            return None, "error"
        if mode == "measure" and time.perf_counter() - t0 > self.timeout_s:
            self._counts["over_budget"] += 1
        if text is None or len(text.strip()) < self.min_text_chars:
            return None, "empty"
        return text, "extracted"

    # -- Filter protocol -----------------------------------------------------
    def check_inputs(self, schema: pa.Schema) -> None:
        # text-only sources (WET, JSONL) have no html column and pass through
        if "html" not in schema.names and "text" not in schema.names:
            raise StageError(f"stage 'extract' needs an html or text column, batch has {schema.names}")

    def score(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        names = batch.schema.names
        if "html" in names:
            html_col = batch.column("html")
            htmls = html_col.to_pylist()
            # UTF-8 bytes, vectorised; null html -> null size
            sizes = pc.binary_length(html_col.cast(pa.large_binary())).to_pylist()
        else:
            htmls, sizes = [None] * n, [None] * n
        texts_in = batch.column("text").to_pylist() if "text" in names else [None] * n

        texts: list[str | None] = [None] * n
        status: list[str] = [""] * n
        counts = self._counts
        with self._budget() as mode:
            # Per-row loop: trafilatura is per document (~30 ms each); see module doc.
            for i in range(n):
                html = htmls[i]
                if html is None:
                    if texts_in[i] is not None:
                        texts[i], status[i] = texts_in[i], "passthrough"
                    else:
                        status[i] = "empty"
                elif sizes[i] > self.max_html_bytes:
                    status[i] = "too_large"
                else:
                    texts[i], status[i] = self._run_budgeted(html, mode)
                counts[status[i]] += 1

        out = batch
        if "html" in names:
            out = out.drop_columns(["html"])
        out = set_column(out, pa.field("text", pa.large_string()), pa.array(texts, type=pa.large_string()))
        return set_column(out, STATUS_COL, pa.array(status, type=pa.string()))

    def decide(self, batch: pa.Table) -> pa.Array:
        status = batch.column(STATUS_COL)
        failed = pc.is_in(status, value_set=pa.array(FAILURES, pa.string()))
        reasons = pc.binary_join_element_wise(pa.scalar("extract:"), status, "")
        return pc.if_else(failed, reasons, pa.scalar(None, pa.string())).combine_chunks()

    def counters(self) -> dict[str, int]:
        out = {k: v for k, v in self._counts.items() if v}
        self._counts = dict.fromkeys(_COUNTERS, 0)
        return out
