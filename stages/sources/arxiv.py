"""``arxiv_clean``: LLaMA's arXiv cleaning of LaTeX sources (Touvron et al. 2023, §2.1).

"We removed everything before the first section, as well as the bibliography. We also
removed the comments from the .tex files, and inline-expanded definitions and macros
written by users to increase consistency across papers." Per paper, in this order:

1. **comments**: ``\\begin{comment}...\\end{comment}`` blocks, whole lines starting with
   ``%``, and the rest of a line from an unescaped ``%`` (``\\%`` is a percent sign);
2. **macros**: user definitions without arguments -- ``\\newcommand{\\x}{...}``,
   ``\\newcommand\\x{...}``, ``\\renewcommand``, ``\\providecommand`` (starred too) and
   ``\\def\\x{...}`` -- are removed and every use of ``\\x`` (not followed by a letter) is
   replaced by the body, repeatedly, so macros built from macros expand fully (at most
   ``max_expansion_passes``). Definitions with arguments (``[n]``, ``#1``) stay as they are;
3. **before the first section**: everything before the first ``\\section``/``\\chapter``
   (starred or not) is dropped (preamble, title, abstract);
4. **bibliography**: everything from ``\\begin{thebibliography}``, ``\\bibliography{``,
   ``\\printbibliography`` or ``\\bibliographystyle{`` on, and anything after
   ``\\end{document}``, is dropped (appendices after the bibliography go too, as in
   RedPajama's reproduction).

Adds ``arxiv_macros_expanded`` (distinct argument-less macros expanded). Decisions
``arxiv_clean_v1:<rule>``: ``no_section`` (no ``\\section``/``\\chapter`` found; only with
``require_section``), ``empty`` (nothing left). ``text`` is rewritten for every row.

Cost: regexes and a brace scanner per paper, a per-row Python loop (papers are few and large).
"""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.schema import set_column
from datapipe.stage import Filter, StageError, reasons_from_masks, register

CHECK = "arxiv_clean_v1"
_COMMENT_ENV = re.compile(r"\\begin\{comment\}.*?\\end\{comment\}", re.S)
_COMMENT_LINE = re.compile(r"^[ \t]*%.*(?:\n|$)", re.M)
_INLINE_COMMENT = re.compile(r"(?<!\\)((?:\\\\)*)%.*$", re.M)
_DEF_START = re.compile(r"\\(?:(?:re|provide)?newcommand\*?|def)\s*")
_SECTION = re.compile(r"\\(?:section|chapter)\*?\s*[\[{]")
_BIB = re.compile(r"\\begin\{thebibliography\}|\\bibliography\s*\{|\\printbibliography|\\bibliographystyle\s*\{"
                  r"|\\end\{document\}")


def remove_comments(tex: str) -> str:
    tex = _COMMENT_ENV.sub("", tex)
    tex = _COMMENT_LINE.sub("", tex)
    return _INLINE_COMMENT.sub(r"\1", tex)


def _braced(s: str, i: int) -> int:
    """Index just past the balanced ``{...}`` group that starts at ``s[i] == '{'``, or -1."""
    depth = 0
    j = i
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


def find_macros(tex: str) -> tuple[dict[str, str], list[tuple[int, int]]]:
    """Argument-less macro definitions: ({name: body}, [(start, end) spans of their definitions])."""
    macros: dict[str, str] = {}
    spans: list[tuple[int, int]] = []
    for m in _DEF_START.finditer(tex):
        is_def = m.group(0).startswith("\\def")
        i = m.end()
        # the macro name: {\name} or \name
        if not is_def and i < len(tex) and tex[i] == "{":
            close = _braced(tex, i)
            if close < 0:
                continue
            name = tex[i + 1: close - 1].strip()
            i = close
        else:
            nm = re.match(r"\\([A-Za-z]+|.)", tex[i:])
            if not nm:
                continue
            name = nm.group(0)
            i += nm.end()
        if not re.fullmatch(r"\\[A-Za-z]+", name):
            continue
        rest = tex[i:]
        ws = len(rest) - len(rest.lstrip())
        i += ws
        if i >= len(tex):
            continue
        if is_def:
            # parameter text before the body: "#1", "#1#2" ... means arguments
            brace = tex.find("{", i)
            if brace < 0 or tex[i:brace].strip():
                continue
            i = brace
        elif tex[i] == "[":
            continue            # [n] arguments
        if tex[i] != "{":
            continue
        close = _braced(tex, i)
        if close < 0:
            continue
        body = tex[i + 1: close - 1]
        if "#" in body.replace("\\#", ""):
            continue
        macros[name] = body
        spans.append((m.start(), close))
    return macros, spans


