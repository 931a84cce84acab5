"""The ``perplexity`` stage: CCNet-style perplexity per document, head/middle/tail buckets, keep buckets.

What CCNet does (``facebookresearch/cc_net``: ``text_normalizer.py``, ``perplexity.py``,
``mine.py``) and what we do:

* **Normalisation**: CCNet's ``text_normalizer.normalize``, ported in
  :mod:`datapipe.lm.normalizer` (the same code runs at training time, :mod:`datapipe.lm.train`).
* **Tokens**: the language's SentencePiece unigram model, pieces joined by spaces.
* **Score** (:func:`datapipe.lm.score.doc_perplexity`): per paragraph (``\\n``-separated line)
  ``log10 p`` from the KenLM model with ``<s>``/``</s>``, tokens = pieces + 1 (for ``</s>``),
  both summed over the document; ``ppl = 10 ** (-sum(log10 p) / sum(tokens))`` (CCNet's
  ``DocLM`` and ``pp()``).
  Two documented differences: blank lines are not scored (they would add a cheap
  ``</s>`` and pull perplexity down), and paragraphs are normalised one by one. CCNet's
  ``mine`` pipeline normalises the *whole document* before SentencePiece, which deletes
  the newlines (they are control characters) and glues the last word of a paragraph to
  the first of the next; its DocLM then sees one line. Per-paragraph is what the issue
  and CCNet's DocLM describe, and it does not invent words at paragraph joins.
* **Buckets** (:mod:`datapipe.lm.buckets`): per language, ``ppl < p30`` -> ``head``, ``< p60``
  -> ``middle``, else ``tail`` (CCNet's ``PerplexityBucket``). Cut-offs come from config
  (``cutoffs``, or ``"ccnet"`` for the table CCNet published for its own Wikipedia models,
  e.g. English 340/520) or from the ``perplexity_buckets`` workflow
  (:class:`PerplexityBuckets`), which computes them over the run and saves
  ``cutoffs.json`` in the run directory.

Columns: ``ppl`` (float64, null when not scored), ``ppl_model`` (which model scored the
row, e.g. ``en-5g-3fa2c81b09``), ``ppl_bucket`` (``head``/``middle``/``tail``; ``none``
for languages without a model and for documents with no text; null while cut-offs are
pending for the workflow). Drops: ``perplexity:<bucket>`` for buckets not kept.

Cost: one SentencePiece ``encode`` call per batch (C++), one KenLM ``score`` call per
paragraph (a Python loop: KenLM's Python API has no batch call; measured in
``bench/perplexity_bench.py``), normalisation vectorised with ``pyarrow.compute``.
Models load lazily, per language, on the first batch that needs them.

Model layout (CCNet's ``lm_sp`` layout, so CCNet's released ``en.arpa.bin`` /
``en.sp.model`` work as is; :mod:`datapipe.lm.files`): ``<dir>/<lang>.sp.model``,
``<dir>/<lang>.arpa.bin`` and, for models we trained, ``<dir>/<lang>.model.json``.
Train one with ``datapipe train-lm``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from functools import partial
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.lm.buckets import CCNET_CUTOFFS, NO_MODEL, assign_buckets, bucket_counts, bucket_reasons, check_keep
from datapipe.lm.files import discover_models
from datapipe.lm.score import LoadedLM
from datapipe.stage import Filter, StageError, Workflow, register


def _check_cutoffs(cutoffs: dict[str, list[float]] | str | None) -> dict[str, tuple[float, float]]:
    if cutoffs is None:
        return {}
    if cutoffs == "ccnet":
        return dict(CCNET_CUTOFFS)
    if not isinstance(cutoffs, dict):
        raise StageError(f"perplexity: cutoffs must be a mapping lang -> [p30, p60] or 'ccnet', got {cutoffs!r}")
    out = {}
    for lang, v in cutoffs.items():
        if len(v) != 2 or not (0 < float(v[0]) <= float(v[1])):
            raise StageError(f"perplexity: cutoffs.{lang} must be [head_max, middle_max] with 0 < head_max <= "
                             f"middle_max, got {list(v)}")
        out[str(lang)] = (float(v[0]), float(v[1]))
    return out


@register
class Perplexity(Filter):
    """Score each document's perplexity under its language's KenLM model; bucket; keep buckets.

    Options: ``model_dir`` (folder of ``<lang>.sp.model`` + ``<lang>.arpa.bin``) and/or
    ``models`` (``lang -> folder``); ``cutoffs`` (``lang -> [p30, p60]``, or ``"ccnet"`` for
    CCNet's published table, valid only with CCNet's own models; languages without
    cut-offs are left pending (``ppl_bucket`` null, kept) for the ``perplexity_buckets``
    workflow); ``keep_buckets`` (default head + middle, as RedPajama-v2);
    ``lang_column`` (``lid_lang``; null for single-model runs where every row is scored
    with the one model).

    Rows whose language has no model, or with no text, get bucket ``none`` and pass.
    Counters: ``bucket:<b>`` per batch (``bucket:pending`` for rows awaiting cut-offs).
    """

    name: ClassVar[str] = "perplexity"
    inputs: ClassVar[tuple[str, ...]] = ("text", "lid_lang")
    outputs: ClassVar[tuple[str, ...]] = ("ppl", "ppl_model", "ppl_bucket")
    needs_model: ClassVar[bool] = True
    score_options: ClassVar[tuple[str, ...]] = ("models", "model_dir", "cutoffs", "lang_column")

    def __init__(self, *, models: dict[str, str] | None = None, model_dir: str | None = None,
                 cutoffs: dict[str, list[float]] | Literal["ccnet"] | None = None,
                 keep_buckets: list[str] = ["head", "middle"],  # noqa: B006 - never mutated
                 lang_column: str | None = "lid_lang"):
        self.files = discover_models(models, model_dir)
        self.cutoffs = _check_cutoffs(cutoffs)
        self.keep = check_keep(keep_buckets)
        if lang_column is None and len(self.files) != 1:
            raise StageError(f"perplexity: lang_column is null, so exactly one model is needed; found "
                             f"{sorted(self.files)}")
        self.lang_column = lang_column
        self.inputs = ("text",) + ((lang_column,) if lang_column else ())
        self._lms: dict[str, LoadedLM] = {}
        self._counts: dict[str, int] = {}

    def __getstate__(self):  # models are reloaded in each worker
        d = dict(self.__dict__)
        d["_lms"] = {}
        return d

    def setup(self) -> None:
        import kenlm  # noqa: F401 - fail early in the worker if the module is missing
        import sentencepiece  # noqa: F401

    def _lm(self, lang: str) -> LoadedLM:
        lm = self._lms.get(lang)
        if lm is None:
            lm = self._lms[lang] = LoadedLM(self.files[lang])
        return lm

    def _langs(self, batch: pa.Table) -> list[str | None]:
        if self.lang_column is None:
            return [next(iter(self.files))] * batch.num_rows
        return batch[self.lang_column].to_pylist()

    def score(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        langs = self._langs(batch)
        langs_arr = np.asarray(langs, dtype=object)
        ppl = np.full(n, np.nan)
        model = np.full(n, None, dtype=object)
        texts = batch["text"]
        for lang in sorted({x for x in langs if x in self.files}):
            idx = np.flatnonzero(langs_arr == lang)
            lm = self._lm(lang)
            ppl[idx] = lm.perplexity(texts.take(pa.array(idx)))
            model[idx] = lm.files.model_id
        scored = ~np.isnan(ppl)
        buckets = pa.array(assign_buckets(ppl, langs, self.cutoffs, scored), pa.string())
        for k, v in bucket_counts(buckets).items():
            self._counts[k] = self._counts.get(k, 0) + v
        out = batch
        for name, col in (("ppl", pa.array(ppl, pa.float64(), mask=~scored)),
                          ("ppl_model", pa.array(model, pa.string())), ("ppl_bucket", buckets)):
            if name in out.column_names:
                out = out.drop_columns([name])
            out = out.append_column(name, col)
        return out

    def decide(self, batch: pa.Table) -> pa.Array:
        return bucket_reasons(batch["ppl_bucket"], self.keep)

    def counters(self) -> dict[str, int]:
        c, self._counts = self._counts, {}
        return c


# ---------------------------------------------------------------------------
# the global pass: per-language percentiles over the run, then buckets

def compute_cutoffs(ppl_by_lang: dict[str, np.ndarray], percentiles: tuple[float, float] = (30.0, 60.0),
                    *, min_docs: int = 1) -> dict[str, tuple[float, float]]:
    """``lang -> (p_head, p_tail)``: the given percentiles of each language's perplexities
    (languages with fewer than ``min_docs`` values are left out)."""
    out = {}
    for lang, v in sorted(ppl_by_lang.items()):
        v = np.asarray(v, dtype=np.float64)
        v = v[~np.isnan(v)]
        if len(v) >= max(1, min_docs):
            lo, hi = np.percentile(v, percentiles)
            out[lang] = (float(lo), float(hi))
    return out


def _pending_sample(path: str, *, lang_column: str | None, frac: float, seed: int) -> dict[str, np.ndarray]:
    """Perplexities of rows still waiting for a bucket in one shard, by language (sampled)."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    cols = ["ppl"] + [c for c in ("ppl_bucket", lang_column) if c and c in schema.names]
    t = pq.read_table(path, columns=cols)
    ppl = np.asarray(pc.fill_null(t["ppl"], np.nan), dtype=np.float64)
    pending = ~np.isnan(ppl)
    if "ppl_bucket" in t.column_names:
        pending &= np.asarray(pc.is_null(t["ppl_bucket"]), dtype=bool)
    if frac < 1.0:
        rng = np.random.default_rng([seed, zlib.crc32(os.path.basename(path).encode())])
        pending &= rng.random(len(ppl)) < frac
    langs = (np.asarray(t[lang_column].to_pylist(), dtype=object) if lang_column and lang_column in t.column_names
             else np.full(len(ppl), "_all", dtype=object))
    return {str(lang): ppl[pending & (langs == lang)] for lang in set(langs[pending].tolist())}


