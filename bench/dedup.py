"""Dedup benchmarks: MinHash quality, signature speed, and scaling to 1M documents.

    .venv/bin/python bench/dedup.py quality            # P/R/F1 on human-judged pairs
    .venv/bin/python bench/dedup.py semantic           # the same pairs, embedding cosine (SemDeDup)
    .venv/bin/python bench/dedup.py speed [--docs 2000]  # signatures/s per core vs datasketch
    .venv/bin/python bench/dedup.py scale [--sizes 10000 100000 1000000] [--engine ray|serial]
    .venv/bin/python bench/dedup.py all
    .venv/bin/python bench/dedup.py --incremental 1000000 [--engine ray|pool|serial]

incremental: a synthetic corpus of 2N documents (as for ``scale``; planted near copies reach
back up to 2,000 documents, so some cross the cut) is cut into snapshot A (the first N) and
B (the next N). ``dedup_minhash`` with ``index:`` runs over A (building the index), then over
B against it; the same workflow then runs over A+B from scratch. Printed per run: wall, CPU
seconds of the process tree, peak RSS of the tree and of its largest process, documents
removed; then how B's survivors compare with the joint run's survivors among B's documents.
``--pool-file`` reads the sentence pool from a JSON list (``--save-pool`` writes it), for a
machine without ``../shared/data``; ``--engine pool`` runs the workflow tasks in a process
pool (no Ray).

quality: ``../shared/data/dedup/copycat-canonical-link-judgments`` holds 480 pairs of real
CommonCrawl/ClueWeb pages that share a canonical link, each judged by a person. The labels
are an ordinal scale with no published key; read from the pairs themselves: 3 = the same
page (S3 mean 0.93), 2 = same main content, small changes (0.80), 1 = partly the same
(0.74), 0.5 = same template, other content (0.62); "unknown" is left out. Positive = label
>= 2 (also shown: label 3 only). Every document of the set goes through the real
``dedup_minhash`` workflow; a pair is predicted duplicate when both end in one cluster.

speed: one process, one core, the same texts and shingling (lower-cased word 5-grams):
datasketch's ``MinHash.update`` per shingle (the plain loop), its ``update_batch``, and
ours (``minhash_signatures`` over batches of 1,024 documents), all 112 permutations.

scale: no bulk crawl is available offline, so the corpora are **synthetic documents
made of real sentences**: each document strings together 8-30 sentences drawn at random
from ~40k sentences of the realpages and copycat texts; 10% of the documents are planted
near copies (2% of words changed) of an earlier one. The workflow runs on the real Ray
engine (2 CPUs here); peak memory is the largest sum of RSS over the benchmark's process
tree (driver, raylet, GCS, workers), sampled every 0.2 s, and the largest single process.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _measure import TreeSampler  # noqa: E402

DATA = (REPO / ".." / "shared" / "data").resolve()
COPYCAT = DATA / "dedup" / "copycat-canonical-link-judgments" / "judgments-by-daniel"
REALPAGES = DATA / "warc" / "realpages"


class SerialEngine:
    num_cpus = 1
    num_gpus = 0

    def map(self, fn, items, *, resources=None, needs_model=False, num_cpus=None, max_in_flight=None):
        return [fn(x) for x in items]


def _need(path: Path) -> None:
    if not path.exists():
        sys.exit(f"missing {path}: the benchmark reads ../shared/data (see its README)")


# ---------------------------------------------------------------------------
# data

def copycat_pairs() -> list[dict]:
    _need(COPYCAT)
    out = []
    for d in sorted(COPYCAT.iterdir()):
        label = (d / "label").read_text().strip().rstrip("s")
        s3 = float(re.search(r"S3:\s*([0-9.]+)", (d / "metadata").read_text()).group(1))
        a, b = d.name.split("__to__")
        out.append({"a": a, "b": b, "label": label, "s3": s3,
                    "text_a": (d / "src-doc").read_text(errors="replace"),
                    "text_b": (d / "target-doc").read_text(errors="replace")})
    return out


def real_texts() -> list[str]:
    """Texts of real pages: magic-html gold content, stia extracted text, copycat documents."""
    _need(REALPAGES)
    out = []
    for name, field in (("realpages-magic-html-benchmark.gold.jsonl", "gold_content"),
                        ("realpages-stia-neardup-originals.gold.jsonl", "extracted_text_trafilatura")):
        for line in open(REALPAGES / name, encoding="utf-8"):
            t = json.loads(line).get(field)
            if t:
                out.append(t)
    for p in copycat_pairs():
        out += [p["text_a"], p["text_b"]]
    return out


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


_POOL_FILE: str | None = None


def sentence_pool() -> list[str]:
    """Distinct real sentences: realpages sentences, and copycat documents (stemmed, without
    punctuation) cut into 20-word pieces. CJK sentences are left out: every CJK character is a
    word, so one 300-character sentence would outweigh the rest of a synthetic document."""
    if _POOL_FILE:
        return json.loads(Path(_POOL_FILE).read_text())
    seen, pool = set(), []

    def add(s: str) -> None:
        s = s.strip()
        if 40 <= len(s) <= 400 and s not in seen and not _CJK.search(s):
            seen.add(s)
            pool.append(s)
    for name, field in (("realpages-magic-html-benchmark.gold.jsonl", "gold_content"),
                        ("realpages-stia-neardup-originals.gold.jsonl", "extracted_text_trafilatura")):
        for line in open(REALPAGES / name, encoding="utf-8"):
            for s in re.split(r"(?<=[.!?])\s+|\n+", json.loads(line).get(field) or ""):
                add(s)
    for p in copycat_pairs():
        w = p["text_a"].split()
        for i in range(0, len(w) - 19, 20):
            add(" ".join(w[i:i + 20]))
    return pool


def synthetic_shards(n_docs: int, folder: Path, *, rows_per_shard: int = 20_000, dup_share: float = 0.10,
                     seed: int = 0, edit: str = "reverse") -> tuple[list[str], int]:
    """Parquet shards of synthetic documents made of real sentences; returns (paths, planted copies).
    A planted copy has 2% of its words edited: ``reverse`` (the word reversed, plus "x": a
    non-word, which breaks every shingle it is in) or ``swap`` (another word of the pool: an
    edit that keeps the text a text, what semantic dedup is about)."""
    from datapipe.schema import BASE_SCHEMA
    pool = sentence_pool()
    rng = random.Random(seed)
    vocab = sorted({w for s in pool[:5000] for w in s.split()}) if edit == "swap" else []
    folder.mkdir(parents=True, exist_ok=True)
    paths, planted = [], 0
    recent: list[tuple[str, str]] = []
    buf: dict[str, list] = {"id": [], "text": [], "url": [], "truth": []}
    for i in range(n_docs):
        if recent and rng.random() < dup_share:
            truth, src = rng.choice(recent)
            words = src.split(" ")
            for j in rng.sample(range(len(words)), max(1, len(words) // 50)):
                words[j] = rng.choice(vocab) if vocab else words[j][::-1] + "x"
            text = " ".join(words)
            planted += 1
            kind = "copy"
        else:
            text = " ".join(rng.choices(pool, k=rng.randint(8, 30)))
            kind = "doc"
            truth = f"doc-{i:08d}"
            recent.append((truth, text))
            if len(recent) > 2000:
                recent.pop(rng.randrange(len(recent)))
        buf["id"].append(f"{kind}-{i:08d}")
        buf["text"].append(text)
        buf["url"].append(f"https://synthetic.example/{i}")
        buf["truth"].append(truth)
        if len(buf["id"]) == rows_per_shard or i == n_docs - 1:
            t = pa.table({"id": pa.array(buf["id"], pa.string()), "text": pa.array(buf["text"], pa.large_string()),
                          "url": pa.array(buf["url"], pa.string()), "truth": pa.array(buf["truth"], pa.string())})
            for f in BASE_SCHEMA:
                if f.name not in t.column_names:
                    t = t.append_column(f, pa.nulls(t.num_rows, f.type))
            p = folder / f"shard-{len(paths):05d}.parquet"
            pq.write_table(t, p, compression="zstd")
            paths.append(str(p))
            buf = {"id": [], "text": [], "url": [], "truth": []}
    return paths, planted


# ---------------------------------------------------------------------------
# running the workflow

class PoolEngine:
    """The engine protocol workflows use, over a fork-started process pool (no Ray): each map
    ships its task with cloudpickle (workflow tasks are closures)."""

    def __init__(self, n: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        self.num_cpus, self.num_gpus = n, 0
        self._ex = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"))

    def map(self, fn, items, *, resources=None, needs_model=False, num_cpus=None, max_in_flight=None):
        import cloudpickle
        items = list(items)
        blob = cloudpickle.dumps(fn)
        return list(self._ex.map(_pool_call, [blob] * len(items), items))

    def shutdown(self) -> None:
        self._ex.shutdown()


def _pool_call(blob: bytes, x):
    import cloudpickle
    return cloudpickle.loads(blob)(x)


def run_workflow(name: str, options: dict, inputs: list[str], root: Path, engine) -> tuple[list, dict]:
    from datapipe.stage import WorkflowContext, build_stage
    wf = build_stage(name, options)
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ctx = WorkflowContext(inputs=inputs, output_dir=str(out), work_dir=str(root / "work"), engine=engine)
    stats = wf.run(ctx)
    return stats, json.loads((root / "work" / f"{name}_report.json").read_text())


def PeakMemory(interval: float = 0.2) -> TreeSampler:
    """This process's tree: ``peak_rss`` (largest sum of RSS) and ``peak_rss_one`` (largest process)."""
    return TreeSampler(interval=interval)


