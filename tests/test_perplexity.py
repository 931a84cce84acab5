"""perplexity: CCNet's normaliser, the document perplexity formula, a model trained here that
ranks well-formed < shuffled < random text, buckets near 30/30/40, model files and errors."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datapipe.lm import CCNET_CUTOFFS, KENLM_MAGIC, doc_perplexity
from datapipe.lm import train as lm_train
from datapipe.lm.normalizer import PY_WHITESPACE, UNICODE_PUNCT, normalize, normalize_array, replace_unicode_punct
from datapipe.schema import table_from_rows
from datapipe.stage import StageError, WorkflowContext, apply_stage, build_stage, registry
from stages.perplexity import Perplexity
from stages.perplexity_buckets import PerplexityBuckets, compute_cutoffs
from tests.conftest import SHARED_DATA, missing, need_shared

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA
LINGUA = DATA / "langid" / "lingua"
WIKI = DATA / "quality" / "cs336-fixtures" / "high_quality_wiki_reference.txt"


# ---------------------------------------------------------------------------
# normalisation: cc_net's text_normalizer, cases derived by hand from its source

def test_cc_net_own_cases():
    # tests/test_normalizer.py of cc_net
    weird = "，。、„”“«»１」「《》´∶：？！（）；–—．～’…━〈〉【】％"
    assert replace_unicode_punct(weird) == ',.,""""""""""\'::?!();- - . ~\'...-<>[]%'
    assert normalize("０２３４５６７８９ | 0123456789", numbers=True) == "000000000 | 0000000000"
    assert normalize("０２３４５６７８９ | 0123456789", numbers=False) == "０２３４５６７８９ | 0123456789"


@pytest.mark.parametrize("raw, expected", [
    ("  Café ÜBER naïve  ", "cafe uber naive"),          # strip, lower, accents
    ("Price: 1,234.50 € ٣", "price: 0,000.00 € 0"),       # every Unicode digit (Nd) -> 0
    ("«Ça va?» — oui…", '"ca va?"  -  oui...'),          # punctuation unified; — gets its own spaces
    ("a\x00b\tc\x7fd\x9f", "abcd"),                       # control characters removed (tab too)
    ("\x00 abc", " abc"),                                 # strip() runs first: \x00 is no space
    ("ΟΔΟΣ ΣΟΦΟΣ", "οδος σοφος"),                         # Python's final sigma
    ("１st", "0st"),                                      # fullwidth 1 is a digit before it is a quote
    ("İstanbul", "istanbul"),                             # i + combining dot, dot dropped
    ("\n\n", ""),
])
def test_normalize_hand_checked(raw, expected):
    assert normalize(raw) == expected
    assert normalize_array(pa.array([raw], pa.large_string())).to_pylist() == [expected]


def test_strip_accents_keeps_cc_nets_nfd_output():
    # cc_net's strip_accents always returns the NFD form (its early return compares an int with a
    # str): Hangul comes back as jamo, and both training and scoring see that
    assert normalize("한국어") == unicodedata.normalize("NFD", "한국어") != "한국어"
    assert normalize_array(pa.array(["한국어"])).to_pylist() == [unicodedata.normalize("NFD", "한국어")]


def test_python_whitespace_table_is_complete():
    assert PY_WHITESPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


def test_normalize_array_equals_normalize_on_edge_cases():
    rng = random.Random(7)
    alphabet = ("aZé\u0301ΣσΟ 0１٣\t\n\x00\x1f\x85\xa0\u3000İß" + "".join(UNICODE_PUNCT))
    lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    lines += [None]
    got = normalize_array(pa.array(lines, pa.large_string())).to_pylist()
    assert got[:-1] == [normalize(x) for x in lines[:-1]] and got[-1] is None


def test_normalize_array_equals_normalize_on_75_languages():
    need_shared("langid", "lingua")
    lines = []
    for d in sorted(LINGUA.iterdir()):
        lines += (d / "sentences.txt").read_text(encoding="utf-8").splitlines()[:300]
    got = normalize_array(pa.array(lines, pa.large_string())).to_pylist()
    bad = [(x, g) for x, g in zip(lines, got) if g != normalize(x)]
    assert len(lines) > 20_000 and not bad[:3]


