"""`datapipe tune-filters` and overlays: the proposal meets its objective on the labels it was tuned
on, the held-out figure is reported, and `datapipe run` / `datapipe refilter` accept the overlay."""
import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from datapipe import tune
from datapipe.cli import main
from datapipe.config import ConfigError, load_config, parse_config
from datapipe.stage import build_stage
from tests.conftest import SHARED_DATA, missing

WORDS = ("the river runs past the old mill and the children of the village play with a ball near "
         "water while their parents talk about harvest weather and prices at market").split()


def prose(rng, n_sent):
    return " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 14))).capitalize() + "."
                    for _ in range(n_sent))


def labelled(tmp_path):
    """Good: prose of 4-9 sentences. Bad: price lists (few letters) and short fragments."""
    rng = random.Random(7)
    rows = [{"text": prose(rng, rng.randint(4, 9)), "label": 1} for _ in range(40)]
    rows += [{"text": "\n".join(f"item {i} - {rng.randint(1, 999)} $ {rng.randint(1, 99)}.99 | {rng.randint(1, 9)}"
                                for i in range(rng.randint(10, 30))), "label": 0} for _ in range(20)]
    rows += [{"text": prose(rng, 1), "label": "bad"} for _ in range(15)]
    p = tmp_path / "labels.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"name": "t", "stages": [{"gopher_quality": {}}, {"c4": {}}]}))
    return p, cfg


def test_propose_meets_objective_and_agrees_with_the_stages(tmp_path):
    labels_file, cfg_file = labelled(tmp_path)
    stages = tune.text_filters(load_config(cfg_file))
    scored = tune.score_labels(tune.load_labels([labels_file]), stages)
    base = tune.result(tune.evaluate(scored)[0], scored.good)
    assert base.good_kept < 0.9  # C4's 5 sentences drop the 4-sentence good documents
    values = tune.propose(scored, keep_good=0.95)
    drop = tune.evaluate(scored, values)[0]
    r = tune.result(drop, scored.good)
    assert r.good_kept >= 0.95
    assert r.bad_drop_rate >= 0.9
    # the fast path and the stages' own decide() agree on every row
    assert (tune.check_with_stages(scored, values) == drop).all()
    ov = tune.overlay_dict(scored, values)
    v = ov["stages"]["c4"]["min_sentences"]
    assert v is None or v <= 4
    # loosen_only never drops a row the config keeps
    lo = tune.evaluate(scored, tune.propose(scored, keep_good=0.95, loosen_only=True))[0]
    assert not (lo & ~tune.evaluate(scored)[0]).any()


def test_split_is_stratified_and_disjoint():
    good = np.array([True] * 70 + [False] * 30)
    tr, te = tune.split(good, 0.3, seed=1)
    assert len(set(tr) & set(te)) == 0 and len(tr) + len(te) == 100
    assert good[te].sum() == 21 and (~good[te]).sum() == 9


def test_split_and_folds_keep_copies_of_a_text_together():
    # 40 distinct texts, each repeated 1-3 times (as the DCLM files repeat documents)
    texts = [f"doc {i}" for i in range(40) for _ in range(1 + i % 3)]
    labels = pa.table({"text": texts, "good": [int(t.split()[1]) % 2 == 0 for t in texts]})
    good, groups = np.asarray(labels["good"].to_pylist()), tune.text_groups(labels)
    assert groups.max() + 1 == 40
    tr, te = tune.split(good, 0.3, seed=3, groups=groups)
    assert len(tr) + len(te) == len(texts)
    assert not {texts[i] for i in tr} & {texts[i] for i in te}
    assert len({texts[i] for i in te}) == 12  # 30% of the 40 texts, 6 of each label
    fold = tune._group_folds(good, groups, 5, np.random.default_rng(0))
    for t in set(texts):
        assert len({fold[i] for i, x in enumerate(texts) if x == t}) == 1
    assert sorted(np.bincount(fold)) != [0] * 5 and set(fold) == set(range(5))


def test_roc_auc():
    y = np.array([1, 1, 0, 0], dtype=bool)
    assert tune.roc_auc(np.array([4.0, 3, 2, 1]), y) == 1.0
    assert tune.roc_auc(np.array([1.0, 2, 3, 4]), y) == 0.0
    assert tune.roc_auc(np.array([1.0, 1, 1, 1]), y) == 0.5


