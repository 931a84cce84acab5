"""Mixture planning and token-stream writing: weighting helpers, the LLaMA-1 table, whole-document
sampling, global shuffle, manifest, readers without datapipe, Megatron round trip, dry-run."""
import hashlib
import json
import struct
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datapipe.mix import (MixError, load_spec, parse_spec, plan_mixture, run_mix, temperature_weights,
                          unimax_budgets, water_fill)
from tests._mixdata import write_curated, write_spec

REPO = Path(__file__).resolve().parents[1]
LLAMA1 = REPO / "configs" / "mix" / "llama1.yaml"
LLAMA1_SHARES = {"commoncrawl": 67.0, "c4": 15.0, "github": 4.5, "wikipedia": 4.5, "books": 4.5,
                 "arxiv": 2.5, "stackexchange": 2.0}


def read_stream(mix_dir: Path) -> pa.Table:
    m = json.loads((mix_dir / "manifest.json").read_text())
    return pa.concat_tables([pq.read_table(mix_dir / s["file"]) for s in m["shards"]])


# ---------------------------------------------------------------------------
# weighting helpers

def test_water_fill_and_unimax():
    # UniMax: 300 tokens over groups of 10/200/1000 with one epoch each: a is capped at 10,
    # the 290 left are split evenly between b and c
    b = unimax_budgets({"a": 10, "b": 200, "c": 1000}, 300, 1.0)
    assert b == pytest.approx({"a": 10, "b": 145, "c": 145})
    # with b at 100 tokens it is capped too: 10 + 100, c takes the rest
    assert unimax_budgets({"a": 10, "b": 100, "c": 1000}, 300, 1.0) == pytest.approx({"a": 10, "b": 100, "c": 190})
    # epochs > 1 raise caps
    assert unimax_budgets({"a": 10, "b": 100}, 60, 2.0) == pytest.approx({"a": 20, "b": 40})
    # weighted water-filling: the capped group's remainder goes 1:3 to the others
    got = water_fill({"x": 2, "y": 1, "z": 3}, {"x": 10, "y": 1e9, "z": 1e9}, 120)
    assert got == pytest.approx({"x": 10, "y": 27.5, "z": 82.5})
    # budget beyond every cap: everyone at cap
    assert water_fill({"x": 1, "y": 1}, {"x": 5, "y": 7}, 100) == pytest.approx({"x": 5, "y": 7})


def test_temperature_weights():
    avail = {"big": 900.0, "small": 100.0, "none": 0.0}
    assert temperature_weights(avail, 1.0) == pytest.approx({"big": 0.9, "small": 0.1, "none": 0.0})
    t2 = temperature_weights(avail, 2.0)  # sqrt: 30 vs 10
    assert t2 == pytest.approx({"big": 0.75, "small": 0.25, "none": 0.0})
    hot = temperature_weights(avail, 1000.0)
    assert hot["big"] == pytest.approx(0.5, abs=0.01)


# ---------------------------------------------------------------------------
# planning

def _spec(**kw):
    base = {"name": "t", "groups": [{"name": "a", "where": {"source": "a"}, "weight": 1},
                                    {"name": "b", "where": {"source": "b"}, "weight": 1}]}
    base.update(kw)
    return parse_spec(base)


def test_sampling_mode_total_set_by_epoch_cap():
    n = np.array([10] * 100 + [10] * 10)          # a: 1000 tokens, b: 100 tokens
    g = np.array([0] * 100 + [1] * 10)
    spec = _spec(groups=[{"name": "a", "where": {}, "weight": 3, "max_epochs": 1.0},
                         {"name": "b", "where": {}, "weight": 1, "max_epochs": 2.0}])
    plan = plan_mixture(spec, n, g)
    # b's cap (2 x 100) binds: total = 200 / 0.25 = 800, a takes 600 (0.6 epochs), b 200 (2 epochs)
    a, b = plan.groups
    assert b.taken_tokens == 200 and b.epochs == pytest.approx(2.0)
    assert a.taken_tokens == 600 and a.unique_docs == 60
    assert plan.total_tokens == 800
    # b repeats every document twice; epochs are numbered
    rows_b = plan.doc_index[plan.row_group == 1]
    assert sorted(Counter(rows_b.tolist()).values()) == [2] * 10
    assert sorted(plan.row_epoch[plan.row_group == 1].tolist()) == [0] * 10 + [1] * 10
    assert any("epoch cap of b" in x for x in plan.notes)