# ---------------------------------------------------------------------------
# quality

def _prf(pred: list[bool], gold: list[bool]) -> tuple[float, float, float]:
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


def quality(args) -> None:
    from stages.dedup_minhash import lsh_threshold
    pairs = [p for p in copycat_pairs() if p["label"] in ("0.5", "1", "2", "3")]
    docs: dict[str, str] = {}
    for p in pairs:
        docs.setdefault(p["a"], p["text_a"])
        docs.setdefault(p["b"], p["text_b"])
    from collections import Counter
    print(f"copycat-canonical-link-judgments: {len(pairs)} judged pairs (of 480; 'unknown' left out), "
          f"{len(docs)} distinct documents; labels {dict(sorted(Counter(p['label'] for p in pairs).items()))}")
    tmp = Path(tempfile.mkdtemp(prefix="dedup-quality-"))
    ids = sorted(docs)
    inp = tmp / "docs.parquet"
    pq.write_table(pa.table({"id": ids, "text": pa.array([docs[i] for i in ids], pa.large_string())}), inp)
    gold2 = [float(p["label"]) >= 2 for p in pairs]
    gold3 = [p["label"] == "3" for p in pairs]

    # the ceiling: exact Jaccard of the same shingles at a threshold
    from stages._text import split_words

    def shingles(t, n=5):
        w = split_words(pa.array([t.lower()], pa.large_string()))[0].to_pylist()
        return {" ".join(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}
    sh = {i: shingles(docs[i]) for i in ids}
    jac = [len(sh[p["a"]] & sh[p["b"]]) / max(1, len(sh[p["a"]] | sh[p["b"]])) for p in pairs]
    print("\nexact 5-gram Jaccard >= t (no LSH; the ceiling for MinHash at that threshold):")
    print(f"  {'t':>5} {'P(>=2)':>7} {'R(>=2)':>7} {'F1(>=2)':>8}   {'P(=3)':>6} {'R(=3)':>6} {'F1(=3)':>7}")
    for t in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9):
        pred = [j >= t for j in jac]
        a, b = _prf(pred, gold2), _prf(pred, gold3)
        print(f"  {t:>5.2f} {a[0]:>7.3f} {a[1]:>7.3f} {a[2]:>8.3f}   {b[0]:>6.3f} {b[1]:>6.3f} {b[2]:>7.3f}")

    print("\ndedup_minhash workflow (word 5-grams; pair predicted duplicate = same cluster):")
    print(f"  {'bands x rows':>12} {'verify':>6} {'thr':>5} {'P(>=2)':>7} {'R(>=2)':>7} {'F1(>=2)':>8}   "
          f"{'P(=3)':>6} {'R(=3)':>6} {'F1(=3)':>7}  {'s':>5}")
    configs = [(20, 5, None), (14, 8, None), (14, 8, 0.7), (9, 13, None), (7, 16, None), (5, 20, None)]
    for bands, rows, verify in configs:
        opts = {"bands": bands, "rows": rows}
        if verify:
            opts["verify_threshold"] = verify
        t0 = time.time()
        import contextlib
        import io
        with contextlib.redirect_stderr(io.StringIO()):
            run_workflow("dedup_minhash", opts, [str(inp)], tmp / f"{bands}x{rows}-{verify}", SerialEngine())
        out = pq.read_table(tmp / f"{bands}x{rows}-{verify}" / "out" / "docs.parquet", columns=["id", "dup_cluster"])
        rej_ids = set(ids) - set(out["id"].to_pylist())
        cluster = dict(zip(out["id"].to_pylist(), out["dup_cluster"].to_pylist()))
        # dropped documents: their cluster is in the workflow's members file
        mem = pq.read_table(tmp / f"{bands}x{rows}-{verify}" / "work" / "minhash" / "members")
        sig = pq.read_table(tmp / f"{bands}x{rows}-{verify}" / "work" / "minhash" / "sig", columns=["gid", "id"])
        gid2id = dict(zip(sig["gid"].to_pylist(), sig["id"].to_pylist()))
        for g, c in zip(mem["gid"].to_pylist(), mem["cluster"].to_pylist()):
            cluster[gid2id[g]] = c
        assert rej_ids <= {i for i, c in cluster.items() if c is not None}
        pred = [cluster.get(p["a"]) is not None and cluster.get(p["a"]) == cluster.get(p["b"]) for p in pairs]
        a, b = _prf(pred, gold2), _prf(pred, gold3)
        print(f"  {f'{bands} x {rows}':>12} {str(verify or '-'):>6} {lsh_threshold(bands, rows):>5.2f} "
              f"{a[0]:>7.3f} {a[1]:>7.3f} {a[2]:>8.3f}   {b[0]:>6.3f} {b[1]:>6.3f} {b[2]:>7.3f}  {time.time() - t0:>5.1f}")
    shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# semantic: the embedders side by side