def _apply_buckets(path: str, *, out_path: str, cutoffs: dict[str, tuple[float, float]], keep: tuple[str, ...],
                   lang_column: str | None, compression: str, check: str, max_rejects: int) -> tuple:
    import pyarrow.parquet as pq

    from datapipe.rundir import write_parquet_atomic
    from datapipe.stats import StageStats

    t0 = time.process_time()
    t = pq.read_table(path)
    n = t.num_rows
    ppl = np.asarray(pc.fill_null(t["ppl"], np.nan), dtype=np.float64)
    langs = (t[lang_column].to_pylist() if lang_column and lang_column in t.column_names else ["_all"] * n)
    old = t["ppl_bucket"].to_pylist() if "ppl_bucket" in t.column_names else [None] * n
    pending = np.array([b is None for b in old]) & ~np.isnan(ppl)
    new = assign_buckets(ppl, langs, cutoffs, ~np.isnan(ppl))
    # rows already bucketed by configured cut-offs keep their bucket; pending rows of a
    # language without enough data for percentiles pass as "none"
    merged = [(nb if p else ob) or NO_MODEL for p, nb, ob in zip(pending, new, old)]
    buckets = pa.array(merged, pa.string())
    if "ppl_bucket" in t.column_names:
        t = t.drop_columns(["ppl_bucket"])
    t = t.append_column("ppl_bucket", buckets)
    reasons = bucket_reasons(buckets, keep, check)
    drop = pc.is_valid(reasons)
    kept = t.filter(pc.invert(drop))
    rejected = t.filter(drop).append_column("reason", reasons.filter(drop))
    write_parquet_atomic(kept, out_path, compression=compression)

    def nbytes(tb):
        return int(pc.sum(pc.binary_length(tb["text"])).as_py() or 0) if "text" in tb.column_names else 0

    dropped = {}
    if rejected.num_rows:
        for v in pc.value_counts(rejected["reason"]):
            dropped[v["values"].as_py()] = v["counts"].as_py()
    st = StageStats(stage=check, rows_in=n, rows_out=kept.num_rows, bytes_in=nbytes(t), bytes_out=nbytes(kept),
                    seconds=time.process_time() - t0, dropped=dropped, counters=bucket_counts(buckets))
    return st, rejected.slice(0, max_rejects)


