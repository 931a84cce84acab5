"""``dedup_minhash``: near-duplicate removal with MinHash LSH and distributed connected components.

One concern, kept in one module (~700 lines): the MinHash workflow's five steps share its
partitioning and gid layout, and splitting them would scatter one algorithm over files.

A workflow (global pass); every step is ``ctx.engine.map`` over files under ``ctx.work_dir``::

    minhash/sig/s=*.parquet           1. signatures   map over shards: words (``_text.split_words``,
                                          lower case) -> word n-gram hashes -> K = bands x rows
                                          MinHash values per document; also gid, id, length
    minhash/bands/b=*/s=*.parquet     1. band keys    one 64-bit key per (document, band), sorted
    minhash/edges/p=*/...             2. buckets      map over (band, key range): documents sharing a
                                          band key form a bucket -> star edges (smallest gid, other)
    minhash/cc/r*/to=*/from=*         3. (verify +) connected components: large-star / small-star
                                          rounds (Kiveris et al., 2014) over hash-partitioned edge
                                          files until a round changes nothing; O(log^2 n) rounds,
                                          each task holds one partition of edges
    minhash/members/q=*.parquet       4. survivors    map over component partitions: per component
                                          keep the longest text, then the smallest id
                                      5. filter       map over shards: add ``dup_cluster`` and
                                          ``dup_cluster_size``, drop the rest with
                                          ``dedup_minhash_v1:near_duplicate``
    <index>/g=*/{docs,bands}/...      6. append       (with ``index:``) map over shards: this run's
                                          band keys on their cluster's survivor; then the manifest

MinHash: the universal hash family of datasketch, ``h_j(x) = ((a_j x + b_j) mod (2^61 - 1))
& (2^32 - 1)`` over 32-bit shingle hashes, computed for all shingles of a batch at once with
NumPy (``minhash_signatures``); a, b < 2^32 so ``a x + b`` never overflows 64 bits.
Shingles are word n-grams hashed with xxh3 (each distinct word once per batch).
``tests/test_dedup.py`` checks that its Jaccard estimates agree with ``datasketch.MinHash``.

LSH with ``bands`` x ``rows`` makes a pair with Jaccard ``s`` a candidate with probability
``1 - (1 - s^rows)^bands``; the threshold (50%) is near ``(1/bands)^(1/rows)``. The workflow
prints the S-curve. ``verify_threshold`` (optional) drops candidate edges whose
signature-estimated Jaccard is below it (cuts LSH false positives, costs a read of the
signatures).

Memory: no task holds all documents. Signature tasks hold one batch; bucket tasks one
band's keys of a key range (16 bytes/doc, key ranges grow with the corpus); component
and survivor tasks one hash partition of the edges. Stats: candidate pairs, edges,
components, cluster-size histogram, duplicates removed, in ``StageStats.counters`` and in
``<work_dir>/dedup_minhash_report.json``.
"""
from __future__ import annotations

import functools
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapipe import workflow as W
from datapipe.rundir import write_parquet_atomic
from datapipe.schema import set_column
from datapipe.stage import StageError, Workflow, register

from . import _dedup as D
from . import _dedup_index as IX

REASON = "dedup_minhash_v1:near_duplicate"
MERSENNE = np.uint64((1 << 61) - 1)
MAX32 = np.uint64(0xFFFFFFFF)
#: shingles per chunk of the MinHash loop (2 x 256 KB of uint64: stays in L2 cache)
_CHUNK = 1 << 15
#: odd constants for combining n-gram word hashes / band values (fixed: part of the hash definition)
_COMBINE = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                     0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5],
                    dtype=np.uint64)


