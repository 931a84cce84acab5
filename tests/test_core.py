"""Config validation, stage protocol and stats merging (no Ray)."""
import json
import subprocess
import sys

import pyarrow as pa
import pytest

from datapipe.config import ConfigError, load_config, parse_config
from datapipe.stage import StageError, apply_stage, build_stage, reasons_from_masks, registry
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
