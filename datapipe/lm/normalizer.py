"""CCNet's text normaliser (``cc_net/text_normalizer.py``), ported as is, and its Arrow twin.

:func:`normalize` is a line-for-line port: strip, lower-case, NFD + drop combining marks
(accents), every Unicode digit -> ``0``, CJK/typographic punctuation mapped to ASCII
(``UNICODE_PUNCT``), control characters removed. It is the text every CCNet LM was
trained and scored on, so the same code runs at training time (:mod:`datapipe.lm.train`)
and scoring time (the ``perplexity`` stage). :func:`normalize_array` is the vectorised
(Arrow/RE2) equivalent used on batches; the tests check that it equals :func:`normalize`
on 75 languages of real sentences. ``NORMALIZER_VERSION`` names this normaliser in a
trained model's ``model.json`` (its cache key): change it if the output changes.
"""
from __future__ import annotations

import re
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc

#: names this normaliser in a trained model's cache key (``model.json``); bump it if the output changes
NORMALIZER_VERSION = "ccnet_text_normalizer_v1"

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