def test_budget_mode_redistributes_and_takes_whole_documents():
    rng = np.random.default_rng(0)
    n = rng.integers(5, 50, 400)
    g = np.repeat([0, 1], 200)
    total = int(n.sum() * 0.6)
    spec = _spec(mode="budget", total_tokens=total,
                 groups=[{"name": "a", "where": {}, "weight": 1, "max_epochs": 0.5},
                         {"name": "b", "where": {}, "weight": 1}])
    plan = plan_mixture(spec, n, g)
    a, b = plan.groups
    assert a.taken_tokens <= 0.5 * a.available_tokens + 50          # at its cap (within one document)
    assert abs(plan.total_tokens - total) <= 2 * 50                # the budget is filled
    assert b.taken_tokens > a.taken_tokens                         # a's remainder went to b
    # whole documents: taken tokens are sums of selected documents' lengths
    assert a.taken_tokens + b.taken_tokens == int(n[plan.doc_index].sum())


def test_selection_is_seeded_and_per_group():
    n = np.arange(1, 301)
    g = np.repeat([0, 1, 2], 100)
    groups = [{"name": x, "where": {}, "weight": 1, "max_epochs": 0.5} for x in ("a", "b", "c")]
    p1 = plan_mixture(_spec(groups=groups, seed=1), n, g)
    p1b = plan_mixture(_spec(groups=groups, seed=1), n, g)
    p2 = plan_mixture(_spec(groups=groups, seed=2), n, g)
    assert np.array_equal(p1.doc_index, p1b.doc_index)
    assert not np.array_equal(np.sort(p1.doc_index), np.sort(p2.doc_index))
    # a group's sample depends on (seed, its name, its target) only: doubling c's weight keeps
    # a's target (a's cap still sets the total) and so a's documents
    groups2 = [dict(x) for x in groups]
    groups2[2] = {"name": "c", "where": {}, "weight": 2}
    p3 = plan_mixture(_spec(groups=groups2, seed=1), n, g)
    assert p3.groups[0].target_tokens == p1.groups[0].target_tokens
    assert np.array_equal(p3.doc_index[p3.row_group == 0], p1.doc_index[p1.row_group == 0])
    # a smaller target takes a prefix of the same permutation: a subset of the documents
    groups2[2] = {"name": "c", "where": {}, "weight": 2, "max_epochs": 0.1}
    p4 = plan_mixture(_spec(groups=groups2, seed=1), n, g)
    a1 = set(p1.doc_index[p1.row_group == 0].tolist())
    a4 = set(p4.doc_index[p4.row_group == 0].tolist())
    assert p4.groups[0].target_tokens < p1.groups[0].target_tokens
    assert a4 < a1


def test_spec_errors_name_the_key(tmp_path):
    with pytest.raises(MixError, match=r"groups\[1\].weight: required"):
        parse_spec({"groups": [{"name": "a", "weight": 1}, {"name": "b"}]})
    with pytest.raises(MixError, match="unknown key"):
        parse_spec({"groups": [{"name": "a", "weight": 1}], "ratio": 3})
    with pytest.raises(MixError, match="total_tokens: required by mode: budget"):
        parse_spec({"mode": "budget", "groups": [{"name": "a", "weight": 1}]})
    with pytest.raises(MixError, match="duplicate"):
        parse_spec({"groups": [{"name": "a", "weight": 1}, {"name": "a", "weight": 2}]})
    with pytest.raises(MixError, match=r"x.yaml: mixture spec not found"):
        load_spec(tmp_path / "x.yaml")
    write_curated(tmp_path / "run", {"a": 5})
    spec = write_spec(tmp_path / "s.yaml", {"groups": [{"name": "g", "where": {"topic": "math"}, "weight": 1}],
                                            "max_epochs": 1})
    with pytest.raises(MixError, match=r"column\(s\) \['topic'\]"):
        run_mix(tmp_path / "run", spec, dry_run=True)
    spec = write_spec(tmp_path / "s2.yaml", {"groups": [{"name": "g", "where": {"source": "zzz"}, "weight": 1}],
                                             "max_epochs": 1})
    with pytest.raises(MixError, match="no documents"):
        run_mix(tmp_path / "run", spec, dry_run=True)


