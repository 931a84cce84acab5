"""Stratified, seeded samples of a run's output for labelling (``datapipe classify sample``).

Strata are the combinations of the columns in ``by`` that the data has (default ``source`` and
``lid_lang``); the sample size of each stratum is proportional to its size (largest remainder,
at least one document per stratum while the budget lasts). Inside a stratum, documents are taken
round-robin over web domains in a seeded random order, so one big site cannot fill a stratum:
the first pick of every domain comes before any domain's second. The same seed and input give
the same sample; ranks come from a hash of (seed, id), not from file order.

Cost: one pass over the id/stratum/url columns of every file, then a second read of only the
chosen rows' text -- memory is the size of the small columns, not of the texts.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapipe.schema import set_column
from datapipe.urls import url_domain

DEFAULT_BY = ("source", "lid_lang", "domain")


def parquet_files(paths: list[str | Path]) -> list[Path]:
    """Parquet files under run directories (``output/``), folders or given directly."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            base = p / "output" if (p / "output").is_dir() else p
            out.extend(sorted(f for f in base.rglob("*.parquet") if not f.name.startswith(".")))
        elif p.suffix == ".parquet" and p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: not a Parquet file or folder")
    if not out:
        raise FileNotFoundError(f"no Parquet files under {', '.join(map(str, paths))}")
    return out


def _rank(seed: int, doc_id: str) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}\x1f{doc_id}".encode()).digest()[:8], "big")


def allocate(sizes: dict, n: int) -> dict:
    """Proportional allocation of ``n`` over strata (largest remainder, >= 1 each while possible)."""
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    keys = sorted(sizes, key=lambda k: (-sizes[k], str(k)))
    alloc = {k: 0 for k in keys}
    # one per stratum first (small strata are what stratifying is for), biggest strata first
    for k in keys[:n]:
        alloc[k] = 1
    left = n - sum(alloc.values())
    if left > 0:
        rest = {k: sizes[k] - alloc[k] for k in keys}
        rest_total = sum(rest.values())
        quota = {k: left * rest[k] / rest_total for k in keys}
        for k in keys:
            alloc[k] += int(quota[k])
        left = n - sum(alloc.values())
        for k in sorted(keys, key=lambda k: (-(quota[k] - int(quota[k])), str(k)))[:left]:
            alloc[k] += 1
    return alloc


def stratified_sample(paths: list[str | Path], n: int, *, by: tuple[str, ...] = DEFAULT_BY, seed: int = 0,
                      columns: tuple[str, ...] = ("id", "text", "source", "url", "lid_lang")) -> pa.Table:
    """``n`` documents from the Parquet files under ``paths``, stratified by ``by`` (see module doc).

    ``domain`` in ``by`` means "spread over domains inside each stratum", not a stratum of its own
    (crawls have as many domains as documents). Adds ``sample_stratum``; keeps the ``columns`` present.
    """
    files = parquet_files(paths)
    strat_cols = [c for c in by if c != "domain"]
    spread_domains = "domain" in by
    # pass 1: small columns only
    entries = []   # (file index, row index, id, stratum, domain)
    for fi, f in enumerate(files):
        names = pq.read_schema(f).names
        want = ["id"] + [c for c in strat_cols if c in names] + (["url"] if spread_domains and "url" in names else [])
        t = pq.read_table(f, columns=list(dict.fromkeys(want)))
        ids = [str(x) for x in t["id"].to_pylist()]
        strata = list(zip(*[pc.cast(t[c], pa.string()).to_pylist() for c in strat_cols if c in names])) \
            if any(c in names for c in strat_cols) else [()] * len(ids)
        doms = pc.fill_null(url_domain(t["url"]), "").to_pylist() if "url" in t.column_names else [""] * len(ids)
        for ri, (doc, st, dom) in enumerate(zip(ids, strata, doms)):
            entries.append((fi, ri, doc, tuple("" if s is None else s for s in st), dom))
    by_stratum: dict[tuple, list] = defaultdict(list)
    for e in entries:
        by_stratum[e[3]].append(e)
    alloc = allocate({k: len(v) for k, v in by_stratum.items()}, n)
    chosen = []
    for st, items in by_stratum.items():
        k = alloc.get(st, 0)
        if not k:
            continue
        items.sort(key=lambda e: _rank(seed, e[2]))
        if spread_domains:
            # round-robin over domains: rank of a doc = (its position within its domain, domain order)
            per_dom: dict[str, int] = defaultdict(int)
            dom_order: dict[str, int] = {}
            keyed = []
            for e in items:
                dom_order.setdefault(e[4], len(dom_order))
                keyed.append(((per_dom[e[4]], dom_order[e[4]]), e))
                per_dom[e[4]] += 1
            keyed.sort(key=lambda x: x[0])
            items = [e for _, e in keyed]
        chosen.extend(items[:k])
    chosen.sort(key=lambda e: _rank(seed, e[2]))
    # pass 2: full rows of the chosen documents, file by file
    want_by_file: dict[int, list[int]] = defaultdict(list)
    for e in chosen:
        want_by_file[e[0]].append(e[1])
    parts = {}
    for fi, rows in want_by_file.items():
        names = pq.read_schema(files[fi]).names
        cols = [c for c in columns if c in names]
        t = pq.read_table(files[fi], columns=cols).take(pa.array(sorted(rows)))
        for r, row in zip(sorted(rows), t.to_pylist()):
            parts[(fi, r)] = row
    rows = []
    for e in chosen:
        row = parts[(e[0], e[1])]
        row["sample_stratum"] = "/".join(e[3]) if e[3] else "all"
        rows.append(row)
    if not rows:
        return pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.large_string())})
    out = pa.Table.from_pylist(rows)
    if "text" in out.column_names and out.schema.field("text").type != pa.large_string():
        out = set_column(out, "text", out["text"].cast(pa.large_string()))
    return out
