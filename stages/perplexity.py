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
  (:mod:`stages.perplexity_buckets`), which computes them over the run and saves
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

from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa

from datapipe.lm.buckets import CCNET_CUTOFFS, assign_buckets, bucket_counts, bucket_reasons, check_keep
from datapipe.lm.files import discover_models
from datapipe.lm.score import LoadedLM
from datapipe.schema import set_column
from datapipe.stage import Filter, StageError, register


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
            out = set_column(out, name, col)
        return out

    def decide(self, batch: pa.Table) -> pa.Array:
        return bucket_reasons(batch["ppl_bucket"], self.keep)

    def counters(self) -> dict[str, int]:
        c, self._counts = self._counts, {}
        return c