@register
class PerplexityBuckets(Workflow):
    """Per-language perplexity percentiles over the run, then ``ppl_bucket`` and the filter.

    Runs after the ``perplexity`` stage (without configured cut-offs for the languages to
    bucket). Pass 1 reads only the ``ppl``/``ppl_bucket``/language columns of every shard,
    samples at most ``sample_size`` pending rows (uniformly, seeded) and computes each
    language's ``percentiles`` (30th/60th, as CCNet); languages with fewer than
    ``min_docs`` sampled rows get bucket ``none``. The cut-offs are saved as
    ``<work_dir>/cutoffs.json`` (reused when the run resumes with the same inputs and
    options). Pass 2 rewrites every shard with ``ppl_bucket`` and drops buckets not in
    ``keep_buckets`` (``perplexity_buckets:tail``). Rows bucketed by configured cut-offs
    keep their bucket. Cost: one column read plus one read/write of each shard.
    """

    name: ClassVar[str] = "perplexity_buckets"
    inputs: ClassVar[tuple[str, ...]] = ("ppl",)
    outputs: ClassVar[tuple[str, ...]] = ("ppl_bucket",)

    def __init__(self, *, percentiles: list[float] = [30.0, 60.0],  # noqa: B006 - never mutated
                 keep_buckets: list[str] = ["head", "middle"],  # noqa: B006
                 lang_column: str | None = "lid_lang", sample_size: int = 1_000_000, min_docs: int = 50,
                 seed: int = 0):
        if len(percentiles) != 2 or not (0 < percentiles[0] < percentiles[1] < 100):
            raise StageError(f"perplexity_buckets: percentiles must be [head, tail] with 0 < head < tail < 100, "
                             f"got {percentiles}")
        if sample_size < 1 or min_docs < 1:
            raise StageError("perplexity_buckets: sample_size and min_docs must be >= 1")
        self.percentiles = (float(percentiles[0]), float(percentiles[1]))
        self.keep = check_keep(keep_buckets)
        self.lang_column, self.sample_size, self.min_docs, self.seed = lang_column, sample_size, min_docs, seed

    def _key(self, inputs: list[str]) -> str:
        h = hashlib.sha1(json.dumps([sorted(os.path.basename(p) for p in inputs), self.percentiles,
                                     self.lang_column, self.sample_size, self.min_docs, self.seed]).encode())
        return h.hexdigest()

    def cutoffs(self, ctx) -> dict[str, tuple[float, float]]:
        """Compute (or reload) the per-language cut-offs of this run."""
        import pyarrow.parquet as pq

        from datapipe.rundir import atomic_write_json

        path = Path(ctx.work_dir) / "cutoffs.json"
        key = self._key(ctx.inputs)
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return {k: tuple(v) for k, v in saved["cutoffs"].items()}
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in ctx.inputs)
        frac = min(1.0, self.sample_size / total) if total else 1.0
        fn = partial(_pending_sample, lang_column=self.lang_column, frac=frac, seed=self.seed)
        parts = _map(ctx, fn, ctx.inputs)
        by_lang: dict[str, list[np.ndarray]] = {}
        for part in parts:
            for lang, v in part.items():
                by_lang.setdefault(lang, []).append(v)
        merged = {lang: np.concatenate(v) for lang, v in by_lang.items()}
        cut = compute_cutoffs(merged, self.percentiles, min_docs=self.min_docs)
        atomic_write_json(path, {
            "key": key, "percentiles": list(self.percentiles), "sample_fraction": frac, "rows": total,
            "cutoffs": {k: list(v) for k, v in cut.items()},
            "sampled": {k: int(len(v)) for k, v in sorted(merged.items())},
            "too_few_docs": sorted(k for k in merged if k not in cut),
        })
        return cut

    def run(self, ctx) -> dict:
        cut = self.cutoffs(ctx)
        compression = getattr(ctx, "compression", "zstd")
        items = [(p, ctx.output_path(p)) for p in ctx.inputs]
        fn = partial(_apply_star, cutoffs=cut, keep=self.keep, lang_column=self.lang_column,
                     compression=compression, check=self.name, max_rejects=200)
        results = _map(ctx, fn, items)
        out = {}
        for (p, _), (st, rejected) in zip(items, results):
            shard = os.path.basename(p)
            shard = shard[: -len(".parquet")] if shard.endswith(".parquet") else shard
            if rejected.num_rows and hasattr(ctx, "rejects"):
                ctx.rejects(self.name, shard, rejected)
            out[os.path.basename(p)] = st
        return out


def _apply_star(item: tuple[str, str], **kw):
    return _apply_buckets(item[0], out_path=item[1], **kw)


def _map(ctx, fn, items: list) -> list:
    engine = getattr(ctx, "engine", None)
    if engine is not None and len(items) > 1:
        return engine.map(fn, items)
    return [fn(x) for x in items]
