"""Shared text helpers for the heuristic and NSFW filters: tokenisation, languages, lists.

Everything here works on whole Arrow columns (``pyarrow.compute`` runs RE2 in C++), so
the filters that use it have no per-token Python loop.

Word tokenisation (language-aware, regex only, no model):

* Han, Hiragana and Katakana characters are one word each (Chinese and Japanese are
  written without spaces; a dictionary segmenter such as jieba or MeCab would be
  closer to "words" but is a model, and character counts are what per-language
  thresholds are tuned on).
* Thai is split into character clusters (an optional leading vowel, a consonant, its
  combining marks and a following vowel), the usual dictionary-free unit for Thai.
* Every other script: maximal runs of letters, marks and digits; ``.``, ``'``,
  ``’``, ``,`` and ``:`` may sit inside a word (``U.S``, ``3.14``, ``1,000``,
  ``10:30``, ``don't``, ``example.com``) but are trimmed from its ends. Hyphens split words (``well-known`` -> ``well``, ``known``),
  as spaCy's English tokenizer (datatrove's) does.

Symbol tokens (punctuation) are counted apart: each punctuation or symbol character is
one token, except runs of dots (an ellipsis is one token). datatrove's filters count
spaCy tokens, which include punctuation, in some denominators; the filters say where
they do the same.
"""
from __future__ import annotations

import functools
import os
import tarfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: packaged default lists (stop words, bad words, URL lists)
DATA_DIR = Path(__file__).resolve().parent / "data"

#: languages written without spaces between words: word rules use characters or
#: clusters, list matching is by substring (as C4's bad-words filter does for ja/th/zh)
NO_SPACE_LANGS = frozenset({"zh", "ja", "th", "yue", "wuu", "lo", "km", "my", "bo"})

# RE2 syntax (pyarrow.compute).
CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\x{30FC}"
THAI_CLUSTER = (r"[\x{0E40}-\x{0E44}]?[\x{0E01}-\x{0E2E}]"
                r"[\x{0E31}\x{0E34}-\x{0E3A}\x{0E47}-\x{0E4E}]*[\x{0E30}\x{0E32}\x{0E33}\x{0E45}]?")
_ISOLATE = rf"([{CJK}]|{THAI_CLUSTER})"
#: separators between words: anything but letters, marks, digits and word-internal . ' ’ , :
_WORD_SEP = r"[^\p{L}\p{M}\p{N}.'\x{2019},:]+"
_WORD_TRIM = ".'\u2019,:"
#: the symbol tokens that sit inside words (counted once, as part of the word)
_WORD_INTERNAL_SYMBOLS = r"\.+|['\x{2019},:]"
#: whitespace as str.isspace() knows it (RE2's \s is ASCII only)
SPACE = r"\s\p{Z}\x{0B}\x{1C}-\x{1F}\x{85}"
WS = rf"[{SPACE}]"
#: one symbol token: a run of dots (an ellipsis), or any other non-space, non-word character
SYMBOL_TOKEN = rf"\.{{2,}}|[^{SPACE}\p{{L}}\p{{M}}\p{{N}}]"
#: line breaks as str.splitlines() knows them
LINE_BREAK = r"\r\n|[\n\r\x{0B}\x{0C}\x{1C}\x{1D}\x{1E}\x{85}\x{2028}\x{2029}]"


def text_column(batch: pa.Table, column: str = "text") -> pa.Array:
    """The text column as one large_string array, nulls as empty strings."""
    col = batch.column(column)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    return pc.fill_null(arr, "")