def _combine_const(k: int) -> np.ndarray:
    """k odd 64-bit multipliers (the fixed eight, then splitmix-derived ones)."""
    if k <= len(_COMBINE):
        return _COMBINE[:k]
    extra = D.mix64(np.arange(k - len(_COMBINE), dtype=np.uint64) + np.uint64(12345)) | np.uint64(1)
    return np.concatenate([_COMBINE, extra])


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of the hash family: a in [1, 2^32), b in [0, 2^32), from ``seed``."""
    rng = np.random.RandomState(seed)
    a = rng.randint(1, 1 << 32, size=num_perm, dtype=np.uint64)
    b = rng.randint(0, 1 << 32, size=num_perm, dtype=np.uint64)
    return a, b


def s_curve(bands: int, rows: int, points=(0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)) -> dict[float, float]:
    """P(candidate | Jaccard s) = 1 - (1 - s^rows)^bands."""
    return {s: 1.0 - (1.0 - s ** rows) ** bands for s in points}


def lsh_threshold(bands: int, rows: int) -> float:
    """The Jaccard at which a pair becomes a candidate with probability 1/2 (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if 1.0 - (1.0 - mid ** rows) ** bands < 0.5:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def format_s_curve(bands: int, rows: int) -> str:
    pts = s_curve(bands, rows)
    body = "  ".join(f"J={s:.2f}:{p:.3f}" for s, p in pts.items())
    return (f"dedup_minhash: {bands} bands x {rows} rows = {bands * rows} permutations; "
            f"threshold (P=0.5) ~ Jaccard {lsh_threshold(bands, rows):.3f}, "
            f"approx (1/b)^(1/r) = {(1 / bands) ** (1 / rows):.3f}\n  P(candidate): {body}")


# ---------------------------------------------------------------------------
# signatures

def shingle_hashes(text: pa.Array, ngram: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the word n-grams of every document, and the row of each.

    Words: ``_text.split_words`` on the lower-cased text (letters/digits runs; CJK
    characters are one word each), so punctuation and spacing do not matter. A document
    with fewer than ``ngram`` words gets one shingle of all its words.
    """
    from ._text import split_words
    n = len(text)
    words, parent = split_words(pc.utf8_lower(text))
    if len(words) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    enc = pc.dictionary_encode(words)
    wh = D.hash64(enc.dictionary, seed)[enc.indices.to_numpy(zero_copy_only=False)]
    counts = np.bincount(parent, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(wh), dtype=np.int64) - starts[parent]
    remaining = counts[parent] - pos
    idx = np.flatnonzero((remaining >= ngram) | ((counts[parent] < ngram) & (pos == 0)))
    rem = remaining[idx]
    acc = np.zeros(len(idx), dtype=np.uint64)
    consts = _combine_const(ngram)
    last = len(wh) - 1
    with np.errstate(over="ignore"):
        for k in range(ngram):
            term = wh[np.minimum(idx + k, last)] * consts[k]
            acc += np.where(rem > k, term, np.uint64(0))
    return D.mix64(acc) & MAX32, parent[idx]


def minhash_signatures(text: pa.Array, *, ngram: int, a: np.ndarray, b: np.ndarray,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(signatures uint32 [n, K], shingles per document) for a text column.

    Documents without any word get all-0xFFFFFFFF signatures and 0 shingles (callers
    leave them out of LSH). Shingles are processed in chunks of ~32k (whole documents)
    with one permutation at a time and in-place operations: the arrays stay in the CPU
    cache, which measured 3x faster than one (shingles x permutations) block."""
    n, k = len(text), len(a)
    x, doc = shingle_hashes(text, ngram, seed)
    sig = np.full((n, k), 0xFFFFFFFF, dtype=np.uint32)
    n_sh = np.bincount(doc, minlength=n).astype(np.int32)
    if len(x) == 0:
        return sig, n_sh
    first = np.ones(len(doc), dtype=bool)
    first[1:] = doc[1:] != doc[:-1]
    starts = np.flatnonzero(first)
    # chunk boundaries at document starts, about _CHUNK shingles apart
    at = np.searchsorted(starts, np.arange(0, len(x), _CHUNK), side="left")
    cuts = starts[np.minimum(at, len(starts) - 1)]
    cuts = np.unique(np.append(cuts, len(x)))
    with np.errstate(over="ignore"):
        for c0, c1 in zip(cuts[:-1], cuts[1:]):
            xc = x[c0:c1]
            lo, hi = np.searchsorted(starts, [c0, c1])
            st = starts[lo:hi] - c0
            rows = doc[starts[lo:hi]]
            v = np.empty(len(xc), dtype=np.uint64)
            t = np.empty_like(v)
            for j in range(k):
                np.multiply(xc, a[j], out=v)          # < 2^64: a, x < 2^32
                v += b[j]                             # b < 2^32: still no overflow
                np.right_shift(v, 61, out=t)          # mod 2^61-1: (v & p) + (v >> 61) ...
                v &= MERSENNE
                v += t
                np.subtract(v, MERSENNE, out=t)       # ... then v - p where v >= p (else t wraps high)
                np.minimum(v, t, out=v)
                v &= MAX32
                sig[rows, j] = np.minimum.reduceat(v, st)
    return sig, n_sh


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 key per (document, band): a mixed linear combination of the band's values."""
    consts = _combine_const(rows)
    out = np.empty((sig.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for bb in range(bands):
            acc = np.zeros(sig.shape[0], dtype=np.uint64)
            for r in range(rows):
                acc += sig[:, bb * rows + r].astype(np.uint64) * consts[r]
            out[:, bb] = D.mix64(acc ^ np.uint64(bb))
    return out


def _signatures(item, *, work: str, ngram: int, bands: int, rows: int, seed: int, batch_size: int) -> int:
    si, path = item
    a, b = permutations(bands * rows, seed)
    k = bands * rows
    sig_parts, band_parts = [], []
    start = 0
    for batch in D.iter_batches(path, ["id", "text"], batch_size=batch_size):
        n = batch.num_rows
        text = D.text_array(batch)
        sig, n_sh = minhash_signatures(text, ngram=ngram, a=a, b=b, seed=seed)
        g = W.gids(si, start, n)
        start += n
        sig_parts.append(pa.table({
            "gid": g, "id": pc.fill_null(pc.cast(batch.column("id"), pa.string()), ""),
            "length": pc.utf8_length(text).cast(pa.int64()), "n_shingles": n_sh,
            "sig": pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel(), pa.uint32()), k)}))
        ok = n_sh > 0
        band_parts.append((g[ok], band_keys(sig[ok], bands, rows)))
    root = Path(work)
    if sig_parts:
        write_parquet_atomic(pa.concat_tables(sig_parts), root / "sig" / f"s={si:06d}.parquet", compression="none")
        g = np.concatenate([p[0] for p in band_parts])
        keys = np.concatenate([p[1] for p in band_parts]) if g.size else np.zeros((0, bands), np.uint64)
        if g.size:
            for bb in range(bands):
                t = pa.table({"key": keys[:, bb], "gid": g}).sort_by("key")
                write_parquet_atomic(t, root / "bands" / f"b={bb:03d}" / f"s={si:06d}.parquet", row_group_rows=65_536)
    return start


# ---------------------------------------------------------------------------
# buckets -> edges

def _buckets(item, *, work: str, key_ranges: int, parts: int, index_gens: tuple[str, ...] = ()) -> dict:
    bb, kr = item
    import pyarrow.dataset as ds
    files = W.list_parquet(Path(work) / "bands" / f"b={bb:03d}")
    if not files:
        return {"candidate_pairs": 0, "bucket_edges": 0}
    span = (1 << 64) // key_ranges
    lo, hi = kr * span, (kr + 1) * span if kr < key_ranges - 1 else None
    flt = ds.field("key") >= pa.scalar(lo, pa.uint64())
    if hi is not None:
        flt = flt & (ds.field("key") < pa.scalar(hi, pa.uint64()))

    d = ds.dataset(files, format="parquet")
    t = d.to_table(filter=flt) if key_ranges > 1 else d.to_table()
    key, gid = t["key"].to_numpy(), t["gid"].to_numpy()
    idx_files = [f for g in index_gens for f in W.list_parquet(Path(g) / "bands" / f"b={bb:03d}")]
    if idx_files:
        # the index's band keys of this key range, each on its cluster's node (above every run gid)
        # scanned with the run's keys as a filter: a task holds the matches, not the index's key range
        it = ds.dataset(idx_files, format="parquet").to_table(
            filter=flt & ds.field("key").isin(pa.array(np.unique(key), pa.uint64())))
        key = np.concatenate([key, it["key"].to_numpy()])
        gid = np.concatenate([gid, it["node"].to_numpy().astype(np.int64) + IX.INDEX_GID_BASE])
    order = np.lexsort((gid, key))
    key, gid = key[order], gid[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    if idx_files:
        # buckets of index nodes only were decided by earlier runs
        grp = np.cumsum(first) - 1
        has_run = gid[np.flatnonzero(first)][grp] < IX.INDEX_GID_BASE
        key, gid = key[has_run], gid[has_run]
        first = first[has_run]
    grp = np.cumsum(first) - 1
    sizes = np.bincount(grp) if len(grp) else np.zeros(0, np.int64)
    u = gid[np.flatnonzero(first)][grp]           # the smallest gid of each bucket
    sel = ~first
    u, v = u[sel], gid[sel]
    cand = int((sizes * (sizes - 1) // 2).sum())
    if len(u):
        part = D.partition_of(u, parts)
        for p in np.unique(part):
            m = part == p
            write_parquet_atomic(pa.table({"u": u[m], "v": v[m]}),
                                 Path(work) / "edges" / f"p={p:05d}" / f"b={bb:03d}-k={kr:04d}.parquet")
    return {"candidate_pairs": cand, "bucket_edges": int(len(u))}


def _gather(work: str, gid: np.ndarray, columns: list[str]) -> dict[str, pa.Array]:
    """Columns of the signature files for the given gids, in their order (read shard by shard)."""
    shard = (gid >> W.ROW_BITS).astype(np.int64)
    row = (gid & W.ROW_MASK).astype(np.int64)
    order = np.argsort(shard, kind="stable")
    bounds = np.flatnonzero(np.diff(shard[order])) + 1
    tables = []
    for sel in np.split(order, bounds):
        if len(sel) == 0:
            continue
        s = int(shard[sel[0]])
        tables.append(pq.read_table(Path(work) / "sig" / f"s={s:06d}.parquet", columns=columns).take(pa.array(row[sel])))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    cat = pa.concat_tables(tables).take(pa.array(inv))
    return {c: cat[c].combine_chunks() for c in columns}


def _sig_matrix(arr: pa.Array, k: int) -> np.ndarray:
    return arr.flatten().to_numpy().reshape(-1, k)


def _edges_to_cc(p: int, *, work: str, parts: int, verify: Optional[float], k: int) -> dict:
    files = W.list_parquet(Path(work) / "edges" / f"p={p:05d}")
    if not files:
        return {"edges": 0, "verified_out": 0}
    t = pa.concat_tables([pq.read_table(f) for f in files])
    u, v = t["u"].to_numpy(), t["v"].to_numpy()
    pairs = np.unique(np.stack([u, v], axis=1), axis=0)
    u, v = pairs[:, 0], pairs[:, 1]
    n_edges = len(u)
    dropped = 0
    if verify is not None and n_edges:
        su = _sig_matrix(_gather(work, u, ["sig"])["sig"], k)
        sv = _sig_matrix(_gather(work, v, ["sig"])["sig"], k)
        keep = (su == sv).mean(axis=1) >= verify
        dropped = int((~keep).sum())
        u, v = u[keep], v[keep]
    _write_directed(Path(work) / "cc" / "r0000", p, np.concatenate([u, v]), np.concatenate([v, u]), parts)
    return {"edges": n_edges, "verified_out": dropped}


def _write_directed(folder: Path, src: int, key: np.ndarray, nbr: np.ndarray, parts: int) -> None:
    if len(key) == 0:
        return
    part = D.partition_of(key, parts)
    for q in np.unique(part):
        m = part == q
        write_parquet_atomic(pa.table({"key": key[m], "nbr": nbr[m]}),
                             folder / f"to={q:05d}" / f"from={src:05d}.parquet")


def _read_pairs(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    files = W.list_parquet(folder)
    if not files:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    t = pa.concat_tables([pq.read_table(f) for f in files])
    key, nbr = t["key"].to_numpy(), t["nbr"].to_numpy()
    order = np.lexsort((nbr, key))
    key, nbr = key[order], nbr[order]
    keep = np.ones(len(key), dtype=bool)
    keep[1:] = (key[1:] != key[:-1]) | (nbr[1:] != nbr[:-1])
    keep &= key != nbr
    return key[keep], nbr[keep]


def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    return np.flatnonzero(first), np.cumsum(first) - 1


def _cc_round(p: int, *, work: str, rnd: int, op: str, parts: int) -> tuple[int, int]:
    """One large-star or small-star reduce over partition ``p`` of round ``rnd``; writes the
    next round's input already routed by its key. Returns (pairs in, fingerprint)."""
    key, nbr = _read_pairs(Path(work) / "cc" / f"r{rnd:04d}" / f"to={p:05d}")
    out = Path(work) / "cc" / f"r{rnd + 1:04d}"
    if len(key) == 0:
        return 0, 0
    with np.errstate(over="ignore"):
        fp = int(np.bitwise_xor.reduce(D.mix64(key.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
                                               + nbr.astype(np.uint64))))
    starts, grp = _groups(key)
    gmin = np.minimum.reduceat(nbr, starts)
    if op == "large":
        # Large-star: connect every larger neighbour to the smallest node of the neighbourhood
        m = np.minimum(gmin, key[starts])[grp]
        sel = nbr > key
        _write_directed(out, p, nbr[sel], m[sel], parts)          # keyed by the larger end (small-star map)
    else:
        # Small-star: input pairs (u, v <= u); connect u and its smaller neighbours to their minimum
        m = gmin[grp]
        sel = nbr != m
        heads = key[starts]
        a = np.concatenate([nbr[sel], heads])
        b = np.concatenate([m[sel], gmin])
        _write_directed(out, p, np.concatenate([a, b]), np.concatenate([b, a]), parts)  # large-star map: both ways
    return len(key), fp


def _route_final(p: int, *, work: str, rnd: int, parts: int) -> int:
    key, nbr = _read_pairs(Path(work) / "cc" / f"r{rnd:04d}" / f"to={p:05d}")
    if len(key):
        part = D.partition_of(nbr, parts)
        for q in np.unique(part):
            m = part == q
            write_parquet_atomic(pa.table({"node": key[m], "comp": nbr[m]}),
                                 Path(work) / "cc" / "final" / f"to={q:05d}" / f"from={p:05d}.parquet")
    return len(key)


def connected_components(engine, work: str, parts: int, *, max_rounds: int = 100) -> tuple[int, float]:
    """Alternate large-star and small-star rounds over ``<work>/cc/r*`` until a large-star
    round sees the same edge set as the one before (a forest of stars around each
    component's smallest gid), then route ``(node, component)`` pairs by component to
    ``<work>/cc/final``. Starts from ``cc/r0000`` (both directions, keyed by the first
    node). Returns (large-star rounds, CPU seconds)."""
    cpu = 0.0
    rnd, prev, rounds = 0, None, 0
    while True:
        res, c = W.timed_map(engine, functools.partial(_cc_round, work=work, rnd=rnd, op="large", parts=parts),
                             range(parts))
        cpu += sum(c)
        rounds += 1
        fp = (sum(r[0] for r in res), functools.reduce(lambda x, y: x ^ y, (r[1] for r in res), 0))
        if fp == prev or fp[0] == 0:
            break
        if rounds > max_rounds:
            raise RuntimeError(f"dedup_minhash: connected components did not converge in {max_rounds} rounds")
        prev = fp
        _, c = W.timed_map(engine, functools.partial(_cc_round, work=work, rnd=rnd + 1, op="small", parts=parts),
                           range(parts))
        cpu += sum(c)
        rnd += 2
    _, c = W.timed_map(engine, functools.partial(_route_final, work=work, rnd=rnd + 1, parts=parts), range(parts))
    return rounds, cpu + sum(c)


def write_edges(work: str, u: np.ndarray, v: np.ndarray, parts: int, src: int = 0) -> None:
    """Undirected edges as the input of :func:`connected_components` (tests, other workflows)."""
    u, v = np.asarray(u, np.int64), np.asarray(v, np.int64)
    _write_directed(Path(work) / "cc" / "r0000", src, np.concatenate([u, v]), np.concatenate([v, u]), parts)


def read_components(work: str) -> dict[int, int]:
    """``{node: smallest node of its component}`` from ``cc/final`` (components of size >= 2)."""
    out: dict[int, int] = {}
    for f in W.list_parquet(Path(work) / "cc" / "final"):
        t = pq.read_table(f)
        for n, c in zip(t["node"].to_pylist(), t["comp"].to_pylist()):
            out[n] = c
            out[c] = c
    return out


def _index_info(index_gens: tuple[str, ...], nodes: np.ndarray) -> dict[str, pa.Array]:
    """``id`` and ``length`` of index nodes (the kept documents of earlier runs), in ``nodes`` order."""
    import pyarrow.dataset as ds
    files = [f for g in index_gens for f in W.list_parquet(Path(g) / "docs")]
    want = pa.array(nodes, pa.int64())
    t = ds.dataset(files, format="parquet").to_table(
        columns=["node", "id", "length"], filter=ds.field("kept") & ds.field("node").isin(want))
    pos = pc.index_in(want, value_set=t["node"].combine_chunks())
    if pos.null_count:
        raise RuntimeError(f"dedup_minhash: index nodes missing from the index's docs: "
                           f"{nodes[np.asarray(pc.is_null(pos))][:5].tolist()} (a damaged index?)")
    return {c: t[c].combine_chunks().take(pos) for c in ("id", "length")}


def _survivors(q: int, *, work: str, index_gens: tuple[str, ...] = ()) -> dict:
    files = W.list_parquet(Path(work) / "cc" / "final" / f"to={q:05d}")
    if not files:
        return {"components": 0, "members": 0, "sizes": {}, "reached_index": 0}
    t = pa.concat_tables([pq.read_table(f) for f in files])
    node, comp = t["node"].to_numpy(), t["comp"].to_numpy()
    centers = np.unique(comp)
    node = np.concatenate([node, centers])
    comp = np.concatenate([comp, centers])
    node, idx = np.unique(node, return_index=True)
    comp = comp[idx]
    new = node < IX.INDEX_GID_BASE
    info = _gather(work, node[new], ["length", "id"])
    length, ids = info["length"], info["id"]
    if not new.all():
        # indexed documents win their component (they stay in the runs that hold them)
        old = _index_info(index_gens, node[~new] - IX.INDEX_GID_BASE)
        order = np.concatenate([np.flatnonzero(new), np.flatnonzero(~new)])
        inv = pa.array(np.argsort(order))
        length = pa.concat_arrays([length, old["length"].cast(pa.int64())]).take(inv)
        ids = pa.concat_arrays([ids.cast(pa.string()), old["id"].cast(pa.string())]).take(inv)
    tbl = pa.table({"gid": node, "comp": comp, "new": pa.array(new), "length": length, "id": ids})
    tbl = tbl.take(pc.sort_indices(tbl, sort_keys=[("comp", "ascending"), ("new", "ascending"),
                                                   ("length", "descending"), ("id", "ascending"),
                                                   ("gid", "ascending")]))
    starts, grp = _groups(tbl["comp"].to_numpy())
    keep = np.zeros(tbl.num_rows, dtype=bool)
    keep[starts] = True
    survivor_id = tbl["id"].take(pa.array(starts[grp]))
    size = np.bincount(grp)
    winner = tbl["gid"].to_numpy()[starts]
    members = pa.table({"gid": tbl["gid"], "cluster": survivor_id, "keep": pa.array(keep),
                        "winner": winner[grp], "size": size[grp]}).filter(tbl["new"]).sort_by("gid")
    write_parquet_atomic(members, Path(work) / "members" / f"q={q:05d}.parquet", row_group_rows=W.DECISION_ROW_GROUP)
    sizes = Counter(size.tolist())
    reached = int((~tbl["new"].to_numpy()[starts]).sum())
    return {"components": len(starts), "members": tbl.num_rows, "sizes": dict(sizes), "reached_index": reached}


def _member_decisions(table: pa.Table, si: int, *, work: str) -> W.Decisions:
    """``dup_cluster`` and ``dup_cluster_size`` on every row (null and 1 without a near duplicate);
    members that are not their component's survivor dropped."""
    mem = W.rows_by_gid(W.list_parquet(Path(work) / "members"), si, table.num_rows,
                        {"cluster": pa.scalar(None, pa.string()), "keep": pa.scalar(True),
                         "size": pa.scalar(1, pa.int64())})
    reasons = pc.if_else(mem["keep"], pa.scalar(None, pa.string()), REASON)
    out = set_column(set_column(table, "dup_cluster", mem["cluster"]), "dup_cluster_size", mem["size"])
    return W.Decisions(out, reasons, counters={"in_dup_cluster": len(mem["cluster"]) - mem["cluster"].null_count})


# ---------------------------------------------------------------------------
# the index: append this run's documents (see stages/_dedup_index.py)

def _index_append(item, *, work: str, gen: str, base: int, cum: tuple[int, ...], bands: int) -> int:
    """One shard's part of a new index generation: ``docs/s=*`` (node, id, length, cluster node,
    cluster size, kept) and ``bands/b=*/s=*`` (band key -> the node of the document's cluster:
    its survivor, here or in the index), deduplicated and sorted by key."""
    si, _ = item
    sig = Path(work) / "sig" / f"s={si:06d}.parquet"
    if not sig.exists():
        return 0
    info = pq.read_table(sig, columns=["id", "length", "n_shingles"])
    n = info.num_rows
    node = np.int64(base + cum[si]) + np.arange(n, dtype=np.int64)
    mem = W.rows_by_gid(W.list_parquet(Path(work) / "members"), si, n,
                        {"winner": pa.scalar(-1, pa.int64()), "keep": pa.scalar(True), "size": pa.scalar(1, pa.int64())})
    win = mem["winner"].to_numpy()
    cluster = node.copy()
    old = win >= IX.INDEX_GID_BASE
    cluster[old] = win[old] - IX.INDEX_GID_BASE
    here = (win >= 0) & ~old
    shard = (win[here] >> W.ROW_BITS).astype(np.int64)
    cluster[here] = base + np.asarray(cum, dtype=np.int64)[shard] + (win[here] & W.ROW_MASK)
    g = Path(gen)
    write_parquet_atomic(pa.table({"node": node, "id": info["id"], "length": info["length"], "cluster": cluster,
                                   "cluster_size": mem["size"], "kept": mem["keep"]}),
                         g / "docs" / f"s={si:06d}.parquet")
    for bb in range(bands):
        f = Path(work) / "bands" / f"b={bb:03d}" / f"s={si:06d}.parquet"
        if not f.exists():
            continue
        t = pq.read_table(f)
        k = t["key"].to_numpy()
        c = cluster[(t["gid"].to_numpy() & W.ROW_MASK).astype(np.int64)]
        pairs = np.unique(np.stack([k, c.astype(np.uint64)], axis=1), axis=0)
        write_parquet_atomic(pa.table({"key": pairs[:, 0], "node": pairs[:, 1].astype(np.int64)}),
                             g / "bands" / f"b={bb:03d}" / f"s={si:06d}.parquet", row_group_rows=65_536)
    return n


_HIST_EDGES = (2, 3, 5, 11, 101, 1001)


def size_histogram(sizes: dict[int, int]) -> dict[str, int]:
    """Components by size bucket: ``2``, ``3-4``, ``5-10``, ``11-100``, ``101-1000``, ``>1000``."""
    out: dict[str, int] = {}
    for size, count in sizes.items():
        for lo, hi in zip(_HIST_EDGES, _HIST_EDGES[1:] + (None,)):
            if size >= lo and (hi is None or size < hi):
                label = f">{lo - 1}" if hi is None else (str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}")
                out[label] = out.get(label, 0) + count
                break
    return out


@register
class MinHashDedup(Workflow):
    """Near-duplicate removal: MinHash LSH over word n-grams, connected components, one
    survivor per component (the longest text, then the smallest id).

    Adds ``dup_cluster`` (the id of the component's survivor; null for documents without a
    near duplicate); drops the others as ``dedup_minhash_v1:near_duplicate``. Options:
    ``ngram`` words per shingle, ``bands`` x ``rows`` LSH layout (permutations = their
    product), ``seed`` of the hash family, ``verify_threshold`` (optional minimum
    signature-estimated Jaccard of a candidate pair), ``partitions`` of the edge/component
    steps (default 2 per CPU, more for big corpora; results do not depend on it).
    Cost: ~1 ms per document per core for signatures (K=112), I/O-bound afterwards.

    ``dup_cluster_size``: documents in the component (1 without a near duplicate), kept on
    survivors for rehydration (``datapipe.mix``'s ``rehydrate``). ``index: PATH``: a persistent
    index (``stages/_dedup_index.py``) of every earlier run's band keys, each on its cluster's
    survivor. Survivor rule with an index: a component that reaches an indexed document keeps
    the indexed survivor (it stays in the run that holds it) and drops all of this run's
    documents in it, with ``dup_cluster`` naming the indexed survivor (the longest, then the
    smallest id, when a new document bridges several); other components follow the rule
    above. So the new survivors equal a joint run over all snapshots restricted to this one,
    except that a component spanning snapshots never keeps a new document. The run's documents
    are appended (all of them, on their cluster's survivor), atomically. Not combinable with
    ``verify_threshold`` (the index keeps band keys, not signatures).
    """

    name = "dedup_minhash"
    inputs = ("text",)
    outputs = ("dup_cluster", "dup_cluster_size")

    def __init__(self, *, ngram: int = 5, bands: int = 14, rows: int = 8, seed: int = 1,
                 verify_threshold: Optional[float] = None, partitions: Optional[int] = None,
                 batch_size: int = 1024, max_rounds: int = 100, index: Optional[str] = None):
        if ngram < 1:
            raise StageError(f"dedup_minhash: ngram must be >= 1, got {ngram}")
        if bands < 1 or rows < 1:
            raise StageError(f"dedup_minhash: bands and rows must be >= 1, got {bands} x {rows}")
        if verify_threshold is not None and not 0.0 < verify_threshold <= 1.0:
            raise StageError(f"dedup_minhash: verify_threshold must be in (0, 1], got {verify_threshold}")
        if partitions is not None and partitions < 1:
            raise StageError(f"dedup_minhash: partitions must be >= 1, got {partitions}")
        if batch_size < 1:
            raise StageError(f"dedup_minhash: batch_size must be >= 1, got {batch_size}")
        self.ngram, self.bands, self.rows, self.seed = ngram, bands, rows, seed
        self.verify_threshold, self.partitions = verify_threshold, partitions
        self.batch_size, self.max_rounds = batch_size, max_rounds
        if index is not None and verify_threshold is not None:
            raise StageError("dedup_minhash: index: and verify_threshold cannot be combined (the index keeps "
                             "band keys, not signatures)")
        self.index = index

    def index_params(self) -> dict:
        """What makes two runs' band keys comparable: an index is built for these only."""
        return {"ngram": self.ngram, "bands": self.bands, "rows": self.rows, "seed": self.seed,
                "shingles": "words-lower-xxh3-v1"}

    def run(self, ctx) -> dict:
        t_start = time.time()
        timings: dict[str, float] = {}
        print(format_s_curve(self.bands, self.rows), file=sys.stderr, flush=True)
        work = D.fresh_dir(Path(ctx.work_dir) / "minhash")
        w = str(work)
        items = list(enumerate(ctx.inputs))
        k = self.bands * self.rows

        t = time.time()
        counts, shard_cpu = W.timed_map(ctx.engine, functools.partial(
            _signatures, work=w, ngram=self.ngram, bands=self.bands, rows=self.rows, seed=self.seed,
            batch_size=self.batch_size), items)
        timings["signatures"] = time.time() - t
        n_docs = int(sum(counts))
        index, index_gens, fp = None, (), ""
        if self.index:
            index = IX.DedupIndex(self.index, workflow=self.name, params=self.index_params())
            fp = IX.fingerprint(i for f in W.list_parquet(work / "sig") for i in pq.read_table(f, columns=["id"])["id"].to_pylist())
            index.exclude_fingerprint(fp)
            index_gens = tuple(str(g) for g in index.generations)
        cpus = W.engine_cpus(ctx.engine)
        parts = self.partitions or max(2 * cpus, math.ceil(n_docs / 250_000))
        key_ranges = max(1, math.ceil(n_docs / 4_000_000))
        global_cpu = 0.0

        t = time.time()
        bres, c = W.timed_map(ctx.engine, functools.partial(_buckets, work=w, key_ranges=key_ranges, parts=parts,
                                                            index_gens=index_gens),
                              [(bb, kr) for bb in range(self.bands) for kr in range(key_ranges)])
        global_cpu += sum(c)
        eres, c = W.timed_map(ctx.engine, functools.partial(_edges_to_cc, work=w, parts=parts,
                                                            verify=self.verify_threshold, k=k), range(parts))
        global_cpu += sum(c)
        timings["buckets_edges"] = time.time() - t

        t = time.time()
        rounds, c = connected_components(ctx.engine, w, parts, max_rounds=self.max_rounds)
        global_cpu += c
        sres, c = W.timed_map(ctx.engine, functools.partial(_survivors, work=w, index_gens=index_gens), range(parts))
        global_cpu += sum(c)
        timings["components"] = time.time() - t

        t = time.time()
        stats = W.filter_shards(ctx, self.name, functools.partial(_member_decisions, work=w),
                                shard_cpu=shard_cpu, global_cpu=global_cpu)
        timings["filter"] = time.time() - t
        if index is not None:
            t = time.time()
            gen = index.new_generation()
            cum = tuple(int(x) for x in np.concatenate([[0], np.cumsum(counts)[:-1]]))
            _, c = W.timed_map(ctx.engine, functools.partial(_index_append, work=w, gen=str(gen), base=index.base,
                                                             cum=cum, bands=self.bands), items)
            if stats:
                next(iter(stats.values())).seconds += sum(c)
            index.commit(gen, fp=fp, docs=n_docs, info={"run_work_dir": str(ctx.work_dir)})
            timings["index_append"] = time.time() - t

        sizes: Counter = Counter()
        for r in sres:
            sizes.update({int(s): c for s, c in r["sizes"].items()})
        removed = sum(st.rows_in - st.rows_out for st in stats.values())
        report = {
            "documents": n_docs, "ngram": self.ngram, "bands": self.bands, "rows": self.rows,
            "permutations": k, "seed": self.seed, "threshold": round(lsh_threshold(self.bands, self.rows), 4),
            "s_curve": {str(s): round(p, 4) for s, p in s_curve(self.bands, self.rows).items()},
            "verify_threshold": self.verify_threshold, "partitions": parts, "key_ranges": key_ranges,
            "candidate_pairs": sum(r["candidate_pairs"] for r in bres),
            "bucket_edges": sum(r["bucket_edges"] for r in bres),
            "edges": sum(r["edges"] for r in eres),
            "edges_rejected_by_verify": sum(r["verified_out"] for r in eres),
            "cc_rounds": rounds,
            "components": sum(r["components"] for r in sres),
            "docs_in_components": sum(r["members"] for r in sres),
            "cluster_size_histogram": size_histogram(sizes),
            "largest_cluster": max(sizes) if sizes else 0,
            "index": None if index is None else {"path": str(self.index), "generations_read": len(index_gens),
                                                 "components_reaching_index": sum(r["reached_index"] for r in sres),
                                                 "nodes_after": index.manifest["nodes"]},
            "duplicates_removed": removed,
            "seconds": {k2: round(v, 2) for k2, v in timings.items()} | {"total": round(time.time() - t_start, 2)},
        }
        from datapipe.rundir import atomic_write_json
        atomic_write_json(Path(ctx.work_dir) / "dedup_minhash_report.json", report)
        if stats:
            # run-wide figures once (on the first shard), so merged stats count them once
            first = next(iter(stats.values()))
            first.counters.update({k2: v for k2, v in (
                ("candidate_pairs", report["candidate_pairs"]), ("edges", report["edges"]),
                ("edges_rejected_by_verify", report["edges_rejected_by_verify"]),
                ("components", report["components"]), ("cc_rounds", rounds)) if v})
            for label, c in report["cluster_size_histogram"].items():
                first.counters[f"cluster_size:{label}"] = c
        print(f"dedup_minhash: {n_docs:,} docs, {report['candidate_pairs']:,} candidate pairs, "
              f"{report['edges']:,} edges, {report['components']:,} components, {removed:,} removed "
              f"({rounds} cc rounds, {report['seconds']['total']}s)", file=sys.stderr, flush=True)
        return stats
