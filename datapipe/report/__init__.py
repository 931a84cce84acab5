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

from ..rundir import RunDir, atomic_write_text, is_url, local_copy
from .collect import ReportError, collect, data_files, load_run_stats
from .render import anchor, render


def build_report(run_dir: str | Path, *, out: str | Path | None = None) -> Path | str:
    """Write ``RUN_DIR/report/index.html`` (or ``out``) and return its path.

    A run directory on an object store (its URL, or the staging copy a run works in) is read
    from a local copy and the page is uploaded beside the run: the page's URL is returned."""
    if is_url(run_dir):
        try:
            with local_copy(str(run_dir)) as root:
                return build_report(root, out=out)
        except OSError as e:
            raise ReportError(f"{run_dir}: cannot read the run directory ({type(e).__name__}: {e})") from None
    rd = RunDir(run_dir)
    path = Path(out) if out else rd.root / "report" / "index.html"
    atomic_write_text(path, render(collect(rd.root)))
    if out is None and rd.mirror is not None:
        rd.publish(path)
        return rd.mirror.url_of("report/index.html")
    return path


__all__ = ["build_report", "collect", "render", "anchor", "load_run_stats", "data_files", "ReportError"]
