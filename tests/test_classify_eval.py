"""`datapipe classify eval`: a labeller's agreement with human labels, on a hand-computed case,
and on the real DCLM human-label files (deduplication)."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from classifiers.agreement import evaluate_labels, format_agreement, load_human

PAGES = {c: f"page {c}: " + c * 40 for c in "ABCDEFGH"}


def _human(tmp_path):
    d = tmp_path / "human"
    d.mkdir()
    rows = lambda pairs: "\n".join(json.dumps({"text": PAGES[c], "label": y}) for c, y in pairs) + "\n"  # noqa: E731
    (d / "agreement_data.jsonl").write_text(rows([("A", 1), ("D", 0), ("G", 1)]))
    (d / "majority_data.jsonl").write_text(rows([("A", 1), ("B", 1), ("C", 1), ("D", 0), ("E", 0), ("F", 0), ("G", 0)]))
    return d


def _labels(tmp_path):
    from classifiers.prompts import Prompt
    pid = Prompt.load("quality_edu_score_v1").id  # positive_from 3
    rows = [("A", "4", 3.8, "ok", None), ("B", "3", 2.9, "ok", "no JSON object in reply"),  # B: rescued by logprobs
            ("C", "1", 2.0, "ok", None), ("D", "2", 2.5, "ok", None),
            ("E", "0", 0.5, "ok", None), ("F", None, None, "parse_error", "empty reply"), ("H", "5", 4.9, "ok", None)]
    t = pa.table({"id": [r[0] for r in rows], "text": [PAGES[r[0]] for r in rows], "label": [r[1] for r in rows],
                  "label_parse_error": [r[4] for r in rows],
                  "label_expected": [r[2] for r in rows], "label_status": [r[3] for r in rows],
                  "label_prompt": [pid] * len(rows), "label_model": ["m"] * len(rows)})
    pq.write_table(t, tmp_path / "labels.parquet")
    return tmp_path / "labels.parquet"


def test_agreement_figures_by_hand(tmp_path):
    human, info = load_human(_human(tmp_path))
    # 10 lines, 7 distinct pages; G is good in one file and bad in the other: dropped
    assert info == {"lines": 10, "distinct": 7, "conflicting_dropped": 1, "kept": 6}
    src = dict(zip(human["text"].to_pylist(), human["source"].to_pylist()))
    assert src[PAGES["A"]] == "agreement" and src[PAGES["B"]] == "majority"
    r = evaluate_labels(_labels(tmp_path), tmp_path / "human")
    assert r["matched"] == 6 and r["labels_rows"] == 7           # H has no human label
    assert r["threshold"] == 3.0                                  # the prompt's positive_from
    assert r["n"] == 5 and r["parse_failures"] == 1 and r["parse_failure_rate"] == pytest.approx(1 / 6, abs=1e-4)
    assert r["text_parse_failures"] == 2 and r["text_parse_failure_rate"] == pytest.approx(2 / 6, abs=1e-4)
    assert r["accuracy"] == 0.8 and r["majority_baseline"] == 0.6  # A, B right positive; D, E right negative; C missed
    assert r["roc_auc_expected"] == pytest.approx(5 / 6, abs=1e-4)
    assert r["roc_auc_label"] == pytest.approx(5 / 6, abs=1e-4)
    assert r["at_threshold"] == {"tp": 2, "fp": 0, "fn": 1, "tn": 2, "precision": 1.0, "recall": 0.6667}
    assert r["confusion"]["cols"] == ["0", "1", "2", "3", "4"]
    assert r["confusion"]["matrix"] == [[1, 0, 1, 0, 0], [0, 1, 0, 1, 1]]
    assert r["per_source"]["agreement"]["n"] == 2 and r["per_source"]["agreement"]["accuracy"] == 1.0
    assert r["per_source"]["majority"]["n"] == 3 and r["per_source"]["majority"]["accuracy"] == pytest.approx(0.6667, abs=1e-4)
    assert r["spearman_expected"] > 0.5
    # a stricter threshold changes the accuracy: B (3) is no longer positive
    assert evaluate_labels(_labels(tmp_path), tmp_path / "human", threshold=4)["accuracy"] == 0.6
    text = format_agreement(r)
    assert "accuracy 0.800" in text and "ROC AUC expected score 0.833" in text and "source agreement" in text


def test_cli_eval_and_its_errors(tmp_path, capsys):
    from datapipe.cli import main
    _human(tmp_path)
    labels = _labels(tmp_path)
    assert main(["classify", "eval", str(labels), "--human", str(tmp_path / "human"), "--out", str(tmp_path / "r.json")]) == 0
    assert "accuracy 0.800" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["roc_auc_expected"] == pytest.approx(0.8333, abs=1e-4)
    assert main(["classify", "eval", str(labels), "--human", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["classify", "eval", str(tmp_path / "none.parquet"), "--human", str(tmp_path / "human")]) == 2
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"text": ["unrelated"], "label": ["1"]}), other)
    assert main(["classify", "eval", str(other), "--human", str(tmp_path / "human")]) == 2
    assert "no labelled document matches" in capsys.readouterr().err


def test_dclm_files_dedup_to_499_pages(shared_data):
    human, info = load_human(shared_data / "quality" / "dclm-human-quality-labels")
    assert info["lines"] == 780 and info["distinct"] == 499 and human.num_rows == 499 - info["conflicting_dropped"]
    assert set(human["source"].to_pylist()) == {"agreement", "majority"}
    assert human["source"].to_pylist().count("agreement") == 281


def test_demo_measures_labeller_and_classifiers_against_human_labels(tmp_path, capsys):
    """`classify demo --base-url` (here the test double) end to end on a small human-labelled set:
    label -> eval -> three classifiers scored on held-out human labels -> figures in the cards."""
    from datapipe.cli import main
    from tests.fake_llm import FakeLLMServer
    from tests.test_classifiers import docs_table
    texts = docs_table(60)["text"].to_pylist()
    human = tmp_path / "human"
    human.mkdir()
    # docs_table: every third document is spam; the others are educational
    (human / "majority_data.jsonl").write_text("".join(
        json.dumps({"text": t, "label": int(i % 3 != 0)}) + "\n" for i, t in enumerate(texts)))
    with FakeLLMServer() as srv:
        rc = main(["classify", "demo", "--base-url", srv.base_url, "--human", str(human), "--n", "24",
                   "--dir", str(tmp_path / "demo"), "--test-fraction", "0.3"])
    out = capsys.readouterr().out
    assert rc == 0
    res = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert res["n_labelled"] == 24 and res["held_out"] == 18 and res["agreement"]["matched"] == 24
    # the LLM labels pages of the train split only: the held-out pages stay unseen
    train_ids = set(pq.read_table(tmp_path / "demo" / "human_train.parquet")["id"].to_pylist())
    assert len(train_ids) == 42 and set(pq.read_table(tmp_path / "demo" / "sample.parquet")["id"].to_pylist()) <= train_ids
    assert len(res["classifiers"]) == 3
    for name in ("quality_llm_labels", "quality_human_same_pages", "quality_human_all"):
        card = json.loads((tmp_path / "demo" / "models" / name / "model_card.json").read_text())
        assert card["human_eval"]["held_out_pages"] == 18
        assert "held-out human labels" in (tmp_path / "demo" / "models" / name / "MODEL_CARD.md").read_text()
    llm_card = json.loads((tmp_path / "demo" / "models" / "quality_llm_labels" / "model_card.json").read_text())
    assert llm_card["target"] == "expected" and llm_card["labeller_agreement"]["matched"] == 24
    # the double's keyword rubric separates these synthetic pages: its labels agree with the "people"
    assert res["agreement"]["roc_auc_expected"] > 0.9
    assert "the LLM labeller on its 24 pages" in out and "fastText on human labels, all" in out
