"""What a person sees: a run whose output goes to a file shows one progress line per step and
the funnel, no Ray log lines; a stage that raises is named once, with its shard, its input
file and the exception's own last frames, not Ray's wrappers."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

BOOM = '''
import pyarrow as pa
import pyarrow.compute as pc

from datapipe import Filter


class Boom(Filter):
    """Raises on the document whose text contains ``needle``."""
    name = "boom"
    outputs = ("boom_n",)

    def __init__(self, *, needle: str = "KABOOM"):
        self.needle = needle

    def score(self, batch: pa.Table) -> pa.Table:
        if pc.any(pc.match_substring(batch["text"], self.needle)).as_py():
            explode(self.needle)
        return batch.append_column("boom_n", pa.array([0] * batch.num_rows, pa.int32()))

    def decide(self, batch: pa.Table) -> pa.Array:
        return pa.nulls(batch.num_rows, pa.string())


def explode(needle):
    raise ValueError(f"cannot score a document containing {needle}")
'''

RAY_NOISE = re.compile(r"INFO|core_worker|logging_progress|\(MapBatches|\(_ShardWorker|ray::|Running Dataset|"
                       r"RayTaskError|site-packages/ray", re.I)


def _inputs(d: Path) -> list[Path]:
    d.mkdir()
    files = []
    for f in range(3):
        rows = [{"id": f"f{f}-{i}", "text": f"document {i} of file {f} " + "words " * 30} for i in range(40)]
        if f == 1:
            rows[17]["text"] = "this one says KABOOM " + rows[17]["text"]
        p = d / f"part-{f}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files.append(p)
    return files


def _cli(args, env_extra, cwd=REPO):
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", **env_extra)
    return subprocess.run([sys.executable, "-m", "datapipe.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd)


def test_a_logged_run_shows_progress_and_the_funnel_and_a_failure_once_by_name(tmp_path):
    site = tmp_path / "site"
    (site / "dp_boom").mkdir(parents=True)
    (site / "dp_boom" / "__init__.py").write_text("")
    (site / "dp_boom" / "stages.py").write_text(BOOM)
    files = _inputs(tmp_path / "in")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "DATAPIPE_PROGRESS_INTERVAL": "1"}

    ok_cfg = tmp_path / "ok.yaml"
    ok_cfg.write_text("name: ok\nstages: [{length: {min_chars: 10}}, {dedup_exact: {}}]\n"
                      "engine: {batch_size: 8}\n")
    r = _cli(["run", ok_cfg, "--input", files[0], files[2], "--run-dir", tmp_path / "ok", "--no-mix"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    noise = [l for l in (r.stdout + r.stderr).splitlines() if RAY_NOISE.search(l)]
    assert not noise, noise[:5]
    err = [l for l in r.stderr.splitlines() if l.strip()]
    # the streaming step's final progress line: shards, documents in and kept, rate, time
    assert any(re.match(r"\[01-length\]\s+2/2 shards\s+80 docs in, 80 kept\s+[\d,]+ docs/s\s+done in", l)
               for l in err), err
    assert any(l.startswith("[02-dedup_exact]") and "docs kept" in l for l in err), err
    assert "length" in r.stdout and "dedup_exact" in r.stdout  # the funnel

    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("name: bad\nstages: [{length: {min_chars: 10}}, {'dp_boom.stages:Boom': {}}]\n"
                       "engine: {batch_size: 8}\n")
    r = _cli(["run", bad_cfg, "--input", *files, "--run-dir", tmp_path / "bad", "--no-mix"], env)
    assert r.returncode == 1, r.stderr[-3000:]
    # named once with its frames: stage, shard, input file; then the run's one-line summary
    assert r.stderr.count("ValueError: cannot score a document containing KABOOM") == 2, r.stderr  # report + summary
    assert r.stderr.count("in explode") == 1, r.stderr
    line = next(l for l in r.stderr.splitlines() if "failed:" in l)
    assert "part-1.jsonl" in line and "shard" in line and "dp_boom.stages:Boom" in r.stderr
    assert "1 shard(s) failed" in r.stderr
    # the other files' shards finished and are committed
    assert len(list((tmp_path / "bad" / "_done" / "01-length").iterdir())) == 2
    assert not [l for l in r.stderr.splitlines() if RAY_NOISE.search(l)], r.stderr
    assert "resume" in r.stderr
