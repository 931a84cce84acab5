"""Incremental dedup against a persistent index (``index:`` of dedup_minhash / dedup_exact).

Two overlapping snapshots A and B (real page texts with planted near copies; B re-crawls part
of A under new ids): A then B through the index must equal a joint run over A+B restricted to
B's documents, up to the documented survivor rule (a component spanning both keeps A's survivor).
A crash injected between writing the new generation and committing the manifest leaves the
index as it was, and a re-run then appends correctly.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datapipe.stage import StageError, build_stage
from stages import _dedup_index as IX
from tests.test_dedup import _edit_words, _minhash_corpus, _run, _shards, pages  # noqa: F401


def _snapshots(pages):
    rows, _ = _minhash_corpus(pages)
    rng = random.Random(11)
    n = len(rows)
    a = rows[: int(n * 0.6)]
    b = [dict(r) for r in rows[int(n * 0.6):]]
    # B re-crawls some of A: byte copies and lightly edited copies under new ids
    for i, r in enumerate(rng.sample(a, 15)):
        text = r["text"] if i % 2 else _edit_words(r["text"], rng, 0.01)
        b.append({"id": f"B-re{i:02d}-{r['id']}", "url": r.get("url"), "text": text})
    rng.shuffle(b)
    return a, b


def _components(rows, rej):
    """{id: dup_cluster} over the kept and the dropped rows of a run."""
    return {r["id"]: r.get("dup_cluster") for r in rows + rej}


def test_minhash_incremental_equals_joint_run_restricted_to_new_snapshot(pages, tmp_path):
    a, b = _snapshots(pages)
    index = str(tmp_path / "index")
    out_a, rej_a, _, _ = _run("dedup_minhash", {"index": index}, _shards(a, tmp_path / "A", 3), tmp_path, tag="A")
    out_b, rej_b, _, ctx_b = _run("dedup_minhash", {"index": index}, _shards(b, tmp_path / "B", 4), tmp_path, tag="B")
    joint, rej_j, _, _ = _run("dedup_minhash", {}, _shards(a + b, tmp_path / "AB", 5), tmp_path, tag="AB")
    a_ids = {r["id"] for r in a}
    a_kept = {r["id"] for r in out_a}
    # components of the joint run (by survivor id); which of them hold A documents
    comp = _components(joint, rej_j)
    members: dict[str, set] = {}
    for i, c in comp.items():
        if c is not None:
            members.setdefault(c, set()).add(i)
    spans_a = {c for c, m in members.items() if m & a_ids}
    joint_kept = {r["id"] for r in joint}
    inc_kept = {r["id"] for r in out_b}
    inc = _components(out_b, rej_b)
    crossing = 0
    for r in b:
        i, c = r["id"], comp[r["id"]]
        if c is not None and c in spans_a:
            crossing += 1
            assert i not in inc_kept, i                          # the indexed survivor stays, in A's run
            assert inc[i] in a_kept, (i, inc[i])                 # ... and is named as the cluster
        else:
            assert (i in inc_kept) == (i in joint_kept), i
            assert inc[i] == c, (i, inc[i], c)
    assert crossing >= 15                                        # every re-crawl reached the index
    assert len(out_b) + len(rej_b) == len(b)
    kept_sizes = {r["id"]: r["dup_cluster_size"] for r in out_b}
    for c, m in members.items():
        if c in inc_kept:
            assert kept_sizes[c] == len(m)
    assert all(kept_sizes[i] == 1 for i in inc_kept if inc[i] is None)
    report = json.loads((Path(ctx_b.work_dir) / "dedup_minhash_report.json").read_text())
    assert report["index"]["generations_read"] == 1 and report["index"]["components_reaching_index"] >= 1
    m = json.loads((Path(index) / "manifest.json").read_text())
    assert [g["docs"] for g in m["generations"]] == [len(a), len(b)] and m["nodes"] == len(a) + len(b)


def test_minhash_index_crash_before_commit_leaves_index_and_rerun_is_correct(pages, tmp_path, monkeypatch):
    a, b = _snapshots(pages[:70])
    index = tmp_path / "index"
    _run("dedup_minhash", {"index": str(index)}, _shards(a, tmp_path / "A", 2), tmp_path, tag="A")
    before = (index / "manifest.json").read_bytes()
    in_b = _shards(b, tmp_path / "B", 3)
    monkeypatch.setenv(IX.FAULT_ENV, "before_commit")
    with pytest.raises(IX.IndexFault):
        _run("dedup_minhash", {"index": str(index)}, in_b, tmp_path, tag="B-crash")
    assert (index / "manifest.json").read_bytes() == before
    assert len(list(index.glob("g=*"))) == 2                          # the orphan generation is on disk ...
    monkeypatch.delenv(IX.FAULT_ENV)
    out1, rej1, _, _ = _run("dedup_minhash", {"index": str(index)}, in_b, tmp_path, tag="B1")
    gens = json.loads((index / "manifest.json").read_text())["generations"]
    assert len(gens) == 2 and len(list(index.glob("g=*"))) == 2       # ... and gone after the next append
    # a crash after the commit (the runner had not marked the step done): the re-run recognises
    # its own generation, reads the index without it and gives the same answer, appended once
    out2, rej2, _, _ = _run("dedup_minhash", {"index": str(index)}, in_b, tmp_path, tag="B2")
    assert sorted(r["id"] for r in out2) == sorted(r["id"] for r in out1)
    assert sorted((r["id"], r["dup_cluster"]) for r in rej2) == sorted((r["id"], r["dup_cluster"]) for r in rej1)
    m = json.loads((index / "manifest.json").read_text())
    assert len(m["generations"]) == 2 and m["nodes"] == len(a) + len(b)
    # a fresh index over A then B gives the same decisions as the crashed-then-repaired one
    fresh = tmp_path / "fresh"
    _run("dedup_minhash", {"index": str(fresh)}, _shards(a, tmp_path / "A2", 2), tmp_path, tag="A2")
    out3, _, _, _ = _run("dedup_minhash", {"index": str(fresh)}, in_b, tmp_path, tag="B3")
    assert sorted(r["id"] for r in out3) == sorted(r["id"] for r in out1)


def test_index_refuses_other_parameters_and_verify(pages, tmp_path):
    rows, _ = _minhash_corpus(pages[:40])
    index = str(tmp_path / "index")
    _run("dedup_minhash", {"index": index}, _shards(rows, tmp_path / "in", 2), tmp_path, tag="a")
    with pytest.raises(StageError, match="other dedup parameters.*bands"):
        _run("dedup_minhash", {"index": index, "bands": 20, "rows": 5}, _shards(rows, tmp_path / "in2", 2), tmp_path, tag="b")
    with pytest.raises(StageError, match="built by 'dedup_minhash'"):
        _run("dedup_exact", {"index": index}, _shards(rows, tmp_path / "in3", 2), tmp_path, tag="c")
    with pytest.raises(StageError, match="verify_threshold"):
        build_stage("dedup_minhash", {"index": index, "verify_threshold": 0.8})


def test_exact_incremental_drops_what_the_index_holds_and_dedups_the_rest(pages, tmp_path, monkeypatch):
    from datetime import datetime, timedelta, timezone
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    a = [{"id": f"a{i:03d}", "url": f"https://site{i}.example/p", "text": d["text"], "fetch_time": t0}
         for i, d in enumerate(pages[:40])]
    b = [{"id": f"b{i:03d}", "url": f"https://new{i}.example/p", "text": d["text"], "fetch_time": t0 + timedelta(days=30)}
         for i, d in enumerate(pages[40:60])]
    b += [
        # a later capture of an A URL (other spelling): A's capture stays, whatever the fetch time
        {"id": "b-url", "url": "http://www.site3.example/p/?utm_source=x", "text": pages[3]["text"] + " new",
         "fetch_time": t0 + timedelta(days=60)},
        # A's text at a new URL, in other case and spacing
        {"id": "b-text", "url": "https://mirror.example/x", "text": "  " + pages[5]["text"].upper(),
         "fetch_time": t0 + timedelta(days=60)},
        # a duplicate inside B: the earliest capture of the text stays
        {"id": "b-copy", "url": "https://mirror.example/y", "text": pages[41]["text"], "fetch_time": t0 + timedelta(days=90)},
    ]
    index = tmp_path / "index"
    out_a, rej_a, _, _ = _run("dedup_exact", {"index": str(index), "partitions": 3}, _shards(a, tmp_path / "A", 2),
                              tmp_path, tag="A")
    assert len(out_a) == len(a) and not rej_a
    in_b = _shards(b, tmp_path / "B", 3)
    # a crash before the commit leaves the index as it was
    before = (index / "manifest.json").read_bytes()
    monkeypatch.setenv(IX.FAULT_ENV, "before_commit")
    with pytest.raises(IX.IndexFault):
        _run("dedup_exact", {"index": str(index)}, in_b, tmp_path, tag="B0")
    assert (index / "manifest.json").read_bytes() == before
    monkeypatch.delenv(IX.FAULT_ENV)
    out_b, rej_b, _, _ = _run("dedup_exact", {"index": str(index)}, in_b, tmp_path, tag="B")
    dropped = {r["id"]: (r["reason"], r["dup_of"]) for r in rej_b}
    assert dropped == {"b-url": ("dedup_exact_v1:url", "a003"), "b-text": ("dedup_exact_v1:text", "a005"),
                       "b-copy": ("dedup_exact_v1:text", "b001")}
    assert {r["id"] for r in out_b} == {r["id"] for r in b} - set(dropped)
    m = json.loads((index / "manifest.json").read_text())
    assert m["partitions"] == 3 and [g["docs"] for g in m["generations"]] == [len(a), len(b)]
    # a third snapshot: B's survivors are in the index now
    c = [{"id": "c1", "url": "https://other.example/z", "text": pages[45]["text"], "fetch_time": t0}]
    out_c, rej_c, _, _ = _run("dedup_exact", {"index": str(index)}, _shards(c, tmp_path / "C", 1), tmp_path, tag="C")
    assert not out_c and rej_c[0]["dup_of"] == "b005"


def test_two_overlapping_sample_crawls_through_the_runner(ray_session, sample_crawl, tmp_path, capsys):
    """The README's workflow: snapshot A (crawl files 0-2), then B (files 1-3) with both dedup
    indexes; B's re-crawled documents are dropped (lineage says where and why), and no B
    survivor shares a URL or a MinHash band with an A survivor."""
    from datapipe import lineage
    from datapipe.cli import main
    from datapipe.config import parse_config
    from datapipe.runner import load_stats, run_pipeline
    from stages.dedup_exact import normalize_url
    from stages.dedup_minhash import band_keys, minhash_signatures, permutations
    from stages._dedup import text_array
    assert len(sample_crawl) >= 4
    files = sorted(sample_crawl)
    idx = tmp_path / "index"

    def run(name, inputs):
        cfg = parse_config({"name": name, "stages": [
            {"extract": {}}, {"length": {"min_chars": 200}},
            {"dedup_exact": {"index": str(idx / "exact")}}, {"dedup_minhash": {"index": str(idx / "minhash")}}],
            "output": {"rows_per_file": 40}, "engine": {"batch_size": 32}}, file="<test>")
        rd = run_pipeline(cfg, inputs=inputs, run_dir=tmp_path / name, quiet=True).run_dir
        out = pa_concat(rd)
        return rd, out

    def pa_concat(rd):
        import pyarrow as pa
        return pa.concat_tables([pq.read_table(f) for f in sorted((rd / "output").glob("*.parquet"))],
                                promote_options="default")

    rd_a, out_a = run("A", files[:3])
    rd_b, out_b = run("B", files[1:4])
    read_b = {s.stage: s for s in load_stats(rd_b)}["read"].rows_out
    drops, kept = lineage.load(rd_b)
    assert drops.num_rows + kept.num_rows == read_b
    # every document B re-crawled from A's files is gone: A holds it
    a_ids = set(out_a["id"].to_pylist())
    overlap = [r for r in drops.to_pylist() if r["id"] in a_ids]
    assert overlap and not (a_ids & set(out_b["id"].to_pylist()))
    assert {r["stage"] for r in overlap} <= {"dedup_exact", "dedup_minhash"}
    # no B survivor shares a normalised URL or a band key with an A survivor
    assert not ({normalize_url(u) for u in out_a["url"].to_pylist() if u}
                & {normalize_url(u) for u in out_b["url"].to_pylist() if u})
    a, b = permutations(112, 1)

    def bands(t):
        sig, n_sh = minhash_signatures(text_array(t), ngram=5, a=a, b=b, seed=1)
        return {int(k) for k in band_keys(sig[n_sh > 0], 14, 8).ravel()}
    assert not (bands(out_a) & bands(out_b))
    m = json.loads((idx / "minhash" / "manifest.json").read_text())
    assert len(m["generations"]) == 2
    # datapipe why names the dedup stage of a re-crawled document, and its indexed survivor
    capsys.readouterr()
    assert main(["why", str(rd_b), overlap[0]["id"], "--json"]) == 0
    fate = json.loads(capsys.readouterr().out.splitlines()[0])
    assert fate["stage"] in ("dedup_exact", "dedup_minhash")
    assert (fate["scores"].get("dup_of") or fate["scores"].get("dup_cluster")) in a_ids