def _split(p: dict) -> str:
    """Judged pairs split in two halves by a hash of their name: ``tune`` (where eps is
    chosen) and ``held-out`` (what is reported)."""
    import hashlib
    h = int(hashlib.sha1(f"{p['a']}__to__{p['b']}".encode()).hexdigest(), 16)
    return "tune" if h % 2 == 0 else "held-out"


def sample_crawl_docs(n_pages: int, seed: int) -> tuple[list[str], set, list[str]]:
    """The project's sample crawl (``datapipe sample-crawl``; ``make pipeline``'s input is
    400 pages, seed 0) through the default config's ``extract`` and ``length`` stages.
    Byte-identical copies are left out (``dedup_exact`` removes them before semantic dedup);
    gold pairs: an original and its planted near copies. Returns (texts, gold pairs, langs)."""
    import itertools

    from datapipe.config import InputConfig
    from datapipe.io import read_shard
    from datapipe.samplecrawl import DETAILS_NAME, build_sample_crawl
    from datapipe.stage import build_stage
    from datapipe.stats import StageStats
    tmp = Path(tempfile.mkdtemp(prefix="sample-crawl-"))
    try:
        paths = build_sample_crawl(tmp, n_pages=n_pages, seed=seed, reference_sentences=10)
        details = json.loads((tmp / DETAILS_NAME).read_text())["pages"]
        ex = build_stage("extract", {"favor": "balanced", "timeout_s": 5.0})
        ex.setup()
        rows = []
        import contextlib
        import io
        with contextlib.redirect_stderr(io.StringIO()):       # the crawl's planted broken record
            for p in paths:
                for b in read_shard([str(p)], input_cfg=InputConfig(), batch_size=256, stats=StageStats(stage="read")):
                    rows += ex(b).select(["url", "text"]).to_pylist()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [r for r in rows if len(r["text"] or "") >= 200 and details[r["url"]]["kind"] != "exact_dup"]
    pos = {r["url"]: i for i, r in enumerate(rows)}
    groups: dict[str, list[int]] = {}
    for r in rows:
        groups.setdefault(details[r["url"]].get("dup_of") or r["url"], []).append(pos[r["url"]])
    gold = {(a, b) for g in groups.values() for a, b in itertools.combinations(sorted(g), 2)}
    return [r["text"] for r in rows], gold, [details[r["url"]]["lang"] for r in rows]


