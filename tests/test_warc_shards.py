"""Large crawl files as byte-range shards (``datapipe.io.split_crawl_files``).

One WARC/ARC file cut into record-aligned ranges ``<path>#records=<start>-<end>`` must read,
range by range, exactly as the whole file does (rows, ids, read stats), and a pipeline over
the ranges must write the output of a pipeline over the whole file, resume keyed on ranges.
The range targets are set small so files of a few hundred KB split into several ranges.
"""
from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datapipe.config import InputConfig, parse_config
from datapipe.io import MIN_RANGE_BYTES, range_target, read_shard, resolve_inputs, split_crawl_files
from datapipe.io.framing import record_ranges
from datapipe.io.warc import iter_warc_batches
from datapipe.rundir import shard_key
from datapipe.runner import load_stats, run_pipeline
from datapipe.stats import StageStats
from tests.conftest import need_shared

MiB = 1 << 20


@pytest.fixture(scope="module")
def one_warc(sample_crawl, tmp_path_factory) -> Path:
    """The sample crawl's per-record-gzip WARCs concatenated into one file (~1.5 MB, ~1,200 records)."""
    out = tmp_path_factory.mktemp("one") / "crawl.warc.gz"
    out.write_bytes(b"".join(Path(p).read_bytes() for p in sorted(sample_crawl)))
    return out


def ranges_of(specs: list[str]) -> list[tuple[int, int]]:
    out = []
    for s in specs:
        m = re.fullmatch(r".+#records=(\d+)-(\d+)", s)
        assert m, s
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def test_range_target_spreads_a_run_but_stays_within_bounds():
    # a 1 GiB run is spread over min_shards ranges of 16 MiB
    assert range_target(1 << 30, shard_bytes=256 * MiB, min_shards=64) == 16 * MiB
    # a small run is not cut below the floor, a big one not above shard_bytes
    assert range_target(100 * MiB, shard_bytes=256 * MiB, min_shards=64) == MIN_RANGE_BYTES
    assert range_target(100 << 30, shard_bytes=256 * MiB, min_shards=64) == 256 * MiB
    # an explicit shard_bytes below the floor wins
    assert range_target(100 * MiB, shard_bytes=100_000, min_shards=64) == 100_000


