"""End to end: the real Ray-backed pipeline on the sample crawl and on real WARCs.

Checks the run-directory contract (outputs, stats, rejects, markers), that a stopped
run resumes to exactly the output of an uninterrupted one, and remote input via fsspec.
"""
import functools
import http.server
import json
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datapipe.config import ConfigError, load_config, parse_config
from datapipe.runner import load_stats, run_pipeline
from tests.conftest import REPO


def small_config(**engine):
    return parse_config({
        "name": "e2e",
        "stages": [{"extract": {}}, {"length": {"min_chars": 200}}],
        "output": {"rows_per_file": 50},
        "engine": {"batch_size": 16, **engine},
    }, file="<test>")


def read_output(run_dir: Path):
    files = sorted((run_dir / "output").rglob("*.parquet"))
    rows = []
    for f in files:
        rows.extend(pq.read_table(f, columns=["id", "text", "url"]).to_pylist())
    return rows


def test_run_directory_contract(ray_session, sample_crawl, tmp_path):
    cfg = small_config()
    res = run_pipeline(cfg, inputs=sample_crawl, run_dir=tmp_path / "run", quiet=True)
    rd = res.run_dir
    assert (rd / "config.yaml").exists() and (rd / "stats.json").exists()
    rows = read_output(rd)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) > 0, "ids unique and something survived"
    assert all(len(r["text"]) >= 200 for r in rows)
    # no temp files visible anywhere in output
    assert not [p for p in (rd / "output").rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    # one marker and one stats file per (stage, shard)
    shards = sorted(p.name for p in (rd / "_done" / "01-extract").iterdir())
    assert len(shards) == len(sample_crawl)
    for stage in ("read", "extract", "length", "write"):
        assert sorted(p.stem for p in (rd / "stats" / "01-extract" / stage).glob("*.json")) == shards
    stats = {s.stage: s for s in load_stats(rd)}
    # the funnel adds up: each stage's input is the previous stage's output
    assert stats["extract"].rows_in == stats["read"].rows_out
    assert stats["length"].rows_in == stats["extract"].rows_out
    assert stats["write"].rows_out == stats["length"].rows_out == len(rows)
    for s in stats.values():
        assert s.rows_in - s.rows_out == sum(s.dropped.values()), s.stage
    # the reader counted the non-response records by reason
    assert stats["read"].dropped.get("request", 0) > 0
    # rejects: samples for every reason that dropped something, with url + excerpt
    for reason, n in stats["length"].dropped.items():
        f = rd / "rejects" / "length" / f"{reason}.jsonl"
        samples = [json.loads(l) for l in f.read_text().splitlines()]
        assert 0 < len(samples) <= min(n, cfg.rejects.samples_per_reason)
        assert all("excerpt" in s and s["reason"] == reason for s in samples)


def test_resume_equals_uninterrupted_run(ray_session, sample_crawl, tmp_path):
    full = run_pipeline(small_config(shards_per_wave=1), inputs=sample_crawl, run_dir=tmp_path / "full", quiet=True)
    # stop after the first wave (one shard), then run the same command again
    part = tmp_path / "part"
    run_pipeline(small_config(shards_per_wave=1), inputs=sample_crawl, run_dir=part, quiet=True, stop_after_waves=1)
    assert len(list((part / "_done" / "01-extract").iterdir())) == 1
    # a crash mid-commit can leave files of an unfinished shard: they must not survive the resume
    stray = next((part / "output").glob("*.parquet"))
    undone = Path(sorted(sample_crawl)[-1])
    from datapipe.rundir import shard_key
    (part / "output" / f"{shard_key(str(undone))}-00000.parquet").write_bytes(stray.read_bytes())
    resumed = run_pipeline(small_config(shards_per_wave=1), inputs=sample_crawl, run_dir=part, quiet=True)
    assert resumed.shards_skipped == 1
    a = sorted((r["id"], r["text"]) for r in read_output(full.run_dir))
    b = sorted((r["id"], r["text"]) for r in read_output(part))
    assert a == b
    # stats of the resumed run describe the whole run, not only the second half
    sa = {s.stage: s.to_dict() for s in load_stats(full.run_dir)}
    sb = {s.stage: s.to_dict() for s in load_stats(part)}
    for stage in sa:
        for k in ("rows_in", "rows_out", "dropped"):
            assert sa[stage][k] == sb[stage][k], (stage, k)


def test_rerun_of_finished_run_skips_everything(ray_session, sample_crawl, tmp_path):
    cfg = small_config()
    first = run_pipeline(cfg, inputs=sample_crawl[:1], run_dir=tmp_path / "r", quiet=True)
    again = run_pipeline(cfg, inputs=sample_crawl[:1], run_dir=tmp_path / "r", quiet=True)
    assert again.shards_run == 0 and again.shards_skipped == 1
    assert sorted(r["id"] for r in read_output(first.run_dir)) == sorted(r["id"] for r in read_output(again.run_dir))


def test_changed_config_refuses_to_mix_runs(ray_session, sample_crawl, tmp_path):
    from datapipe.runner import RunError
    run_pipeline(small_config(), inputs=sample_crawl[:1], run_dir=tmp_path / "r", quiet=True)
    other = parse_config({"stages": [{"length": {"min_chars": 5}}]}, file="<t>")
    with pytest.raises(RunError, match="different config"):
        run_pipeline(other, inputs=sample_crawl[:1], run_dir=tmp_path / "r", quiet=True)


def test_real_warcs_and_malformed_inputs(ray_session, shared_data, tmp_path):
    warc = shared_data / "warc"
    inputs = [str(warc / "resiliparse-testdata" / "warcfile.warc.gz"),
              str(warc / "resiliparse-testdata" / "clipped.warc.gz"),
              str(warc / "copycat-clueweb-samples" / "clueweb09-en0000-00.warc.gz"),
              str(warc / "jeffharwell-cc-wet" / "fragment3.wet.gz")]
    res = run_pipeline(small_config(), inputs=inputs, run_dir=tmp_path / "real", quiet=True)
    stats = {s.stage: s for s in load_stats(res.run_dir)}
    assert len(list((res.run_dir / "_done" / "01-extract").iterdir())) == len(inputs)
    assert stats["read"].rows_out > 10
    assert stats["write"].rows_out > 0
    assert stats["read"].rows_in == stats["read"].rows_out + sum(stats["read"].dropped.values())


def test_remote_input_over_http(ray_session, sample_crawl, tmp_path):
    folder = Path(sample_crawl[0]).parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/{Path(sample_crawl[0]).name}"
        remote = run_pipeline(small_config(), inputs=[url], run_dir=tmp_path / "remote", quiet=True)
        local = run_pipeline(small_config(), inputs=[sample_crawl[0]], run_dir=tmp_path / "local", quiet=True)
    finally:
        srv.shutdown()
    assert sorted(r["id"] for r in read_output(remote.run_dir)) == sorted(r["id"] for r in read_output(local.run_dir))


def test_read_ahead_budget_bounds_ray_data_and_keeps_the_output(ray_session, sample_crawl, tmp_path):
    # the budget is Ray Data's, so it applies to the unfused pipeline (fused, each worker reads
    # its own shard: nothing is in flight between processes)
    import ray
    import ray.data

    default = run_pipeline(small_config(fuse=False), inputs=sample_crawl[:2], run_dir=tmp_path / "d", quiet=True)
    limits = ray.data.DataContext.get_current().execution_options.resource_limits
    assert limits.object_store_memory == max(256, 64 * int(ray.cluster_resources()["CPU"])) * 2**20
    tight = run_pipeline(small_config(read_ahead_mb=1, fuse=False), inputs=sample_crawl[:2], run_dir=tmp_path / "t",
                         quiet=True)
    limits = ray.data.DataContext.get_current().execution_options.resource_limits
    assert limits.object_store_memory == 2**20
    # a budget smaller than one block still makes progress, one block at a time, to the same output
    assert [r["id"] for r in read_output(tight.run_dir)] == [r["id"] for r in read_output(default.run_dir)]
    assert len(read_output(default.run_dir)) > 10
    fused = run_pipeline(small_config(), inputs=sample_crawl[:2], run_dir=tmp_path / "f", quiet=True)
    assert [r["id"] for r in read_output(fused.run_dir)] == [r["id"] for r in read_output(default.run_dir)]
    with pytest.raises(ConfigError, match="read_ahead_mb"):
        small_config(read_ahead_mb=0)


def test_a_run_ending_in_a_workflow_reports_what_it_wrote(ray_session, sample_crawl, tmp_path):
    cfg = parse_config({"name": "wf-last", "stages": [{"extract": {}}, {"dedup_exact": {}}],
                        "engine": {"batch_size": 16}}, file="<test>")
    res = run_pipeline(cfg, inputs=sample_crawl[:2], run_dir=tmp_path / "r", quiet=True)
    stats = {s.stage: s for s in load_stats(res.run_dir)}
    rows = len(read_output(res.run_dir))
    assert list(stats)[-1] == "write"
    assert stats["write"].rows_out == rows == stats["dedup_exact"].rows_out and rows > 0
    assert stats["write"].bytes_out == sum(f.stat().st_size for f in (res.run_dir / "output").rglob("*.parquet"))


def test_unfused_stages_give_the_fused_output(ray_session, sample_crawl, tmp_path):
    # engine.fuse: false gives each stage its own operator: langid (needs_model) an actor pool,
    # extract and length plain tasks; the output and the per-stage funnel are the same
    def cfg(fuse):
        return parse_config({"name": "fuse", "stages": [{"extract": {}}, {"langid": {}}, {"length": {"min_chars": 200}}],
                             "engine": {"batch_size": 16, "fuse": fuse}}, file="<test>")
    fused = run_pipeline(cfg(True), inputs=sample_crawl[:2], run_dir=tmp_path / "f", quiet=True)
    unfused = run_pipeline(cfg(False), inputs=sample_crawl[:2], run_dir=tmp_path / "u", quiet=True)
    assert sorted(r["id"] for r in read_output(unfused.run_dir)) == sorted(r["id"] for r in read_output(fused.run_dir))
    funnel = {s.stage: (s.rows_in, s.rows_out, s.dropped) for s in load_stats(fused.run_dir)}
    assert {s.stage: (s.rows_in, s.rows_out, s.dropped) for s in load_stats(unfused.run_dir)} == funnel
    assert funnel["langid"][0] > 10
