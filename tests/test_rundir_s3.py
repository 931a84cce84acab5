"""Run directories on an object store (``--run-dir s3://...``), against a real S3 server
(moto's, on loopback; ``tests/_s3.py``): a run's output, stats, markers and report land in the
bucket and equal a local run's; the markers are the commit point (uploaded after the files they
vouch for, and a commit cut between the two is redone); a kill mid-wave then a resume from
another machine's staging folder gives the uninterrupted output; ``datapipe check`` probes the URL."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datapipe.config import parse_config
from datapipe.rundir import ObjectStoreMirror
from datapipe.runner import load_stats, run_pipeline
from tests._s3 import s3_env, s3_server  # noqa: F401 - fixtures
from tests.conftest import REPO

BUCKET = "run-bucket"

STAGES = [{"extract": {}}, {"length": {"min_chars": 200}}, {"dedup_exact": {}}]


def _config(s3=None, stages=STAGES, **engine):
    """``s3``: the test server, whose endpoint then reaches the session's Ray workers (started
    before the test set its environment) through ``input.storage_options``."""
    d = {"name": "s3run", "stages": stages, "output": {"rows_per_file": 40}, "engine": {"batch_size": 16, **engine}}
    if s3 is not None:
        d["input"] = {"storage_options": {"s3": s3.opts}}
    return parse_config(d, file="<test>")


def _local_docs(run_dir: Path) -> list[tuple[str, str]]:
    rows = []
    for f in sorted((run_dir / "output").rglob("*.parquet")):
        t = pq.read_table(f, columns=["id", "text"])
        rows += zip(t["id"].to_pylist(), t["text"].to_pylist())
    return sorted(rows)


def _s3_docs(fs, url: str) -> list[tuple[str, str]]:
    """The output documents as the bucket holds them (read from S3, not from a staging copy)."""
    rows = []
    fs.invalidate_cache()
    for f in sorted(p for p in fs.find(url.removeprefix("s3://") + "/output") if p.endswith(".parquet")):
        with fs.open(f, "rb") as fh:
            t = pq.read_table(fh, columns=["id", "text"])
        rows += zip(t["id"].to_pylist(), t["text"].to_pylist())
    return sorted(rows)


def _s3_json(fs, path: str):
    with fs.open(path, "rt") as fh:
        return json.load(fh)


@pytest.fixture
def staging(tmp_path, monkeypatch):
    """A fresh staging folder for this test (as on a machine that never ran it)."""
    d = tmp_path / "staging"
    monkeypatch.setenv("DATAPIPE_STAGING_DIR", str(d))
    return d


@pytest.fixture(scope="module")
def local_run(ray_session, sample_crawl, tmp_path_factory):
    return run_pipeline(_config(), inputs=sample_crawl, run_dir=tmp_path_factory.mktemp("local") / "run", quiet=True)


def test_a_run_to_s3_equals_the_local_run_and_its_report_is_there(ray_session, sample_crawl, s3_env, staging,
                                                                   local_run, tmp_path, monkeypatch):
    fs = s3_env.fs()
    s3_env.bucket(BUCKET)
    url = f"s3://{BUCKET}/full"
    from datapipe.ray_backend import Engine
    pins = []  # where the engine ran each piece of work: the workflow's tasks on the driver's node only
    real_map, real_stream = Engine.map, Engine.run_stream
    monkeypatch.setattr(Engine, "map", lambda self, *a, **k: pins.append(("map", self.pin_node)) or real_map(self, *a, **k))
    monkeypatch.setattr(Engine, "run_stream",
                        lambda self, **k: pins.append(("stream", self.pin_node)) or real_stream(self, **k))
    res = run_pipeline(_config(s3_env), inputs=sample_crawl, run_dir=url, quiet=True)
    assert res.url == url and res.run_dir.is_relative_to(staging)
    node = ray_session.get_runtime_context().get_node_id()
    assert {p for p in pins if p[0] == "map"} == {("map", node)} and {p for p in pins if p[0] == "stream"} == {("stream", None)}
    want = _local_docs(local_run.run_dir)
    assert len(want) > 20
    assert _s3_docs(fs, url) == want
    # markers, stats, lineage and rejects are in the bucket, as in the local run directory
    held = {p.removeprefix(f"{BUCKET}/full/") for p in fs.find(f"{BUCKET}/full")}
    local = {p.relative_to(local_run.run_dir).as_posix() for p in local_run.run_dir.rglob("*")
             if p.is_file() and not p.name.startswith(".") and not p.relative_to(local_run.run_dir).parts[0] == "logs"}
    assert {h for h in local if not h.startswith(("output/", "work/"))} <= held
    assert sum(h.startswith("_done/01-extract/") for h in held) == len(sample_crawl)
    assert "_done/02-dedup_exact.complete" in held and not any(h.startswith("_tmp/") for h in held)
    a = {s["stage"]: (s["rows_in"], s["rows_out"], s["dropped"]) for s in _s3_json(fs, f"{BUCKET}/full/stats.json")["stages"]}
    b = {s.stage: (s.rows_in, s.rows_out, s.dropped) for s in local_run.stats}
    assert a == b
    assert {s.stage: s.rows_out for s in load_stats(url)} == {k: v[1] for k, v in b.items()}
    # the report, built from the URL on a machine with an empty staging folder, is uploaded beside the run
    monkeypatch.setenv("DATAPIPE_STAGING_DIR", str(tmp_path / "elsewhere"))
    from datapipe.report import build_report
    where = build_report(url)
    assert where == f"{url}/report/index.html"
    with fs.open(f"{BUCKET}/full/report/index.html", "rt") as fh:
        page = fh.read()
    assert url in page and "dedup_exact" in page
    # the Python API opens it too (downloaded into this machine's staging copy)
    import datapipe
    opened = datapipe.open_run(url)
    assert opened.run_dir.is_relative_to(tmp_path / "elsewhere")
    assert opened.to_arrow().count_rows() == len(want) and opened["write"].rows_out == len(want)


def test_markers_are_uploaded_after_their_files_and_a_cut_commit_is_redone(ray_session, sample_crawl, s3_env, staging,
                                                                            local_run, monkeypatch):
    fs = s3_env.fs()
    s3_env.bucket(BUCKET)
    url = f"s3://{BUCKET}/order"
    order: list[list[str]] = []
    copied: list[str] = []
    real_push, real_copy = ObjectStoreMirror.push, ObjectStoreMirror.copy_in
    cut = {"at": 3}  # the third wave's markers never reach the store (a kill at the commit point)

    def push(self, paths):
        paths = list(paths)
        rels = [self.rel(p) for p in paths]
        if any(r.startswith("_done/01-extract/") for r in rels):
            cut["at"] -= 1
            if cut["at"] == 0:
                raise KeyboardInterrupt("killed at the commit point")
        real_push(self, paths)
        order.append(rels)

    def copy_in(self, pairs):
        copied.extend(src for src, _ in pairs)
        real_copy(self, pairs)
        order.append([self.rel(p) for _, p in pairs])

    monkeypatch.setattr(ObjectStoreMirror, "push", push)
    monkeypatch.setattr(ObjectStoreMirror, "copy_in", copy_in)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(_config(s3_env, shards_per_wave=1), inputs=sample_crawl, run_dir=url, quiet=True)
    # the workers wrote the waves' Parquet parts into the store (every node reaches it), not to this machine
    assert copied and all(c.startswith(f"{url}/_tmp/wave-") and "/out/" in c for c in copied)
    uploaded = [r for batch in order for r in batch]
    markers = [i for i, batch in enumerate(order) if any(r.startswith("_done/") for r in batch)]
    assert len(markers) == 2
    for i in markers:  # a marker's batch holds markers only, and each shard's files went up before it
        assert all(r.startswith("_done/") for r in order[i])
        for m in order[i]:
            shard = m.rsplit("/", 1)[1]
            files = [j for j, batch in enumerate(order) if any(shard in r and not r.startswith("_done/") for r in batch)]
            assert files and max(files) < i, m
    # the third shard's files are in the store without their marker: the resume redoes it
    committed = {r.rsplit("/", 1)[1] for r in uploaded if r.startswith("_done/01-extract/")}
    read_stats = {Path(p).stem for p in fs.find(f"{BUCKET}/order/stats/01-extract/read")}
    assert len(committed) == 2 and len(read_stats - committed) == 1
    monkeypatch.setattr(ObjectStoreMirror, "push", real_push)
    monkeypatch.setenv("DATAPIPE_STAGING_DIR", str(staging.parent / "staging2"))
    res = run_pipeline(_config(s3_env, shards_per_wave=1), inputs=sample_crawl, run_dir=url, quiet=True)
    assert res.shards_skipped == 2
    fs.invalidate_cache()
    assert not fs.find(f"{BUCKET}/order/_tmp")
    assert _s3_docs(fs, url) == _local_docs(local_run.run_dir)


def _cli_env(s3, staging: Path) -> dict:
    return dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", DATAPIPE_STAGING_DIR=str(staging),
                **s3.env)


KILL_CONFIG = """
name: s3kill
stages:
  - extract: {timeout_s: 120}
  - length: {min_chars: 100}
