"""``code_filter``: LLaMA's GitHub cleaning (Touvron et al. 2023, §2.1), per file.

"We kept only projects that are distributed under the Apache, BSD and MIT licenses.
Additionally, we filtered low quality files with heuristics based on the line length or
proportion of alphanumeric characters, and removed boilerplate, such as headers, with
regular expressions." The thresholds are RedPajama-1T's reproduction of it (itself from
Codex / The Stack): maximum line length 1,000, mean line length 100, alphanumeric share
0.25.

``score`` REWRITES ``text``: a leading comment block (``#``, ``//``, ``--``, ``;``, ``%``
lines, or one ``/* ... */`` or ``<!-- ... -->`` block; a shebang and a coding line are kept)
that mentions a copyright, licence, SPDX id or "all rights reserved" is removed. Then it adds:

- ``language``: programming language from the file extension (``path`` column; special
  names ``Makefile``, ``Dockerfile`` ...), null when unknown;
- ``code_header_chars``: characters removed as boilerplate header;
- ``code_max_line_length``, ``code_avg_line_length``, ``code_alnum_fraction``.

Decisions ``code_filter_v1:<rule>``, in order: ``license`` (``license`` not in ``licenses``;
shell patterns such as ``BSD-*`` allowed; ``licenses: null`` keeps all), ``language``
(extension unknown, or not in ``languages`` when given), ``empty`` (nothing left after the
header), ``max_line_length``, ``avg_line_length``, ``alnum_fraction``.

Cost: vectorised over the batch with Arrow (RE2 regexes, split/flatten of lines); about
the cost of reading the text.
"""
from __future__ import annotations

import fnmatch
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.io.code import EXTENSIONS, language_of  # noqa: F401 - one extension map for reader and stage
from datapipe.schema import set_column
from datapipe.stage import Filter, StageError, reasons_from_masks, register

CHECK = "code_filter_v1"
DEFAULT_LICENSES = ["MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause"]

_KEYWORDS = r"(?i)(copyright|licen[cs]e|spdx-license-identifier|all rights reserved|permission is hereby granted)"
#: leading boilerplate blocks; group 1 (shebang / coding line) is kept
_HEADERS = (
    r"^((?:#![^\n]*\n)?(?:[ \t]*#[^\n]*coding[:=][^\n]*\n)?)\s*(?:[ \t]*(?:#|//|--|;|%)[^\n]*(?:\n|$))+",
    r"^((?:#![^\n]*\n)?)\s*/\*(?s:.*?)\*/[ \t]*(?:\n|$)",
    r"^((?:<\?xml[^\n]*\n)?)\s*<!--(?s:.*?)-->[ \t]*(?:\n|$)",
)


def languages_of(paths: pa.Array) -> pa.Array:
    """Vectorised :func:`language_of` over a string column (nulls stay null)."""
    lower = pc.utf8_lower(pc.cast(paths, pa.string()))
    base = pc.replace_substring_regex(lower, r"^.*/", "")
    ext = pc.struct_field(pc.extract_regex(base, r"(?P<e>\.[^.]+)$"), [0])
    keys = pa.array(list(EXTENSIONS), pa.string())
    vals = pa.array(list(EXTENSIONS.values()), pa.string())
    by_name = pc.index_in(base, value_set=keys)
    by_ext = pc.index_in(ext, value_set=keys)
    idx = pc.coalesce(by_name, by_ext)
    return pc.take(vals, idx)


