"""``decontaminate``: find evaluation-set text in the training data by word n-gram overlap.

A workflow (global pass) in two steps, after GPT-3's and Llama 2/3's contamination analyses::

    index     once per set of evaluation files: every item's text (the configured fields,
              joined) -> words -> normalised -> word n-gram hashes (n = 13 by default)
              -> sorted uint64 hashes + the item of each, saved as .npy in ``index_dir``
              (default: the datapipe cache, keyed by the files' paths, sizes, mtimes, the
              fields and n), memory-mapped by every task; built again only when a key changes
    filter    map over shards: every document's n-grams are looked up (vectorised
              ``searchsorted``); a document with >= ``min_ngrams`` hits is contaminated: it
              gets ``decontam_benchmark``/``decontam_item``/``decontam_overlap`` and, per
              ``action``, is kept as it is (``mark``), dropped (``drop``:
              ``decontaminate_v1:<benchmark>``) or has the overlapping spans cut out of its
              text (``remove``; a document left blank is dropped as ``decontaminate_v1:empty``)

Words and their normalisation are the dedup ones: :func:`stages._text.split_words`
(MinHash's words) then :func:`stages._dedup.normalize` on each word (NFKC, lower case,
accents, digits, punctuation), so case, punctuation and whitespace edits do not hide a copy.
Evaluation sources: JSONL/JSON, Parquet, CSV files, or a Hugging Face ``datasets`` folder saved
with ``save_to_disk`` (every split), each with the text ``fields`` to index (each field apart)
and an optional ``id_field``. Items shorter than ``ngram`` words cannot be matched and are counted in the index
summary.

On a cluster of several machines, put ``index_dir`` on storage every node sees (the shard tasks
memory-map it; the default cache folder is local to each machine).

Index memory: 12 bytes per distinct evaluation n-gram (8-byte hash + 4-byte item number), i.e.
12 MB per million n-grams, memory-mapped. A false match needs a 64-bit hash collision.
Report: ``contamination_report.tsv`` (benchmark, item id, document id, URL, overlap in words
and characters) and ``contamination_index.json`` (sources, items, n-grams, build seconds) in
the step's work folder of the run directory; stats counters ``contaminated:<benchmark>``
(documents), ``spans_removed``, ``chars_removed``, ``index_ngrams``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapipe import workflow as W
from datapipe.rundir import atomic_write_json, atomic_write_text, write_parquet_atomic
from datapipe.schema import set_column
from datapipe.stage import StageError, Workflow, register

from . import _dedup as D
from . import _text as T

CHECK = "decontaminate_v1"
#: bump when words, normalisation or the n-gram hash change: old indexes are then rebuilt
INDEX_VERSION = 1
_SLICE = 1024
_MUL = np.uint64(0x9E3779B97F4A7C15)


# ---------------------------------------------------------------------------
# words and n-grams

def ngram_hashes(text: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(hashes, row, first word, last word) of every word n-gram of every text.

    Word numbers count the words of :func:`~stages._text.split_words` (so a hit maps back to
    the text); words that normalise to nothing are skipped inside an n-gram."""
    words, parent = T.split_words(text)
    n_rows = len(text)
    counts = np.bincount(parent, minlength=n_rows) if len(parent) else np.zeros(n_rows, np.int64)
    empty = (np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(words) == 0:
        return empty
    # each distinct word is normalised and hashed once (a few times fewer than the words)
    enc = pc.dictionary_encode(words)
    norm = D.normalize(enc.dictionary)
    codes = enc.indices.to_numpy(zero_copy_only=False)
    keep = pc.greater(pc.utf8_length(norm), 0).to_numpy(zero_copy_only=False)[codes]
    word_no = (np.arange(len(parent)) - np.concatenate([[0], np.cumsum(counts)[:-1]])[parent])[keep]
    parent = parent[keep]
    wh = D.hash64(norm)[codes[keep]]
    m = len(wh)
    if m < n:
        return empty
    # an n-gram starts at i when words i .. i+n-1 belong to the same row
    start_ok = parent[: m - n + 1] == parent[n - 1:]
    idx = np.flatnonzero(start_ok)
    acc = np.zeros(len(idx), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):  # a polynomial hash of the n word hashes, then mixed
            acc = acc * _MUL + wh[idx + k]
    return D.mix64(acc), parent[idx], word_no[idx], word_no[idx + n - 1]


def _word_offsets(texts: list[str]) -> list[tuple[list[int], list[int]]]:
    """Character offsets (starts, ends) of the ``split_words`` words of each text (one call for all:
    the words are substrings of their text, in order)."""
    words, parent = T.split_words(pa.array(texts, pa.large_string()))
    out = [([], []) for _ in texts]
    pos = [0] * len(texts)
    for w, r in zip(words.to_pylist(), parent.tolist()):
        a = texts[r].find(w, pos[r])
        if a < 0:  # pragma: no cover - split_words only trims and isolates: words are substrings
            a = pos[r]
        out[r][0].append(a)
        out[r][1].append(a + len(w))
        pos[r] = a + len(w)
    return out


# ---------------------------------------------------------------------------
# evaluation sources and the index

def _read_source(src: dict) -> pa.Table:
    path = Path(src["path"])
    if path.is_dir():
        import datasets
        ds = datasets.load_from_disk(str(path))
        parts = ds.values() if isinstance(ds, datasets.DatasetDict) else [ds]
        return pa.concat_tables([p.data.table for p in parts], promote_options="default")
    name = path.name.lower()
    if name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        import pyarrow.json as pj
        return pj.read_json(path)
    if name.endswith(".parquet"):
        return pq.read_table(path)
    if name.endswith((".csv", ".csv.gz")):
        import pyarrow.csv as pcsv
        return pcsv.read_csv(path)
    raise StageError(f"decontaminate: {path}: unknown format (use .jsonl/.json, .parquet, .csv or a "
                     "datasets folder saved with save_to_disk)")


def _field_text(col: pa.ChunkedArray) -> list[str]:
    out = []
    for v in col.to_pylist():
        if v is None:
            out.append("")
        elif isinstance(v, (list, tuple)):
            out.append("\n".join(str(x) for x in v if x is not None))
        elif isinstance(v, dict):
            out.append("\n".join(str(x) for x in v.values() if x is not None))
        else:
            out.append(str(v))
    return out


def load_items(benchmarks: list[dict]) -> tuple[list[str], list[str], list[list[str]]]:
    """(benchmark, item id, texts of its fields) of every evaluation item. Fields are indexed
    apart: an n-gram across the end of a question and the start of its answer is no text anyone
    could have copied."""
    names, ids, texts = [], [], []
    for b in benchmarks:
        t = _read_source(b)
        missing = [f for f in b["fields"] if f not in t.column_names]
        if missing:
            raise StageError(f"decontaminate: {b['path']} has no field(s) {missing}; fields: {t.column_names}")
        cols = [_field_text(t[f]) for f in b["fields"]]
        idf = b.get("id_field")
        if idf and idf not in t.column_names:
            raise StageError(f"decontaminate: {b['path']} has no id_field {idf!r}")
        item_ids = [str(x) for x in t[idf].to_pylist()] if idf else [str(i) for i in range(t.num_rows)]
        for i in range(t.num_rows):
            names.append(b["name"])
            ids.append(item_ids[i])
            texts.append([c[i] for c in cols])
    return names, ids, texts


def _cache_root() -> Path:
    base = os.environ.get("DATAPIPE_CACHE")
    if base:
        return Path(base) / "decontam"
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "datapipe" / "decontam"


def index_key(benchmarks: list[dict], n: int) -> str:
    h = hashlib.sha1(f"v{INDEX_VERSION}\0n={n}\0".encode())
    for b in benchmarks:
        p = Path(b["path"]).resolve()
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        h.update(json.dumps([b["name"], list(b["fields"]), b.get("id_field")]).encode())
        for f in files:
            st = f.stat()
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:20]


