"""Perplexity buckets (CCNet's ``PerplexityBucket``): cut-offs, ``head``/``middle``/``tail``, drop reasons.

Per language, ``ppl < p30`` -> ``head``, ``< p60`` -> ``middle``, else ``tail``. Shared by the
``perplexity`` stage (configured cut-offs) and the ``perplexity_buckets`` workflow (cut-offs
computed over the run); ``CCNET_CUTOFFS`` is the table CCNet published for its own models.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.stage import StageError, reasons_from_masks

BUCKETS = ("head", "middle", "tail")
NO_MODEL = "none"  #: bucket of rows no model scored (no model for the language, no text)

# CCNet's published cut-offs (cc_net/data/cutoff.csv, rows 30 and 60): valid only for
# CCNet's own Wikipedia-trained models (``make dl_lm`` there), not for models we train.

_CCNET_LANGS = ("de it fr nl pl pt es no da id lt fi en hu ro ko ar bn fa ru uk ml my lv is ca ne et hy ja "
                "hr hi az el cs bg he zh ka km gu mk kn mr af mn kk be").split()
_CCNET_P30 = (370, 220, 180, 430, 160, 170, 180, 430, 380, 600, 190, 1110, 340, 80, 180, 920, 490, 190, 370, 210,
              140, 2430, 2530, 1130, 850, 210, 860, 1270, 750, 1110, 720, 480, 600, 450, 820, 450, 1280, 1460, 910,
              1040, 1110, 530, 2210, 1380, 540, 680, 610, 670)
_CCNET_P60 = (590, 360, 330, 650, 260, 270, 290, 680, 600, 970, 270, 1500, 520, 140, 270, 2130, 790, 300, 700, 310,
              220, 3220, 3040, 1480, 1190, 330, 1130, 1620, 1080, 1450, 910, 790, 950, 670, 1140, 680, 1710, 1950,
              1310, 2180, 1570, 740, 2800, 1870, 770, 1010, 930, 910)
CCNET_CUTOFFS: dict[str, tuple[float, float]] = {
    lang: (float(a), float(b)) for lang, a, b in zip(_CCNET_LANGS, _CCNET_P30, _CCNET_P60, strict=True)
}


def assign_buckets(ppl: np.ndarray, langs: list[str | None], cutoffs: dict[str, tuple[float, float]],
                   scored: np.ndarray) -> np.ndarray:
    """``head``/``middle``/``tail`` per row; ``none`` where not ``scored``; None where the
    row was scored but its language has no cut-offs yet."""
    out = np.full(len(ppl), None, dtype=object)
    out[~scored] = NO_MODEL
    langs_arr = np.asarray(langs, dtype=object)
    for lang, (p_head, p_tail) in cutoffs.items():
        sel = scored & (langs_arr == lang)
        if not sel.any():
            continue
        v = ppl[sel]
        out[sel] = np.where(v < p_head, "head", np.where(v < p_tail, "middle", "tail"))
    return out


def bucket_reasons(buckets: pa.Array | pa.ChunkedArray, keep: tuple[str, ...], check: str = "perplexity") -> pa.Array:
    """``<check>:<bucket>`` for rows whose bucket is a real one and not kept; null otherwise."""
    if isinstance(buckets, pa.ChunkedArray):
        buckets = buckets.combine_chunks()
    drop = [b for b in BUCKETS if b not in keep]
    return reasons_from_masks(len(buckets), [
        (f"{check}:{b}", np.asarray(pc.fill_null(pc.equal(buckets, b), False), dtype=bool)) for b in drop])


def bucket_counts(buckets: pa.Array) -> dict[str, int]:
    """Counters ``bucket:<b>`` (``bucket:pending`` for rows still awaiting cut-offs)."""
    vc = pc.value_counts(pc.fill_null(buckets, "pending"))
    return {f"bucket:{v['values'].as_py()}": v["counts"].as_py() for v in vc}


def check_keep(keep_buckets) -> tuple[str, ...]:
    """The ``keep_buckets`` option, checked (a stage/workflow option, so a StageError)."""
    bad = [b for b in keep_buckets if b not in BUCKETS]
    if bad:
        raise StageError(f"perplexity: keep_buckets {bad} unknown; buckets are {list(BUCKETS)}")
    return tuple(keep_buckets)
