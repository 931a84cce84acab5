"""The two WARC record engines behind one record view, :class:`Rec`.

FastWARC (Rust; parses the realpages WARCs 2x as fast as warcio, mostly from faster inflate;
reads single-stream gzip, and the ClueWeb09 WARC/0.18 Content-Length bug in quirks mode) reads
WARC/WET; warcio reads ARC (FastWARC cannot) and is the fallback when FastWARC is not installed
(``engine="warcio"`` forces it). :func:`choose_engine` picks one for a :class:`~.framing.Layout`.
Both yield the same fields for the same WARC file, so the reader (:mod:`.warc`) gives the same
ids and rows with either. HTTP headers are parsed leniently (ClueWeb ends them with bare LF).
FastWARC runs strict on files that can be re-entered (the reader re-synchronises after an
error) and in quirks mode on single-stream gzip (it skips bad framing on its own, silently).
"""
from __future__ import annotations

from typing import Callable, Iterator

from .framing import GunzipReader, Layout

ENGINES = ("auto", "fastwarc", "warcio")


class Rec:
    """One record as both engines show it: WARC and HTTP header fields, payload ``read``/``skip``."""

    __slots__ = ("kind", "record_id", "date", "uri", "offset", "warc_ctype", "http", "status", "ctype", "has_length",
                 "te", "ce", "identified", "warc_truncated", "length", "_read", "_skip")

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` payload bytes (exact unless the record ends first)."""
        first = self._read(limit)
        if len(first) >= limit or not first:
            return first
        parts, got = [first], len(first)
        while got < limit:
            chunk = self._read(limit - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def skip(self) -> int:
        """Consume the rest of the payload; returns the bytes consumed."""
        return self._skip()


def fastwarc_records(fh, layout: Layout) -> Iterator[Rec]:
    from fastwarc.warc import ArchiveIterator

    # strict WARC framing (errors are counted and re-synchronised by the reader), lenient
    # HTTP headers: ClueWeb09 ends them with bare LF, which strict parsing misreads
    it = ArchiveIterator(fh, parse_http=False, auto_decode="none", quirks_mode=not layout.resyncable)
    for r in it:
        h = r.headers
        rec = Rec()
        rec.kind = (h.get("WARC-Type") or "").strip().lower()
        rec.record_id = h.get("WARC-Record-ID")
        rec.date = h.get("WARC-Date")
        rec.uri = h.get("WARC-Target-URI")
        rec.offset = r.stream_pos
        rec.warc_ctype = (h.get("Content-Type") or "").lower()
        rec.identified = h.get("WARC-Identified-Payload-Type")
        rec.warc_truncated = h.get("WARC-Truncated")
        rec.has_length = (h.get("Content-Length") or "").strip().isdigit()
        hh = None
        if rec.kind == "response" and r.is_http:
            try:
                r.parse_http(auto_decode="none", quirks_mode=True)
                hh = r.http_headers
            except Exception:
                hh = None
        rec.http = hh is not None and hh.status_line is not None
        if rec.http:
            rec.status = hh.status_code
            rec.ctype = hh.get("Content-Type")
            rec.te = hh.get("Transfer-Encoding")
            rec.ce = hh.get("Content-Encoding")
        else:
            rec.status = rec.ctype = rec.te = rec.ce = None
        rec.length = r.content_length  # payload bytes after the HTTP headers
        rec._read = r.reader.read
        rec._skip = r.reader.consume
        yield rec


def warcio_records(fh, layout: Layout) -> Iterator[Rec]:
    from warcio.archiveiterator import ArchiveIterator

    stream = fh
    if layout.gzip and not layout.multi_member:
        stream = GunzipReader(fh)  # warcio refuses single-stream gzip itself
    it = ArchiveIterator(stream, arc2warc=True, check_digests=False)
    for r in it:
        h = r.rec_headers
        rec = Rec()
        rec.kind = (r.rec_type or "").strip().lower()
        # warcio invents a random WARC-Record-ID for ARC records: use the offset instead
        rec.record_id = None if layout.arc else h.get_header("WARC-Record-ID")
        rec.date = h.get_header("WARC-Date")
        rec.uri = h.get_header("WARC-Target-URI")
        # it.offset: start of this record (absolute: warcio starts it at fh.tell());
        # get_record_offset() would read the record to its end first
        rec.offset = it.offset
        rec.warc_ctype = (r.content_type or "").lower()
        rec.identified = h.get_header("WARC-Identified-Payload-Type")
        rec.warc_truncated = h.get_header("WARC-Truncated")
        rec.has_length = True  # warcio refuses records without one
        hh = r.http_headers
        rec.http = hh is not None and bool(hh.statusline or hh.headers)
        if rec.http:
            try:
                rec.status = int(hh.get_statuscode())
            except (TypeError, ValueError):
                rec.status = None
            rec.ctype = hh.get_header("Content-Type")
            rec.te = hh.get_header("Transfer-Encoding")
            rec.ce = hh.get_header("Content-Encoding")
        else:
            rec.status = rec.ctype = rec.te = rec.ce = None
        raw = r.raw_stream
        rec.length = raw.limit
        rec._read = raw.read

        def _skip(raw=raw) -> int:
            n = 0
            while chunk := raw.read(1 << 16):
                n += len(chunk)
            return n

        rec._skip = _skip
        yield rec
    if isinstance(stream, GunzipReader) and stream.cut:
        raise EOFError("gzip stream ends before its end-of-stream marker")


def choose_engine(layout: Layout, engine: str) -> Callable[..., Iterator[Rec]]:
    if layout.arc or engine == "warcio":
        return warcio_records
    try:
        import fastwarc.warc  # noqa: F401
    except ImportError:
        if engine == "fastwarc":
            raise
        return warcio_records
    return fastwarc_records