def test_split_plan(one_warc, sample_crawl, tmp_path):
    size = one_warc.stat().st_size
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"text": "x"}\n' * 50_000)
    small = sample_crawl[0]
    specs = split_crawl_files([str(jsonl), str(one_warc), small], shard_bytes=size // 3 + 1000, min_shards=64)
    # the jsonl and the file below the target stay whole, in place; the big WARC is cut in place
    assert specs[0] == str(jsonl) and specs[-1] == small
    cut = specs[1:-1]
    assert len(cut) == 3 and all(s.startswith(str(one_warc) + "#records=") for s in cut)
    ranges = ranges_of(cut)
    assert ranges[0][0] == 0 and ranges[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    # cuts where record_ranges cuts (record starts), into even pieces: none a scrap
    assert set(a for a, _ in ranges) <= set(a for a, _ in record_ranges(str(one_warc), 1))
    assert min(b - a for a, b in ranges) > size // 4
    # stable keys, distinct, sorting in file order (the order a whole-file read gives rows in)
    assert split_crawl_files([str(one_warc)], shard_bytes=size // 3 + 1000, min_shards=64) == cut
    # a run's config.yaml lists the ranges: resolving them again keeps them as they are
    assert split_crawl_files(resolve_inputs(cut), shard_bytes=size // 3 + 1000, min_shards=64) == cut
    keys = [shard_key(s) for s in cut]
    assert len(set(keys)) == len(keys) and sorted(keys) == keys
    # shard_bytes 0: one shard per file; single-stream gzip cannot be re-entered: whole
    assert split_crawl_files([str(one_warc)], shard_bytes=0, min_shards=64) == [str(one_warc)]
    single = tmp_path / "single.warc.gz"
    single.write_bytes(gzip.compress(gzip.decompress(one_warc.read_bytes())))
    assert split_crawl_files([str(single)], shard_bytes=size // 5, min_shards=64) == [str(single)]
    # an unreadable file is left to the reader (which counts it), planning does not fail
    gone = str(tmp_path / "gone.warc.gz")
    assert split_crawl_files([gone], shard_bytes=1000, min_shards=64) == [gone]


def _read(path: str, engine: str, byte_range=None) -> tuple[pa.Table, StageStats]:
    st = StageStats("read")
    t = list(iter_warc_batches(path, source="t", batch_size=50, max_html_bytes=5_000_000, stats=st,
                               engine=engine, byte_range=byte_range))
    return pa.concat_tables(t), st


def _files(one_warc: Path, tmp_path: Path) -> list[Path]:
    plain = tmp_path / "plain.warc"
    plain.write_bytes(gzip.decompress(one_warc.read_bytes()))  # multi-member gzip -> plain WARC
    aut = need_shared("warc", "archivesunleashed-aut")
    return [one_warc, plain, aut / "example.arc.gz", aut / "example.warc.gz"]


def test_ranges_read_exactly_like_the_whole_file(one_warc, tmp_path):
    for path in _files(one_warc, tmp_path):
        size = path.stat().st_size
        specs = split_crawl_files([str(path)], shard_bytes=size // 4, min_shards=64)
        assert len(specs) >= 3, path
        for engine in ("auto", "warcio"):
            whole, ws = _read(str(path), engine)
            parts = [_read(str(path), engine, r) for r in ranges_of(specs)]
            got = pa.concat_tables([t for t, _ in parts])
            # same rows in the same order, ids included (ARC ids are made from absolute offsets)
            assert got.equals(whole), (path, engine)
            assert got.num_rows > 0
            for field in ("rows_in", "rows_out", "bytes_in", "bytes_out"):
                assert sum(getattr(s, field) for _, s in parts) == getattr(ws, field), (path, engine, field)
            dropped: dict[str, int] = {}
            for _, s in parts:
                for k, v in s.dropped.items():
                    dropped[k] = dropped.get(k, 0) + v
            assert dropped == ws.dropped, (path, engine)
        # the shard path runs the same reader
        st = StageStats("read")
        via = pa.concat_tables([t for s in specs for t in read_shard([s], input_cfg=InputConfig(), batch_size=50, stats=st)])
        assert via["id"].to_pylist() == whole["id"].to_pylist()


def test_a_range_of_a_file_that_cannot_be_reentered_is_an_input_error(one_warc, tmp_path):
    from datapipe.io import InputError
    single = tmp_path / "single.warc.gz"
    single.write_bytes(gzip.compress(gzip.decompress(one_warc.read_bytes())))
    with pytest.raises(InputError, match="cannot be read alone"):
        _read(str(single), "auto", (100, 200))


# ---------------------------------------------------------------------------
# the pipeline over ranges

def config(shard_bytes: int, **engine) -> object:
    return parse_config({
        "name": "ranges",
        "input": {"shard_bytes": shard_bytes},
        # dedup_lines keeps a line's first occurrence in document order: a wrong shard order shows
        "stages": [{"extract": {}}, {"length": {"min_chars": 100}}, {"dedup_lines": {}}],
        "engine": {"batch_size": 16, **engine},
    }, file="<test>")


def output_rows(run_dir: Path) -> list[tuple[str, str]]:
    files = sorted((run_dir / "output").rglob("*.parquet"))
    return sorted((r["id"], r["text"]) for f in files for r in pq.read_table(f, columns=["id", "text"]).to_pylist())


def test_pipeline_over_ranges_equals_whole_file_and_resumes_by_range(ray_session, one_warc, tmp_path):
    target = one_warc.stat().st_size // 5
    whole = run_pipeline(config(0), inputs=[str(one_warc)], run_dir=tmp_path / "whole", quiet=True)
    ranged = run_pipeline(config(target), inputs=[str(one_warc)], run_dir=tmp_path / "ranged", quiet=True)
    assert (whole.run_dir / "_done" / "01-extract").is_dir()
    keys = sorted(p.name for p in (ranged.run_dir / "_done" / "01-extract").iterdir())
    assert len(keys) >= 4 and all(re.fullmatch(r"crawl\.warc\.gz\.\d{12}-[0-9a-f]{8}", k) for k in keys)
    # the workflow after it maps over the ranges' files, not over the one input file
    assert len(list((ranged.run_dir / "work" / "01-extract").glob("*.parquet"))) == len(keys)
    a, b = output_rows(whole.run_dir), output_rows(ranged.run_dir)
    assert a == b and len(a) > 50
    sa = {s.stage: s for s in load_stats(whole.run_dir)}
    sb = {s.stage: s for s in load_stats(ranged.run_dir)}
    assert sb["dedup_lines"].counters.get("lines_removed", 0) > 0  # so the order is put to the test
    assert sa.keys() == sb.keys()
    for stage in sa:
        assert (sa[stage].rows_in, sa[stage].rows_out, sa[stage].dropped) == \
               (sb[stage].rows_in, sb[stage].rows_out, sb[stage].dropped), stage

    # stop after the first wave of 2 ranges, resume: the done ranges are skipped, not redone
    part = tmp_path / "part"
    run_pipeline(config(target, shards_per_wave=2), inputs=[str(one_warc)], run_dir=part, quiet=True,
                 stop_after_waves=1)
    done = sorted(p.name for p in (part / "_done" / "01-extract").iterdir())
    assert done == keys[:2]
    before = {p.name: p.stat().st_mtime_ns for p in (part / "work" / "01-extract").glob("*.parquet")}
    assert before and all(k.startswith(tuple(done)) for k in before)
    resumed = run_pipeline(config(target, shards_per_wave=2), inputs=[str(one_warc)], run_dir=part, quiet=True)
    assert resumed.shards_skipped == 2
    after = {p.name: p.stat().st_mtime_ns for p in (part / "work" / "01-extract").glob("*.parquet")}
    assert all(after[n] == t for n, t in before.items()), "finished ranges were rewritten"
    assert output_rows(part) == a

    # another range plan over the same run directory is refused, with the reason
    from datapipe.runner import RunError
    with pytest.raises(RunError, match="byte ranges"):
        run_pipeline(config(target // 2), inputs=[str(one_warc)], run_dir=part, quiet=True)


def test_finished_shards_the_plan_does_not_know_are_refused_before_anything_runs(one_warc, tmp_path):
    """A run directory whose input shards were keyed otherwise (same fingerprint) is not resumed:
    the new keys would redo every shard and keep the old files beside the new ones."""
    from datapipe.runner import RunError, Runner
    cfg = config(one_warc.stat().st_size // 3)
    runner = Runner(cfg, inputs=[str(one_warc)], run_dir=tmp_path / "r", quiet=True)
    runner._write_run_header()
    step = runner.steps[0].name
    for spec in runner.inputs:  # markers under today's keys: resumable
        runner.rd.mark_done(step, shard_key(spec))
    Runner(cfg, inputs=[str(one_warc)], run_dir=tmp_path / "r", quiet=True)
    runner.rd.mark_done(step, "crawl.warc.gz_records_0-496000-0123abcd")  # an older datapipe's key
    with pytest.raises(RunError, match="finished shards this run does not plan"):
        Runner(cfg, inputs=[str(one_warc)], run_dir=tmp_path / "r", quiet=True)
