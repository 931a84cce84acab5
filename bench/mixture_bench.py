"""Mixture planning time on a million-document curated output (``datapipe mix --dry-run``).

Writes a synthetic curated output of N documents (default 1,000,000) in 16 Parquet files
with ``n_tokens`` (log-normal, ~800 tokens), ``source`` (LLaMA-1's seven sources in the
proportions of their disk sizes), ``lid_lang`` and ``quality_score`` columns, plus a
``text`` column of ~1 KB per document so that reading more than the planning columns would
show. Then times ``run_mix(..., dry_run=True)`` (read + group + plan + select, in a fresh
process state per spec) for several specs:

- ``llama1``       configs/mix/llama1.yaml (sampling proportions, epoch caps)
- ``temperature``  groups by source, temperature 3, budget mode, 10% of the tokens
- ``unimax``       groups by source x language (28 groups), UniMax with 2 epochs, 30% of the tokens
- ``ranges``       quality-score buckets x language with list and range conditions

    .venv/bin/python bench/mixture_bench.py [--docs 1000000]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SOURCES = {"cc": 3300, "c4": 783, "github": 328, "wikipedia": 83, "books": 85, "arxiv": 92, "stackexchange": 78}


def build(out: Path, n_docs: int, seed: int = 0) -> int:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    names = np.array(list(SOURCES))
    p = np.array(list(SOURCES.values()), float)
    p /= p.sum()
    langs = np.array(["en", "de", "fr", "zh"])
    filler = "lorem ipsum dolor sit amet " * 40
    total = 0
    per = n_docs // 16
    for f in range(16):
        k = per if f < 15 else n_docs - 15 * per
        n = np.clip(rng.lognormal(6.3, 1.0, k), 16, 100_000).astype(np.int32)
        total += int(n.sum())
        pq.write_table(pa.table({
            "id": pa.array([f"{f}-{i}" for i in range(k)]),
            "text": pa.array([filler] * k, pa.large_string()),
            "source": pa.array(names[rng.choice(len(names), k, p=p)]),
            "lid_lang": pa.array(langs[rng.integers(0, 4, k)]),
            "quality_score": pa.array(rng.random(k)),
            "n_tokens": pa.array(n),
        }), out / f"part{f:02d}-00000.parquet")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--show", action="store_true", help="print each plan table")
    args = ap.parse_args()
    import yaml

    from datapipe.mix import run_mix
    root = Path(tempfile.mkdtemp(prefix="mix-bench-"))
    try:
        t0 = time.perf_counter()
        total = build(root / "run" / "output", args.docs)
        print(f"curated output: {args.docs:,} documents, {total:,} tokens, 16 files "
              f"(written in {time.perf_counter() - t0:.1f}s)")
        langs = ["en", "de", "fr", "zh"]
        specs = {
            "llama1": ROOT / "configs" / "mix" / "llama1.yaml",
            "temperature": {"mode": "budget", "weighting": "temperature", "temperature": 3.0,
                            "total_tokens": total // 10,
                            "groups": [{"name": s, "where": {"source": s}} for s in SOURCES]},
            "unimax": {"mode": "budget", "weighting": "unimax", "max_epochs": 2.0, "total_tokens": int(total * 0.3),
                       "groups": [{"name": f"{s}-{l}", "where": {"source": s, "lid_lang": l}}
                                  for s in SOURCES for l in langs]},
            "ranges": {"max_epochs": 1.0,
                       "groups": [{"name": "hq_en", "where": {"lid_lang": "en", "quality_score": {"min": 0.8}}, "weight": 5},
                                  {"name": "mq_en", "where": {"lid_lang": "en", "quality_score": {"min": 0.4, "max": 0.8}}, "weight": 3},
                                  {"name": "eu", "where": {"lid_lang": ["de", "fr"]}, "weight": 1.5},
                                  {"name": "zh", "where": {"lid_lang": "zh"}, "weight": 0.5}]},
        }
        print(f"{'spec':<12} {'groups':>6} {'dry-run s':>9} {'plan-only s':>11} {'tokens planned':>15} {'rows':>10}")
        for name, spec in specs.items():
            path = spec if isinstance(spec, Path) else root / f"{name}.yaml"
            if not isinstance(spec, Path):
                path.write_text(yaml.safe_dump({"name": name, **spec}, sort_keys=False))
            t0 = time.perf_counter()
            plan = run_mix(root / "run", path, dry_run=True)
            dt = time.perf_counter() - t0
            print(f"{name:<12} {len(plan.groups):>6} {dt:>9.2f} {_plan_only(root / 'run', path):>11.2f} "
                  f"{plan.total_tokens:>15,} {plan.total_rows:>10,}")
            if args.show:
                print(plan.table())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _plan_only(run_dir: Path, spec_path: Path) -> float:
    """Seconds of the planning arithmetic alone (weights, caps, seeded selection), data in memory."""
    from datapipe.mix import load_spec, plan_mixture, scan_curated
    spec = load_spec(spec_path)
    cur = scan_curated(run_dir, spec, {}, quiet=True)
    t0 = time.perf_counter()
    plan_mixture(spec, cur.n_tokens, cur.group_idx)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
