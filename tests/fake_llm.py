"""FakeLLMServer: a test double of an OpenAI-compatible chat-completions server (tests only).

It is a real HTTP server on 127.0.0.1 (the HTTP layer of ``classifiers/server.py``), but **not a
language model**: it answers the project's prompts with a transparent keyword rubric computed from
simple text features, and says so in every reply's ``model`` field. The label/train/apply plumbing
tests use it because its answers are deterministic and it injects faults on demand; the product
serves real models (``datapipe classify serve --model``) and no product default refers to this.
With ``logprobs`` requested, a quality reply carries OpenAI-format logprobs for its score token.

Rubric (``quality_edu`` prompt), additive like FineWeb-Edu's, one point each:

1. >= 50 words and educational vocabulary >= 0.5 % of words (some basic information)
2. >= 100 words and educational vocabulary >= 1.5 %
3. coherent prose: >= 150 words, >= 60 % of lines end in . ! ? : or a quote, mean sentence
   length 8-35 words, commercial/spam vocabulary < 1 %
4. >= 250 words, educational vocabulary >= 3 %, spam vocabulary < 0.5 %
5. >= 500 words, educational vocabulary >= 4.5 %, no spam vocabulary, >= 4 paragraphs

Topic (``topic`` prompt): keyword hits per topic of the prompt's ``<topics>`` list (built-in
keyword lists for the default taxonomy; for other topics, the words of the topic's name and
description); the topic with most hits wins, confidence = its share of all hits.

Fault injection for tests: ``FaultPlan(rates={"429": .2, "500": .1, "timeout": .05,
"malformed": .05, "bad_content": .05, "drop": .05}, max_per_request=2)`` -- for each distinct
request body, its first ``max_per_request`` attempts draw a fault deterministically (seeded hash
of body and attempt number), later attempts succeed. A request can also force one with the
header ``X-Datapipe-Fault: 429`` or the query ``?fault=500``. ``latency_s`` adds a fixed delay
per request (a stand-in for model time in the throughput benchmark). ``stats()`` counts hits,
outcomes and good replies per request body.
"""
from __future__ import annotations

import hashlib
import math
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from classifiers.prompts import truncate_tokens
from classifiers.server import ChatServer, chat_response

#: the model id the test double lists at /v1/models (what labels made through it are keyed by)
FAKE_MODEL = "datapipe-rubric-v1"
SERVED_MODEL = f"{FAKE_MODEL} (rule-based rubric test double, not an LLM)"

FAULTS = ("429", "500", "503", "timeout", "malformed", "bad_content", "drop")

# ---------------------------------------------------------------------------
# the rubric

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

EDU_TERMS = frozenset("""
learn learning study studies student students teacher teachers school lesson lessons course education
educational explain explains explained explanation definition define defined example examples theory
theories research researchers science scientific scientist history historical century centuries
experiment experiments evidence analysis analyze process processes concept concepts principle principles
method methods describe describes understanding understand knowledge fact facts cause causes effect
effects therefore because however result results called known important include includes including
system systems energy cell cells species structure function functions form forms development develop
chapter exercise exercises solution solutions problem problems equation equations mathematics math
physics chemistry biology geography language languages literature culture society economic government
population climate temperature water earth planet animals plants human humans body university academic
data model models type types number numbers measure measured level levels rate pressure chemical
""".split())

SPAM_TERMS = frozenset("""
buy cheap price prices discount discounts sale deal deals offer offers coupon coupons shipping cart
checkout order subscribe subscription click login signup sign casino poker bet betting viagra cialis
porn sex sexy xxx hot dating singles escort loan loans credit bitcoin crypto win winner free bonus
casino jackpot replica pills pharmacy weight lose follow share like tweet cookies cookie newsletter
""".split())

