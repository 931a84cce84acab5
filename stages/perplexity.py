"""CCNet-style perplexity: normalise, SentencePiece, 5-gram KenLM, head/middle/tail buckets.

What CCNet does (``facebookresearch/cc_net``: ``text_normalizer.py``, ``perplexity.py``,
``mine.py``) and what we do:

* **Normalisation** (:func:`normalize`, a line-for-line port of ``text_normalizer.normalize``):
  strip, lower-case, NFD + drop combining marks (accents), every Unicode digit -> ``0``,
  CJK/typographic punctuation mapped to ASCII (``UNICODE_PUNCT``), control characters
  removed. The same function runs at training time (:mod:`stages.lm_train`) and scoring
  time. :func:`normalize_array` is the vectorised (Arrow/RE2) equivalent used on batches;
  the tests check that it equals :func:`normalize` on 75 languages of real sentences.
* **Tokens**: the language's SentencePiece unigram model, pieces joined by spaces.
* **Score**: per paragraph (``\\n``-separated line) ``log10 p`` from the KenLM model with
  ``<s>``/``</s>``, tokens = pieces + 1 (for ``</s>``), both summed over the document;
  ``ppl = 10 ** (-sum(log10 p) / sum(tokens))`` (CCNet's ``DocLM`` and ``pp()``).
  Two documented differences: blank lines are not scored (they would add a cheap
  ``</s>`` and pull perplexity down), and paragraphs are normalised one by one. CCNet's
  ``mine`` pipeline normalises the *whole document* before SentencePiece, which deletes
  the newlines (they are control characters) and glues the last word of a paragraph to
  the first of the next; its DocLM then sees one line. Per-paragraph is what the issue
  and CCNet's DocLM describe, and it does not invent words at paragraph joins.
* **Buckets**: per language, ``ppl < p30`` -> ``head``, ``< p60`` -> ``middle``, else
  ``tail`` (CCNet's ``PerplexityBucket``). Cut-offs come from config (``cutoffs``, or
  ``"ccnet"`` for the table CCNet published for its own Wikipedia models, e.g. English
  340/520) or from the :class:`PerplexityBuckets` workflow, which computes them over the
  run and saves ``cutoffs.json`` in the run directory.

Columns: ``ppl`` (float64, null when not scored), ``ppl_model`` (which model scored the
row, e.g. ``en-5g-3fa2c81b09``), ``ppl_bucket`` (``head``/``middle``/``tail``; ``none``
for languages without a model and for documents with no text; null while cut-offs are
pending for the workflow). Drops: ``perplexity:<bucket>`` for buckets not kept.

Cost: one SentencePiece ``encode`` call per batch (C++), one KenLM ``score`` call per
paragraph (a Python loop: KenLM's Python API has no batch call; measured in
``bench/perplexity_bench.py``), normalisation vectorised with ``pyarrow.compute``.
Models load lazily, per language, on the first batch that needs them.

Model layout (CCNet's ``lm_sp`` layout, so CCNet's released ``en.arpa.bin`` /
``en.sp.model`` work as is): ``<dir>/<lang>.sp.model``, ``<dir>/<lang>.arpa.bin`` and,
for models we trained, ``<dir>/<lang>.model.json``. Train one with
``datapipe train-lm`` / ``python -m stages.perplexity train-lm``.
"""
from __future__ import annotations

if __name__ == "__main__":  # `python -m stages.perplexity`: run the registered module's CLI, not a copy
    import sys

    from stages.perplexity import main

    sys.exit(main())

import hashlib
import json
import os
import re
import time
import unicodedata
import zlib
from functools import partial
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.stage import Filter, StageError, Workflow, register, reasons_from_masks

BUCKETS = ("head", "middle", "tail")
NO_MODEL = "none"
#: first bytes of every KenLM binary model (probing and trie)
KENLM_MAGIC = b"mmap lm http://kheafield.com/code"

# ---------------------------------------------------------------------------
# cc_net text_normalizer, ported as is (the reference; the tests hold the Arrow
# version to it)

UNICODE_PUNCT = {
    "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"',
    "１": '"', "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":",
    "？": "?", "！": "!", "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ",
    "～": "~", "’": "'", "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]",
    "％": "%", "►": "-",
}
_PUNCT_TABLE = str.maketrans(UNICODE_PUNCT)
_PUNCT_DELETE = str.maketrans({k: None for k in UNICODE_PUNCT})
_NON_PRINTING = "".join(map(chr, [*range(0, 32), *range(127, 160)]))
_NON_PRINTING_TABLE = str.maketrans({c: None for c in _NON_PRINTING})
_DIGIT_RE = re.compile(r"\d")


