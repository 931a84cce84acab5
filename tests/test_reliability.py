"""Reliability: crash-resume under fault injection, hostile inputs, bad environment, multi-node.

These run the real CLI in subprocesses (each with its own local Ray, or a cluster started
here) so that SIGKILL hits real driver and worker processes.
"""
import gzip
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

from tests.conftest import REPO, missing

CONFIG = """
name: rel
stages:
  - extract: {timeout_s: 120}
  - length: {min_chars: 100}
output: {rows_per_file: 40}
engine: {batch_size: 8, shards_per_wave: 1}
"""


def cli(*args, env=None, timeout=600, **kw):
    e = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", **(env or {}))
    return subprocess.run([sys.executable, "-m", "datapipe.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=e, cwd=REPO, **kw)


def output_docs(run_dir: Path) -> list[tuple[str, str]]:
    rows = []
    for f in sorted((run_dir / "output").rglob("*.parquet")):
        t = pq.read_table(f, columns=["id", "text"])
        rows.extend(zip(t["id"].to_pylist(), t["text"].to_pylist()))
    return sorted(rows)


def stats_of(run_dir: Path) -> dict:
    return {s["stage"]: s for s in json.loads((run_dir / "stats.json").read_text())["stages"]}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "rel.yaml"
    p.write_text(CONFIG)
    return p


@pytest.fixture(scope="module")
def reference_run(config_file, sample_crawl, tmp_path_factory):
    rd = tmp_path_factory.mktemp("ref") / "run"
    r = cli("run", config_file, "--input", *sample_crawl, "--run-dir", rd, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    return rd


def problems(run_dir: Path) -> list[dict]:
    p = run_dir / "logs" / "problems.jsonl"
    return [json.loads(l) for l in p.read_text().splitlines()] if p.exists() else []


def test_worker_sigkills_are_reported_and_do_not_change_output(config_file, sample_crawl, reference_run, tmp_path):
    # every shard's worker is SIGKILLed at its second batch, once: each kill is reported with
    # the shard, the shard is redone on the restarted worker, and nothing is lost or doubled
    rd = tmp_path / "run"
    r = cli("run", config_file, "--input", *sample_crawl, "--run-dir", rd,
            env={"DATAPIPE_FAULT_KILL_ONCE_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    died = [p for p in problems(rd) if p["kind"] == "worker_died"]
    shards = {p.name for p in (rd / "_done" / "01-extract").iterdir()}
    assert {p["shard"] for p in died} == shards and len(died) == len(shards) >= 2
    assert all("retry 1 of" in p["message"] and "killed" in p["message"] for p in died)
    assert sum("worker died" in l and "redoing the shard" in l for l in r.stderr.splitlines()) == len(died)
    assert output_docs(rd) == output_docs(reference_run)
    a, b = stats_of(rd), stats_of(reference_run)
    for stage in a:
        assert (a[stage]["rows_in"], a[stage]["rows_out"], a[stage]["dropped"]) == \
               (b[stage]["rows_in"], b[stage]["rows_out"], b[stage]["dropped"]), stage


@pytest.mark.parametrize("seed", [1, 2])
def test_driver_sigkill_then_resume(config_file, sample_crawl, reference_run, tmp_path, seed):
    rd = tmp_path / "run"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    proc = subprocess.Popen([sys.executable, "-m", "datapipe.cli", "run", str(config_file), "--input", *sample_crawl,
                             "--run-dir", str(rd), "--quiet"], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill at a seeded random moment after the first shard committed (mid-wave, mid-write ...)
    deadline = time.time() + 300
    done = rd / "_done" / "01-extract"
    while time.time() < deadline and not (done.is_dir() and any(done.iterdir())):
        assert proc.poll() is None, "run ended before it could be killed"
        time.sleep(0.2)
    time.sleep(random.Random(seed).uniform(0.0, 4.0))
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    proc.wait()
    n_done = len(list(done.iterdir()))
    assert 1 <= n_done, "the first shard's marker survived the kill"
    r = cli("run", config_file, "--input", *sample_crawl, "--run-dir", rd, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert output_docs(rd) == output_docs(reference_run)
    assert not [p for p in rd.rglob("*") if p.suffix == ".tmp" or (p.name.startswith(".") and p.is_file())]
    assert not (rd / "_tmp").exists()
    a, b = stats_of(rd), stats_of(reference_run)
    for stage in a:
        assert (a[stage]["rows_in"], a[stage]["rows_out"]) == (b[stage]["rows_in"], b[stage]["rows_out"]), stage


def test_a_hung_shard_is_named_with_its_stack_retried_then_failed_while_the_rest_completes(sample_crawl, tmp_path):
    # a cheap stage, so that only the planted hang is slower than the 5 s limit on a loaded machine
    cfg = tmp_path / "hang.yaml"
    cfg.write_text("name: hang\nstages: [{url_filter: {}}]\noutput: {rows_per_file: 40}\n"
                   "engine: {batch_size: 8, shard_retries: 1, hang_after_s: 5}\n")
    stuck = Path(sample_crawl[1]).name
    rd = tmp_path / "run"
    r = cli("run", cfg, "--input", *sample_crawl, "--run-dir", rd, env={"DATAPIPE_FAULT_HANG_SHARD": stuck})
    assert r.returncode == 1, r.stderr[-3000:]
    hangs = [p for p in problems(rd) if p["kind"] == "hang"]
    assert len(hangs) == 2 and all(stuck in p["shard"] for p in hangs)  # first try, then the retry
    assert all(p["step"] == "01-url_filter" and p["inputs"] == [sample_crawl[1]] for p in hangs)
    stack = Path(hangs[0]["stack_file"]).read_text()
    assert "_maybe_inject_fault_in_shard" in stack  # the worker's own Python stack, dumped while it hung
    assert [p["kind"] for p in problems(rd)][-1] == "failed"
    assert stuck in r.stderr and "no progress for" in r.stderr and "1 shard(s) failed" in r.stderr
    assert "Traceback" not in r.stderr
    done = {p.name for p in (rd / "_done" / "01-url_filter").iterdir()}
    assert len(done) == len(sample_crawl) - 1 and not any(stuck in d for d in done)
    # the same command without the fault redoes only the failed shard: the output of a clean run
    r = cli("run", cfg, "--input", *sample_crawl, "--run-dir", rd, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    clean = tmp_path / "clean"
    assert cli("run", cfg, "--input", *sample_crawl, "--run-dir", clean, "--quiet").returncode == 0
    assert output_docs(rd) == output_docs(clean) and len(output_docs(rd)) > 100


def test_unreachable_ray_address_is_a_clear_error(config_file, sample_crawl, tmp_path):
    # how long it takes to give up: bench/guards.py (timeout= only keeps a hang from stalling the suite)
    r = cli("run", config_file, "--input", sample_crawl[0], "--run-dir", tmp_path / "x",
            env={"RAY_ADDRESS": "127.0.0.1:9"}, timeout=120)
    assert r.returncode == 3
    assert "cannot reach the Ray cluster" in r.stderr and "Traceback" not in r.stderr


def _hostile_corpus(folder: Path, sample: str) -> None:
    data = Path(sample).read_bytes()
    (folder / "empty.warc.gz").write_bytes(b"")
    (folder / "truncated.warc.gz").write_bytes(data[: len(data) // 2])
    (folder / "garbage.warc.gz").write_bytes(os.urandom(4096))
    (folder / "garbage_between.warc.gz").write_bytes(data[:len(data) // 3] + b"\x00GARBAGE" * 100 + data[len(data) // 3:])
    # a gzip bomb: 200 MB of zeros that compress to ~200 KB, claiming to be a WARC
    with gzip.open(folder / "bomb.warc.gz", "wb") as fh:
        chunk = b"\0" * (1 << 20)
        for _ in range(200):
            fh.write(chunk)
    body = b"<html><body>" + b"<div>" * 20000 + b"deep" + b"</div>" * 20000 + b"</body></html>"
    from warcio.warcwriter import WARCWriter
    from warcio.statusandheaders import StatusAndHeaders
    import io
    with open(folder / "nested_and_huge.warc.gz", "wb") as fh:
        w = WARCWriter(fh, gzip=True)
        for i, payload in enumerate([body, b"<html><body><p>" + b"big page words " * 3_500_000 + b"</p></body></html>",
                                     b"\xff\xfe\xfa not utf8 \xc3\x28 <html><body><p>caf\xe9 na\xefve</p></body></html>"]):
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=bogus-charset-name")], protocol="HTTP/1.1")
            rec = w.create_warc_record(f"http://hostile.example/{i}", "response", payload=io.BytesIO(payload),
                                       http_headers=http)
            w.write_record(rec)


def test_hostile_inputs_are_counted_not_fatal(config_file, sample_crawl, tmp_path, shared_data):
    folder = tmp_path / "hostile"
    folder.mkdir()
    _hostile_corpus(folder, sample_crawl[0])
    real = [shared_data / "warc" / "copycat-clueweb-samples" / "clueweb09-en0000-00.warc.gz",
            shared_data / "warc" / "resiliparse-testdata" / "clipped.warc.gz",
            shared_data / "warc" / "jeffharwell-cc-wet" / "filter_test_1.wet.gz",
            shared_data / "warc" / "webarchive-commons-testdata" / "IAH-20080430204825-00000-blackbook-truncated.arc"]
    rd = tmp_path / "run"
    r = cli("run", config_file, "--input", folder, *real, "--run-dir", rd, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    n_inputs = len(list(folder.iterdir())) + len(real)
    assert len(list((rd / "_done" / "01-extract").iterdir())) == n_inputs
    st = stats_of(rd)
    read = st["read"]
    assert read["rows_in"] == read["rows_out"] + sum(read["dropped"].values())
    assert read["dropped"].get("oversized", 0) >= 1          # the 52 MB page
    assert read["dropped"].get("corrupt", 0) + read["counters"].get("truncated_file", 0) >= 2
    assert read["counters"].get("charset_replaced", 0) >= 1  # bogus charset + invalid bytes
    # the deeply nested page went through extraction without killing a worker
    assert st["extract"]["rows_in"] >= 2


def test_multi_node_cluster_same_output(config_file, sample_crawl, reference_run, tmp_path):
    """Two Ray nodes on this machine; the CLI joins with RAY_ADDRESS and must give the same output."""
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        rd = tmp_path / "run"
        r = cli("run", config_file, "--input", *sample_crawl, "--run-dir", rd, "--quiet",
                env={"RAY_ADDRESS": cluster.address})
        assert r.returncode == 0, r.stderr[-3000:]
    finally:
        cluster.shutdown()
    assert output_docs(rd) == output_docs(reference_run)


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                                capture_output=True).returncode == 0


def test_full_disk_is_a_clear_error(config_file, sample_crawl, tmp_path):
    tiny = tmp_path / "tiny"
    if not _tmpfs(tiny, "8m"):
        missing("needs root to mount a small tmpfs (CI runs as root)")
    try:
        # known in advance: too little free space -> refused before anything is written
        r = cli("run", config_file, "--input", *sample_crawl, "--run-dir", tiny / "run", "--quiet")
        assert r.returncode == 4 and "MiB free" in r.stderr and "Traceback" not in r.stderr
        assert not (tiny / "run").exists()
        # found mid-run: the disk fills while shards are written
        (tiny / "filler").write_bytes(b"\0" * (8 * 2**20 - 200 * 1024))
        r = cli("run", config_file, "--input", *sample_crawl, "--run-dir", tiny / "run2", "--quiet",
                env={"DATAPIPE_MIN_FREE_MB": "0"})
        assert r.returncode == 4, r.stderr[-2000:]
        assert "No space left on device" in r.stderr and "run the same command again" in r.stderr
    finally:
        subprocess.run(["umount", str(tiny)], capture_output=True)


WF_CONFIG = """
name: relwf
stages:
  - extract: {timeout_s: 120}
  - length: {min_chars: 100}
  - dedup_exact: {}
  - dedup_minhash: {ngram: 5, bands: 14, rows: 8}
  - dedup_lines: {}
  - tokenize: {tokenizer: llama3}
output: {rows_per_file: 40}
engine: {batch_size: 8, shards_per_wave: 1}
"""


def test_kills_during_workflows_then_resume(sample_crawl, tmp_path):
    """SIGKILL the driver (and its Ray) at seeded random moments, dedup workflows included,
    resuming each time; the final output and token counts equal an uninterrupted run's."""
    cfg = tmp_path / "wf.yaml"
    cfg.write_text(WF_CONFIG)
    ref = tmp_path / "ref"
    r = cli("run", cfg, "--input", *sample_crawl, "--run-dir", ref, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    ref_wall = json.loads((ref / "last_run.json").read_text())["wall_seconds"]
    rd = tmp_path / "run"
    rng = random.Random(11)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    killed = 0
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "datapipe.cli", "run", str(cfg), "--input", *sample_crawl,
                                 "--run-dir", str(rd), "--quiet"], cwd=REPO, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(0.3, 1.0) * ref_wall)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
    r = cli("run", cfg, "--input", *sample_crawl, "--run-dir", rd, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert killed >= 1
    assert output_docs(rd) == output_docs(ref)
    tok = lambda d: sorted(pq.read_table(f, columns=["id", "n_tokens"]).to_pylist().__repr__()
                           for f in sorted((d / "output").rglob("*.parquet")))
    assert tok(rd) == tok(ref)
    assert not [p for p in rd.rglob("*") if p.suffix == ".tmp"]
    a, b = stats_of(rd), stats_of(ref)
    for stage in a:
        assert (a[stage]["rows_in"], a[stage]["rows_out"]) == (b[stage]["rows_in"], b[stage]["rows_out"]), stage
