"""PII: score, mask and drop per document (``pii``), and rank whole domains (``pii_domains``).

``pii`` (a filter; the detectors are in :mod:`stages._pii_detect`) scores every document:
``pii_<type>`` counts for ``email``, ``phone``, ``ip``, ``card``, ``iban``, ``ssn``;
``pii_count`` (all types), ``pii_density`` (characters inside PII spans / characters of the
text, before masking) and ``pii_context`` (null without PII: about 40 characters either side
of the first span with the span in ``[[...]]``, after masking, so ``datapipe inspect`` and
``datapipe show`` show what was found without keeping it). With ``mask: true`` it rewrites
``text``: every span becomes its type's placeholder (``<EMAIL>``, ``<PHONE>``,
``<IP_ADDRESS>``, ``<CARD_NUMBER>``, ``<IBAN>``, ``<SSN>``), the same string everywhere in the
run, and every other character stays as it was. Then it decides: ``pii_v1:density_<type>``
drops a document whose ``pii_density`` is above ``max_density`` (``<type>``: the type with
most spans in it), ``pii_v1:count_<type>`` one with more than ``max_count`` spans.
Counters: ``masked:<type>`` (spans replaced) and ``found:<type>`` (spans found).

``pii_domains`` (a workflow, Llama 3's "sites with much personal information") reads the
scored shards, ranks domains with at least ``min_docs`` documents by PII density over the
whole run (PII characters / characters), drops every document of the domains above
``max_domain_density`` (``pii_domains_v1:domain``) and lists all ranked domains in
``work/<step>-intermediate/pii_domains.tsv`` in the run directory (dropped ones marked).

Cost: the RE2 prefilter runs over the batch in C++; the Python pass (``re`` plus
validation) runs only on rows with a candidate. ``bench/pii.py`` measures precision and
recall per type and docs/s per core.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapipe import workflow as W
from datapipe.rundir import atomic_write_text
from datapipe.schema import set_column
from datapipe.stage import Filter, StageError, Workflow, reasons_from_masks, register
from datapipe.urls import url_domain, url_host

from . import _text as T
from ._pii_detect import LANG_REGION, PREFILTER, TYPES, find_spans

CHECK = "pii_v1"
PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP_ADDRESS>", "card": "<CARD_NUMBER>",
                "iban": "<IBAN>", "ssn": "<SSN>"}
_CONTEXT = 40
_TLD = re.compile(r"\.([a-z]{2})$")
_TLD_REGION = {"uk": "GB"}
_NOT_REGION_TLD = frozenset({"io", "co", "me", "tv", "ai", "fm", "ly", "cc", "ws", "eu"})


def _region(host: str | None, lang: str | None, default: str) -> str:
    """Region for national phone formats: the URL's country TLD, else the language's country."""
    m = _TLD.search(host or "")
    if m and m.group(1) not in _NOT_REGION_TLD:
        return _TLD_REGION.get(m.group(1), m.group(1).upper())
    return LANG_REGION.get(lang or "", default)


def mask_text(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with every span replaced by its type's placeholder; the rest unchanged."""
    out, at = [], 0
    for a, b, t in spans:
        out.append(text[at:a])
        out.append(PLACEHOLDERS[t])
        at = b
    out.append(text[at:])
    return "".join(out)


