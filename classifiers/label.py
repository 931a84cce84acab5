"""Label documents with any OpenAI-compatible chat-completions server (vLLM, llama.cpp server,
Ollama, hosted APIs, or the project's loopback server in ``classifiers/server.py``).

Three parts, used by ``datapipe classify label``:

* :class:`Prompt` -- a versioned template from ``configs/prompts/<name>.yaml``. It renders a
  document (cut to a token budget) into chat messages and parses the reply: a JSON object, or
  the template's ``fallback_regex``. Its :attr:`Prompt.id` (``quality_edu_v1-1a2b3c4d``) carries
  the version and a hash of the template's content, so an edited prompt never reuses old labels.
* :class:`ChatClient` -- an asyncio (aiohttp) client: ``concurrency`` requests in flight, retries
  with exponential backoff and jitter on 429 / 5xx / 408 / timeouts / dropped connections /
  malformed reply bodies (``Retry-After`` honoured), and no retry on other 4xx (bad key, unknown
  model: the run stops, because every request would fail the same way). Everything is counted.
* :class:`LabelCache` -- append-only Parquet part files keyed by (document id, prompt id, model).
  A run first looks up the cache and only asks for what is missing; answers are flushed every
  ``flush_every`` labels / ``flush_interval_s`` seconds and on exit (also on Ctrl-C or
  cancellation), each part written to a temp name and renamed, so an interrupted run resumes and
  never pays twice for a label it has on disk. Replies that did not parse are cached too (they
  were paid for) with ``status = "parse_error"``; requests that failed after all retries are not,
  so a re-run asks again.

Every input row comes back in the output with ``label_status`` ``ok`` / ``parse_error`` /
``failed``: nothing is dropped silently.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from datapipe.schema import set_column

log = logging.getLogger("datapipe.label")

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "configs" / "prompts"

#: the model name the loopback rubric server reports; also the CLI default for ``--model``
RUBRIC_MODEL = "datapipe-rubric-v1"


class LabelParseError(ValueError):
    """A reply that does not contain a valid label."""


class LLMRequestError(RuntimeError):
    """A request that failed after all retries (or with a non-retryable status)."""

    def __init__(self, message: str, *, fatal: bool = False, status: int | None = None):
        super().__init__(message)
        self.fatal = fatal
        self.status = status


# ---------------------------------------------------------------------------
# token budget

# An approximate token count: word pieces, single punctuation marks, and one token per CJK
# character. BPE tokenizers give about 1.1-1.4 of these per English word; the budget is a cost
# cap, not an exact context length, so an approximation that needs no tokenizer file is enough.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]", re.UNICODE)


def truncate_tokens(text: str, max_tokens: int) -> tuple[str, bool, int]:
    """Keep the first ``max_tokens`` approximate tokens of ``text`` (the head of a page carries
    its topic; FineWeb-Edu's annotator also saw only the start). Returns (text, truncated, tokens)."""
    if max_tokens <= 0:
        return text, False, 0
    last = None
    n = 0
    for m in itertools.islice(_TOKEN_RE.finditer(text), max_tokens + 1):
        n += 1
        if n > max_tokens:
            return text[: last.end()], True, max_tokens
        last = m
    return text, False, n


# ---------------------------------------------------------------------------
# prompts

@dataclass(frozen=True)
class ParsedLabel:
    label: str                 # "3" for a quality score, "science" for a topic
    score: float | None        # the numeric score (quality) or the model's confidence (topic)
    how: str                   # "json" | "regex"


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    task: str                  # "quality" (integer score) | "topic" (one of taxonomy)
    system: str
    user: str
    output: dict
    labels: tuple = ()
    taxonomy: dict | None = None
    positive_from: float | None = None
    max_doc_tokens: int = 1500
    temperature: float = 0.0
    max_tokens: int = 256
    source: str = ""
    digest: str = ""

    @property
    def id(self) -> str:
        """What the label cache and model cards record: name, version and content hash."""
        return f"{self.name}_v{self.version}-{self.digest}"

    @classmethod
    def load(cls, spec: str | Path, *, taxonomy: dict | str | Path | None = None) -> "Prompt":
        """``spec``: a template name in ``configs/prompts`` (``quality_edu_v1``) or a YAML path.
        ``taxonomy``: a mapping or YAML file ``{topic: description}`` replacing the template's."""
        import yaml
        path = Path(spec)
        if not path.suffix:
            path = PROMPTS_DIR / f"{spec}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))
            raise FileNotFoundError(f"prompt {spec!r} not found (known: {', '.join(known)})")
        d = yaml.safe_load(path.read_text())
        if taxonomy is not None:
            if not isinstance(taxonomy, dict):
                taxonomy = yaml.safe_load(Path(taxonomy).read_text())
            if isinstance(taxonomy, dict) and "taxonomy" in taxonomy and isinstance(taxonomy["taxonomy"], dict):
                taxonomy = taxonomy["taxonomy"]
            d["taxonomy"] = {str(k): str(v) for k, v in taxonomy.items()}
        for key in ("name", "version", "task", "user", "output"):
            if key not in d:
                raise ValueError(f"{path}: prompt template lacks {key!r}")
        if d["task"] not in ("quality", "topic"):
            raise ValueError(f"{path}: task must be quality or topic, got {d['task']!r}")
        if d["task"] == "topic" and not d.get("taxonomy"):
            raise ValueError(f"{path}: a topic prompt needs a taxonomy")
        digest = hashlib.sha1(json.dumps(d, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:8]
        tax = d.get("taxonomy")
        return cls(
            name=d["name"], version=int(d["version"]), task=d["task"], system=d.get("system", ""),
            user=d["user"], output=dict(d["output"]),
            labels=tuple(tax) if tax else tuple(str(x) for x in d.get("labels", ())),
            taxonomy=dict(tax) if tax else None, positive_from=d.get("positive_from"),
            max_doc_tokens=int(d.get("max_doc_tokens", 1500)), temperature=float(d.get("temperature", 0.0)),
            max_tokens=int(d.get("max_tokens", 256)), source=str(path), digest=digest)

    def render(self, text: str) -> tuple[list[dict], bool, int]:
        """Chat messages for one document; returns (messages, truncated, document tokens)."""
        doc, truncated, ntok = truncate_tokens(text or "", self.max_doc_tokens)
        tax = "\n".join(f"- {k}: {v}" for k, v in (self.taxonomy or {}).items())
        user = self.user.format(document=doc, taxonomy=tax)
        msgs = [{"role": "system", "content": self.system.strip()}] if self.system.strip() else []
        msgs.append({"role": "user", "content": user})
        return msgs, truncated, ntok

    def parse(self, content: str | None) -> ParsedLabel:
        """The label in a reply, or :class:`LabelParseError` saying what was wrong."""
        if not content or not content.strip():
            raise LabelParseError("empty reply")
        out = self.output
        obj = _find_json_object(content)
        how = "json"
        value: Any = None
        conf: Any = None
        if obj is not None and out["field"] in obj:
            value = obj[out["field"]]
            conf = obj.get(out.get("confidence_field", ""), None) if out.get("confidence_field") else None
        elif out.get("fallback_regex"):
            m = re.search(out["fallback_regex"], content)
            if m:
                value, how = m.group(1), "regex"
        if value is None:
            raise LabelParseError(f"no {out['field']!r} in reply" if obj is not None else "no JSON object in reply")
        if self.task == "quality":
            try:
                f = float(value)
            except (TypeError, ValueError):
                raise LabelParseError(f"score {value!r} is not a number") from None
            if f != int(f) or not (out.get("min", -1e18) <= f <= out.get("max", 1e18)):
                raise LabelParseError(f"score {value!r} outside {out.get('min')}..{out.get('max')}")
            return ParsedLabel(str(int(f)), float(f), how)
        topic = _norm_topic(str(value))
        names = {_norm_topic(k): k for k in self.labels}
        if topic not in names:
            raise LabelParseError(f"topic {value!r} is not in the taxonomy")
        score = None
        if conf is not None:
            try:
                score = min(1.0, max(0.0, float(conf)))
            except (TypeError, ValueError):
                score = None
        return ParsedLabel(names[topic], score, how)


def _norm_topic(s: str) -> str:
    return re.sub(r"[\s/\-]+", "_", s.strip().strip("\"'`.").lower())


def _find_json_object(content: str) -> dict | None:
    """The first JSON object in a reply: the whole reply, a ```json fence, or the outermost {...}."""
    s = content.strip()
    candidates = [s]
    fence = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", s, re.S)
    if fence:
        candidates.append(fence.group(1))
    i, j = s.find("{"), s.rfind("}")
    if 0 <= i < j:
        candidates.append(s[i: j + 1])
    for c in candidates:
        try:
            obj = json.loads(c)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


# ---------------------------------------------------------------------------
# client

@dataclass
class ClientConfig:
    """Where and how to ask. ``from_env`` reads ``DATAPIPE_LLM_BASE_URL`` (or ``OPENAI_BASE_URL``),
    ``DATAPIPE_LLM_MODEL`` and ``DATAPIPE_LLM_API_KEY`` (or ``OPENAI_API_KEY``)."""
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = RUBRIC_MODEL
    api_key: str | None = None
    concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    #: extra requests for a reply that did not parse (temperature 0 may repeat itself: keep small)
    parse_retries: int = 1
    #: send ``response_format: {"type": "json_object"}`` (OpenAI, vLLM, llama.cpp server support it)
    json_mode: bool = False

    @classmethod
    def from_env(cls, **overrides) -> "ClientConfig":
        env = os.environ
        d: dict[str, Any] = {}
        if env.get("DATAPIPE_LLM_BASE_URL") or env.get("OPENAI_BASE_URL"):
            d["base_url"] = env.get("DATAPIPE_LLM_BASE_URL") or env.get("OPENAI_BASE_URL")
        if env.get("DATAPIPE_LLM_MODEL"):
            d["model"] = env["DATAPIPE_LLM_MODEL"]
        if env.get("DATAPIPE_LLM_API_KEY") or env.get("OPENAI_API_KEY"):
            d["api_key"] = env.get("DATAPIPE_LLM_API_KEY") or env.get("OPENAI_API_KEY")
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**d)

    @property
    def url(self) -> str:
        b = self.base_url.rstrip("/")
        return b if b.endswith("/chat/completions") else b + "/chat/completions"


@dataclass
class Completion:
    content: str | None
    served_by: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    latency_s: float


_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ChatClient:
    """Async client for ``POST {base_url}/chat/completions``. Use as ``async with``."""

    def __init__(self, cfg: ClientConfig, *, counters: Counter | None = None, seed: int | None = None):
        self.cfg = cfg
        self.counters: Counter = counters if counters is not None else Counter()
        self._rng = random.Random(seed)
        self._session = None

    async def __aenter__(self) -> "ChatClient":
        import aiohttp
        headers = {"Content-Type": "application/json"}
        if self.cfg.api_key:
            headers["Authorization"] = f"Bearer {self.cfg.api_key}"
        conn = aiohttp.TCPConnector(limit=max(1, self.cfg.concurrency))
        self._session = aiohttp.ClientSession(headers=headers, connector=conn)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.cfg.backoff_max_s, max(0.0, float(retry_after)))
            except ValueError:
                pass
        d = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * (2 ** attempt))
        return d * (0.5 + 0.5 * self._rng.random())  # jitter: retries of many workers spread out

    async def complete(self, messages: list[dict], *, temperature: float = 0.0, max_tokens: int = 256) -> Completion:
        import aiohttp
        body: dict[str, Any] = {"model": self.cfg.model, "messages": messages,
                                "temperature": temperature, "max_tokens": max_tokens}
        if self.cfg.json_mode:
            body["response_format"] = {"type": "json_object"}
        payload = json.dumps(body, ensure_ascii=False).encode()
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_s)
        c = self.counters
        last_err = ""
        t0 = time.perf_counter()
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                c["retries"] += 1
            c["requests"] += 1
            retry_after = None
            try:
                async with self._session.post(self.cfg.url, data=payload, timeout=timeout) as resp:
                    raw = await resp.read()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
            except asyncio.TimeoutError:
                c["timeouts"] += 1
                last_err = f"timeout after {self.cfg.timeout_s}s"
            except aiohttp.ClientError as e:
                c["connection_errors"] += 1
                last_err = f"{type(e).__name__}: {e}"
            else:
                if status == 200:
                    try:
                        d = json.loads(raw)
                        msg = d["choices"][0]["message"]
                        content = msg.get("content")
                        usage = d.get("usage") or {}
                    except (ValueError, KeyError, IndexError, TypeError):
                        c["malformed_replies"] += 1
                        last_err = f"malformed reply body: {raw[:120]!r}"
                    else:
                        c["ok"] += 1
                        return Completion(content, d.get("model"), int(usage.get("prompt_tokens") or 0),
                                          int(usage.get("completion_tokens") or 0), attempt + 1,
                                          time.perf_counter() - t0)
                elif status in _RETRY_STATUS:
                    c["http_429" if status == 429 else ("http_5xx" if status >= 500 else "http_other_retryable")] += 1
                    last_err = f"HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"
                else:
                    c["http_fatal"] += 1
                    raise LLMRequestError(f"HTTP {status} from {self.cfg.url}: {raw[:300].decode('utf-8', 'replace')}",
                                          fatal=True, status=status)
            if attempt < self.cfg.max_retries:
                await asyncio.sleep(self._backoff(attempt, retry_after))
        c["gave_up"] += 1
        raise LLMRequestError(f"gave up after {self.cfg.max_retries + 1} attempts: {last_err}")