def build_index(benchmarks: list[dict], n: int, out: Path) -> dict:
    """Write ``hashes.npy`` (sorted uint64), ``items.npy`` (uint32) and ``items.parquet`` to ``out``."""
    t0 = time.process_time()
    names, ids, texts = load_items(benchmarks)
    flat = [f for fields in texts for f in fields]
    owner = np.repeat(np.arange(len(texts)), [len(f) for f in texts])
    chunks_h, chunks_i = [], []
    per_item = np.zeros(len(texts), np.int64)
    for s in range(0, len(flat), _SLICE):
        arr = pa.array(flat[s:s + _SLICE], pa.large_string())
        h, row, _, _ = ngram_hashes(arr, n)
        item = owner[row + s]
        chunks_h.append(h)
        chunks_i.append(item.astype(np.uint32))
        per_item += np.bincount(item, minlength=len(texts))
    h = np.concatenate(chunks_h) if chunks_h else np.zeros(0, np.uint64)
    it = np.concatenate(chunks_i) if chunks_i else np.zeros(0, np.uint32)
    order = np.lexsort((it, h))  # by hash, then item: the first item of a shared n-gram is kept
    h, it = h[order], it[order]
    first = np.ones(len(h), dtype=bool)
    first[1:] = h[1:] != h[:-1]
    h, it = h[first], it[first]
    out.mkdir(parents=True, exist_ok=True)
    for name, arr in (("hashes", h), ("items", it)):
        tmp = out / f".{name}.{os.getpid()}.npy"
        np.save(tmp, arr)
        os.replace(tmp, out / f"{name}.npy")
    write_parquet_atomic(pa.table({"benchmark": names, "item_id": ids, "ngrams": per_item}), out / "items.parquet")
    meta = {"version": INDEX_VERSION, "ngram": n, "items": len(texts), "ngrams": int(len(h)),
            "items_too_short": int((per_item == 0).sum()), "bytes": int(h.nbytes + it.nbytes),
            "build_cpu_seconds": round(time.process_time() - t0, 3),
            "sources": [{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in b.items()} for b in benchmarks]}
    atomic_write_json(out / "meta.json", meta)
    return meta


