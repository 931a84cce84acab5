"""The rule base of the heuristic filters: :class:`RuleFilter`, threshold checks, stop words.

Every heuristic rule set (:mod:`stages.gopher`, :mod:`stages.c4`, :mod:`stages.fineweb`,
:mod:`stages.nsfw`) is one registered :class:`RuleFilter` and every rule in it is its
own named, versioned check: a dropped document's reason is ``<check>_v1:<rule>``
(``gopher_quality_v1:word_count``, ``c4_v1:lorem_ipsum`` ...), so ``datapipe stats``
counts drops per rule and ``datapipe inspect`` shows samples.

Score, then decide. ``score(batch)`` writes one column per measured quantity
(``gq_*``, ``gr_*``, ``c4_*``, ``fw_*``) on every row; ``decide(batch)`` reads only
those columns and the thresholds, so ``datapipe refilter`` re-applies new thresholds
to scored output without re-reading any text (:mod:`datapipe.refilter`). Options
that change what ``score`` measures are listed in ``score_options``; refilter refuses
to change them.

Thresholds may differ per language: ``per_language: {zh: {min_mean_word_len: null}}``
overrides any threshold for rows whose ``lid_lang`` is that language (rows without
``lid_lang`` use ``default_language``). A threshold set to ``null`` turns its rule off.
Chinese, Japanese and Thai are tokenised into characters / clusters (see
:mod:`stages._text`), so their mean-word-length rule is off by default.

Semantics follow the papers; where they are ambiguous we follow datatrove 0.10.1
(``src/datatrove/pipeline/filters/*``) and each class lists where and why we differ.

Speed: everything is vectorised over the batch with ``pyarrow.compute`` (RE2, C++)
and NumPy: tokenisation, line and paragraph splits, duplicate counts and the n-gram
statistics (exact n-gram ids built by iterated ``np.unique``, no hashing). There is
no per-document or per-token Python loop in these filters (``bench/filters.py``).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.stage import Filter, StageError, reasons_from_masks

from . import _text as T


class RuleFilter(Filter):
    """A filter whose ``decide`` compares score columns with thresholds, rule by rule.

    Subclasses set ``check`` (``gopher_quality_v1``) and ``rules``: tuples
    ``(rule, column, op, option)`` meaning "drop with ``<check>:<rule>`` when
    ``column op threshold``", ``op`` one of ``<``, ``<=``, ``>``, ``>=``, ``true``
    (drop when the boolean column is true and the option is true) or ``set`` (drop
    when the string column is non-empty and the option is true). The first
    failing rule names the drop. Null or NaN scores never fail a rule.
    """

    check: ClassVar[str] = ""
    rules: ClassVar[tuple[tuple[str, str, str, str], ...]] = ()
    #: options that change what score() measures: refilter cannot re-tune these
    score_options: ClassVar[tuple[str, ...]] = ()
    #: built-in per-language overrides, merged under the user's ``per_language``
    default_per_language: ClassVar[dict[str, dict[str, Any]]] = {}

    def _init_rules(self, thresholds: dict[str, Any], per_language: dict | None, default_language: str) -> None:
        self.thresholds = dict(thresholds)
        self.default_language = default_language
        merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in self.default_per_language.items()}
        for lang, opts in (per_language or {}).items():
            if not isinstance(opts, dict):
                raise StageError(f"{self.name}: per_language.{lang} must be a mapping of thresholds")
            unknown = set(opts) - set(self.thresholds)
            if unknown:
                raise StageError(f"{self.name}: per_language.{lang}: unknown threshold(s) {sorted(unknown)}; "
                                 f"known: {sorted(self.thresholds)}")
            merged.setdefault(str(lang).lower(), {}).update(opts)
        self.per_language = merged

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "outputs" not in cls.__dict__:
            cls.outputs = tuple(dict.fromkeys(c for _, c, _, _ in cls.rules))

    def decide(self, batch: pa.Table) -> pa.Array:
        n = batch.num_rows
        missing = [c for c in self.outputs if c not in batch.column_names]
        if missing:
            raise StageError(f"{self.name}: score column(s) {missing} missing; score the batch first")
        langs = T.row_languages(batch, self.default_language) if self.per_language else None
        checks = []
        for rule, column, op, option in self.rules:
            col = batch.column(column)
            if op == "set":  # a string column naming a hit (e.g. the listed domain)
                on = T.per_row_thresholds(langs, n, self.thresholds[option], self.per_language, option)
                vals = pc.fill_null(pc.not_equal(col, ""), False).to_numpy(zero_copy_only=False).astype(bool)
                checks.append((f"{self.check}:{rule}", vals & (on > 0)))
                continue
            if op == "true":
                on = T.per_row_thresholds(langs, n, self.thresholds[option], self.per_language, option)
                vals = pc.fill_null(col, False).to_numpy(zero_copy_only=False).astype(bool)
                checks.append((f"{self.check}:{rule}", vals & (on > 0)))
                continue
            thr = T.per_row_thresholds(langs, n, self.thresholds[option], self.per_language, option)
            vals = pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
            with np.errstate(invalid="ignore"):
                fail = {"<": vals < thr, "<=": vals <= thr, ">": vals > thr, ">=": vals >= thr}[op]
            checks.append((f"{self.check}:{rule}", fail))  # NaN compares False: never fails
        return reasons_from_masks(n, checks)


def check_range(name: str, lo, hi, what: str) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise StageError(f"{name}: min_{what} ({lo}) > max_{what} ({hi})")


def check_frac(name: str, **fracs) -> None:
    for k, v in fracs.items():
        if v is not None and not 0.0 <= v <= 1.0:
            raise StageError(f"{name}: {k} must be in [0, 1], got {v}")


#: the Gopher stop words (Rae et al. 2021, A.1); other languages: stages/data/stopwords/
GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
#: justext file names for ISO 639-1 codes (stop_words_dir may hold either naming)
_JUSTEXT_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian",
    "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French", "ga": "Irish", "gl": "Galician",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "id": "Indonesian", "is": "Icelandic",
    "it": "Italian", "ko": "Korean", "la": "Latin", "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian",
    "ms": "Malay", "nl": "Dutch", "nb": "Norwegian_Bokmal", "no": "Norwegian_Bokmal", "nn": "Norwegian_Nynorsk",
    "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian",
    "sq": "Albanian", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu",
    "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese",
}


def load_stop_words(stop_words: dict[str, list[str]] | None, stop_words_dir: str | None) -> dict[str, frozenset[str]]:
    """Stop words per language: packaged defaults, then ``stop_words_dir``, then ``stop_words``.

    ``stop_words_dir`` holds ``<iso>.txt`` files or justext's ``<Language>.txt`` files.
    """
    out: dict[str, frozenset[str]] = {"en": frozenset(GOPHER_STOP_WORDS)}
    pkg = T.DATA_DIR / "stopwords"
    if pkg.is_dir():
        for f in pkg.glob("*.txt"):
            out[f.stem] = frozenset(w.lower() for w in T.read_list(f))
    if stop_words_dir:
        from pathlib import Path

        d = Path(stop_words_dir)
        by_name = {v.lower(): k for k, v in _JUSTEXT_NAMES.items()}
        for f in d.glob("*.txt"):
            lang = f.stem.lower()
            lang = by_name.get(lang, lang)
            out[lang] = frozenset(w.lower() for w in T.read_list(f))
    for lang, words in (stop_words or {}).items():
        out[str(lang).lower()] = frozenset(w.lower() for w in words)
    return out
