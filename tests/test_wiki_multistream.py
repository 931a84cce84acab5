"""Splitting one Wikimedia multistream dump into shards by its index (datapipe/io/wikipedia.py).

The dump is built here in Wikimedia's layout (a header stream with ``<mediawiki><siteinfo>``,
streams of N ``<page>`` elements, a footer stream ``</mediawiki>``, and the bz2 index of
``offset:page_id:title`` lines). No Wikipedia text is in ../shared/data, so page bodies are
real English prose from the standard library's pydoc topics wrapped in wiki markup.
"""
from __future__ import annotations

import bz2
import logging
import os
import random
import re

import pyarrow as pa
import pytest

from datapipe.config import InputConfig, parse_config
from datapipe.io import read_shard, resolve_inputs
from datapipe.io import wikipedia as wp
from datapipe.rundir import shard_key
from datapipe.stage import apply_stage, build_stage
from datapipe.stats import StageStats
from tests.test_sources import FOOTER, HEADER, page_xml

PAGES_PER_STREAM = 8
N_STREAMS = 12
PREFIX = "enwiki-20240101-pages-articles-multistream"


def _prose() -> list[str]:
    from pydoc_data.topics import topics
    return [t for _, t in sorted(topics.items()) if len(t) > 800]


def build_dump(folder, *, with_index: bool = True, index_suffix: str = ".txt.bz2"):
    """-> (dump path, page stream offsets, expected rows {page_id: (title, text)} of pages with text)."""
    rnd = random.Random(7)
    prose = _prose()
    pages, expected, pid = [], {}, 1000
    for s in range(N_STREAMS):
        chunk = []
        for k in range(PAGES_PER_STREAM):
            pid += rnd.randint(1, 5)
            title = f"Topic {pid} ({prose[pid % len(prose)][:20].split()[0]})"
            if (s, k) in ((2, 3), (9, 0)):          # deleted revision text: skipped by the reader
                chunk.append((pid, title, page_xml(title, pid, None)))
                continue
            if (s, k) == (5, 7):                     # a redirect: kept by the reader, dropped by wiki_clean
                text = "#REDIRECT [[Topic 1001]]"
                chunk.append((pid, title, page_xml(title, pid, text, redirect="Topic 1001")))
            else:
                body = prose[rnd.randrange(len(prose))][: rnd.randint(1500, 4000)]
                text = f"'''{title}''' is a [[Python]] topic.\n== Overview ==\n{body}\n[[Category:Docs]]\n"
                chunk.append((pid, title, page_xml(title, pid, text)))
            expected[f"enwiki/{pid}"] = (title, text)
        pages.append(chunk)
    streams = [bz2.compress(HEADER.encode())]
    offsets, index_lines, at = [], [], len(streams[0])
    for chunk in pages:
        data = bz2.compress("".join(x for _, _, x in chunk).encode())
        offsets.append(at)
        index_lines += [f"{at}:{p}:{t}" for p, t, _ in chunk]
        streams.append(data)
        at += len(data)
    streams.append(bz2.compress(FOOTER.encode()))
    dump = folder / f"{PREFIX}.xml.bz2"
    dump.write_bytes(b"".join(streams))
    if with_index:
        text = ("\n".join(index_lines) + "\n").encode()
        (folder / f"{PREFIX}-index{index_suffix}").write_bytes(bz2.compress(text) if index_suffix.endswith(".bz2") else text)
    return dump, offsets, expected


def read_rows(path: str) -> tuple[list[dict], StageStats]:
    stats = StageStats(stage="read")
    batches = list(read_shard([path], input_cfg=InputConfig(format="mediawiki", source="wikipedia"),
                              batch_size=5, stats=stats))
    return pa.concat_tables(batches).to_pylist(), stats


def ranges_of(specs: list[str]) -> list[tuple[int, int]]:
    out = []
    for s in specs:
        m = re.fullmatch(r".+#streams=(\d+)-(\d+)", s)
        assert m, s
        out.append((int(m.group(1)), int(m.group(2))))
    return out


