"""Mixture: plan a data mixture from ``n_tokens`` and write shuffled Parquet token streams.

``datapipe mix RUN_DIR --spec SPEC.yaml`` (or :func:`run_mix`) reads the curated output of a
run (``RUN_DIR/output``), never changes it, and writes ``RUN_DIR/mix/<spec name>/``. Tuning
ratios means editing the spec and running the command again: planning reads only the
``n_tokens`` column and the columns the groups test, so ``--dry-run`` prints a new plan in
seconds (``bench/mixture_bench.py``: a million documents).

A spec (YAML)::

    name: llama1                  # output folder RUN_DIR/mix/<name> (default: file stem)
    seed: 0                       # document sampling and the global shuffle
    mode: sampling                # sampling | budget (below)
    weighting: explicit           # explicit (group weights) | temperature | unimax
    temperature: 1.0              # p ∝ n^(1/T) over available tokens n, for weighting: temperature
    total_tokens: null            # the token budget (required by mode: budget and by unimax)
    max_epochs: null              # default per-group epoch cap
    tokenizer: null               # must match the run's tokenize stage when given
    groups:                       # first matching group wins; documents matching none are left out
      - name: wikipedia
        where: {source: wikipedia}               # equality
        weight: 4.5                              # normalised over groups
        max_epochs: 2.45
      - name: en_hq
        where: {lid_lang: [en], quality_score: {min: 0.5}}   # list = one of; {min, max} = [min, max)
    output: {max_tokens_per_shard: 50000000, max_rows_per_shard: 200000, megatron: false}

Modes:

- ``sampling`` (LLaMA-style): the proportions are exact and the total is the largest one at
  which no group passes its epoch cap (and no more than ``total_tokens`` when given):
  ``T = min(total_tokens, min_g cap_g * n_g / p_g)``.
- ``budget``: fill ``total_tokens``; a group that would pass its epoch cap takes ``cap * n``
  and its remainder is shared by the others in proportion to their weights (water-filling).
  ``weighting: unimax`` is this with uniform weights (UniMax, Chung et al. 2023).

Sampling is by whole documents and deterministic: a group taking ``e`` epochs takes every
document ``floor(e)`` times, then the prefix of a seeded permutation (seeded by the spec seed
and the group's name, so editing one group leaves the others' samples alone) whose tokens come
closest to the fractional remainder. Rows are shuffled globally with the seed and cut into
shards of at most ``max_tokens_per_shard`` tokens and ``max_rows_per_shard`` rows, through
per-shard buckets on disk (one input file and one output shard in memory at a time).

Token ids come from the curated ``tokens`` column when the tokenize stage kept it, else the
selected documents are tokenized again with the run's tokenizer settings (from
``RUN_DIR/config.yaml``); their lengths must equal ``n_tokens`` or the step stops.
"""
from __future__ import annotations

import functools
import json
import math
import shutil
import sys
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MIX_DIR = "mix"


class MixError(ValueError):
    """A bad mixture spec or input, with the file and key it is about when known."""


# ---------------------------------------------------------------------------
# the spec

@functools.lru_cache(maxsize=1)
def _spec_models():
    from pydantic import BaseModel, ConfigDict, Field

    class _Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class Range(_Strict):
        min: Optional[float] = None
        max: Optional[float] = None

    Scalar = Union[str, int, float, bool]

    class GroupSpec(_Strict):
        name: str = Field(min_length=1)
        where: dict[str, Union[Range, list[Scalar], Scalar]] = Field(default_factory=dict)
        weight: Optional[float] = Field(default=None, ge=0)
        max_epochs: Optional[float] = Field(default=None, gt=0)

    class OutputSpec(_Strict):
        max_tokens_per_shard: int = Field(default=50_000_000, gt=0)
        max_rows_per_shard: int = Field(default=200_000, gt=0)
        row_group_rows: int = Field(default=1_000, gt=0)
        compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
        megatron: bool = False

    class MixSpec(_Strict):
        name: Optional[str] = None
        seed: int = 0
        mode: Literal["sampling", "budget"] = "sampling"
        weighting: Literal["explicit", "temperature", "unimax"] = "explicit"
        temperature: float = Field(default=1.0, gt=0)
        total_tokens: Optional[int] = Field(default=None, gt=0)
        max_epochs: Optional[float] = Field(default=None, gt=0)
        tokenizer: Optional[str] = None
        #: groups with a weight but no documents: "error", or "drop" them and renormalise the rest
        #: (LLaMA-1's table over whichever sources a user actually has)
        missing_groups: Literal["error", "drop"] = "error"
        groups: list[GroupSpec] = Field(min_length=1)
        output: OutputSpec = Field(default_factory=OutputSpec)

    return MixSpec, Range


