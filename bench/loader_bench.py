"""Loader throughput: packed sequences per second from a Parquet token stream.

Builds a synthetic curated output (random Llama-3-range ids, document lengths drawn from a
log-normal around ~800 tokens, like web pages), mixes it into a token stream with
``datapipe mix`` (timed: the writer's tokens/s), then iterates :class:`PackedLoader` for one
epoch per setting and prints sequences/s and tokens/s (wall, and per CPU-second of the whole
process tree for ``num_workers=0``).

    .venv/bin/python bench/loader_bench.py [--tokens 20000000] [--seq-len 8192 2048] [--workers 0 2]
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


def build(root: Path, total_tokens: int, seed: int = 0) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml
    rng = np.random.default_rng(seed)
    out = root / "run" / "output"
    out.mkdir(parents=True)
    made, f = 0, 0
    while made < total_tokens:
        lens = np.clip(rng.lognormal(6.3, 1.0, 5000).astype(np.int64), 16, 60_000)
        offs = np.concatenate([[0], np.cumsum(lens)])
        flat = rng.integers(0, 128000, int(offs[-1]), dtype=np.uint32)
        t = pa.table({"id": [f"{f}-{i}" for i in range(len(lens))], "source": ["cc"] * len(lens),
                      "n_tokens": pa.array(lens.astype(np.int32)),
                      "tokens": pa.ListArray.from_arrays(pa.array(offs.astype(np.int32)), pa.array(flat))})
        pq.write_table(t, out / f"part{f:03d}-00000.parquet")
        made += int(offs[-1])
        f += 1
    spec = root / "all.yaml"
    spec.write_text(yaml.safe_dump({"name": "all", "max_epochs": 1.0, "groups": [{"name": "web", "weight": 1}]}))
    from datapipe.mix import run_mix
    t0 = time.perf_counter()
    plan = run_mix(root / "run", spec)
    dt = time.perf_counter() - t0
    print(f"token stream: {plan.total_rows:,} documents, {plan.total_tokens:,} tokens; "
          f"datapipe mix wrote it in {dt:.1f}s ({plan.total_tokens / dt / 1e6:.1f} M tokens/s, shuffle included)")
    return root / "run" / "mix" / "all"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=20_000_000)
    ap.add_argument("--seq-len", type=int, nargs="+", default=[8192, 2048])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    import resource

    from datapipe.loader import PackedLoader, PackedTokenDataset
    root = Path(tempfile.mkdtemp(prefix="loader-bench-"))
    try:
        stream = build(root, args.tokens)
        print(f"{'seq_len':>7} {'workers':>7} {'sequences':>9} {'seq/s':>8} {'Mtok/s':>7} {'first batch s':>13} {'CPU s':>6}")
        for L in args.seq_len:
            for w in args.workers:
                ds = PackedTokenDataset(stream, seq_len=L, seed=0)
                loader = PackedLoader(ds, batch_size=args.batch_size, num_workers=w)
                r0 = resource.getrusage(resource.RUSAGE_SELF)
                c0 = r0.ru_utime + r0.ru_stime
                t0 = time.perf_counter()
                n, first = 0, None
                for b in loader:
                    n += b["input_ids"].shape[0]
                    if first is None:
                        first = time.perf_counter() - t0
                dt = time.perf_counter() - t0
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu = r1.ru_utime + r1.ru_stime - c0
                print(f"{L:>7} {w:>7} {n:>9,} {n / dt:>8.1f} {n * L / dt / 1e6:>7.1f} {first:>13.2f} "
                      f"{(f'{cpu:.1f}' if w == 0 else '-'):>6}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
