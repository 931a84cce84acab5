"""Charset detection and decoding of web pages: payload bytes -> UTF-8 bytes (what Arrow stores).

:func:`payload_to_utf8` applies the rules (byte-order mark, strict and mostly-valid UTF-8, the
declared charsets, charset-normalizer detection, replacement as the last resort) and counts
what it had to do into a counters dict: ``charset_detected`` (no usable declared charset,
charset-normalizer chose one), ``charset_replaced`` (undecodable bytes became U+FFFD),
``charset_utf8_override`` (declared a legacy charset but the bytes are valid UTF-8 with
non-ASCII text: decoded as UTF-8). Labels are mapped as browsers do (WHATWG: ``latin1`` is
cp1252, ``gb2312`` is gb18030 ...) by :func:`normalize_charset`.
"""
from __future__ import annotations

import codecs
import re

from ._common import bump

#: WHATWG-style label mapping: labels browsers decode with a superset codec
_CHARSET_ALIASES = {
    **dict.fromkeys(("latin1", "latin-1", "iso-8859-1", "iso8859-1", "iso_8859-1", "iso_8859-1:1987", "l1",
                     "ascii", "us-ascii", "ansi_x3.4-1968", "cp819", "ibm819", "iso-ir-100", "csisolatin1",
                     "x-cp1252", "windows-1252", "cp1252", "iso88591"), "cp1252"),
    **dict.fromkeys(("iso-8859-9", "iso8859-9", "latin5", "l5", "windows-1254"), "cp1254"),
    **dict.fromkeys(("iso-8859-11", "tis-620", "windows-874", "dos-874"), "cp874"),
    **dict.fromkeys(("gb2312", "gbk", "x-gbk", "gb_2312-80", "gb_2312", "cp936", "ms936", "windows-936",
                     "chinese", "csgb2312", "euc-cn", "gb2312-80", "iso-ir-58", "gb18030", "hz-gb-2312"), "gb18030"),
    **dict.fromkeys(("big5", "big5-hkscs", "cn-big5", "x-x-big5", "csbig5"), "big5hkscs"),
    **dict.fromkeys(("shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "windows-31j", "csshiftjis",
                     "cp932", "ms932"), "cp932"),
    **dict.fromkeys(("euc-kr", "ks_c_5601-1987", "ks_c_5601", "ksc5601", "windows-949", "korean",
                     "csksc56011987", "cp949", "iso-ir-149"), "cp949"),
    **dict.fromkeys(("utf8", "utf-8", "unicode-1-1-utf-8", "x-unicode20utf8"), "utf-8"),
    **dict.fromkeys(("macintosh", "x-mac-roman", "mac", "csmacintosh"), "mac_roman"),
    "iso-8859-8-i": "iso8859-8",
}
#: codecs.lookup() names mapped the same way (labels Python knows under other spellings)
_CODEC_SUPERSETS = {"latin-1": "cp1252", "iso8859-1": "cp1252", "ascii": "cp1252", "gb2312": "gb18030",
                    "gbk": "gb18030", "euc_kr": "cp949", "shift_jis": "cp932", "big5": "big5hkscs",
                    "iso8859-9": "cp1254", "tis-620": "cp874", "utf-8-sig": "utf-8"}
_REFUSED_CODECS = frozenset({"utf-7", "utf_7"})
_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?\s*([A-Za-z0-9_:.+-]{1,40})", re.I)
_META_CHARSET = re.compile(rb"<meta[^>]{0,512}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_:.+-]{1,40})", re.I)
#: 54 of the 1,600 realpages put their <meta charset> after 4 KB (inline scripts and
#: styles first); the scan only runs when UTF-8 failed, so a wider window costs little
_META_SCAN_BYTES = 16 << 10
_DETECT_BYTES = 64 << 10
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def charset_param(content_type: str | None) -> str | None:
    """The ``charset=`` label of a Content-Type value (as written), or None."""
    m = _CHARSET_PARAM.search(content_type or "")
    return m.group(1) if m else None


def normalize_charset(label: str | None) -> str | None:
    """A Python codec name for a charset label, or None when the label is bogus."""
    if not label:
        return None
    key = label.strip().strip("\"'").lower()
    key = _CHARSET_ALIASES.get(key, key)
    try:
        info = codecs.lookup(key)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None  # base64, rot13, zlib ... are codecs but not charsets
    return _CODEC_SUPERSETS.get(info.name, info.name)


