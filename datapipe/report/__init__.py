"""``datapipe report``: one self-contained HTML page that shows what a run did.

Two halves, joined by plain data (a dict of numbers and strings):

* :mod:`.collect` reads the run directory (stats, progress, config, cut-offs and
  thresholds saved by workflows, reject samples, mixture manifests) and
  :mod:`.aggregate` computes the document distributions with DuckDB;
* :mod:`.render` turns that data into HTML from ``templates/`` and ``static/``.

Columns other stages add are used when present and skipped when not: ``lid_lang``,
``lid_score``, ``ppl``, ``ppl_bucket``, ``quality_score``, ``nsfw_ratio``,
``dup_cluster``, ``n_tokens``.

    build_report(run_dir) -> Path          # RUN_DIR/report/index.html
    collect(run_dir) -> dict                # every number the page shows (tests use it)
    render(data) -> str                     # the page
    data_files(run_dir) -> (files, where)   # the Parquet files the page describes (``datapipe show``)
"""
from __future__ import annotations

from pathlib import Path

from ..rundir import atomic_write_text
from .collect import ReportError, collect, data_files, load_run_stats
from .render import anchor, render


def build_report(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """Write ``RUN_DIR/report/index.html`` (or ``out``) and return its path."""
    root = Path(run_dir)
    path = Path(out) if out else root / "report" / "index.html"
    atomic_write_text(path, render(collect(root)))
    return path


__all__ = ["build_report", "collect", "render", "anchor", "load_run_stats", "data_files", "ReportError"]