# ---------------------------------------------------------------------------
# cache

CACHE_SCHEMA = pa.schema([
    ("id", pa.string()), ("prompt_id", pa.string()), ("model", pa.string()),
    ("status", pa.string()),            # ok | parse_error
    ("label", pa.string()), ("score", pa.float64()), ("parsed_by", pa.string()),
    ("raw", pa.large_string()), ("error", pa.string()), ("served_by", pa.string()),
    ("truncated", pa.bool_()), ("doc_tokens", pa.int32()), ("prompt_tokens", pa.int32()),
    ("completion_tokens", pa.int32()), ("requests", pa.int32()), ("latency_s", pa.float32()),
    ("labelled_at", pa.timestamp("s", tz="UTC")),
])


class LabelCache:
    """Append-only label store: ``<root>/part-<time>-<uuid>.parquet``, each written atomically.

    Keyed by (id, prompt_id, model). Where a key appears twice (two runs at once), an ``ok``
    row wins over a ``parse_error`` row. ``compact()`` merges the parts into one file.
    """

    def __init__(self, root: str | Path, *, flush_every: int = 64, flush_interval_s: float = 10.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self._buf: list[dict] = []
        self._last_flush = time.monotonic()
        self._rows: dict[tuple[str, str, str], dict] = {}
        self.parts_written = 0
        self._load()

    def _parts(self) -> list[Path]:
        return sorted(p for p in self.root.glob("part-*.parquet"))

    def _load(self) -> None:
        import pyarrow.parquet as pq
        for p in self._parts():
            for r in pq.read_table(p).to_pylist():
                self._put(r)

    def _put(self, r: dict) -> None:
        k = (r["id"], r["prompt_id"], r["model"])
        old = self._rows.get(k)
        if old is None or (old["status"] != "ok" and r["status"] == "ok"):
            self._rows[k] = r

    def get(self, doc_id: str, prompt_id: str, model: str) -> dict | None:
        return self._rows.get((doc_id, prompt_id, model))

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: dict) -> None:
        self._put(row)
        self._buf.append(row)
        if len(self._buf) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        from datapipe.rundir import write_parquet_atomic
        self._last_flush = time.monotonic()
        if not self._buf:
            return
        rows, self._buf = self._buf, []
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
        write_parquet_atomic(pa.Table.from_pylist(rows, schema=CACHE_SCHEMA), self.root / name)
        self.parts_written += 1

    def compact(self) -> None:
        """Rewrite all parts as one (written first, then the old parts removed: a crash in
        between leaves duplicates, which loading resolves)."""
        from datapipe.rundir import write_parquet_atomic
        self.flush()
        old = self._parts()
        if len(old) <= 1:
            return
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}-compact.parquet"
        write_parquet_atomic(pa.Table.from_pylist(list(self._rows.values()), schema=CACHE_SCHEMA), self.root / name)
        for p in old:
            p.unlink(missing_ok=True)


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


