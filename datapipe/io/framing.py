"""Byte-level framing of crawl files: opening, layout sniffing, gzip members, re-synchronisation.

What the record engines (:mod:`.warc_engines`) and the reader (:mod:`.warc`) need to know about
the bytes under them; of the records themselves only headers are looked at, to verify a cut:

* :func:`open_input` opens a local path or fsspec URL (remote: big read-ahead blocks);
  only "cannot open" raises (:class:`~datapipe.io._common.InputError`).
* :func:`sniff` tells plain from gzip, per-record (multi-member) from single-stream gzip, and
  ARC from WARC (:class:`Layout`); a non-seekable stream gets its sniffed bytes put back.
* :class:`GunzipReader` inflates gzip that warcio refuses (single-stream), keeping every byte
  inflated before a cut.
* :func:`next_record_start` finds the next gzip member / ``WARC/`` line / ARC header line at or
  after an offset: the reader re-synchronises there after a parse error. Per-record gzip and
  plain files can be re-entered mid-file; single-stream gzip cannot.
* :func:`gzip_tail` tells whether a multi-member file ends inside a member (a cut download).
* :func:`record_ranges` ``(path, target)`` -> ``[(start, end), ...]``: record-aligned byte ranges
  of about ``target`` bytes, contiguous from 0 to the file's size, for reading one large file
  on many workers. CommonCrawl's WARC/WET (and per-record-gzip ARC) files are one gzip member
  per record, so a cut is the first gzip member at or after ``previous cut + target`` that
  inflates to a ``WARC/`` (or ARC) header: a ``1f 8b 08`` inside compressed data is never taken
  for one. Plain WARC files are cut at a ``WARC/`` line whose header block's Content-Length ends
  exactly before the next record (or the file's end). Single-stream gzip and plain ARC cannot
  be cut safely: one range, the whole file. Bytes ``[start, end)`` of a WARC/WET file read as a
  file of their own give exactly the records that start in the range, so the ranges' rows
  together are the file's rows (tested). A reader of one range must take the layout from the
  file's start (only an ARC file's first record says ``filedesc://``) and keep offsets
  absolute (rows without a WARC-Record-ID, ARC's, get ids made from them). Cost: a few small reads per range (no
  inflating the file), so the driver can call it on remote files before planning shards.
* :class:`ByteRange`: bytes ``[start, end)`` of an open file as a file of their own, with
  absolute offsets (``tell``/``seek``): what the reader of one range parses.
"""
from __future__ import annotations

import io
import re
import zlib
from dataclasses import dataclass

import fsspec

from ._common import InputError

_GZIP_MAGIC = b"\x1f\x8b\x08"
_MEMBER_PROBE_BYTES = 1 << 20   # first gzip member not over after this: single-stream gzip


def open_input(path: str, *, block_size: int = 8 << 20):
    """A binary file object for a local path or fsspec URL; :class:`InputError` if it cannot be
    opened. A remote object is read in ``block_size`` blocks with read-ahead (big for a
    sequential scan, small for probing a few places)."""
    kwargs = {}
    if "://" in path and not path.startswith("file://"):
        # options of open(), not of the filesystem: fsspec.open() would hand them to e.g.
        # S3FileSystem's constructor
        kwargs = {"block_size": block_size, "cache_type": "readahead"}
    try:
        fs, fs_path = fsspec.core.url_to_fs(path)
        fh = fs.open(fs_path, "rb", **kwargs)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        raise InputError(f"{path}: cannot open: {e}") from e
    except Exception as e:  # network / auth / unknown protocol: still "not readable"
        raise InputError(f"{path}: cannot open: {type(e).__name__}: {e}") from e
    return fh


# ---------------------------------------------------------------------------
# layouts

@dataclass
class Layout:
    """How a crawl file is framed, as :func:`sniff` found it."""

    gzip: bool
    multi_member: bool   # per-record gzip (CommonCrawl) or plain: can be re-entered mid-file
    arc: bool
    seekable: bool
    #: single-stream gzip inflated whole while sniffing: it ends before its end-of-stream
    #: marker (``cut``), and whether the inflated data ends at a record boundary
    cut: bool = False
    cut_at_boundary: bool = False

    @property
    def resyncable(self) -> bool:
        return self.seekable and (self.multi_member or not self.gzip)


class _Wrapped(io.RawIOBase):
    """A raw stream defined by its ``read(n)`` over a wrapped file ``_inner`` (closed with it)."""

    _inner = None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        super().close()


class _Prefixed(_Wrapped):
    """A non-seekable stream with the bytes already read for sniffing put back in front."""

    def __init__(self, prefix: bytes, rest):
        self._prefix, self._rest, self._pos, self._rest_read = prefix, rest, 0, 0
        self._inner = rest

    def tell(self) -> int:
        return self._pos + self._rest_read

    def read(self, n: int = -1) -> bytes:
        if self._pos < len(self._prefix):
            end = len(self._prefix) if n is None or n < 0 else min(len(self._prefix), self._pos + n)
            out = self._prefix[self._pos:end]
            self._pos = end
            return out
        out = self._rest.read() if n is None or n < 0 else self._rest.read(n)
        self._rest_read += len(out)
        return out



