"""Re-apply a filter's thresholds to already scored rows, without re-scoring.

Filters write their scores as columns before deciding (``gq_word_count``,
``fw_line_punct_frac`` ...). ``refilter`` builds the filter again with new options and
calls only ``decide`` on those columns: seconds for a whole run, no text is read.
``datapipe refilter RUN_DIR --set key=value`` uses it.

Options not given keep the value the run scored and decided with (``scored_with``:
the stage's entry in the run directory's ``config.yaml``, which records every option),
not today's defaults, which may have changed since the run.

Options that change what ``score`` measures (a filter's ``score_options``: word
lists, C4's line rules ...) cannot be re-tuned this way; passing a changed one is an
error that names it.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .stage import Filter, StageError, build_stage, get_stage_class


def score_options(stage_name: str) -> tuple[str, ...]:
    """Options of ``stage_name`` that need re-scoring when changed."""
    return tuple(getattr(get_stage_class(stage_name), "score_options", ()))


def refilter(table: pa.Table, stage_name: str, options: dict | None = None, *,
             scored_with: dict | None = None) -> tuple[pa.Table, pa.Array]:
    """``(kept rows, reason per row)`` for ``table`` under ``stage_name`` built with ``options``
    over ``scored_with`` (the options the run scored with; the stage's defaults fill in what
    neither gives).

    ``scored_with`` also lets us refuse changes to score-time options; without it, any
    score-time option in ``options`` is refused unless it is the stage's default. Raises
    :class:`StageError` for an unknown stage, a stage that is not a filter, bad options, or
    missing score columns.
    """
    options = dict(options or {})
    try:
        cls = get_stage_class(stage_name)
    except KeyError:
        raise StageError(f"unknown stage {stage_name!r}") from None
    if not issubclass(cls, Filter):
        raise StageError(f"stage {stage_name!r} is not a filter; nothing to refilter")
    fixed = set(score_options(stage_name))
    if fixed:
        from .stage import stage_options

        defaults = {k: p.default for k, p in stage_options(cls).items()}
        before = dict(defaults, **(scored_with or {}))
        changed = sorted(k for k in fixed & set(options) if options[k] != before.get(k))
        if changed:
            raise StageError(
                f"{stage_name}: option(s) {changed} change what is scored; re-run the stage instead of refilter")
    stage = build_stage(stage_name, dict(scored_with or {}, **options))
    reasons = stage.decide(table)
    if isinstance(reasons, pa.ChunkedArray):
        reasons = reasons.combine_chunks()
    if len(reasons) != table.num_rows:
        raise StageError(f"{stage_name}: decide returned {len(reasons)} reasons for {table.num_rows} rows")
    return table.filter(pc.is_null(reasons)), reasons