LABEL_COLUMNS = ("label", "label_score", "label_status", "label_prompt", "label_model")


async def label_table_async(table: pa.Table, prompt: Prompt, cfg: ClientConfig, cache: LabelCache, *,
                            id_col: str = "id", text_col: str = "text", stop_after: int | None = None,
                            stop_event: asyncio.Event | None = None, retry_parse_errors: bool = False,
                            progress: Callable[[LabelReport], None] | None = None) -> tuple[pa.Table, LabelReport]:
    """Label every row of ``table`` (asking only for what the cache lacks).

    Returns ``table`` + :data:`LABEL_COLUMNS` (same rows, same order) and a report.
    ``stop_after``: stop scheduling after that many new labels (what Ctrl-C does through
    ``stop_event``): requests in flight finish and are cached, the rest stay ``not_attempted``.
    """
    rep = LabelReport(docs=table.num_rows)
    ids = [str(x) for x in table[id_col].to_pylist()]
    if len(set(ids)) != len(ids):
        raise ValueError(f"column {id_col!r} has duplicate ids: the cache is keyed by them")
    texts = table[text_col].to_pylist()
    model = cfg.model
    pending: list[int] = []
    for i, doc in enumerate(ids):
        hit = cache.get(doc, prompt.id, model)
        if hit is not None and (hit["status"] == "ok" or not retry_parse_errors):
            rep.from_cache += 1
        else:
            pending.append(i)
    failed: dict[str, str] = {}
    stop = stop_event or asyncio.Event()
    counters: Counter = Counter()
    queue: asyncio.Queue = asyncio.Queue()
    for i in pending:
        queue.put_nowait(i)
    t0 = time.perf_counter()
    new = 0

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
            comp = await client.complete(msgs, temperature=prompt.temperature, max_tokens=prompt.max_tokens)
            requests += comp.attempts
            ptok += comp.prompt_tokens
            ctok += comp.completion_tokens
            try:
                parsed = prompt.parse(comp.content)
            except LabelParseError as e:
                rep.parse_failures += 1
                err = str(e)
                continue
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
            await asyncio.gather(*(worker(client) for _ in range(max(1, min(cfg.concurrency, len(pending) or 1)))))
    finally:
        cache.flush()
        rep.seconds = time.perf_counter() - t0
        rep.client = dict(counters)
    rep.not_attempted = queue.qsize()
    return _join_labels(table, ids, prompt, model, cache, failed), rep


