"""``wiki_clean``: MediaWiki markup -> plain text, and which pages are articles.

Rows whose ``content_type`` is ``text/x-wiki`` (what the MediaWiki dump reader writes) are
parsed with ``mwparserfromhell`` and rendered as plain text: templates (infoboxes,
citations, navboxes), ``<ref>`` footnotes, tables, galleries, math, comments, file/image and
category links and interlanguage links are removed; wikilinks and external links become
their visible text; bold/italic/list markup goes, list items stay one per line; section
headings stay as their own line; whole sections named in ``drop_sections`` (References,
External links, See also ...) are removed with their subsections. Rows of other content
types (``datasets`` exports are plain text already) keep their text.

Adds ``wiki_disambiguation`` (the page uses a disambiguation template). Decisions
``wiki_clean_v1:<rule>``: ``redirect`` (``wiki_redirect`` set, or text starting with
``#REDIRECT``), ``namespace`` (``wiki_namespace`` not in ``namespaces``; 0 = articles),
``disambiguation`` (when ``drop_disambiguation``), ``too_short`` (fewer than ``min_chars``
characters left).

Cost: one parse per page, a per-row Python loop (mwparserfromhell is a C tokenizer with a
Python tree; a few ms for a typical article). Redirects and other namespaces are decided
before parsing and not parsed.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.schema import set_column
from datapipe.stage import Filter, StageError, reasons_from_masks, register

CHECK = "wiki_clean_v1"
WIKITEXT_TYPES = ("text/x-wiki", "wikitext")
DEFAULT_DROP_SECTIONS = [
    "references", "external links", "see also", "further reading", "notes", "notes and references",
    "bibliography", "sources", "citations", "footnotes", "works cited", "general references",
    "references and notes", "explanatory notes",
]
DISAMBIGUATION_TEMPLATES = {"disambiguation", "disambig", "dab", "disamb", "hndis", "geodis", "dmbox",
                            "hospital disambiguation", "school disambiguation", "mathematical disambiguation",
                            "place name disambiguation", "letter disambiguation", "number disambiguation"}
DROP_TAGS = {"ref", "references", "table", "gallery", "math", "chem", "ce", "score", "timeline", "imagemap",
             "graph", "mapframe", "maplink", "templatedata", "templatestyles", "syntaxhighlight", "source",
             "hiero", "inputbox", "categorytree", "noinclude", "section", "indicator"}
#: namespaces whose links are not text (files, categories) in the languages of the largest wikis
NON_TEXT_LINK_PREFIXES = {"file", "image", "media", "category", "datei", "bild", "kategorie", "fichier",
                          "catégorie", "archivo", "categoría", "imagen", "файл", "категория", "ファイル",
                          "カテゴリ", "文件", "分类", "plik", "kategoria", "bestand", "categorie", "immagine",
                          "arquivo", "categoria", "imagem"}
_INTERWIKI = re.compile(r"^[a-z]{2,3}(?:-[a-z]{2,8})*$")


def _render(code) -> str:
    return "".join(_render_node(n) for n in code.nodes)


def _render_node(node) -> str:
    from mwparserfromhell import nodes as N
    if isinstance(node, N.Text):
        return node.value
    if isinstance(node, N.HTMLEntity):
        try:
            return node.normalize()
        except ValueError:
            return ""
    if isinstance(node, N.Wikilink):
        title = str(node.title).strip()
        if not title.startswith(":") and ":" in title:
            prefix = title.split(":", 1)[0].strip().lower()
            if prefix in NON_TEXT_LINK_PREFIXES or _INTERWIKI.match(prefix):
                return ""
        if node.text is not None:
            return _render(node.text)
        return _render(node.title).lstrip(":")
    if isinstance(node, N.ExternalLink):
        return _render(node.title) if node.title is not None else ""
    if isinstance(node, N.Tag):
        tag = str(node.tag).strip().lower()
        if tag in DROP_TAGS:
            return ""
        if tag in ("br", "hr"):
            return "\n"
        if tag in ("li", "dt", "dd"):
            return ""   # the item text follows as sibling nodes
        return _render(node.contents) if node.contents is not None else ""
    if isinstance(node, N.Heading):
        return "\n" + _render(node.title).strip() + "\n"
    return ""   # templates, comments, template arguments


def _post(text: str) -> str:
    text = re.sub(r"\(\s*[,;]?\s*\)", "", text)              # "( )" left by removed templates
    text = re.sub(r"\(\s*[,;]?\s*", "(", text)
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" +([,.;:])", r"\1", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def wikitext_to_text(src: str, *, drop_sections=DEFAULT_DROP_SECTIONS) -> tuple[str, bool]:
    """(plain text, is a disambiguation page) of one page's wikitext."""
    import mwparserfromhell
    from mwparserfromhell import nodes as N
    code = mwparserfromhell.parse(src)
    drop = {s.lower() for s in drop_sections}
    disamb = any(str(t.name).strip().lower() in DISAMBIGUATION_TEMPLATES for t in code.filter_templates(recursive=False))
    out: list[str] = []
    skip_level: Optional[int] = None
    for node in code.nodes:
        if isinstance(node, N.Heading):
            if skip_level is not None and node.level > skip_level:
                continue
            skip_level = None
            title = _render(node.title).strip()
            if title.lower() in drop:
                skip_level = node.level
                continue
            out.append("\n\n" + title + "\n")
            continue
        if skip_level is None:
            out.append(_render_node(node))
    return _post("".join(out)), disamb