@functools.lru_cache(maxsize=4)
def load_index(path: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(hashes, item of each, benchmark of each item, id of each item); the arrays memory-mapped."""
    p = Path(path)
    items = pq.read_table(p / "items.parquet")
    return (np.load(p / "hashes.npy", mmap_mode="r"), np.load(p / "items.npy", mmap_mode="r"),
            items["benchmark"].to_pylist(), items["item_id"].to_pylist())


# ---------------------------------------------------------------------------
# per shard

def _decide(table: pa.Table, si: int, *, index: str, n: int, min_ngrams: int, action: str, work: str) -> W.Decisions:
    hashes, items, bench_of, id_of = load_index(index)
    nrows = table.num_rows
    text = T.text_column(table)
    bench = np.full(nrows, None, dtype=object)
    item = np.full(nrows, None, dtype=object)
    overlap = np.zeros(nrows, np.int32)
    new_text: dict[int, str] = {}
    counters: dict[str, int] = {}
    report = []
    ids = table["id"].to_pylist() if "id" in table.column_names else [None] * nrows
    urls = table["url"].to_pylist() if "url" in table.column_names else [None] * nrows
    for s in range(0, nrows, _SLICE):
        part = text.slice(s, _SLICE)
        h, row, word, last = ngram_hashes(part, n)
        if len(h) == 0 or len(hashes) == 0:
            continue
        # sorted queries: the index is read front to back instead of at random
        order = np.argsort(h, kind="stable")
        pos = np.empty(len(h), np.int64)
        pos[order] = np.minimum(np.searchsorted(hashes, h[order]), len(hashes) - 1)
        hit = hashes[pos] == h
        if not hit.any():
            continue
        hit_rows = np.bincount(row[hit], minlength=len(part))
        flagged = np.flatnonzero(hit_rows >= min_ngrams).tolist()
        texts = [part[r].as_py() for r in flagged]
        # per contaminated document (rare): which items, which words, which characters
        for r, s_text, (starts, ends) in zip(flagged, texts, _word_offsets(texts)):
            sel = hit & (row == r)
            first_words, last_words, hit_items = word[sel], last[sel], items[pos[sel]].astype(np.int64)
            doc = s + r
            covered = np.zeros(len(starts) + 1, np.int64)
            np.add.at(covered, first_words, 1)
            np.add.at(covered, last_words + 1, -1)
            inside = np.cumsum(covered)[: len(starts)] > 0
            spans = _runs(inside)
            by_item: dict[int, set] = {}
            for w0, w1, itx in zip(first_words.tolist(), last_words.tolist(), hit_items.tolist()):
                by_item.setdefault(itx, set()).update(range(w0, w1 + 1))
            best = max(by_item, key=lambda k: (len(by_item[k]), -k))
            bench[doc], item[doc] = bench_of[best], id_of[best]
            overlap[doc] = int(inside.sum())
            for itx, ws in sorted(by_item.items()):
                chars = sum(ends[w] - starts[w] for w in ws)
                report.append((bench_of[itx], id_of[itx], ids[doc], urls[doc], len(ws), chars))
            for b in {bench_of[k] for k in by_item}:
                counters[f"contaminated:{b}"] = counters.get(f"contaminated:{b}", 0) + 1
            if action == "remove":
                out, at = [], 0
                for a, b in spans:
                    c0, c1 = _punct_edges(s_text, starts[a], ends[b - 1])
                    out.append(s_text[at:c0])
                    at = c1
                    counters["chars_removed"] = counters.get("chars_removed", 0) + c1 - c0
                out.append(s_text[at:])
                new_text[doc] = "".join(out)
                counters["spans_removed"] = counters.get("spans_removed", 0) + len(spans)
    if report:
        rep = pa.table(list(zip(*report)), names=["benchmark", "item_id", "doc_id", "url", "overlap_words",
                                                   "overlap_chars"])
        write_parquet_atomic(rep, Path(work) / "report" / f"s={si:06d}.parquet")
    out = table
    if new_text:
        vals = text.to_pylist()
        for i, t in new_text.items():
            vals[i] = t
        out = set_column(out, "text", pa.array(vals, pa.large_string()))
    out = set_column(out, "decontam_benchmark", pa.array(bench, pa.string()))
    out = set_column(out, "decontam_item", pa.array(item, pa.string()))
    out = set_column(out, "decontam_overlap", pa.array(overlap, pa.int32()))
    reasons = np.full(nrows, None, dtype=object)
    if action == "drop":
        has = bench != None  # noqa: E711 - elementwise on object array
        reasons[has] = np.array([f"{CHECK}:{b}" for b in bench[has]], dtype=object)
    elif action == "remove":
        for i, t in new_text.items():
            if not t.strip():
                reasons[i] = f"{CHECK}:empty"
    return W.Decisions(out, pa.array(reasons, pa.string()), counters=counters, rejects_from=table)


def _punct_edges(text: str, a: int, b: int) -> tuple[int, int]:
    """``[a, b)`` widened over the punctuation glued to it (a closing "?", an opening quote)."""
    while a > 0 and not text[a - 1].isspace() and not text[a - 1].isalnum():
        a -= 1
    while b < len(text) and not text[b].isspace() and not text[b].isalnum():
        b += 1
    return a, b


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of every run of True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


@register
class Decontaminate(Workflow):
    """Mark, drop or cut out evaluation-set text (see the module docstring).

    ``benchmarks``: ``[{name, path, fields: [...], id_field: optional}, ...]``; ``ngram``: words
    per n-gram (13 as GPT-3; 8 catches shorter overlaps); ``min_ngrams``: hits that make a
    document contaminated; ``action``: ``mark``, ``drop`` or ``remove``; ``index_dir``: where
    the index is kept (default: the datapipe cache, reused across runs)."""

    name = "decontaminate"
    inputs = ("text",)
    outputs = ("decontam_benchmark", "decontam_item", "decontam_overlap")

    def __init__(self, *, benchmarks: list[dict], ngram: int = 13, min_ngrams: int = 1, action: str = "remove",
                 index_dir: Optional[str] = None):
        if not benchmarks:
            raise StageError("decontaminate: list at least one evaluation set under benchmarks")
        self.benchmarks = []
        for i, b in enumerate(benchmarks):
            if not isinstance(b, dict) or not b.get("path") or not b.get("fields"):
                raise StageError(f"decontaminate: benchmarks[{i}] needs path and fields, got {b!r}")
            unknown = set(b) - {"name", "path", "fields", "id_field"}
            if unknown:
                raise StageError(f"decontaminate: benchmarks[{i}]: unknown key(s) {sorted(unknown)}")
            if not Path(b["path"]).exists():
                raise StageError(f"decontaminate: evaluation file {b['path']!r} not found")
            fields = [b["fields"]] if isinstance(b["fields"], str) else list(b["fields"])
            self.benchmarks.append({"name": str(b.get("name") or Path(b["path"]).stem), "path": str(b["path"]),
                                    "fields": fields, "id_field": b.get("id_field")})
        if ngram < 1:
            raise StageError(f"decontaminate: ngram must be >= 1, got {ngram}")
        if min_ngrams < 1:
            raise StageError(f"decontaminate: min_ngrams must be >= 1, got {min_ngrams}")
        if action not in ("mark", "drop", "remove"):
            raise StageError(f"decontaminate: action must be mark, drop or remove, got {action!r}")
        self.ngram, self.min_ngrams, self.action, self.index_dir = ngram, min_ngrams, action, index_dir

    def index(self) -> tuple[Path, dict, bool]:
        """The index folder, its summary, and whether it was built now (else reused)."""
        root = Path(self.index_dir) if self.index_dir else _cache_root()
        path = root / index_key(self.benchmarks, self.ngram)
        if (path / "meta.json").is_file():
            return path, json.loads((path / "meta.json").read_text()), False
        return path, build_index(self.benchmarks, self.ngram, path), True

    def run(self, ctx) -> dict:
        t0 = time.process_time()
        path, meta, built = self.index()
        build_cpu = time.process_time() - t0
        work = D.fresh_dir(Path(ctx.work_dir) / "decontaminate")
        decide = functools.partial(_decide, index=str(path), n=self.ngram, min_ngrams=self.min_ngrams,
                                   action=self.action, work=str(work))
        stats = W.filter_shards(ctx, self.name, decide, global_cpu=build_cpu)
        files = W.list_parquet(work / "report")
        rep = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
        lines = ["benchmark\titem_id\tdoc_id\turl\toverlap_words\toverlap_chars"]
        if rep is not None:
            rep = rep.sort_by([("benchmark", "ascending"), ("item_id", "ascending"), ("doc_id", "ascending")])
            lines += ["\t".join("" if v is None else str(v).replace("\t", " ") for v in r.values())
                      for r in rep.to_pylist()]
        atomic_write_text(Path(ctx.work_dir) / "contamination_report.tsv", "\n".join(lines) + "\n")
        atomic_write_json(Path(ctx.work_dir) / "contamination_index.json",
                          dict(meta, index_dir=str(path), reused=not built, memory_bytes_per_million_ngrams=12_000_000))
        first = next(iter(stats.values()), None)
        if first is not None:
            first.counters["index_ngrams"] = int(meta["ngrams"])
        return stats