@register
class PII(Filter):
    """Find PII (see the module docstring); count it per type, mask it, drop PII-dense documents.

    ``types``: the types to look for (default all); ``mask``: replace spans by placeholders;
    ``max_density`` / ``max_count``: drop above (null: off); ``default_region``: the region of
    national phone numbers when neither the URL nor ``lid_lang`` says (ISO 3166 code)."""

    name = "pii"
    inputs = ("text",)
    outputs = ("text", *(f"pii_{t}" for t in TYPES), "pii_count", "pii_density", "pii_context")
    score_options = ("types", "mask", "default_region")

    def __init__(self, *, types: Optional[list[str]] = None, mask: bool = True,
                 max_density: Optional[float] = 0.1, max_count: Optional[int] = None,
                 default_region: str = "US"):
        self.types = list(types) if types is not None else list(TYPES)
        unknown = [t for t in self.types if t not in TYPES]
        if unknown or not self.types:
            raise StageError(f"pii: unknown type(s) {unknown}; known: {list(TYPES)}")
        if max_density is not None and not 0.0 <= max_density <= 1.0:
            raise StageError(f"pii: max_density must be in [0, 1], got {max_density}")
        if max_count is not None and max_count < 0:
            raise StageError(f"pii: max_count must be >= 0, got {max_count}")
        if not re.fullmatch(r"[A-Z]{2}", default_region or ""):
            raise StageError(f"pii: default_region must be an ISO 3166 code such as 'US', got {default_region!r}")
        self.mask, self.max_density, self.max_count = mask, max_density, max_count
        self.default_region = default_region
        self._counts: dict[str, int] = {}

    def counters(self) -> dict[str, int]:
        out, self._counts = self._counts, {}
        return out

    def score(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        text = T.text_column(batch)
        hits = {t: pc.match_substring_regex(text, PREFILTER[t]).to_numpy(zero_copy_only=False)
                for t in self.types}
        rows = np.flatnonzero(np.logical_or.reduce(list(hits.values()))) if hits else np.zeros(0, np.int64)
        counts = {t: np.zeros(n, np.int32) for t in TYPES}
        pii_chars = np.zeros(n, np.int64)
        context = np.full(n, None, dtype=object)
        new_text: dict[int, str] = {}
        if len(rows):
            hosts = url_host(batch.column("url")).to_pylist() if "url" in batch.column_names else [None] * n
            langs = T.row_languages(batch, "") if "lid_lang" in batch.column_names else None
            types = frozenset(self.types)
            # per-row Python: ``re`` and validation on rows the RE2 prefilter picked (bench/pii.py)
            for i in rows.tolist():
                s = text[i].as_py()
                pre = frozenset(t for t in self.types if hits[t][i])
                spans = find_spans(s, types, _region(hosts[i], langs[i] if langs is not None else None,
                                                     self.default_region), prefiltered=pre)
                if not spans:
                    continue
                by_chars: dict[str, int] = {}
                for a, b, t in spans:
                    counts[t][i] += 1
                    by_chars[t] = by_chars.get(t, 0) + b - a
                    self._counts[f"found:{t}"] = self._counts.get(f"found:{t}", 0) + 1
                pii_chars[i] = sum(by_chars.values())
                a, b, t = spans[0]
                if self.mask:
                    for _, _, t2 in spans:
                        self._counts[f"masked:{t2}"] = self._counts.get(f"masked:{t2}", 0) + 1
                    new_text[i] = mask_text(s, spans)
                    b, shown = a + len(PLACEHOLDERS[t]), new_text[i]
                else:
                    shown = s
                context[i] = (shown[max(0, a - _CONTEXT):a] + "[[" + shown[a:b] + "]]"
                              + shown[b:b + _CONTEXT]).replace("\n", " ")
        n_chars = pc.utf8_length(text).to_numpy(zero_copy_only=False)
        if new_text:
            vals = batch.column("text").to_pylist()  # nulls stay null
            for i, s in new_text.items():
                vals[i] = s
            batch = set_column(batch, "text", pa.array(vals, pa.large_string()))
        for t in TYPES:
            batch = set_column(batch, f"pii_{t}", pa.array(counts[t], pa.int32()))
        total = np.sum([counts[t] for t in TYPES], axis=0).astype(np.int32) if n else np.zeros(0, np.int32)
        batch = set_column(batch, "pii_count", pa.array(total, pa.int32()))
        batch = set_column(batch, "pii_density", pa.array(T.safe_div(pii_chars, n_chars), pa.float32()))
        batch = set_column(batch, "pii_context", pa.array(context, pa.string()))
        return batch

    def decide(self, batch: pa.Table) -> pa.Array:
        n = batch.num_rows
        dens = pc.fill_null(batch["pii_density"], 0).to_numpy(zero_copy_only=False).astype(np.float64)
        cnt = {t: batch[f"pii_{t}"].to_numpy(zero_copy_only=False) for t in TYPES}
        total = batch["pii_count"].to_numpy(zero_copy_only=False)
        # the type a drop is booked under: the most frequent type in the document (from the
        # columns alone, so ``datapipe refilter`` gives the same reasons)
        stack = np.stack([cnt[t] for t in TYPES]) if n else np.zeros((len(TYPES), 0))
        top = np.array(TYPES, dtype=object)[np.argmax(stack, axis=0)] if n else np.zeros(0, object)
        checks = []
        for t in TYPES:
            is_t = top == t
            if self.max_density is not None:
                checks.append((f"{CHECK}:density_{t}", is_t & (dens > self.max_density) & (total > 0)))
            if self.max_count is not None:
                checks.append((f"{CHECK}:count_{t}", is_t & (total > self.max_count)))
        return reasons_from_masks(n, checks)


# ---------------------------------------------------------------------------
# domain level

DOMAIN_REASON = "pii_domains_v1:domain"


def _domain_sums(item, *, work: str) -> None:
    si, path = item
    t = pq.read_table(path, columns=["url", "text", "pii_density", "pii_count"])
    chars = pc.utf8_length(T.text_column(t)).to_numpy(zero_copy_only=False).astype(np.float64)
    dens = pc.fill_null(t["pii_density"], 0).to_numpy(zero_copy_only=False).astype(np.float64)
    part = pa.table({"domain": url_domain(pc.fill_null(t["url"], "")),
                     "docs": pa.array(np.ones(t.num_rows, np.int64)),
                     "docs_pii": pa.array((t["pii_count"].to_numpy(zero_copy_only=False) > 0).astype(np.int64)),
                     "chars": pa.array(chars), "pii_chars": pa.array(dens * chars)})
    agg = part.group_by("domain").aggregate([(c, "sum") for c in ("docs", "docs_pii", "chars", "pii_chars")])
    from datapipe.rundir import write_parquet_atomic
    write_parquet_atomic(agg, Path(work) / "sums" / f"s={si:06d}.parquet")


def _domain_decide(table: pa.Table, si: int, *, dropped: tuple[str, ...]) -> W.Decisions:
    dom = url_domain(pc.fill_null(table["url"], "")) if "url" in table.column_names else pa.nulls(table.num_rows, pa.string())
    hit = pc.fill_null(pc.is_in(dom, value_set=pa.array(dropped, pa.string())), False)
    reasons = pc.if_else(hit, pa.scalar(DOMAIN_REASON), pa.scalar(None, pa.string()))
    return W.Decisions(table, reasons, reject_columns={"pii_domain": dom})


@register
class PIIDomains(Workflow):
    """Drop whole domains whose PII density over the run is above ``max_domain_density``.

    Needs the ``pii`` stage's columns (run ``pii`` before it). A domain is ranked when it has
    ``min_docs`` documents or more; its density is PII characters / characters over all its
    documents. The ranking (every ranked domain, densest first, ``dropped`` marked) is written
    to ``pii_domains.tsv`` in the step's work folder of the run directory; ``top`` caps how
    many rows it lists."""

    name = "pii_domains"
    inputs = ("text", "url", "pii_density", "pii_count")

    def __init__(self, *, max_domain_density: float = 0.05, min_docs: int = 5, top: int = 10_000):
        if not 0.0 <= max_domain_density <= 1.0:
            raise StageError(f"pii_domains: max_domain_density must be in [0, 1], got {max_domain_density}")
        if min_docs < 1:
            raise StageError(f"pii_domains: min_docs must be >= 1, got {min_docs}")
        self.max_domain_density, self.min_docs, self.top = max_domain_density, min_docs, top

    def run(self, ctx) -> dict:
        from . import _dedup as D
        work = D.fresh_dir(Path(ctx.work_dir) / "pii_domains")
        for p in ctx.inputs:
            names = pq.ParquetFile(p).schema_arrow.names
            missing = [c for c in ("url", "pii_density", "pii_count") if c not in names]
            if missing:
                raise StageError(f"pii_domains: {p} has no column(s) {missing}; run the pii stage before it")
        _, cpu = W.timed_map(ctx.engine, functools.partial(_domain_sums, work=str(work)), list(enumerate(ctx.inputs)))
        files = W.list_parquet(work / "sums")
        tot = pa.concat_tables([pq.read_table(f) for f in files]).group_by("domain").aggregate(
            [(c + "_sum", "sum") for c in ("docs", "docs_pii", "chars", "pii_chars")]) if files else None
        rows = []
        if tot is not None:
            for r in tot.to_pylist():
                docs, chars = r["docs_sum_sum"], r["chars_sum_sum"]
                if r["domain"] and docs >= self.min_docs:
                    rows.append((r["pii_chars_sum_sum"] / chars if chars else 0.0, r["domain"], docs, r["docs_pii_sum_sum"]))
        rows.sort(key=lambda x: (-x[0], x[1]))
        dropped = tuple(d for dens, d, _, _ in rows if dens > self.max_domain_density)
        lines = ["domain\tdocs\tdocs_with_pii\tpii_density\tdropped"]
        lines += [f"{d}\t{docs}\t{dp}\t{dens:.5f}\t{'yes' if dens > self.max_domain_density else 'no'}"
                  for dens, d, docs, dp in rows[: self.top]]
        atomic_write_text(Path(ctx.work_dir) / "pii_domains.tsv", "\n".join(lines) + "\n")
        stats = W.filter_shards(ctx, self.name, functools.partial(_domain_decide, dropped=dropped), shard_cpu=cpu)
        first = next(iter(stats.values()), None)
        if first is not None:
            first.counters.update({"domains_ranked": len(rows), "domains_dropped": len(dropped)})
        return stats
