"""``datapipe check`` (datapipe/preflight.py): every problem of a run in one list, before any
work, with ``run``'s exit codes; ``datapipe run`` does the fast part first; ``--estimate``."""
import json
import textwrap
from collections import namedtuple
from pathlib import Path


from datapipe.cli import main
from datapipe.config import check_config
from datapipe.preflight import preflight

GPU_STAGE = '''
from datapipe import Resources, Stage


class NeedsManyGPUs(Stage):
    name = "needs_many_gpus"
    resources = Resources(cpus=1, gpus=64)

    def __call__(self, batch):
        return batch
'''


def _docs(path: Path, n: int = 10, short_every: int = 0) -> Path:
    rows = [{"id": f"{path.stem}-{i}", "text": ("short" if short_every and i % short_every == 0 else
                                                 "a long enough document " * 20)} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _bad_config(tmp_path: Path, extra_stage: str = "") -> Path:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        name: bad
        engine: {{batchsize: 64}}
        stages:
          - length: {{min_chars: 10}}
          - perplexity: {{model_dir: {tmp_path}/no_models}}
        {extra_stage}
        """))
    return cfg


def _junk(tmp_path: Path) -> Path:
    p = tmp_path / "junk.warc.gz"
    p.write_bytes(b"this is not a WARC file\n" * 50)
    return p


def test_check_reports_model_input_and_key_together_before_any_work(tmp_path, capsys, monkeypatch):
    """The issue's done-when: a missing model, an unreadable input and an unknown key, all in one
    list, exit 2, and no run started (no run directory), plus what the Ray checks find."""
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "gpu_stage.py").write_text(GPU_STAGE)
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    cfg = _bad_config(tmp_path, "  - gpu_stage:NeedsManyGPUs: {}")
    run_dir = tmp_path / "run"
    code = main(["check", str(cfg), "--input", str(_junk(tmp_path)), str(tmp_path / "missing.jsonl"),
                 "--run-dir", str(run_dir)])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    fails = [l for l in out.splitlines() if l.startswith("FAIL")]
    assert any("engine.batchsize: unknown key; did you mean 'batch_size'?" in l for l in fails), fails
    assert any("stages[1].perplexity" in l and "no_models does not exist" in l for l in fails), fails
    assert any("junk.warc.gz: no record parses" in l and "corrupt: 1" in l for l in fails), fails
    assert any("missing.jsonl: no such file or folder" in l for l in fails), fails
    # the cluster check ran too and named the stage whose resources no node has
    assert any("[ray]" in l and "stages[2].gpu_stage:NeedsManyGPUs needs 64 GPU" in l for l in fails), fails
    assert len(fails) == 5, fails
    assert "ok    nodes: all 1 node(s) read a probe file" in out
    assert "5 problem(s)" in err
    assert not run_dir.exists()  # nothing ran, nothing was left behind


def test_run_does_the_fast_check_first_and_lists_every_problem(tmp_path, capsys):
    cfg = _bad_config(tmp_path)
    run_dir = tmp_path / "run"
    code = main(["run", str(cfg), "--input", str(_junk(tmp_path)), "--run-dir", str(run_dir)])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert all(l.startswith("datapipe: error: ") for l in lines), err
    assert len(lines) == 3, err
    assert "unknown key; did you mean 'batch_size'?" in lines[0]
    assert "perplexity" in lines[1] and "junk.warc.gz" in lines[2]
    assert not run_dir.exists() and "run directory" not in out


def test_run_warns_about_a_bad_file_among_good_ones_and_starts(tmp_path):
    """A junk file among readable ones is counted by the run (as before); `check` names it."""
    good, junk = _docs(tmp_path / "d.jsonl"), tmp_path / "junk.jsonl"
    junk.write_text("not json\n{also not\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: c\ninput: {format: jsonl}\nstages:\n  - length: {min_chars: 10}\n")
    rep = preflight(cfg, inputs=[str(good), str(junk)], run_dir=tmp_path / "run", fast=True)
    assert rep.problems == [] and len(rep.warnings) == 1
    assert "junk.jsonl: no record parses as input.format jsonl (bad_json: 2)" in rep.warnings[0]
    only_junk = preflight(cfg, inputs=[str(junk)], run_dir=tmp_path / "run", fast=True)
    assert [p.check for p in only_junk.problems] == ["input"] and not only_junk.warnings


def test_config_problems_are_all_collected_with_did_you_mean():
    cfg, problems = check_config({
        "nmae": "x",
        "engine": {"batch_size": "many", "fuse": True, "fusee": False},
        "stages": [{"lenght": {}}, {"length": {"min_char": 3, "max_chars": "lots"}}, "c4"],
    }, file="f.yaml")
    got = [(p.key, p.message) for p in problems]
    assert ("stages[0].lenght", ) == got[0][:1] and "did you mean 'length'?" in got[0][1]
    assert ("stages[1].length.min_char", "unknown option; did you mean 'min_chars'?") in got
    assert any(k == "stages[1].length.max_chars" and "integer" in m for k, m in got)
    assert ("nmae", "unknown key; did you mean 'name'?") in got
    assert ("engine.fusee", "unknown key; did you mean 'fuse'?") in got
    assert any(k == "engine.batch_size" and "integer" in m for k, m in got)
    assert len(got) == 6, got
    # what was valid is kept for the other checks: the good stage, the good keys
    assert [s.name for s in cfg.stages] == ["c4"] and cfg.engine.fuse is True


def test_run_dir_not_a_folder_and_too_small_are_storage_problems(tmp_path, capsys, monkeypatch):
    docs = _docs(tmp_path / "d.jsonl")
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("name: ok\ninput: {format: jsonl}\nstages:\n  - length: {min_chars: 10}\n")
    (tmp_path / "afile").write_text("x")
    assert main(["check", str(cfg), "--fast", "--input", str(docs), "--run-dir", str(tmp_path / "afile" / "run")]) == 4
    assert "is not a folder" in capsys.readouterr().out
    import datapipe.preflight as pf
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(pf.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    rep = preflight(cfg, inputs=[str(docs)], run_dir=tmp_path / "run", fast=True)
    assert [p.kind for p in rep.problems] == ["storage"]
    assert "only 0.0 MiB free on its disk; the run writes ~64.0 MiB" in rep.problems[0].message


def test_estimate_projects_survivors_and_output(tmp_path, capsys):
    files = [_docs(tmp_path / f"part{i}.jsonl", n=10, short_every=5) for i in range(4)]  # 2 of 10 short
    cfg = tmp_path / "est.yaml"
    cfg.write_text("name: est\ninput: {format: jsonl}\nstages:\n  - length: {min_chars: 50}\n  - dedup_exact: {}\n"
                   "  - nsfw_words: {}\n")
    rep = preflight(cfg, inputs=[str(f) for f in files], run_dir=tmp_path / "run", fast=True, estimate=True,
                    sample_docs=40)
    assert rep.ok, rep.problems
    est = rep.estimate
    rows = {s.stage: s for s in est.stages}
    # the sample is the whole input here, so the projection is exact
    assert est.sample_docs == 40 and round(est.docs_total) == 40
    assert (round(rows["length"].docs_in), round(rows["length"].docs_out)) == (40, 32)
    assert rows["dedup_exact"].sampled is False and round(rows["dedup_exact"].docs_out) == 32
    assert (rows["nsfw_words"].sample_in, rows["nsfw_words"].sample_out) == (32, 32) and est.output_bytes > 0
    assert "measured by --estimate" in "\n".join(rep.passed)
    # the command prints the table
    assert main(["check", str(cfg), "--fast", "--estimate", "--input", *map(str, files),
                 "--run-dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "CPU-hours" in out and "(global pass: not sampled)" in out and "whole input ~40 documents" in out


def test_every_node_of_a_cluster_reads_the_probe(tmp_path):
    """Two Ray nodes on this machine: `check` joins with RAY_ADDRESS and pins a probe task to each."""
    import os
    import subprocess
    import sys
    from ray.cluster_utils import Cluster
    from tests.conftest import REPO
    docs = _docs(tmp_path / "d.jsonl")
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("name: ok\ninput: {format: jsonl}\nstages:\n  - length: {min_chars: 10}\n")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        address = cluster.address
        r = subprocess.run([sys.executable, "-m", "datapipe.cli", "check", str(cfg), "--input", str(docs),
                            "--run-dir", str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True,
                           timeout=600, env=dict(os.environ, RAY_ADDRESS=address))
    finally:
        cluster.shutdown()
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert f"ok    ray: RAY_ADDRESS={address}, 2 node(s), 2 CPU(s)" in r.stdout, r.stdout
    assert "ok    nodes: all 2 node(s) read a probe file" in r.stdout, r.stdout
    assert not (tmp_path / "run").exists()
