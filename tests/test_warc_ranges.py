"""Record-aligned byte ranges of one crawl file (``datapipe.io.framing.record_ranges``).

Where records start is known independently: the synthetic files are written one record at a
time (the offsets are the lengths written so far), the real ones are listed by warcio. Each
range, read as a file of its own, must give the rows the whole file gives, in order.
"""
from __future__ import annotations

import gzip
import io
import os

import fsspec
import pyarrow as pa
import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from datapipe.io import InputError
from datapipe.io.framing import record_ranges
from datapipe.io.warc import iter_warc_batches
from datapipe.schema import RAW_SCHEMA
from datapipe.stats import StageStats


def record_bytes(i: int, body: bytes) -> bytes:
    """One uncompressed WARC response record."""
    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=False)
    hh = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
    rec = w.create_warc_record(f"http://ex.com/{i}", "response", payload=io.BytesIO(body), http_headers=hh,
                               warc_headers_dict={"WARC-Date": "2024-05-06T07:08:09Z"})
    w.write_record(rec)
    return buf.getvalue()


def page(i: int, extra: bytes = b"") -> bytes:
    return b"<html><body><p>page %d: " % i + b"words " * (40 + 17 * i) + extra + b"</p></body></html>"


def build(records: list[bytes], *, gz: bool, level: dict[int, int] | None = None) -> tuple[bytes, list[int]]:
    """Concatenate records (one gzip member each when ``gz``); returns the file and record offsets."""
    data, offsets = b"", []
    for i, r in enumerate(records):
        offsets.append(len(data))
        data += gzip.compress(r, compresslevel=(level or {}).get(i, 9), mtime=0) if gz else r
    return data, offsets


def read(path, engine: str) -> tuple[pa.Table, StageStats]:
    stats = StageStats("read")
    batches = list(iter_warc_batches(str(path), source="t", batch_size=7, max_html_bytes=5_000_000,
                                     stats=stats, engine=engine))
    return (pa.concat_tables(batches) if batches else RAW_SCHEMA.empty_table()), stats


def check_ranges(path, data: bytes, ranges, starts, tmp_path, *, target: int, ids: bool = True,
                 counts: bool = True) -> None:
    """Ranges cover the file, cut only at record starts, hold >= target bytes (but the last)
    and, read one by one, give the whole file's rows and counts."""
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(ranges, ranges[1:]))
    assert {a for a, _ in ranges[1:]} <= set(starts), (ranges, starts)
    assert all(b - a >= target for a, b in ranges[:-1])
    for engine in ("auto", "warcio"):
        whole, ws = read(path, engine)
        parts, rows_in, dropped = [], 0, {}
        for i, (a, b) in enumerate(ranges):
            piece = tmp_path / f"piece{i}-{os.path.basename(str(path))}"
            piece.write_bytes(data[a:b])
            t, st = read(piece, engine)
            parts.append(t)
            rows_in += st.rows_in
            for k, v in st.dropped.items():
                dropped[k] = dropped.get(k, 0) + v
        got = pa.concat_tables(parts)
        if not ids:  # ids made from the file name and offset (no WARC-Record-ID)
            got, whole = got.drop_columns(["id"]), whole.drop_columns(["id"])
        assert got.equals(whole), (engine, ranges)
        if counts:
            assert rows_in == ws.rows_in and dropped == ws.dropped, (engine, ranges)


@pytest.mark.parametrize("gz", [True, False])
def test_every_target_cuts_at_record_starts_and_reads_the_same(tmp_path, gz):
    data, starts = build([record_bytes(i, page(i)) for i in range(7)], gz=gz)
    path = tmp_path / ("f.warc.gz" if gz else "f.warc")
    path.write_bytes(data)
    seen = set()
    for target in [*range(1, len(data) + 50, 61)]:
        ranges = record_ranges(str(path), target)
        seen.add(len(ranges))
        check_ranges(path, data, ranges, starts, tmp_path, target=target)
    assert max(seen) == len(starts) and min(seen) == 1  # from one range per record to the whole file


def test_gzip_magic_inside_a_record_is_not_a_cut(tmp_path):
    # a stored (level 0) member keeps the payload's bytes as they are: gzip magic, even a gzip
    # header, inside a page must not be taken for the next record
    fake = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"not deflate " * 30 + b"\x1f\x8b\x08\x08abc\x00" + b"\x00" * 40
    records = [record_bytes(i, page(i, fake if i in (2, 3) else b"")) for i in range(6)]
    data, starts = build(records, gz=True, level={2: 0, 3: 0})
    assert data.count(b"\x1f\x8b\x08") > len(starts) + 2
    path = tmp_path / "magic.warc.gz"
    path.write_bytes(data)
    for target in range(1, len(data), 29):
        check_ranges(path, data, record_ranges(str(path), target), starts, tmp_path, target=target)