def flatten_lists(lists: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Values of a list array and, for each value, the row it came from."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    values = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return values, parent


def split_words(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Tokenise every text at once: (flat array of words in order, row index of each word)."""
    spaced = pc.replace_substring_regex(text, _ISOLATE, r" \1 ")
    words, parent = flatten_lists(pc.split_pattern_regex(spaced, _WORD_SEP))
    words = pc.utf8_trim(words, characters=_WORD_TRIM)
    keep = pc.not_equal(pc.utf8_length(words), 0)
    return words.filter(keep), parent[keep.to_numpy(zero_copy_only=False)]


def count_symbols(text: pa.Array, words: pa.Array | None = None, parent: np.ndarray | None = None) -> np.ndarray:
    """Symbol tokens per row; with ``split_words``' output, those inside words are not counted."""
    n = pc.count_substring_regex(text, SYMBOL_TOKEN).to_numpy(zero_copy_only=False).astype(np.int64)
    if words is not None and len(words):
        inner = pc.count_substring_regex(words, _WORD_INTERNAL_SYMBOLS).to_numpy(zero_copy_only=False)
        n -= bincount(parent, len(n), weights=inner.astype(np.float64)).astype(np.int64)
    return n


def bincount(parent: np.ndarray, n: int, weights=None) -> np.ndarray:
    out = np.bincount(parent, weights=weights, minlength=n)
    return out if weights is not None else out.astype(np.int64)


def safe_div(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def dup_stats(lists: pa.Array, n_rows: int, *, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of a list<string> array: (elements, duplicate elements, characters in duplicates).

    An element is a duplicate when an equal element came earlier in the same row
    (datatrove's ``find_duplicates``: the first occurrence is not counted).
    ``keep`` (mask over the flat values) ignores some elements (e.g. blank lines).
    """
    values, parent = flatten_lists(lists)
    if keep is not None:
        values, parent = values.filter(pa.array(keep)), parent[keep]
    n_el = bincount(parent, n_rows)
    if len(values) == 0:
        z = np.zeros(n_rows, dtype=np.int64)
        return n_el, z, z.astype(np.float64)
    enc = values.dictionary_encode()
    ids = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    key = parent * (len(enc.dictionary) + 1) + ids
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    dup = first[inv] != np.arange(len(key))
    lens = pc.utf8_length(values).to_numpy(zero_copy_only=False).astype(np.float64)
    return n_el, bincount(parent[dup], n_rows), bincount(parent[dup], n_rows, weights=lens[dup])


# ---------------------------------------------------------------------------
# languages

def row_languages(batch: pa.Table, default_language: str) -> np.ndarray:
    """Language code per row from ``lid_lang`` (``zh-Hans`` -> ``zh``), else ``default_language``."""
    n = batch.num_rows
    if "lid_lang" not in batch.column_names:
        return np.full(n, default_language, dtype=object)
    col = batch.column("lid_lang")
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    col = pc.fill_null(pc.utf8_lower(col.cast(pa.string())), default_language)
    col = pc.replace_substring_regex(col, r"[-_].*$", "")
    out = np.array(col.to_pylist(), dtype=object)
    out[out == ""] = default_language
    return out


def per_row_thresholds(langs: np.ndarray | None, n: int, value, per_language: dict, key: str) -> np.ndarray:
    """A float array of thresholds, NaN where the rule is off (None), per-language overrides applied."""
    out = np.full(n, np.nan if value is None else float(value), dtype=np.float64)
    if langs is None or not per_language:
        return out
    for lang, opts in per_language.items():
        if key in opts:
            v = opts[key]
            out[langs == lang] = np.nan if v is None else float(v)
    return out


# ---------------------------------------------------------------------------
# word lists

def read_list(path: str | os.PathLike, *, comments: bool = True) -> list[str]:
    """One entry per line; blank lines (and ``#`` lines when ``comments``) skipped."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            s = line.strip()
            if not s or (comments and s.startswith("#")):
                continue
            out.append(s)
    return out


def iter_list_files(path: str | os.PathLike, kind: str, *, raw: bool = False) -> Iterator[tuple[str, Iterable]]:
    """Lines of every ``kind`` list (``domains`` or ``urls``) in a file, a folder or a tarball.

    A plain file is read as it is; in a folder or a ``.tar``/``.tar.gz``/``.tgz``
    (UT1's layout: ``adult/domains``, ``adult/urls``), files named ``kind`` or
    ``kind.txt`` are read. Lines are streamed, never held all at once; ``raw`` gives
    stripped ``bytes`` lines, ``raw="file"`` the open binary file itself.
    """
    lines = (lambda fh: fh) if raw == "file" else _raw_lines if raw else _lines
    p = Path(path)
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.is_file() and f.name in (kind, f"{kind}.txt"):
                yield str(f), lines(open(f, "rb"))
    elif p.is_file() and (p.name.endswith((".tar.gz", ".tgz", ".tar"))):
        with tarfile.open(p, "r:*") as tar:
            for m in tar:
                if m.isfile() and os.path.basename(m.name) in (kind, f"{kind}.txt"):
                    yield f"{p}:{m.name}", lines(tar.extractfile(m))
    elif p.is_file():
        yield str(p), lines(open(p, "rb"))
    else:
        raise FileNotFoundError(str(p))


def _raw_lines(fh) -> Iterator[bytes]:
    with fh:
        for raw in fh:
            s = raw.strip()
            if s and not s.startswith(b"#"):
                yield s


def _lines(fh) -> Iterator[str]:
    with fh:
        for raw in fh:
            s = raw.decode("utf-8", "replace").strip()
            if s and not s.startswith("#"):
                yield s


@functools.lru_cache(maxsize=1)
def sentence_terminals() -> frozenset[str]:
    """Characters with the Unicode Sentence_Terminal property (``.``, ``!``, ``?``, ``。`` ...).

    datatrove's ``TERMINAL_PUNCTUATION`` is the same idea as a hand-written set.
    """
    import regex  # heavy-ish import kept out of module import time

    chars = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    return frozenset(regex.findall(r"\p{Sentence_Terminal}", chars))


#: words for ratios (NSFW): a CJK character, a Thai cluster or a run of letters/marks/digits
WORD_COUNT = rf"[{CJK}]|{THAI_CLUSTER}|[\p{{L}}\p{{M}}\p{{N}}]+"


def re2_escape(s: str) -> str:
    """Escape a literal for an RE2 pattern."""
    return "".join("\\" + c if c in "\\.^$|?*+()[]{}-" else c for c in s)
