"""Semantic dedup's embedding step on a GPU: documents per second per GPU.

    python bench/gpu_embed.py --texts TEXTS.parquet --model MINILM_FOLDER [--docs 100000]

Runs the product's embedder (``datapipe.embed.TransformerEmbedder``, the one ``dedup_semantic``
uses when a GPU is visible) over real page texts (the realpages set, extracted by the project's
``extract`` stage and saved with ``bench/gpu_embed.py --save-texts``), repeated to ``--docs``
documents (the output says how many distinct texts there are), at ``max_tokens`` 256 as
configured by default. Prints docs/s per GPU for fp32 and fp16 weights at several batch sizes,
the tokenizer's share, and how far fp16 vectors are from fp32 ones (cosine), next to NeMo
Curator's nightly requirement of >= 875 documents per second per GPU (embeddinggemma-300m).

No Ray here: the workflow around the embedder (k-means, within-cluster comparison) runs on
CPUs and is measured by ``bench/dedup.py``; this isolates what the GPU does.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def save_texts(out: str) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import pyarrow.parquet as pq
    from _pages_text import realpages_text
    t = realpages_text()
    pq.write_table(t.select(["id", "text"]), out, compression="zstd")
    print(f"{t.num_rows} texts -> {out}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts")
    ap.add_argument("--model")
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--batch-sizes", default="128,512,1024")
    ap.add_argument("--save-texts", metavar="OUT")
    a = ap.parse_args()
    if a.save_texts:
        save_texts(a.save_texts)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import pyarrow.parquet as pq
    import torch

    from datapipe.embed import TransformerEmbedder, load_model

    if not torch.cuda.is_available():
        print("no GPU visible: this benchmark measures the GPU path")
        return 1
    try:
        print(subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores")
    base = [t for t in pq.read_table(a.texts).column("text").to_pylist() if t]
    reps = -(-a.docs // len(base))
    texts = (base * reps)[: a.docs]
    lens = np.array([len(t) for t in base])
    print(f"{len(texts):,} documents ({len(base):,} distinct real page texts repeated; median "
          f"{int(np.median(lens)):,} chars), max_tokens {a.max_tokens}")

    emb = TransformerEmbedder(a.model, max_tokens=a.max_tokens, batch_size=256, device="cuda")
    m = load_model(emb.model, emb.max_tokens, emb.device)
    emb.embed(texts[:2000])  # warm-up: CUDA context, kernels
    tok = m.tokenizer
    t0 = time.perf_counter()
    for i in range(0, 20_000, 1024):
        tok([s[: a.max_tokens * 8] for s in texts[i:i + 1024]], truncation=True, max_length=a.max_tokens,
            padding=True)
    tok_rate = 20_000 / (time.perf_counter() - t0)
    print(f"tokenizer alone (one CPU thread): {tok_rate:,.0f} docs/s")

    print(f"{'weights':8} {'batch':>6} {'docs/s/GPU':>11} {'vs Curator 875':>15} {'peak GPU MiB':>13}")
    ref = None
    results = {}
    for dtype in ("fp32", "fp16"):
        if dtype == "fp16":
            m.half()
        for bs in [int(x) for x in a.batch_sizes.split(",")]:
            emb.batch_size = bs
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            v = emb.embed(texts)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            rate = len(texts) / dt
            results[(dtype, bs)] = rate
            print(f"{dtype:8} {bs:>6} {rate:>11,.0f} {rate / 875:>14.1f}x "
                  f"{torch.cuda.max_memory_allocated() / 2**20:>13,.0f}")
            if ref is None:
                ref = v
            elif dtype == "fp16" and bs == int(a.batch_sizes.split(",")[0]):
                cos = (ref * v).sum(axis=1)
                print(f"         fp16 vs fp32 cosine over {len(v):,} docs: min {cos.min():.5f}, "
                      f"mean {cos.mean():.6f}")
    best = max(results, key=results.get)
    print(f"best: {best[0]} batch {best[1]}: {results[best]:,.0f} documents per second per GPU "
          f"({results[best] / 875:.1f}x Curator's 875)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