# ---------------------------------------------------------------------------
# end to end on synthetic curated outputs

@pytest.fixture(scope="module")
def llama_run(tmp_path_factory):
    """Seven sources with available tokens in the ratio of LLaMA-1's disk sizes."""
    root = tmp_path_factory.mktemp("llama")
    disk_gb = {"cc": 3300, "c4": 783, "github": 328, "wikipedia": 83, "books": 85, "arxiv": 92, "stackexchange": 78}
    docs = {src: gb // 2 + 10 for src, gb in disk_gb.items()}
    by_id = write_curated(root / "run", docs, n_files=3, min_len=20, max_len=200)
    return root / "run", by_id


def test_llama1_table_shares_within_half_a_point(llama_run):
    run, by_id = llama_run
    before = {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in (run / "output").glob("*.parquet")}
    plan = run_mix(run, LLAMA1)
    shares = plan.shares()
    for name, pct in LLAMA1_SHARES.items():
        assert abs(100 * shares[name] - pct) < 0.5, (name, 100 * shares[name], pct)
    for g in plan.groups:  # no group passes its epoch cap (one document of slack)
        assert g.taken_tokens <= g.max_epochs * g.available_tokens + 200
    by = {g.name: g for g in plan.groups}
    assert by["wikipedia"].epochs > 1.5 and by["books"].epochs > 1.5   # small sources repeat
    table = plan.table()
    assert "wikipedia" in table and "achieved %" in table
    # the curated output is untouched
    assert before == {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in (run / "output").glob("*.parquet")}

    out = run / "mix" / "llama1"
    m = json.loads((out / "manifest.json").read_text())
    t = read_stream(out)
    # every row is a whole curated document, with its id, group and epoch
    counts = Counter(t["id"].to_pylist())
    for row in t.slice(0, 500).to_pylist():
        assert row["tokens"] == by_id[row["id"]].tolist() and row["n_tokens"] == len(row["tokens"])
    wiki = t.filter(pa.compute.equal(t["group"], "wikipedia"))
    assert max(counts[i] for i in wiki["id"].to_pylist()) >= 2
    assert set(wiki["epoch"].to_pylist()) >= {0, 1}
    # manifest totals agree with the files
    assert m["total_tokens"] == sum(s["tokens"] for s in m["shards"]) == pa.compute.sum(t["n_tokens"]).as_py()
    assert m["total_rows"] == t.num_rows == plan.total_rows
    for name, g in m["groups"].items():
        got = pa.compute.sum(t.filter(pa.compute.equal(t["group"], name))["n_tokens"]).as_py() or 0
        assert got == g["tokens"]
    from stages.tokenize import load_tokenizer
    tok = load_tokenizer("llama3")
    assert m["tokenizer"]["hash"] == tok.fingerprint and m["tokenizer"]["vocab_size"] == 128256
    assert m["spec"]["name"] == "llama1" and len(m["spec"]["groups"]) == 7
    # globally shuffled: groups are interleaved, not in blocks
    groups = t["group"].to_pylist()
    switches = sum(a != b for a, b in zip(groups, groups[1:]))
    assert switches > len(groups) // 4


def test_shards_sizes_and_determinism(tmp_path):
    write_curated(tmp_path / "run", {"a": 300, "b": 300}, min_len=10, max_len=100)
    spec = {"name": "small", "seed": 7, "max_epochs": 1.0,
            "groups": [{"name": "a", "where": {"source": "a"}, "weight": 1},
                       {"name": "b", "where": {"source": "b"}, "weight": 1}],
            "output": {"max_tokens_per_shard": 5000, "max_rows_per_shard": 60}}
    run_mix(tmp_path / "run", write_spec(tmp_path / "s.yaml", spec), out_dir=tmp_path / "m1")
    run_mix(tmp_path / "run", write_spec(tmp_path / "s.yaml", spec), out_dir=tmp_path / "m2")
    m = json.loads((tmp_path / "m1" / "manifest.json").read_text())
    assert len(m["shards"]) > 3
    for s in m["shards"]:
        assert s["tokens"] <= 5000 and s["rows"] <= 60
        assert pq.read_metadata(tmp_path / "m1" / s["file"]).num_rows == s["rows"]
    t1, t2 = read_stream(tmp_path / "m1"), read_stream(tmp_path / "m2")
    assert t1.equals(t2)                                  # same seed, same bytes of data
    spec["seed"] = 8
    run_mix(tmp_path / "run", write_spec(tmp_path / "s.yaml", spec), out_dir=tmp_path / "m3")
    assert read_stream(tmp_path / "m3")["id"].to_pylist() != t1["id"].to_pylist()
    # a new ratio replaces the old mix of the same name
    spec["groups"][1]["weight"] = 3
    plan = run_mix(tmp_path / "run", write_spec(tmp_path / "s.yaml", spec), out_dir=tmp_path / "m1")
    assert json.loads((tmp_path / "m1" / "manifest.json").read_text())["total_rows"] == plan.total_rows
    assert not list(tmp_path.glob(".m1*"))                 # no temp or old folders left behind


def test_range_and_list_groups_and_unassigned(tmp_path):
    write_curated(tmp_path / "run", {"cc": 400})
    spec = write_spec(tmp_path / "s.yaml", {
        "max_epochs": 1.0,
        "groups": [{"name": "hq_en", "where": {"lid_lang": "en", "quality_score": {"min": 0.5}}, "weight": 1},
                   {"name": "eu", "where": {"lid_lang": ["de", "fr"]}, "weight": 2}]})
    plan = run_mix(tmp_path / "run", spec, dry_run=True)
    t = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "run" / "output").glob("*.parquet"))])
    rows = t.select(["lid_lang", "quality_score"]).to_pylist()
    n_hq = sum(r["lid_lang"] == "en" and r["quality_score"] >= 0.5 for r in rows)
    n_eu = sum(r["lid_lang"] in ("de", "fr") for r in rows)
    assert [g.docs for g in plan.groups] == [n_hq, n_eu]
    assert plan.unassigned_docs == len(rows) - n_hq - n_eu
    assert not (tmp_path / "run" / "mix").exists()       # dry run writes nothing


