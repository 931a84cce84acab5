"""Classifier benchmarks: labelling throughput and apply-time docs/s per core.

    .venv/bin/python bench/classifiers_bench.py [--docs 300] [--apply-docs 2000] [--skip-embed]

1. Labelling: ``label_table`` against the loopback server (a real HTTP server on 127.0.0.1, the
   rule-based rubric) at concurrency 1, 4 and 16; once with no added latency (client + HTTP +
   rubric overhead, everything on this machine's cores) and once with 50 ms per reply (a stand-in
   for model time, which is what concurrency hides against a real LLM server), and once with
   faults (15% 429, 10% 500, 5% malformed) to show the cost of retries.
   The server runs in its own process (``datapipe classify serve``).
2. Apply: the ``quality_classifier`` stage on one core (fastText single-threaded, torch with one
   thread) for a fastText model and a linear head on MiniLM embeddings, both trained here on the
   DCLM human quality labels (``../shared/data``) or, without it, on synthetic documents.

Documents: DCLM's 499 real CommonCrawl documents (median ~1.4 k characters), repeated to reach
``--apply-docs`` -- say so when you quote the figures. Timings on a shared machine move with its
load; the load average is printed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DCLM = REPO / ".." / "shared" / "data" / "quality" / "dclm-human-quality-labels" / "majority_data.jsonl"


def load_docs() -> tuple[list[str], list[str], str]:
    if DCLM.is_file():
        rows = [json.loads(l) for l in DCLM.read_text().splitlines() if l.strip()]
        return [r["text"] for r in rows], [str(r["label"]) for r in rows], "DCLM human quality labels (499 real CC docs)"
    sys.path.insert(0, str(REPO / "tests"))
    from test_classifiers import docs_table  # noqa: E402
    from classifiers.server import rubric_quality
    texts = docs_table(500)["text"].to_pylist()
    return texts, [str(int(rubric_quality(t)[0] >= 2)) for t in texts], "synthetic documents (../shared absent)"


@contextlib.contextmanager
def server_process(latency: float, faults):
    """``datapipe classify serve`` in its own process (in-process, client and server would share a GIL)."""
    with tempfile.TemporaryDirectory() as d:
        url_file = Path(d) / "url"
        cmd = [sys.executable, "-m", "datapipe.cli", "classify", "serve", "--port", "0", "--url-file", str(url_file),
               "--latency", str(latency)]
        if faults is not None:
            for k, v in faults.rates.items():
                cmd += [f"--fault-{k.replace('_', '-')}", str(v)]
            cmd += ["--fault-max-per-request", str(faults.max_per_request)]
        proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                if url_file.exists():
                    break
                time.sleep(0.05)
            yield url_file.read_text().strip()
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def bench_labelling(texts: list[str], n: int) -> None:
    from classifiers.label import ClientConfig, LabelCache, Prompt, label_table
    from classifiers.server import FaultPlan
    prompt = Prompt.load("quality_edu_v1")
    texts = (texts * (n // len(texts) + 1))[:n]
    table = pa.table({"id": [f"b{i}" for i in range(n)], "text": pa.array(texts, pa.large_string())})
    print(f"\n## labelling throughput: {n} documents, prompt {prompt.id}, loopback rubric server")
    print(f"{'server':<34} {'conc':>4} {'labels/s':>9} {'requests':>8} {'retries':>7} {'wall s':>7}")
    settings = [("no added latency", 0.0, None), ("50 ms per reply", 0.05, None),
                ("faults 15% 429, 10% 500, 5% bad", 0.0,
                 FaultPlan(rates={"429": 0.15, "500": 0.10, "malformed": 0.05}, max_per_request=2))]
    for name, latency, faults in settings:
        for conc in (1, 4, 16):
            if latency and conc == 1:
                sub = table.slice(0, min(n, 100))  # 100 x 50 ms is enough to measure
            else:
                sub = table
            with server_process(latency, faults) as url, tempfile.TemporaryDirectory() as d:
                cfg = ClientConfig(base_url=url, concurrency=conc, backoff_base_s=0.01, backoff_max_s=0.1)
                t0 = time.perf_counter()
                _, rep = label_table(sub, prompt, cfg, LabelCache(d))
                wall = time.perf_counter() - t0
            assert rep.labelled + rep.parse_errors == sub.num_rows, rep.summary()
            print(f"{name:<34} {conc:>4} {sub.num_rows / wall:>9.1f} {rep.client.get('requests', 0):>8} "
                  f"{rep.client.get('retries', 0):>7} {wall:>7.2f}")


def bench_apply(texts: list[str], labels: list[str], n: int, skip_embed: bool) -> None:
    from classifiers.apply import QualityClassifier
    from classifiers.train import LabelledData, train_classifier
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    data = LabelledData(texts=texts, labels=labels, ids=[str(i) for i in range(len(texts))], sources=["bench"])
    work = Path(tempfile.mkdtemp(prefix="clfbench-"))
    models = [("fasttext", {})]
    if not skip_embed:
        models.append(("embed", {"head": "linear"}))
    docs = (texts * (n // len(texts) + 1))[:n]
    mb = sum(len(t.encode()) for t in docs) / 1e6
    print(f"\n## apply: quality_classifier stage on one core, {n} documents ({mb:.1f} MB of text, "
          f"the {len(texts)} documents repeated), batches of 256")
    print(f"{'model':<22} {'held-out acc':>12} {'baseline':>8} {'train s':>7} {'docs/s/core':>11} {'MB/s':>6}")
    for backend, params in models:
        t0 = time.perf_counter()
        card = train_classifier(data, work / backend, task="quality", backend=backend, params=params)
        train_s = time.perf_counter() - t0
        st = QualityClassifier(model=str(work / backend))
        st.ensure_setup()
        st.score(pa.table({"text": pa.array(docs[:8], pa.large_string())}))  # warm-up (model load)
        m = n if backend == "fasttext" else min(n, 600)
        batches = [pa.table({"text": pa.array(docs[i:i + 256], pa.large_string())}) for i in range(0, m, 256)]
        c0 = time.process_time()
        t1 = time.perf_counter()
        for b in batches:
            st.score(b)
        wall = time.perf_counter() - t1
        cpu = time.process_time() - c0
        mbm = sum(len(t.encode()) for t in docs[:m]) / 1e6
        per_core = m / cpu if cpu > 0 else float("nan")
        mm = card["metrics"]
        print(f"{backend + (' ' + params.get('head', '') if params else ''):<22} {mm['accuracy']:>12.3f} "
              f"{mm['majority_baseline_accuracy']:>8.3f} {train_s:>7.1f} {per_core:>11.0f} {mbm / cpu:>6.2f}"
              f"   (wall {m / wall:.0f} docs/s over {m} docs)")
        if backend == "fasttext":
            # the per-row Python loop that places fastText's per-document lists into a matrix
            from classifiers.apply import ft_preprocess
            clf = st.clf
            prep = ft_preprocess(pa.array(docs[:m], pa.large_string()), max_chars=clf.max_chars)
            c2 = time.process_time()
            clf._ft.predict(prep, k=-1, threshold=0.0)
            pred = time.process_time() - c2
            print(f"{'':<22} fastText predict alone: {m / pred:.0f} docs/s/core; preprocessing + matrix fill "
                  f"take the rest")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=300, help="documents per labelling run")
    ap.add_argument("--apply-docs", type=int, default=4000)
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--skip-label", action="store_true")
    args = ap.parse_args()
    texts, labels, what = load_docs()
    print(f"# classifiers bench on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; data: {what}")
    if not args.skip_label:
        bench_labelling(texts, args.docs)
    bench_apply(texts, labels, args.apply_docs, args.skip_embed)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
