"""The run directory records every option with the value that ran (defaults included), the
resume fingerprint covers them, and a changed default refuses a resume until pinned.

Most checks build a ``Runner`` and write its header (what a started run leaves behind)
without starting Ray: the resume check happens before the engine starts. One test runs
the real pipeline to see that a pinned option then resumes."""
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from datapipe.cli import main
from datapipe.config import load_config, parse_config
from datapipe.resume import digest, fingerprint_fields, legacy_fingerprint
from datapipe.runner import RunError, Runner, run_pipeline
from datapipe.stage import apply_stage, build_stage, get_stage_class, stage_options
from tests.conftest import REPO


@pytest.fixture
def docs(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i} " + "word " * (20 * i)}) + "\n"
                         for i in range(1, 6)))
    return str(p)


def cfg_of(length_opts=None):
    return parse_config({"name": "rc", "input": {"format": "jsonl"},
                         "stages": [{"length": {"min_chars": 50} if length_opts is None else length_opts}]},
                        file="<test>")


def start(cfg, docs, run_dir, **kw):
    """A Runner over ``docs`` that has written its run header, as a started run has."""
    r = Runner(cfg, inputs=[docs], run_dir=run_dir, quiet=True, **kw)
    r._write_run_header()
    return r


def set_default(monkeypatch, stage, **defaults):
    """Change keyword-only defaults of a stage's __init__, as an upgrade would."""
    init = get_stage_class(stage).__init__
    monkeypatch.setattr(init, "__kwdefaults__", dict(init.__kwdefaults__, **defaults))


def test_config_yaml_records_every_option_of_every_stage(tmp_path, docs):
    cfg = load_config(REPO / "configs" / "default.yaml")
    r = start(cfg, docs, tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert len(saved["stages"]) == len(cfg.stages)
    for entry, spec in zip(saved["stages"], cfg.stages):
        (name, opts), = entry.items()
        params = stage_options(get_stage_class(name))
        assert name == spec.name and set(opts) == set(params), name
        for k, v in opts.items():
            if k in spec.options:
                continue
            default = params[k].default
            assert v == (list(default) if isinstance(default, tuple) else default), (name, k)
    # what the config wrote wins over the default
    langid = next(e["langid"] for e in saved["stages"] if "langid" in e)
    assert langid["languages"] == next(s.options["languages"] for s in cfg.stages if s.name == "langid")
    # engine, output, rejects settings are there with their defaults too
    assert saved["output"]["compression"] == "zstd" and saved["engine"]["batch_size"] == 64
    assert saved["rejects"]["samples_per_reason"] == 50 and saved["input"]["paths"] == r.inputs
    # what the user wrote stays apart (tests and the legacy fingerprint read it)
    assert cfg.stages[[s.name for s in cfg.stages].index("length")].options == {"min_chars": 200}


def test_stages_run_with_the_recorded_options(tmp_path, docs, monkeypatch):
    r = start(cfg_of(), docs, tmp_path / "run")
    assert r.steps[0].specs[0]["options"] == {"min_chars": 50, "max_chars": 1_000_000}
    set_default(monkeypatch, "length", max_chars=60)
    # the options travel with the spec: a stage built from them is the one recorded
    assert build_stage("length", r.steps[0].specs[0]["options"]).max_chars == 1_000_000


def test_fingerprint_covers_defaults(tmp_path, docs, monkeypatch):
    before = Runner(cfg_of(), inputs=[docs], run_dir=tmp_path / "a", quiet=True).fingerprint
    set_default(monkeypatch, "length", max_chars=500_000)
    after = Runner(cfg_of(), inputs=[docs], run_dir=tmp_path / "b", quiet=True)
    assert after.fingerprint != before
    assert after.run_config["stages"] == [{"length": {"min_chars": 50, "max_chars": 500_000}}]
    pinned = Runner(cfg_of({"min_chars": 50, "max_chars": 1_000_000}), inputs=[docs], run_dir=tmp_path / "c", quiet=True)
    assert pinned.fingerprint == before


def test_changed_default_refuses_resume_until_pinned(tmp_path, docs, monkeypatch):
    rd = tmp_path / "run"
    start(cfg_of(), docs, rd)
    set_default(monkeypatch, "length", max_chars=500_000)
    with pytest.raises(RunError) as ei:
        Runner(cfg_of(), inputs=[docs], run_dir=rd, quiet=True)
    msg = str(ei.value)
    assert "stage length (stages[0]): option max_chars ran with 1000000, its default is now 500000" in msg
    assert "\n" not in msg
    assert "stages[0].length.max_chars: 1000000" in msg and "--fresh" in msg
    # pinning the value that ran resumes; --fresh starts over under the new default
    Runner(cfg_of({"min_chars": 50, "max_chars": 1_000_000}), inputs=[docs], run_dir=rd, quiet=True)
    fresh = start(cfg_of(), docs, rd, fresh=True)
    assert yaml.safe_load((rd / "config.yaml").read_text())["stages"][0]["length"]["max_chars"] == 500_000
    assert fresh.fingerprint == json.loads((rd / "fingerprint.json").read_text())["fingerprint"]


def test_changed_default_refusal_through_the_cli(tmp_path, docs, monkeypatch, capsys):
    rd = tmp_path / "run"
    start(cfg_of(), docs, rd)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("input: {format: jsonl}\nstages:\n  - length: {min_chars: 50}\n")
    set_default(monkeypatch, "length", max_chars=500_000)
    assert main(["run", str(cfg_file), "--input", docs, "--run-dir", str(rd), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("datapipe: error: ") and "option max_chars ran with 1000000" in err


def test_an_option_the_config_set_or_sets_is_a_config_change(tmp_path, docs, monkeypatch):
    rd = tmp_path / "run"
    start(cfg_of({"min_chars": 50, "max_chars": 900}), docs, rd)
    # set in the run's config, dropped from this one (its default unchanged or not)
    with pytest.raises(RunError, match=r"different config or input \(stages\[0\]\.length\.max_chars was 900, "
                                       r"now 1000000; fingerprint"):
        Runner(cfg_of(), inputs=[docs], run_dir=rd, quiet=True)
    set_default(monkeypatch, "length", max_chars=500_000)
    with pytest.raises(RunError, match=r"different config or input \(stages\[0\]\.length\.max_chars was 900, now 500000"):
        Runner(cfg_of(), inputs=[docs], run_dir=rd, quiet=True)
    # taken from the default by the run, set to another value now
    rd2 = tmp_path / "run2"
    start(cfg_of(), docs, rd2)
    with pytest.raises(RunError, match=r"different config or input \(stages\[0\]\.length\.max_chars was 500000, now 900"):
        Runner(cfg_of({"min_chars": 50, "max_chars": 900}), inputs=[docs], run_dir=rd2, quiet=True)


def test_other_changes_name_the_first_key_that_differs(tmp_path, docs):
    rd = tmp_path / "run"
    start(cfg_of(), docs, rd)
    with pytest.raises(RunError, match=r"different config or input \(stages\[0\]\.length\.min_chars was 50, now 60; "
                                       r"fingerprint \w+ != \w+\)"):
        Runner(cfg_of({"min_chars": 60}), inputs=[docs], run_dir=rd, quiet=True)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "x", "text": "y"}) + "\n")
    with pytest.raises(RunError, match=r"inputs\[1\] was \(absent\), now \".*other\.jsonl\""):
        Runner(cfg_of(), inputs=[docs, str(other)], run_dir=rd, quiet=True)
    two = parse_config({"input": {"format": "jsonl"}, "stages": [{"length": {"min_chars": 50}}, "length"]}, file="<t>")
    with pytest.raises(RunError, match=r"stages\[1\] was \(absent\), now"):
        Runner(two, inputs=[docs], run_dir=rd, quiet=True)
    out = parse_config({"input": {"format": "jsonl"}, "stages": [{"length": {"min_chars": 50}}],
                        "output": {"compression": "snappy"}}, file="<t>")
    with pytest.raises(RunError, match=r"output\.compression was \"zstd\", now \"snappy\""):
        Runner(out, inputs=[docs], run_dir=rd, quiet=True)


