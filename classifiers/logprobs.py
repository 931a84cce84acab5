"""Label probabilities from the ``logprobs`` of a reply, in the formats servers actually return.

A rating prompt asks for a score; the model's next-token distribution at the score's position says
how sure it was. FineWeb-Edu's annotations can be read the same way: the expected score
``sum_k p(k) * k`` over the label tokens ranks documents far more finely than the argmax digit.

Formats read by :func:`token_positions` (each becomes a list of :class:`Position`):

* OpenAI chat completions (also vLLM's and llama.cpp's ``/v1/chat/completions``, and Ollama's):
  ``choices[0].logprobs.content = [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob"}]}]``
* the legacy completions API (OpenAI / vLLM ``/v1/completions``):
  ``choices[0].logprobs = {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: logprob}]}``
* llama.cpp's native ``/completion``: ``completion_probabilities = [{"token", "logprob", "top_logprobs": [...]}]``,
  with ``post_sampling_probs`` ``[{"token", "prob", "top_probs": [{"token", "prob"}]}]``, and the
  older ``[{"content", "probs": [{"tok_str", "prob"}]}]``.

:func:`label_distribution` picks the position that carries the label (the last generated token
equal to the parsed label: a JSON reply's ``"score": 3`` comes after its ``reason``; else the first
position whose alternatives include label tokens), sums the probabilities of the alternatives
that spell each label (``"3"``, ``" 3"``, ``"▁3"``), and normalises them over the labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Position:
    token: str                    # the generated token
    alternatives: dict[str, float]  # token -> probability (top-k at this position, the generated token included)


@dataclass(frozen=True)
class LabelProbs:
    probs: dict[str, float]       # label -> probability, normalised over the labels
    mass: float                   # the probability the top-k gave to label tokens before normalising
    position: int                 # which generated token carried the label
    expected: float | None        # sum_k p(k) * value(k) for numeric labels

    @property
    def argmax(self) -> str:
        return max(self.probs, key=lambda k: (self.probs[k], -list(self.probs).index(k)))


def _prob(d: dict) -> float | None:
    if d.get("logprob") is not None:
        lp = float(d["logprob"])
        return math.exp(lp) if lp > -1e30 else 0.0
    if d.get("prob") is not None:
        return float(d["prob"])
    return None


def _tok(d: dict) -> str:
    for k in ("token", "tok_str", "content"):
        if isinstance(d.get(k), str):
            return d[k]
    return ""


def _from_entries(entries: Sequence[dict]) -> list[Position]:
    out = []
    for e in entries:
        if not isinstance(e, dict):
            continue
        alts: dict[str, float] = {}
        for a in e.get("top_logprobs") or e.get("top_probs") or e.get("probs") or ():
            p = _prob(a) if isinstance(a, dict) else None
            if p is not None:
                t = _tok(a)
                alts[t] = max(alts.get(t, 0.0), p)
        tok = _tok(e)
        p = _prob(e)
        if p is not None and tok not in alts:
            alts[tok] = p
        out.append(Position(tok, alts))
    return out


def token_positions(obj: Any) -> list[Position]:
    """Generated tokens with their top alternatives, from a whole reply body or its ``logprobs``
    part in any of the formats of the module docstring; ``[]`` when there are none."""
    if not obj:
        return []
    if isinstance(obj, dict):
        if "completion_probabilities" in obj:
            return token_positions(obj["completion_probabilities"])
        if "choices" in obj:
            ch = (obj.get("choices") or [{}])[0] or {}
            return token_positions(ch.get("logprobs"))
        if isinstance(obj.get("content"), list):
            return _from_entries(obj["content"])
        if isinstance(obj.get("tokens"), list):  # legacy completions
            toks, lps = obj["tokens"], obj.get("token_logprobs") or []
            tops = obj.get("top_logprobs") or []
            out = []
            for i, t in enumerate(toks):
                alts = {str(k): math.exp(float(v)) for k, v in ((tops[i] if i < len(tops) else None) or {}).items()}
                if i < len(lps) and lps[i] is not None and t not in alts:
                    alts[t] = math.exp(float(lps[i]))
                out.append(Position(str(t), alts))
            return out
        return []
    if isinstance(obj, list):
        return _from_entries(obj)
    return []


def norm_token(t: str) -> str:
    """A token as the label it spells: byte-level (``Ġ``) and SentencePiece (``▁``) space markers,
    spaces and quotes removed."""
    return t.replace("\u0120", " ").replace("\u2581", " ").strip().strip("\"'`").strip()


def label_distribution(positions: list[Position], labels: Sequence[str], *, parsed: str | None = None,
                       values: Sequence[float] | None = None) -> LabelProbs | None:
    """The distribution over ``labels`` at the position that carries the label, or ``None`` when
    no position offers a label token."""
    labels = [str(x) for x in labels]
    lab = set(labels)
    if not positions or not lab:
        return None
    idx = None
    if parsed is not None:
        for i in range(len(positions) - 1, -1, -1):
            if norm_token(positions[i].token) == parsed:
                idx = i
                break
    if idx is None:
        for i, p in enumerate(positions):
            if any(norm_token(t) in lab for t in p.alternatives):
                idx = i
                break
    if idx is None:
        return None
    acc = dict.fromkeys(labels, 0.0)
    for t, p in positions[idx].alternatives.items():
        k = norm_token(t)
        if k in acc:
            acc[k] += p
    mass = sum(acc.values())
    if mass <= 0:
        return None
    probs = {k: v / mass for k, v in acc.items()}
    expected = None
    if values is not None:
        expected = float(sum(probs[k] * float(v) for k, v in zip(labels, values)))
    return LabelProbs(probs=probs, mass=min(1.0, mass), position=idx, expected=expected)
