"""The proxy-model mixture search (``datapipe mix search``): on a tiny run whose groups have
distinct token distributions, with a target drawn from one of them, it moves weight toward that
group, writes a spec the planner accepts, resumes without retraining, and its report shows up
in the HTML report. Tiny proxies and few candidates (seconds on one core)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datapipe.mix import MixError, load_spec, run_mix
from datapipe.mix import fit
from datapipe.mix.proxy import ProxyConfig
from datapipe.mix.search import SearchOptions, read_target_texts, search_mixture
from tests._mixdata import write_spec

#: three groups, each a bigram-ish language over its own 60 ids (so a proxy trained on a group
#: predicts that group's text well and the others' badly)
GROUPS = {"alpha": 0, "beta": 1000, "gamma": 2000}


def _doc(rng, base: int, n: int) -> np.ndarray:
    """A Markov chain over ids base..base+59: the next id is (prev*7+3) % 60 most of the time."""
    x = np.empty(n, np.int64)
    x[0] = rng.integers(60)
    for i in range(1, n):
        x[i] = (x[i - 1] * 7 + 3) % 60 if rng.random() < 0.8 else rng.integers(60)
    return (x + base).astype(np.uint32)


def _write_run(root: Path, docs: int = 40, seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = root / "output"
    out.mkdir(parents=True)
    rows = {"id": [], "text": [], "source": [], "n_tokens": [], "tokens": []}
    by_group = {}
    for g, base in GROUPS.items():
        by_group[g] = [_doc(rng, base, int(rng.integers(80, 200))) for _ in range(docs)]
        for j, t in enumerate(by_group[g]):
            rows["id"].append(f"{g}-{j}")
            rows["text"].append(f"doc {g} {j}")
            rows["source"].append(g)
            rows["n_tokens"].append(len(t))
            rows["tokens"].append(t)
    t = pa.table({"id": rows["id"], "text": pa.array(rows["text"], pa.large_string()), "source": rows["source"],
                  "n_tokens": pa.array(rows["n_tokens"], pa.int32()),
                  "tokens": pa.array([x.tolist() for x in rows["tokens"]], pa.list_(pa.uint32()))})
    pq.write_table(t, out / "part-00000.parquet")
    return by_group


TINY = ProxyConfig(d_model=32, layers=1, heads=2, seq_len=64, vocab=256, batch_size=8, lr=3e-3, tokens=12_000,
                   eval_tokens=3_000)


@pytest.fixture()
def run(tmp_path, monkeypatch):
    """A run (groups alpha/beta/gamma), a start spec favouring beta, and a target from alpha.
    The target's texts are tokenized by a stub stage that maps the text back to its ids (the
    real tokenizer would give ids outside the groups' ranges)."""
    _write_run(tmp_path / "run")
    rng = np.random.default_rng(7)
    target_docs = [_doc(rng, GROUPS["alpha"], 150) for _ in range(12)]
    (tmp_path / "target").mkdir()
    with open(tmp_path / "target" / "part.jsonl", "w") as fh:
        for d in target_docs:
            fh.write(json.dumps({"text": " ".join(map(str, d.tolist()))}) + "\n")
    spec = write_spec(tmp_path / "start.yaml", {"name": "start", "mode": "sampling", "max_epochs": 1.0, "groups": [
        {"name": g, "where": {"source": g}, "weight": w} for g, w in (("alpha", 0.2), ("beta", 0.6), ("gamma", 0.2))]})

    class DigitsTokenizer:
        def ensure_setup(self):
            pass

        def encode(self, texts):
            lists = [np.array([int(x) for x in s.split()], np.uint32) for s in texts]
            return np.concatenate(lists), np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)

        def settings(self):
            return {"name": "digits", "vocab_size": 4096, "eos_id": None}

    import datapipe.mix.search as search_mod
    import datapipe.mix.streams as streams_mod
    monkeypatch.setattr(search_mod, "tokenize_stage", lambda opts: DigitsTokenizer())
    monkeypatch.setattr(streams_mod, "tokenize_stage", lambda opts: DigitsTokenizer())
    return tmp_path, spec