def test_retokenizes_when_tokens_not_kept(tmp_path):
    """A real curated output (text + n_tokens from the tokenize stage, no tokens column)."""
    from stages.tokenize import Tokenize, load_tokenizer
    texts = [f"Document number {i}. " + "Some words here and there. " * (i % 7 + 1) for i in range(60)]
    t = pa.table({"id": [f"d{i}" for i in range(60)], "text": pa.array(texts, pa.large_string()),
                  "source": ["cc"] * 60})
    t = Tokenize().ensure_setup()(t)
    (tmp_path / "run" / "output").mkdir(parents=True)
    pq.write_table(t, tmp_path / "run" / "output" / "x-00000.parquet")
    (tmp_path / "run" / "config.yaml").write_text("stages:\n  - tokenize: {add_eos: true}\n")
    spec = write_spec(tmp_path / "s.yaml", {"name": "all", "max_epochs": 1, "groups": [{"name": "web", "where": {}, "weight": 1}]})
    run_mix(tmp_path / "run", spec)
    out = read_stream(tmp_path / "run" / "mix" / "all")
    tok = load_tokenizer("llama3")
    texts_by_id = dict(zip(t["id"].to_pylist(), texts))
    assert out.num_rows == 60
    for r in out.to_pylist():
        assert r["tokens"] == tok.encode(texts_by_id[r["id"]]) + [tok.eos_id]
    # n_tokens that do not match the tokenizer settings stop the step
    (tmp_path / "run" / "config.yaml").write_text("stages:\n  - tokenize: {add_eos: false}\n")
    with pytest.raises(MixError, match="tokenizer settings differ"):
        run_mix(tmp_path / "run", spec)
    with pytest.raises(MixError, match="counted n_tokens with"):
        run_mix(tmp_path / "run", write_spec(tmp_path / "s3.yaml", {"tokenizer": "cl100k_base", "max_epochs": 1,
                                                                      "groups": [{"name": "w", "weight": 1}]}))


