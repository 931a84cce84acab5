"""Exact deduplication workflows: URL and document (``dedup_exact``), CCNet lines (``dedup_lines``).

Both are global passes with their intermediates under ``ctx.work_dir``:

``dedup_exact`` (reasons ``dedup_exact_v1:url``, ``dedup_exact_v1:text``)::

    keys    map over shards   normalised-URL and normalised-text xxh3-128 keys per document,
                              hash-partitioned into url/p=*/ (and text/p=*/ for docs without URL)
    url     map over parts    per URL key keep the latest fetch (then smallest id); the rest are
                              dropped; survivors go on, re-partitioned by text key, to text/p=*/
    text    map over parts    per text key keep the earliest fetch (the likely original, then
                              smallest id) among URL survivors
    filter  map over shards   drop the decided rows (each dropped row records ``dup_of``)

``dedup_lines`` (CCNet, LLaMA): every line is normalised (NFKC, lower case, accents
stripped, digits to 0, punctuation removed); a line whose normalised form was seen
before, in the same group of shards, is removed from all but its first occurrence
(first = smallest shard index, row, line). Texts are rewritten; documents left
without any line are dropped as ``dedup_lines_v1:empty``. Counters: ``lines_removed``,
``chars_removed``, ``docs_modified``.

Cost: one read of every shard for the keys and one for the filter; the reduce steps
hold one hash partition of keys (~40 bytes per document, ~20 bytes per line) in memory.
Survivors do not depend on the number of partitions or on the order tasks finish.
"""
from __future__ import annotations

import functools
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

URL_REASON = "dedup_exact_v1:url"
TEXT_REASON = "dedup_exact_v1:text"
LINES_REASON = "dedup_lines_v1:empty"
_INT64_MIN = np.iinfo(np.int64).min
_INT64_MAX = np.iinfo(np.int64).max


# ---------------------------------------------------------------------------
# URL normalisation

_TRACKING = ("utm_", "fbclid", "gclid", "mc_cid", "mc_eid", "yclid", "_ga", "msclkid")


@functools.lru_cache(maxsize=1 << 16)
def normalize_url(url: str) -> str:
    """Lower-case scheme and host, drop ``www.``, default ports, fragments, tracking
    parameters and a trailing slash; sort the query. ``http`` and ``https`` are the same page."""
    from urllib.parse import parse_qsl, urlencode, urlsplit
    try:
        s = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    host = (s.hostname or "").lower().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    try:
        port = s.port
    except ValueError:
        port = None
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    path = s.path or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/")
    q = [(k, v) for k, v in parse_qsl(s.query, keep_blank_values=True) if not k.lower().startswith(_TRACKING)]
    query = urlencode(sorted(q))
    return f"{netloc}{path}" + (f"?{query}" if query else "")


def url_keys(urls: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hi, lo, valid) xxh3-128 of normalised URLs. A Python loop over URLs: urllib has no
    vectorised form and URLs are short (~2 us each, small next to reading the text)."""
    vals = urls.to_pylist()
    valid = np.array([bool(u) for u in vals], dtype=bool)
    norm = pa.array([normalize_url(u) if u else "" for u in vals], pa.large_string())
    hi, lo = D.hash128(norm)
    return hi, lo, valid


def text_keys(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hi, lo, valid) xxh3-128 of texts with Unicode, case and whitespace normalised."""
    norm = D.normalize(text, punctuation=False, digits=False, accents=False)
    hi, lo = D.hash128(norm)
    valid = pc.greater(pc.utf8_length(norm), 0).to_numpy(zero_copy_only=False)
    return hi, lo, valid


def _fetch_seconds(batch) -> np.ndarray:
    if "fetch_time" not in batch.schema.names:
        return np.full(batch.num_rows, _INT64_MIN, dtype=np.int64)
    col = batch.column("fetch_time")
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    secs = pc.cast(pc.cast(col, pa.timestamp("s", tz="UTC")), pa.int64())
    return pc.fill_null(secs, _INT64_MIN).to_numpy(zero_copy_only=False).astype(np.int64)


# ---------------------------------------------------------------------------
# steps (module-level functions: they are pickled to workers)

_KEY_SCHEMA = pa.schema([("h1", pa.uint64()), ("h2", pa.uint64()), ("t1", pa.uint64()), ("t2", pa.uint64()),
                         ("has_text", pa.bool_()), ("gid", pa.int64()), ("fetch", pa.int64()), ("id", pa.string())])


