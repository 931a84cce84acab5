"""Wikipedia reader (``input.format: mediawiki``): MediaWiki XML dumps and ``datasets`` exports.

**XML dumps** (``*-pages-articles*.xml[.bz2|.gz]``, any ``export-0.x`` schema version) are
streamed with ``lxml.etree.iterparse``: one ``<page>`` in memory at a time, each cleared
once read. ``.bz2`` files may be *multistream* (Wikimedia's ``*-multistream.xml.bz2``: a
header stream, then streams of 100 pages, then a footer stream); Python's ``bz2`` reads the
streams one after another. :func:`iter_multistream_pages` reads only the streams between
two byte offsets of such a file (offsets from the dump's ``*-multistream-index.txt.bz2``):
the way to split one dump into independent pieces.

Each page becomes one row with the raw wikitext in ``text`` and ``content_type``
``text/x-wiki`` (the revision's ``<format>``); the ``wiki_clean`` stage turns the markup
into plain text and drops redirects and non-article namespaces with a reason. Columns:
``id`` (``<dbname>/<page id>``), ``url`` (from ``<siteinfo><base>``), ``fetch_time`` (the
revision timestamp), ``title``, ``lang`` (from the dump name: ``enwiki`` -> ``en``),
``source_detail`` (the dump's ``dbname``), ``wiki_namespace``, ``wiki_redirect`` (target
title or null). Pages without a revision text are skipped (``read: no_text``).

**``datasets`` exports** (``.parquet`` / ``.jsonl``, the Hugging Face ``wikipedia`` /
``wikimedia/wikipedia`` layout: ``id``, ``url``, ``title``, ``text``) are plain text
already: ``content_type`` is ``text/plain`` and ``wiki_clean`` leaves their text alone.
``lang`` comes from the path (``20231101.en/train-00000-of-00041.parquet`` -> ``en``).

Cost: lxml parsing runs at tens of MB/s; bz2 decompression (~20 MB/s per core) dominates
for compressed dumps.
"""
from __future__ import annotations

import io
import os
import re
from typing import Iterator, Optional

import pyarrow as pa

from ..schema import parse_time
from ..stats import StageStats
from ._common import batched, build_batch, count, is_export, iter_export_batches, open_binary

EXTRA = {"title": pa.string(), "lang": pa.string(), "source_detail": pa.string(),
         "wiki_namespace": pa.int32(), "wiki_redirect": pa.string()}
_PROJECTS = ("wiktionary", "wikibooks", "wikinews", "wikiquote", "wikisource", "wikiversity", "wikivoyage", "wiki")
#: dbname prefixes that are not the language code
_LANG_FIX = {"simple": "en", "be_x_old": "be-tarask", "zh_classical": "lzh", "zh_min_nan": "nan",
             "zh_yue": "yue", "roa_rup": "rup", "bat_smg": "sgs", "fiu_vro": "vro", "nds_nl": "nds-nl"}
_DUMP_NAME = re.compile(r"^([a-z_]+?)(" + "|".join(_PROJECTS) + r")(?:-|$)")


def lang_from_dbname(name: str) -> Optional[str]:
    """``enwiki`` / ``enwiki-20240101-pages-articles.xml.bz2`` -> ``en``; ``simplewiki`` -> ``en``."""
    m = _DUMP_NAME.match(os.path.basename(name).lower())
    if not m or m.group(1) in ("commons", "meta", "species", "wikidata", "mediawiki"):
        return None
    code = m.group(1)
    return _LANG_FIX.get(code, code.replace("_", "-"))


def lang_from_export_path(path: str) -> Optional[str]:
    """HF layouts: ``20231101.en/...``, ``wikipedia/20220301.de/...``, ``.../en/train-*.parquet``."""
    for part in reversed(path.replace("\\", "/").split("/")[:-1]):
        m = re.fullmatch(r"\d{8}\.([a-z][a-z0-9_-]*)", part)
        if m:
            return _LANG_FIX.get(m.group(1), m.group(1))
    parent = os.path.basename(os.path.dirname(path))
    return parent if re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?", parent) else lang_from_dbname(os.path.basename(path))


def _local(el) -> str:
    tag = el.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(el, name: str):
    for c in el:
        if _local(c) == name:
            return c
    return None


def _child_text(el, name: str) -> Optional[str]:
    c = _child(el, name) if el is not None else None
    return c.text if c is not None else None


def iter_pages(stream) -> Iterator[dict]:
    """Yield one dict per ``<page>`` (siteinfo fields merged in) from an XML byte stream."""
    from lxml import etree
    site: dict = {}
    for _, el in etree.iterparse(stream, events=("end",), tag=("{*}page", "{*}siteinfo"),
                                 huge_tree=True, recover=False):
        if _local(el) == "siteinfo":
            site = {"dbname": _child_text(el, "dbname"), "base": _child_text(el, "base")}
            el.clear()
            continue
        rev = _child(el, "revision")
        redirect = _child(el, "redirect")
        text_el = _child(rev, "text") if rev is not None else None
        ns = _child_text(el, "ns")
        yield {
            "site": site,
            "title": _child_text(el, "title"),
            "ns": int(ns) if ns and ns.lstrip("-").isdigit() else 0,
            "page_id": _child_text(el, "id"),
            "redirect": (redirect.get("title") or "") if redirect is not None else None,
            "timestamp": _child_text(rev, "timestamp"),
            "format": _child_text(rev, "format") or _child_text(rev, "model"),
            "text": text_el.text if text_el is not None else None,
        }
        # free the page and the already-parsed siblings before it: constant memory
        el.clear()
        parent = el.getparent()
        if parent is not None:
            while el.getprevious() is not None:
                del parent[0]


