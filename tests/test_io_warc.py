"""WARC/ARC/WET reader: real crawl files from ../shared/data/warc and synthetic edge cases.

Expected counts come from an independent look at the file (warcio record types,
``WARC-Type:`` lines in the inflated bytes, the codec a page declares), never from
a previous run of the reader.
"""
from __future__ import annotations

import gzip
import io
import re
from datetime import datetime, timezone
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute.*)
import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from datapipe.io import InputError
from datapipe.io.charset import decode_payload, normalize_charset
from datapipe.io.warc import iter_warc_batches
from datapipe.schema import RAW_SCHEMA, doc_id
from datapipe.stats import StageStats
from tests.conftest import SHARED_DATA, need_shared, require

DATA = SHARED_DATA / "warc"
CRAWL_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz", ".wet", ".wet.gz", ".warc.wat", ".warc.wet", ".wat.gz")


def need(rel: str) -> Path:
    return need_shared("warc", rel)


def read(path, *, engine="auto", max_html_bytes=5_000_000, batch_size=64):
    stats = StageStats("read")
    batches = list(iter_warc_batches(str(path), source="test", batch_size=batch_size,
                                     max_html_bytes=max_html_bytes, stats=stats, engine=engine))
    for b in batches:
        assert b.schema == RAW_SCHEMA
        assert 0 < b.num_rows <= batch_size
    table = pa.concat_tables(batches) if batches else RAW_SCHEMA.empty_table()
    return table, stats


def balanced(stats: StageStats) -> bool:
    return stats.rows_in == stats.rows_out + sum(stats.dropped.values())


def warcio_types(path) -> dict[str, list]:
    """Record types -> list of (record id, http status, content type) by warcio, independently."""
    out: dict[str, list] = {}
    with open(path, "rb") as fh:
        for r in ArchiveIterator(fh, arc2warc=True):
            hh = r.http_headers
            code = hh.get_statuscode() if hh is not None and r.rec_type == "response" else None
            status = int(code) if code and code.isdigit() else None
            ctype = hh.get_header("Content-Type") if hh is not None else None
            out.setdefault(r.rec_type, []).append((r.rec_headers.get_header("WARC-Record-ID"), status, ctype))
    return out


def warc_type_lines(path: Path) -> dict[str, int]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    counts: dict[str, int] = {}
    for m in re.finditer(rb"\r?\nWARC-Type: (\w+)", b"\n" + data):
        counts[m.group(1).decode()] = counts.get(m.group(1).decode(), 0) + 1
    return counts


# ---------------------------------------------------------------------------
# synthetic files


def http(ctype: str | None = "text/html; charset=utf-8", status: str = "200 OK", extra=()):
    headers = [("Content-Type", ctype)] if ctype is not None else []
    return StatusAndHeaders(status, headers + list(extra), protocol="HTTP/1.1")


def write_warc(path: Path, records, *, gz: bool = True) -> list[str]:
    """records: (uri, body bytes, http headers or None, warc type). Returns WARC-Record-IDs."""
    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=gz)
    ids = []
    for uri, body, hh, rtype in records:
        kwargs = {"warc_headers_dict": {"WARC-Date": "2024-05-06T07:08:09Z"}}
        if rtype == "request":
            rec = w.create_warc_record(uri, "request", payload=io.BytesIO(body),
                                       http_headers=StatusAndHeaders("GET / HTTP/1.1", [], is_http_request=True))
        elif hh is None:
            rec = w.create_warc_record(uri, rtype, payload=io.BytesIO(body), warc_content_type="text/html", **kwargs)
        else:
            rec = w.create_warc_record(uri, rtype, payload=io.BytesIO(body), http_headers=hh, **kwargs)
        ids.append(rec.rec_headers.get_header("WARC-Record-ID"))
        w.write_record(rec)
    path.write_bytes(buf.getvalue())
    return ids


def page(body: str, n: int) -> bytes:
    return f"<html><body><p>page {n}: {body}</p></body></html>".encode()


