"""Prompt templates: a versioned template from ``configs/prompts/<name>.yaml`` renders a document
(cut to a token budget) into chat messages and parses the reply (a JSON object, the template's
``fallback_regex``, or a bare label). Its :attr:`Prompt.id` (``quality_edu_v1-1a2b3c4d``) carries the
version and a hash of the template's content, so an edited prompt never reuses old labels.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "configs" / "prompts"


class LabelParseError(ValueError):
    """A reply that does not contain a valid label."""



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
