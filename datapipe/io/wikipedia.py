"""Wikipedia reader (``input.format: mediawiki``): MediaWiki XML dumps and ``datasets`` exports.

**XML dumps** (``*-pages-articles*.xml[.bz2|.gz]``, any ``export-0.x`` schema version) are
streamed with ``lxml.etree.iterparse``: one ``<page>`` in memory at a time, each cleared
once read. ``.bz2`` files may be *multistream* (Wikimedia's ``*-multistream.xml.bz2``: a
header stream, then streams of 100 pages, then a footer stream); Python's ``bz2`` reads the
streams one after another. :func:`iter_multistream_pages` reads only the streams between
two byte offsets of such a file (offsets from the dump's ``*-multistream-index.txt.bz2``).

**Splitting one dump.** When the index lies beside the dump (``<prefix>-multistream.xml.bz2``
+ ``<prefix>-multistream-index.txt[.bz2]``, also the partitioned
``...-multistream3.xml-p151574p311329.bz2`` + ``...-multistream-index3.txt-p151574p311329.bz2``),
:func:`expand_input` cuts the dump into shards ``<path>#streams=<start>-<end>``: runs of whole
consecutive bz2 streams of about :data:`SHARD_TARGET_BYTES` compressed bytes (32 MiB, ~150 MB
of XML; environment variable ``DATAPIPE_WIKI_SHARD_BYTES`` overrides it), the last one
running to the end of the file (the footer stream ``</mediawiki>`` is skipped). Every piece
also decompresses the small header stream for ``<siteinfo>``, so its rows (ids, urls, lang)
are those of a whole-file read. A piece streams: one bz2 stream (100 pages) decompressed at
a time. The cuts are a function of the dump, its index and the target, so shard keys (and
resume markers) are stable across re-runs; the shard list is part of the run's fingerprint,
so a resume with another target is refused, not mixed. Without the index (or with one whose
offsets do not fall on stream starts of this file) a dump larger than the target is one
shard, and a warning says the index would let it be split. A dump smaller than the target
is one plain shard either way.

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
import logging
import os
import re
from typing import Iterator, Optional

import pyarrow as pa

from ..schema import parse_time, set_column
from ..stats import StageStats
from ._common import batched, count, is_export, open_binary, range_spec, split_range_spec
from .tabular import iter_export_batches

log = logging.getLogger(__name__)

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

#: compressed bytes per shard when a multistream dump is split by its index (~150 MB of XML)
SHARD_TARGET_BYTES = 32 << 20
#: environment variable that overrides :data:`SHARD_TARGET_BYTES` (bytes) in the process that
#: resolves the inputs; the shard list is part of the run's fingerprint, so a resume with
#: another value is refused rather than mixed
SHARD_TARGET_ENV = "DATAPIPE_WIKI_SHARD_BYTES"
#: ``...-multistream.xml.bz2`` and the partitioned ``...-multistream3.xml-p151574p311329.bz2``
_MULTISTREAM = re.compile(r"^(?P<stem>.*multistream)(?P<part>\d*)\.xml(?P<pages>-p\d+p\d+)?\.bz2$")
_BZ2_STREAM_MAGIC = re.compile(rb"^BZh[1-9]\x31\x41\x59\x26\x53\x59")
_CHUNK = 1 << 20


def multistream_index_path(dump: str) -> Optional[str]:
    """The existing sibling index of a multistream dump (``<prefix>-multistream-index.txt[.bz2]``,
    ``...-multistream-index3.txt-p151574p311329.bz2`` for a partitioned dump), else None."""
    d, base = os.path.split(dump)
    m = _MULTISTREAM.match(base)
    if not m:
        return None
    name = f"{m.group('stem')}-index{m.group('part')}.txt{m.group('pages') or ''}"
    for cand in (name + ".bz2", name):
        p = os.path.join(d, cand)
        if os.path.isfile(p):
            return p
    return None


def read_multistream_index(index_path: str) -> list[int]:
    """Sorted distinct stream offsets from a ``*-multistream-index.txt[.bz2]`` (``offset:id:title``)."""
    offsets = set()
    with open_binary(index_path) as fh:
        for line in io.TextIOWrapper(fh, encoding="utf-8", errors="replace"):
            head = line.split(":", 1)[0]
            if head.isdigit():
                offsets.add(int(head))
    return sorted(offsets)


def _target_bytes() -> int:
    raw = os.environ.get(SHARD_TARGET_ENV)
    if raw:
        try:
            if int(raw) > 0:
                return int(raw)
        except ValueError:
            pass
        log.warning("%s=%r is not a positive byte count; using %d", SHARD_TARGET_ENV, raw, SHARD_TARGET_BYTES)
    return SHARD_TARGET_BYTES


def multistream_ranges(dump: str, offsets: list[int], *, target: int) -> list[tuple[int, int]]:
    """Group the page streams starting at ``offsets`` into consecutive ``[start, end)`` byte
    ranges of about ``target`` compressed bytes each. The first range starts at the first page
    stream (the header stream before it is read by every piece for the site info), the last
    one ends at the end of the file (the footer stream ``</mediawiki>`` is skipped when read).

    Raises ``ValueError`` when the offsets do not fit the file (an index of another dump):
    each cut must fall inside the file and on a bz2 stream header.
    """
    size = os.path.getsize(dump)
    if not offsets or offsets[0] <= 0 or offsets[-1] >= size:
        raise ValueError(f"index offsets {offsets[:1]}..{offsets[-1:]} do not fit a file of {size} bytes")
    cuts = [offsets[0]]
    for off in offsets[1:]:
        if off - cuts[-1] >= target:
            cuts.append(off)
    with open(dump, "rb") as fh:
        for off in cuts:
            fh.seek(off)
            if not _BZ2_STREAM_MAGIC.match(fh.read(10)):
                raise ValueError(f"no bz2 stream starts at byte {off}")
    return list(zip(cuts, cuts[1:] + [size]))


def _iter_streams(fh, start: int, end: Optional[int]) -> Iterator[bytes]:
    """The decompressed content of each whole bz2 stream in bytes ``[start, end)`` of ``fh``,
    one ``bytes`` per stream (Wikimedia's streams hold 100 pages: a few MB at most)."""
    import bz2
    fh.seek(start)
    left = None if end is None else end - start
    dec, out, fed, pending = bz2.BZ2Decompressor(), [], False, b""
    while True:
        if pending:
            data, pending = pending, b""
        else:
            n = _CHUNK if left is None else min(_CHUNK, left)
            data = fh.read(n) if n > 0 else b""
            if left is not None:
                left -= len(data)
        if not data:
            break
        fed = True
        out.append(dec.decompress(data))
        if dec.eof:
            yield b"".join(out)
            pending, out, fed = dec.unused_data, [], False
            dec = bz2.BZ2Decompressor()
    if fed:
        raise EOFError(f"bz2 stream cut off at byte {end if end is not None else 'EOF'}")


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (what lxml's iterparse pulls from)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._buf, self._pos = chunks, memoryview(b""), 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self._pos >= len(self._buf):
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buf, self._pos = memoryview(nxt), 0
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = self._buf[self._pos:self._pos + n]
        self._pos += n
        return n


def iter_multistream_pages(path: str, start: int, end: Optional[int], *, header_end: Optional[int] = None) -> Iterator[dict]:
    """Pages of the bz2 streams in bytes ``[start, end)`` (``end`` None: to the end of the file)
    of a multistream dump.

    The streams hold bare ``<page>`` elements; the first stream (bytes ``[0, header_end)``;
    default: the first bz2 stream of the file, wherever it ends) holds ``<mediawiki><siteinfo>``,
    which is read for the site fields and the namespace, then the pages are parsed inside a
    synthetic root. Streaming: one decompressed stream (100 pages) in memory at a time, and
    one ``<page>`` element in lxml's tree.
    """
    import fsspec
    with fsspec.open(path, "rb") as raw:
        header = next(_iter_streams(raw, 0, header_end), b"").decode("utf-8", "replace")
        if "<mediawiki" not in header:
            from ._common import InputError  # an unreadable shard is counted and skipped by the engine
            raise InputError(f"{path}: the first bz2 stream holds no <mediawiki> root (not a multistream dump)")
        at = header.index("<mediawiki")
        root_open = header[at: header.index(">", at) + 1]
        site_xml = header[header.index("<siteinfo"): header.index("</siteinfo>") + len("</siteinfo>")] \
            if "<siteinfo" in header else ""

        def chunks() -> Iterator[bytes]:
            yield (root_open + site_xml).encode("utf-8")
            for data in _iter_streams(raw, start, end):
                # the footer stream (or the tail of the last page stream) closes the root: ours does
                tail = data.rstrip()
                if tail.endswith(b"</mediawiki>"):
                    data = tail[:-len(b"</mediawiki>")]
                yield data
            yield b"</mediawiki>"

        yield from iter_pages(io.BufferedReader(_ChunkReader(chunks()), _CHUNK))


def _split_dump(path: str) -> list[str]:
    """One multistream dump -> ``path#streams=a-b`` pieces when its index is beside it."""
    if not _MULTISTREAM.match(os.path.basename(path)):
        return [path]
    index = multistream_index_path(path)
    target = _target_bytes()
    if os.path.getsize(path) <= target:
        return [path]
    if index is None:
        log.warning("%s: read as one shard; its -multistream-index.txt[.bz2] beside it would let the "
                    "dump be split into pieces of ~%d MiB", path, max(1, target >> 20))
        return [path]
    try:
        ranges = multistream_ranges(path, read_multistream_index(index), target=target)
    except ValueError as e:
        log.warning("%s: index %s does not fit the dump (%s); read as one shard", path, index, e)
        return [path]
    if len(ranges) < 2:
        return [path]
    return [range_spec(path, "streams", a, b) for a, b in ranges]


# ---------------------------------------------------------------------------
# entry points used by datapipe.io

DUMP_SUFFIXES = (".xml", ".xml.bz2", ".xml.gz", ".xml.zst", ".xml.xz")


def expand_input(spec: str) -> list[str]:
    """A folder -> its dump files and exports; a file -> itself. A multistream dump with its index
    beside it -> ``<path>#streams=<start>-<end>`` pieces of about :data:`SHARD_TARGET_BYTES`."""
    if os.path.isdir(spec):
        files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(spec) for f in fs
                       if not f.startswith(".") and "multistream-index" not in f
                       and (f.lower().endswith(DUMP_SUFFIXES + (".parquet", ".jsonl", ".jsonl.gz"))
                            or _MULTISTREAM.match(f)))
    else:
        files = [os.path.abspath(spec)]
    return [piece for f in files for piece in _split_dump(os.path.abspath(f))]


def iter_batches(path: str, *, input_cfg, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    real, start, end = split_range_spec(path, "streams")
    if start is not None:
        pages = iter_multistream_pages(real, start, end)
        yield from _batched(_page_rows(pages, path=real, source=input_cfg.source, stats=stats), batch_size)
    elif is_export(path):
        lang = lang_from_export_path(path)

        def fill(tbl: pa.Table) -> pa.Table:
            n = tbl.num_rows
            for name, value in (("content_type", "text/plain"), ("lang", lang), ("source_detail", "wikipedia:" + (lang or "?"))):
                col = tbl[name]
                if col.null_count == n:
                    tbl = set_column(tbl, name, pa.array([value] * n, pa.string()))
            return tbl

        yield from iter_export_batches(path, source=input_cfg.source, batch_size=batch_size, stats=stats,
                                       text_candidates=(input_cfg.text_field, "text"), rename={}, extra=EXTRA,
                                       fill=fill)
    else:
        yield from iter_dump_batches(path, source=input_cfg.source, batch_size=batch_size, stats=stats)
