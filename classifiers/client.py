"""An asyncio (aiohttp) client for OpenAI-compatible ``/chat/completions`` servers: ``concurrency``
requests in flight, retries with exponential backoff and jitter on 429 / 5xx / 408 / timeouts /
dropped connections / malformed reply bodies (``Retry-After`` honoured), and no retry on other 4xx
(bad key, unknown model: the run stops, because every request would fail the same way).
Everything is counted.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any


class LLMRequestError(RuntimeError):
    """A request that failed after all retries (or with a non-retryable status)."""

    def __init__(self, message: str, *, fatal: bool = False, status: int | None = None):
        super().__init__(message)
        self.fatal = fatal
        self.status = status



# ---------------------------------------------------------------------------
# client

@dataclass
class ClientConfig:
    """Where and how to ask. ``from_env`` reads ``DATAPIPE_LLM_BASE_URL`` (or ``OPENAI_BASE_URL``),
    ``DATAPIPE_LLM_MODEL`` and ``DATAPIPE_LLM_API_KEY`` (or ``OPENAI_API_KEY``)."""
    base_url: str = "http://127.0.0.1:8000/v1"   # where `datapipe classify serve` listens by default
    #: ``None``: the first model the server lists at ``GET /models`` (what a one-model server serves)
    model: str | None = None
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
    #: ask for ``logprobs`` with this many ``top_logprobs`` per token (0: don't); OpenAI allows up to 20
    top_logprobs: int = 0

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
    logprobs: Any = None          # the choice's ``logprobs`` as the server sent it (see logprobs.py)


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

    async def served_model(self) -> str:
        """The first model id at ``GET {base_url}/models`` (a fatal error when there is none)."""
        import aiohttp
        url = self.cfg.url.rsplit("/chat/completions", 1)[0] + "/models"
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s)) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise LLMRequestError(f"HTTP {resp.status} from {url}: give the model name", fatal=True,
                                          status=resp.status)
                data = json.loads(raw).get("data") or []
                return str(data[0]["id"])
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, IndexError, TypeError) as e:
            raise LLMRequestError(f"cannot read the served model from {url} ({type(e).__name__}: {e}); "
                                  f"give the model name (--model / DATAPIPE_LLM_MODEL)", fatal=True) from None

    async def complete(self, messages: list[dict], *, temperature: float = 0.0, max_tokens: int = 256,
                       top_logprobs: int | None = None) -> Completion:
        import aiohttp
        body: dict[str, Any] = {"model": self.cfg.model, "messages": messages,
                                "temperature": temperature, "max_tokens": max_tokens}
        if self.cfg.json_mode:
            body["response_format"] = {"type": "json_object"}
        k = self.cfg.top_logprobs if top_logprobs is None else top_logprobs
        if k:
            body["logprobs"] = True
            body["top_logprobs"] = int(k)
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
                        choice = d["choices"][0]
                        content = choice["message"].get("content")
                        usage = d.get("usage") or {}
                    except (ValueError, KeyError, IndexError, TypeError):
                        c["malformed_replies"] += 1
                        last_err = f"malformed reply body: {raw[:120]!r}"
                    else:
                        c["ok"] += 1
                        return Completion(content, d.get("model"), int(usage.get("prompt_tokens") or 0),
                                          int(usage.get("completion_tokens") or 0), attempt + 1,
                                          time.perf_counter() - t0, choice.get("logprobs"))
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
