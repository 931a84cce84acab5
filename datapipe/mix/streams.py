"""Writing a planned mixture as token streams: the global seeded shuffle, cutting shards by
token and row limits, per-shard buckets on disk (one curated file and one output shard in memory
at a time), token ids from the curated ``tokens`` column or re-tokenized with the run's settings,
and the manifest; the folder is swapped in only once complete. The layout is
:mod:`datapipe.tokenstream`'s."""
from __future__ import annotations

import shutil
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapipe.rundir import atomic_write_json, write_parquet_atomic
from datapipe.tokenstream import STREAM_SCHEMA, export_megatron, list_arrays, shard_name

from .curated import Curated, read_columns, run_tokenizer_settings, scan_curated, tokenize_stage
from .plan import MixPlan, plan_mixture
from .spec import MixError, load_spec

#: token streams go to RUN_DIR/mix/<spec name>/
MIX_DIR = "mix"


def _cut_shards(row_tokens: np.ndarray, max_tokens: int, max_rows: int) -> np.ndarray:
    """Shard start offsets over the shuffled rows: at most max_tokens (unless one document is
    bigger) and max_rows per shard."""
    cs = np.concatenate([[0], np.cumsum(row_tokens, dtype=np.int64)])
    starts, i, n = [], 0, len(row_tokens)
    while i < n:
        j = int(np.searchsorted(cs, cs[i] + max_tokens, side="right")) - 1
        j = min(max(j, i + 1), i + max_rows, n)
        starts.append(i)
        i = j
    starts.append(n)
    return np.asarray(starts, dtype=np.int64)


def _write_streams(plan: MixPlan, cur: Curated, tokenizer_opts: dict, out: Path, quiet: bool) -> dict:
    """Write ``plan``'s rows, shuffled, as ``out/data/*.parquet``; returns ``{"shards": [...], "write_seconds": s}``."""
    spec = plan.spec
    ospec = spec.output
    rng = np.random.default_rng([spec.seed, 0x5348])  # the global shuffle
    perm = rng.permutation(len(plan.doc_index))
    docs = plan.doc_index[perm]
    grps = plan.row_group[perm]
    eps = plan.row_epoch[perm]
    row_tok = cur.n_tokens[docs]
    starts = _cut_shards(row_tok, ospec.max_tokens_per_shard, ospec.max_rows_per_shard)
    n_shards = len(starts) - 1
    shard_of = np.repeat(np.arange(n_shards), np.diff(starts))
    pos_in_shard = np.arange(len(docs)) - starts[:-1][shard_of]
    group_names = np.array([g.name for g in spec.groups], dtype=object)
    tmp = out / "_buckets"
    tok = None
    if not cur.has_tokens:
        tok = tokenize_stage(tokenizer_opts)
        tok.ensure_setup()
    by_doc = np.argsort(docs, kind="stable")
    sorted_docs = docs[by_doc]
    t0 = time.time()
    for fi, f in enumerate(cur.files):
        a, b = int(cur.file_start[fi]), int(cur.file_start[fi + 1])
        lo, hi = np.searchsorted(sorted_docs, [a, b])
        if lo == hi:
            continue
        rows = by_doc[lo:hi]                       # shuffled-row indices whose document is in this file
        local = docs[rows] - a
        uniq, inv = np.unique(local, return_inverse=True)
        cols = ["id", "n_tokens", "source"] + (["tokens"] if cur.has_tokens else ["text"])
        t = read_columns(f, cur.root, cols)
        t = t.take(pa.array(uniq))
        if cur.has_tokens:
            flat, offs = list_arrays(t["tokens"])
        else:
            flat, offs = tok.encode(t["text"].to_pylist())
        lens = np.diff(offs)
        expect = cur.n_tokens[uniq + a]
        if not np.array_equal(lens, expect):
            bad = int(np.flatnonzero(lens != expect)[0])
            raise MixError(f"{f}: document {t['id'][bad].as_py()} has {int(lens[bad])} tokens now but n_tokens="
                           f"{int(expect[bad])}: the tokenizer settings differ from the run's tokenize stage")
        # one row per selected (document, repetition), in bucket order
        doc_tokens = pa.LargeListArray.from_arrays(pa.array(offs.astype(np.int64)), pa.array(flat, pa.uint32()))
        src = t["source"] if "source" in t.column_names else pa.nulls(t.num_rows, pa.string())
        rows_tbl = pa.table({
            "_shard": pa.array(shard_of[rows]), "_pos": pa.array(pos_in_shard[rows]),
            "id": t["id"].take(pa.array(inv)).cast(pa.string()),
            "group": pa.array(group_names[grps[rows]].tolist(), pa.string()),
            "source": src.take(pa.array(inv)).cast(pa.string()),
            "epoch": pa.array(eps[rows], pa.int32()),
            "n_tokens": pa.array(lens[inv].astype(np.int32), pa.int32()),
            "tokens": doc_tokens.take(pa.array(inv)).cast(pa.list_(pa.uint32())),
        })
        srt = rows_tbl.sort_by([("_shard", "ascending")])
        sh = srt["_shard"].to_numpy()
        cut = np.flatnonzero(np.diff(sh)) + 1
        for seg_start, seg_end in zip(np.r_[0, cut], np.r_[cut, len(sh)]):
            s = int(sh[seg_start])
            write_parquet_atomic(srt.slice(seg_start, seg_end - seg_start).drop_columns(["_shard"]),
                                 tmp / f"{s:05d}" / f"part-{fi:05d}.parquet", compression="lz4")  # scratch: cheap codec
    shards = []
    for s in range(n_shards):
        parts = sorted((tmp / f"{s:05d}").glob("part-*.parquet"))
        t = pa.concat_tables([pq.read_table(p) for p in parts])
        t = t.sort_by([("_pos", "ascending")]).drop_columns(["_pos"]).cast(STREAM_SCHEMA)
        name = f"data/{shard_name(s)}"
        write_parquet_atomic(t, out / name, compression=ospec.compression, row_group_rows=ospec.row_group_rows)
        shutil.rmtree(tmp / f"{s:05d}", ignore_errors=True)
        ntok = int(pc.sum(t["n_tokens"]).as_py() or 0)
        shards.append({"file": name, "rows": t.num_rows, "tokens": ntok})
        if not quiet:
            print(f"  {name}: {t.num_rows:,} rows, {ntok:,} tokens", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"shards": shards, "write_seconds": round(time.time() - t0, 3)}