def five_pages(tmp_path: Path, *, gz: bool = True, name: str = "five.warc.gz") -> tuple[Path, list[str]]:
    p = tmp_path / name
    ids = write_warc(p, [(f"http://ex.com/{i}", page("x" * 200, i), http(), "response") for i in range(5)], gz=gz)
    return p, ids


RUSSIAN = ("Съешь же ещё этих мягких французских булок, да выпей чаю. Широкая электрификация южных губерний "
           "даст мощный толчок подъёму сельского хозяйства. В чащах юга жил бы цитрус? Да, но фальшивый экземпляр! ")


def ru_page(charset_meta: str | None, enc: str, reps: int = 6) -> bytes:
    meta = f'<meta http-equiv="Content-Type" content="text/html; charset={charset_meta}">' if charset_meta else ""
    return f"<html><head>{meta}<title>Новости</title></head><body><p>{RUSSIAN * reps}</p></body></html>".encode(enc)


def one_html(tmp_path: Path, body: bytes, ctype: str | None, **kw) -> tuple[str | None, StageStats]:
    p = tmp_path / "one.warc.gz"
    write_warc(p, [("http://ex.com/", body, http(ctype), "response")])
    t, st = read(p, **kw)
    assert balanced(st)
    return (t["html"][0].as_py() if t.num_rows else None), st


# ---------------------------------------------------------------------------
# real files


def test_resiliparse_warcfile_counts_ids_and_stability():
    p = need("resiliparse-testdata/warcfile.warc.gz")
    types = warcio_types(p)
    t, st = read(p)
    # 16 responses per the README; all are HTML 200s
    html_200 = [rid for rid, status, ct in types["response"] if status == 200 and "html" in (ct or "")]
    assert len(types["response"]) == 16 == len(html_200)
    assert t.num_rows == st.rows_out == 16
    assert st.dropped == {"request": len(types["request"]), "metadata": len(types["metadata"]),
                          "warcinfo": len(types["warcinfo"])}
    assert balanced(st)
    ids = t["id"].to_pylist()
    assert len(set(ids)) == 16
    assert set(ids) == {doc_id(rid) for rid in html_200}  # ids come from WARC-Record-ID
    t2, _ = read(p, batch_size=5)
    assert t2["id"].to_pylist() == ids  # stable across reads and batch sizes
    assert t["text"].null_count == 16 and t["html"].null_count == 0
    assert all(u.startswith("http") for u in t["url"].to_pylist())
    assert t["fetch_time"].null_count == 0
    assert t["fetch_time"][0].as_py().year == 2020  # CC-MAIN-2020-34
    assert set(t["source"].to_pylist()) == {"test"}
    assert st.bytes_out == sum(len(h.encode()) for h in t["html"].to_pylist())
    assert st.bytes_in == p.stat().st_size


def test_archivesunleashed_reasons_match_record_types():
    p = need("archivesunleashed-aut/example.warc.gz")
    types = warcio_types(p)
    t, st = read(p)
    assert balanced(st)
    for rtype in ("request", "metadata", "warcinfo"):
        assert st.dropped[rtype] == len(types[rtype])
    responses = types["response"]
    not_2xx = sum(1 for _, s, _ in responses if s is not None and not 200 <= s < 300)  # None: dns: records
    assert st.dropped["http_status"] == not_2xx
    # PDFs, images, CSS ... of the 2xx responses are non_html; what is left is HTML
    assert st.dropped["non_html"] > 0
    assert st.rows_out + st.dropped["non_html"] + st.dropped.get("empty", 0) + not_2xx == len(responses)
    assert set(t["content_type"].to_pylist()) <= {"text/html", "application/xhtml+xml"}
    assert st.dropped.get("corrupt", 0) == 0 and "truncated_file" not in st.counters