def _utf8_valid_len(data: bytes) -> int | None:
    """Length of the valid UTF-8 prefix when ``data`` is UTF-8 (a multi-byte character
    cut at the very end, as in crawler-truncated payloads, is left out), else None."""
    try:
        data.decode("utf-8")  # the fastest validity check the standard library has
        return len(data)
    except UnicodeDecodeError as e:
        if e.reason == "unexpected end of data" and e.start >= len(data) - 3:
            try:
                data[:e.start].decode("utf-8")
                return e.start
            except UnicodeDecodeError:
                return None
        return None


def decode_payload(data: bytes, declared: list[str | None], counters: dict[str, int]) -> str:
    """Bytes -> str for a web page; see :func:`payload_to_utf8` for the rules."""
    return payload_to_utf8(data, declared, counters).decode("utf-8")


def payload_to_utf8(data: bytes, declared: list[str | None], counters: dict[str, int]) -> bytes:
    """A web page's bytes -> the same text as UTF-8 bytes (what Arrow stores).

    Order: byte-order mark; strict UTF-8 (valid UTF-8 with non-ASCII bytes is
    UTF-8 whatever the label says: mislabelled pages are common, and legacy
    text is almost never valid UTF-8; 8 of the 1,600 realpages say gb2312/euc-jp
    and are UTF-8); mostly-UTF-8 (many more multi-byte characters than invalid
    bytes: a stray byte in a UTF-8 page); the declared charsets in order (HTTP
    header, then ``<meta>`` in the first 16 KB), strictly, then allowing <= 0.5%
    replaced characters; charset-normalizer detection (64 KB sample); last, the
    first usable label (or UTF-8) with ``errors="replace"``.
    Counts ``charset_*`` events into ``counters``. Valid UTF-8 is returned as is
    (no str round trip: the bulk of the web costs one validity check).
    """
    for bom, enc in _BOMS:
        if data.startswith(bom):
            text = data[len(bom):].decode(enc, "replace")
            if "\ufffd" in text:
                bump(counters, "charset_replaced")
            return text.encode("utf-8", "surrogatepass")
    n = _utf8_valid_len(data)
    labels = [c for c in (normalize_charset(d) for d in declared) if c]
    if n is not None:
        if labels and labels[0] != "utf-8" and not data.isascii():
            bump(counters, "charset_utf8_override")
        return data if n == len(data) else data[:n]
    replaced = data.decode("utf-8", "replace")
    bad = replaced.count("\ufffd")
    # bytes folded into multi-byte characters: >= 1 per such character, ~0 for legacy text
    if bad and len(data) - len(replaced) >= 8 * bad:
        bump(counters, "charset_replaced")
        return replaced.encode("utf-8")
    m = _META_CHARSET.search(data[:_META_SCAN_BYTES])  # only needed once UTF-8 failed
    meta = normalize_charset(m.group(1).decode("ascii", "replace")) if m else None
    if meta and meta not in labels:
        labels.append(meta)
    for enc in labels:
        if enc == "utf-8":
            continue
        try:
            return data.decode(enc).encode("utf-8", "surrogatepass")
        except (UnicodeDecodeError, LookupError):
            continue
    for enc in labels:  # a declared charset with a few bad bytes beats a guess
        if enc == "utf-8":
            continue
        text = data.decode(enc, "replace")
        if text.count("\ufffd") <= max(1, len(text) // 200):
            bump(counters, "charset_replaced")
            return text.encode("utf-8", "surrogatepass")
    enc = _detect(data)
    if enc:
        bump(counters, "charset_detected")
        try:
            return data.decode(enc).encode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            bump(counters, "charset_replaced")
            return data.decode(enc, "replace").encode("utf-8", "surrogatepass")
    bump(counters, "charset_replaced")
    return data.decode(labels[0] if labels else "utf-8", "replace").encode("utf-8", "surrogatepass")


#: among equally good guesses, the WHATWG default for Western pages first
_DETECT_PREFERENCE = ("utf_8", "cp1252", "latin_1", "iso8859_15")


def _detect(data: bytes) -> str | None:
    """charset-normalizer's guess; on ties (common for short Western text, where
    cp1250/cp850/cp1252 decode alike) prefer cp1252 as browsers do."""
    from charset_normalizer import from_bytes  # ~50 ms import; only pages that failed UTF-8 get here

    results = list(from_bytes(data[:_DETECT_BYTES]))
    if not results:
        return None
    best = results[0]
    ties = {m.encoding for m in results
            if abs(m.chaos - best.chaos) < 1e-6 and abs(m.coherence - best.coherence) < 1e-6}
    for enc in _DETECT_PREFERENCE:
        if enc in ties:
            return normalize_charset(enc)
    return normalize_charset(best.encoding)