# ---------------------------------------------------------------------------
# the document formula (no model needed)

def test_doc_perplexity_sums_paragraphs_and_skips_blank_lines():
    seen = []

    def fake(lines):  # log10 p = -(characters), tokens = words + 1
        seen.extend(lines)
        return np.array([-float(len(x)) for x in lines]), np.array([len(x.split()) + 1.0 for x in lines])

    texts = pa.array(["Ab cd\n\n  \nEfg", "", None, "ONE"], pa.large_string())
    ppl = doc_perplexity(texts, fake)
    assert seen == ["ab cd", "efg", "one"]  # normalised, blank lines not scored
    assert ppl[0] == pytest.approx(10 ** ((5 + 3) / (3 + 2)))
    assert np.isnan(ppl[1]) and np.isnan(ppl[2])
    assert ppl[3] == pytest.approx(10 ** (3 / 2))


# ---------------------------------------------------------------------------
# a real model, trained here

def _need_kenlm():
    try:
        lm_train.find_kenlm_binaries()
    except lm_train.LMTrainError as e:
        missing(f"KenLM training programs not built ({e}); `make kenlm` builds them")


@pytest.fixture(scope="module")
def corpus():
    need_shared("langid", "lingua", "en", "sentences.txt")
    sents = [s for s in (LINGUA / "en" / "sentences.txt").read_text(encoding="utf-8").splitlines() if s.strip()]
    return {"train": sents[:850], "held_out": sents[850:]}


@pytest.fixture(scope="module")
def model(tmp_path_factory, corpus):
    _need_kenlm()
    d = tmp_path_factory.mktemp("lm")
    train = d / "train.txt"
    train.write_text("\n".join(corpus["train"]) + "\n", encoding="utf-8")
    inputs = [str(train)] + ([str(WIKI)] if WIKI.is_file() else [])
    out = d / "models"
    meta = lm_train.train_lm("en", inputs, out, vocab_size=2000, memory="100M", threads=1)
    return {"dir": out, "meta": meta, "inputs": inputs}


def test_trained_model_files_and_metadata(model):
    out, meta = model["dir"], model["meta"]
    assert sorted(p.name for p in out.iterdir()) == ["en.arpa.bin", "en.model.json", "en.sp.model"]
    assert (out / "en.arpa.bin").read_bytes()[:len(KENLM_MAGIC)] == KENLM_MAGIC
    saved = json.loads((out / "en.model.json").read_text())
    assert saved == meta
    assert meta["lang"] == "en" and meta["order"] == 5 and meta["docs"] >= 850 and meta["tokens"] > 10_000
    assert meta["sizes"]["arpa_bin"] == (out / "en.arpa.bin").stat().st_size
    assert 100 < meta["sp_pieces"] <= 2000


def _shuffle_words(text: str, rng: random.Random) -> str:
    paras = []
    for p in text.split("\n"):
        w = p.split()
        rng.shuffle(w)
        paras.append(" ".join(w))
    return "\n".join(paras)


def _random_chars(text: str, rng: random.Random) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "".join(c if c in " \n" else rng.choice(letters) for c in text)


def test_well_formed_beats_shuffled_beats_random(model, corpus):
    rng = random.Random(0)
    held = corpus["held_out"]
    docs = ["\n".join(held[i:i + 5]) for i in range(0, 150, 5)]
    shuffled = [_shuffle_words(d, rng) for d in docs]
    noise = [_random_chars(d, rng) for d in docs]
    st = build_stage("perplexity", {"model_dir": str(model["dir"])})
    st.ensure_setup()
    n = len(docs)
    out = st(table_from_rows([{"id": str(i), "text": t} for i, t in enumerate(docs + shuffled + noise)])
             .append_column("lid_lang", pa.array(["en"] * 3 * n)))
    ppl = np.array(out["ppl"].to_pylist())
    good, shuf, rand = ppl[:n], ppl[n:2 * n], ppl[2 * n:]
    assert np.mean(good < shuf) >= 0.9, (good, shuf)
    assert np.median(shuf) > 1.5 * np.median(good)
    assert np.all(shuf < rand)
    assert set(out["ppl_model"].to_pylist()) == {model["meta"]["model_id"]}
    # without cut-offs every scored row waits for the workflow: bucket null, kept
    assert out["ppl_bucket"].null_count == 3 * n and st.decide(out).null_count == 3 * n