output: {rows_per_file: 40}
engine: {batch_size: 8, shards_per_wave: 1}
"""


def test_kill_mid_wave_then_resume_from_another_staging_folder(sample_crawl, s3_server, tmp_path):  # noqa: F811
    fs = s3_server.fs()
    s3_server.bucket(BUCKET)
    cfg = tmp_path / "kill.yaml"
    cfg.write_text(KILL_CONFIG)
    ref = tmp_path / "ref"
    r = subprocess.run([sys.executable, "-m", "datapipe.cli", "run", str(cfg), "--input", *sample_crawl,
                        "--run-dir", str(ref), "--quiet"], cwd=REPO, env=_cli_env(s3_server, tmp_path / "st0"),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    url = f"s3://{BUCKET}/killed"
    proc = subprocess.Popen([sys.executable, "-m", "datapipe.cli", "run", str(cfg), "--input", *sample_crawl,
                             "--run-dir", url, "--quiet"], cwd=REPO, env=_cli_env(s3_server, tmp_path / "st1"),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    done = f"{BUCKET}/killed/_done/01-extract"
    while time.time() < deadline and not fs.find(done):
        assert proc.poll() is None, "run ended before it could be killed"
        time.sleep(0.2)
        fs.invalidate_cache()
    time.sleep(random.Random(3).uniform(0.0, 3.0))  # mid-wave: a later shard runs, uploads, commits
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    proc.wait()
    fs.invalidate_cache()
    n_done = len(fs.find(done))
    assert 1 <= n_done < len(sample_crawl), "killed after the first commit and before the last"
    # resume on "another machine": an empty staging folder, everything from the store
    r = subprocess.run([sys.executable, "-m", "datapipe.cli", "run", str(cfg), "--input", *sample_crawl,
                        "--run-dir", url], cwd=REPO, env=_cli_env(s3_server, tmp_path / "st2"),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"run directory: {url}" in r.stdout and "already done" in r.stderr
    fs.invalidate_cache()
    assert _s3_docs(fs, url) == _local_docs(ref)
    a = {s["stage"]: (s["rows_in"], s["rows_out"]) for s in _s3_json(fs, f"{BUCKET}/killed/stats.json")["stages"]}
    b = {s["stage"]: (s["rows_in"], s["rows_out"]) for s in json.loads((ref / "stats.json").read_text())["stages"]}
    assert a == b
    assert len(fs.find(done)) == len(sample_crawl)
    # the commands that read a run directory read it from the store; those that write into one say so
    env = _cli_env(s3_server, tmp_path / "st3")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "datapipe.cli", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
    r = cli("stats", url)
    assert r.returncode == 0 and "length" in r.stdout and "docs out" in r.stdout, r.stdout + r.stderr
    r = cli("inspect", url, "--stage", "length")
    assert r.returncode == 0 and "== length / " in r.stdout, r.stdout + r.stderr
    kept_id = _local_docs(ref)[0][0]
    r = cli("why", url, kept_id)
    assert r.returncode == 0 and "kept: output/" in r.stdout, r.stdout + r.stderr
    r = cli("report", url)
    assert r.returncode == 0 and r.stdout.strip() == f"report: {url}/report/index.html", r.stdout + r.stderr
    assert fs.exists(f"{BUCKET}/killed/report/index.html")
    r = cli("refilter", url, "--stage", "length", "--set", "min_chars=300")
    assert r.returncode == 2 and "needs a local run directory" in r.stderr and url in r.stderr, r.stderr
    assert not any(p.name.startswith("_read-") for p in (tmp_path / "st3").iterdir()), "read copies are removed"


def test_check_probes_the_store_from_every_node_and_names_a_missing_bucket(ray_session, sample_crawl, s3_env,
                                                                           staging):
    from datapipe.preflight import preflight
    s3_env.bucket(BUCKET)
    url = f"s3://{BUCKET}/checked"
    rep = preflight(_config(s3_env), inputs=sample_crawl[:1], run_dir=url)
    assert rep.ok, rep.text()
    assert any(line.startswith(f"run dir {url} (staging copy {staging}") for line in rep.passed), rep.passed
    assert any(line.startswith("nodes: all") and url in line for line in rep.passed), rep.passed
    assert not s3_env.fs().find(f"{BUCKET}/checked"), "the probes are removed"
    # a bucket that does not exist: one storage problem naming the URL, before anything runs
    rep = preflight(_config(s3_env), inputs=sample_crawl[:1], run_dir="s3://no-such-bucket-here/run", fast=True)
    assert [p.kind for p in rep.problems] == ["storage"]
    assert "s3://no-such-bucket-here/run: cannot write to the run directory" in rep.problems[0].message