def sniff(fh) -> tuple[Layout, object]:
    """Tell gzip from plain, per-record from single-stream gzip and ARC from WARC."""
    try:
        seekable = bool(fh.seekable())
        start = fh.tell() if seekable else 0
    except Exception:
        seekable, start = False, 0
    buf = fh.read(64 << 10) or b""
    consumed = [buf]
    is_gzip, multi, first, cut, tail = buf.startswith(b"\x1f\x8b"), True, buf[:4096], False, b""
    if is_gzip:
        # inflate the first member: if it ends before the file does, members can be re-entered
        d, first, n_in, tail = zlib.decompressobj(zlib.MAX_WBITS | 16), b"", len(buf), b""
        try:
            while True:
                out = d.decompress(buf, 1 << 20)
                if len(first) < 4096:
                    first += out[:4096 - len(first)]
                tail = (tail + out)[-4:]
                buf = d.unconsumed_tail
                if d.eof:
                    more = d.unused_data
                    if not more:
                        more = fh.read(1)
                        consumed.append(more)
                    multi = bool(more)
                    break
                if buf:
                    continue
                if n_in >= _MEMBER_PROBE_BYTES:
                    multi = False  # one long stream (or a huge first record: same handling)
                    break
                buf = fh.read(64 << 10)
                if not buf:
                    multi, cut = False, True  # one member, cut short
                    break
                consumed.append(buf)
                n_in += len(buf)
        except zlib.error:
            multi = True  # damaged from the start: scanning for members is the only way on
    arc = first.lstrip()[:11].lower() == b"filedesc://"
    layout = Layout(gzip=is_gzip, multi_member=multi, arc=arc, seekable=seekable, cut=cut,
                     cut_at_boundary=tail.endswith(b"\n" if arc else b"\r\n\r\n"))
    if seekable:
        fh.seek(start)
        return layout, fh
    return layout, _Prefixed(b"".join(consumed), fh)


class GunzipReader(io.RawIOBase):
    """Inflate (multi-member) gzip; a cut stream ends quietly with ``cut`` set, keeping
    every byte inflated before the cut (gzip.GzipFile raises EOFError instead, and
    warcio takes that for a clean end and drops its buffer)."""

    def __init__(self, raw):
        self.raw, self.pos, self.cut, self.done = raw, 0, False, False
        self.d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def readinto(self, b) -> int:
        n = len(b)
        while not self.pending and not self.done:
            src = self.d.unconsumed_tail or self.raw.read(1 << 16)
            if not src:
                self.done, self.cut = True, not self.d.eof
                break
            try:
                self.pending = self.d.decompress(src, 1 << 20)
            except zlib.error:
                raise OSError("gzip data error")
            if self.d.eof:
                rest = self.d.unused_data
                if not rest:
                    rest = self.raw.read(1 << 16)
                if rest.startswith(b"\x1f\x8b"):
                    self.d = zlib.decompressobj(zlib.MAX_WBITS | 16)
                    self.pending += self.d.decompress(rest, 1 << 20)
                elif rest:
                    raise OSError("bytes after the end of the gzip stream")
                else:
                    self.done = True
        out, self.pending = self.pending[:n], self.pending[n:]
        b[:len(out)] = out
        self.pos += len(out)
        return len(out)


class ByteRange(_Wrapped):
    """Bytes ``[start, end)`` of a seekable binary file, read as a file that ends at ``end``.

    Offsets stay those of the whole file (``tell``, ``seek``; a seek outside the range lands on
    its nearer edge), so record offsets, re-synchronisation and ids made from offsets are the
    same as when the whole file is read. Opens positioned at ``start``."""

    def __init__(self, raw, start: int, end: int):
        if not 0 <= start <= end:
            raise ValueError(f"bad byte range [{start}, {end})")
        self.raw, self.start, self.end = raw, start, end
        self._inner = raw
        self.pos = start
        raw.seek(start)

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.end}[whence]
        self.pos = min(max(base + offset, self.start), self.end)
        self.raw.seek(self.pos)
        return self.pos

    def read(self, n: int = -1) -> bytes:
        left = self.end - self.pos
        n = left if n is None or n < 0 else min(n, left)
        if n <= 0:
            return b""
        out = self.raw.read(n)
        self.pos += len(out)
        return out



# ---------------------------------------------------------------------------
# re-synchronisation after a parse error


def next_record_start(fh, start: int, layout: Layout) -> int | None:
    """Offset of the first record start at or after ``start``, or None at end of file."""
    if layout.gzip:
        pattern, lead = re.compile(re.escape(_GZIP_MAGIC)), 0
    elif layout.arc:
        # "<url> <ip> <14-digit date> <mime> <length>\n" at the start of a line
        pattern, lead = re.compile(rb"\n\S+ \S+ \d{14} \S+ \d+\r?\n"), 1
    else:
        pattern, lead = re.compile(rb"\nWARC/\d"), 1
    pos = max(0, start - lead)
    fh.seek(pos)
    carry = b""
    while True:
        chunk = fh.read(1 << 20)
        if not chunk:
            return None
        buf = carry + chunk
        base = pos - len(carry)
        m = pattern.search(buf)
        while m is not None and base + m.start() + lead < start:
            m = pattern.search(buf, m.start() + 1)
        if m is not None:
            return base + m.start() + lead
        carry = buf[-256:]
        pos += len(chunk)