def test_bad_labels_name_the_line(tmp_path):
    p = tmp_path / "l.jsonl"
    p.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "maybe"}\n')
    with pytest.raises(tune.LabelError, match="l.jsonl:2"):
        tune.load_labels([p])


def test_cli_writes_overlay_that_run_config_accepts(tmp_path, capsys):
    labels_file, cfg_file = labelled(tmp_path)
    out = tmp_path / "ov.yaml"
    assert main(["tune-filters", str(labels_file), "--config", str(cfg_file), "--keep-good", "0.95",
                 "--holdout", "0.3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tuning split    proposed:" in text and "held-out split  proposed:" in text
    tuned_line = next(l for l in text.splitlines() if l.strip().startswith("tuning split    proposed"))
    assert "(meets the objective)" in tuned_line
    overlay = yaml.safe_load(out.read_text())
    assert "min_sentences" in overlay["stages"]["c4"]
    cfg = load_config(cfg_file, overlay=out)
    assert cfg.stages[1].resolved()["min_sentences"] == overlay["stages"]["c4"]["min_sentences"]
    # the proposal's figure on the tuning rows, recomputed from the overlay alone
    labels = tune.load_labels([labels_file])
    tr, _ = tune.split(np.asarray(labels["good"].to_pylist()), 0.3, 0, groups=tune.text_groups(labels))
    sc = tune.score_labels(labels, tune.text_filters(cfg)).subset(tr)
    assert tune.result(tune.evaluate(sc)[0], sc.good).good_kept >= 0.95


def test_overlay_errors(tmp_path, capsys):
    _, cfg_file = labelled(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stages": {"fineweb": {"min_line_punct_frac": 0.1}}}))
    with pytest.raises(ConfigError, match="no stage 'fineweb'"):
        load_config(cfg_file, overlay=bad)
    # datapipe run reports it as a usage error before anything runs
    assert main(["run", str(cfg_file), "--overlay", str(bad), "--quiet"]) == 2
    assert "no stage 'fineweb'" in capsys.readouterr().err
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"stages": {"c4": {"min_sentencez": 1}}}))
    with pytest.raises(ConfigError, match="min_sentencez"):
        load_config(cfg_file, overlay=wrong)