def test_arc_files_same_crawl_as_warc():
    arc = need("archivesunleashed-aut/example.arc.gz")
    warc = need("archivesunleashed-aut/example.warc.gz")
    ta, sa = read(arc)
    tw, _ = read(warc)
    assert balanced(sa)
    assert sa.dropped["warcinfo"] == 1  # the ARC filedesc header
    # the ARC and WARC files hold the same Heritrix crawl: same HTML pages come out
    assert sorted(ta["url"].to_pylist()) == sorted(tw["url"].to_pylist())
    ids = ta["id"].to_pylist()
    assert len(set(ids)) == len(ids) == ta.num_rows > 0
    assert read(arc)[0]["id"].to_pylist() == ids  # offset-based ids are stable
    assert ta["fetch_time"].null_count == 0


def test_warcio_example_arc():
    p = need("warcio-testdata/example.arc.gz")
    t, st = read(p)
    assert balanced(st)
    assert t.num_rows == 1
    assert t["url"][0].as_py() == "http://example.com/"
    assert "Example Domain" in t["html"][0].as_py()
    assert t["fetch_time"][0].as_py() == datetime(2014, 2, 16, 5, 2, 21, tzinfo=timezone.utc)  # ARC date field
    assert t["id"][0].as_py() == read(p)[0]["id"][0].as_py()


def test_clueweb09_content_length_bug():
    p = need("copycat-clueweb-samples/clueweb09-en0000-00.warc.gz")
    types = warc_type_lines(p)
    t, st = read(p)
    assert balanced(st)
    assert t.num_rows == types["response"]  # FastWARC's quirks mode recovers every record
    assert len(set(t["id"].to_pylist())) == t.num_rows
    # the warcio engine cannot get past the bug, but must not raise and must count it
    t2, st2 = read(p, engine="warcio")
    assert balanced(st2) and st2.dropped.get("corrupt", 0) >= 1 and t2.num_rows < t.num_rows


@pytest.mark.parametrize("name", ["filter_test_1.wet.gz", "fragment3.wet.gz"])
def test_wet_conversion_records(name, tmp_path):
    p = need(f"jeffharwell-cc-wet/{name}")
    types = warc_type_lines(p)
    t, st = read(p)
    assert balanced(st)
    assert t.num_rows == types["conversion"]
    assert t["html"].null_count == t.num_rows and t["text"].null_count == 0
    assert set(t["content_type"].to_pylist()) == {"text/plain"}
    assert all(len(x) > 0 for x in t["text"].to_pylist())
    # the files are complete (last Content-Length matches); cut one to get a truncated last record
    data = p.read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) - 500])
    tc, sc = read(cut)
    assert balanced(sc)
    assert sc.counters.get("truncated_file") == 1
    assert tc["id"].to_pylist() == t["id"].to_pylist()[: tc.num_rows]
    assert tc.num_rows == t.num_rows - 1


def test_clipped_warc_counts_truncation():
    p = need("resiliparse-testdata/clipped.warc.gz")
    t, st = read(p)
    assert balanced(st)
    assert st.counters.get("truncated_file") == 1
    assert st.dropped.get("corrupt") == 1


def test_uncompressed_commoncrawl_triple():
    warc = next(iter(sorted((need("eugeneware-cc-2014-35")).glob("*.warc"))))
    types = warcio_types(warc)
    t, st = read(warc)
    assert balanced(st)
    assert st.dropped["request"] == len(types["request"]) and st.dropped["metadata"] == len(types["metadata"])
    assert t.num_rows + st.dropped.get("empty", 0) + st.dropped.get("non_html", 0) == len(types["response"])
    wet = warc.with_suffix(".warc.wet")
    tw, sw = read(wet)
    assert balanced(sw) and tw.num_rows == warc_type_lines(wet)["conversion"] and tw["html"].null_count == tw.num_rows
    wat = warc.with_suffix(".warc.wat")
    ta, sa = read(wat)
    assert balanced(sa) and ta.num_rows == 0 and sa.dropped["metadata"] == warc_type_lines(wat)["metadata"]