def parse_spec(data: Any, *, file: str | None = None, default_name: str = "mix"):
    """Validate a spec mapping; errors name the file and key."""
    from pydantic import ValidationError
    MixSpec, _ = _spec_models()
    where = f"{file}: " if file else ""
    if not isinstance(data, dict):
        raise MixError(f"{where}a mixture spec is a mapping with `groups:`")
    try:
        spec = MixSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise MixError(f"{where}{loc}: {msg}") from None
    if spec.name is None:
        spec.name = default_name
    import re
    if not re.fullmatch(r"[A-Za-z0-9._-]+", spec.name):
        raise MixError(f"{where}name: {spec.name!r} must be a plain folder name (letters, digits, . _ -)")
    names = [g.name for g in spec.groups]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MixError(f"{where}groups: duplicate group name(s) {dup}")
    for i, g in enumerate(spec.groups):
        if spec.weighting == "explicit" and g.weight is None:
            raise MixError(f"{where}groups[{i}].weight: required with weighting: explicit")
        if spec.weighting != "explicit" and g.weight is not None:
            raise MixError(f"{where}groups[{i}].weight: weights come from weighting: {spec.weighting}; remove it")
    if spec.weighting == "explicit" and not sum(g.weight for g in spec.groups) > 0:
        raise MixError(f"{where}groups: weights sum to zero")
    if spec.mode == "budget" and spec.total_tokens is None:
        raise MixError(f"{where}total_tokens: required by mode: budget")
    if spec.weighting == "unimax" and spec.total_tokens is None:
        raise MixError(f"{where}total_tokens: required by weighting: unimax")
    return spec