def _opts(**kw):
    return SearchOptions(candidates=kw.pop("candidates", 8), seed=0, proxy=TINY, device="cpu",
                         holdout_tokens=1_500, **kw)


def test_search_moves_weight_to_the_target_group_and_writes_a_spec_the_planner_accepts(run):
    tmp, spec = run
    res = search_mixture(tmp / "run", spec, tmp / "target", options=_opts(), engine="local")
    d = res.data
    assert d["groups"] == ["alpha", "beta", "gamma"]
    assert abs(sum(d["start"].values()) - 1) < 1e-9 and abs(d["start"]["beta"] - 0.6) < 1e-9
    # the target is alpha's language: the fit ranks candidates and moves weight to alpha
    assert d["fit"]["cv_spearman"] > 0.5, d["fit"]
    assert d["chosen"]["alpha"] > d["start"]["alpha"] + 0.2, d["chosen"]
    assert d["predicted"]["chosen"] < d["predicted"]["start"]
    # each candidate: achieved shares = its weights (no epoch caps), held-out losses of every group
    for c in d["candidates"]:
        assert set(c["losses"]) == {"alpha", "beta", "gamma", "target"}
        assert np.allclose([c["shares"][g] for g in d["groups"]], c["weights"], atol=0.05)
        assert abs(c["tokens"] - TINY.tokens) < 250
    # a proxy trained mostly on alpha is better on alpha's held-out docs than one trained mostly on beta
    by_alpha = sorted(d["candidates"], key=lambda c: c["shares"]["alpha"])
    assert by_alpha[-1]["losses"]["alpha"] < by_alpha[0]["losses"]["alpha"]
    # the written spec: the start spec with explicit weights; `datapipe mix` plans and writes it
    s = load_spec(res.out_spec)
    assert s.name == "start-searched" and [g.name for g in s.groups] == ["alpha", "beta", "gamma"]
    assert s.mode == "sampling" and s.max_epochs == 1.0
    assert abs(s.groups[0].weight - d["chosen"]["alpha"]) < 1e-3
    plan = run_mix(tmp / "run", res.out_spec)
    shares = plan.shares()
    assert shares["alpha"] == pytest.approx(d["chosen"]["alpha"], abs=0.05)
    assert (tmp / "run" / "mix" / "start-searched" / "manifest.json").is_file()
    # nothing of the search lies in the curated output; no candidate stream is left behind
    assert sorted(p.name for p in (tmp / "run" / "output").iterdir()) == ["part-00000.parquet"]
    assert not any((res.search_dir / "streams").glob("cand-*"))


def test_held_out_documents_are_never_trained_on(run):
    tmp, spec = run
    res = search_mixture(tmp / "run", spec, tmp / "target", options=_opts(candidates=3, keep_streams=True),
                         engine="local")
    held = set()
    for g in ("alpha", "beta", "gamma"):
        held |= set(pq.read_table(res.search_dir / "holdout" / g / "data", columns=["id"])["id"].to_pylist())
    assert held and all(h.split("-")[0] in GROUPS for h in held)
    for i in range(3):
        trained = set(pq.read_table(res.search_dir / "streams" / f"cand-{i:03d}" / "data", columns=["id"])["id"].to_pylist())
        assert trained and not trained & held


