"""Known-answer check of ``datapipe mix search`` (RegMix-style proxy search), with its seed noise.

Builds a curated run of four groups from real text, all tokenized with the run's tokenizer
(Llama 3, as the default config's tokenize stage):

- ``web_en`` / ``web_other``: the default pipeline's curated sample crawl (``--cc-run``, a
  finished ``make pipeline`` run; rows copied, split by ``lid_lang``);
- ``code``: Python files of this machine's standard library (as ``tests/test_sources.py`` does);
- ``books``: the Python documentation's prose topics (``pydoc_data.topics``).

The target set is a sample of ``code`` and ``books`` documents taken *out* of the run (so no
proxy ever trains on them): the known answer is that weight should move to those two groups.
The starting spec is web-heavy (LLaMA-like: 0.55 / 0.25 / 0.1 / 0.1). Then:

1. the search (16 candidates by default) and its chosen mixture;
2. proxies trained on the chosen, the starting and the uniform mixture with three seeds each
   (same recipe and token budget as the candidates): target loss per mixture, and the spread
   across seeds of one mixture (the noise a difference must beat).

    .venv/bin/python bench/mix_search.py --cc-run runs/default [--candidates 16] [--tokens 300000]
    [--engine ray|local] [--device auto|cpu|cuda] [--proxy cpu|gpu] [--work /tmp/mix_search_bench]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_run(cc_run: Path, run: Path, target: Path, *, seed: int = 0, target_frac: float = 0.3) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datapipe.stage import apply_stage, build_stage
    from datapipe.mix.curated import curated_files

    cols = ["id", "text", "source", "lid_lang", "n_tokens"]
    cc = pa.concat_tables([pq.read_table(f, columns=cols) for f in curated_files(cc_run)])
    cc = cc.append_column("group", pa.array(["web_en" if l == "en" else "web_other" for l in cc["lid_lang"].to_pylist()]))
    # code: the standard library's modules (~8K characters of each, 160 files)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.stat().st_size > 2000)[:160]
    code = [{"id": f"code-{p.name}", "text": p.read_text(errors="replace")[:8000]} for p in files]
    # books: the Python documentation's prose topics
    from pydoc_data.topics import topics
    books = [{"id": f"books-{k}", "text": v[:8000]} for k, v in sorted(topics.items()) if len(v) > 1500]
    other = pa.table({"id": [d["id"] for d in code + books], "text": pa.array([d["text"] for d in code + books], pa.large_string()),
                      "source": ["github"] * len(code) + ["books"] * len(books), "lid_lang": ["en"] * (len(code) + len(books)),
                      "group": ["code"] * len(code) + ["books"] * len(books)})
    tok = build_stage("tokenize", {"tokenizer": "llama3"})
    tok.ensure_setup()
    other = apply_stage(tok, other).kept
    cc = cc.select(other.schema.names).cast(other.schema)
    allt = pa.concat_tables([cc, other])
    # the target: a seeded sample of code and books documents, removed from the run
    rng = np.random.default_rng(seed)
    grp = np.array(allt["group"].to_pylist())
    is_t = np.zeros(len(grp), bool)
    for g in ("code", "books"):
        idx = np.flatnonzero(grp == g)
        is_t[rng.choice(idx, int(len(idx) * target_frac), replace=False)] = True
    (run / "output").mkdir(parents=True)
    pq.write_table(allt.filter(pa.array(~is_t)), run / "output" / "part-00000.parquet")
    (run / "config.yaml").write_text("stages:\n  - tokenize: {tokenizer: llama3}\n")
    target.mkdir(parents=True)
    with open(target / "target.jsonl", "w") as fh:
        for t in allt.filter(pa.array(is_t))["text"].to_pylist():
            fh.write(json.dumps({"text": t}) + "\n")
    n = allt["n_tokens"].to_numpy()
    return {g: {"docs": int((grp == g).sum()), "tokens": int(n[grp == g].sum()), "target_docs": int((is_t & (grp == g)).sum())}
            for g in ("web_en", "web_other", "code", "books")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cc-run", default=str(ROOT / "runs" / "default"), help="a finished default-pipeline run")
    ap.add_argument("--work", default="/tmp/mix_search_bench")
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=300_000, help="training tokens per proxy")
    ap.add_argument("--proxy", default="cpu")
    ap.add_argument("--engine", default="ray", choices=["ray", "local"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from datapipe.mix import run_mix
    from datapipe.mix.proxy import ProxyConfig
    from datapipe.mix.search import SearchOptions, score_mixtures, search_mixture

    cc_run = Path(args.cc_run)
    if not (cc_run / "output").is_dir():
        sys.exit(f"{cc_run}: no curated output; run `make pipeline` (or pass --cc-run RUN_DIR)")
    work = Path(args.work)
    run, target = work / "run", work / "target"
    if not (run / "output").is_dir():
        shutil.rmtree(work, ignore_errors=True)
        sizes = build_run(cc_run, run, target)
        (work / "sizes.json").write_text(json.dumps(sizes))
    sizes = json.loads((work / "sizes.json").read_text())
    print("groups (docs / tokens / docs moved to the target):")
    for g, s in sizes.items():
        print(f"  {g:<10} {s['docs']:>5} docs  {s['tokens']:>9,} tokens  target {s['target_docs']}")
    start = {"web_en": 0.55, "web_other": 0.25, "code": 0.1, "books": 0.1}
    spec = work / "start.yaml"
    import yaml
    spec.write_text(yaml.safe_dump({"name": "start", "mode": "sampling", "max_epochs": 1.0, "groups": [
        {"name": "web_en", "where": {"source": "cc", "lid_lang": "en"}, "weight": start["web_en"]},
        {"name": "web_other", "where": {"source": "cc"}, "weight": start["web_other"]},
        {"name": "code", "where": {"source": "github"}, "weight": start["code"]},
        {"name": "books", "where": {"source": "books"}, "weight": start["books"]}]}, sort_keys=False))
    opts = SearchOptions(candidates=args.candidates, seed=0, device=args.device,
                         proxy=ProxyConfig.preset(args.proxy, tokens=args.tokens))
    t0 = time.time()
    res = search_mixture(run, spec, target, options=opts, engine=args.engine, quiet=True)
    t_search = time.time() - t0
    print(res.table())
    d = res.data
    print(f"search: {args.candidates} candidates x {args.tokens:,} tokens, engine={args.engine}, "
          f"{time.time() - t0:.0f}s wall ({d['trained_now']} trained in this call), {os.cpu_count()} cores")
    plan = run_mix(run, res.out_spec, dry_run=True)
    print(f"`datapipe mix` accepts the written spec: planned {plan.total_tokens:,} tokens "
          f"({', '.join(f'{g} {v:.1%}' for g, v in plan.shares().items())})")

    groups = d["groups"]
    uniform = {g: 1.0 / len(groups) for g in groups}
    t1 = time.time()
    scores = score_mixtures(run, spec, target, {"chosen": d["chosen"], "start": start, "uniform": uniform},
                            seeds=list(range(args.seeds)), options=opts, engine=args.engine)
    print(f"\nproxies on the chosen / start / uniform mixtures, {args.seeds} seeds each "
          f"({time.time() - t1:.0f}s wall):")
    print(f"{'mixture':<8}  " + "  ".join(f"{g:>9}" for g in groups) + "  target loss per seed        mean    spread(max-min)")
    import numpy as np
    means = {}
    for label, rs in scores.items():
        w = {"chosen": d["chosen"], "start": start, "uniform": uniform}[label]
        tl = np.array([r["losses"]["target"] for r in rs])
        means[label] = tl.mean()
        print(f"{label:<8}  " + "  ".join(f"{w[g]:>9.3f}" for g in groups) + "  "
              + " ".join(f"{x:.4f}" for x in tl) + f"    {tl.mean():.4f}  {np.ptp(tl):.4f}")
    moved = {g: d["chosen"][g] - start[g] for g in groups}
    print("weight moved (chosen - start): " + ", ".join(f"{g} {v:+.3f}" for g, v in moved.items()))
    print(f"target loss, mean over seeds: chosen {means['chosen']:.4f} vs start {means['start']:.4f} "
          f"({means['chosen'] - means['start']:+.4f}) vs uniform {means['uniform']:.4f} "
          f"({means['chosen'] - means['uniform']:+.4f}); seed spread of one mixture up to "
          f"{max(np.ptp([r['losses']['target'] for r in rs]) for rs in scores.values()):.4f}")
    print(f"total {time.time() - t0:.0f}s wall (search {t_search:.0f}s)")


if __name__ == "__main__":
    main()