TOPIC_KEYWORDS: dict[str, frozenset] = {k: frozenset(v.split()) for k, v in {
    "general_knowledge": "history world country countries city capital culture people century war king "
                         "empire population geography region religion language tradition famous known",
    "science": "science scientific research researchers study experiment physics chemistry biology cell "
               "cells species energy climate planet space universe molecule atoms evolution theory data "
               "technology engineering",
    "math_reasoning": "math mathematics equation equations theorem proof number numbers solve solution "
                      "algebra geometry calculus probability statistics function variable formula "
                      "integer fraction logic puzzle",
    "code": "code python java javascript function class variable api software programming developer "
            "compile library install github error debug server database sql html css linux",
    "news": "said says reported report according minister president government police election "
            "officials yesterday today announced week spokesperson parliament council vote",
    "finance": "market markets stock stocks price prices investors bank banks economy economic business "
               "company companies revenue profit sales buy discount shop product products money tax",
    "health": "health medical doctor doctors patients patient disease treatment symptoms hospital "
              "medicine diet nutrition exercise cancer vaccine virus care clinical mental",
    "law": "law laws legal court courts judge attorney lawyer rights act regulation regulations "
           "contract liability plaintiff defendant statute section jurisdiction",
    "entertainment": "film films movie movies music song songs album band game games player players team "
                     "season match sports star fans show series episode travel hotel recipe fashion",
    "adult_spam": "casino poker betting viagra cialis porn sex sexy xxx escort dating singles pills "
                  "replica loans bonus jackpot click cheap nude",
}.items()}


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def rubric_quality(doc: str) -> tuple[int, str]:
    """The additive 0-5 points of the module docstring, with a reason naming what counted."""
    words = _words(doc)
    n = len(words)
    if n == 0:
        return 0, "empty extract"
    edu = sum(w in EDU_TERMS for w in words) / n
    spam = sum(w in SPAM_TERMS for w in words) / n
    lines = [l.strip() for l in doc.splitlines() if l.strip()]
    punct = sum(l[-1] in ".!?:\"'”»)" for l in lines) / max(1, len(lines))
    sentences = [s for s in re.split(r"[.!?。！？]+", doc) if _WORD.search(s)]
    msl = n / max(1, len(sentences))
    paragraphs = len([p for p in re.split(r"\n\s*\n|\n", doc) if len(p.split()) >= 20])
    checks = [
        ("basic info", n >= 50 and edu >= 0.005),
        ("some educational elements", n >= 100 and edu >= 0.015),
        ("coherent prose", n >= 150 and punct >= 0.6 and 8 <= msl <= 35 and spam < 0.01),
        ("substantial educational content", n >= 250 and edu >= 0.03 and spam < 0.005),
        ("outstanding", n >= 500 and edu >= 0.045 and spam == 0 and paragraphs >= 4),
    ]
    score = sum(ok for _, ok in checks)
    got = [name for name, ok in checks if ok]
    reason = (f"rule-based rubric: {n} words, educational vocabulary {edu:.1%}, spam vocabulary {spam:.1%}, "
              f"{punct:.0%} of lines end in punctuation, {msl:.0f} words per sentence; points for: "
              + (", ".join(got) if got else "nothing"))
    return score, reason


def rubric_topic(doc: str, topics: dict[str, str]) -> tuple[str, float]:
    words = Counter(_words(doc))
    hits = {}
    for name, desc in topics.items():
        kw = TOPIC_KEYWORDS.get(name) or frozenset(w for w in _words(name.replace("_", " ") + " " + desc) if len(w) >= 4)
        hits[name] = sum(words[w] for w in kw)
    total = sum(hits.values())
    if total == 0:
        fallback = "general_knowledge" if "general_knowledge" in topics else next(iter(topics))
        return fallback, 0.2
    best = max(hits, key=lambda k: (hits[k], -list(topics).index(k)))
    return best, round(hits[best] / total, 3)


_DOC_RE = re.compile(r"<document>\n?(.*?)\n?</document>", re.S)
_TOPICS_RE = re.compile(r"<topics>\n?(.*?)\n?</topics>", re.S)


def rubric_reply(messages: list[dict]) -> str:
    """The reply content for a chat request built from one of the project's prompts."""
    text = "\n".join(str(m.get("content") or "") for m in messages)
    m = _DOC_RE.search(text)
    if not m:
        return "I can only rate documents sent with datapipe's prompts (no <document> block found)."
    doc = m.group(1)
    t = _TOPICS_RE.search(text)
    if t:
        topics = {}
        for line in t.group(1).splitlines():
            mm = re.match(r"\s*-\s*([^:]+):\s*(.*)", line)
            if mm:
                topics[mm.group(1).strip()] = mm.group(2).strip()
        if topics:
            topic, conf = rubric_topic(doc, topics)
            return json.dumps({"topic": topic, "confidence": conf})
    if "educational" in text.lower():
        score, reason = rubric_quality(doc)
        return json.dumps({"reason": reason, "score": score})
    return "I can only rate documents sent with datapipe's prompts (unknown task)."


# ---------------------------------------------------------------------------
# the server