def test_resume_reuses_finished_candidates(run, monkeypatch):
    tmp, spec = run
    import datapipe.mix.search as search_mod
    calls, die = [], [True]
    real = search_mod._candidate

    def counting(item):
        calls.append(item["index"])
        if item["index"] == 2 and die[0]:
            raise RuntimeError("killed")  # the search dies after two candidates finished
        return real(item)

    monkeypatch.setattr(search_mod, "_candidate", counting)
    with pytest.raises(RuntimeError, match="killed"):
        search_mixture(tmp / "run", spec, tmp / "target", options=_opts(candidates=4), engine="local")
    assert sorted(p.name for p in (tmp / "run" / "mix_search" / "start" / "candidates").glob("*.json")) == \
        ["cand-000.json", "cand-001.json"]
    calls.clear()
    die[0] = False
    first = search_mixture(tmp / "run", spec, tmp / "target", options=_opts(candidates=4), engine="local")
    assert calls == [2, 3] and first.data["trained_now"] == 2
    calls.clear()
    again = search_mixture(tmp / "run", spec, tmp / "target", options=_opts(candidates=4), engine="local")
    assert calls == [] and again.data["trained_now"] == 0
    assert again.data["chosen"] == first.data["chosen"]
    # other settings in the same folder: refused unless --fresh
    with pytest.raises(MixError, match="--fresh"):
        search_mixture(tmp / "run", spec, tmp / "target", options=_opts(candidates=5), engine="local")


def test_report_shows_the_search(run):
    from datapipe.report import collect, render
    tmp, spec = run
    search_mixture(tmp / "run", spec, tmp / "target", options=_opts(candidates=4), engine="local")
    (tmp / "run" / "stats.json").write_text(json.dumps({"stages": [], "steps": []}))
    data = collect(tmp / "run")
    [s] = data["mix_searches"]
    assert s["spec"] == "start" and len(s["candidates"]) == 4
    html = render(data)
    assert 'id="mix-search"' in html and "start-searched" in html and "predicted" in html


def test_target_reader_and_errors(tmp_path):
    (tmp_path / "t").mkdir()
    pq.write_table(pa.table({"text": ["one", "", "two"]}), tmp_path / "t" / "a.parquet")
    (tmp_path / "t" / "b.jsonl").write_text('{"text": "three"}\n')
    assert read_target_texts(tmp_path / "t")["text"].to_pylist() == ["one", "two", "three"]
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "c.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(MixError, match="`text` field"):
        read_target_texts(tmp_path / "u")
    with pytest.raises(MixError, match="not found"):
        read_target_texts(tmp_path / "missing")


def test_fit_ranks_a_linear_truth_and_choice_stays_in_the_explored_region():
    rng = np.random.default_rng(0)
    X = rng.dirichlet([1, 1, 1], 16)
    y = 3.0 - 1.5 * X[:, 0] + 0.2 * X[:, 1] + rng.normal(0, 0.01, 16)
    coef = fit.fit_ridge(X, y)
    assert fit.spearman(fit.loo_predictions(X, y), y) > 0.9
    w, pred = fit.choose(coef, np.array([1.0, 1.0, 1.0]), seed=0)
    assert w[0] > 0.6 and abs(w.sum() - 1) < 1e-9 and w.min() > 0   # toward group 0, not a corner
    assert pred < fit.predict(coef, np.array([[1 / 3] * 3]))[0]


def test_cli_mix_search_and_its_errors(run, capsys):
    from datapipe.cli import main
    tmp, spec = run
    assert main(["mix", "search", str(tmp / "run"), "--spec", str(spec)]) == 2
    assert "--target is required" in capsys.readouterr().err
    assert main(["mix", str(tmp / "run"), str(tmp / "run"), "--spec", str(spec)]) == 2
    assert "mix search RUN_DIR" in capsys.readouterr().err
    rc = main(["mix", "search", str(tmp / "run"), "--spec", str(spec), "--target", str(tmp / "target"),
               "--candidates", "3", "--proxy-tokens", "3000", "--engine", "local", "--device", "cpu", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "leave-one-out Spearman" in out and "start-searched.yaml" in out
    assert load_spec(tmp / "run" / "mix_search" / "start" / "start-searched.yaml").weighting == "explicit"
    # the plain `mix` command still plans as before
    assert main(["mix", "--dry-run", str(tmp / "run"), "--spec", str(spec)]) == 0