def test_warc_line_inside_a_plain_record_is_not_a_cut(tmp_path):
    fake = (b"\r\nWARC/1.0\r\nWARC-Type: response\r\nContent-Length: 7\r\n\r\nshort\r\n\r\nWARC/1.0\r\n"
            b"\nWARC/1.0\r\nWARC-Type: response\r\n\r\n")
    data, starts = build([record_bytes(i, page(i, fake)) for i in range(5)], gz=False)
    assert data.count(b"\nWARC/1.0") > len(starts) + 2
    path = tmp_path / "lines.warc"
    path.write_bytes(data)
    # rows only: the reader's end-of-file check takes a WARC/ line inside a file's last record
    # for the start of a cut one (one corrupt, truncated_file), in the whole file and in every piece
    for target in range(1, len(data), 23):
        check_ranges(path, data, record_ranges(str(path), target), starts, tmp_path, target=target,
                     counts=False)


def test_layouts_that_stay_whole(tmp_path):
    plain, _ = build([record_bytes(i, page(i)) for i in range(5)], gz=False)
    single = tmp_path / "single.warc.gz"
    single.write_bytes(gzip.compress(plain))  # one gzip stream: cannot be entered mid-file
    assert record_ranges(str(single), 100) == [(0, single.stat().st_size)]
    arc = tmp_path / "a.arc"
    body = b"<html><body>x</body></html>"
    arc.write_bytes(b"filedesc://a.arc 0.0.0.0 20080430204825 text/plain 9\n1 0 test\n\n"
                    + b"".join(b"http://ex.com/%d 1.2.3.4 20080430204826 text/html %d\n%s\n" % (i, len(body), body)
                               for i in range(20)))
    assert record_ranges(str(arc), 50) == [(0, arc.stat().st_size)]
    small = tmp_path / "small.warc"
    small.write_bytes(plain)
    assert record_ranges(str(small), len(plain)) == [(0, len(plain))]
    empty = tmp_path / "empty.warc.gz"
    empty.write_bytes(b"")
    assert record_ranges(str(empty), 10) == [(0, 0)]
    with pytest.raises(InputError):
        record_ranges(str(tmp_path / "missing.warc.gz"), 10)
    with pytest.raises(ValueError):
        record_ranges(str(small), 0)


def test_fsspec_url(tmp_path):
    data, starts = build([record_bytes(i, page(i)) for i in range(6)], gz=True)
    url = "memory://ranges-test/f.warc.gz"
    with fsspec.open(url, "wb") as fh:
        fh.write(data)
    try:
        remote = record_ranges(url, 400)
    finally:
        fsspec.filesystem("memory").rm("/ranges-test", recursive=True)
    local = tmp_path / "f.warc.gz"
    local.write_bytes(data)
    assert remote == record_ranges(str(local), 400) and len(remote) > 2


def warcio_offsets(path) -> list[int]:
    with open(path, "rb") as fh:
        it = ArchiveIterator(fh, arc2warc=True)
        return [it.offset for _ in it]


@pytest.mark.parametrize("rel,pieces", [("realpages/realpages-mozilla-readability.warc.gz", 8),
                                        ("archivesunleashed-aut/example.warc.gz", 5),
                                        ("cc-whirlwind/whirlwind.warc.wet.gz", 3),
                                        ("archivesunleashed-aut/issue-493.warc", 5)])
def test_real_files(shared_data, tmp_path, rel, pieces):
    path = shared_data / "warc" / rel
    data = path.read_bytes()
    target = len(data) // pieces
    ranges = record_ranges(str(path), target)
    assert len(ranges) >= pieces - 2
    check_ranges(path, data, ranges, warcio_offsets(path), tmp_path, target=target)


def test_real_per_record_gzip_arc_cuts_at_records(shared_data):
    # a range of an ARC file is read with the layout sniffed at the file's start (only the first
    # record says "filedesc://"), so here only the cut points are checked
    path = shared_data / "warc" / "archivesunleashed-aut" / "example.arc.gz"
    ranges = record_ranges(str(path), path.stat().st_size // 10)
    assert len(ranges) >= 8
    assert {a for a, _ in ranges[1:]} <= set(warcio_offsets(path))
