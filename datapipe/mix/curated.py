"""Reading a run for the mixture: the curated Parquet files (``RUN_DIR/output``, only read), the
columns the spec's groups test (Hive partition folders included), each document's group and
``n_tokens``, and the run's tokenize stage (options from ``RUN_DIR/config.yaml``).

The tokenize stage is reached through the registry (``datapipe.stage.build_stage``): the core
never imports ``stages/``."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .spec import MixError, repeat_counts, spec_models


def curated_files(run_dir: str | Path) -> list[Path]:
    """The run's curated Parquet files, in a stable order (the global document order)."""
    out = Path(run_dir) / "output"
    if not out.is_dir():
        raise MixError(f"{run_dir}: no output/ folder (is this a finished run directory?)")
    files = sorted((p for p in out.rglob("*.parquet") if not p.name.startswith(".")), key=lambda p: str(p.relative_to(out)))
    if not files:
        raise MixError(f"{out}: no Parquet files")
    return files


def _partition_values(path: Path, root: Path) -> dict[str, str]:
    vals = {}
    for part in path.relative_to(root).parts[:-1]:
        if "=" in part:
            k, v = part.split("=", 1)
            vals[k] = v
    return vals


def read_columns(f: Path, root: Path, columns: list[str]) -> pa.Table:
    """``columns`` of curated file ``f``; a column missing from the file comes from its partition folder."""
    schema = pq.read_schema(f)
    parts = _partition_values(f, root)
    have = [c for c in columns if c in schema.names]
    t = pq.read_table(f, columns=have)
    for c in columns:
        if c not in have and c in parts:
            t = t.append_column(c, pa.array([parts[c]] * t.num_rows, pa.string()))
    return t


def _is_str(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)


def _group_mask(t: pa.Table, where: dict, Range) -> np.ndarray:
    """Rows matching every condition of ``where`` (null never matches)."""
    mask = np.ones(t.num_rows, dtype=bool)
    for col, cond in where.items():
        c = t[col]
        if isinstance(cond, Range):
            m = pc.is_valid(c)
            if cond.min is not None:
                m = pc.and_(m, pc.greater_equal(c, cond.min))
            if cond.max is not None:
                m = pc.and_(m, pc.less(c, cond.max))
        elif isinstance(cond, list):
            vals = pa.array([str(v) for v in cond]) if _is_str(c.type) else pa.array(cond).cast(c.type)
            m = pc.is_in(c, value_set=vals)
        else:
            m = pc.equal(c, str(cond) if _is_str(c.type) else cond)
        mask &= pc.fill_null(m, False).to_numpy()
    return mask


# ---------------------------------------------------------------------------
# the run's tokenizer

def tokenize_stage(opts: dict):
    """The ``tokenize`` stage with ``opts``, from the registry (not set up)."""
    from datapipe.stage import build_stage
    return build_stage("tokenize", opts)


def run_tokenizer_settings(run_dir: str | Path, spec_tokenizer: str | None) -> dict:
    """The tokenize stage's options from ``RUN_DIR/config.yaml`` (its ``n_tokens`` define the plan)."""
    import yaml
    cfg = Path(run_dir) / "config.yaml"
    opts = None
    if cfg.is_file():
        data = yaml.safe_load(cfg.read_text()) or {}
        for entry in data.get("stages") or []:
            if isinstance(entry, dict) and "tokenize" in entry:
                opts = dict(entry["tokenize"] or {})
    if opts is None:
        opts = {"tokenizer": spec_tokenizer} if spec_tokenizer else {}
    elif spec_tokenizer:
        from datapipe.stage import get_stage_class
        parse = get_stage_class("tokenize").parse_tokenizer
        if parse(spec_tokenizer) != parse(opts.get("tokenizer", "llama3")):
            raise MixError(f"the spec asks for tokenizer {spec_tokenizer!r} but the run counted n_tokens with "
                           f"{opts.get('tokenizer', 'llama3')!r}: change the tokenize stage and re-run, or drop `tokenizer:`")
    return opts


# ---------------------------------------------------------------------------
# scanning

@dataclass
class Curated:
    """What planning needs from the curated output, one entry per document in global order."""
    files: list[Path]
    root: Path
    file_start: np.ndarray    # global index of each file's first document
    n_tokens: np.ndarray
    group_idx: np.ndarray     # index into spec.groups; -1: in no group
    has_tokens: bool          # every file kept the ``tokens`` column
    repeats: np.ndarray | None = None   # copies per document (the spec's ``rehydrate``), else None


def scan_curated(run_dir: Path, spec, tokenizer_opts: dict, quiet: bool) -> Curated:
    """Read ``n_tokens`` and the grouping columns of every curated file (tokenizing ``text`` with
    the run's settings only where a file has no ``n_tokens``) and assign each document its group:
    the first group whose ``where`` it matches."""
    _, Range = spec_models()
    files = curated_files(run_dir)
    root = run_dir / "output"
    where_cols = sorted({c for g in spec.groups for c in g.where})
    rh = spec.rehydrate.column if spec.rehydrate is not None else None
    if rh is not None and rh not in where_cols:
        where_cols.append(rh)
    n_parts, g_parts, starts = [], [], [0]
    has_tokens = True
    tok = None
    r_parts: list[np.ndarray] = []
    for f in files:
        schema_names = pq.read_schema(f).names
        parts = _partition_values(f, root)
        missing = [c for c in where_cols if c not in schema_names and c not in parts]
        if rh in missing:
            raise MixError(f"{f}: rehydrate needs the column {rh!r} (dedup_minhash writes dup_cluster_size); "
                           f"the curated output has: {', '.join(schema_names)}")
        if missing:
            raise MixError(f"{f}: the spec groups by column(s) {missing} that the curated output does not have "
                           f"(columns: {', '.join(schema_names)})")
        has_tokens &= "tokens" in schema_names
        if "n_tokens" in schema_names:
            t = read_columns(f, root, ["n_tokens"] + where_cols)
            n = t["n_tokens"].to_numpy(zero_copy_only=False).astype(np.int64)
        else:  # slow path: no tokenize stage in the run
            if tok is None:
                tok = tokenize_stage(tokenizer_opts)
                tok.ensure_setup()
                if not quiet:
                    print(f"note: {f.name} has no n_tokens column: tokenizing to plan "
                          "(add the tokenize stage to the pipeline to make planning free)", file=sys.stderr)
            t = read_columns(f, root, ["text"] + where_cols)
            n = tok(t.select(["text"]))["n_tokens"].to_numpy().astype(np.int64)
        gidx = np.full(t.num_rows, -1, dtype=np.int64)
        for gi, g in enumerate(spec.groups):
            m = _group_mask(t, g.where, Range) if g.where else np.ones(t.num_rows, bool)
            gidx[m & (gidx < 0)] = gi
        n_parts.append(n)
        g_parts.append(gidx)
        starts.append(starts[-1] + t.num_rows)
        if rh is not None:
            sizes = pc.fill_null(t[rh], 1).to_numpy(zero_copy_only=False).astype(np.int64)
            rep = repeat_counts(spec.rehydrate, sizes)
            off = np.array([not g.rehydrate for g in spec.groups] + [True])  # -1 (no group) -> last
            rep[off[gidx]] = 1
            r_parts.append(rep)
    return Curated(files, root, np.asarray(starts, np.int64), np.concatenate(n_parts), np.concatenate(g_parts), has_tokens,
                   np.concatenate(r_parts) if rh is not None else None)