def test_refilter_applies_an_overlay(tmp_path, capsys):
    texts = [("the cat and the dog " * n).strip() for n in (20, 40, 80)]
    batch = pa.table({"id": ["a", "b", "c"], "text": pa.array(texts, pa.large_string())})
    # as a run's output: scored by both stages (the run's options keep all three rows)
    scored = build_stage("gopher_repetition", {}).ensure_setup()(batch)
    scored = build_stage("gopher_quality", {"max_words": 1000}).ensure_setup()(scored)
    (tmp_path / "output").mkdir()
    pq.write_table(scored, tmp_path / "output" / "s-00000.parquet")
    cfg = {"stages": [{"gopher_repetition": {"max_top_2gram_char_frac": None, "max_top_3gram_char_frac": None,
                                             "max_top_4gram_char_frac": None, **{f"max_dup_{k}gram_char_frac": None
                                                                                for k in range(5, 11)},
                                             "max_dup_line_frac": None, "max_dup_para_frac": None}},
                      {"gopher_quality": {"max_words": 1000}}]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    ov = tmp_path / "ov.yaml"
    ov.write_text(yaml.safe_dump({"stages": {"gopher_quality": {"min_words": 150, "max_words": 300}}}))
    assert main(["refilter", str(tmp_path), "--overlay", str(ov), "--write", str(tmp_path / "kept")]) == 0
    assert "kept now: 1" in capsys.readouterr().out
    assert pq.read_table(tmp_path / "kept" / "s-00000.parquet")["id"].to_pylist() == ["b"]
    # two stages in the run's order: the second reads what the first kept
    ov.write_text(yaml.safe_dump({"stages": {"gopher_quality": {"min_words": 150},
                                             "gopher_repetition": {"max_top_2gram_char_frac": 0.9}}}))
    assert main(["refilter", str(tmp_path), "--overlay", str(ov), "--write", str(tmp_path / "kept2")]) == 0
    out = capsys.readouterr().out
    assert out.index("refilter gopher_repetition") < out.index("refilter gopher_quality")
    assert pq.read_table(tmp_path / "kept2" / "s-00000.parquet")["id"].to_pylist() == ["b", "c"]


def test_dclm_labels_proposal_meets_objective_and_reports_held_out(tmp_path, capsys):
    files = [SHARED_DATA / p for p in tune.DCLM_LABELS]
    if not all(f.is_file() for f in files):
        missing(f"real data not available: {files[0].parent} is absent")
    out = tmp_path / "ov.yaml"
    assert main(["tune-filters", *map(str, files), "--config", "configs/default.yaml", "--keep-good", "0.9",
                 "--holdout", "0.3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # 30% of the 499 distinct texts held out, with every copy of each (780 rows)
    assert "tuning on 541, held out 239" in text.splitlines()[0]
    line = next(l for l in text.splitlines() if l.strip().startswith("tuning split    proposed"))
    assert "(meets the objective)" in line
    assert any(l.strip().startswith("held-out split  proposed") for l in text.splitlines())
    assert "held-out split:" in out.read_text()
    parse_config(yaml.safe_load(open("configs/default.yaml")), file="default")  # still valid
    load_config("configs/default.yaml", overlay=out)


def test_tuning_one_language_writes_per_language_and_keeps_the_others(tmp_path):
    labels_file, _ = labelled(tmp_path)
    rows = [json.loads(l) for l in labels_file.read_text().splitlines()]
    # the same documents again as French, where every document is labelled good
    rows = [dict(r, lang="en") for r in rows] + [dict(r, lang="fr", label=1) for r in rows]
    labels_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg_file = tmp_path / "cfg_pl.yaml"
    cfg_file.write_text(yaml.safe_dump({"name": "t", "stages": [
        {"gopher_quality": {"per_language": {"fr": {"min_words": 10}}}}, {"c4": {"per_language": {"fr": {"min_sentences": 1}}}}]}))
    stages = tune.text_filters(load_config(cfg_file))
    scored = tune.score_labels(tune.load_labels([labels_file]), stages, language="en")
    values = tune.propose(scored, keep_good=0.95)
    drop = tune.evaluate(scored, values)[0]
    en = np.array([i < len(rows) // 2 for i in range(len(rows))])
    fr_before = tune.evaluate(scored)[0][~en]
    assert (drop[~en] == fr_before).all()  # French rows keep their thresholds
    assert tune.result(drop[en], scored.good[en]).good_kept >= 0.95
    assert (tune.check_with_stages(scored, values) == drop).all()
    ov = tune.overlay_dict(scored, values)
    assert set(ov["stages"]["c4"]) == {"per_language"} and set(ov["stages"]["c4"]["per_language"]) == {"en"}
    out = tmp_path / "ov.yaml"
    out.write_text(yaml.safe_dump(ov))
    merged = load_config(cfg_file, overlay=out).stages[1].resolved()["per_language"]
    assert merged["fr"] == {"min_sentences": 1} and "min_sentences" in merged["en"]


def test_refilter_overlay_per_language(tmp_path, capsys):
    texts = [("the cat and the dog " * n).strip() for n in (20, 40, 80)]
    batch = pa.table({"id": ["a", "b", "c"], "text": pa.array(texts, pa.large_string()),
                      "lid_lang": pa.array(["en", "fr", "en"])})
    scored = build_stage("gopher_quality", {}).ensure_setup()(batch)
    (tmp_path / "output").mkdir()
    pq.write_table(scored, tmp_path / "output" / "s-00000.parquet")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {"stages": [{"gopher_quality": {"per_language": {"fr": {"min_words": 500}}}}]}))
    ov = tmp_path / "ov.yaml"
    ov.write_text(yaml.safe_dump({"stages": {"gopher_quality": {"per_language": {"en": {"min_words": 150}}}}}))
    assert main(["refilter", str(tmp_path), "--overlay", str(ov), "--write", str(tmp_path / "kept")]) == 0
    # en: 100 words < 150 drops a; fr keeps the run's 500 (b has 200 words: dropped); c passes
    assert pq.read_table(tmp_path / "kept" / "s-00000.parquet")["id"].to_pylist() == ["c"]
