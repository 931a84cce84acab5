"""Heuristic quality filters: Gopher quality, Gopher repetition, C4, FineWeb.

Each rule set is one registered :class:`~datapipe.stage.Filter` and every rule in it
is its own named, versioned check: a dropped document's reason is
``<check>_v1:<rule>`` (``gopher_quality_v1:word_count``, ``c4_v1:lorem_ipsum`` ...),
so ``datapipe stats`` counts drops per rule and ``datapipe inspect`` shows samples.

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

from datapipe.stage import Filter, StageError, reasons_from_masks, register

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

    @staticmethod
    def _set(batch: pa.Table, name: str, values) -> pa.Table:
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        if name in batch.column_names:
            return batch.set_column(batch.column_names.index(name), name, arr)
        return batch.append_column(name, arr)


def _check_range(name: str, lo, hi, what: str) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise StageError(f"{name}: min_{what} ({lo}) > max_{what} ({hi})")


def _check_frac(name: str, **fracs) -> None:
    for k, v in fracs.items():
        if v is not None and not 0.0 <= v <= 1.0:
            raise StageError(f"{name}: {k} must be in [0, 1], got {v}")


# ---------------------------------------------------------------------------
# Gopher quality

#: the Gopher stop words (Rae et al. 2021, A.1); other languages: stages/data/stopwords/
GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_BULLET_START = rf"^{T.WS}*[\x{{2022}}\x{{2023}}\x{{25E6}}\x{{2043}}\x{{2219}}\x{{25CF}}\x{{25AA}}\-]"
_ELLIPSIS_END = rf"(\.\.\.|\x{{2026}}){T.WS}*$"
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


@register
class GopherQuality(RuleFilter):
    """Gopher quality rules (Rae et al. 2021, §A.1, "MassiveWeb" quality filter).

    Columns (``gq_``): ``word_count`` (words, punctuation excluded), ``mean_word_len``,
    ``hash_ratio`` and ``ellipsis_ratio`` (``#`` / ``...`` or ``…`` per token),
    ``bullet_lines`` and ``ellipsis_lines`` (fraction of lines starting with a bullet /
    ending with an ellipsis), ``alpha_words`` (fraction of tokens with a letter),
    ``stop_words`` (distinct stop words of the row's language present; null when
    there is no list for that language).

    Rules, reasons ``gopher_quality_v1:<rule>``: ``word_count`` (outside 50-100,000),
    ``mean_word_len`` (outside 3-10), ``hash_ratio`` (> 0.1), ``ellipsis_ratio``
    (> 0.1), ``bullet_lines`` (> 0.9), ``ellipsis_lines`` (> 0.3), ``alpha_words``
    (< 0.8), ``stop_words`` (< 2).

    Where we follow datatrove: "tokens" for the symbol and alphabetic ratios include
    punctuation tokens (datatrove divides by all spaCy tokens); bullets are ``•`` and
    ``-`` (plus the Unicode bullets ‣ ◦ ⁃ ∙ ● ▪); stop words count distinct words
    (the paper: "at least two of the following words"). Differences: our tokenizer
    is regex-based and language-aware instead of spaCy's English rules; stop words
    are matched lower-cased ("The" counts), and by substring for zh/ja/th; lines are
    ``str.splitlines()`` lines.

    Cost: one tokenisation of the batch and a few RE2 passes; no Python per row.
    """

    name = "gopher_quality"
    check = "gopher_quality_v1"
    inputs = ("text",)
    rules = (
        ("word_count", "gq_word_count", "<", "min_words"),
        ("word_count", "gq_word_count", ">", "max_words"),
        ("mean_word_len", "gq_mean_word_len", "<", "min_mean_word_len"),
        ("mean_word_len", "gq_mean_word_len", ">", "max_mean_word_len"),
        ("hash_ratio", "gq_hash_ratio", ">", "max_hash_ratio"),
        ("ellipsis_ratio", "gq_ellipsis_ratio", ">", "max_ellipsis_ratio"),
        ("bullet_lines", "gq_bullet_lines", ">", "max_bullet_lines"),
        ("ellipsis_lines", "gq_ellipsis_lines", ">", "max_ellipsis_lines"),
        ("alpha_words", "gq_alpha_words", "<", "min_alpha_words"),
        ("stop_words", "gq_stop_words", "<", "min_stop_words"),
    )
    score_options = ("stop_words", "stop_words_dir", "default_language")
    default_per_language = {lang: {"min_mean_word_len": None, "max_mean_word_len": None}
                            for lang in ("zh", "ja", "th")}

    def __init__(
        self, *,
        min_words: int | None = 50,
        max_words: int | None = 100_000,
        min_mean_word_len: float | None = 3.0,
        max_mean_word_len: float | None = 10.0,
        max_hash_ratio: float | None = 0.1,
        max_ellipsis_ratio: float | None = 0.1,
        max_bullet_lines: float | None = 0.9,
        max_ellipsis_lines: float | None = 0.3,
        min_alpha_words: float | None = 0.8,
        min_stop_words: int | None = 2,
        stop_words: dict[str, list[str]] | None = None,
        stop_words_dir: str | None = None,
        default_language: str = "en",
        per_language: dict[str, dict[str, float | None]] | None = None,
    ):
        _check_range(self.name, min_words, max_words, "words")
        _check_range(self.name, min_mean_word_len, max_mean_word_len, "mean_word_len")
        _check_frac(self.name, max_bullet_lines=max_bullet_lines, max_ellipsis_lines=max_ellipsis_lines,
                    min_alpha_words=min_alpha_words)
        if stop_words_dir is not None:
            from pathlib import Path
            if not Path(stop_words_dir).is_dir():
                raise StageError(f"{self.name}: stop_words_dir {stop_words_dir!r} is not a folder")
        self.stop_words_opt, self.stop_words_dir = stop_words, stop_words_dir
        self._stop: dict[str, frozenset[str]] | None = None
        self._init_rules(dict(
            min_words=min_words, max_words=max_words, min_mean_word_len=min_mean_word_len,
            max_mean_word_len=max_mean_word_len, max_hash_ratio=max_hash_ratio,
            max_ellipsis_ratio=max_ellipsis_ratio, max_bullet_lines=max_bullet_lines,
            max_ellipsis_lines=max_ellipsis_lines, min_alpha_words=min_alpha_words,
            min_stop_words=min_stop_words,
        ), per_language, default_language)

    def setup(self) -> None:
        if self._stop is None:
            self._stop = load_stop_words(self.stop_words_opt, self.stop_words_dir)

    def score(self, batch: pa.Table) -> pa.Table:
        self.setup()
        n = batch.num_rows
        text = T.text_column(batch)
        words, parent = T.split_words(text)
        wlen = pc.utf8_length(words).to_numpy(zero_copy_only=False).astype(np.float64)
        n_words = T.bincount(parent, n)
        n_tokens = n_words + T.count_symbols(text, words, parent)
        alpha = pc.match_substring_regex(words, r"\p{L}").to_numpy(zero_copy_only=False)
        n_alpha = T.bincount(parent[alpha], n)

        hashes = pc.count_substring(text, "#").to_numpy(zero_copy_only=False)
        ellipses = (pc.count_substring(text, "...").to_numpy(zero_copy_only=False)
                    + pc.count_substring(text, "\u2026").to_numpy(zero_copy_only=False))

        lines, lparent = T.flatten_lists(pc.split_pattern_regex(text, T.LINE_BREAK))
        # splitlines() has no empty last line after a final line break, and no line for ""
        n_lines = T.bincount(lparent, n) - pc.match_substring_regex(
            text, rf"(?:{T.LINE_BREAK})$|^$").to_numpy(zero_copy_only=False).astype(np.int64)
        bullets = pc.match_substring_regex(lines, _BULLET_START).to_numpy(zero_copy_only=False)
        ell_end = pc.match_substring_regex(lines, _ELLIPSIS_END).to_numpy(zero_copy_only=False)

        batch = self._set(batch, "gq_word_count", pa.array(n_words, pa.int64()))
        batch = self._set(batch, "gq_mean_word_len", T.safe_div(T.bincount(parent, n, wlen), n_words))
        batch = self._set(batch, "gq_hash_ratio", T.safe_div(hashes, n_tokens))
        batch = self._set(batch, "gq_ellipsis_ratio", T.safe_div(ellipses, n_tokens))
        batch = self._set(batch, "gq_bullet_lines", T.safe_div(T.bincount(lparent[bullets], n), n_lines))
        batch = self._set(batch, "gq_ellipsis_lines", T.safe_div(T.bincount(lparent[ell_end], n), n_lines))
        batch = self._set(batch, "gq_alpha_words", T.safe_div(n_alpha, n_tokens))
        batch = self._set(batch, "gq_stop_words", self._stop_word_counts(batch, text, words, parent))
        return batch

    def _stop_word_counts(self, batch: pa.Table, text: pa.Array, words: pa.Array, parent: np.ndarray) -> pa.Array:
        n = batch.num_rows
        langs = T.row_languages(batch, self.default_language)
        out = np.zeros(n, dtype=np.int64)
        valid = np.zeros(n, dtype=bool)
        lower = None
        for lang in np.unique(langs.astype(str)):
            stop = self._stop.get(lang)
            rows = langs == lang
            if not stop:
                continue
            valid |= rows
            if lang in T.NO_SPACE_LANGS:
                sub = text.filter(pa.array(rows))
                idx = np.flatnonzero(rows)
                for w in stop:
                    out[idx] += pc.match_substring(sub, w).to_numpy(zero_copy_only=False)
                continue
            if lower is None:
                lower = pc.utf8_lower(words)
            vocab = sorted(stop)
            tok = rows[parent]
            pos = pc.index_in(lower.filter(pa.array(tok)), value_set=pa.array(vocab, lower.type))
            hit = pc.is_valid(pos).to_numpy(zero_copy_only=False)
            key = parent[tok][hit] * len(vocab) + pos.to_numpy(zero_copy_only=False)[hit].astype(np.int64)
            out += T.bincount(np.unique(key) // len(vocab), n)
        return pa.array(out, pa.int64(), mask=~valid)


# ---------------------------------------------------------------------------
# Gopher repetition

def _ngram_stats(words: pa.Array, parent: np.ndarray, n_rows: int, top_ns, dup_ns) -> dict[str, np.ndarray]:
    """Top n-gram and duplicate n-gram character counts per row, all rows at once.

    n-grams get exact integer ids by iterated ``np.unique`` over (id of the
    (n-1)-gram, id of the next word); unigram ids include the row, so ids never match
    across rows. Characters of an n-gram are the characters of its words.
    """
    out: dict[str, np.ndarray] = {}
    N = len(words)
    if N == 0:
        for k in top_ns:
            out[f"top{k}"] = np.zeros(n_rows)
        for k in dup_ns:
            out[f"dup{k}"] = np.zeros(n_rows)
        return out
    enc = words.dictionary_encode()
    wid = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    lens = pc.utf8_length(words).to_numpy(zero_copy_only=False).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(lens)])
    _, uni = np.unique(parent * (len(enc.dictionary) + 1) + wid, return_inverse=True)
    uni = uni.astype(np.int64)
    n_uni = int(uni.max()) + 1
    pos = np.arange(N)
    gid = uni.copy()                 # id of the n-gram starting at each position (valid ones)
    valid = np.ones(N, dtype=bool)
    max_n = max([*top_ns, *dup_ns, 1])
    for k in range(2, max_n + 1):
        nxt = np.full(N, -1, dtype=np.int64)
        nxt[: N - k + 1] = np.arange(k - 1, N)
        ok = valid & (nxt >= 0)
        ok[ok] = parent[nxt[ok]] == parent[ok]
        valid = ok
        vpos = pos[valid]
        if len(vpos) == 0:
            if k in top_ns:
                out[f"top{k}"] = np.zeros(n_rows)
            if k in dup_ns:
                out[f"dup{k}"] = np.zeros(n_rows)
            gid = np.full(N, -1, dtype=np.int64)
            continue
        key = gid[vpos] * n_uni + uni[vpos + k - 1]
        _, first, inv, cnt = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
        gid = np.full(N, -1, dtype=np.int64)
        gid[vpos] = inv
        rows = parent[vpos]
        if k in top_ns:
            # the most frequent n-gram of each row, ties to the one seen first (Counter.most_common)
            c = cnt[inv]
            f = first[inv]
            order = np.lexsort((f, -c, rows))
            head = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
            start = vpos[f[head]]
            chars = (csum[start + k] - csum[start] + (k - 1)) * c[head]  # " ".join(ngram) * count
            top = np.zeros(n_rows)
            top[rows[head]] = chars
            out[f"top{k}"] = top
        if k in dup_ns:
            # words covered by any later occurrence of an n-gram, each word counted once
            dup_start = vpos[first[inv] != np.arange(len(vpos))]
            diff = np.zeros(N + 1, dtype=np.int64)
            np.add.at(diff, dup_start, 1)
            np.add.at(diff, dup_start + k, -1)
            covered = np.cumsum(diff[:N]) > 0
            out[f"dup{k}"] = T.bincount(parent[covered], n_rows, weights=lens[covered].astype(np.float64))
    return out


@register
class GopherRepetition(RuleFilter):
    """Gopher repetition rules (Rae et al. 2021, Table A1).

    Columns (``gr_``), each a fraction: ``dup_para_frac``, ``dup_para_char_frac``,
    ``dup_line_frac``, ``dup_line_char_frac`` (duplicate paragraphs / lines and their
    characters), ``top_<n>gram_char_frac`` for n = 2, 3, 4 (characters of the most
    frequent n-gram times its count), ``dup_<n>gram_char_frac`` for n = 5..10
    (characters of words inside repeated n-grams). Character fractions are over
    ``len(text)``.

    Rules ``gopher_repetition_v1:<rule>``: ``dup_para_frac`` (> 0.30),
    ``dup_para_char_frac`` (> 0.20), ``dup_line_frac`` (> 0.30),
    ``dup_line_char_frac`` (> 0.20), ``top_2gram`` / ``top_3gram`` / ``top_4gram``
    (> 0.20 / 0.18 / 0.16), ``dup_5gram`` ... ``dup_10gram`` (> 0.15 ... 0.10).

    Following datatrove: paragraphs split on ``\\n{2,}`` of the stripped text, lines on
    ``\\n+``; a duplicate is an element equal to an earlier one (first occurrences do
    not count); top n-gram characters include the joining spaces, duplicate n-gram
    characters do not. Difference: the paper asks not to count characters of
    overlapping duplicate n-grams twice; datatrove approximates that by skipping n
    words after each duplicate (and never records the skipped n-grams); we mark
    every word covered by any repeated occurrence and count each word once, which
    is the paper's definition. Words exclude punctuation tokens.

    Cost: tokenisation plus one ``np.unique`` sort of the batch's words per n.
    """

    name = "gopher_repetition"
    check = "gopher_repetition_v1"
    inputs = ("text",)
    TOP_NS = (2, 3, 4)
    DUP_NS = (5, 6, 7, 8, 9, 10)
    rules = (
        ("dup_para_frac", "gr_dup_para_frac", ">", "max_dup_para_frac"),
        ("dup_para_char_frac", "gr_dup_para_char_frac", ">", "max_dup_para_char_frac"),
        ("dup_line_frac", "gr_dup_line_frac", ">", "max_dup_line_frac"),
        ("dup_line_char_frac", "gr_dup_line_char_frac", ">", "max_dup_line_char_frac"),
        *((f"top_{k}gram", f"gr_top_{k}gram_char_frac", ">", f"max_top_{k}gram_char_frac") for k in TOP_NS),
        *((f"dup_{k}gram", f"gr_dup_{k}gram_char_frac", ">", f"max_dup_{k}gram_char_frac") for k in DUP_NS),
    )
    score_options = ()

    def __init__(
        self, *,
        max_dup_para_frac: float | None = 0.30,
        max_dup_para_char_frac: float | None = 0.20,
        max_dup_line_frac: float | None = 0.30,
        max_dup_line_char_frac: float | None = 0.20,
        max_top_2gram_char_frac: float | None = 0.20,
        max_top_3gram_char_frac: float | None = 0.18,
        max_top_4gram_char_frac: float | None = 0.16,
        max_dup_5gram_char_frac: float | None = 0.15,
        max_dup_6gram_char_frac: float | None = 0.14,
        max_dup_7gram_char_frac: float | None = 0.13,
        max_dup_8gram_char_frac: float | None = 0.12,
        max_dup_9gram_char_frac: float | None = 0.11,
        max_dup_10gram_char_frac: float | None = 0.10,
        default_language: str = "en",
        per_language: dict[str, dict[str, float | None]] | None = None,
    ):
        thr = {k: v for k, v in locals().items() if k.startswith("max_")}
        _check_frac(self.name, **thr)
        self._init_rules(thr, per_language, default_language)

    def score(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        text = T.text_column(batch)
        n_chars = pc.utf8_length(text).to_numpy(zero_copy_only=False)
        paras = pc.split_pattern_regex(pc.utf8_trim_whitespace(text), r"\n{2,}")
        p_n, p_dup, p_chars = T.dup_stats(paras, n)
        lines = pc.split_pattern_regex(text, r"\n+")
        l_n, l_dup, l_chars = T.dup_stats(lines, n)
        words, parent = T.split_words(text)
        ng = _ngram_stats(words, parent, n, self.TOP_NS, self.DUP_NS)

        batch = self._set(batch, "gr_dup_para_frac", T.safe_div(p_dup, p_n))
        batch = self._set(batch, "gr_dup_para_char_frac", T.safe_div(p_chars, n_chars))
        batch = self._set(batch, "gr_dup_line_frac", T.safe_div(l_dup, l_n))
        batch = self._set(batch, "gr_dup_line_char_frac", T.safe_div(l_chars, n_chars))
        for k in self.TOP_NS:
            batch = self._set(batch, f"gr_top_{k}gram_char_frac", T.safe_div(ng[f"top{k}"], n_chars))
        for k in self.DUP_NS:
            batch = self._set(batch, f"gr_dup_{k}gram_char_frac", T.safe_div(ng[f"dup{k}"], n_chars))
        return batch


# ---------------------------------------------------------------------------
# C4

C4_POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                        "use of cookies", "use cookies")
_C4_CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
#: one "word" of a line: a CJK character, a Thai cluster, or a run of non-space characters
_LINE_WORD = rf"[{T.CJK}]|{T.THAI_CLUSTER}|[^\s{T.CJK}\x{{0E00}}-\x{{0E7F}}]+"
_C4_END = "[.?!\"'\u3002\uff01\uff1f]$"
#: a sentence end inside a line: terminal marks, then closing quotes/brackets, then space or end
_C4_SENT_END = "[.!?\u3002\uff01\uff1f\u2026]+[\"'\u201d\u2019)\\]]*(?:" + T.WS + "|$)"


@register
class C4Quality(RuleFilter):
    """C4's rules (Raffel et al. 2020; TFDS ``c4_utils.clean_page``), line level and page level.

    ``score`` REWRITES ``text``: it keeps only lines that (after stripping and removing
    Wikipedia-style citations ``[1]``, ``[edit]``) end in terminal punctuation (not an
    ellipsis), have at least 3 words, have no word over 1,000 characters, and do not
    contain "javascript" or a cookie / terms-of-use phrase. It records
    ``c4_lines_removed``, ``c4_sentences`` (sentences in kept lines),
    ``c4_lorem_ipsum`` and ``c4_curly_bracket`` (a line that passed the first three
    line rules contains "lorem ipsum" / ``{``, where TFDS stops and drops the page).

    Page rules ``c4_v1:<rule>``: ``lorem_ipsum``, ``curly_bracket``,
    ``too_few_sentences`` (< 5). The bad-words page rule is the ``nsfw_words`` stage.
    Only page rules can be re-tuned by refilter; line rules are ``score_options``.

    Differences from TFDS/datatrove, to be language-aware: words of a line are counted
    as our tokenizer does for CJK and Thai (one per character / cluster) and as
    ``str.split()`` for everything else; full-width 。！？ are terminal punctuation;
    sentences are counted with a regex (terminal marks followed by space or line end,
    at least one per kept line) instead of NLTK/spaCy's sentence splitter, which
    counts abbreviations such as "Mr." differently. Lines flagged for lorem ipsum or
    ``{`` are still kept in the rewritten text (as if those page rules were off), so
    that turning a page rule off in refilter gives the text TFDS would have given.

    Cost: all lines of the batch are flattened and tested with RE2 at once.
    """

    name = "c4"
    check = "c4_v1"
    inputs = ("text",)
    rules = (
        ("lorem_ipsum", "c4_lorem_ipsum", "true", "filter_lorem_ipsum"),
        ("curly_bracket", "c4_curly_bracket", "true", "filter_curly_bracket"),
        ("too_few_sentences", "c4_sentences", "<", "min_sentences"),
    )
    score_options = ("remove_citations", "filter_no_terminal_punct", "min_words_per_line", "max_word_length",
                     "filter_javascript", "filter_policy", "policy_substrings")

    outputs = ("c4_lines_removed", "c4_sentences", "c4_lorem_ipsum", "c4_curly_bracket")

    def __init__(
        self, *,
        min_sentences: int | None = 5,
        filter_lorem_ipsum: bool = True,
        filter_curly_bracket: bool = True,
        remove_citations: bool = True,
        filter_no_terminal_punct: bool = True,
        min_words_per_line: int | None = 3,
        max_word_length: int | None = 1000,
        filter_javascript: bool = True,
        filter_policy: bool = True,
        policy_substrings: list[str] | None = None,
        default_language: str = "en",
        per_language: dict[str, dict[str, float | None]] | None = None,
    ):
        self.remove_citations = remove_citations
        self.filter_no_terminal_punct = filter_no_terminal_punct
        self.min_words_per_line = min_words_per_line
        self.max_word_length = max_word_length
        self.filter_javascript = filter_javascript
        self.filter_policy = filter_policy
        self.policy_substrings = tuple(s.lower() for s in (policy_substrings or C4_POLICY_SUBSTRINGS))
        self._init_rules(dict(min_sentences=min_sentences, filter_lorem_ipsum=filter_lorem_ipsum,
                              filter_curly_bracket=filter_curly_bracket), per_language, default_language)

    def score(self, batch: pa.Table) -> pa.Table:
        import re

        n = batch.num_rows
        text = T.text_column(batch)
        raw, parent = T.flatten_lists(pc.split_pattern_regex(text, T.LINE_BREAK))
        # splitlines(): no empty last line after a final line break, no line for ""
        # (an empty line is removed anyway, so only the removed-lines count cares)
        extra = pc.match_substring_regex(text, rf"(?:{T.LINE_BREAK})$|^$").to_numpy(zero_copy_only=False)
        n_lines = T.bincount(parent, n) - extra.astype(np.int64)
        line = pc.utf8_trim_whitespace(raw)
        m = len(line)
        ok = np.ones(m, dtype=bool)
        if self.max_word_length is not None and m:
            w, wp = T.flatten_lists(pc.split_pattern_regex(line, r"\s+"))
            too_long = pc.greater(pc.utf8_length(w), self.max_word_length).to_numpy(zero_copy_only=False)
            ok &= T.bincount(wp[too_long], m) == 0
        if self.remove_citations:
            line = pc.replace_substring_regex(line, _C4_CITATION, "")
        if self.filter_no_terminal_punct:
            ok &= pc.match_substring_regex(line, _C4_END).to_numpy(zero_copy_only=False)
            ok &= ~pc.ends_with(line, "...").to_numpy(zero_copy_only=False)
        if self.min_words_per_line is not None:
            nw = pc.count_substring_regex(line, _LINE_WORD).to_numpy(zero_copy_only=False)
            ok &= nw >= self.min_words_per_line
        lower = pc.utf8_lower(line)
        lorem = ok & pc.match_substring(lower, "lorem ipsum").to_numpy(zero_copy_only=False)
        if self.filter_javascript:
            ok &= ~pc.match_substring(lower, "javascript").to_numpy(zero_copy_only=False)
        curly = ok & pc.match_substring(line, "{").to_numpy(zero_copy_only=False)
        if self.filter_policy and self.policy_substrings:
            pat = "|".join(re.escape(s) for s in self.policy_substrings)
            ok &= ~pc.match_substring_regex(lower, pat).to_numpy(zero_copy_only=False)
        sents = np.maximum(pc.count_substring_regex(line, _C4_SENT_END).to_numpy(zero_copy_only=False), 1)

        kept_parent = parent[ok]
        kept_per_row = T.bincount(kept_parent, n)
        offsets = np.concatenate([[0], np.cumsum(kept_per_row)]).astype(np.int64)
        kept_lines = line.filter(pa.array(ok))
        joined = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets), kept_lines),
                                pa.scalar("\n", pa.large_string()))
        new_text = pc.utf8_trim_whitespace(joined).cast(pa.large_string())

        idx = batch.column_names.index("text")
        batch = batch.set_column(idx, batch.schema.field("text").with_type(pa.large_string()), new_text)
        batch = self._set(batch, "c4_lines_removed", pa.array(n_lines - kept_per_row, pa.int64()))
        batch = self._set(batch, "c4_sentences", pa.array(T.bincount(kept_parent, n, sents[ok].astype(np.float64)).astype(np.int64)))
        batch = self._set(batch, "c4_lorem_ipsum", pa.array(T.bincount(parent[lorem], n) > 0))
        batch = self._set(batch, "c4_curly_bracket", pa.array(T.bincount(parent[curly], n) > 0))
        return batch


# ---------------------------------------------------------------------------
# FineWeb

@register
class FineWebQuality(RuleFilter):
    """FineWeb's own rules (Penedo et al. 2024, §3; datatrove ``FineWebQualityFilter``).

    Columns (``fw_``) over non-blank lines (``text.split("\\n")``):
    ``line_punct_frac`` (lines ending in a sentence terminal), ``short_line_frac``
    (lines of at most ``short_line_length`` = 30 characters), ``dup_line_char_frac``
    (characters of duplicated lines / characters of the text without newlines),
    ``newline_per_word`` (newlines / tokens).

    Rules ``fineweb_v1:<rule>``: ``line_punct_ratio`` (< 0.12), ``short_line_ratio``
    (> 0.67), ``char_dup_ratio`` (> ``max_dup_line_char_frac``, default 0.1 as the
    FineWeb paper states; datatrove's code default is 0.01, which drops far more),
    ``list_ratio`` (> 0.3). A text with no non-blank line has ``line_punct_frac`` 0
    and fails the first rule (datatrove names it "empty").

    As datatrove: a line "ends in punctuation" when its last character (no strip)
    is a sentence terminal (Unicode Sentence_Terminal, the property datatrove's
    ``TERMINAL_PUNCTUATION`` set lists); tokens for ``newline_per_word`` include
    punctuation tokens (spaCy's do). ``line_punct_exclude_zero`` keeps texts with no
    punctuated line at all (e.g. poetry, lists), as datatrove's option does.

    Cost: line split and tokenisation of the batch, vectorised.
    """

    name = "fineweb"
    check = "fineweb_v1"
    inputs = ("text",)
    rules = (
        ("line_punct_ratio", "fw_line_punct_frac", "<", "min_line_punct_frac"),
        ("short_line_ratio", "fw_short_line_frac", ">", "max_short_line_frac"),
        ("char_dup_ratio", "fw_dup_line_char_frac", ">", "max_dup_line_char_frac"),
        ("list_ratio", "fw_newline_per_word", ">", "max_newline_per_word"),
    )
    score_options = ("short_line_length", "line_punct_exclude_zero")

    def __init__(
        self, *,
        min_line_punct_frac: float | None = 0.12,
        line_punct_exclude_zero: bool = False,
        max_short_line_frac: float | None = 0.67,
        short_line_length: int = 30,
        max_dup_line_char_frac: float | None = 0.1,
        max_newline_per_word: float | None = 0.3,
        default_language: str = "en",
        per_language: dict[str, dict[str, float | None]] | None = None,
    ):
        _check_frac(self.name, min_line_punct_frac=min_line_punct_frac, max_short_line_frac=max_short_line_frac,
                    max_dup_line_char_frac=max_dup_line_char_frac)
        if short_line_length < 0:
            raise StageError(f"{self.name}: short_line_length must be >= 0")
        self.short_line_length = short_line_length
        self.line_punct_exclude_zero = line_punct_exclude_zero
        self._init_rules(dict(min_line_punct_frac=min_line_punct_frac, max_short_line_frac=max_short_line_frac,
                              max_dup_line_char_frac=max_dup_line_char_frac,
                              max_newline_per_word=max_newline_per_word), per_language, default_language)

    def setup(self) -> None:
        T.sentence_terminals()

    def score(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        text = T.text_column(batch)
        lists = pc.split_pattern(text, "\n")
        lines, parent = T.flatten_lists(lists)
        nonblank = pc.not_equal(pc.utf8_trim_whitespace(lines), "").to_numpy(zero_copy_only=False)
        n_lines = T.bincount(parent[nonblank], n)
        last = pc.utf8_slice_codeunits(lines, -1)
        term_set = pa.array(sorted(T.sentence_terminals()), lines.type)
        punct = nonblank & pc.is_in(last, value_set=term_set).to_numpy(zero_copy_only=False)
        short = nonblank & pc.less_equal(pc.utf8_length(lines), self.short_line_length).to_numpy(zero_copy_only=False)
        _, _, dup_chars = T.dup_stats(lists, n, keep=nonblank)
        newlines = pc.count_substring(text, "\n").to_numpy(zero_copy_only=False)
        n_chars = pc.utf8_length(text).to_numpy(zero_copy_only=False) - newlines
        words, wparent = T.split_words(text)
        n_tokens = T.bincount(wparent, n) + T.count_symbols(text, words, wparent)

        punct_frac = T.safe_div(T.bincount(parent[punct], n), n_lines)
        if self.line_punct_exclude_zero:
            punct_frac[(punct_frac == 0) & (n_lines > 0)] = np.nan  # rule cannot fail
        batch = self._set(batch, "fw_line_punct_frac", punct_frac)
        batch = self._set(batch, "fw_short_line_frac", T.safe_div(T.bincount(parent[short], n), n_lines))
        batch = self._set(batch, "fw_dup_line_char_frac", T.safe_div(dup_chars, n_chars))
        batch = self._set(batch, "fw_newline_per_word", T.safe_div(newlines, n_tokens, empty=np.inf))
        return batch