def _page_url(base: Optional[str], title: str) -> Optional[str]:
    if not base or "/wiki/" not in base:
        return None
    from urllib.parse import quote
    return base.split("/wiki/", 1)[0] + "/wiki/" + quote(title.replace(" ", "_"), safe="/:_(),'!-.~")


def _page_rows(pages: Iterator[dict], *, path: str, source: str, stats: StageStats) -> Iterator[dict]:
    file_lang = lang_from_dbname(path)
    for p in pages:
        stats.rows_in += 1
        text = p["text"]
        if not text or not text.strip():
            count(stats, "no_text")
            continue
        site = p["site"]
        dbname = site.get("dbname") or os.path.basename(path).split("-", 1)[0]
        title = p["title"] or ""
        stats.rows_out += 1
        stats.bytes_out += len(text.encode("utf-8", "replace"))
        yield {
            "id": f"{dbname}/{p['page_id'] or title}",
            "text": text,
            "source": source,
            "url": _page_url(site.get("base"), title),
            "fetch_time": parse_time(p["timestamp"]),
            "content_type": p["format"] or "text/x-wiki",
            "title": title,
            "lang": lang_from_dbname(dbname) or file_lang,
            "source_detail": dbname,
            "wiki_namespace": p["ns"],
            "wiki_redirect": p["redirect"],
        }


def _batched(rows: Iterator[dict], batch_size: int) -> Iterator[pa.Table]:
    yield from batched(rows, batch_size, EXTRA)


def iter_dump_batches(path: str, *, source: str, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    with open_binary(path) as fh:
        yield from _batched(_page_rows(iter_pages(fh), path=path, source=source, stats=stats), batch_size)


# ---------------------------------------------------------------------------
# multistream byte ranges

def read_multistream_index(index_path: str) -> list[int]:
    """Sorted distinct stream offsets from a ``*-multistream-index.txt[.bz2]`` (``offset:id:title``)."""
    offsets = set()
    with open_binary(index_path) as fh:
        for line in io.TextIOWrapper(fh, encoding="utf-8", errors="replace"):
            head = line.split(":", 1)[0]
            if head.isdigit():
                offsets.add(int(head))
    return sorted(offsets)


def iter_multistream_pages(path: str, start: int, end: Optional[int], *, header_end: Optional[int] = None) -> Iterator[dict]:
    """Pages of the bz2 streams in bytes ``[start, end)`` of a multistream dump.

    The streams hold bare ``<page>`` elements; the first stream (bytes ``[0, header_end)``,
    default: up to ``start``'s first index offset) holds ``<mediawiki><siteinfo>``, which is read
    for the site fields and the namespace, then the pages are parsed inside a synthetic root.
    """
    import bz2
    import fsspec
    with fsspec.open(path, "rb") as raw:
        raw.seek(0)
        head = raw.read(header_end if header_end is not None else start)
        header = bz2.decompress(head).decode("utf-8", "replace")
        raw.seek(start)
        body = raw.read(None if end is None else end - start)
    root_open = header[header.index("<mediawiki"): header.index(">", header.index("<mediawiki")) + 1]
    site_xml = header[header.index("<siteinfo"): header.index("</siteinfo>") + len("</siteinfo>")] \
        if "<siteinfo" in header else ""
    pages = bz2.decompress(body).decode("utf-8", "replace")
    pages = pages.replace("</mediawiki>", "")
    doc = (root_open + site_xml + pages + "</mediawiki>").encode("utf-8")
    yield from iter_pages(io.BytesIO(doc))


# ---------------------------------------------------------------------------
# entry points used by datapipe.io

DUMP_SUFFIXES = (".xml", ".xml.bz2", ".xml.gz", ".xml.zst", ".xml.xz")


def expand_input(spec: str) -> list[str]:
    """A folder -> its dump files and exports; a file -> itself."""
    if os.path.isdir(spec):
        return sorted(os.path.join(dp, f) for dp, _, fs in os.walk(spec) for f in fs
                      if not f.startswith(".") and f.lower().endswith(DUMP_SUFFIXES + (".parquet", ".jsonl", ".jsonl.gz"))
                      and "multistream-index" not in f)
    return [os.path.abspath(spec)]


def iter_batches(path: str, *, input_cfg, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    if is_export(path):
        lang = lang_from_export_path(path)

        def fill(tbl: pa.Table) -> pa.Table:
            n = tbl.num_rows
            for name, value in (("content_type", "text/plain"), ("lang", lang), ("source_detail", "wikipedia:" + (lang or "?"))):
                col = tbl[name]
                if col.null_count == n:
                    tbl = tbl.set_column(tbl.column_names.index(name), name, pa.array([value] * n, pa.string()))
            return tbl

        yield from iter_export_batches(path, source=input_cfg.source, batch_size=batch_size, stats=stats,
                                       text_candidates=(input_cfg.text_field, "text"), rename={}, extra=EXTRA,
                                       fill=fill)
    else:
        yield from iter_dump_batches(path, source=input_cfg.source, batch_size=batch_size, stats=stats)
