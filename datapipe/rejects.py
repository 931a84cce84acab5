"""Reject samples: the dropped documents a run keeps, so a person can see why each one went.

Everything that drops documents (the engine's stages, every workflow) samples its rejected
rows here: the first ``cap`` rows of each reason, and of each shard when the rows carry the
engine's ``_shard`` column, in the order they came. :func:`sample_rejects` keeps them as a
table (what a workflow task sends back to the driver); :func:`reject_rows` turns them into
the JSON rows of ``rejects/<stage>/<reason>.jsonl`` (every light column, ``stage`` and a text
``excerpt``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import SHARD_COL, set_column

#: columns too big for a reject sample: the text travels as an excerpt, the rest not at all
HEAVY_COLUMNS = ("text", "html", "tokens", "embedding")


def _group_codes(table: pa.Table, keys: list[str]) -> np.ndarray:
    code = np.zeros(table.num_rows, dtype=np.int64)
    for k in keys:
        col = table[k].combine_chunks()
        enc = pc.dictionary_encode(col, null_encoding="encode")
        code = code * max(1, len(enc.dictionary)) + enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return code


def sample_rejects(rejected: pa.Table | None, cap: int, *, excerpt_chars: int | None = None) -> pa.Table | None:
    """The first ``cap`` rows of each reason (and shard) of ``rejected``, in table order; None when
    nothing is left. ``excerpt_chars`` cuts ``text`` to that many characters."""
    if rejected is None or rejected.num_rows == 0 or cap <= 0:
        return None
    n = rejected.num_rows
    if n > cap:
        keys = [c for c in (SHARD_COL, "reason") if c in rejected.column_names]
        code = _group_codes(rejected, keys)
        order = np.argsort(code, kind="stable")
        sc = code[order]
        starts = np.flatnonzero(np.concatenate([[True], sc[1:] != sc[:-1]]))
        rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
        keep = np.zeros(n, dtype=bool)
        keep[order[rank < cap]] = True
        rejected = rejected.filter(pa.array(keep))
    if excerpt_chars is not None and "text" in rejected.column_names:
        rejected = set_column(rejected, "text", pc.utf8_slice_codeunits(rejected["text"], 0, excerpt_chars))
    return rejected


def reject_rows(rejected: pa.Table | None, *, stage: str, cap: int, excerpt_chars: int,
                columns: Sequence[str] | None = None) -> list[dict]:
    """JSON-ready rows of a reject sample: ``columns`` (default: every column but the heavy ones)
    present in ``rejected``, then ``stage`` and ``excerpt`` (the first ``excerpt_chars``
    characters of ``text``; ``""`` without one)."""
    small = sample_rejects(rejected, cap, excerpt_chars=excerpt_chars)
    if small is None:
        return []
    names = small.column_names if columns is None else list(dict.fromkeys(columns))
    cols = [c for c in names if c in small.column_names and c not in HEAVY_COLUMNS]
    texts = small["text"].to_pylist() if "text" in small.column_names else [None] * small.num_rows
    return [row | {"stage": stage, "excerpt": text or ""} for row, text in zip(small.select(cols).to_pylist(), texts)]