def replace_unicode_punct(text: str) -> str:
    return text.translate(_PUNCT_TABLE)


def remove_unicode_punct(text: str) -> str:
    return text.translate(_PUNCT_DELETE)


def strip_accents(line: str) -> str:
    """NFD, then drop combining marks (category Mn).

    cc_net's version ends with ``if len(output) == line: return line`` (an int compared with
    a str, never true), so the NFD form is always returned: Hangul syllables come back as
    jamo, for instance. Training and scoring both do it, so we keep it.
    """
    nfd = unicodedata.normalize("NFD", line)
    return "".join(c for c in nfd if unicodedata.category(c) != "Mn")


def remove_non_printing_char(text: str) -> str:
    return text.translate(_NON_PRINTING_TABLE)


def normalize(line: str, accent: bool = True, case: bool = True, numbers: bool = True, punct: int = 1) -> str:
    """cc_net ``text_normalizer.normalize``: the text every CCNet LM was trained and scored on."""
    line = line.strip()
    if not line:
        return line
    if case:
        line = line.lower()
    if accent:
        line = strip_accents(line)
    if numbers:
        line = _DIGIT_RE.sub("0", line)
    if punct == 1:
        line = replace_unicode_punct(line)
    elif punct == 2:
        line = remove_unicode_punct(line)
    line = remove_non_printing_char(line)
    return line


# -- vectorised equivalent ----------------------------------------------------

#: what Python's str.strip() removes (str.isspace, Python 3.11 / Unicode 14); a test checks it
PY_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                 "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_PUNCT_RE2 = "[" + "".join(re.escape(c) for c in UNICODE_PUNCT) + "]"
_NON_PRINTING_RE2 = r"[\x00-\x1f\x7f-\x9f]"


def normalize_array(lines: pa.Array | pa.ChunkedArray) -> pa.Array:
    """:func:`normalize` over a string array, in Arrow/RE2 (C++).

    Python's ``\\d`` is Unicode category Nd, as RE2's ``\\p{Nd}``. The one place where
    Arrow's case mapping differs from ``str.lower()`` is Greek capital sigma (Python maps
    it to final ``ς`` at the end of a word): rows containing ``Σ`` are lower-cased by
    Python. Punctuation is mapped only on the rows that have some. Remaining differences
    can only come from the Unicode versions of Python, utf8proc and RE2 (characters added
    after Unicode 14).
    """
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    if len(lines) == 0:
        return lines
    x = pc.utf8_trim(lines, characters=PY_WHITESPACE)
    sigma = pc.fill_null(pc.match_substring(x, "Σ"), False)
    lower = pc.utf8_lower(x)
    if pc.any(sigma).as_py():  # Python's context-dependent final sigma
        lower = pc.replace_with_mask(lower, sigma, pa.array([v.lower() for v in x.filter(sigma).to_pylist()],
                                                             type=x.type))
    x = pc.utf8_normalize(lower, form="NFD")
    x = pc.replace_substring_regex(x, pattern=r"\p{Mn}", replacement="")
    x = pc.replace_substring_regex(x, pattern=r"\p{Nd}", replacement="0")
    x = pc.replace_substring_regex(x, pattern=_NON_PRINTING_RE2, replacement="")
    # punctuation after control characters (the mapping neither makes nor removes them),
    # only on the rows that have some
    has_punct = pc.fill_null(pc.match_substring_regex(x, _PUNCT_RE2), False)
    if pc.any(has_punct).as_py():
        sub = x.filter(has_punct)
        for src, dst in UNICODE_PUNCT.items():
            sub = pc.replace_substring(sub, src, dst)
        x = pc.replace_with_mask(x, has_punct, sub)
    return x


# ---------------------------------------------------------------------------
# CCNet's published cut-offs (cc_net/data/cutoff.csv, rows 30 and 60): valid only for
# CCNet's own Wikipedia-trained models (``make dl_lm`` there), not for models we train.

_CCNET_LANGS = ("de it fr nl pl pt es no da id lt fi en hu ro ko ar bn fa ru uk ml my lv is ca ne et hy ja "
                "hr hi az el cs bg he zh ka km gu mk kn mr af mn kk be").split()
