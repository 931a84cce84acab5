"""Inputs written by Hugging Face ``datasets`` (``save_to_disk``): a folder with ``state.json``
and ``data-*.arrow`` (or a ``DatasetDict``'s, one folder per split) is read as the ``arrow``
input format, detected from the folder, locally and on S3."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from datapipe.config import parse_config
from datapipe.io import InputError, detect_format, resolve_inputs
from datapipe.preflight import preflight
from datapipe.runner import load_stats, run_pipeline
from tests._s3 import s3_server  # noqa: F401 - the session's S3 server (a fixture)
from tests.conftest import require

datasets = require("datasets")

TEXTS = [f"document number {i}: " + "words of a saved dataset " * (3 + i % 7) for i in range(60)]


def _dataset():
    texts = TEXTS + ["   "]  # one row without text: counted and dropped by the reader
    return datasets.Dataset.from_dict({"text": texts, "url": [f"https://example.org/{i}" for i in range(len(texts))],
                                       "lang": ["en"] * len(texts)})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("saved")
    _dataset().save_to_disk(str(d / "ds"), num_shards=3)
    datasets.DatasetDict({"train": _dataset(), "test": _dataset().select(range(10))}).save_to_disk(str(d / "dd"))
    return d


def _config(**input_cfg):
    return parse_config({"name": "saved", "stages": [{"length": {"min_chars": 100}}],
                         "engine": {"batch_size": 16}, **({"input": input_cfg} if input_cfg else {})}, file="<test>")


def _output(run_dir):
    rows = []
    for f in sorted((run_dir / "output").rglob("*.parquet")):
        rows += pq.read_table(f, columns=["id", "text", "url"]).to_pylist()
    return rows


def test_a_saved_dataset_folder_is_its_arrow_files_in_order(saved):
    files = resolve_inputs([str(saved / "ds")])
    state = json.loads((saved / "ds" / "state.json").read_text())
    assert files == [str(saved / "ds" / d["filename"]) for d in state["_data_files"]] and len(files) == 3
    assert {detect_format(f) for f in files} == {"arrow"}
    splits = resolve_inputs([str(saved / "dd")])
    assert [os.path.basename(os.path.dirname(f)) for f in splits] == ["train", "test"]
    # explicit format, and a single Arrow file
    assert resolve_inputs([str(saved / "ds")], format="arrow") == files
    assert resolve_inputs([files[0]]) == [files[0]]


def test_a_saved_dataset_runs_like_its_rows(ray_session, saved, tmp_path):
    res = run_pipeline(_config(), inputs=[str(saved / "ds")], run_dir=tmp_path / "run", quiet=True)
    rows = _output(res.run_dir)
    want = [t for t in TEXTS if len(t) >= 100]
    assert 0 < len(want) < len(TEXTS)
    assert sorted(r["text"] for r in rows) == sorted(want)
    assert {r["url"] for r in rows} == {f"https://example.org/{TEXTS.index(t)}" for t in want}
    assert len({r["id"] for r in rows}) == len(rows)
    stats = {s.stage: s for s in load_stats(res.run_dir)}
    assert stats["read"].rows_in == len(TEXTS) + 1 and stats["read"].dropped == {"no_text": 1}
    assert stats["read"].shards == 3
    # ids are stable: a second run over the same folder gives the same ones
    again = run_pipeline(_config(), inputs=[str(saved / "ds")], run_dir=tmp_path / "again", quiet=True)
    assert sorted(r["id"] for r in _output(again.run_dir)) == sorted(r["id"] for r in rows)
    # the splits of a DatasetDict keep apart ids (both write data-00000-of-00001.arrow)
    dd = run_pipeline(_config(), inputs=[str(saved / "dd")], run_dir=tmp_path / "dd", quiet=True)
    ids = [r["id"] for r in _output(dd.run_dir)]
    assert len(ids) == len(set(ids)) == len(want) + sum(len(t) >= 100 for t in TEXTS[:10])


def test_check_reads_the_first_record_and_a_broken_folder_is_named(saved, tmp_path):
    rep = preflight(_config(), inputs=[str(saved / "ds")], run_dir=tmp_path / "run", fast=True)
    assert rep.ok, rep.text()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "state.json").write_text(json.dumps({"_data_files": []}))
    with pytest.raises(InputError, match="broken: a saved dataset whose state.json lists no data files"):
        resolve_inputs([str(broken)])
    rep = preflight(_config(), inputs=[str(broken)], run_dir=tmp_path / "run", fast=True)
    assert not rep.ok and "state.json" in rep.text()


def test_a_saved_dataset_on_s3(ray_session, saved, s3_server, tmp_path):  # noqa: F811
    fs = s3_server.fs()
    s3_server.bucket("saved-bucket")
    fs.put(str(saved / "ds"), "saved-bucket/ds", recursive=True)
    url = "s3://saved-bucket/ds"
    cfg = _config(storage_options={"s3": s3_server.opts})
    local = run_pipeline(_config(), inputs=[str(saved / "ds")], run_dir=tmp_path / "local", quiet=True)
    res = run_pipeline(cfg, inputs=[url], run_dir=tmp_path / "remote", quiet=True)
    assert sorted(r["text"] for r in _output(res.run_dir)) == sorted(r["text"] for r in _output(local.run_dir))
    assert {s.stage: s.shards for s in load_stats(res.run_dir)}["read"] == 3

