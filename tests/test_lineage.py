"""Lineage: every document of a run has one recorded fate (dropped by a stage and reason, or kept
in an output file), written by the engine for streaming stages and by every workflow; its
totals equal stats.json's exactly, and ``datapipe why`` answers from it."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datapipe import lineage


def test_lineage_of_a_real_run_is_complete_and_agrees_with_stats(ray_session, sample_crawl, tmp_path, capsys):
    from datapipe.cli import main
    from datapipe.config import parse_config
    from datapipe.runner import load_stats, run_pipeline
    cfg = parse_config({
        "name": "lineage-e2e",
        "stages": [{"extract": {}}, {"length": {"min_chars": 200}}, {"gopher_quality": {}}, {"dedup_exact": {}},
                   {"dedup_minhash": {}}, {"length": {"min_chars": 600}}],
        "output": {"rows_per_file": 40}, "engine": {"batch_size": 32},
    }, file="<test>")
    rd = run_pipeline(cfg, inputs=sample_crawl, run_dir=tmp_path / "run", quiet=True).run_dir
    stats = {s.stage: s for s in load_stats(rd)}
    drops, kept = lineage.load(rd)
    # complete: one fate per document the read stage yielded, none twice
    assert drops.num_rows + kept.num_rows == stats["read"].rows_out
    ids = drops["id"].to_pylist() + kept["id"].to_pylist()
    assert len(set(ids)) == len(ids)
    # exact agreement with stats: per stage and reason, and the kept rows with the output
    by, n_kept = lineage.totals(rd)
    want = {(s.stage, r): n for s in stats.values() if s.stage not in ("read", "write") for r, n in s.dropped.items()}
    assert by == want
    out_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in (rd / "output").glob("*.parquet"))
    assert n_kept == out_rows == stats["length#2"].rows_out
    assert {"gopher_quality", "dedup_exact", "length", "length#2"} <= {k[0] for k in by}
    # kept rows name the file that holds them
    some = kept.slice(0, 3).to_pylist()
    for r in some:
        assert r["id"] in pq.read_table(rd / r["file"], columns=["id"])["id"].to_pylist()
    # datapipe why: a gopher drop with its scores, a dedup drop naming its survivor, a kept URL
    d = drops.to_pylist()
    gq = next(r for r in d if r["stage"] == "gopher_quality")
    ex = next(r for r in d if r["stage"] == "dedup_exact")
    capsys.readouterr()
    assert main(["why", str(rd), gq["id"], ex["url"], some[0]["url"], "--json"]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert got[0]["stage"] == "gopher_quality" and got[0]["reason"] == gq["reason"]
    assert any(k.startswith("gq_") for k in got[0]["scores"])
    assert got[1]["stage"] == "dedup_exact" and got[1]["scores"]["dup_of"] and got[1]["step"].endswith("dedup_exact")
    assert got[2]["fate"] == "kept" and got[2]["file"] == some[0]["file"]
    assert main(["why", str(rd), "no-such-document"]) == 1
    assert "no document of this run" in capsys.readouterr().out


def test_why_without_lineage_is_a_clear_error(tmp_path, capsys):
    from datapipe.cli import main
    assert main(["why", str(tmp_path), "x"]) == 2
    assert "no lineage/kept.parquet" in capsys.readouterr().err


def test_lineage_after_an_interrupted_and_resumed_run(ray_session, sample_crawl, tmp_path):
    """A run stopped after one wave and resumed keeps one fate per document, equal to stats."""
    from datapipe.config import parse_config
    from datapipe.runner import load_stats, run_pipeline
    cfg = parse_config({
        "name": "lineage-resume",
        "stages": [{"extract": {}}, {"length": {"min_chars": 400}}, {"dedup_exact": {}}],
        "output": {"rows_per_file": 40}, "engine": {"batch_size": 32, "shards_per_wave": 1},
    }, file="<test>")
    run_pipeline(cfg, inputs=sample_crawl, run_dir=tmp_path / "run", quiet=True, stop_after_waves=1)
    assert not lineage.has_lineage(tmp_path / "run")            # not finished: no kept record yet
    assert len(list((tmp_path / "run" / "lineage").glob("*/*.parquet"))) == 1
    rd = run_pipeline(cfg, inputs=sample_crawl, run_dir=tmp_path / "run", quiet=True).run_dir
    stats = {s.stage: s for s in load_stats(rd)}
    drops, kept = lineage.load(rd)
    ids = drops["id"].to_pylist() + kept["id"].to_pylist()
    assert len(ids) == len(set(ids)) == stats["read"].rows_out
    by, n_kept = lineage.totals(rd)
    assert by == {(s.stage, r): n for s in stats.values() if s.stage not in ("read", "write")
                  for r, n in s.dropped.items()}
    assert n_kept == stats["dedup_exact"].rows_out