def label_table(table: pa.Table, prompt: Prompt, cfg: ClientConfig, cache: LabelCache, **kw) -> tuple[pa.Table, LabelReport]:
    """Synchronous wrapper of :func:`label_table_async`."""
    return asyncio.run(label_table_async(table, prompt, cfg, cache, **kw))


def _join_labels(table: pa.Table, ids: list[str], prompt: Prompt, model: str, cache: LabelCache,
                 failed: dict[str, str]) -> pa.Table:
    labels, scores, status = [], [], []
    for doc in ids:
        r = cache.get(doc, prompt.id, model)
        if r is not None:
            labels.append(r["label"])
            scores.append(r["score"])
            status.append(r["status"])
        else:
            labels.append(None)
            scores.append(None)
            status.append("failed" if doc in failed else "not_attempted")
    n = table.num_rows
    for name, col in zip(LABEL_COLUMNS, (
            pa.array(labels, pa.string()), pa.array(scores, pa.float64()), pa.array(status, pa.string()),
            pa.array([prompt.id] * n, pa.string()), pa.array([model] * n, pa.string())), strict=True):
        table = set_column(table, name, col)
    return table


def labelled_only(table: pa.Table) -> pa.Table:
    """Rows with a usable label (``label_status == "ok"``)."""
    return table.filter(pc.equal(table["label_status"], "ok"))
