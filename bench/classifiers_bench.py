"""Classifier benchmarks: labelling throughput of a real local model and apply-time docs/s per core.

    .venv/bin/python bench/classifiers_bench.py [--docs 16] [--model smollm2] [--apply-docs 4000] [--skip-embed]

1. Labelling: ``label_table`` against ``datapipe classify serve --model smollm2`` (SmolLM2-135M-
   Instruct, a real transformers model, in its own process; CUDA when present) at concurrency 1, 4
   and 16, without and with logprobs (top-20), each run with an empty label cache; labels/s,
   labels per CPU-second of the server (per core), prompt tokens/s and the mean dynamic-batch size
   from the server's /health counters; then a re-run against the filled cache (no request).
2. Apply: the ``quality_classifier`` stage on one core (fastText single-threaded, torch with one
   thread) for a fastText model and a linear head on MiniLM embeddings, both trained here on the
   DCLM human quality labels (``../shared/data``).

Documents: DCLM's 499 real CommonCrawl documents (median ~1.4 k characters); apply repeats them to
reach ``--apply-docs`` -- say so when you quote the figures. Timings on a shared machine move with
its load; the load average is printed.
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

import pyarrow as pa  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DCLM = REPO / ".." / "shared" / "data" / "quality" / "dclm-human-quality-labels" / "majority_data.jsonl"


def load_docs() -> tuple[list[str], list[str], str]:
    if not DCLM.is_file():
        sys.exit(f"{DCLM} is absent: this benchmark needs ../shared/data (DCLM's human-labelled pages)")
    rows = [json.loads(l) for l in DCLM.read_text().splitlines() if l.strip()]
    return [r["text"] for r in rows], [str(r["label"]) for r in rows], "DCLM human quality labels (499 real CC docs)"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), children excluded."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def model_server(model: str, max_batch: int):
    """``datapipe classify serve --model MODEL`` in its own process (in-process, the client and
    the server would share a GIL); yields (base URL, pid)."""
    with tempfile.TemporaryDirectory() as d:
        url_file = Path(d) / "url"
        cmd = [sys.executable, "-m", "datapipe.cli", "classify", "serve", "--model", model, "--port", "0",
               "--url-file", str(url_file), "--max-batch", str(max_batch)]
        proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
        try:
            for _ in range(3000):
                if url_file.exists() or proc.poll() is not None:
                    break
                time.sleep(0.1)
            if not url_file.exists():
                sys.exit(f"`{' '.join(cmd[2:])}` did not start (exit {proc.poll()})")
            yield url_file.read_text().strip(), proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _health(url: str) -> dict:
    import urllib.request
    with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=30) as r:
        return json.loads(r.read())


def bench_labelling(texts: list[str], n: int, model: str, max_batch: int) -> None:
    from classifiers.label import ClientConfig, LabelCache, Prompt, label_table
    prompt = Prompt.load("quality_edu_score_v1")
    texts = texts[:n]
    n = len(texts)
    table = pa.table({"id": [f"b{i}" for i in range(n)], "text": pa.array(texts, pa.large_string())})
    with model_server(model, max_batch) as (url, pid):
        h = _health(url)
        print(f"\n## labelling throughput: {n} DCLM documents per run, prompt {prompt.id} (document cut to "
              f"{prompt.max_doc_tokens} approx. tokens, max_tokens {prompt.max_tokens}), "
              f"`classify serve --model {model}` ({h['model']} on {h['device']}, batches of up to {max_batch})")
        print(f"{'logprobs':<9} {'conc':>4} {'labels/s':>9} {'labels/s/core':>13} {'prompt tok/s':>12} "
              f"{'mean batch':>10} {'requests':>8} {'wall s':>7}")
        for top in (0, 20):
            for conc in (1, 4, 16):
                with tempfile.TemporaryDirectory() as d:
                    cfg = ClientConfig(base_url=url, concurrency=conc, top_logprobs=top, timeout_s=900)
                    h0, c0 = _health(url), _cpu_seconds(pid)
                    t0 = time.perf_counter()
                    _, rep = label_table(table, prompt, cfg, LabelCache(d))
                    wall = time.perf_counter() - t0
                    h1, cpu = _health(url), _cpu_seconds(pid) - c0
                    assert rep.labelled + rep.parse_errors == n, rep.summary()
                    batches = h1["batches"] - h0["batches"]
                    print(f"{'top-' + str(top) if top else 'off':<9} {conc:>4} {n / wall:>9.2f} {n / cpu:>13.2f} "
                          f"{(h1['prompt_tokens'] - h0['prompt_tokens']) / wall:>12.0f} "
                          f"{(h1['requests'] - h0['requests']) / max(1, batches):>10.1f} "
                          f"{rep.client.get('requests', 0):>8} {wall:>7.1f}")
                    if top and conc == 16:
                        t1 = time.perf_counter()
                        _, rep2 = label_table(table, prompt, cfg, LabelCache(d))
                        w2 = time.perf_counter() - t1
                        print(f"cached re-run: {rep2.from_cache} from cache, {rep2.client.get('requests', 0)} requests, "
                              f"{n / w2:.0f} labels/s ({w2 * 1000:.0f} ms)")
    print("labels/s/core = labels per CPU-second of the server process (all its threads).")


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
    ap.add_argument("--docs", type=int, default=16, help="documents per labelling run (real model: keep it small)")
    ap.add_argument("--model", default="smollm2", help="what `classify serve --model` serves")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--apply-docs", type=int, default=4000)
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--skip-label", action="store_true")
    args = ap.parse_args()
    texts, labels, what = load_docs()
    print(f"# classifiers bench on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; data: {what}")
    if not args.skip_label:
        bench_labelling(texts, args.docs, args.model, args.max_batch)
    bench_apply(texts, labels, args.apply_docs, args.skip_embed)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