def _exact_keys(item, *, work: str, parts: int, by_url: bool, by_text: bool) -> int:
    si, path = item
    url_rows, text_rows = [], []
    start = 0
    for b in D.iter_batches(path, ["id", "url", "text", "fetch_time"]):
        n = b.num_rows
        g = W.gids(si, start, n)
        start += n
        ids = pc.fill_null(pc.cast(b.column("id"), pa.string()), "")
        if by_text:
            t1, t2, tv = text_keys(D.text_array(b))
        else:
            t1 = t2 = np.zeros(n, np.uint64)
            tv = np.zeros(n, bool)
        if by_url and "url" in b.schema.names:
            h1, h2, uv = url_keys(b.column("url"))
        else:
            h1 = h2 = np.zeros(n, np.uint64)
            uv = np.zeros(n, bool)
        tbl = pa.table([h1, h2, t1, t2, tv, g, _fetch_seconds(b), ids], schema=_KEY_SCHEMA)
        url_rows.append(tbl.filter(pa.array(uv)))
        text_rows.append(tbl.filter(pa.array(~uv & tv)))
    for name, rows, key in (("url", url_rows, "h1"), ("text", text_rows, "t1")):
        tbl = pa.concat_tables(rows) if rows else _KEY_SCHEMA.empty_table()
        if tbl.num_rows == 0:
            continue
        part = D.partition_of(tbl[key].to_numpy(), parts)
        for p in np.unique(part):
            write_parquet_atomic(tbl.filter(pa.array(part == p)),
                                 Path(work) / name / f"p={p:05d}" / f"s={si:06d}.parquet")
    return start


