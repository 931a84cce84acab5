"""Config validation, stage protocol and stats merging (no Ray)."""
import json
import subprocess
import sys

import pyarrow as pa
import pytest

from datapipe.config import ConfigError, load_config, parse_config
from datapipe.stage import Resources, Stage, StageError, apply_stage, build_stage, reasons_from_masks, registry
from datapipe.stats import StageStats, merge, merge_stats_dir


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_default_config_is_valid():
    from tests.conftest import REPO
    cfg = load_config(REPO / "configs" / "default.yaml")
    names = [s.name for s in cfg.stages]
    assert "extract" in names and len(names) == len(cfg.stages)


@pytest.mark.parametrize("body, key, words", [
    ("stages:\n  - nosuchstage: {}\n", "stages[0].nosuchstage", "unknown stage"),
    ("stages:\n  - length: {min_char: 3}\n", "stages[0].length.min_char", "unknown option"),
    ("stages:\n  - length: {min_chars: lots}\n", "stages[0].length.min_chars", "integer"),
    ("stages:\n  - length: {min_chars: 10, max_chars: 5}\n", "stages[0].length", "min_chars"),
    ("output: {rows_per_file: -1}\n", "output.rows_per_file", "greater than 0"),
    ("outputs: {}\n", "outputs", "unknown key"),
    ("engine: {batch_size: many}\n", "engine.batch_size", "integer"),
])
def test_config_errors_name_file_and_key(tmp_path, body, key, words):
    p = write(tmp_path, body)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    e = ei.value
    assert e.file == str(p)
    assert e.key == key
    assert words in e.message


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "stages: [\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_cli_config_error_exit_code_2_without_traceback(tmp_path):
    p = write(tmp_path, "stages:\n  - length: {min_chars: lots}\n")
    r = subprocess.run([sys.executable, "-m", "datapipe.cli", "run", str(p), "--input", str(p)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert str(p) in r.stderr and "stages[0].length.min_chars" in r.stderr


def test_cli_missing_input_exit_code_2(tmp_path):
    p = write(tmp_path, "stages:\n  - length: {}\n")
    r = subprocess.run([sys.executable, "-m", "datapipe.cli", "run", str(p), "--input", str(tmp_path / "none*.warc.gz")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "glob matches no files" in r.stderr and "Traceback" not in r.stderr


def test_apply_stage_drops_with_reasons():
    st = build_stage("length", {"min_chars": 3, "max_chars": 5})
    batch = pa.table({"id": ["a", "b", "c", "d"], "text": pa.array(["ab", "abcd", "abcdefg", None], pa.large_string())})
    res = apply_stage(st, batch)
    assert res.kept["id"].to_pylist() == ["b"]
    assert res.rejected["reason"].to_pylist() == ["length_v1:too_short", "length_v1:too_long", "length_v1:too_short"]
    assert res.reasons == {"length_v1:too_short": 2, "length_v1:too_long": 1}
    assert res.kept["len_chars"].to_pylist() == [4]


def test_apply_stage_checks_inputs():
    st = build_stage("length", {})
    with pytest.raises(StageError, match="needs column"):
        apply_stage(st, pa.table({"id": ["a"]}))


class _Probe(Stage):
    """A stage that counts its setup() calls and can break its contract on request (tests below)."""

    name = "test_probe"
    inputs = ("text",)
    outputs = ("probe_len",)
    removes = ("html",)

    def __init__(self, *, forget: bool = False, keep_html: bool = False, drop_row: bool = False):
        self.forget, self.keep_html, self.drop_row = forget, keep_html, drop_row
        self.setups = 0
        self.model = None

    def setup(self) -> None:
        self.setups += 1
        self.model = len  # stands for a model loaded once per worker

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = batch if self.keep_html or "html" not in batch.column_names else batch.drop_columns(["html"])
        if not self.forget:
            out = out.append_column("probe_len", pa.array([self.model(t) for t in batch["text"].to_pylist()]))
        return out.slice(1) if self.drop_row else out


def _probe_batch() -> pa.Table:
    return pa.table({"id": ["a", "b"], "text": pa.array(["x", "yy"], pa.large_string()), "html": ["<p>x", "<p>yy"]})


def test_apply_stage_sets_up_once_per_process():
    import pickle
    st = _Probe()
    assert apply_stage(st, _probe_batch()).kept["probe_len"].to_pylist() == [1, 2]  # model loaded: set up
    apply_stage(st, _probe_batch())
    assert st.setups == 1
    # a copy shipped to another process (pickled, as to a Ray worker) sets up again there, once
    copy = pickle.loads(pickle.dumps(st))
    apply_stage(copy, _probe_batch())
    apply_stage(copy, _probe_batch())
    assert copy.setups == 2 and st.setups == 1
    assert st.ensure_setup() is st and st.setups == 1


@pytest.mark.parametrize("opts, message", [
    ({"forget": True}, r"'test_probe' did not write its declared output column\(s\) \['probe_len'\]"),
    ({"keep_html": True}, r"'test_probe' declares it removes column\(s\) \['html'\]"),
    ({"drop_row": True}, r"'test_probe' returned 1 rows for 2: stages never drop rows"),
])
def test_apply_stage_checks_the_contract_after_the_call(opts, message):
    with pytest.raises(StageError, match=message):
        apply_stage(_Probe(**opts), _probe_batch())


def test_contract_reads_the_instance_and_resources_merge():
    # inputs/outputs set per instance (they follow the options) are what is checked
    tok = build_stage("tokenize", {"keep_tokens": False})
    assert tok.outputs == ("n_tokens",) and "tokens" not in apply_stage(tok, _probe_batch()).kept.column_names
    a, b = Resources(cpus=1, memory_mb=500), Resources(cpus=0.5, gpus=1)
    assert a.merge(b) == Resources(cpus=1, gpus=1, memory_mb=500)
    assert Resources().merge(Resources()) == Resources(cpus=1, gpus=0, memory_mb=None)
    with pytest.raises(StageError, match="resources must be >= 0"):
        Resources(gpus=-1)


def test_reasons_first_failing_check_wins():
    r = reasons_from_masks(3, [("a", [True, False, False]), ("b", [True, True, False])])
    assert r.to_pylist() == ["a", "b", None]


def test_registry_knows_stages():
    assert "length" in registry()


def test_stats_add_is_associative_and_merges_from_disk(tmp_path):
    a = StageStats("s", 10, 8, 100, 80, 1.0, {"x": 2}, {"c": 1}, 1)
    b = StageStats("s", 5, 5, 50, 50, 0.5, {}, {"c": 2}, 1)
    c = StageStats("s", 7, 1, 70, 10, 0.25, {"x": 1, "y": 5}, {}, 1)
    assert ((a + b) + c).to_dict() == (a + (b + c)).to_dict()
    tot = a + b + c
    assert tot.rows_in == 22 and tot.dropped == {"x": 3, "y": 5} and tot.counters == {"c": 3}
    for i, s in enumerate([a, b, c]):
        (tmp_path / "s").mkdir(exist_ok=True)
        (tmp_path / "s" / f"shard{i}.json").write_text(json.dumps(s.to_dict()))
    merged = merge_stats_dir(tmp_path, ["s"])
    assert merged[0].to_dict() == tot.to_dict()
    with pytest.raises(ValueError):
        a + StageStats("other")