@register
class WikiClean(Filter):
    __doc__ = __doc__
    name = "wiki_clean"
    inputs = ("text",)
    outputs = ("wiki_disambiguation",)

    def __init__(self, *, namespaces: Optional[list[int]] = None, keep_redirects: bool = False,
                 drop_disambiguation: bool = True, drop_sections: Optional[list[str]] = None, min_chars: int = 1):
        if min_chars < 0:
            raise StageError(f"wiki_clean: min_chars must be >= 0, got {min_chars}")
        self.namespaces = [0] if namespaces is None else list(namespaces)
        self.keep_redirects, self.drop_disambiguation = keep_redirects, drop_disambiguation
        self.drop_sections = DEFAULT_DROP_SECTIONS if drop_sections is None else list(drop_sections)
        self.min_chars = min_chars

    def _redirect(self, batch: pa.Table) -> np.ndarray:
        mask = pc.fill_null(pc.match_substring_regex(batch["text"], r"(?i)^\s*#\s*redirect"), False).to_numpy(zero_copy_only=False)
        if "wiki_redirect" in batch.column_names:
            mask |= pc.is_valid(batch["wiki_redirect"]).to_numpy(zero_copy_only=False)
        return mask

    def _namespace_fail(self, batch: pa.Table) -> np.ndarray:
        if "wiki_namespace" not in batch.column_names:
            return np.zeros(batch.num_rows, bool)
        ns = batch["wiki_namespace"]
        # rows without a namespace (exports) are articles
        ok = pc.or_(pc.is_null(ns), pc.is_in(ns, value_set=pa.array(self.namespaces, pa.int32())))
        return ~ok.to_numpy(zero_copy_only=False)

    def score(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        if "content_type" in batch.column_names:
            markup = pc.fill_null(pc.is_in(batch["content_type"], value_set=pa.array(WIKITEXT_TYPES)), False)
            markup = markup.to_numpy(zero_copy_only=False)
        else:
            markup = np.ones(n, bool)
        # pages that will be dropped anyway are not parsed
        skip = self._namespace_fail(batch) | (self._redirect(batch) if not self.keep_redirects else np.zeros(n, bool))
        texts = batch["text"].to_pylist()
        disamb = np.zeros(n, bool)
        for i in np.flatnonzero(markup & ~skip):  # per-row parse: see the module docstring
            if texts[i]:
                texts[i], disamb[i] = wikitext_to_text(texts[i], drop_sections=self.drop_sections)
        out = set_column(batch, batch.schema.field("text"), texts)
        if "content_type" in out.column_names:
            ct = pc.if_else(pa.array(markup & ~skip), pa.scalar("text/plain"), out["content_type"])
            out = set_column(out, out.schema.field("content_type"), ct)
        return set_column(out, "wiki_disambiguation", pa.array(disamb, pa.bool_()))

    def decide(self, batch: pa.Table) -> pa.Array:
        n = batch.num_rows
        chars = pc.utf8_length(pc.fill_null(batch["text"], "")).to_numpy(zero_copy_only=False)
        return reasons_from_masks(n, [
            (f"{CHECK}:redirect", self._redirect(batch) if not self.keep_redirects else np.zeros(n, bool)),
            (f"{CHECK}:namespace", self._namespace_fail(batch)),
            (f"{CHECK}:disambiguation", batch["wiki_disambiguation"].to_numpy(zero_copy_only=False)
             if self.drop_disambiguation else np.zeros(n, bool)),
            (f"{CHECK}:too_short", chars < max(self.min_chars, 1)),
        ])