def _pairs_prf(e: np.ndarray, gold: set, eps: float) -> tuple[float, float, float, int]:
    """All pairs of a small corpus: predicted duplicate when cosine > 1 - eps."""
    iu = np.triu_indices(len(e), 1)
    hit = (e @ e.T)[iu] > 1 - eps
    pred = set(zip(iu[0][hit].tolist(), iu[1][hit].tolist()))
    tp = len(pred & gold)
    p = tp / len(pred) if pred else float("nan")
    r = tp / len(gold) if gold else float("nan")
    return p, r, (2 * p * r / (p + r) if p + r else 0.0), len(pred)


def _timed_embed(emb, texts: list[str]) -> tuple[np.ndarray, float, float]:
    """(vectors, CPU seconds, wall seconds) of one process; texts cut as dedup_semantic cuts them."""
    cut = [t[: emb.max_tokens * 8] for t in texts]
    t0, w0 = time.process_time(), time.time()
    e = emb.embed(cut)
    return e, time.process_time() - t0, time.time() - w0


SEM_EPS_GRID = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05)


def semantic(args) -> None:
    """Each embedder dedup_semantic can use: pair P/R/F1 at its eps on the held-out judged
    pairs and on the sample crawl's planted near copies; embedding docs per CPU-second."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from datapipe.embed import make_embedder
    embedders = [("MiniLM", make_embedder("minilm", max_tokens=args.max_tokens)),
                 ("static", make_embedder(args.static_model or "static", max_tokens=args.max_tokens))]
    pairs = [p for p in copycat_pairs() if p["label"] in ("0.5", "1", "2", "3")]
    docs: dict[str, str] = {}
    for p in pairs:
        docs.setdefault(p["a"], p["text_a"])
        docs.setdefault(p["b"], p["text_b"])
    ids = sorted(docs)
    pos = {i: k for k, i in enumerate(ids)}
    gold2 = np.array([float(p["label"]) >= 2 for p in pairs])
    split = np.array([_split(p) for p in pairs])
    crawl_texts, crawl_gold, _ = sample_crawl_docs(400, 0)
    tune_texts, tune_gold = ([], set())
    if args.tune:
        tune_texts, tune_gold, _ = sample_crawl_docs(args.tune_pages, 1)
    import torch
    torch.set_num_threads(1)
    print("\nsemantic dedup embedders (" + ", ".join(f"{n}: {e.name}, {e.max_tokens} tokens" for n, e in embedders)
          + "); one process, one thread (torch, tokenizers); "
          f"judged pairs: copycat-canonical-link-judgments, positive = label >= 2, split by a hash of the pair "
          f"name into tune ({(split == 'tune').sum()} pairs) / held-out ({(split == 'held-out').sum()}); sample crawl: "
          f"`datapipe sample-crawl` (400 pages, seed 0) extracted, length >= 200, byte copies left out: "
          f"{len(crawl_texts)} docs, {len(crawl_gold)} planted near-copy pairs; a pair is predicted duplicate "
          "when cosine > 1 - eps (what SemDeDup drops within a cluster)")
    print(f"  {'embedder':<8} {'eps':>6} | {'held-out P':>10} {'R':>6} {'F1':>6} | {'all judged F1':>13} | "
          f"{'crawl P':>7} {'R':>6} {'F1':>6} {'pred':>5} | {'docs/CPU-s':>10} {'docs/s 1 core':>13}")
    res = {}
    for name, emb in embedders:
        emb.embed(["warm up"])
        e_j, cpu, wall = _timed_embed(emb, [docs[i] for i in ids])
        e_c, cpu2, wall2 = _timed_embed(emb, crawl_texts)
        e_t = _timed_embed(emb, tune_texts)[0] if tune_texts else None
        cos = np.array([float(e_j[pos[p["a"]]] @ e_j[pos[p["b"]]]) for p in pairs])
        eps = args.eps if args.eps is not None else emb.default_eps
        pred = cos > 1 - eps
        h = _prf(list(pred[split == "held-out"]), list(gold2[split == "held-out"]))
        a = _prf(list(pred), list(gold2))
        c = _pairs_prf(e_c, crawl_gold, eps)
        n, cs, ws = len(ids) + len(crawl_texts), cpu + cpu2, wall + wall2
        res[name] = (cos, e_t)
        print(f"  {name:<8} {eps:>6} | {h[0]:>10.3f} {h[1]:>6.3f} {h[2]:>6.3f} | {a[2]:>13.3f} | "
              f"{c[0]:>7.3f} {c[1]:>6.3f} {c[2]:>6.3f} {c[3]:>5} | {n / cs:>10.1f} {n / ws:>13.1f}", flush=True)
    if args.tune:
        print(f"\nchoosing eps (tune half of the judged pairs; a second sample crawl, {args.tune_pages} pages, seed 1: "
              f"{len(tune_texts)} docs, {len(tune_gold)} planted pairs): F1 judged-tune / F1 crawl-tune")
        print("  " + f"{'eps':>7}" + "".join(f" {n:>15}" for n, _ in embedders))
        for eps in SEM_EPS_GRID:
            cells = []
            for name, _ in embedders:
                cos, e_t = res[name]
                t = _prf(list((cos > 1 - eps)[split == "tune"]), list(gold2[split == "tune"]))
                c = _pairs_prf(e_t, tune_gold, eps)
                cells.append(f"{t[2]:.3f} / {c[2]:.3f}")
            print("  " + f"{eps:>7}" + "".join(f" {x:>15}" for x in cells))


# ---------------------------------------------------------------------------
# speed

def speed(args) -> None:
    import pyarrow.compute as pc
    from datasketch import MinHash

    from stages.dedup_minhash import minhash_signatures, permutations
    texts = [t for t in real_texts() if len(t) >= 200]
    rng = random.Random(0)
    rng.shuffle(texts)
    texts = texts[: args.docs]
    k, n = 112, 5
    word_re = re.compile(r"\w+")

    def py_shingles(t):
        w = word_re.findall(t.lower())
        return [" ".join(w[i:i + n]) for i in range(max(1, len(w) - n + 1))]

    n_sh = sum(len(py_shingles(t)) for t in texts)
    print(f"{len(texts)} real page texts (realpages gold + copycat), {sum(map(len, texts)) / 1e6:.1f} M chars, "
          f"{n_sh:,} word 5-gram shingles; {k} permutations; one process, one core")

    def timed(fn):
        t0 = time.process_time()
        fn()
        return time.process_time() - t0

    plain_docs = texts[: max(100, len(texts) // 4)]

    def plain():
        for t in plain_docs:
            m = MinHash(num_perm=k, seed=1)
            for s in py_shingles(t):
                m.update(s.encode("utf-8"))

    def batch():
        for t in texts:
            m = MinHash(num_perm=k, seed=1)
            m.update_batch([s.encode("utf-8") for s in py_shingles(t)])

    a, b = permutations(k, 1)

    def ours():
        arr = pa.array(texts, pa.large_string())
        for i in range(0, len(texts), 1024):
            minhash_signatures(arr.slice(i, 1024), ngram=n, a=a, b=b)

    rates = {}
    for name, fn, nd in (("datasketch MinHash.update loop (plain)", plain, len(plain_docs)),
                         ("datasketch MinHash.update_batch per doc", batch, len(texts)),
                         ("datapipe minhash_signatures (numpy)", ours, len(texts))):
        fn() if name.startswith("datapipe") else None      # warm-up (imports, regex compile)
        s = timed(fn)
        rates[name] = nd / s
        print(f"  {name:<42} {nd:>6} docs {s:>7.2f} cpu s  {nd / s:>8.0f} signatures/s per core")
    base = rates["datasketch MinHash.update loop (plain)"]
    ours_rate = rates["datapipe minhash_signatures (numpy)"]
    print(f"  speed-up vs the plain update loop: {ours_rate / base:.1f}x "
          f"(vs update_batch: {ours_rate / rates['datasketch MinHash.update_batch per doc']:.1f}x)")
    _ = pc


# ---------------------------------------------------------------------------
# scale

def scale(args) -> None:
    from stages.dedup_minhash import format_s_curve
    print(format_s_curve(14, 8))
    print(f"corpora: SYNTHETIC documents of REAL sentences ({len(sentence_pool()):,} distinct sentences of realpages "
          "and copycat texts), 8-30 sentences each, 10% planted near copies (2% of words changed); "
          "shards of 20,000 documents")
    print(f"  {'docs':>9} {'shards':>6} {'gen s':>6} {'wall s':>7} {'sig s':>6} {'cc s':>5} {'docs/s':>7} "
          f"{'peak tree':>10} {'peak proc':>10} {'planted':>8} {'removed':>8} {'recall':>7} {'false':>6} {'rounds':>6}")
    engine = None
    if args.engine == "ray":
        from datapipe.ray_backend import Engine
        engine = Engine(quiet=True)
    else:
        engine = SerialEngine()
    root = Path(args.tmp or tempfile.mkdtemp(prefix="dedup-scale-"))
    try:
        for n in args.sizes:
            d = root / f"n{n}"
            shutil.rmtree(d, ignore_errors=True)
            t0 = time.time()
            inputs, planted = synthetic_shards(n, d / "in")
            gen = time.time() - t0
            import contextlib
            import io
            t0 = time.time()
            with PeakMemory() as mem, contextlib.redirect_stderr(io.StringIO()):
                stats, report = run_workflow("dedup_minhash", {}, inputs, d, engine)
            wall = time.time() - t0
            # ground truth: a base document and its planted copies form one group; ideally one survives
            import pyarrow.compute as pc
            n_out = 0
            surv: dict[str, int] = {}
            for p in inputs:
                t = pq.read_table(d / "out" / Path(p).name, columns=["truth"])
                n_out += t.num_rows
                for r in t.group_by("truth").aggregate([("truth", "count")]).to_pylist():
                    surv[r["truth"]] = surv.get(r["truth"], 0) + r["truth_count"]
            groups = set()
            for p in inputs:
                groups.update(pc.unique(pq.read_table(p, columns=["truth"])["truth"]).to_pylist())
            missed = sum(max(0, c - 1) for c in surv.values())
            lost = len(groups) - len(surv)
            removed = n - n_out
            sec = report["seconds"]
            print(f"  {n:>9,} {len(inputs):>6} {gen:>6.0f} {wall:>7.1f} {sec['signatures']:>6.0f} "
                  f"{sec['components']:>5.0f} {n / wall:>7.0f} {mem.peak_rss / 2**30:>8.2f}GB "
                  f"{mem.peak_rss_one / 2**30:>8.2f}GB {planted:>8,} {removed:>8,} {1 - missed / max(1, planted):>7.4f} "
                  f"{lost:>6} {report['cc_rounds']:>6}", flush=True)
            print(f"      candidate pairs {report['candidate_pairs']:,}, edges {report['edges']:,}, components "
                  f"{report['components']:,}, sizes {report['cluster_size_histogram']}; planted copies not caught "
                  f"{missed:,}; groups wrongly merged away (false) {lost:,}", flush=True)
            if not args.keep:
                shutil.rmtree(d, ignore_errors=True)
    finally:
        if hasattr(engine, "shutdown"):
            engine.shutdown()


# ---------------------------------------------------------------------------
# incremental: a snapshot against an index vs. both snapshots from scratch

def _make_engine(kind: str):
    if kind == "ray":
        from datapipe.ray_backend import Engine
        return Engine(quiet=True)
    if kind == "pool":
        return PoolEngine(os.cpu_count() or 1)
    return SerialEngine()


def incremental(args) -> None:
    import contextlib
    import io
    n = args.incremental
    root = Path(args.tmp or tempfile.mkdtemp(prefix="dedup-incr-"))
    engine = _make_engine(args.engine)
    cores = getattr(engine, "num_cpus", 1)
    print(f"incremental: SYNTHETIC documents of REAL sentences, 10% planted near copies; snapshot A = the "
          f"first {n:,}, B = the next {n:,}; dedup_minhash 14 x 8; engine {args.engine} on {cores} core(s)")
    try:
        t0 = time.time()
        inputs, planted = synthetic_shards(2 * n, root / "in", rows_per_shard=min(20_000, max(1, n // 4)))
        half = len(inputs) // 2
        a_in, b_in = inputs[:half], inputs[half:]
        print(f"  corpus: {2 * n:,} docs in {len(inputs)} shards ({planted:,} planted copies), built in "
              f"{time.time() - t0:.0f}s", flush=True)
        print(f"  {'run':<28}{'docs':>10}{'wall s':>9}{'CPU s':>9}{'docs/CPU-s':>11}{'peak tree':>11}"
              f"{'peak proc':>11}{'removed':>9}", flush=True)
        results = {}
        for label, ins, opts in (("A -> new index", a_in, {"index": str(root / "index")}),
                                 ("B against index of A", b_in, {"index": str(root / "index")}),
                                 ("A+B from scratch", inputs, {})):
            d = root / label.split()[0].replace("+", "")
            shutil.rmtree(d, ignore_errors=True)
            t = time.time()
            with PeakMemory() as mem, contextlib.redirect_stderr(io.StringIO()):
                stats, report = run_workflow("dedup_minhash", opts, ins, d, engine)
            wall = time.time() - t
            docs = sum(s.rows_in for s in stats.values())
            kept = {}
            for p in ins:
                kept[Path(p).name] = pq.read_table(d / "out" / Path(p).name, columns=["id"])["id"].to_pylist()
            results[label] = kept
            cpu = mem.cpu_since_start
            print(f"  {label:<28}{docs:>10,}{wall:>9.1f}{cpu:>9.1f}{docs / max(cpu, 1e-9):>11.0f}"
                  f"{mem.peak_rss / 2**30:>9.2f}GB{mem.peak_rss_one / 2**30:>9.2f}GB"
                  f"{report['duplicates_removed']:>9,}", flush=True)
            if report.get("index"):
                print(f"      index: {report['index']}", flush=True)
        b_names = {Path(p).name for p in b_in}
        inc = {i for k, v in results["B against index of A"].items() for i in v}
        joint = {i for k, v in results["A+B from scratch"].items() if k in b_names for i in v}
        print(f"  B survivors: incremental {len(inc):,}, joint run restricted to B {len(joint):,}; in both "
              f"{len(inc & joint):,}; only joint {len(joint - inc):,} (B survivors of clusters that reach A: "
              f"the survivor rule keeps A's); only incremental {len(inc - joint):,}", flush=True)
        du = sum(f.stat().st_size for f in (root / "index").rglob("*") if f.is_file())
        print(f"  index on disk after A and B: {du / 2**20:.1f} MiB ({du / (2 * n):.0f} bytes per document)", flush=True)
    finally:
        if hasattr(engine, "shutdown"):
            engine.shutdown()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------
# semantic dedup at scale

def TreeMonitor(interval: float = 0.5) -> TreeSampler:
    """This process's tree: ``peak_pss`` (sum), ``peak_one`` (largest process), ``peak_procs`` and
    ``cpu_since_start`` (per process: last seen utime+stime minus the value at start)."""
    return TreeSampler(interval=interval)


def semantic_scale(args) -> None:
    """The dedup_semantic workflow (embed, k-means, assign, within-cluster dedup, filter) on the
    real Ray engine over synthetic corpora of 10k-1M documents."""
    import contextlib
    import io
    sizes = [int(x) for x in str(args.semantic_scale).replace(" ", "").split(",") if x]
    opts = {"model": args.model}
    from datapipe.stage import build_stage
    emb = build_stage("dedup_semantic", opts).embedder
    print(f"semantic dedup at scale: model {args.model!r} -> {emb.name} ({emb.kind}, key {emb.key}), eps default, "
          f"max_tokens {emb.max_tokens}")
    print(f"corpora: SYNTHETIC documents of REAL sentences ({len(sentence_pool()):,} distinct sentences of realpages "
          "and copycat texts), 8-30 sentences each, 10% planted near copies (2% of words replaced by other words "
          "of the pool); shards of 20,000")
    from datapipe.ray_backend import Engine
    engine = Engine(quiet=True)
    cores = engine.num_cpus
    print(f"Ray engine, {cores} CPUs; CPU = all processes of the tree during the workflow (driver, raylet, GCS, "
          "workers); PSS = proportional set size, summed over the tree at its peak")
    print(f"  {'docs':>9} {'wall s':>7} {'CPU s':>7} {'docs/CPU-s':>10} {'docs/s/core':>11} {'peak PSS':>9} "
          f"{'largest':>8} {'procs':>5} {'embed':>6} {'kmeans':>6} {'dedup':>6} {'filter':>6} {'k':>5} "
          f"{'planted':>8} {'removed':>8} {'recall':>7} {'false':>6}")
    root = Path(args.tmp or tempfile.mkdtemp(prefix="semdedup-scale-"))
    try:
        for n in sizes:
            d = root / f"n{n}"
            shutil.rmtree(d, ignore_errors=True)
            inputs, planted = synthetic_shards(n, d / "in", edit="swap")
            t0 = time.time()
            with TreeMonitor() as mon, contextlib.redirect_stderr(io.StringIO()):
                _, report = run_workflow("dedup_semantic", opts, inputs, d, engine)
            wall = time.time() - t0
            n_out, surv, groups = 0, {}, set()
            import pyarrow.compute as pc
            for p in inputs:
                t = pq.read_table(d / "out" / Path(p).name, columns=["truth"])
                n_out += t.num_rows
                for r in t.group_by("truth").aggregate([("truth", "count")]).to_pylist():
                    surv[r["truth"]] = surv.get(r["truth"], 0) + r["truth_count"]
                groups.update(pc.unique(pq.read_table(p, columns=["truth"])["truth"]).to_pylist())
            missed = sum(max(0, c - 1) for c in surv.values())
            lost = len(groups) - len(surv)
            sec = report["seconds"]
            cpu = mon.cpu_since_start
            print(f"  {n:>9,} {wall:>7.1f} {cpu:>7.1f} {n / cpu:>10.0f} {n / wall / cores:>11.0f} "
                  f"{mon.peak_pss / 2**30:>7.2f}GB {mon.peak_one / 2**30:>6.2f}GB {mon.peak_procs:>5} "
                  f"{sec.get('embed', 0):>6.1f} {sec.get('kmeans', 0):>6.1f} {sec.get('dedup', 0):>6.1f} "
                  f"{sec.get('filter', 0):>6.1f} {report['n_clusters']:>5} {planted:>8,} {n - n_out:>8,} "
                  f"{1 - missed / max(1, planted):>7.4f} {lost:>6}", flush=True)
            table = report["would_remove_by_eps (max cosine to any earlier doc > 1-eps)"]
            print("      would remove at eps " + ", ".join(f"{e}: {c:,}" for e, c in table.items() if float(e) <= 0.05)
                  + f" (planted copies: {planted:,}; the rest are random mixes of real sentences)", flush=True)
            if not args.keep:
                shutil.rmtree(d, ignore_errors=True)
    finally:
        engine.shutdown()
        if not args.keep and not args.tmp:
            shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=["quality", "semantic", "speed", "scale", "all"])
    ap.add_argument("--semantic", action="store_true", help="the embedders side by side (= `semantic`)")
    ap.add_argument("--semantic-scale", metavar="SIZES", help="semantic dedup workflow at these sizes, e.g. 10000,100000")
    ap.add_argument("--model", default="auto", help="semantic-scale: dedup_semantic's model option")
    ap.add_argument("--static-model", default=None, help="semantic: static model folder (default: what `auto` uses)")
    ap.add_argument("--eps", type=float, default=None, help="semantic: one eps for all (default: each embedder's)")
    ap.add_argument("--tune", action="store_true", help="semantic: also the eps grid on the tuning data")
    ap.add_argument("--tune-pages", type=int, default=2000, help="semantic --tune: pages of the second sample crawl")
    ap.add_argument("--max-tokens", type=int, default=None, help="semantic: truncation (default: each embedder's)")
    ap.add_argument("--docs", type=int, default=2000, help="speed: documents")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--engine", choices=["ray", "serial", "pool"], default="ray")
    ap.add_argument("--incremental", type=int, metavar="N", default=None,
                    help="N documents against an index of N, next to 2N from scratch (e.g. 1000000)")
    ap.add_argument("--pool-file", default=None, help="sentence pool as a JSON list (instead of ../shared/data)")
    ap.add_argument("--save-pool", default=None, help="write the sentence pool as a JSON list and exit")
    ap.add_argument("--tmp", default=None, help="scale: folder for the corpora (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="scale: keep corpora and intermediates")
    args = ap.parse_args(argv)
    global _POOL_FILE
    _POOL_FILE = args.pool_file
    if args.save_pool:
        Path(args.save_pool).write_text(json.dumps(sentence_pool()))
        return 0
    if args.incremental:
        incremental(args)
        return 0
    if not args.what and not args.semantic and not args.semantic_scale:
        ap.error("name a benchmark (quality, semantic, speed, scale, all) or --semantic / --semantic-scale SIZES")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.what in ("quality", "all"):
        quality(args)
    if args.what in ("semantic", "all") or args.semantic:
        semantic(args)
    if args.what in ("speed", "all"):
        speed(args)
    if args.what in ("scale", "all"):
        scale(args)
    if args.semantic_scale:
        semantic_scale(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