@pytest.fixture
def small_target(monkeypatch):
    """A target of ~1/4 of the page streams' bytes, so the test dump splits into >= 3 pieces."""
    def set_for(dump, offsets) -> int:
        target = (os.path.getsize(dump) - offsets[0]) // 4
        monkeypatch.setattr(wp, "SHARD_TARGET_BYTES", target)
        monkeypatch.delenv(wp.SHARD_TARGET_ENV, raising=False)
        return target
    return set_for


def test_expand_input_cuts_whole_streams_once_each(tmp_path, small_target):
    dump, offsets, _ = build_dump(tmp_path)
    target = small_target(dump, offsets)
    specs = wp.expand_input(str(dump))
    assert len(specs) >= 3
    assert all(s.startswith(str(dump) + "#streams=") for s in specs)
    ranges = ranges_of(specs)
    size = os.path.getsize(dump)
    # contiguous from the first page stream (the header is no shard) to the end of the file
    assert ranges[0][0] == offsets[0] and ranges[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    # every cut is a stream start, every stream lies in exactly one piece
    assert all(a in offsets for a, _ in ranges)
    for off in offsets:
        assert sum(a <= off < b for a, b in ranges) == 1
    # pieces are about the target: all but the last reach it, none holds more than target + one stream
    longest = max(b - a for a, b in zip(offsets, offsets[1:] + [size]))
    assert all(target <= b - a < target + longest for a, b in ranges[:-1])
    # stable (resume) and distinct shard keys; the same through resolve_inputs and a folder
    assert wp.expand_input(str(dump)) == specs
    assert resolve_inputs([str(dump)], format="mediawiki") == specs
    assert resolve_inputs([str(tmp_path)], format="mediawiki") == specs
    keys = [shard_key(s) for s in specs]
    assert len(set(keys)) == len(keys)
    # the environment variable overrides the constant: a target above the dump size -> one plain shard
    os.environ[wp.SHARD_TARGET_ENV] = str(size + 1)
    try:
        assert wp.expand_input(str(dump)) == [str(dump)]
    finally:
        del os.environ[wp.SHARD_TARGET_ENV]


def test_pieces_read_exactly_the_rows_of_the_whole_file(tmp_path, small_target):
    dump, offsets, expected = build_dump(tmp_path)
    whole, whole_stats = read_rows(str(dump))   # unsplit: the plain bz2 reader over all streams
    assert {r["id"]: (r["title"], r["text"]) for r in whole} == expected
    small_target(dump, offsets)
    specs = wp.expand_input(str(dump))
    assert len(specs) >= 3
    pieces, stats = [], StageStats(stage="read")
    for spec in specs:
        rows, st = read_rows(spec)
        assert rows, spec
        pieces += rows
        stats = stats + st
    assert pieces == whole  # every column (ids, titles, text, url, lang, time ...), same order, none lost or doubled
    assert stats.rows_in == whole_stats.rows_in == N_STREAMS * PAGES_PER_STREAM
    assert stats.dropped == whole_stats.dropped == {"no_text": 2}
    assert {r["source_detail"] for r in pieces} == {"enwiki"} and {r["lang"] for r in pieces} == {"en"}


def test_piece_reader_streams_and_reports_cut_streams(tmp_path):
    dump, offsets, expected = build_dump(tmp_path)
    # one stream read without header_end: the header is the file's first bz2 stream
    pages = list(wp.iter_multistream_pages(str(dump), offsets[4], offsets[5]))
    assert len(pages) == PAGES_PER_STREAM and all(p["site"]["dbname"] == "enwiki" for p in pages)
    assert [f"enwiki/{p['page_id']}" for p in pages if p["text"]] == \
        [k for k in expected if offsets[4] <= _offset_of(k, tmp_path) < offsets[5]]
    # a range that ends inside a stream is an error, not a silently shorter shard
    with pytest.raises(EOFError):
        list(wp.iter_multistream_pages(str(dump), offsets[4], offsets[5] - 7))


def _offset_of(doc_id: str, folder) -> int:
    pid = doc_id.split("/", 1)[1]
    for line in bz2.decompress((folder / f"{PREFIX}-index.txt.bz2").read_bytes()).decode().splitlines():
        off, p, _ = line.split(":", 2)
        if p == pid:
            return int(off)
    raise KeyError(doc_id)


def test_no_index_or_foreign_index_keeps_one_shard(tmp_path, small_target, caplog):
    dump, offsets, expected = build_dump(tmp_path, with_index=False)
    small_target(dump, offsets)
    with caplog.at_level(logging.WARNING, logger=wp.__name__):
        assert wp.expand_input(str(dump)) == [str(dump)]
    assert any("index" in r.getMessage() and "split" in r.getMessage() for r in caplog.records)
    rows, stats = read_rows(resolve_inputs([str(dump)], format="mediawiki")[0])
    assert {r["id"]: (r["title"], r["text"]) for r in rows} == expected and stats.dropped == {"no_text": 2}
    # an index whose offsets are not stream starts of this file (another dump's) is not trusted
    shifted = "\n".join(f"{o + 3}:1:X" for o in offsets) + "\n"
    (tmp_path / f"{PREFIX}-index.txt").write_text(shifted)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=wp.__name__):
        assert wp.expand_input(str(dump)) == [str(dump)]
    assert any("does not fit" in r.getMessage() for r in caplog.records)


