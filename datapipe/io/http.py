"""HTTP payloads in crawl records: is it HTML, and the bytes as the page had them.

* :data:`HTML_TYPES` / :data:`GENERIC_TYPES`: Content-Types that are HTML, and labels that
  say nothing (the payload is sniffed instead: :func:`is_html_payload`);
  :func:`is_binary` spots files (PDF, images, archives ...) behind an HTML label.
* :func:`undo_http_encodings`: chunked transfer coding and gzip/deflate/br content coding
  undone, output capped (a compression bomb comes out cut short).
"""
from __future__ import annotations

import codecs
import io
import re

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "application/xhtml", "text/xhtml",
                        "application/vnd.wap.xhtml+xml", "application/xml+xhtml"})
#: labels that say nothing about the payload: sniff it instead
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/unknown",
                           "unknown/unknown", "application/x-unknown", "content/unknown", "*/*",
                           "application/binary", "text/plain", "application/x-download", "none"})
_HTML_SNIFF = re.compile(rb"<(?:!doctype\s+html|html|head|body|title|meta|div|p|table|a\s)[\s>/]", re.I)
_BINARY_MAGIC = (b"%PDF-", b"PK\x03\x04", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"\x1f\x8b",
                 b"RIFF", b"\x00\x00\x01\x00", b"OggS", b"ID3", b"\xd0\xcf\x11\xe0", b"{\\rtf")
_ENCODED = frozenset({"gzip", "x-gzip", "deflate", "br"})


def mime_type(ctype: str | None) -> str:
    """``text/html; charset=x`` -> ``text/html`` (lower case, ``""`` when missing)."""
    return (ctype or "").split(";", 1)[0].strip().lower()


def is_html_payload(head: bytes) -> bool:
    """Does the payload look like HTML (a tag HTML pages open with, near the start)?"""
    h = head[:2048].lstrip()
    if h.startswith(codecs.BOM_UTF8):
        h = h[3:].lstrip()
    return bool(_HTML_SNIFF.search(h[:1024]))


def is_binary(data: bytes) -> bool:
    """Does the payload start with the magic bytes of a non-text file format?"""
    return data.startswith(_BINARY_MAGIC)


def undo_http_encodings(data: bytes, te: str | None, ce: str | None, limit: int) -> bytes:
    """Undo chunked transfer coding and gzip/deflate/br content coding (CommonCrawl stores
    decoded payloads; Heritrix/wget archives keep what the server sent). At most ``limit+1``
    bytes come out, so a compression bomb is cut short and then counted as oversized."""
    te = (te or "").strip().lower()
    ce = (ce or "").strip().lower()
    if "chunked" not in te and ce not in _ENCODED:
        return data
    from warcio.bufferedreaders import ChunkedDataReader, DecompressingBufferedReader

    decomp = {"x-gzip": "gzip"}.get(ce, ce) if ce in _ENCODED else None
    try:
        if "chunked" in te:
            reader = ChunkedDataReader(io.BytesIO(data), decomp_type=decomp)
        else:
            reader = DecompressingBufferedReader(io.BytesIO(data), decomp_type=decomp)
        parts, got = [], 0
        while got <= limit:
            chunk = reader.read(min(1 << 16, limit + 1 - got))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)
    except Exception:
        return data  # a mislabelled identity payload: keep the bytes as they are
