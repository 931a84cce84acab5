"""Label documents with any OpenAI-compatible chat-completions server (vLLM, llama.cpp server,
Ollama, hosted APIs, or ``datapipe classify serve --model ...``, a local transformers server in
``classifiers/server.py``).

The parts, used by ``datapipe classify label``, each in its own module and re-exported here:

* :class:`Prompt` (``prompts.py``) -- a versioned template that renders a document into chat
  messages and parses the reply.
* :class:`ChatClient` (``client.py``) -- asyncio client with retries, backoff and counters.
* :class:`LabelCache` (``cache.py``) -- append-only Parquet part files keyed by (document id,
  prompt id, model). A run first looks up the cache and only asks for what is missing; answers are
  flushed every ``flush_every`` labels / ``flush_interval_s`` seconds and on exit (also on Ctrl-C
  or cancellation), so an interrupted run resumes and never pays twice for a label it has on
  disk. Replies that did not parse are cached too (they were paid for) with ``status =
  "parse_error"``; requests that failed after all retries are not, so a re-run asks again.
* :func:`label_distribution` (``logprobs.py``) -- label probabilities and the expected score from
  the reply's ``logprobs`` (OpenAI, vLLM and llama.cpp formats).

Every input row comes back in the output with ``label_status`` ``ok`` / ``parse_error`` /
``failed``: nothing is dropped silently.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from datapipe.schema import set_column

from .cache import CACHE_SCHEMA, LabelCache  # noqa: F401  (re-exported)
from .client import ChatClient, ClientConfig, Completion, LLMRequestError  # noqa: F401
from .logprobs import LabelProbs, label_distribution, token_positions  # noqa: F401
from .prompts import (PROMPTS_DIR, LabelParseError, ParsedLabel, Prompt, truncate_tokens)  # noqa: F401

log = logging.getLogger("datapipe.label")
# ---------------------------------------------------------------------------
# labelling a table

@dataclass
class LabelReport:
    docs: int = 0
    from_cache: int = 0
    labelled: int = 0             # new ok labels this run
    parse_errors: int = 0         # documents whose final reply did not parse (this run)
    failed: int = 0               # documents whose requests failed after all retries (this run)
    not_attempted: int = 0        # stopped before these were asked (stop_after / Ctrl-C)
    parse_failures: int = 0       # replies that did not parse, retried ones included
    truncated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    client: dict = field(default_factory=dict)
    errors: Counter = field(default_factory=Counter)
    fatal: str | None = None
    model: str | None = None      # the model labels are keyed by (resolved from the server when not given)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("errors",)}
        d["errors"] = dict(self.errors.most_common(10))
        d["labels_per_s"] = round(self.labelled / self.seconds, 2) if self.seconds > 0 else None
        return d

    def summary(self) -> str:
        c = self.client
        return (f"{self.docs} docs: {self.from_cache} from cache, {self.labelled} labelled, "
                f"{self.parse_errors} parse errors, {self.failed} failed, {self.not_attempted} not attempted | "
                f"requests {c.get('requests', 0)} (retries {c.get('retries', 0)}: 429 x{c.get('http_429', 0)}, "
                f"5xx x{c.get('http_5xx', 0)}, timeouts x{c.get('timeouts', 0)}, "
                f"dropped x{c.get('connection_errors', 0)}, malformed x{c.get('malformed_replies', 0)}), "
                f"unparsable replies {self.parse_failures}, truncated docs {self.truncated}, "
                f"{self.seconds:.1f}s")


LABEL_COLUMNS = ("label", "label_score", "label_status", "label_prompt", "label_model",
                 "label_expected", "label_probs", "label_prob_mass", "label_parsed_by", "label_parse_error")

#: ask for this many alternatives per token by default (OpenAI's maximum; vLLM's default cap)
DEFAULT_TOP_LOGPROBS = 20


def _read_reply(prompt: Prompt, comp: Completion) -> tuple[ParsedLabel | None, LabelProbs | None, str | None]:
    """(text parse, label distribution from logprobs, parse error) of one reply."""
    parsed, err = None, None
    try:
        parsed = prompt.parse(comp.content)
    except LabelParseError as e:
        err = str(e)
    dist = None
    if prompt.task == "quality" and comp.logprobs:
        dist = label_distribution(token_positions(comp.logprobs), prompt.labels,
                                  parsed=parsed.label if parsed else None,
                                  values=[float(x) for x in prompt.labels])
    return parsed, dist, err


async def label_table_async(table: pa.Table, prompt: Prompt, cfg: ClientConfig, cache: LabelCache, *,
                            id_col: str = "id", text_col: str = "text", stop_after: int | None = None,
                            stop_event: asyncio.Event | None = None, retry_parse_errors: bool = False,
                            progress: Callable[[LabelReport], None] | None = None) -> tuple[pa.Table, LabelReport]:
    """Label every row of ``table`` (asking only for what the cache lacks).

    Returns ``table`` + :data:`LABEL_COLUMNS` (same rows, same order) and a report.
    ``stop_after``: stop scheduling after that many new labels (what Ctrl-C does through
    ``stop_event``): requests in flight finish and are cached, the rest stay ``not_attempted``.

    With ``cfg.top_logprobs`` and a quality prompt, a reply whose logprobs offer label tokens gives
    ``label_probs`` (label -> probability), ``label_expected`` (the expected score) and
    ``label_prob_mass``; the label is then the most probable one (``label_parsed_by = logprobs``),
    which also rescues a reply whose text did not parse (it still counts in ``parse_failures``, and
    ``label_parse_error`` says why the text did not parse).
    Without logprobs, the label is parsed from the text (``json`` / ``regex``).
    """
    rep = LabelReport(docs=table.num_rows)
    ids = [str(x) for x in table[id_col].to_pylist()]
    if len(set(ids)) != len(ids):
        raise ValueError(f"column {id_col!r} has duplicate ids: the cache is keyed by them")
    texts = table[text_col].to_pylist()
    failed: dict[str, str] = {}
    stop = stop_event or asyncio.Event()
    counters: Counter = Counter()
    queue: asyncio.Queue = asyncio.Queue()
    t0 = time.perf_counter()
    new = 0
    model = cfg.model
    pending: list[int] = []
    top_k = cfg.top_logprobs if prompt.task == "quality" else 0

    async def label_one(client: ChatClient, i: int) -> None:
        nonlocal new
        msgs, truncated, ntok = prompt.render(texts[i])
        rep.truncated += truncated
        row = {"id": ids[i], "prompt_id": prompt.id, "model": model, "truncated": truncated, "doc_tokens": ntok}
        requests = 0
        ptok = ctok = 0
        err = None
        comp = None
        for _ in range(cfg.parse_retries + 1):
            comp = await client.complete(msgs, temperature=prompt.temperature, max_tokens=prompt.max_tokens,
                                         top_logprobs=top_k)
            requests += comp.attempts
            ptok += comp.prompt_tokens
            ctok += comp.completion_tokens
            parsed, dist, err = _read_reply(prompt, comp)
            if parsed is None:
                rep.parse_failures += 1
            if dist is not None:
                row.update(status="ok", label=dist.argmax, score=float(dist.argmax), parsed_by="logprobs",
                           error=err, probs=json.dumps({k: round(v, 6) for k, v in dist.probs.items()}),
                           expected=dist.expected, prob_mass=dist.mass)
                break
            if parsed is not None:
                row.update(status="ok", label=parsed.label, score=parsed.score, parsed_by=parsed.how, error=None)
                break
        else:
            row.update(status="parse_error", label=None, score=None, parsed_by=None, error=err)
            rep.parse_errors += 1
            rep.errors[f"parse: {err}"] += 1
        row.update(raw=(comp.content or "")[:4000], served_by=comp.served_by, prompt_tokens=ptok,
                   completion_tokens=ctok, requests=requests, latency_s=comp.latency_s,
                   labelled_at=int(time.time()))
        rep.prompt_tokens += ptok
        rep.completion_tokens += ctok
        if row["status"] == "ok":
            rep.labelled += 1
        cache.add(row)
        new += 1

    async def worker(client: ChatClient) -> None:
        while not stop.is_set():
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await label_one(client, i)
            except LLMRequestError as e:
                rep.failed += 1
                failed[ids[i]] = str(e)
                rep.errors[str(e)[:160]] += 1
                if e.fatal:
                    rep.fatal = str(e)
                    stop.set()
            if stop_after is not None and new >= stop_after:
                stop.set()
            if progress is not None:
                progress(rep)

    client = ChatClient(cfg, counters=counters)
    try:
        async with client:
            if model is None:
                try:
                    model = await client.served_model()
                except LLMRequestError as e:
                    rep.fatal = str(e)
                    rep.not_attempted = len(ids)
                    return _join_labels(table, ids, prompt, "", cache, {}), rep
            for i, doc in enumerate(ids):
                hit = cache.get(doc, prompt.id, model)
                if hit is not None and (hit["status"] == "ok" or not retry_parse_errors):
                    rep.from_cache += 1
                else:
                    pending.append(i)
                    queue.put_nowait(i)
            await asyncio.gather(*(worker(client) for _ in range(max(1, min(cfg.concurrency, len(pending) or 1)))))
    finally:
        cache.flush()
        rep.seconds = time.perf_counter() - t0
        rep.client = dict(counters)
    rep.not_attempted = queue.qsize()
    rep.model = model
    return _join_labels(table, ids, prompt, model, cache, failed), rep


def label_table(table: pa.Table, prompt: Prompt, cfg: ClientConfig, cache: LabelCache, **kw) -> tuple[pa.Table, LabelReport]:
    """Synchronous wrapper of :func:`label_table_async`."""
    return asyncio.run(label_table_async(table, prompt, cfg, cache, **kw))


def _join_labels(table: pa.Table, ids: list[str], prompt: Prompt, model: str, cache: LabelCache,
                 failed: dict[str, str]) -> pa.Table:
    labels, scores, status, expected, probs, mass, how, perr = [], [], [], [], [], [], [], []
    for doc in ids:
        r = cache.get(doc, prompt.id, model)
        if r is not None:
            labels.append(r["label"])
            scores.append(r["score"])
            status.append(r["status"])
            expected.append(r.get("expected"))
            p = r.get("probs")
            probs.append(list(json.loads(p).items()) if p else None)
            mass.append(r.get("prob_mass"))
            how.append(r.get("parsed_by"))
            perr.append(r.get("error"))
        else:
            labels.append(None)
            scores.append(None)
            status.append("failed" if doc in failed else "not_attempted")
            expected.append(None)
            probs.append(None)
            mass.append(None)
            how.append(None)
            perr.append(None)
    n = table.num_rows
    for name, col in zip(LABEL_COLUMNS, (
            pa.array(labels, pa.string()), pa.array(scores, pa.float64()), pa.array(status, pa.string()),
            pa.array([prompt.id] * n, pa.string()), pa.array([model] * n, pa.string()),
            pa.array(expected, pa.float64()), pa.array(probs, pa.map_(pa.string(), pa.float64())),
            pa.array(mass, pa.float64()), pa.array(how, pa.string()), pa.array(perr, pa.string())), strict=True):
        table = set_column(table, name, col)
    return table


def labelled_only(table: pa.Table) -> pa.Table:
    """Rows with a usable label (``label_status == "ok"``)."""
    return table.filter(pc.equal(table["label_status"], "ok"))
