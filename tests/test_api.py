"""The Python API (``import datapipe``) and plugin stages: a user's own filter, in the user's own
package outside this repository, runs through the engine from Python (a stage object) and from
YAML (``module:Class``), and is found by name through the ``datapipe.stages`` entry point group."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import datapipe
from datapipe.config import ConfigError, parse_config
from tests.conftest import REPO

PLUGIN = '''
"""A user's own filter: drops documents with fewer than ``min_words`` words."""
import pyarrow as pa
import pyarrow.compute as pc

from datapipe import Filter, StageError


class MinWords(Filter):
    name = "min_words"
    outputs = ("min_words_n",)

    def __init__(self, *, min_words: int = 5):
        if min_words < 0:
            raise StageError("min_words must be >= 0")
        self.min_words = min_words

    def score(self, batch: pa.Table) -> pa.Table:
        n = pc.list_value_length(pc.utf8_split_whitespace(batch["text"]))
        return batch.append_column("min_words_n", pc.cast(n, pa.int32()))

    def decide(self, batch: pa.Table) -> pa.Array:
        few = pc.less(batch["min_words_n"], self.min_words)
        return pc.if_else(few, pa.scalar("min_words:too_few"), pa.scalar(None, pa.string()))
'''


@pytest.fixture
def plugin_pkg(tmp_path, monkeypatch):
    """A package ``dp_userplug`` in a temporary folder, on ``sys.path`` (not on the workers')."""
    root = tmp_path / "site"
    (root / "dp_userplug").mkdir(parents=True)
    (root / "dp_userplug" / "__init__.py").write_text("")
    (root / "dp_userplug" / "filters.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(root))
    yield root
    for m in [m for m in sys.modules if m.startswith("dp_userplug")]:
        del sys.modules[m]


def _docs(path: Path) -> Path:
    """12 documents: 4 with fewer than 5 words, one of those also shorter than 20 characters."""
    rows = [{"id": f"d{i}", "text": " ".join(f"word{j}" for j in range(3 if i % 3 == 0 else 8))} for i in range(12)]
    rows[0]["text"] = "tiny"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_user_filter_runs_from_python_through_the_engine(tmp_path, plugin_pkg, ray_session):
    from dp_userplug.filters import MinWords
    pipe = datapipe.Pipeline([MinWords(min_words=5), datapipe.spec("length", min_chars=20)],
                             input=_docs(tmp_path / "docs.jsonl"), format="jsonl",
                             run_dir=tmp_path / "run", engine={"num_workers": 1})
    # the stage object became its module:Class name and its options, exactly as YAML writes them
    assert pipe.config.stages[0].name == "dp_userplug.filters:MinWords"
    assert pipe.config.stages[0].options == {"min_words": 5}
    assert "dp_userplug.filters:MinWords" in pipe.to_yaml()
    # workers find the package: its folder (local Ray) or the package itself (a cluster's py_modules)
    from datapipe.stage import plugin_packages, plugin_paths
    assert str(plugin_pkg) in plugin_paths() and "dp_userplug" in [m.__name__ for m in plugin_packages()]
    res = pipe.run()
    f = res["dp_userplug.filters:MinWords"]
    assert (f.rows_in, f.rows_out, f.dropped) == (12, 8, {"min_words:too_few": 4})
    assert res["length"].rows_in == 8 and res["length"].rows_out == 8
    table = res.to_arrow().to_table()
    assert table.num_rows == 8 and min(table["min_words_n"].to_pylist()) >= 5
    assert sorted(table["id"].to_pylist()) == sorted(f"d{i}" for i in range(12) if i % 3)
    hf = res.to_hf(cache_dir=str(tmp_path / "hf"))
    assert len(hf) == 8 and set(hf["id"]) == set(table["id"].to_pylist())
    assert res.to_ray().count() == 8
    again = datapipe.open_run(tmp_path / "run")
    assert [s.to_dict() for s in again.stats] == [s.to_dict() for s in res.stats]


def test_user_filter_runs_from_yaml_with_module_class(tmp_path, plugin_pkg):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(textwrap.dedent("""\
        name: mine
        input: {format: jsonl}
        stages:
          - dp_userplug.filters:MinWords: {min_words: 5}
        engine: {num_workers: 1}
        report: false
        """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_pkg), str(REPO)]))
    r = subprocess.run([sys.executable, "-m", "datapipe.cli", "run", str(cfg), "--input", str(_docs(tmp_path / "d.jsonl")),
                        "--run-dir", str(tmp_path / "run"), "--quiet"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    stats = {s["stage"]: s for s in json.loads((tmp_path / "run" / "stats.json").read_text())["stages"]}
    assert stats["dp_userplug.filters:MinWords"]["dropped"] == {"min_words:too_few": 4}
    assert stats["write"]["rows_out"] == 8


def test_entry_point_names_a_user_stage(plugin_pkg, monkeypatch):
    from datapipe import stage as st
    st.registry()  # the session's registry is loaded before the package is "installed"
    # an installed-package record offering the filter as user_min_words in the datapipe.stages group
    dist = plugin_pkg / "dp_userplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dp-userplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[datapipe.stages]\nuser_min_words = dp_userplug.filters:MinWords\n")
    monkeypatch.setattr(st, "_REGISTRY", dict(st.registry()))
    st._load_entry_points()
    cfg = parse_config({"stages": [{"user_min_words": {"min_words": 3}}]})
    from dp_userplug.filters import MinWords
    assert st.get_stage_class("user_min_words") is MinWords
    assert cfg.stages[0].resolved() == {"min_words": 3}
    # a stage object of an entry point's class is sent to the workers by that name
    assert st.spec_name(MinWords(min_words=3)) == "user_min_words"


def test_bad_options_and_unimportable_stages_are_config_errors(plugin_pkg):
    with pytest.raises(ConfigError, match=r"<python>: stages\[0\].dp_userplug.filters:MinWords: min_words must be >= 0"):
        datapipe.Pipeline([datapipe.spec("dp_userplug.filters:MinWords", min_words=-1)])
    with pytest.raises(ConfigError, match=r"stages\[0\].dp_userplug.filters:MinWords.min_word: unknown option; "
                                          r"did you mean 'min_words'"):
        parse_config({"stages": [{"dp_userplug.filters:MinWords": {"min_word": 3}}]})
    with pytest.raises(ConfigError, match="cannot import module 'no_such_pkg.mod': No module named 'no_such_pkg'"):
        parse_config({"stages": ["no_such_pkg.mod:Thing"]})
    with pytest.raises(ConfigError, match="module 'dp_userplug.filters' has no 'MinWord'"):
        parse_config({"stages": ["dp_userplug.filters:MinWord"]})
    with pytest.raises(ConfigError, match="is not a datapipe Stage"):
        parse_config({"stages": ["json:JSONDecoder"]})


def test_stage_defined_in_main_is_refused_with_a_reason():
    ns = {}
    exec("from datapipe import Stage\nclass Local(Stage):\n    name = 'local'\n", {"__name__": "__main__"}, ns)
    with pytest.raises(datapipe.StageError, match="define it in a module"):
        datapipe.Pipeline([ns["Local"]()])


def test_package_is_typed_and_exports_the_api():
    assert (REPO / "datapipe" / "py.typed").is_file()
    assert '"datapipe" = ["py.typed", "*.pyi"]' in (REPO / "pyproject.toml").read_text()
    stub = (REPO / "datapipe" / "__init__.pyi").read_text()
    assert all(f"{n} as {n}" in stub for n in datapipe.__all__)
    for name in ("Pipeline", "Result", "spec", "open_run", "Stage", "Filter", "Workflow", "preflight"):
        assert name in datapipe.__all__ and getattr(datapipe, name) is not None