def test_an_option_added_by_an_upgrade_does_not_block_resume(tmp_path, docs):
    rd = tmp_path / "run"
    start(cfg_of(), docs, rd)

    def rewrite(edit):  # the run header an older datapipe (other options) would have written
        saved = yaml.safe_load((rd / "config.yaml").read_text())
        edit(saved["stages"][0]["length"])
        (rd / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
        (rd / "fingerprint.json").write_text(json.dumps(
            {"fingerprint": digest(fingerprint_fields(saved)), "scheme": 2, "options_set": [["min_chars"]]}))

    rewrite(lambda o: o.pop("max_chars"))  # the old datapipe had no max_chars: the run never had one
    Runner(cfg_of(), inputs=[docs], run_dir=rd, quiet=True)
    # ... unless the config sets it: then it is a change like any other
    with pytest.raises(RunError, match=r"stages\[0\]\.length\.max_chars was \(absent\), now 900"):
        Runner(cfg_of({"min_chars": 50, "max_chars": 900}), inputs=[docs], run_dir=rd, quiet=True)
    rewrite(lambda o: o.update(max_chars=1_000_000, max_lines=3))  # an option this datapipe no longer has
    with pytest.raises(RunError, match=r"stages\[0\]\.length\.max_lines was 3, now \(absent\)"):
        Runner(cfg_of(), inputs=[docs], run_dir=rd, quiet=True)


def test_run_dir_of_the_previous_version_still_resumes(tmp_path, docs, caplog):
    """Run dirs written before options were resolved: config.yaml with only what the user wrote,
    fingerprint.json without a scheme. Same config as written -> resume (with a warning);
    another config -> refused, naming the key."""
    rd = tmp_path / "run"
    r = start(cfg_of(), docs, rd)
    (rd / "config.yaml").write_text(yaml.safe_dump(
        dict(r.run_config, stages=[{"length": {"min_chars": 50}}]), sort_keys=False))
    (rd / "fingerprint.json").write_text(json.dumps({"fingerprint": legacy_fingerprint(cfg_of(), [docs])}))
    with pytest.raises(RunError, match=r"stages\[0\]\.length\.min_chars was 50, now 60"):
        Runner(cfg_of({"min_chars": 60}), inputs=[docs], run_dir=rd, quiet=True)
    with caplog.at_level("WARNING", logger="datapipe.resume"):
        again = start(cfg_of(), docs, rd)
    assert "older datapipe" in caplog.text
    # the header is rewritten in the new form: the next resume checks resolved options
    assert json.loads((rd / "fingerprint.json").read_text()) == {
        "fingerprint": again.fingerprint, "scheme": 2, "options_set": [["min_chars"]]}
    assert yaml.safe_load((rd / "config.yaml").read_text())["stages"][0]["length"]["max_chars"] == 1_000_000


def test_pinned_default_resumes_a_real_run(ray_session, tmp_path, docs, monkeypatch):
    rd = tmp_path / "run"
    first = run_pipeline(cfg_of(), inputs=[docs], run_dir=rd, quiet=True)
    assert first.shards_run == 1
    saved = yaml.safe_load((rd / "config.yaml").read_text())
    assert saved["stages"] == [{"length": {"min_chars": 50, "max_chars": 1_000_000}}]
    set_default(monkeypatch, "length", max_chars=60)
    with pytest.raises(RunError, match="option max_chars ran with 1000000"):
        run_pipeline(cfg_of(), inputs=[docs], run_dir=rd, quiet=True)
    again = run_pipeline(cfg_of({"min_chars": 50, "max_chars": 1_000_000}), inputs=[docs], run_dir=rd, quiet=True)
    assert again.shards_skipped == 1 and again.shards_run == 0
    ids = sorted(x for f in again.output_files for x in pq.read_table(f)["id"].to_pylist())
    assert ids == ["d1", "d2", "d3", "d4", "d5"]  # 111 to 511 characters: all within the limits that ran
    assert json.loads((rd / "fingerprint.json").read_text())["options_set"] == [["max_chars", "min_chars"]]


# ---------------------------------------------------------------------------
# refilter reads the thresholds the run recorded

def scored_run(tmp_path):
    """A run directory whose gopher_quality kept 100, 200 and 400-word documents (min_words 50)."""
    texts = [("the cat and the dog " * n).strip() for n in (20, 40, 80)]
    batch = pa.table({"id": ["a", "b", "c"], "text": pa.array(texts, pa.large_string())})
    cfg = parse_config({"stages": [{"gopher_quality": {}}]}, file="<t>")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg.to_yaml_dict()))
    scored = apply_stage(build_stage("gopher_quality", cfg.stages[0].resolved()), batch)
    assert scored.kept.num_rows == 3
    (tmp_path / "output").mkdir()
    pq.write_table(scored.kept, tmp_path / "output" / "s-00000.parquet")
    return tmp_path


