"""Every heuristic filter and rule of a config measured against human labels, and per page type.

    .venv/bin/python bench/filters_vs_humans.py                       # DCLM labels, configs/default.yaml
    .venv/bin/python bench/filters_vs_humans.py --labels my.jsonl --config my.yaml --overlay tuned.yaml
    .venv/bin/python bench/filters_vs_humans.py --holdout 0.3         # figures on the held-out split too
    .venv/bin/python bench/filters_vs_humans.py --definitions         # token / sentence definitions compared

Labels: JSONL with ``text`` and ``label`` (1/0, good/bad), by default the 780 DCLM
human-labelled Common Crawl documents (``../shared/data/quality/dclm-human-quality-labels``,
424 good, 356 bad). The config's text filters (:func:`datapipe.tune.text_filters`: length,
langid, the Gopher/C4/FineWeb rules, nsfw_words in the default config) score every document
as a run would; nothing is dropped before scoring, so each rule is measured alone (each
stage on the original text) and in the cascade (a drop is charged to the first rule that
fails, in config order).

Printed: per stage and per rule, good and bad documents dropped and the precision of the
drops (share that are bad); the cascade; ROC AUC for "good" of every rule's score column
(oriented so that the side the rule keeps is "good") and of the ``perplexity`` stage's score
(KenLM models in ``runs/_sample_crawl/lm``; lower is better), with the 60th-percentile tail
that ``perplexity_buckets`` drops; ``--classifier DIR`` adds a trained quality classifier's
AUC. Per page type: the magic-html gold set under ``../shared/data/warc/realpages`` carries a
``page_kind`` (article, forum) and the human-extracted main content, which the cascade scores
directly (extraction plays no part). ``--holdout F`` also prints everything for a seeded,
label-stratified split of F of the labels (the split ``datapipe tune-filters`` holds out with
the same seed). ``--definitions`` compares the token and sentence definitions (the options
``gopher_quality.alpha_words_of``, ``c4.end_marks``, ``fineweb.line_end``): each column's AUC,
and the good documents its rule drops at the threshold that drops as many bad documents as
the current definition does at its default.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datapipe import tune  # noqa: E402
from datapipe.config import apply_overlay, load_overlay  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
GOLD = DATA / "warc" / "realpages" / "realpages-magic-html-benchmark.gold.jsonl"
LM_DIR = ROOT / "runs" / "_sample_crawl" / "lm"

#: the options that change a token or sentence definition, and their values (default first)
DEFINITIONS = {
    ("gopher_quality", "alpha_words_of"): ("tokens", "words", "min_alpha_words", "gq_alpha_words"),
    ("c4", "end_marks"): ("tfds", "closing", "min_sentences", "c4_sentences"),
    ("fineweb", "line_end"): ("last_char", "strip", "min_line_punct_frac", "fw_line_punct_frac"),
}


def pct(a: int, b: int) -> str:
    return f"{a} ({100 * a / b:.1f}%)" if b else "0"


def stage_table(full: tune.Scored, alone: tune.Scored) -> list[str]:
    """Per stage and rule: dropped alone (stage on the original text, config thresholds) and
    charged in the cascade."""
    g = full.good
    ng, nb = int(g.sum()), int((~g).sum())
    _, casc_reason = tune.evaluate(full)
    out = [f"{'stage / rule':<46}{'alone: good':>13}{'bad':>13}{'prec':>7}{'cascade: good':>15}{'bad':>13}"]
    out.append("-" * len(out[0]))
    a_fixed = {l: m for l, m, _ in alone.fixed}
    for ref in full.stages:
        if ref.label in a_fixed:
            m = a_fixed[ref.label]
            own = {x for l, _, rs in full.fixed if l == ref.label for x in rs if x is not None}
            cm = np.array([r in own for r in casc_reason])
        else:
            ts = [t for t in alone.tunables if t.label == ref.label]
            m = np.zeros(len(g), dtype=bool)
            for t in ts:
                m |= t.fails(t.value)
            rules = {t.rule for t in ts}
            cm = np.array([r in rules for r in casc_reason])
        r = tune.result(m, g)
        out.append(f"{ref.label:<46}{pct(r.good_dropped, ng):>13}{pct(r.bad_dropped, nb):>13}"
                   f"{100 * r.precision:>6.0f}%{pct(int((cm & g).sum()), ng):>15}{pct(int((cm & ~g).sum()), nb):>13}")
        by_rule: dict[str, np.ndarray] = {}
        for t in (x for x in alone.tunables if x.label == ref.label):
            by_rule[t.rule] = by_rule.get(t.rule, np.zeros(len(g), dtype=bool)) | t.fails(t.value)
        for rule, rm in by_rule.items():
            if not rm.any() and not any(x == rule for x in casc_reason):
                continue
            rr = tune.result(rm, g)
            cm = casc_reason == rule
            out.append(f"  {rule:<44}{pct(rr.good_dropped, ng):>13}{pct(rr.bad_dropped, nb):>13}"
                       f"{100 * rr.precision:>6.0f}%{pct(int((cm & g).sum()), ng):>15}{pct(int((cm & ~g).sum()), nb):>13}")
    d, _ = tune.evaluate(full)
    r = tune.result(d, g)
    out.append(f"{'the cascade':<46}{'':>13}{'':>13}{'':>7}{pct(r.good_dropped, ng):>15}{pct(r.bad_dropped, nb):>13}"
               f"   precision {100 * r.precision:.1f}%, good kept {100 * r.good_kept:.1f}%")
    return out


def auc_lines(full: tune.Scored) -> list[str]:
    out = []
    for t in full.tunables:
        if t.op in ("true", "set"):
            continue
        s = t.scores if t.op in ("<", "<=") else -t.scores  # the side the rule keeps is "good"
        auc = tune.roc_auc(s, full.good)
        if np.isfinite(auc):
            out.append(f"  {t.key:<52} AUC {auc:.3f}")
    return out


def perplexity_lines(labels: pa.Table, full: tune.Scored, classifier: str | None) -> list[str]:
    from datapipe.stage import build_stage

    out, ppl = [], None
    if LM_DIR.is_dir():
        st = build_stage("perplexity", {"model_dir": str(LM_DIR)}).ensure_setup()
        t = pa.table({"id": labels["id"], "text": labels["text"],
                      "lid_lang": full.table["lid_lang"] if "lid_lang" in full.table.column_names
                      else pa.array(["en"] * labels.num_rows)})
        ppl = np.array([np.nan if x is None else x for x in st.score(t)["ppl"].to_pylist()], dtype=float)
        auc = tune.roc_auc(-ppl, full.good)
        ok = np.isfinite(ppl)
        p60 = np.quantile(ppl[ok], 0.6)
        r = tune.result(ok & (ppl > p60), full.good)
        out.append(f"  perplexity ({LM_DIR.relative_to(ROOT)}): {ok.sum()} scored, AUC {auc:.3f}; "
                   f"60th-percentile tail dropped: {r.line()}")
    else:
        out.append(f"  perplexity: no models in {LM_DIR} (`make models`)")
    if classifier:
        st = build_stage("quality_classifier", {"model": classifier}).ensure_setup()
        q = np.array(st.score(pa.table({"id": labels["id"], "text": labels["text"]}))["quality_score"].to_pylist(),
                     dtype=float)
        out.append(f"  quality_classifier ({classifier}): AUC {tune.roc_auc(q, full.good):.3f}")
    return out, ppl


def train_quality_classifier(labels: pa.Table, good: np.ndarray, idx: np.ndarray, out: Path) -> str:
    """A fastText quality classifier (``classifiers/train.py``, the product's trainer) on the
    distinct texts of the rows ``idx`` (the tuning split): what a user gets from
    ``datapipe classify train`` on human labels. Returns the model folder."""
    from classifiers.train import LabelledData, train_classifier

    seen, texts, labs, ids = set(), [], [], []
    for i in idx:
        t = labels["text"][int(i)].as_py()
        if t not in seen:
            seen.add(t)
            texts.append(t), labs.append("1" if good[i] else "0"), ids.append(f"l{int(i)}")
    card = train_classifier(LabelledData(texts, labs, ids, sources=["human labels, tuning split"]), out,
                            task="quality", name="quality-human-tuning-split", seed=0)
    print(f"  trained fastText on {len(texts)} distinct tuning texts in {card['train_seconds']} s -> {out}")
    return str(out)


def classifier_lines(labels: pa.Table, full: tune.Scored, splits, model: str) -> list[str]:
    """The quality classifier alone, and after the cascade: the lowest-scoring share of what the
    rules keep dropped (percentiles of the survivors' scores; nothing tuned on the labels)."""
    from datapipe.stage import build_stage

    st = build_stage("quality_classifier", {"model": model}).ensure_setup()
    q = np.array(st.score(pa.table({"id": labels["id"], "text": labels["text"]}))["quality_score"].to_pylist(),
                 dtype=float)
    out = []
    for name, idx in splits:
        s = full.subset(idx)
        d = tune.evaluate(s)[0]
        qi = q[idx]
        out.append(f"  {name:<28} classifier AUC {tune.roc_auc(qi, s.good):.3f}")
        for frac in (0.3, 0.5):
            cut = np.quantile(qi, frac)
            out.append(f"  {name:<28} classifier alone, lowest {int(100 * frac)}%: {tune.result(qi < cut, s.good).line()}")
        for frac in (0.2, 0.3, 0.4):
            cut = np.quantile(qi[~d], frac)
            out.append(f"  {name:<28} cascade + lowest {int(100 * frac)}% of survivors: "
                       f"{tune.result(d | (qi < cut), s.good).line()}")
    return out


def gold_pages() -> pa.Table:
    rows = [json.loads(line) for line in GOLD.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("gold_content") and r.get("page_kind")]
    return pa.table({"id": pa.array([f"g{i}" for i in range(len(rows))]),
                     "text": pa.array([r["gold_content"] for r in rows], pa.large_string()),
                     "good": pa.array([True] * len(rows)),
                     "kind": pa.array([r["page_kind"] for r in rows])})


def page_type_lines(stages, values=None) -> list[str]:
    if not GOLD.is_file():
        return [f"  {GOLD} is absent (../shared/data is needed)"]
    pages = gold_pages()
    sc = tune.score_labels(pages, stages)
    d, reason = tune.evaluate(sc, values)
    kinds = np.array(pages["kind"].to_pylist())
    langs = np.array(sc.table["lid_lang"].to_pylist()) if "lid_lang" in sc.table.column_names else None
    # length and langid choose what to curate; the goal is about what the quality rules drop after them
    pre = np.array([r is not None and str(r).startswith(("length", "langid")) for r in reason])
    out = []
    for subset, sel_all in (("all languages", np.ones(len(kinds), dtype=bool)),
                            ("English (langid)", langs == "en" if langs is not None else None)):
        if sel_all is None:
            continue
        for k in sorted(set(kinds)):
            sel = sel_all & (kinds == k)
            n, m = int(sel.sum()), int((sel & ~pre).sum())
            top = Counter(reason[sel & d & ~pre]).most_common(3)
            out.append(f"  {subset:<17} {k:<8} {n:>4} pages, dropped {pct(int((d & sel).sum()), n):>12}; of the {m:>3} "
                       f"past length+langid the rules drop {pct(int((d & sel & ~pre).sum()), m):>12}  "
                       + ", ".join(f"{r} {c}" for r, c in top))
    return out


def definitions_lines(labels: pa.Table, stages, idx: np.ndarray, what: str) -> list[str]:
    """Each definition's column: AUC, and good dropped when its rule alone drops as many bad as the
    default definition does at the default threshold (on the rows ``idx``)."""
    out = []
    for (stage, opt), (default, alt, thr_opt, column) in DEFINITIONS.items():
        ref = next((s for s in stages if s.name == stage), None)
        if ref is None:
            continue
        res = {}
        for val in (default, alt):
            st = [tune.StageRef(s.label, s.name, dict(s.options, **({opt: val} if s is ref else {})))
                  for s in stages if s.name in ("length", "langid") or s is ref]
            sc = tune.score_labels(labels, st, chain=True).subset(idx)
            t = next(t for t in sc.tunables if t.label == ref.label and t.option == thr_opt)
            res[val] = (sc, t)
        sc0, t0 = res[default]
        target = tune.result(t0.fails(t0.value), sc0.good).bad_dropped
        for val, (sc, t) in res.items():
            s = t.scores if t.op in ("<", "<=") else -t.scores
            auc = tune.roc_auc(s, sc.good)
            # the threshold of this definition that drops at least `target` bad documents with fewest good
            best = None
            for c in t.candidates(200):
                r = tune.result(t.fails(c), sc.good)
                if r.bad_dropped >= target and (best is None or r.good_dropped < best[1].good_dropped):
                    best = (c, r)
            at = (f"{thr_opt}={best[0]}: {best[1].line()}" if best else "cannot reach it")
            out.append(f"  [{what}] {stage}.{opt}={val:<10} {column} AUC {auc:.3f}; at >= {target} bad dropped: {at}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", nargs="+", default=[str(DATA / p) for p in tune.DCLM_LABELS])
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    ap.add_argument("--overlay", help="overlay YAML (datapipe tune-filters output) applied to the config")
    ap.add_argument("--holdout", type=float, default=0.0, help="also report a held-out split of this fraction")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--definitions", action="store_true", help="compare token / sentence definitions")
    ap.add_argument("--classifier", help="a trained quality_classifier model folder: add its AUC")
    ap.add_argument("--train-classifier", metavar="DIR",
                    help="train a fastText quality classifier on the tuning split's texts into DIR (needs "
                         "--holdout) and show what it adds to the cascade, held out")
    args = ap.parse_args()

    import yaml

    data = yaml.safe_load(Path(args.config).read_text())
    if args.overlay:
        data = apply_overlay(data, load_overlay(args.overlay), file=args.overlay)
    from datapipe.config import parse_config
    cfg = parse_config(data, file=args.config)
    stages = tune.text_filters(cfg)
    labels = tune.load_labels(args.labels)
    good = np.asarray(labels["good"].to_pylist())
    print(f"labels: {labels.num_rows} documents ({int(good.sum())} good, {int((~good).sum())} bad) from "
          f"{', '.join(Path(p).name for p in args.labels)}; config {args.config}"
          + (f" + overlay {args.overlay}" if args.overlay else ""))
    print(f"cascade: {' -> '.join(s.label for s in stages)}")
    full = tune.score_labels(labels, stages, chain=True)
    alone = tune.score_labels(labels, stages, chain=False)
    splits = [("all labels", np.arange(labels.num_rows))]
    if args.holdout:
        tr, te = tune.split(good, args.holdout, args.seed, groups=tune.text_groups(labels))
        splits += [(f"tuning split ({len(tr)})", tr), (f"held-out split ({len(te)}, seed {args.seed})", te)]
    for name, idx in splits:
        print(f"\n== {name}: dropped per stage and rule (config thresholds)")
        print("\n".join(stage_table(full.subset(idx), alone.subset(idx))))
    print("\n== ROC AUC for 'good' of each rule's score column (all labels; each stage on the original text)")
    print("\n".join(auc_lines(alone)))
    lines, ppl = perplexity_lines(labels, full, args.classifier)
    print("\n".join(lines))
    if ppl is not None:
        print("\n== what the perplexity model adds: the cascade, then the tail of its survivors above a percentile")
        for name, idx in splits:
            s = full.subset(idx)
            d = tune.evaluate(s)[0]
            p = ppl[idx]
            for q in (0.6, 0.8, 0.9):
                cut = np.nanquantile(p[~d], q)
                print(f"  {name:<28} tail above p{int(100 * q)}: {tune.result(d | (p > cut), s.good).line()}")
    if args.train_classifier:
        if not args.holdout:
            ap.error("--train-classifier needs --holdout (it trains on the tuning split)")
        print("\n== what a quality classifier trained on the tuning split's human labels adds")
        model = train_quality_classifier(labels, good, splits[1][1], Path(args.train_classifier))
        print("\n".join(classifier_lines(labels, full, splits[1:], model)))
    print("\n== page types: human-extracted main content of the magic-html gold set, the cascade")
    print("\n".join(page_type_lines(stages)))
    if args.definitions:
        print("\n== token and sentence definitions (rule alone, after length and langid)")
        for name, idx in splits:
            print("\n".join(definitions_lines(labels, stages, idx, name)))


if __name__ == "__main__":
    main()