def test_gb2312_pages_decode_to_chinese():
    p = need("realpages/realpages-chinese-wce.warc.gz")
    t, st = read(p)
    assert balanced(st) and t.num_rows == 69
    by_id = dict(zip(t["id"].to_pylist(), t["html"].to_pylist()))
    checked = 0
    with open(p, "rb") as fh:
        for r in ArchiveIterator(fh):
            if r.rec_type != "response":
                continue
            raw = r.content_stream().read()
            ctype = r.http_headers.get_header("Content-Type").lower()
            html = by_id[doc_id(r.rec_headers.get_header("WARC-Record-ID"))]
            if "gb2312" not in ctype:
                continue
            try:
                raw.decode("utf-8")
                continue  # a few pages labelled gb2312 are really UTF-8
            except UnicodeDecodeError:
                pass
            cjk = sum(1 for ch in html if "\u4e00" <= ch <= "\u9fff")
            latin1_mojibake = sum(1 for ch in html if "\u00c0" <= ch <= "\u00ff")
            assert cjk > 50 and latin1_mojibake < cjk / 100, r.rec_headers.get_header("WARC-Target-URI")
            assert html == raw.decode("gb18030", "replace") or html.count("\ufffd") == 0
            checked += 1
    assert checked >= 40


def real_files():
    if not DATA.exists():
        return []
    return sorted(str(p.relative_to(DATA)) for p in DATA.glob("*/*") if p.name.endswith(CRAWL_SUFFIXES))


@pytest.mark.parametrize("rel", real_files() or ["(no data)"])
def test_invariant_on_every_real_file(rel):
    p = need(rel)
    t, st = read(p)
    assert balanced(st), st
    assert t.num_rows == st.rows_out
    assert len(set(t["id"].to_pylist())) == t.num_rows
    assert st.bytes_out == sum(pa.compute.sum(pa.compute.binary_length(t[c])).as_py() or 0 for c in ("html", "text"))


@pytest.mark.parametrize("rel", ["resiliparse-testdata/warcfile.warc.gz", "archivesunleashed-aut/example.warc.gz",
                                 "realpages/realpages-mozilla-readability.warc.gz",
                                 "warcio-testdata/example-iana.org-chunked.warc"])
def test_engines_agree(rel):
    require("fastwarc")
    p = need(rel)
    tf, sf = read(p, engine="fastwarc")
    tw, sw = read(p, engine="warcio")
    assert tf.equals(tw)
    assert sf.dropped == sw.dropped and sf.counters == sw.counters


# ---------------------------------------------------------------------------
# synthetic: charsets


def test_charset_from_http_header_beats_meta(tmp_path):
    html, st = one_html(tmp_path, ru_page("koi8-r", "cp1251"), "text/html; charset=windows-1251")
    assert RUSSIAN.strip() in html
    assert "charset_detected" not in st.counters


def test_charset_from_meta(tmp_path):
    html, st = one_html(tmp_path, ru_page("koi8-r", "koi8-r"), "text/html")
    assert RUSSIAN.strip() in html
    assert "charset_detected" not in st.counters


def test_charset_detected_without_labels(tmp_path):
    html, st = one_html(tmp_path, ru_page(None, "cp1251"), "text/html")
    assert RUSSIAN.strip() in html
    assert st.counters.get("charset_detected") == 1


def test_charset_bogus_label_falls_back(tmp_path):
    html, st = one_html(tmp_path, ru_page(None, "utf-8"), "text/html; charset=foobar-42")
    assert RUSSIAN.strip() in html
    html, st = one_html(tmp_path, ru_page("x-no-such", "cp1251"), "text/html; charset=rot13")
    assert RUSSIAN.strip() in html


def test_latin1_label_decodes_as_cp1252(tmp_path):
    body = b"<html><body><p>\x93quoted\x94 caf\xe9 \x80 5</p></body></html>"
    html, st = one_html(tmp_path, body, "text/html; charset=ISO-8859-1")
    assert "\u201cquoted\u201d café € 5" in html
    assert normalize_charset("latin1") == normalize_charset("us-ascii") == "cp1252"