def strip_headers(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(text without a leading licence/copyright comment block, characters removed per row)."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    before = pc.utf8_length(text).to_numpy(zero_copy_only=False)
    for pattern in _HEADERS:
        block = pc.struct_field(pc.extract_regex(text, "(?P<b>" + pattern.replace("^((", "^(?:(", 1) + ")"), [0])
        has = pc.fill_null(pc.match_substring_regex(block, _KEYWORDS), False)
        if pc.any(has).as_py():
            text = pc.if_else(has, pc.replace_substring_regex(text, pattern, r"\1", max_replacements=1), text)
    after = pc.utf8_length(text).to_numpy(zero_copy_only=False)
    return text, (before - after).astype(np.int64)


def line_stats(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(max, mean) line length in characters per row (lines split on ``\\n``)."""
    n = len(text)
    lists = pc.split_pattern(pc.fill_null(text, ""), "\n")
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    lens = pc.utf8_length(lists.flatten()).to_numpy(zero_copy_only=False).astype(np.int64)
    offs = lists.offsets.to_numpy().astype(np.int64)
    counts = np.diff(offs)
    mx = np.zeros(n, np.int64)
    nz = counts > 0
    if lens.size:
        mx[nz] = np.maximum.reduceat(lens, offs[:-1][nz])
    total = np.add.reduceat(lens, offs[:-1][nz]) if lens.size else np.zeros(0)
    avg = np.zeros(n, np.float64)
    avg[nz] = total / counts[nz]
    return mx, avg


@register
class CodeFilter(Filter):
    __doc__ = __doc__
    name = "code_filter"
    inputs = ("text",)
    outputs = ("language", "code_header_chars", "code_max_line_length", "code_avg_line_length", "code_alnum_fraction")

    def __init__(self, *, licenses: Optional[list[str]] = None, keep_all_licenses: bool = False,
                 languages: Optional[list[str]] = None, max_line_length: Optional[int] = 1000,
                 max_avg_line_length: Optional[float] = 100.0, min_alnum_fraction: Optional[float] = 0.25,
                 remove_headers: bool = True):
        self.licenses = None if keep_all_licenses else [l.lower() for l in (licenses or DEFAULT_LICENSES)]
        if self.licenses is not None and not self.licenses:
            raise StageError("code_filter: licenses is empty; use keep_all_licenses: true to keep every licence")
        known = set(EXTENSIONS.values())
        bad = [l for l in (languages or []) if l not in known]
        if bad:
            raise StageError(f"code_filter: unknown language(s) {bad}; known: {sorted(known)}")
        if min_alnum_fraction is not None and not 0.0 <= min_alnum_fraction <= 1.0:
            raise StageError(f"code_filter: min_alnum_fraction must be in [0, 1], got {min_alnum_fraction}")
        self.languages = languages
        self.max_line_length, self.max_avg_line_length = max_line_length, max_avg_line_length
        self.min_alnum_fraction, self.remove_headers = min_alnum_fraction, remove_headers

    def score(self, batch: pa.Table) -> pa.Table:
        text = batch["text"].combine_chunks()
        if self.remove_headers:
            text, removed = strip_headers(text)
        else:
            removed = np.zeros(len(text), np.int64)
        mx, avg = line_stats(text)
        n_chars = pc.utf8_length(pc.fill_null(text, "")).to_numpy(zero_copy_only=False)
        alnum = pc.count_substring_regex(pc.fill_null(text, ""), r"[\p{L}\p{N}]").to_numpy(zero_copy_only=False)
        frac = np.divide(alnum, n_chars, out=np.zeros(len(text), np.float64), where=n_chars > 0)
        if "path" in batch.column_names:
            lang = languages_of(batch["path"].combine_chunks())
            if "language" in batch.column_names:   # an export's own language column fills the gaps
                lang = pc.coalesce(lang, pc.cast(batch["language"].combine_chunks(), pa.string()))
        elif "language" in batch.column_names:
            lang = pc.cast(batch["language"].combine_chunks(), pa.string())
        else:
            lang = pa.nulls(batch.num_rows, pa.string())
        out = set_column(batch, batch.schema.field("text"), text.cast(batch.schema.field("text").type))
        cols = {"language": lang, "code_header_chars": pa.array(removed, pa.int32()),
                "code_max_line_length": pa.array(mx, pa.int32()), "code_avg_line_length": pa.array(avg, pa.float32()),
                "code_alnum_fraction": pa.array(frac, pa.float32())}
        for name, col in cols.items():
            out = set_column(out, name, col)
        return out

    def _license_fail(self, batch: pa.Table) -> np.ndarray:
        n = batch.num_rows
        if self.licenses is None:
            return np.zeros(n, bool)
        if "license" not in batch.column_names:
            return np.ones(n, bool)
        values = batch["license"].to_pylist()
        # few distinct licence strings per batch: match each once
        ok = {v: v is not None and any(fnmatch.fnmatch(v.lower(), p) for p in self.licenses) for v in set(values)}
        return np.array([not ok[v] for v in values], bool)

    def decide(self, batch: pa.Table) -> pa.Array:
        n = batch.num_rows
        lang = batch["language"]
        lang_fail = pc.is_null(lang).to_numpy(zero_copy_only=False)
        if self.languages:
            lang_fail |= ~pc.fill_null(pc.is_in(lang, value_set=pa.array(self.languages)), False).to_numpy(zero_copy_only=False)
        stripped = pc.utf8_length(pc.utf8_trim_whitespace(pc.fill_null(batch["text"], ""))).to_numpy(zero_copy_only=False)
        mx = batch["code_max_line_length"].to_numpy()
        avg = batch["code_avg_line_length"].to_numpy()
        frac = batch["code_alnum_fraction"].to_numpy()
        off = np.zeros(n, bool)
        return reasons_from_masks(n, [
            (f"{CHECK}:license", self._license_fail(batch)),
            (f"{CHECK}:language", lang_fail),
            (f"{CHECK}:empty", stripped == 0),
            (f"{CHECK}:max_line_length", mx > self.max_line_length if self.max_line_length is not None else off),
            (f"{CHECK}:avg_line_length", avg > self.max_avg_line_length if self.max_avg_line_length is not None else off),
            (f"{CHECK}:alnum_fraction", frac < self.min_alnum_fraction if self.min_alnum_fraction is not None else off),
        ])