def _winners(tbl: pa.Table, k1: str, k2: str, order: list[tuple[str, str]]) -> tuple[pa.Table, pa.Table]:
    """Sort by key then preference; the first row of each key group wins. Returns
    (winners, losers with ``dup_of`` = id of their group's winner)."""
    idx = pc.sort_indices(tbl, sort_keys=[(k1, "ascending"), (k2, "ascending")] + order + [("gid", "ascending")])
    tbl = tbl.take(idx)
    a, b = tbl[k1].to_numpy(), tbl[k2].to_numpy()
    first = np.ones(tbl.num_rows, dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    group = np.cumsum(first) - 1
    win_pos = np.flatnonzero(first)
    dup_of = tbl["id"].take(pa.array(win_pos[group]))
    losers = tbl.filter(pa.array(~first)).append_column("dup_of", dup_of.filter(pa.array(~first)))
    return tbl.filter(pa.array(first)), losers


def _write_drops(losers: pa.Table, reason: str, path: Path) -> int:
    if losers.num_rows == 0:
        return 0
    d = pa.table({"gid": losers["gid"], "reason": pa.array([reason] * losers.num_rows, pa.string()),
                  "dup_of": losers["dup_of"]})
    write_parquet_atomic(d.sort_by("gid"), path, row_group_rows=W.DECISION_ROW_GROUP)
    return d.num_rows


def _indexed(tbl: pa.Table, k1: str, k2: str, files: list[str]) -> tuple[pa.Table, pa.Table]:
    """Split rows into (not in the index, in the index with ``dup_of`` = the indexed id)."""
    if not files or not tbl.num_rows:
        return tbl, tbl.slice(0, 0).append_column("dup_of", pa.array([], pa.string()))
    import pyarrow.dataset as ds
    # scanned with this partition's keys as a filter: memory follows the run's partition, not the index
    want = pc.unique(tbl[k1].combine_chunks() if isinstance(tbl[k1], pa.ChunkedArray) else tbl[k1])
    idx = ds.dataset(files, format="parquet").to_table(filter=ds.field("k1").isin(want))
    idx = pa.table({k1: idx["k1"], k2: idx["k2"], "dup_of": idx["id"]})
    j = tbl.append_column("_row", pa.array(np.arange(tbl.num_rows))).join(idx, keys=[k1, k2], join_type="left outer")
    hit = pc.is_valid(j["dup_of"])
    old = j.filter(hit).sort_by("_row")
    new_rows = np.ones(tbl.num_rows, dtype=bool)
    new_rows[old["_row"].to_numpy()] = False
    return tbl.filter(pa.array(new_rows)), old.select(tbl.column_names + ["dup_of"])


def _index_files(index_gens: tuple[str, ...], kind: str, p: int) -> list[str]:
    return [str(f) for g in index_gens if (f := Path(g) / kind / f"p={p:05d}.parquet").exists()]


def _index_keys(winners: pa.Table, k1: str, k2: str, path: Path) -> None:
    if winners.num_rows:
        write_parquet_atomic(pa.table({"k1": winners[k1], "k2": winners[k2], "id": winners["id"]}), path)


def _url_reduce(p: int, *, work: str, parts: int, index_gens: tuple[str, ...] = (), gen: str | None = None) -> int:
    files = W.list_parquet(Path(work) / "url" / f"p={p:05d}")
    if not files:
        return 0
    tbl = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
    # URLs an earlier run indexed: that run's document stays
    tbl, old = _indexed(tbl, "h1", "h2", _index_files(index_gens, "url", p))
    # keep the latest fetch of a URL (nulls are INT64_MIN: any dated capture wins)
    winners, losers = _winners(tbl, "h1", "h2", [("fetch", "descending"), ("id", "ascending")])
    losers = pa.concat_tables([old, losers.select(old.column_names)]) if old.num_rows else losers
    n = _write_drops(losers, URL_REASON, Path(work) / "drops" / f"url-p={p:05d}.parquet")
    if gen is not None:
        _index_keys(winners, "h1", "h2", Path(gen) / "url" / f"p={p:05d}.parquet")
    winners = winners.filter(winners["has_text"])
    if winners.num_rows:
        part = D.partition_of(winners["t1"].to_numpy(), parts)
        for q in np.unique(part):
            write_parquet_atomic(winners.filter(pa.array(part == q)),
                                 Path(work) / "text" / f"p={q:05d}" / f"u={p:05d}.parquet")
    return n


def _text_reduce(p: int, *, work: str, index_gens: tuple[str, ...] = (), gen: str | None = None) -> int:
    files = W.list_parquet(Path(work) / "text" / f"p={p:05d}")
    if not files:
        return 0
    tbl = pa.concat_tables([pq.read_table(f) for f in files])
    tbl, old = _indexed(tbl, "t1", "t2", _index_files(index_gens, "text", p))
    # the earliest capture of a text is the likely original; undated captures come last
    fetch = tbl["fetch"].to_numpy()
    tbl = set_column(tbl, "fetch", pa.array(np.where(fetch == _INT64_MIN, _INT64_MAX, fetch)))
    winners, losers = _winners(tbl, "t1", "t2", [("fetch", "ascending"), ("id", "ascending")])
    losers = pa.concat_tables([old, losers.select(old.column_names)]) if old.num_rows else losers
    if gen is not None:
        _index_keys(winners, "t1", "t2", Path(gen) / "text" / f"p={p:05d}.parquet")
    return _write_drops(losers, TEXT_REASON, Path(work) / "drops" / f"text-p={p:05d}.parquet")


def _drop_decisions(table: pa.Table, si: int, *, work: str) -> W.Decisions:
    none = pa.scalar(None, pa.string())
    dec = W.rows_by_gid(W.list_parquet(Path(work) / "drops"), si, table.num_rows, {"reason": none, "dup_of": none})
    return W.Decisions(table, dec["reason"], reject_columns={"dup_of": dec["dup_of"]})


@register
class ExactDedup(Workflow):
    """Exact URL and document dedup (global pass).

    ``url``: one document per normalised URL, the latest capture (``fetch_time``), then
    the smallest id. ``text``: one document per normalised text (Unicode NFKC, lower case,
    whitespace collapsed) among URL survivors, the earliest capture, then the smallest id.
    Dropped rows name their survivor in ``dup_of`` (rejects samples). ``partitions``: hash
    partitions of the reduce steps (default: 2 per CPU); results do not depend on it.

    ``index: PATH``: a persistent index (``stages/_dedup_index.py``) of the URL and text keys
    of earlier runs' survivors. A document whose normalised URL or text an earlier run kept is
    dropped (``dup_of`` names the indexed document, which stays in the run that holds it),
    whatever its fetch time; the rest is deduplicated as above and this run's survivors' keys
    are appended atomically. The index fixes ``partitions`` (those of its first run).
    """

    name = "dedup_exact"
    inputs = ("text",)

    def __init__(self, *, url: bool = True, text: bool = True, partitions: Optional[int] = None,
                 index: Optional[str] = None):
        if not (url or text):
            raise StageError("dedup_exact: enable url, text or both")
        if partitions is not None and partitions < 1:
            raise StageError(f"dedup_exact: partitions must be >= 1, got {partitions}")
        self.url, self.text, self.partitions = url, text, partitions
        self.index = index

    def run(self, ctx) -> dict:
        work = D.fresh_dir(Path(ctx.work_dir) / "dedup_exact")
        parts = self.partitions or 2 * W.engine_cpus(ctx.engine)
        index, gens, gen = None, (), None
        if self.index:
            index = IX.DedupIndex(self.index, workflow=self.name, partitions=parts,
                                  params={"url": self.url, "text": self.text, "keys": "xxh3-128-v1"})
            parts = index.partitions
        items = list(enumerate(ctx.inputs))
        _, cpu = W.timed_map(ctx.engine, functools.partial(_exact_keys, work=str(work), parts=parts,
                                                           by_url=self.url, by_text=self.text), items)
        if index is not None:
            fp = IX.fingerprint(i for f in W.list_parquet(work) for i in pq.read_table(f, columns=["id"])["id"].to_pylist())
            index.exclude_fingerprint(fp)
            gens = tuple(str(g) for g in index.generations)
            gen = index.new_generation()
        global_cpu = 0.0
        if self.url:
            _, c = W.timed_map(ctx.engine, functools.partial(_url_reduce, work=str(work), parts=parts,
                                                             index_gens=gens, gen=None if gen is None else str(gen)),
                               range(parts))
            global_cpu += sum(c)
        _, c = W.timed_map(ctx.engine, functools.partial(_text_reduce, work=str(work), index_gens=gens,
                                                         gen=None if gen is None else str(gen)), range(parts))
        global_cpu += sum(c)
        stats = W.filter_shards(ctx, self.name, functools.partial(_drop_decisions, work=str(work)),
                                shard_cpu=cpu, global_cpu=global_cpu)
        if index is not None:
            index.commit(gen, fp=fp, docs=sum(st.rows_in for st in stats.values()),
                         info={"run_work_dir": str(ctx.work_dir)})
        return stats


# ---------------------------------------------------------------------------
# CCNet line-level dedup

def split_lines(text: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(lines, row of each line, index of each line within its row); ``\\n`` separated."""
    lists = pc.split_pattern(text, "\n")
    values, parent = _flatten(lists)
    offs = lists.offsets.to_numpy()[:-1].astype(np.int64)
    line_no = np.arange(len(values), dtype=np.int64) - offs[parent] if len(values) else np.zeros(0, np.int64)
    return values, parent, line_no


def _flatten(lists):
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    values = lists.flatten()
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    return values, parent


def line_hashes(lines: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(hash, non-empty mask) of CCNet-normalised lines; each distinct line is hashed once."""
    norm = D.normalize(lines)
    enc = pc.dictionary_encode(norm)
    h = D.hash64(enc.dictionary)[enc.indices.to_numpy(zero_copy_only=False)]
    nonempty = pc.greater(pc.utf8_length(norm), 0).to_numpy(zero_copy_only=False)
    return h, nonempty


def _line_keys(item, *, work: str, parts: int, group: int) -> int:
    si, path = item
    g = si // group
    chunks = []
    start = 0
    for b in D.iter_batches(path, ["text"]):
        lines, parent, line_no = split_lines(D.text_array(b))
        h, ok = line_hashes(lines)
        gid = W.gids(si, start, b.num_rows)[parent]
        start += b.num_rows
        chunks.append(pa.table({"h": h[ok], "gid": gid[ok], "line": line_no[ok].astype(np.int32)}))
    if not chunks:
        return 0
    tbl = pa.concat_tables(chunks)
    part = D.partition_of(tbl["h"].to_numpy(), parts)
    for p in np.unique(part):
        write_parquet_atomic(tbl.filter(pa.array(part == p)),
                             Path(work) / "lines" / f"g={g:05d}" / f"p={p:05d}" / f"s={si:06d}.parquet")
    return tbl.num_rows


def _line_reduce(item, *, work: str) -> int:
    g, p = item
    files = W.list_parquet(Path(work) / "lines" / f"g={g:05d}" / f"p={p:05d}")
    if not files:
        return 0
    tbl = pa.concat_tables([pq.read_table(f) for f in files])
    h, gid, line = tbl["h"].to_numpy(), tbl["gid"].to_numpy(), tbl["line"].to_numpy()
    order = np.lexsort((line, gid, h))
    h, gid, line = h[order], gid[order], line[order]
    first = np.ones(len(h), dtype=bool)
    first[1:] = h[1:] != h[:-1]
    drops = pa.table({"gid": gid[~first], "line": line[~first]}).sort_by([("gid", "ascending"), ("line", "ascending")])
    if drops.num_rows:
        write_parquet_atomic(drops, Path(work) / "drops" / f"g={g:05d}-p={p:05d}.parquet",
                             row_group_rows=W.DECISION_ROW_GROUP * 4)
    return drops.num_rows


def remove_lines(text: pa.Array, drop_rows: np.ndarray, drop_lines: np.ndarray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Text with the given (row, line) pairs removed; also (modified mask, lines removed per row)."""
    n = len(text)
    lists = pc.split_pattern(text, "\n")
    values, parent = _flatten(lists)
    offs = lists.offsets.to_numpy().astype(np.int64)
    flat = offs[drop_rows] + drop_lines
    keep = np.ones(len(values), dtype=bool)
    keep[flat] = False
    removed = np.bincount(parent[~keep], minlength=n)
    counts = np.bincount(parent[keep], minlength=n)
    new_offs = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(new_offs, pa.int32()), values.filter(pa.array(keep))),
                            pa.scalar("\n", values.type))
    modified = removed > 0
    out = pc.if_else(pa.array(modified), joined.cast(text.type), text)
    return out, modified, removed


def _line_decisions(table: pa.Table, si: int, *, work: str) -> W.Decisions:
    """Texts without their repeated lines; documents left empty are dropped (their rejects show
    the text before)."""
    n = table.num_rows
    drops = W.read_gid_range(W.list_parquet(Path(work) / "drops"), si, ["gid", "line"])
    if drops is None or not drops.num_rows or not n:
        return W.Decisions(table, pa.nulls(n, pa.string()))
    text = D.text_array(table)
    rows = (drops["gid"].to_numpy() & W.ROW_MASK).astype(np.int64)
    new_text, modified, removed = remove_lines(text, rows, drops["line"].to_numpy().astype(np.int64))
    stripped = pc.utf8_trim_whitespace(new_text)
    drop = modified & (pc.utf8_length(stripped).to_numpy(zero_copy_only=False) == 0)
    counters = {"lines_removed": int(removed.sum()), "docs_modified": int(modified.sum()),
                "chars_removed": int((pc.utf8_length(text).to_numpy(zero_copy_only=False)
                                      - pc.utf8_length(new_text).to_numpy(zero_copy_only=False)).sum())}
    field = table.schema.field("text")
    return W.Decisions(set_column(table, field, new_text.cast(field.type)),
                       pc.if_else(pa.array(drop), LINES_REASON, pa.scalar(None, pa.string())),
                       counters=counters, rejects_from=table)


@register
class LineDedup(Workflow):
    """CCNet line-level dedup (global pass): a normalised line seen before in the same group
    of shards is removed from every later document; documents left empty are dropped
    (``dedup_lines_v1:empty``). ``group_shards``: shards per dedup group, CCNet's knob to
    bound the hash set (default: all shards in one group). Counters ``lines_removed``,
    ``chars_removed``, ``docs_modified``.
    """

    name = "dedup_lines"
    inputs = ("text",)

    def __init__(self, *, group_shards: Optional[int] = None, partitions: Optional[int] = None):
        if group_shards is not None and group_shards < 1:
            raise StageError(f"dedup_lines: group_shards must be >= 1, got {group_shards}")
        if partitions is not None and partitions < 1:
            raise StageError(f"dedup_lines: partitions must be >= 1, got {partitions}")
        self.group_shards, self.partitions = group_shards, partitions

    def run(self, ctx) -> dict:
        work = D.fresh_dir(Path(ctx.work_dir) / "dedup_lines")
        parts = self.partitions or 2 * W.engine_cpus(ctx.engine)
        group = self.group_shards or max(1, len(ctx.inputs))
        items = list(enumerate(ctx.inputs))
        _, cpu = W.timed_map(ctx.engine, functools.partial(_line_keys, work=str(work), parts=parts, group=group),
                             items)
        n_groups = (len(items) + group - 1) // group
        _, c = W.timed_map(ctx.engine, functools.partial(_line_reduce, work=str(work)),
                           [(g, p) for g in range(n_groups) for p in range(parts)])
        return W.filter_shards(ctx, self.name, functools.partial(_line_decisions, work=str(work)),
                               shard_cpu=cpu, global_cpu=sum(c))