def test_gb2312_label_uses_gb18030_superset(tmp_path):
    text = "中文网页，朱镕基总理。"  # 镕 is in GBK but not in GB2312
    body = f"<html><body><p>{text}</p></body></html>".encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        body.decode("gb2312")
    html, st = one_html(tmp_path, body, "text/html; charset=gb2312")
    assert text in html and "\ufffd" not in html
    assert normalize_charset("GBK") == normalize_charset("x-gbk") == "gb18030"
    assert normalize_charset("no-such-charset") is None and normalize_charset("base64") is None


def test_valid_utf8_wins_over_wrong_label(tmp_path):
    html, st = one_html(tmp_path, ru_page(None, "utf-8"), "text/html; charset=iso-8859-1")
    assert RUSSIAN.strip() in html
    assert st.counters.get("charset_utf8_override") == 1


def test_invalid_bytes_replaced_and_counted(tmp_path):
    body = ru_page(None, "utf-8").replace("мягких".encode(), b"\xff\xfe", 2)
    html, st = one_html(tmp_path, body, "text/html; charset=utf-8")
    assert html.count("\ufffd") >= 2
    assert "французских булок" in html  # the rest stays UTF-8
    assert st.counters.get("charset_replaced") == 1


def test_decode_payload_bom_and_cut_character():
    counters: dict[str, int] = {}
    assert decode_payload("<p>héllo</p>".encode("utf-16"), [None], counters) == "<p>héllo</p>"
    cut = "<p>данные</p>".encode()[:-5]  # ends inside a 2-byte character, as crawler-truncated payloads do
    assert decode_payload(cut, ["utf-8"], counters) == "<p>данны"
    assert counters == {}


# ---------------------------------------------------------------------------
# synthetic: filtering and reasons


def test_reasons_for_each_record_kind(tmp_path):
    p = tmp_path / "mixed.warc.gz"
    recs = [
        ("http://ex.com/a", page("ok", 1), http(), "response"),
        ("http://ex.com/a", b"", None, "request"),
        ("http://ex.com/404", page("missing", 2), http(status="404 Not Found"), "response"),
        ("http://ex.com/301", b"", http(status="301 Moved Permanently"), "response"),
        ("http://ex.com/img", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, http("image/png"), "response"),
        ("http://ex.com/pdf", b"%PDF-1.4\n" + b"x" * 64, http("text/html"), "response"),  # mislabelled binary
        ("http://ex.com/bin", page("sniffed", 3), http("application/octet-stream"), "response"),
        ("http://ex.com/nohdr", page("no header", 4), http(None), "response"),
        ("http://ex.com/txt", b"just some plain text, no markup", http("text/plain"), "response"),
        ("http://ex.com/empty", b"", http(), "response"),
        ("http://ex.com/res", page("resource", 5), None, "resource"),
        ("http://ex.com/meta", b"via: x\r\n", None, "metadata"),
    ]
    write_warc(p, recs)
    t, st = read(p)
    assert balanced(st) and st.rows_in == len(recs)
    assert sorted(t["url"].to_pylist()) == ["http://ex.com/a", "http://ex.com/bin", "http://ex.com/nohdr"]
    assert set(t["content_type"].to_pylist()) == {"text/html"}
    assert st.dropped == {"request": 1, "http_status": 2, "non_html": 3, "empty": 1, "resource": 1,
                          "metadata": 1}
    row = t.filter(pa.compute.equal(t["url"], "http://ex.com/a")).to_pylist()[0]
    assert row["fetch_time"] == datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


def test_oversized_skipped(tmp_path):
    p = tmp_path / "big.warc.gz"
    big = page("y" * 5000, 0)
    write_warc(p, [("http://ex.com/small", page("s", 1), http(), "response"),
                   ("http://ex.com/big", big, http(), "response"),
                   ("http://ex.com/small2", page("s", 2), http(), "response")])
    t, st = read(p, max_html_bytes=1000)
    assert t["url"].to_pylist() == ["http://ex.com/small", "http://ex.com/small2"]
    assert st.dropped == {"oversized": 1} and balanced(st)
    t, st = read(p, max_html_bytes=len(big))  # the cap is inclusive
    assert t.num_rows == 3