def test_uncompressed_index_and_small_dumps(tmp_path, monkeypatch):
    dump, offsets, _ = build_dump(tmp_path, index_suffix=".txt")
    assert wp.multistream_index_path(str(dump)) == str(tmp_path / f"{PREFIX}-index.txt")
    # the default target (32 MiB) is far above this dump: one plain shard, no suffix
    monkeypatch.delenv(wp.SHARD_TARGET_ENV, raising=False)
    assert wp.expand_input(str(dump)) == [str(dump)]
    monkeypatch.setattr(wp, "SHARD_TARGET_BYTES", (os.path.getsize(dump) - offsets[0]) // 3)
    assert len(wp.expand_input(str(dump))) >= 3
    # Wikimedia's partitioned dumps name their index with the part number and page range
    part = tmp_path / "enwiki-20240101-pages-articles-multistream3.xml-p151574p311329.bz2"
    part.write_bytes(dump.read_bytes())
    (tmp_path / "enwiki-20240101-pages-articles-multistream-index3.txt-p151574p311329.bz2").write_bytes(
        bz2.compress("\n".join(f"{o}:1:X" for o in offsets).encode()))
    assert wp.multistream_index_path(str(part)).endswith("multistream-index3.txt-p151574p311329.bz2")
    assert len(wp.expand_input(str(part))) >= 3


def test_end_to_end_one_shard_per_piece_and_resume(ray_session, tmp_path, small_target):
    from datapipe.runner import load_stats, run_pipeline
    import pyarrow.parquet as pq
    data = tmp_path / "dump"
    data.mkdir()
    dump, offsets, _ = build_dump(data)
    whole, _ = read_rows(str(dump))
    res = apply_stage(build_stage("wiki_clean", {}), pa.Table.from_pylist(whole))
    want = sorted(res.kept["id"].to_pylist())
    assert 0 < len(want) < len(whole)  # the redirect is dropped
    small_target(dump, offsets)
    specs = wp.expand_input(str(dump))
    assert len(specs) >= 3
    cfg = parse_config({"name": "wiki", "input": {"format": "mediawiki", "source": "wikipedia"},
                        "stages": [{"wiki_clean": {}}], "engine": {"batch_size": 16}}, file="<test>")
    run = tmp_path / "run"
    out = run_pipeline(cfg, inputs=[str(dump)], run_dir=run, quiet=True)
    stats = {s.stage: s for s in load_stats(run)}
    assert stats["read"].shards == len(specs)
    assert stats["read"].rows_out == len(whole) and stats["read"].dropped == {"no_text": 2}
    got = sorted(i for f in sorted((run / "output").rglob("*.parquet")) for i in pq.read_table(f, columns=["id"])["id"].to_pylist())
    assert got == want
    assert out.shards_run == len(specs)
    # resume: a second run finds one done marker per piece and reads nothing
    again = run_pipeline(cfg, inputs=[str(dump)], run_dir=run, quiet=True)
    assert again.shards_skipped == len(specs) and again.shards_run == 0