def load_spec(path: str | Path):
    import yaml
    p = Path(path)
    if not p.is_file():
        raise MixError(f"{path}: mixture spec not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise MixError(f"{path}: invalid YAML: {e}") from None
    return parse_spec(data, file=str(path), default_name=p.stem)


# ---------------------------------------------------------------------------
# weighting helpers

def temperature_weights(available: dict[str, float], temperature: float) -> dict[str, float]:
    """Temperature sampling: ``p_g ∝ n_g^(1/T)`` (T=1: natural sizes, T→∞: uniform)."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    raw = {g: (float(n) ** (1.0 / temperature) if n > 0 else 0.0) for g, n in available.items()}
    s = sum(raw.values())
    return {g: (v / s if s else 0.0) for g, v in raw.items()}


def water_fill(weights: dict[str, float], caps: dict[str, float], total: float) -> dict[str, float]:
    """Share ``total`` in proportion to ``weights``; a group never takes more than its cap and
    what it cannot take is shared among the rest in proportion to their weights."""
    alloc = {g: 0.0 for g in weights}
    active = {g for g, w in weights.items() if w > 0}
    remaining = float(total)
    while active and remaining > 0:
        s = sum(weights[g] for g in active)
        capped = [g for g in active if remaining * weights[g] / s >= caps[g]]
        if not capped:
            for g in active:
                alloc[g] = remaining * weights[g] / s
            return alloc
        for g in capped:
            alloc[g] = caps[g]
            remaining -= caps[g]
            active.discard(g)
    return alloc


def unimax_budgets(available: dict[str, float], total: float, max_epochs: float | dict[str, float] | None) -> dict[str, float]:
    """UniMax (Chung et al. 2023): a uniform budget per group, each capped at
    ``max_epochs * available``, leftovers redistributed uniformly over the groups not capped."""
    caps = {}
    for g, n in available.items():
        e = max_epochs.get(g) if isinstance(max_epochs, dict) else max_epochs
        caps[g] = math.inf if e is None else e * n
    return water_fill({g: 1.0 if available[g] > 0 else 0.0 for g in available}, caps, total)


# ---------------------------------------------------------------------------
# the plan

@dataclass
class GroupPlan:
    name: str
    docs: int                 # documents in the group
    available_tokens: int
    target_share: float       # of the mix, from the weights
    target_tokens: float
    max_epochs: Optional[float]
    taken_tokens: int = 0     # whole documents, repetitions counted
    taken_rows: int = 0
    unique_docs: int = 0

    @property
    def epochs(self) -> float:
        return self.taken_tokens / self.available_tokens if self.available_tokens else 0.0

    def to_dict(self, total_taken: int) -> dict:
        return {"group": self.name, "docs": self.docs, "available_tokens": self.available_tokens,
                "target_share": self.target_share, "achieved_share": self.taken_tokens / total_taken if total_taken else 0.0,
                "epochs": self.epochs, "max_epochs": self.max_epochs, "target_tokens": self.target_tokens,
                "tokens": self.taken_tokens, "rows": self.taken_rows, "unique_docs": self.unique_docs}


@dataclass
class MixPlan:
    spec: Any
    groups: list[GroupPlan]
    total_docs: int
    unassigned_docs: int
    unassigned_tokens: int
    plan_seconds: float = 0.0
    run_dir: Optional[str] = None
    out_dir: Optional[str] = None
    notes: list[str] = field(default_factory=list)
    # selection, in the curated output's global document order (not part of the printed plan)
    doc_index: np.ndarray = field(default=None, repr=False)     # int64 global doc index per row
    row_group: np.ndarray = field(default=None, repr=False)     # int16 group index per row
    row_epoch: np.ndarray = field(default=None, repr=False)     # int32 repetition index per row

    @property
    def total_tokens(self) -> int:
        return sum(g.taken_tokens for g in self.groups)

    @property
    def total_rows(self) -> int:
        return sum(g.taken_rows for g in self.groups)

    def shares(self) -> dict[str, float]:
        t = self.total_tokens
        return {g.name: (g.taken_tokens / t if t else 0.0) for g in self.groups}

    def to_dict(self) -> dict:
        t = self.total_tokens
        return {"spec": self.spec.name, "mode": self.spec.mode, "weighting": self.spec.weighting,
                "seed": self.spec.seed, "total_tokens": t, "total_rows": self.total_rows,
                "total_docs": self.total_docs, "unassigned_docs": self.unassigned_docs,
                "unassigned_tokens": self.unassigned_tokens, "plan_seconds": round(self.plan_seconds, 3),
                "notes": self.notes, "groups": [g.to_dict(t) for g in self.groups]}

    def table(self) -> str:
        t = self.total_tokens
        head = ["group", "docs", "available tok", "target %", "achieved %", "epochs", "max ep", "tokens taken", "rows"]
        rows = []
        for g in self.groups:
            rows.append([g.name, f"{g.docs:,}", f"{g.available_tokens:,}", f"{100 * g.target_share:.2f}",
                         f"{100 * g.taken_tokens / t:.2f}" if t else "-", f"{g.epochs:.3f}",
                         "-" if g.max_epochs is None else f"{g.max_epochs:g}", f"{g.taken_tokens:,}", f"{g.taken_rows:,}"])
        rows.append(["total", f"{sum(g.docs for g in self.groups):,}", f"{sum(g.available_tokens for g in self.groups):,}",
                     "100.00", "100.00" if t else "-", "", "", f"{t:,}", f"{self.total_rows:,}"])
        widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
        fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        lines = [f"mixture {self.spec.name!r}: mode={self.spec.mode} weighting={self.spec.weighting}"
                 + (f" T={self.spec.temperature:g}" if self.spec.weighting == "temperature" else "")
                 + (f" budget={self.spec.total_tokens:,}" if self.spec.total_tokens else "") + f" seed={self.spec.seed}",
                 fmt(head), "  ".join("-" * w for w in widths)]
        lines += [fmt(r) for r in rows]
        lines.append(f"{self.total_docs:,} curated documents; {self.unassigned_docs:,} in no group "
                     f"({self.unassigned_tokens:,} tokens); planned in {self.plan_seconds:.2f}s")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# reading the curated output

def curated_files(run_dir: str | Path) -> list[Path]:
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


def _read_columns(f: Path, root: Path, columns: list[str]) -> pa.Table:
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
        from stages.tokenize import parse_tokenizer_spec
        if parse_tokenizer_spec(spec_tokenizer) != parse_tokenizer_spec(opts.get("tokenizer", "llama3")):
            raise MixError(f"the spec asks for tokenizer {spec_tokenizer!r} but the run counted n_tokens with "
                           f"{opts.get('tokenizer', 'llama3')!r}: change the tokenize stage and re-run, or drop `tokenizer:`")
    return opts


def plan_mixture(spec, n_tokens: np.ndarray, group_idx: np.ndarray) -> MixPlan:
    """The plan and the selected rows, from per-document token counts and group indices (-1: none)."""
    t0 = time.perf_counter()
    n_tokens = np.asarray(n_tokens, dtype=np.int64)
    group_idx = np.asarray(group_idx)
    G = len(spec.groups)
    counts = np.bincount(group_idx[group_idx >= 0], minlength=G) if G else np.zeros(0, np.int64)
    avail_arr = np.bincount(group_idx[group_idx >= 0], weights=n_tokens[group_idx >= 0], minlength=G)
    names = [g.name for g in spec.groups]
    avail = {g: int(round(a)) for g, a in zip(names, avail_arr)}
    caps_ep = {g.name: (g.max_epochs if g.max_epochs is not None else spec.max_epochs) for g in spec.groups}
    caps = {g: (math.inf if e is None else e * avail[g]) for g, e in caps_ep.items()}
    notes: list[str] = []

    if spec.weighting == "explicit":
        w = {g.name: float(g.weight) for g in spec.groups}
    elif spec.weighting == "temperature":
        w = temperature_weights(avail, spec.temperature)
    else:  # unimax: uniform budgets with caps, leftovers redistributed
        w = unimax_budgets(avail, spec.total_tokens, caps_ep)
    s = sum(w.values())
    share = {g: (v / s if s else 0.0) for g, v in w.items()}

    if spec.mode == "sampling":
        empty = [g for g in names if share[g] > 0 and avail[g] == 0]
        if empty and spec.missing_groups == "drop" and len(empty) < sum(1 for g in names if share[g] > 0):
            for g in empty:
                w[g] = 0.0
            s = sum(w.values())
            share = {g: (v / s if s else 0.0) for g, v in w.items()}
            notes.append(f"dropped group(s) without documents: {', '.join(empty)}; the others renormalised")
            empty = []
        if empty:
            raise MixError(f"group(s) {empty} have a weight but no documents: exact proportions are impossible "
                           "(remove them, fix their `where`, or use mode: budget)")
        limits = [spec.total_tokens if spec.total_tokens else math.inf]
        limits += [caps[g] / share[g] for g in names if share[g] > 0]
        total = min(limits)
        if math.isinf(total):
            raise MixError("mode: sampling needs total_tokens or max_epochs (per group or default) to bound the total")
        target = {g: share[g] * total for g in names}
        binding = [g for g in names if share[g] > 0 and caps[g] / share[g] <= total * (1 + 1e-12)]
        if binding and (not spec.total_tokens or total < spec.total_tokens):
            notes.append(f"total set by the epoch cap of {', '.join(binding)}")
    else:
        target = water_fill(share, caps, spec.total_tokens)
        short = spec.total_tokens - sum(target.values())
        if short > 0.5:
            notes.append(f"budget not reachable: every group is at its epoch cap ({int(short):,} tokens short)")
        capped = [g for g in names if share[g] > 0 and caps[g] < math.inf and target[g] >= caps[g] * (1 - 1e-12)]
        if capped:
            notes.append(f"at epoch cap: {', '.join(capped)} (their remainder went to the other groups)")

    doc_parts, grp_parts, ep_parts = [], [], []
    plans = []
    order = np.argsort(group_idx, kind="stable")
    bounds = np.searchsorted(group_idx[order], np.arange(G + 1) - 0.5)
    for gi, g in enumerate(spec.groups):
        docs = order[bounds[gi]:bounds[gi + 1]]          # global indices, in curated order
        lens = n_tokens[docs]
        A = int(lens.sum())
        tgt = float(target[g.name])
        gp = GroupPlan(g.name, int(counts[gi]), A, share[g.name], tgt, caps_ep[g.name])
        plans.append(gp)
        if A == 0 or tgt <= 0:
            continue
        full = int(tgt // A)
        rem = tgt - full * A
        rng = np.random.default_rng([spec.seed, zlib.crc32(g.name.encode())])
        perm = rng.permutation(len(docs))
        cs = np.cumsum(lens[perm])
        m = int(np.searchsorted(cs, rem, side="right"))        # docs whose running total stays <= rem
        if m < len(cs) and abs(cs[m] - rem) < abs(rem - (cs[m - 1] if m else 0)):
            m += 1                                             # one more document lands closer
        part = docs[perm[:m]]
        sel = [np.tile(docs, full), part] if full else [part]
        sel_ep = [np.repeat(np.arange(full, dtype=np.int32), len(docs)), np.full(len(part), full, np.int32)] if full \
            else [np.full(len(part), 0, np.int32)]
        d = np.concatenate(sel)
        doc_parts.append(d)
        ep_parts.append(np.concatenate(sel_ep))
        grp_parts.append(np.full(len(d), gi, np.int16))
        gp.taken_tokens = int(full * A + (cs[m - 1] if m else 0))
        gp.taken_rows = len(d)
        gp.unique_docs = len(docs) if full else m
    none = group_idx < 0
    plan = MixPlan(spec, plans, total_docs=len(n_tokens), unassigned_docs=int(none.sum()),
                   unassigned_tokens=int(n_tokens[none].sum()), notes=notes,
                   doc_index=np.concatenate(doc_parts) if doc_parts else np.zeros(0, np.int64),
                   row_group=np.concatenate(grp_parts) if grp_parts else np.zeros(0, np.int16),
                   row_epoch=np.concatenate(ep_parts) if ep_parts else np.zeros(0, np.int32))
    plan.plan_seconds = time.perf_counter() - t0
    return plan


@dataclass
class _Curated:
    files: list[Path]
    root: Path
    file_start: np.ndarray    # global index of each file's first document
    n_tokens: np.ndarray
    group_idx: np.ndarray
    has_tokens: bool


def _scan_curated(run_dir: Path, spec, tokenizer_opts: dict, quiet: bool) -> _Curated:
    _, Range = _spec_models()
    files = curated_files(run_dir)
    root = run_dir / "output"
    where_cols = sorted({c for g in spec.groups for c in g.where})
    n_parts, g_parts, starts = [], [], [0]
    has_tokens = True
    tok = None
    for f in files:
        schema_names = pq.read_schema(f).names
        parts = _partition_values(f, root)
        missing = [c for c in where_cols if c not in schema_names and c not in parts]
        if missing:
            raise MixError(f"{f}: the spec groups by column(s) {missing} that the curated output does not have "
                           f"(columns: {', '.join(schema_names)})")
        has_tokens &= "tokens" in schema_names
        if "n_tokens" in schema_names:
            t = _read_columns(f, root, ["n_tokens"] + where_cols)
            n = t["n_tokens"].to_numpy(zero_copy_only=False).astype(np.int64)
        else:  # slow path: no tokenize stage in the run
            if tok is None:
                from stages.tokenize import Tokenize
                tok = Tokenize(**tokenizer_opts)
                tok.setup()
                if not quiet:
                    print(f"note: {f.name} has no n_tokens column: tokenizing to plan "
                          "(add the tokenize stage to the pipeline to make planning free)", file=sys.stderr)
            t = _read_columns(f, root, ["text"] + where_cols)
            n = tok(t.select(["text"]))["n_tokens"].to_numpy().astype(np.int64)
        gidx = np.full(t.num_rows, -1, dtype=np.int64)
        for gi, g in enumerate(spec.groups):
            m = _group_mask(t, g.where, Range) if g.where else np.ones(t.num_rows, bool)
            gidx[m & (gidx < 0)] = gi
        n_parts.append(n)
        g_parts.append(gidx)
        starts.append(starts[-1] + t.num_rows)
    return _Curated(files, root, np.asarray(starts, np.int64), np.concatenate(n_parts), np.concatenate(g_parts), has_tokens)


# ---------------------------------------------------------------------------
# writing

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


def _write_streams(plan: MixPlan, cur: _Curated, tokenizer_opts: dict, out: Path, quiet: bool) -> dict:
    from datapipe.rundir import write_parquet_atomic
    from datapipe.tokenstream import STREAM_SCHEMA, shard_name
    spec = plan.spec
    ospec = spec.output
    comp = None if ospec.compression == "none" else ospec.compression
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
        from stages.tokenize import Tokenize
        tok = Tokenize(**tokenizer_opts)
        tok.setup()
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
        t = _read_columns(f, cur.root, cols)
        t = t.take(pa.array(uniq))
        if cur.has_tokens:
            from datapipe.tokenstream import list_arrays
            flat, offs = list_arrays(t["tokens"])
        else:
            from stages.tokenize import tokenize_texts
            flat, offs = tokenize_texts(tok._tok, t["text"].to_pylist(), add_bos=tok.add_bos, add_eos=tok.add_eos)
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
        (out / "data").mkdir(exist_ok=True)
        write_parquet_atomic_rg(t, out / name, compression=comp, row_group_rows=ospec.row_group_rows)
        shutil.rmtree(tmp / f"{s:05d}", ignore_errors=True)
        ntok = int(pc.sum(t["n_tokens"]).as_py() or 0)
        shards.append({"file": name, "rows": t.num_rows, "tokens": ntok})
        if not quiet:
            print(f"  {name}: {t.num_rows:,} rows, {ntok:,} tokens", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"shards": shards, "write_seconds": round(time.time() - t0, 3)}


def write_parquet_atomic_rg(table: pa.Table, path: Path, *, compression, row_group_rows: int) -> None:
    """Like ``rundir.write_parquet_atomic`` with a row-group size (the loader reads by row group)."""
    import os
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp, compression=compression, row_group_size=row_group_rows)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run_mix(run_dir: str | Path, spec_path: str | Path, *, dry_run: bool = False,
            out_dir: str | Path | None = None, quiet: bool = True) -> MixPlan:
    """Plan the mixture of ``spec_path`` over ``RUN_DIR/output`` and (unless ``dry_run``) write
    token streams to ``out_dir`` (default ``RUN_DIR/mix/<spec name>``), replacing an older mix
    of the same name only once the new one is complete. Returns the plan (``plan.table()``)."""
    run_dir = Path(run_dir)
    spec = load_spec(spec_path)
    return mix_from_spec(run_dir, spec, dry_run=dry_run, out_dir=out_dir, quiet=quiet)


def mix_from_spec(run_dir: Path, spec, *, dry_run: bool = False, out_dir: str | Path | None = None,
                  quiet: bool = True) -> MixPlan:
    from datapipe.rundir import atomic_write_json
    t0 = time.perf_counter()
    tok_opts = run_tokenizer_settings(run_dir, spec.tokenizer)
    cur = _scan_curated(run_dir, spec, tok_opts, quiet)
    plan = plan_mixture(spec, cur.n_tokens, cur.group_idx)
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
        from stages.tokenize import Tokenize
        tok_settings = Tokenize(**tok_opts).settings()
        per_group = {g.name: {"docs_available": g.docs, "available_tokens": g.available_tokens,
                              "rows": g.taken_rows, "unique_docs": g.unique_docs, "tokens": g.taken_tokens,
                              "target_share": g.target_share,
                              "achieved_share": g.taken_tokens / plan.total_tokens, "epochs": g.epochs}
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
            from datapipe.tokenstream import export_megatron
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