def test_content_encoding_gzip_is_undone(tmp_path):
    body = page("compressed on the wire", 7)
    hh = http(extra=[("Content-Encoding", "gzip")])
    p = tmp_path / "ce.warc.gz"
    write_warc(p, [("http://ex.com/", gzip.compress(body), hh, "response")])
    t, st = read(p)
    assert t["html"].to_pylist() == [body.decode()] and balanced(st)


def test_batches_respect_batch_size(tmp_path):
    p, ids = five_pages(tmp_path)
    stats = StageStats("read")
    sizes = [b.num_rows for b in iter_warc_batches(str(p), source="s", batch_size=2, max_html_bytes=10**6,
                                                   stats=stats)]
    assert sizes == [2, 2, 1]
    t, _ = read(p)
    assert t["id"].to_pylist() == [doc_id(i) for i in ids]


# ---------------------------------------------------------------------------
# synthetic: damaged files


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("engine", ["auto", "warcio"])
def test_truncated_file_keeps_earlier_records(tmp_path, gz, engine):
    p, ids = five_pages(tmp_path, gz=gz, name="five.warc.gz" if gz else "five.warc")
    data = p.read_bytes()
    p.write_bytes(data[:-30])
    t, st = read(p, engine=engine)
    assert t["id"].to_pylist() == [doc_id(i) for i in ids[:4]]
    assert st.counters.get("truncated_file") == 1
    assert st.dropped == {"corrupt": 1} and balanced(st)


def test_single_stream_gzip_and_its_truncation(tmp_path):
    plain, ids = five_pages(tmp_path, gz=False, name="five.warc")
    p = tmp_path / "single.warc.gz"
    p.write_bytes(gzip.compress(plain.read_bytes()))
    for engine in ("auto", "warcio"):
        t, st = read(p, engine=engine)
        assert t["id"].to_pylist() == [doc_id(i) for i in ids] and balanced(st)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 40])
    for engine in ("auto", "warcio"):
        t, st = read(p, engine=engine)
        assert t["id"].to_pylist() == [doc_id(i) for i in ids[:4]], engine
        assert st.counters.get("truncated_file") == 1 and balanced(st)


@pytest.mark.parametrize("gz", [True, False])
def test_any_cut_point_never_raises(tmp_path, gz):
    p, ids = five_pages(tmp_path, gz=gz, name="c.warc.gz" if gz else "c.warc")
    data = p.read_bytes()
    previous = -1
    for cut in [*range(0, len(data), 23), len(data)]:  # the whole file last, whatever its length
        p.write_bytes(data[:cut])
        for engine in ("auto", "warcio"):
            t, st = read(p, engine=engine)
            assert balanced(st), (cut, engine, st)
            assert t["id"].to_pylist() == [doc_id(i) for i in ids[: t.num_rows]]
        assert t.num_rows >= previous  # more bytes never lose records
        previous = t.num_rows
    assert previous == 5


def test_empty_file(tmp_path):
    p = tmp_path / "empty.warc.gz"
    p.write_bytes(b"")
    t, st = read(p)
    assert t.num_rows == 0 and st.rows_in == 0 and st.dropped == {} and st.counters == {}


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("engine", ["auto", "warcio"])
def test_garbage_between_records_is_skipped(tmp_path, gz, engine):
    p, ids = five_pages(tmp_path, gz=gz, name="g.warc.gz" if gz else "g.warc")
    data = p.read_bytes()
    offsets = [m.start() for m in re.finditer(b"\x1f\x8b\x08" if gz else b"WARC/1", data)]
    data = data[: offsets[2]] + b"GARBAGE\r\n" * 50 + data[offsets[2]:]
    p.write_bytes(data)
    t, st = read(p, engine=engine)
    assert t["id"].to_pylist() == [doc_id(i) for i in ids]
    assert st.dropped == {"corrupt": 1} and balanced(st)


