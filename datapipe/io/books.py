"""Books reader (``input.format: books``): plain-text books, one file per book, Project
Gutenberg style, and ``datasets`` exports (PG-19 layout: ``text``, ``short_book_title``,
``url``, ``publication_date``).

Gutenberg files carry a licence header and footer around the book; :func:`strip_gutenberg`
keeps only the text between the ``*** START OF THE PROJECT GUTENBERG EBOOK ... ***`` and
``*** END OF ... ***`` markers (and their older variants: ``*END*THE SMALL PRINT!``,
``End of the Project Gutenberg EBook of``), drops a leading "Produced by ..." credit
paragraph, and reads ``Title:``, ``Author:``, ``Language:`` and the ebook number from the
header. A file without markers is kept whole. Counters: ``gutenberg_header_removed``,
``gutenberg_footer_removed``.

Columns: ``title``, ``author``, ``lang`` (Gutenberg's ``Language:`` name mapped to ISO 639-1
when known), ``source_detail`` (``gutenberg:<ebook number>`` or the file name). ``id`` is
``gutenberg/<number>`` when the header has one, else a hash of the path. Book-level
near-dedup is a global pass (``dedup_minhash`` in ``configs/sources/books.yaml``).
"""
from __future__ import annotations

import os
import re
from typing import Iterator, Optional

import pyarrow as pa

from ..schema import doc_id
from ..stats import StageStats
from ._common import build_batch, count, is_export, open_binary
from .tabular import iter_export_batches

EXTRA = {"title": pa.string(), "author": pa.string(), "lang": pa.string(), "source_detail": pa.string()}
BOOK_SUFFIXES = (".txt", ".txt.gz", ".txt.bz2", ".txt.zst", ".txt.xz")

_START = re.compile(
    r"^.*(?:\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK"
    r"|\*END\*THE SMALL PRINT!"
    r"|\*{3}\s*START OF THE PROJECT GUTENBERG"
    r"|START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK).*$", re.I | re.M)
_END = re.compile(
    r"^.*(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK"
    r"|END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK"
    r"|End of (?:the )?Project Gutenberg'?s?\b"
    r"|\*{3}\s*END OF THE PROJECT GUTENBERG).*$", re.I | re.M)
_PRODUCED = re.compile(r"\A\s*(?:Produced|Prepared|Transcribed|E-?text prepared) by\b[^\n]*(?:\n[^\n]+)*\n\s*\n", re.I)
_META = {k: re.compile(rf"^{k}:\s*(.+?)\s*$", re.I | re.M) for k in ("Title", "Author", "Language")}
_EBOOK_NO = re.compile(r"\[E-?Book\s*#\s*(\d+)\]|E-?Book\s*#\s*(\d+)|EBook\s+No\.\s*(\d+)", re.I)
_LANGS = {"english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it", "portuguese": "pt",
          "dutch": "nl", "finnish": "fi", "swedish": "sv", "danish": "da", "norwegian": "no", "latin": "la",
          "greek": "el", "russian": "ru", "chinese": "zh", "japanese": "ja", "polish": "pl", "hungarian": "hu",
          "esperanto": "eo", "catalan": "ca", "czech": "cs", "tagalog": "tl", "welsh": "cy"}


def strip_gutenberg(text: str) -> tuple[str, dict]:
    """(book body, metadata) of a Gutenberg file; metadata has ``title``, ``author``, ``lang``,
    ``ebook`` (number as string), ``header`` and ``footer`` (whether they were removed)."""
    meta: dict = {"header": False, "footer": False}
    start = _START.search(text)
    head = text[: start.start()] if start else text[:5000]
    for key, rx in _META.items():
        m = rx.search(head)
        if m:
            meta[key.lower()] = m.group(1).strip()
    m = _EBOOK_NO.search(head) or (_EBOOK_NO.search(text[start.start(): start.end()]) if start else None)
    if m:
        meta["ebook"] = next(g for g in m.groups() if g)
    if "language" in meta:
        meta["lang"] = _LANGS.get(meta.pop("language").split(",")[0].split(" and ")[0].strip().lower())
    body = text
    if start:
        body = text[start.end():]
        meta["header"] = True
        if "SMALL PRINT" in start.group(0).upper():
            # the old header's own end marker ends the legal text
            sp_end = re.search(r"^.*\*END\*?THE SMALL PRINT.*$", body, re.I | re.M)
            if sp_end:
                body = body[sp_end.end():]
    end = _END.search(body)
    if end:
        body = body[: end.start()]
        meta["footer"] = True
    body = _PRODUCED.sub("", body, count=1) if meta["header"] else body
    return body.strip("\n\r ") + "\n" if body.strip() else "", meta


def expand_input(spec: str) -> list[str]:
    if os.path.isdir(spec):
        return sorted(os.path.join(dp, f) for dp, _, fs in os.walk(spec) for f in fs
                      if not f.startswith(".") and f.lower().endswith(BOOK_SUFFIXES + (".parquet", ".jsonl", ".jsonl.gz")))
    return [os.path.abspath(spec)]


def read_book(path: str, *, source: str, stats: StageStats) -> Optional[dict]:
    stats.rows_in += 1
    with open_binary(path) as fh:
        raw = fh.read()
    # Gutenberg's old files are Latin-1 (the header says "Character set encoding: ISO-8859-1")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
        stats.counters["latin1_decoded"] = stats.counters.get("latin1_decoded", 0) + 1
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    body, meta = strip_gutenberg(text)
    for part in ("header", "footer"):
        if meta[part]:
            stats.counters[f"gutenberg_{part}_removed"] = stats.counters.get(f"gutenberg_{part}_removed", 0) + 1
    if not body.strip():
        count(stats, "no_text")
        return None
    stats.rows_out += 1
    stats.bytes_out += len(body.encode("utf-8"))
    ebook = meta.get("ebook")
    return {"id": f"gutenberg/{ebook}" if ebook else doc_id(os.path.basename(path), path),
            "text": body, "source": source,
            "url": f"https://www.gutenberg.org/ebooks/{ebook}" if ebook else None,
            "content_type": "text/plain", "title": meta.get("title"), "author": meta.get("author"),
            "lang": meta.get("lang"),
            "source_detail": f"gutenberg:{ebook}" if ebook else os.path.basename(path)}


def iter_batches(path: str, *, input_cfg, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    if is_export(path):
        yield from iter_export_batches(path, source=input_cfg.source, batch_size=batch_size, stats=stats,
                                       text_candidates=(input_cfg.text_field, "text"),
                                       rename={"short_book_title": "title", "book_title": "title"}, extra=EXTRA)
        return
    row = read_book(path, source=input_cfg.source, stats=stats)
    if row is not None:
        yield build_batch([row], EXTRA)