@dataclass
class FaultPlan:
    rates: dict[str, float] = field(default_factory=dict)
    #: attempts of one request body that may draw a fault; later attempts succeed
    max_per_request: int = 1
    seed: int = 0
    #: how long a "timeout" fault sleeps before answering (set it above the client's timeout)
    hang_s: float = 2.0

    def __post_init__(self):
        bad = [k for k in self.rates if k not in FAULTS]
        if bad:
            raise ValueError(f"unknown fault(s) {bad}; known: {FAULTS}")
        if sum(self.rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")

    def draw(self, key: str, attempt: int) -> str | None:
        if attempt >= self.max_per_request or not self.rates:
            return None
        h = hashlib.sha1(f"{self.seed}:{key}:{attempt}".encode()).digest()
        u = int.from_bytes(h[:8], "big") / 2 ** 64
        acc = 0.0
        for name, rate in sorted(self.rates.items()):
            acc += rate
            if u < acc:
                return name
        return None


def fake_logprobs(content: str, top: int) -> list | None:
    """OpenAI-format logprobs for a rubric reply: one entry for the score token, 60 % on the score
    and the rest spread over its neighbours (so the expected score differs from the argmax)."""
    m = re.search(r'"score":\s*(\d)', content)
    if not m:
        return None
    s = int(m.group(1))
    w = {k: 1.0 / (1 + 3 * abs(k - s)) ** 2 for k in range(6) if k != s}
    probs = {s: 0.6} | {k: 0.35 * v / sum(w.values()) for k, v in w.items()}
    probs["x"] = 0.05  # a non-label token keeps the label mass below 1
    alts = sorted(probs.items(), key=lambda kv: -kv[1])[:max(1, top)]
    return [{"token": str(s), "logprob": math.log(probs[s]), "bytes": list(str(s).encode()),
             "top_logprobs": [{"token": str(k), "logprob": math.log(p), "bytes": list(str(k).encode())}
                              for k, p in alts]}]


class FakeLLMServer(ChatServer):
    """``with FakeLLMServer() as srv: srv.base_url`` -- serves in a background thread."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, faults: FaultPlan | None = None,
                 latency_s: float = 0.0, api_key: str | None = None, backend=None, model_name: str = SERVED_MODEL):
        super().__init__(host=host, port=port, api_key=api_key)
        self.faults = faults or FaultPlan()
        self.latency_s = latency_s
        self.backend = backend or rubric_reply
        self.model_name = model_name
        self.model_id = FAKE_MODEL
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.per_key: Counter = Counter()
        self.good: Counter = Counter()

    def model_card(self) -> dict:
        return {"id": FAKE_MODEL, "object": "model", "owned_by": "tests", "description": SERVED_MODEL}

    def handle_chat(self, req: dict, handler, url) -> tuple | None:
        messages = req["messages"]
        key = hashlib.sha1(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        forced = handler.headers.get("X-Datapipe-Fault") or (parse_qs(url.query).get("fault") or [None])[0]
        with self.lock:
            attempt = self.per_key[key]
            self.per_key[key] += 1
            self.counts["hits"] += 1
        fault = forced or self.faults.draw(key, attempt)
        with self.lock:
            self.counts[fault or "ok"] += 1
        if self.latency_s:
            time.sleep(self.latency_s)
        if fault in ("429", "500", "503"):
            return (int(fault), json.dumps({"error": {"message": f"injected {fault}"}}).encode(),
                    {"Retry-After": "0"} if fault == "429" else None)
        if fault == "drop":
            return None
        if fault == "timeout":
            time.sleep(self.faults.hang_s)
        if fault == "malformed":
            return 200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"index": 0, "mess'
        content = ("Sure! This page looks fairly useful to me." if fault == "bad_content"
                   else self.backend(messages))
        if fault is None:
            with self.lock:
                self.good[key] += 1
        lp = fake_logprobs(content, int(req.get("top_logprobs") or 0)) if req.get("logprobs") else None
        body = chat_response(self.model_name, content,
                             prompt_tokens=sum(truncate_tokens(str(m.get("content") or ""), 10 ** 9)[2] for m in messages),
                             completion_tokens=truncate_tokens(content, 10 ** 9)[2], logprobs=lp)
        return 200, json.dumps(body).encode()

    def stats(self) -> dict:
        with self.lock:
            return {"counts": dict(self.counts), "distinct_requests": len(self.per_key),
                    "good_replies": sum(self.good.values()),
                    "max_good_per_request": max(self.good.values(), default=0)}