def run_mix(run_dir: str | Path, spec_path: str | Path, *, dry_run: bool = False,
            out_dir: str | Path | None = None, quiet: bool = True) -> MixPlan:
    """Plan the mixture of ``spec_path`` over ``RUN_DIR/output`` and (unless ``dry_run``) write
    token streams to ``out_dir`` (default ``RUN_DIR/mix/<spec name>``), replacing an older mix
    of the same name only once the new one is complete. Returns the plan (``plan.table()``)."""
    run_dir = Path(run_dir)
    spec = load_spec(spec_path)
    return mix_from_spec(run_dir, spec, dry_run=dry_run, out_dir=out_dir, quiet=quiet)


def mix_from_spec(run_dir: Path, spec, *, dry_run: bool = False, out_dir: str | Path | None = None,
                  quiet: bool = True, curated: Curated | None = None) -> MixPlan:
    """:func:`run_mix` with a parsed spec. ``curated``: a scan of the run for this spec's groups
    made earlier (the mixture search scans once, holds documents out by setting their group to
    -1, and plans each candidate from it)."""
    t0 = time.perf_counter()
    tok_opts = run_tokenizer_settings(run_dir, spec.tokenizer)
    cur = curated if curated is not None else scan_curated(run_dir, spec, tok_opts, quiet)
    plan = plan_mixture(spec, cur.n_tokens, cur.group_idx, repeats=cur.repeats)
    plan.plan_seconds = time.perf_counter() - t0
    plan.run_dir = str(run_dir)
    final = Path(out_dir) if out_dir else run_dir / MIX_DIR / spec.name
    plan.out_dir = str(final)
    if dry_run:
        return plan
    if plan.total_rows == 0:
        raise MixError("the plan selects no documents; nothing to write")
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        written = _write_streams(plan, cur, tok_opts, work, quiet)
        tok_settings = tokenize_stage(tok_opts).settings()
        per_group = {g.name: {"docs_available": g.docs, "available_tokens": g.available_tokens,
                              "rows": g.taken_rows, "unique_docs": g.unique_docs, "tokens": g.taken_tokens,
                              "target_share": g.target_share,
                              "achieved_share": g.taken_tokens / plan.total_tokens, "epochs": g.epochs,
                              "unique_tokens": g.unique_tokens}
                     for g in plan.groups}
        manifest = {
            "format": "datapipe-token-stream", "version": 1,
            "tokenizer": tok_settings,
            "columns": {"id": "string", "group": "string", "source": "string", "epoch": "int32",
                        "n_tokens": "int32", "tokens": "list<uint32>"},
            "total_rows": plan.total_rows, "total_tokens": plan.total_tokens,
            "groups": per_group, "shards": written["shards"],
            "spec": plan.spec.model_dump(), "plan": plan.to_dict(),
            "source_run": str(run_dir.resolve()), "curated_files": len(cur.files),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_json(work / "manifest.json", manifest)
        if spec.output.megatron:
            export_megatron(work, work / "megatron" / f"{spec.name}_text_document")
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            final.rename(old)
        work.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return plan