def test_score_matches_a_direct_ccnet_computation(model, corpus):
    import kenlm
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model["dir"] / "en.sp.model"))
    lm = kenlm.Model(str(model["dir"] / "en.arpa.bin"))
    doc = "\n".join(corpus["held_out"][:4])
    logp = tokens = 0.0
    for line in doc.split("\n"):
        toks = " ".join(sp.encode_as_pieces(normalize(line)))
        logp += lm.score(toks)
        tokens += len(toks.split()) + 1
    st = build_stage("perplexity", {"model_dir": str(model["dir"]), "lang_column": None})
    out = st(table_from_rows([{"id": "0", "text": doc}]))
    assert out["ppl"][0].as_py() == pytest.approx(10 ** (-logp / tokens), rel=1e-9)


def test_languages_without_model_pass_as_none_and_configured_cutoffs_filter(model, corpus):
    docs = corpus["held_out"][:40]
    langs = ["en"] * 30 + ["fr"] * 5 + [None] * 5
    batch = table_from_rows([{"id": str(i), "text": t} for i, t in enumerate(docs)]).append_column(
        "lid_lang", pa.array(langs, pa.string()))
    probe = build_stage("perplexity", {"model_dir": str(model["dir"])})
    ppl = np.array(probe(batch)["ppl"].to_pylist()[:30], dtype=float)
    lo, hi = np.percentile(ppl, [30, 60])
    st = build_stage("perplexity", {"model_dir": str(model["dir"]), "cutoffs": {"en": [lo, hi]}})
    res = apply_stage(st, batch)
    kept_b = res.kept["ppl_bucket"].to_pylist()
    assert kept_b.count("none") == 10 and res.kept["ppl"].null_count == 10
    expected_tail = int(np.sum(ppl >= hi))
    assert res.reasons == {"perplexity:tail": expected_tail}
    assert all(p >= hi for p in res.rejected["ppl"].to_pylist())
    assert all((b == "head") == (p < lo) for b, p in zip(kept_b, res.kept["ppl"].to_pylist()) if b != "none")
    c = st.counters()
    assert c["bucket:none"] == 10 and c["bucket:tail"] == expected_tail
    assert c["bucket:head"] + c["bucket:middle"] == 30 - expected_tail
    # keep only the head
    st2 = build_stage("perplexity", {"model_dir": str(model["dir"]), "cutoffs": {"en": [lo, hi]},
                                     "keep_buckets": ["head"]})
    assert set(apply_stage(st2, batch).reasons) == {"perplexity:middle", "perplexity:tail"}


