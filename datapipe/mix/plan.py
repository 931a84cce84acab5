"""Mixture planning: group weights (explicit, temperature, UniMax), epoch caps, the total, and the
seeded whole-document selection, from per-document token counts and group indices alone (no I/O;
:mod:`datapipe.mix.curated` reads those from a run). :class:`MixPlan` is what ``--dry-run`` prints."""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .spec import MixError

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
    unique_tokens: Optional[int] = None   # before rehydration (None: no ``rehydrate``)

    @property
    def epochs(self) -> float:
        return self.taken_tokens / self.available_tokens if self.available_tokens else 0.0

    def to_dict(self, total_taken: int) -> dict:
        return {"group": self.name, "docs": self.docs, "available_tokens": self.available_tokens,
                "target_share": self.target_share, "achieved_share": self.taken_tokens / total_taken if total_taken else 0.0,
                "epochs": self.epochs, "max_epochs": self.max_epochs, "target_tokens": self.target_tokens,
                "tokens": self.taken_tokens, "rows": self.taken_rows, "unique_docs": self.unique_docs,
                "unique_tokens": self.unique_tokens,
                "rehydration": (self.available_tokens / self.unique_tokens) if self.unique_tokens else None}


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
        rh = getattr(self.spec, "rehydrate", None) is not None
        head = ["group", "docs", "available tok", "target %", "achieved %", "epochs", "max ep", "tokens taken", "rows"]
        if rh:
            head.insert(3, "rehydr x")
        rows = []
        for g in self.groups:
            rows.append([g.name, f"{g.docs:,}", f"{g.available_tokens:,}", f"{100 * g.target_share:.2f}",
                         f"{100 * g.taken_tokens / t:.2f}" if t else "-", f"{g.epochs:.3f}",
                         "-" if g.max_epochs is None else f"{g.max_epochs:g}", f"{g.taken_tokens:,}", f"{g.taken_rows:,}"])
            if rh:
                rows[-1].insert(3, f"{g.available_tokens / g.unique_tokens:.3f}" if g.unique_tokens else "-")
        rows.append(["total", f"{sum(g.docs for g in self.groups):,}", f"{sum(g.available_tokens for g in self.groups):,}",
                     "100.00", "100.00" if t else "-", "", "", f"{t:,}", f"{self.total_rows:,}"])
        if rh:
            rows[-1].insert(3, "")
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
# planning

def plan_mixture(spec, n_tokens: np.ndarray, group_idx: np.ndarray, repeats: np.ndarray | None = None) -> MixPlan:
    """The plan and the selected rows, from per-document token counts and group indices (-1: none).

    ``repeats`` (rehydration): copies of each document in its group's pool; weights, epoch caps
    and epochs then count the rehydrated pool (``available_tokens``), ``unique_tokens`` the
    documents once. A document repeated r times is taken r times per epoch of its group."""
    t0 = time.perf_counter()
    n_tokens = np.asarray(n_tokens, dtype=np.int64)
    group_idx = np.asarray(group_idx)
    G = len(spec.groups)
    counts = np.bincount(group_idx[group_idx >= 0], minlength=G) if G else np.zeros(0, np.int64)
    uniq_arr = np.bincount(group_idx[group_idx >= 0], weights=n_tokens[group_idx >= 0], minlength=G)
    if repeats is not None:
        repeats = np.asarray(repeats, dtype=np.int64)
        pool = n_tokens * repeats
        avail_arr = np.bincount(group_idx[group_idx >= 0], weights=pool[group_idx >= 0], minlength=G)
    else:
        avail_arr = uniq_arr
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
        if repeats is not None:
            docs = np.repeat(docs, repeats[docs])        # the rehydrated pool: copies side by side
        lens = n_tokens[docs]
        A = int(lens.sum())
        tgt = float(target[g.name])
        gp = GroupPlan(g.name, int(counts[gi]), A, share[g.name], tgt, caps_ep[g.name],
                       unique_tokens=int(round(uniq_arr[gi])) if repeats is not None else None)
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
        gp.unique_docs = (len(docs) if full else m) if repeats is None else len(np.unique(d))
    none = group_idx < 0
    plan = MixPlan(spec, plans, total_docs=len(n_tokens), unassigned_docs=int(none.sum()),
                   unassigned_tokens=int(n_tokens[none].sum()), notes=notes,
                   doc_index=np.concatenate(doc_parts) if doc_parts else np.zeros(0, np.int64),
                   row_group=np.concatenate(grp_parts) if grp_parts else np.zeros(0, np.int16),
                   row_epoch=np.concatenate(ep_parts) if ep_parts else np.zeros(0, np.int32))
    plan.plan_seconds = time.perf_counter() - t0
    return plan