def test_readable_without_datapipe(llama_run, tmp_path):
    run, _ = llama_run
    out = run / "mix" / "llama1"
    if not (out / "manifest.json").exists():
        run_mix(run, LLAMA1)
    m = json.loads((out / "manifest.json").read_text())
    t = pq.read_table(out / "data")                      # pyarrow, the folder as a dataset
    assert t.num_rows == m["total_rows"] and t.schema.field("tokens").type == pa.list_(pa.uint32())
    import datasets
    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == m["total_rows"]
    assert sum(ds["n_tokens"]) == m["total_tokens"]
    assert len(ds[0]["tokens"]) == ds[0]["n_tokens"]
    duckdb = pytest.importorskip("duckdb")
    n, tok = duckdb.sql(f"select count(*), sum(len(tokens)) from '{out / 'data'}/*.parquet'").fetchall()[0]
    assert (n, tok) == (m["total_rows"], m["total_tokens"])


def read_megatron(prefix: Path):
    """An independent reader of Megatron's MMapIndexedDataset (megatron/core/datasets/indexed_dataset.py)."""
    idx = Path(f"{prefix}.idx").read_bytes()
    assert idx[:9] == b"MMIDIDX\x00\x00"
    version, = struct.unpack("<Q", idx[9:17])
    code, = struct.unpack("<B", idx[17:18])
    seq_count, doc_count = struct.unpack("<QQ", idx[18:34])
    dtype = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32, 8: np.uint16}[code]
    off = 34
    lengths = np.frombuffer(idx, np.int32, seq_count, off)
    off += lengths.nbytes
    pointers = np.frombuffer(idx, np.int64, seq_count, off)
    off += pointers.nbytes
    doc_idx = np.frombuffer(idx, np.int64, doc_count, off)
    assert off + doc_idx.nbytes == len(idx)
    data = np.memmap(f"{prefix}.bin", mode="r", dtype=np.uint8)
    seqs = [np.frombuffer(data, dtype, int(n), int(p)) for n, p in zip(lengths, pointers)]
    return version, dtype, seqs, doc_idx


def test_megatron_export_round_trip(tmp_path):
    by_id = write_curated(tmp_path / "run", {"a": 50, "b": 30})
    spec = write_spec(tmp_path / "s.yaml", {"name": "mg", "max_epochs": 2,
                                            "groups": [{"name": "a", "where": {"source": "a"}, "weight": 1},
                                                       {"name": "b", "where": {"source": "b"}, "weight": 1}],
                                            "output": {"megatron": True, "max_rows_per_shard": 37}})
    run_mix(tmp_path / "run", spec)
    out = tmp_path / "run" / "mix" / "mg"
    t = read_stream(out)
    version, dtype, seqs, doc_idx = read_megatron(out / "megatron" / "mg_text_document")
    assert version == 1 and dtype == np.int32                # 128K vocabulary needs int32
    assert len(seqs) == t.num_rows and doc_idx.tolist() == list(range(t.num_rows + 1))
    for s, row_id, toks in zip(seqs, t["id"].to_pylist(), t["tokens"].to_pylist()):
        assert s.tolist() == toks == by_id[row_id].tolist()
    # a small vocabulary gets uint16, like Megatron's optimal_dtype
    from datapipe.tokenstream import export_megatron
    small = write_curated(tmp_path / "run2", {"a": 20}, vocab=1000)
    run_mix(tmp_path / "run2", write_spec(tmp_path / "s2.yaml", {"name": "x", "max_epochs": 1,
                                                                 "groups": [{"name": "a", "weight": 1}]}))
    export_megatron(tmp_path / "run2" / "mix" / "x", tmp_path / "small", vocab_size=1000)
    _, dtype2, seqs2, _ = read_megatron(tmp_path / "small")
    assert dtype2 == np.uint16
    assert sorted(map(tuple, (s.tolist() for s in seqs2))) == sorted(tuple(v.tolist()) for v in small.values())