def _scored_shards(model, corpus, d: Path, n_shards: int = 4) -> list[str]:
    rng = random.Random(1)
    texts = corpus["held_out"] + corpus["train"]
    texts = texts + [_shuffle_words(t, rng) for t in texts]
    rows = [{"id": str(i), "text": t} for i, t in enumerate(texts)]
    st = build_stage("perplexity", {"model_dir": str(model["dir"])})
    paths = []
    per = -(-len(rows) // n_shards)
    for k in range(n_shards):
        chunk = rows[k * per:(k + 1) * per]
        langs = ["en"] * len(chunk)
        langs[:3] = ["de", "de", "de"]  # no model: bucket none, kept
        tb = st(table_from_rows(chunk).append_column("lid_lang", pa.array(langs, pa.string())))
        p = d / f"shard-{k}.parquet"
        pq.write_table(tb, p)
        paths.append(str(p))
    return paths


def test_bucket_workflow_gives_30_30_40_and_saves_cutoffs(model, corpus, tmp_path):
    inputs = _scored_shards(model, corpus, tmp_path)
    out_dir, work = tmp_path / "out", tmp_path / "work"
    out_dir.mkdir()
    work.mkdir()
    got_rejects = []
    ctx = WorkflowContext(inputs=inputs, output_dir=str(out_dir), work_dir=str(work), engine=None,
                          reject_sink=lambda stage, shard, t: got_rejects.append((stage, shard, t.num_rows)))
    wf = build_stage("perplexity_buckets", {"sample_size": 600})
    assert isinstance(wf, PerplexityBuckets) and registry()["perplexity_buckets"] is PerplexityBuckets
    stats = wf.run(ctx)
    saved = json.loads((work / "cutoffs.json").read_text())
    assert set(saved["cutoffs"]) == {"en"} and saved["sample_fraction"] == pytest.approx(0.3)
    lo, hi = saved["cutoffs"]["en"]
    assert 0 < lo < hi
    # buckets over all rows, from cut-offs computed on a ~30% sample
    allrows = pa.concat_tables(pq.read_table(p) for p in inputs)
    ppl = np.array(allrows["ppl"].to_pylist(), dtype=float)
    ppl = ppl[~np.isnan(ppl)]
    shares = [np.mean(ppl < lo), np.mean((ppl >= lo) & (ppl < hi)), np.mean(ppl >= hi)]
    assert shares == pytest.approx([0.3, 0.3, 0.4], abs=0.04)
    # outputs: one file per input, tail dropped with a reason, "none" rows kept
    assert sorted(os.listdir(out_dir)) == sorted(os.path.basename(p) for p in inputs)
    kept = pa.concat_tables(pq.read_table(out_dir / os.path.basename(p)) for p in inputs)
    assert set(kept["ppl_bucket"].to_pylist()) == {"head", "middle", "none"}
    assert kept["ppl_bucket"].to_pylist().count("none") == 3 * len(inputs)
    total_in = sum(s.rows_in for s in stats.values())
    total_tail = sum(s.dropped.get("perplexity_buckets:tail", 0) for s in stats.values())
    assert total_in == allrows.num_rows and kept.num_rows == total_in - total_tail
    assert total_tail == int(np.sum(ppl >= hi))
    assert all(s.stage == "perplexity_buckets" for s in stats.values())
    # a sample of each shard's rejects (the run's samples_per_reason) goes to the run's reject sink
    cap = ctx.samples_per_reason
    want = {f"shard-{k}": min(cap, stats[f"shard-{k}.parquet"].dropped.get("perplexity_buckets:tail", 0))
            for k in range(len(inputs))}
    assert {shard: n for _, shard, n in got_rejects} == {k: v for k, v in want.items() if v}
    assert {stage for stage, _, _ in got_rejects} == {"perplexity_buckets"}
    # a resumed run reuses the saved cut-offs
    (work / "cutoffs.json").write_text(json.dumps(dict(saved, cutoffs={"en": [1.0, 2.0]})))
    assert wf.cutoffs(ctx) == {"en": (1.0, 2.0)}


def test_model_round_trip_through_a_directory(model, corpus, tmp_path):
    moved = tmp_path / "run" / "models"
    shutil.copytree(model["dir"], moved)
    batch = table_from_rows([{"id": str(i), "text": t} for i, t in enumerate(corpus["held_out"][:20])])
    batch = batch.append_column("lid_lang", pa.array(["en"] * 20))
    a = build_stage("perplexity", {"model_dir": str(model["dir"])})(batch)
    b = build_stage("perplexity", {"models": {"en": str(moved)}})(batch)
    assert a["ppl"].to_pylist() == b["ppl"].to_pylist()
    assert b["ppl_model"].to_pylist() == [model["meta"]["model_id"]] * 20
    # the stage pickles without its loaded models and scores the same after
    import pickle
    st = build_stage("perplexity", {"model_dir": str(moved)})
    st(batch)
    st2 = pickle.loads(pickle.dumps(st))
    assert st2._lms == {} and st2(batch)["ppl"].to_pylist() == a["ppl"].to_pylist()


def test_training_is_cached_and_the_cli_reuses_it(model, tmp_path):
    out = model["dir"]
    before = (out / "en.arpa.bin").stat().st_mtime_ns
    cmd = [sys.executable, "-m", "datapipe.cli", "train-lm", "--lang", "en", "--input", *model["inputs"],
           "--out", str(out), "--vocab-size", "2000", "--memory", "100M", "--threads", "1"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["model_id"] == model["meta"]["model_id"]
    assert "reusing" in res.stderr
    assert (out / "en.arpa.bin").stat().st_mtime_ns == before
    # another corpus is another model
    other = tmp_path / "other.txt"
    other.write_text("a different corpus entirely.\nwith two lines of text in it.\n")
    meta = lm_train.train_lm("en", [str(other)], tmp_path / "m2", vocab_size=60, memory="100M", threads=1)
    assert meta["key"] != model["meta"]["key"] and meta["docs"] == 2


# ---------------------------------------------------------------------------
# errors

def test_missing_or_corrupt_model_files(tmp_path):
    with pytest.raises(StageError, match="does not exist.*train-lm"):
        build_stage("perplexity", {"model_dir": str(tmp_path / "nope")})
    with pytest.raises(StageError, match="no <lang>.arpa.bin"):
        build_stage("perplexity", {"model_dir": str(tmp_path)})
    with pytest.raises(StageError, match="no language model configured"):
        build_stage("perplexity", {})
    (tmp_path / "en.arpa.bin").write_bytes(b"\\data\\\nngram 1=3\n")  # an ARPA text file, not binary
    with pytest.raises(StageError, match="en.sp.model not found"):
        build_stage("perplexity", {"model_dir": str(tmp_path)})
    (tmp_path / "en.sp.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(StageError, match="not a KenLM binary"):
        build_stage("perplexity", {"model_dir": str(tmp_path)})
    (tmp_path / "en.arpa.bin").write_bytes(KENLM_MAGIC + b" format version 5\n\0garbage")
    with pytest.raises(StageError, match="not a SentencePiece model"):
        build_stage("perplexity", {"models": {"en": str(tmp_path)}})


def test_option_checks(model):
    d = str(model["dir"])
    with pytest.raises(StageError, match="keep_buckets"):
        build_stage("perplexity", {"model_dir": d, "keep_buckets": ["top"]})
    with pytest.raises(StageError, match="cutoffs.en"):
        build_stage("perplexity", {"model_dir": d, "cutoffs": {"en": [500, 300]}})
    st = build_stage("perplexity", {"model_dir": d, "cutoffs": "ccnet"})
    assert st.cutoffs["en"] == (340.0, 520.0) == CCNET_CUTOFFS["en"]
    with pytest.raises(StageError, match="percentiles"):
        build_stage("perplexity_buckets", {"percentiles": [60, 30]})
    assert isinstance(st, Perplexity) and st.inputs == ("text", "lid_lang")


def test_compute_cutoffs_and_missing_binaries(monkeypatch, tmp_path):
    v = np.arange(1, 101, dtype=float)
    assert compute_cutoffs({"en": v, "de": v[:3]}, min_docs=10) == {"en": pytest.approx((30.7, 60.4))}
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(lm_train.LMTrainError, match="make kenlm"):
        lm_train.find_kenlm_binaries()


def test_reads_text_jsonl_parquet_folders_and_saved_datasets(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\nsecond line\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "json doc\nwith two lines"}) + "\n" +
                                      json.dumps({"body": "no text field"}) + "\n")
    pq.write_table(pa.table({"text": ["parquet doc", None]}), tmp_path / "c.parquet")
    docs = list(lm_train.iter_documents([str(tmp_path)]))
    assert docs == ["first line", "second line", "json doc\nwith two lines", "parquet doc"]
    import datasets
    datasets.Dataset.from_dict({"content": ["hf one", "hf two"]}).save_to_disk(str(tmp_path / "ds"))
    assert list(lm_train.iter_documents([str(tmp_path / "ds")], text_field="content")) == ["hf one", "hf two"]
    with pytest.raises(lm_train.LMTrainError, match="no column"):
        list(lm_train.iter_documents([str(tmp_path / "c.parquet")], text_field="body"))
