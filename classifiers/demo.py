"""``datapipe classify demo`` (``make classify-demo``): the labelling loop with a real language
model, measured against people.

1. Start ``classify serve --model smollm2`` in this process (SmolLM2-135M-Instruct on CPU, or
   CUDA when present) -- or use ``--base-url`` (vLLM, llama.cpp, any OpenAI-compatible server).
2. Split DCLM's human-labelled pages (499 distinct pages of CommonCrawl, binary good/bad) into a
   train part and a held-out part (stratified, seeded); sample ``--n`` pages of the train part.
3. ``classify label`` them with ``quality_edu_score_v1`` (FineWeb-Edu's 0-5 scale, score only,
   logprobs -> label probabilities and the expected score).
4. ``classify eval``: the labeller's agreement with the human labels of those pages.
5. ``classify train`` fastText on the LLM labels (target: expected score) and, for comparison,
   on the human labels of the same pages and of the whole train part; score all of them on the
   held-out human labels, print the figures and write them into the model cards.

Without the human labels (``../shared/data`` absent) it says so and runs ``--crawl`` instead:
pipeline run over the sample crawl -> sample -> label -> train -> apply as pipeline stages.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]


def default_human_dir() -> Path:
    import os
    shared = Path(os.environ.get("DATAPIPE_SHARED_DATA") or REPO / ".." / "shared" / "data")
    from .agreement import DCLM_DIR
    return (shared / DCLM_DIR).resolve()


@contextlib.contextmanager
def labelling_server(args):
    """(base_url, model name or None): ``--base-url`` as given, else a local :class:`ModelServer`."""
    if args.base_url:
        print(f"== labelling with {args.base_url}" + (f" (model {args.model})" if args.model else ""), flush=True)
        yield args.base_url, (args.model if args.model != "smollm2" else None)
        return
    from .server import ModelServer
    t0 = time.time()
    print(f"== starting a local model server: datapipe classify serve --model {args.model}", flush=True)
    srv = ModelServer(args.model, max_batch=8).start()
    print(f"   {srv.model_id} on {srv.device} at {srv.base_url} ({time.time() - t0:.1f}s)\n", flush=True)
    try:
        yield srv.base_url, srv.model_id
    finally:
        h = srv.health()
        print(f"== model server: {h['requests']} requests in {h['batches']} batches, {h['prompt_tokens']} prompt "
              f"tokens, {h['model_seconds']:.1f}s of model time", flush=True)
        srv.stop()


#: the command line's ``main(argv) -> exit code``; ``run_demo`` receives it (classifiers/ never
#: imports the command line: tests/test_layout.py)
_cli = None


def _step(title: str, argv: list[str]) -> None:
    datapipe_main = _cli
    print(f"== {title}\n$ datapipe {' '.join(argv)}", flush=True)
    t0 = time.time()
    rc = datapipe_main(argv)
    if rc:
        raise SystemExit(rc)
    print(f"   ({time.time() - t0:.1f}s)\n", flush=True)


def run_demo(args, cli_main) -> int:
    """The demo; ``cli_main`` is ``datapipe.cli.main`` (each step runs a ``datapipe`` command).
    Raises :class:`classifiers.server.ModelLoadError` when the local model cannot start."""
    global _cli
    _cli = cli_main
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    human_dir = Path(args.human) if args.human else default_human_dir()
    if not args.crawl and not human_dir.exists():
        print(f"== human labels not found at {human_dir}: no agreement figures can be measured. "
              f"Running the loop on the project's sample crawl instead (--crawl).\n", flush=True)
        args.crawl = True
    with labelling_server(args) as (base_url, model):
        model_args = ["--model", model] if model else []
        if args.crawl:
            return _crawl_demo(args, d, base_url, model_args)
        return _human_demo(args, d, base_url, model_args, human_dir)


# ---------------------------------------------------------------------------

def _human_demo(args, d: Path, base_url: str, model_args: list[str], human_dir: Path) -> int:
    import pyarrow.parquet as pq

    from datapipe.rundir import atomic_write_json, write_parquet_atomic

    from .agreement import classifier_vs_human, load_human
    from .apply import read_card
    from .train import _write_card, split

    human, info = load_human(human_dir)
    print(f"== human labels: {human_dir}: {info['lines']} lines, {info['distinct']} distinct pages "
          f"(the two files overlap; deduplicated by text)"
          + (f", {info['conflicting_dropped']} with conflicting labels dropped" if info["conflicting_dropped"] else "")
          + f"; {sum(human['human'].to_pylist())} good / {human.num_rows - sum(human['human'].to_pylist())} bad")
    ys = [str(int(x)) for x in human["human"].to_pylist()]
    tr, te = split(ys, test_fraction=args.test_fraction, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    n = min(args.n, len(tr))
    pick = np.sort(rng.choice(tr, size=n, replace=False))
    train_all, test = human.take(pa.array(tr)), human.take(pa.array(te))
    sample = human.take(pa.array(pick))
    print(f"   held out for the classifiers: {test.num_rows} pages; train part {train_all.num_rows}; "
          f"the LLM labels {n} pages of the train part (seed {args.seed})\n", flush=True)
    write_parquet_atomic(sample.drop(["human"]), d / "sample.parquet")  # the labeller never sees the human label
    labels = d / "llm_labels.parquet"
    _step(f"1. label {n} pages with the LLM (prompt {args.prompt}: FineWeb-Edu 0-5 scale; logprobs -> expected score)",
          ["classify", "label", str(d / "sample.parquet"), "--prompt", args.prompt, "--base-url", base_url,
           *model_args, "--out", str(labels), "--concurrency", str(args.concurrency), "--timeout", "600",
           "--quiet"])
    _step("2. the labeller against the human labels of the same pages",
          ["classify", "eval", str(labels), "--human", str(human_dir), "--out", str(d / "agreement.json")])
    agreement = json.loads((d / "agreement.json").read_text())

    def write_human(t: pa.Table, path: Path) -> Path:
        write_parquet_atomic(pa.table({"id": t["id"], "text": t["text"],
                                       "label": pa.array([str(int(x)) for x in t["human"].to_pylist()])}), path)
        return path

    models = d / "models"
    runs = []
    llm = pq.read_table(labels)
    target = "expected" if llm["label_expected"].null_count < llm.num_rows else "argmax"
    from .train import load_labels
    distinct = sorted(set(load_labels(labels, target=target).labels))
    if len(distinct) >= 2:
        runs.append((f"fastText on LLM labels ({n} pages, target {target})", models / "quality_llm_labels",
                     ["classify", "train", str(labels), "--task", "quality", "--target", target]))
    else:
        print(f"== cannot train on the LLM labels: every page got label {distinct} (target {target}); "
              f"a 135M model rates nearly everything the same\n", flush=True)
    runs.append((f"fastText on human labels, same {n} pages", models / "quality_human_same_pages",
                 ["classify", "train", str(write_human(sample, d / "human_same_pages.parquet")), "--task", "quality"]))
    runs.append((f"fastText on human labels, all {train_all.num_rows} train pages", models / "quality_human_all",
                 ["classify", "train", str(write_human(train_all, d / "human_train.parquet")), "--task", "quality"]))
    results = {}
    for i, (title, out, argv) in enumerate(runs):
        _step(f"3{'abc'[i]}. train {title}", argv + ["--out", str(out)])
        res = classifier_vs_human(out, test)
        results[title] = res
        card = read_card(out)
        card["human_eval"] = {"held_out_pages": res["n"], "roc_auc": res["roc_auc"], "accuracy": res["accuracy"],
                              "majority_baseline": res["majority_baseline"], "spearman": res["spearman"],
                              "source": str(human_dir)}
        if "LLM" in title:
            card["labeller_agreement"] = {k: agreement.get(k) for k in (
                "matched", "threshold", "accuracy", "majority_baseline", "roc_auc_expected", "roc_auc_label",
                "spearman_expected", "text_parse_failure_rate", "parse_failure_rate")}
        _write_card(out, card)
    atomic_write_json(d / "demo_results.json", {"agreement": agreement, "classifiers": results,
                                                "human_file": info, "n_labelled": n, "held_out": test.num_rows})
    a = agreement
    print(f"== results (held-out: {test.num_rows} human-labelled pages neither labelled by the LLM nor trained on)")
    print(f"  the LLM labeller on its {a['matched']} pages: accuracy {a.get('accuracy', float('nan')):.3f} at "
          f"score >= {a['threshold']:g} (majority baseline {a.get('majority_baseline', float('nan')):.3f}), "
          f"ROC AUC expected score {_f(a.get('roc_auc_expected'))}, ROC AUC label {_f(a.get('roc_auc_label'))}, "
          f"Spearman {_f(a.get('spearman_expected', a.get('spearman_label')))}; "
          f"replies whose text did not parse {a['text_parse_failure_rate']:.1%}, left without a label "
          f"{a['parse_failure_rate']:.1%}")
    for title, r in results.items():
        print(f"  {title}: ROC AUC {_f(r['roc_auc'])}, accuracy {r['accuracy']:.3f} "
              f"(majority baseline {r['majority_baseline']:.3f}), Spearman {_f(r['spearman'])}")
    print(f"model cards: {models}/*/MODEL_CARD.md; figures: {d / 'demo_results.json'}")
    return 0


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# ---------------------------------------------------------------------------

def _crawl_demo(args, d: Path, base_url: str, model_args: list[str]) -> int:
    crawl = d / "sample_crawl"
    if not (crawl / "_complete").exists():
        from datapipe.samplecrawl import build_sample_crawl
        print(f"== building a {args.pages}-page sample crawl in {crawl}")
        build_sample_crawl(crawl, n_pages=args.pages)
        (crawl / "_complete").write_text("ok\n")
    warcs = sorted(str(p) for p in crawl.glob("*.warc.gz"))
    _step("1. a pipeline run over the sample crawl (what we sample from)",
          ["run", args.config, "--input", *warcs, "--run-dir", str(d / "crawl"), "--quiet"])
    _step("2. sample: stratified by source, language, domain",
          ["classify", "sample", str(d / "crawl"), "--n", str(args.n), "--seed", str(args.seed),
           "--out", str(d / "sample.parquet")])
    _step(f"3. label quality (prompt {args.prompt})",
          ["classify", "label", str(d / "sample.parquet"), "--prompt", args.prompt, "--base-url", base_url,
           *model_args, "--out", str(d / "labels_quality.parquet"), "--concurrency", str(args.concurrency),
           "--timeout", "600", "--quiet"])
    import pyarrow.parquet as pq
    lab = pq.read_table(d / "labels_quality.parquet")
    target = "expected" if lab["label_expected"].null_count < lab.num_rows else "argmax"
    _step(f"4. train the quality classifier (fastText, target {target})",
          ["classify", "train", str(d / "labels_quality.parquet"), "--task", "quality", "--target", target,
           "--out", str(d / "models" / "quality_fasttext")])
    if args.embed:
        _step("4b. train the quality head on MiniLM sentence embeddings",
              ["classify", "train", str(d / "labels_quality.parquet"), "--task", "quality", "--backend", "embed",
               "--target", target, "--out", str(d / "models" / "quality_embed")])
    apply_cfg = REPO / "configs" / "classify_demo.yaml"
    if d.resolve() != (REPO / "runs" / "classify_demo").resolve():
        # the config names the default demo folder; point a copy at this one
        text = apply_cfg.read_text().replace("runs/classify_demo/", f"{d.as_posix().rstrip('/')}/")
        apply_cfg = d / "classify_demo.yaml"
        apply_cfg.write_text(text)
    _step(f"5. apply it as a pipeline stage ({apply_cfg}) to the run's output",
          ["run", str(apply_cfg), "--input", str(d / "crawl" / "output"), "--run-dir", str(d / "classified"),
           "--fresh", "--quiet"])
    _crawl_summary(d / "classified")
    print(f"model card: {d / 'models' / 'quality_fasttext' / 'MODEL_CARD.md'}")
    return 0


def _crawl_summary(run_dir: Path) -> None:
    import pyarrow.parquet as pq
    files = sorted((run_dir / "output").rglob("*.parquet"))
    if not files:
        print("no documents survived the demo pipeline")
        return
    t = pa.concat_tables([pq.read_table(f, columns=["url", "quality_score"]) for f in files])
    q = np.array(t["quality_score"].to_pylist(), dtype=float)
    print(f"== {t.num_rows} documents kept; quality_score mean {q.mean():.2f}, min {q.min():.2f}, max {q.max():.2f}")
    rows = sorted(t.to_pylist(), key=lambda r: -r["quality_score"])
    for r in rows[:3] + rows[-3:]:
        print(f"  {r['quality_score']:.2f}  {r['url']}")
