"""Rehydration (FineWeb-2): the mixture repeats documents by their duplicate-cluster size
through the spec's ``rehydrate`` table, and reports it per group."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datapipe.mix import MixError, parse_spec, plan_mixture, run_mix
from tests._mixdata import write_curated, write_spec

TABLE = [{"min": 1, "max": 2, "repeat": 1}, {"min": 2, "max": 5, "repeat": 2}, {"min": 5, "repeat": 3}]


def test_plan_repeats_documents_by_cluster_size_per_epoch():
    n = np.array([10, 10, 10, 10, 20, 20])
    g = np.array([0, 0, 0, 0, 1, 1])
    reps = np.array([1, 2, 3, 0, 3, 1])
    spec = parse_spec({"name": "t", "max_epochs": 1.0, "rehydrate": {"table": TABLE},
                       "groups": [{"name": "a", "where": {}, "weight": 1}, {"name": "b", "where": {}, "weight": 1}]})
    plan = plan_mixture(spec, n, g, repeats=reps)
    a, b = plan.groups
    assert (a.unique_tokens, a.available_tokens) == (40, 60) and (b.unique_tokens, b.available_tokens) == (40, 80)
    # a's cap binds (60 tokens = one epoch of its rehydrated pool): each document its repeat count
    assert Counter(plan.doc_index[plan.row_group == 0].tolist()) == {0: 1, 1: 2, 2: 3}
    assert a.taken_tokens == 60 and a.epochs == pytest.approx(1.0) and a.unique_docs == 3
    assert plan.to_dict()["groups"][1]["rehydration"] == pytest.approx(2.0)
    assert "rehydr x" in plan.table()
    # without repeats the same spec plans over unique tokens
    plain = plan_mixture(spec, n, g)
    assert plain.groups[0].available_tokens == 40 and plain.groups[0].unique_tokens is None


def _run_with_sizes(tmp_path, sizes_by_source):
    by_id = write_curated(tmp_path / "run", {s: len(v) for s, v in sizes_by_source.items()}, n_files=2)
    for f in sorted((tmp_path / "run" / "output").glob("*.parquet")):
        t = pq.read_table(f)
        size = [sizes_by_source[i.rsplit("-", 1)[0]][int(i.rsplit("-", 1)[1])] for i in t["id"].to_pylist()]
        pq.write_table(t.append_column("dup_cluster_size", pa.array(size, pa.int64())), f)
    return by_id


def test_run_mix_writes_rehydrated_streams_and_reports_per_group(tmp_path):
    rng = np.random.default_rng(3)
    sizes = {"web": [int(x) if x else None for x in rng.integers(0, 9, 60)], "wiki": [4] * 20}
    _run_with_sizes(tmp_path, sizes)
    spec = write_spec(tmp_path / "s.yaml", {
        "name": "rh", "max_epochs": 1.0, "rehydrate": {"table": TABLE},
        "groups": [{"name": "web", "where": {"source": "web"}, "weight": 10},
                   {"name": "wiki", "where": {"source": "wiki"}, "weight": 1, "rehydrate": False}]})
    plan = run_mix(tmp_path / "run", spec)
    rows = pa.concat_tables([pq.read_table(tmp_path / "run" / "mix" / "rh" / s["file"]) for s in
                             json.loads((tmp_path / "run" / "mix" / "rh" / "manifest.json").read_text())["shards"]])
    got = Counter(rows.filter(pa.compute.equal(rows["group"], "web"))["id"].to_pylist())
    want = {}
    for j, s in enumerate(sizes["web"]):
        s = s or 1                                   # null (no near duplicate) is a cluster of one
        r = 1 if s < 2 else 2 if s < 5 else 3
        want[f"web-{j:06d}"] = r
    # web's epoch cap sets the total: one whole epoch of its rehydrated pool, each document its repeats
    assert plan.groups[0].epochs == pytest.approx(1.0)
    assert got == want
    assert all(c == 1 for c in Counter(rows.filter(pa.compute.equal(rows["group"], "wiki"))["id"].to_pylist()).values())
    assert plan.groups[1].unique_tokens == plan.groups[1].available_tokens     # rehydrate: false
    m = json.loads((tmp_path / "run" / "mix" / "rh" / "manifest.json").read_text())
    assert m["groups"]["web"]["unique_tokens"] < m["groups"]["web"]["available_tokens"]


def test_rehydrate_errors(tmp_path):
    with pytest.raises(MixError, match="overlap"):
        parse_spec({"rehydrate": {"table": [{"min": 1, "max": 5, "repeat": 1}, {"min": 3, "repeat": 2}]},
                    "max_epochs": 1, "groups": [{"name": "a", "weight": 1}]})
    with pytest.raises(MixError, match=r"rehydrate.table\[0\].repeat"):
        parse_spec({"rehydrate": {"table": [{"min": 1, "repeat": -1}]}, "max_epochs": 1,
                    "groups": [{"name": "a", "weight": 1}]})
    write_curated(tmp_path / "run", {"cc": 10})
    spec = write_spec(tmp_path / "s.yaml", {"max_epochs": 1, "rehydrate": {"table": TABLE},
                                            "groups": [{"name": "a", "weight": 1}]})
    with pytest.raises(MixError, match="dup_cluster_size"):
        run_mix(tmp_path / "run", spec, dry_run=True)