_CCNET_P30 = (370, 220, 180, 430, 160, 170, 180, 430, 380, 600, 190, 1110, 340, 80, 180, 920, 490, 190, 370, 210,
              140, 2430, 2530, 1130, 850, 210, 860, 1270, 750, 1110, 720, 480, 600, 450, 820, 450, 1280, 1460, 910,
              1040, 1110, 530, 2210, 1380, 540, 680, 610, 670)
_CCNET_P60 = (590, 360, 330, 650, 260, 270, 290, 680, 600, 970, 270, 1500, 520, 140, 270, 2130, 790, 300, 700, 310,
              220, 3220, 3040, 1480, 1190, 330, 1130, 1620, 1080, 1450, 910, 790, 950, 670, 1140, 680, 1710, 1950,
              1310, 2180, 1570, 740, 2800, 1870, 770, 1010, 930, 910)
CCNET_CUTOFFS: dict[str, tuple[float, float]] = {
    lang: (float(a), float(b)) for lang, a, b in zip(_CCNET_LANGS, _CCNET_P30, _CCNET_P60, strict=True)
}


def assign_buckets(ppl: np.ndarray, langs: list[str | None], cutoffs: dict[str, tuple[float, float]],
                   scored: np.ndarray) -> np.ndarray:
    """``head``/``middle``/``tail`` per row; ``none`` where not ``scored``; None where the
    row was scored but its language has no cut-offs yet."""
    out = np.full(len(ppl), None, dtype=object)
    out[~scored] = NO_MODEL
    langs_arr = np.asarray(langs, dtype=object)
    for lang, (p_head, p_tail) in cutoffs.items():
        sel = scored & (langs_arr == lang)
        if not sel.any():
            continue
        v = ppl[sel]
        out[sel] = np.where(v < p_head, "head", np.where(v < p_tail, "middle", "tail"))
    return out


def bucket_reasons(buckets: pa.Array | pa.ChunkedArray, keep: tuple[str, ...], check: str = "perplexity") -> pa.Array:
    """``<check>:<bucket>`` for rows whose bucket is a real one and not kept; null otherwise."""
    if isinstance(buckets, pa.ChunkedArray):
        buckets = buckets.combine_chunks()
    drop = [b for b in BUCKETS if b not in keep]
    return reasons_from_masks(len(buckets), [
        (f"{check}:{b}", np.asarray(pc.fill_null(pc.equal(buckets, b), False), dtype=bool)) for b in drop])


def _bucket_counts(buckets: pa.Array) -> dict[str, int]:
    vc = pc.value_counts(pc.fill_null(buckets, "pending"))
    return {f"bucket:{v['values'].as_py()}": v["counts"].as_py() for v in vc}


# ---------------------------------------------------------------------------
# models

class LMFiles:
    """The files of one language's model and a short id naming it in ``ppl_model``."""

    def __init__(self, lang: str, sp_path: Path, lm_path: Path):
        self.lang, self.sp_path, self.lm_path = lang, sp_path, lm_path
        self.meta_path = lm_path.with_name(f"{lang}.model.json")
        self._id: str | None = None

    @property
    def model_id(self) -> str:
        if self._id is None:
            self._id = self._model_id()
        return self._id

    def _model_id(self) -> str:
        if self.meta_path.is_file():
            try:
                meta = json.loads(self.meta_path.read_text())
                return str(meta["model_id"])
            except (ValueError, KeyError):
                pass
        h = hashlib.sha1(self.sp_path.read_bytes())
        h.update(str(self.lm_path.stat().st_size).encode())
        with open(self.lm_path, "rb") as fh:
            h.update(fh.read(1 << 16))
        return f"{self.lang}-{h.hexdigest()[:10]}"

    def validate(self) -> None:
        for p in (self.sp_path, self.lm_path):
            if not p.is_file():
                raise StageError(f"perplexity: model file {p} not found; train one with "
                                 f"`datapipe train-lm --lang {self.lang} --input CORPUS --out {p.parent}`")
        with open(self.lm_path, "rb") as fh:
            head = fh.read(len(KENLM_MAGIC))
        if head != KENLM_MAGIC:
            raise StageError(f"perplexity: {self.lm_path} is not a KenLM binary model "
                             f"(expected it to start with {KENLM_MAGIC.decode()!r}); rebuild it with build_binary")
        import sentencepiece as spm  # ~ms: a corrupt SentencePiece model fails here, not mid-run
        try:
            spm.SentencePieceProcessor(model_file=str(self.sp_path))
        except Exception as e:  # noqa: BLE001 - sentencepiece raises OSError/RuntimeError by version
            raise StageError(f"perplexity: {self.sp_path} is not a SentencePiece model: {e}") from None


