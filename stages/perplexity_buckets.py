"""The ``perplexity_buckets`` workflow: per-language perplexity percentiles over the run, then buckets.

A global pass (two passes over the run's shards, with ``cutoffs.json`` as the on-disk
intermediate), run after the ``perplexity`` stage for languages without configured
cut-offs. Buckets and drop reasons are :mod:`datapipe.lm.buckets`, shared with the stage.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.lm.buckets import NO_MODEL, assign_buckets, bucket_counts, bucket_reasons, check_keep
from datapipe.schema import set_column
from datapipe.stage import StageError, Workflow, register
from datapipe.workflow import Decisions, filter_shards, run_on


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


def _bucket_decisions(t: pa.Table, si: int, *, cutoffs: dict[str, tuple[float, float]], keep: tuple[str, ...],
                      lang_column: str | None, check: str) -> Decisions:
    """``ppl_bucket`` on every row from the run's cut-offs; buckets not in ``keep`` dropped."""
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
    return Decisions(set_column(t, "ppl_bucket", buckets), bucket_reasons(buckets, keep, check),
                     counters=bucket_counts(buckets))


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
        parts = run_on(ctx.engine, fn, ctx.inputs)
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
        return filter_shards(ctx, self.name, partial(_bucket_decisions, cutoffs=cut, keep=self.keep,
                                                     lang_column=self.lang_column, check=self.name))