def gzip_tail(fh, start: int) -> tuple[str, int | None]:
    """Inflate the gzip members from ``start`` to the end of the file (output discarded):
    ``("ok", None)``, ``("cut", member_offset)`` when the file ends inside a member, or
    ``("garbage", offset)`` when non-gzip bytes follow a member."""
    fh.seek(start)
    pos, d, member, buf = start, None, start, b""
    while True:
        if not buf:
            buf = fh.read(1 << 20)
            if not buf:
                return ("cut", member) if d is not None else ("ok", None)
        if d is None:
            if not buf.startswith(_GZIP_MAGIC):
                more = fh.read(1 << 20) if len(buf) < len(_GZIP_MAGIC) else b""
                if more:
                    buf += more
                    continue
                return ("cut", pos) if _GZIP_MAGIC.startswith(buf) else ("garbage", pos)
            member, d = pos, zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            d.decompress(buf, 1 << 16)
        except zlib.error:
            return ("garbage", member)
        if d.eof:
            rest = d.unused_data
            pos += len(buf) - len(rest)
            buf, d = rest, None
        else:
            rest = d.unconsumed_tail
            pos += len(buf) - len(rest)
            buf = rest


# ---------------------------------------------------------------------------
# record-aligned byte ranges

_PROBE_BYTES = 64 << 10   # read at a candidate cut to verify it (a WARC header block fits)
_WARC_HEAD = re.compile(rb"WARC/\d")
_ARC_HEAD = re.compile(rb"\S+ \S+ \d{14} \S+")  # "<url> <ip> <date> <mime> ... <length>"
_CONTENT_LENGTH = re.compile(rb"\r\nContent-Length:[ \t]*(\d+)[ \t]*\r\n", re.I)


def record_ranges(path: str, target: int) -> list[tuple[int, int]]:
    """Cut one WARC/WET/ARC file into record-aligned byte ranges ``[(start, end), ...]`` of about
    ``target`` bytes (at least ``target`` but the last; one record larger than that makes its
    range larger), contiguous from 0 to the file's size. See the module docstring for where
    cuts fall and which layouts stay whole. Raises :class:`InputError` when the file cannot
    be opened, ``ValueError`` when it cannot seek (read it whole); an empty file gives
    ``[(0, 0)]``."""
    if target <= 0:
        raise ValueError("target must be a positive byte count")
    fh = open_input(path, block_size=1 << 20)
    try:
        try:
            size = fh.seek(0, io.SEEK_END)
            fh.seek(0)
        except (OSError, ValueError) as e:  # io.UnsupportedOperation is both
            raise ValueError(f"{path}: cannot seek, so it cannot be cut into byte ranges: {e}") from e
        if size <= target:
            return [(0, size)]
        layout, fh = sniff(fh)
        if not layout.seekable or (layout.gzip and not layout.multi_member) or (layout.arc and not layout.gzip):
            return [(0, size)]
        cuts = [0]
        while True:
            cut = _next_verified_start(fh, cuts[-1] + target, layout, size)
            if cut is None:
                break
            cuts.append(cut)
        return list(zip(cuts, cuts[1:] + [size]))
    finally:
        fh.close()


def _next_verified_start(fh, pos: int, layout: Layout, size: int) -> int | None:
    while pos < size:
        cand = next_record_start(fh, pos, layout)
        if cand is None:
            return None
        if _is_record_start(fh, cand, layout, size):
            return cand
        pos = cand + 1
    return None


def _is_record_start(fh, at: int, layout: Layout, size: int) -> bool:
    """Does a record (not bytes that look like one) start at offset ``at``?"""
    fh.seek(at)
    head = fh.read(_PROBE_BYTES)
    if layout.gzip:
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            out = d.decompress(head, 4096)
            while len(out) < 64 and d.unconsumed_tail and not d.eof:
                out += d.decompress(d.unconsumed_tail, 4096)
        except zlib.error:
            return False
        return bool((_ARC_HEAD if layout.arc else _WARC_HEAD).match(out))
    # plain WARC: the header block's Content-Length must end where the next record starts
    end = head.find(b"\r\n\r\n")
    m = _CONTENT_LENGTH.search(head, 0, end + 2) if end > 0 else None
    if not _WARC_HEAD.match(head) or m is None:
        return False
    nxt = at + end + 4 + int(m.group(1))
    if nxt + 4 > size:
        return False
    fh.seek(nxt)
    after = fh.read(10)
    return after[:4] == b"\r\n\r\n" and (nxt + 4 == size or _WARC_HEAD.match(after[4:]) is not None)