def test_dry_run_is_fast(tmp_path):
    """200k documents: planning reads n_tokens and the group columns only."""
    rng = np.random.default_rng(0)
    out = tmp_path / "run" / "output"
    out.mkdir(parents=True)
    n = 200_000
    srcs = np.array(["cc", "c4", "github", "wikipedia", "books", "arxiv", "stackexchange"])
    for i in range(4):
        k = n // 4
        pq.write_table(pa.table({"id": [f"{i}-{j}" for j in range(k)],
                                 "source": srcs[rng.integers(0, 7, k)],
                                 "n_tokens": rng.integers(50, 5000, k).astype(np.int32),
                                 "tokens": pa.nulls(k, pa.list_(pa.uint32()))}), out / f"s{i}-00000.parquet")
    t0 = time.perf_counter()
    plan = run_mix(tmp_path / "run", LLAMA1, dry_run=True)
    dt = time.perf_counter() - t0
    assert plan.total_docs == n and plan.total_rows > 0
    assert dt < 15, f"dry run took {dt:.1f}s"               # generous: it takes well under a second here
    assert not (tmp_path / "run" / "mix").exists()


def test_cli_mix_dry_run(tmp_path, capsys):
    from datapipe.cli import main
    write_curated(tmp_path / "run", {"cc": 40})
    rc = main(["mix", "--dry-run", str(tmp_path / "run"), "--spec", str(REPO / "configs" / "mix" / "default.yaml")])
    out = capsys.readouterr().out
    assert rc == 0 and "web" in out and "dry run: nothing written" in out
    assert not (tmp_path / "run" / "mix").exists()
    rc = main(["mix", str(tmp_path / "run"), "--spec", str(tmp_path / "nope.yaml")])
    assert rc == 2 and "mixture spec not found" in capsys.readouterr().err
    rc = main(["mix", str(tmp_path / "run"), "--spec", str(REPO / "configs" / "mix" / "default.yaml"), "--quiet"])
    assert rc == 0 and (tmp_path / "run" / "mix" / "default" / "manifest.json").exists()


def test_missing_groups_drop_renormalises():
    """A LLaMA-style table over fewer sources: empty groups are dropped and the rest keep their ratios."""
    import numpy as np
    from datapipe.mix import MixError, parse_spec, plan_mixture
    spec = {"name": "m", "mode": "sampling", "groups": [
        {"name": "a", "where": {"source": "a"}, "weight": 0.6, "max_epochs": 1.0},
        {"name": "b", "where": {"source": "b"}, "weight": 0.2, "max_epochs": 1.0},
        {"name": "c", "where": {"source": "c"}, "weight": 0.2, "max_epochs": 1.0}]}
    n_tokens = np.full(4000, 100, dtype=np.int64)
    group_idx = np.array([0] * 3000 + [1] * 1000, dtype=np.int64)  # no documents for c
    with pytest.raises(MixError, match="no documents"):
        plan_mixture(parse_spec(spec), n_tokens, group_idx)
    plan = plan_mixture(parse_spec(dict(spec, missing_groups="drop")), n_tokens, group_idx)
    got = {g.name: g.taken_tokens for g in plan.groups}
    assert got["c"] == 0
    assert abs(got["a"] / (got["a"] + got["b"]) - 0.75) < 0.005