def expand_macros(tex: str, *, max_passes: int = 5) -> tuple[str, int]:
    """Remove argument-less macro definitions and inline their bodies; (text, macros expanded)."""
    macros, spans = find_macros(tex)
    if not macros:
        return tex, 0
    parts, last = [], 0
    for a, b in spans:
        if a >= last:
            parts.append(tex[last:a])
            last = b
    parts.append(tex[last:])
    tex = "".join(parts)
    names = sorted(macros, key=len, reverse=True)
    rx = re.compile("(" + "|".join(re.escape(n) for n in names) + r")(?![A-Za-z])")
    used = set()
    for _ in range(max_passes):
        hits = set(rx.findall(tex))
        if not hits:
            break
        used |= hits
        tex = rx.sub(lambda m: macros[m.group(1)], tex)
    return tex, len(used)


def clean_latex(tex: str, *, require_section: bool = True, max_passes: int = 5) -> tuple[str, bool, int]:
    """(cleaned text, a section was found, macros expanded) for one paper."""
    tex = remove_comments(tex)
    tex, n_macros = expand_macros(tex, max_passes=max_passes)
    m = _SECTION.search(tex)
    found = m is not None
    if found:
        tex = tex[m.start():]
    elif require_section:
        return "", False, n_macros
    b = _BIB.search(tex)
    if b:
        tex = tex[: b.start()]
    tex = re.sub(r"[ \t]+\n", "\n", tex)
    tex = re.sub(r"\n{3,}", "\n\n", tex).strip()
    return tex, found, n_macros


@register
class ArxivClean(Filter):
    __doc__ = __doc__
    name = "arxiv_clean"
    inputs = ("text",)
    outputs = ("arxiv_macros_expanded", "arxiv_no_section")

    def __init__(self, *, require_section: bool = True, max_expansion_passes: int = 5):
        if max_expansion_passes < 1:
            raise StageError(f"arxiv_clean: max_expansion_passes must be >= 1, got {max_expansion_passes}")
        self.require_section, self.max_passes = require_section, max_expansion_passes

    def score(self, batch: pa.Table) -> pa.Table:
        texts = batch["text"].to_pylist()
        n = len(texts)
        macros = np.zeros(n, np.int32)
        no_section = np.zeros(n, bool)
        for i, t in enumerate(texts):  # per-row: see the module docstring
            if t:
                texts[i], found, macros[i] = clean_latex(t, require_section=self.require_section,
                                                          max_passes=self.max_passes)
                no_section[i] = not found
        out = set_column(batch, batch.schema.field("text"), texts)
        out = set_column(out, "arxiv_macros_expanded", pa.array(macros, pa.int32()))
        return set_column(out, "arxiv_no_section", pa.array(no_section, pa.bool_()))

    def decide(self, batch: pa.Table) -> pa.Array:
        n = batch.num_rows
        chars = pc.utf8_length(pc.utf8_trim_whitespace(pc.fill_null(batch["text"], ""))).to_numpy(zero_copy_only=False)
        no_section = batch["arxiv_no_section"].to_numpy(zero_copy_only=False) if self.require_section \
            else np.zeros(n, bool)
        return reasons_from_masks(n, [(f"{CHECK}:no_section", no_section), (f"{CHECK}:empty", chars == 0)])