def discover_models(models: dict[str, str] | None, model_dir: str | None) -> dict[str, LMFiles]:
    """Languages -> model files from ``model_dir`` (every ``<lang>.arpa.bin``) and ``models``
    (``lang -> dir``; wins over ``model_dir``)."""
    found: dict[str, LMFiles] = {}
    if model_dir is not None:
        d = Path(model_dir)
        if not d.is_dir():
            raise StageError(f"perplexity: model_dir {d} does not exist; train a model with "
                             f"`datapipe train-lm --lang LANG --input CORPUS --out {d}`")
        for lm in sorted(d.glob("*.arpa.bin")):
            lang = lm.name[: -len(".arpa.bin")]
            found[lang] = LMFiles(lang, d / f"{lang}.sp.model", lm)
        if not found:
            raise StageError(f"perplexity: no <lang>.arpa.bin model in {d}")
    for lang, path in (models or {}).items():
        d = Path(path)
        if d.is_file():  # a path to the .arpa.bin itself
            d = d.parent
        found[lang] = LMFiles(lang, d / f"{lang}.sp.model", d / f"{lang}.arpa.bin")
    if not found:
        raise StageError("perplexity: no language model configured; set `model_dir` or `models` "
                         "(train one with `datapipe train-lm`)")
    for f in found.values():
        f.validate()
        f.model_id  # noqa: B018 - read the id now (cheap), not in every worker
    return found


class LoadedLM:
    """SentencePiece + KenLM of one language, loaded."""

    def __init__(self, files: LMFiles):
        import kenlm
        import sentencepiece as spm

        self.files = files
        self.sp = spm.SentencePieceProcessor(model_file=str(files.sp_path))
        self.lm = kenlm.Model(str(files.lm_path))

    def score_lines(self, norm_lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(log10 p, tokens)`` per already normalised line (tokens include ``</s>``)."""
        if not norm_lines:
            return np.zeros(0), np.zeros(0)
        pieces = self.sp.encode(norm_lines, out_type=str)
        score = self.lm.score
        # measured exception to "no per-row Python loop": KenLM's Python API scores one
        # sentence per call; this loop is ~25% of the stage's time (bench/perplexity_bench.py)
        logp = np.fromiter((score(" ".join(p)) for p in pieces), dtype=np.float64, count=len(pieces))
        ntok = np.fromiter((len(p) + 1 for p in pieces), dtype=np.float64, count=len(pieces))
        return logp, ntok

    def perplexity(self, texts: pa.Array) -> np.ndarray:
        """Document perplexities (NaN for documents with no non-blank line)."""
        return doc_perplexity(texts, self.score_lines)


def doc_perplexity(texts: pa.Array | pa.ChunkedArray, score_lines) -> np.ndarray:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    n = len(texts)
    lists = pc.split_pattern(pc.fill_null(texts, ""), pattern="\n")
    parents = np.asarray(pc.list_parent_indices(lists))
    norm = normalize_array(pc.list_flatten(lists))
    keep = np.asarray(pc.greater(pc.utf8_length(norm), 0), dtype=bool)
    logp, ntok = score_lines(norm.filter(pa.array(keep)).to_pylist())
    parents = parents[keep]
    lsum = np.bincount(parents, weights=logp, minlength=n)
    tsum = np.bincount(parents, weights=ntok, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tsum > 0, 10.0 ** (-lsum / np.where(tsum > 0, tsum, 1)), np.nan)


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


def _check_keep(keep_buckets) -> tuple[str, ...]:
    bad = [b for b in keep_buckets if b not in BUCKETS]
    if bad:
        raise StageError(f"perplexity: keep_buckets {bad} unknown; buckets are {list(BUCKETS)}")
    return tuple(keep_buckets)


# ---------------------------------------------------------------------------

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
        self.keep = _check_keep(keep_buckets)
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
        for k, v in _bucket_counts(buckets).items():
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
                    seconds=time.process_time() - t0, dropped=dropped, counters=_bucket_counts(buckets))
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
        self.keep = _check_keep(keep_buckets)
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


# ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """``python -m stages.perplexity train-lm --lang en --input FILES --out DIR``"""
    import argparse

    from stages import lm_train

    parser = argparse.ArgumentParser(prog="python -m stages.perplexity")
    sub = parser.add_subparsers(dest="cmd", required=True)
    lm_train.add_arguments(sub.add_parser("train-lm", help=lm_train.train_lm.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    return lm_train.run_cli(args)