@pytest.mark.parametrize("gz", [True, False])
def test_garbage_appended(tmp_path, gz):
    p, ids = five_pages(tmp_path, gz=gz, name="a.warc.gz" if gz else "a.warc")
    p.write_bytes(p.read_bytes() + b"\x00 trailing junk \xff" * 40)
    for engine in ("auto", "warcio"):
        t, st = read(p, engine=engine)
        assert t["id"].to_pylist() == [doc_id(i) for i in ids]
        assert balanced(st) and "truncated_file" not in st.counters
        if engine == "auto":
            assert st.dropped == {"corrupt": 1}
        else:  # warcio may frame the junk as a (non-HTML) record of its own
            assert sum(st.dropped.values()) == 1


def test_wrong_content_length_recovers_following_records(tmp_path):
    p, ids = five_pages(tmp_path, gz=False, name="len.warc")
    data = p.read_bytes()
    starts = [m.start() for m in re.finditer(b"WARC/1", data)]
    seg = data[starts[1]:starts[2]]
    for delta in (+40, -40):
        bad = re.sub(rb"Content-Length: (\d+)", lambda m: b"Content-Length: %d" % (int(m.group(1)) + delta), seg, count=1)
        p.write_bytes(data[:starts[1]] + bad + data[starts[2]:])
        for engine in ("auto", "warcio"):
            t, st = read(p, engine=engine)
            got = t["id"].to_pylist()
            assert [doc_id(i) for i in ids[2:]] == [g for g in got if g in {doc_id(i) for i in ids[2:]}]
            assert doc_id(ids[0]) in got and balanced(st)
            # FastWARC (strict) stops at the bad frame: counted, then re-synchronised;
            # warcio skips to the next record line by itself when the length is short
            if engine == "auto":
                assert st.dropped.get("corrupt") == 1
            else:
                assert st.dropped.get("corrupt", 0) <= 1


def test_missing_input_raises_input_error(tmp_path):
    with pytest.raises(InputError):
        read(tmp_path / "nope.warc.gz")
    with pytest.raises(InputError):
        read(tmp_path)  # a folder is not a WARC file


def test_fsspec_url(tmp_path):
    p, ids = five_pages(tmp_path)
    url = "memory://warc-test/five.warc.gz"
    with fsspec.open(url, "wb") as fh:
        fh.write(p.read_bytes())
    try:
        t, st = read(url)
    finally:
        fsspec.filesystem("memory").rm("/warc-test", recursive=True)
    assert t["id"].to_pylist() == [doc_id(i) for i in ids] and balanced(st)


def test_unknown_engine_rejected(tmp_path):
    p, _ = five_pages(tmp_path)
    with pytest.raises(ValueError):
        read(p, engine="nope")


class _NoSeek(io.RawIOBase):
    """A stream like an HTTP body without range support."""

    def __init__(self, data: bytes):
        self._b = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b) -> int:
        chunk = self._b.read(len(b))
        b[:len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("engine", ["auto", "warcio"])
def test_non_seekable_stream(tmp_path, monkeypatch, engine):
    import datapipe.io.warc as warc_mod

    p, ids = five_pages(tmp_path)
    data = p.read_bytes()
    monkeypatch.setattr(warc_mod, "open_input", lambda path: _NoSeek(data))
    t, st = read(p, engine=engine)
    assert t["id"].to_pylist() == [doc_id(i) for i in ids] and balanced(st)
    assert st.bytes_in == len(data)
    monkeypatch.setattr(warc_mod, "open_input", lambda path: _NoSeek(data[:-30]))
    t, st = read(p, engine=engine)
    assert t["id"].to_pylist() == [doc_id(i) for i in ids[:4]]
    assert st.counters.get("truncated_file") == 1 and balanced(st)