def test_refilter_uses_recorded_thresholds_not_todays_defaults(tmp_path, monkeypatch, capsys):
    run = scored_run(tmp_path)
    set_default(monkeypatch, "gopher_quality", min_words=150)  # an upgrade raised the default
    # tighten another threshold: min_words stays at the recorded 50, so only "c" (400 words) goes
    assert main(["refilter", str(run), "--stage", "gopher_quality", "--set", "max_words=300",
                 "--write", str(tmp_path / "kept")]) == 0
    out = capsys.readouterr()
    assert "kept now: 2 " in out.out and "note:" not in out.err
    assert pq.read_table(tmp_path / "kept" / "s-00000.parquet")["id"].to_pylist() == ["a", "b"]


def test_refilter_options_default_to_what_the_run_scored_with(tmp_path):
    from datapipe.refilter import refilter
    table = pq.read_table(scored_run(tmp_path) / "output" / "s-00000.parquet")
    assert refilter(table, "gopher_quality", {})[0]["id"].to_pylist() == ["a", "b", "c"]
    assert refilter(table, "gopher_quality", {}, scored_with={"min_words": 150})[0]["id"].to_pylist() == ["b", "c"]
    assert refilter(table, "gopher_quality", {"min_words": 10}, scored_with={"min_words": 150})[0].num_rows == 3


def test_refilter_on_an_old_run_dir_says_defaults_fill_in(tmp_path, capsys):
    from tests.test_refilter_cli import make_run
    run = make_run(tmp_path)  # config.yaml: {gopher_quality: {}}, as older versions wrote it
    assert main(["refilter", str(run), "--stage", "gopher_quality", "--set", "min_words=150"]) == 0
    err = capsys.readouterr().err
    unrecorded = re.search(r"note: .* records no value for (.*) of gopher_quality \(written by an older datapipe\): "
                           r"today's defaults are used for them", err).group(1).split(", ")
    assert "max_words" in unrecorded and "min_words" not in unrecorded  # --set gives min_words
