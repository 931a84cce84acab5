"""Tokenizer throughput per core: quicktok vs tiktoken vs HF tokenizers, same text, Llama 3 vocab.

Encoders (all over the Llama 3 ranks quicktok-v1 ships; nothing is downloaded):

- ``quicktok``  quicktok-v1's C++ ``encode_batch(texts, threads=1)`` (``tokenizer: quicktok:llama3``)
- ``tiktoken``  tiktoken's Rust BPE, ``Encoding(pat_str=Meta's regex, mergeable_ranks=...)``,
                one ``encode_ordinary`` per document (``tokenizer: llama3``, the stage default)
- ``hf``        HF ``tokenizers`` over a ``tokenizer.json`` written from the same ranks,
                ``encode_batch`` with ``TOKENIZERS_PARALLELISM=false`` (one core)
- ``stage``     the ``tokenize`` stage (default tokenizer) on Arrow batches of 64 documents:
                what the pipeline pays, column conversion included

Rates are per CPU-second of this process (robust when other work shares the machine) and
per wall second; also the share of documents each encoder tokenizes exactly like tiktoken.

Corpora: ``realpages`` (the 1,600 real pages as extracted text, cached by
``bench/_pages_text.py``) and ``lingua`` (74k web sentences in 75 languages).

    .venv/bin/python bench/tokenize_bench.py [--corpus realpages lingua] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT / ".." / "shared" / "data"


def load_corpus(name: str) -> list[str]:
    if name == "lingua":
        root = SHARED / "langid" / "lingua"
        if not root.is_dir():
            raise SystemExit(f"{root} is absent (../shared/data is needed)")
        return [l for d in sorted(root.iterdir()) for l in (d / "sentences.txt").read_text().splitlines() if l]
    sys.path.insert(0, str(ROOT / "bench"))
    from _pages_text import realpages_text
    return [t for t in realpages_text()["text"].to_pylist() if t]


def timed(fn, repeat: int):
    best = None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        c, w = time.process_time() - c0, time.perf_counter() - w0
        if best is None or c < best[0]:
            best = (c, w, out)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="+", default=["realpages", "lingua"], choices=["realpages", "lingua"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import pyarrow as pa
    import quicktok
    from stages.tokenize import Tokenize, load_tokenizer, tiktoken_llama3, write_hf_tokenizer_json

    qt = quicktok.get_encoding("llama3")
    tk = tiktoken_llama3()
    tmp = Path(tempfile.mkdtemp())
    hf = load_tokenizer(f"hf:{write_hf_tokenizer_json(tmp / 'tokenizer.json')}")
    stage = Tokenize()
    stage.ensure_setup()

    print(f"one core per encoder; best of {args.repeat}; rates per CPU-second (per wall second)")
    for corpus in args.corpus:
        texts = load_corpus(corpus)
        mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        print(f"\n== {corpus}: {len(texts):,} documents, {mb:.1f} MB of UTF-8")
        ref = [tk.encode_ordinary(t) for t in texts]
        n_ref = sum(len(r) for r in ref)
        runs = {
            "quicktok": lambda: qt.encode_batch(texts, 1, False),
            "tiktoken": lambda: [tk.encode_ordinary(t) for t in texts],
            "hf": lambda: hf.encode_batch(texts),
            "stage": lambda: [stage(pa.table({"text": pa.array(texts[i:i + 64], pa.large_string())}))
                              for i in range(0, len(texts), 64)],
        }
        print(f"{'encoder':<10} {'Mtok/s':>8} {'MB/s':>7} {'(wall Mtok/s)':>14} {'tokens':>11} {'docs = tiktoken':>16}")
        for name, fn in runs.items():
            cpu, wall, out = timed(fn, args.repeat)
            if name == "quicktok":
                toks, offs = out
                same = sum(toks[offs[i]:offs[i + 1]].tolist() == ref[i] for i in range(len(texts)))
                n = int(offs[-1])
            elif name == "tiktoken":
                same, n = len(texts), n_ref
            elif name == "hf":
                toks, offs = out
                same = sum(toks[offs[i]:offs[i + 1]].tolist() == ref[i] for i in range(len(texts)))
                n = int(offs[-1])
            else:
                n = sum(int(np.sum(t["n_tokens"].to_numpy())) - t.num_rows for t in out)  # minus the EOS per doc
                same = None
            print(f"{name:<10} {n / cpu / 1e6:>8.2f} {mb / cpu:>7.1f} {n / wall / 1e6:>14.2f} {n:>11,} "
                  f"{('-' if same is None else f'{100 * same / len(texts):.2f}%'):>16}")


if __name__ == "__main__":
    main()
