"""Reading a run directory for the report: every number the page shows, as plain data.

Built from the run directory alone (layout in ``datapipe/rundir.py``), so it works on a
finished run copied to another machine and on a run that is still going (it reads
whatever is committed):

* the funnel and per-stage numbers come from ``stats.json``, or, when that file is
  missing or older than the per-shard files (a run in progress), from merging
  ``stats/<step>/<stage>/<shard>.json`` exactly as the runner's ``finalize`` does;
* document distributions come from the Parquet files in ``output/`` (or, while the
  run has not reached its last step, the newest ``work/<step>/``), aggregated by
  :mod:`.aggregate`;
* example documents per drop reason come from ``rejects/`` (or the not yet merged
  ``rejects/_parts/`` of a running run);
* thresholds come from ``config.yaml`` (the value of every option that ran, as the
  runner records it; nothing is filled in from today's defaults), perplexity cut-offs
  also from the ``cutoffs.json`` the ``perplexity_buckets`` workflow saved under
  ``work/<step>/``, top-fraction thresholds from ``quality_thresholds.json`` there, the
  mixture from ``mix/<name>/manifest.json``, mixture searches from
  ``mix_search/<spec>/result.json``.

Only these documented formats are read. A file that is not in its format is not guessed
at: it is left out and named in ``problems``, which the page shows.

    collect(run_dir) -> dict                # every number the page shows (tests use it)
"""
from __future__ import annotations

import json
import math
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..lm import CCNET_CUTOFFS
from ..rundir import RunDir
from ..stats import StageStats, merge, merge_stats_dir
from ..tokenstream import FORMAT_VERSION, MANIFEST
from ..urls import url_domain
from .aggregate import TOP_DOMAINS, doc_aggregates


class ReportError(RuntimeError):
    """The folder is not a run directory (no stats at all)."""


# ----------------------------------------------------------------------------
# reading the run directory

def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _read_json(p: Path, default=None):
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, ValueError):
        return default


def load_run_stats(root: Path) -> tuple[list[StageStats], str]:
    """Stats of the whole run and where they came from (``stats.json`` or ``stats/``)."""
    stats_json = root / "stats.json"
    stats_dir = root / "stats"
    part_files = list(stats_dir.glob("*/*/*.json")) if stats_dir.is_dir() else []
    newest_part = max((_mtime(p) for p in part_files), default=0.0)
    if stats_json.exists() and _mtime(stats_json) >= newest_part:
        d = _read_json(stats_json, {})
        return [StageStats.from_dict(s) for s in d.get("stages", [])], "stats.json"
    if not part_files:
        raise ReportError(f"{root}: no stats.json and no stats/ folder (is this a run directory?)")
    # a run in progress: merge what is on disk, as Runner.finalize does
    plan = _read_json(root / "plan.json", []) or []
    steps = [p["step"] for p in plan] or sorted(p.name for p in stats_dir.iterdir() if p.is_dir())
    order = ["read"] + [s for p in plan for s in p.get("stages", [])] + ["write"]
    out: list[StageStats] = []
    for i, step in enumerate(steps):
        d = stats_dir / step
        if d.is_dir():
            st = merge_stats_dir(d, order)
            if i != len(steps) - 1:
                st = [s for s in st if s.stage != "write"]
            out.extend(st)
    return merge(out, order), "stats/ (per-shard files merged now: stats.json is missing or older)"


def _progress(root: Path) -> list[dict]:
    """Per step: shards done (completion markers) and whether the step completed."""
    plan = _read_json(root / "plan.json", []) or []
    out = []
    for p in plan:
        d = root / "_done" / p["step"]
        done = sum(1 for x in d.iterdir() if not x.name.startswith(".")) if d.is_dir() else 0
        out.append({"step": p["step"], "kind": p.get("kind", ""), "stages": p.get("stages", []),
                    "shards_done": done, "complete": (root / "_done" / f"{p['step']}.complete").exists()})
    return out


def data_files(root: Path) -> tuple[list[Path], str]:
    """Parquet files of the final output, else of the newest intermediate step."""
    def files(d: Path) -> list[Path]:
        return sorted(p for p in d.rglob("*.parquet") if not p.name.startswith(".")) if d.is_dir() else []
    out = files(root / "output")
    if out:
        return out, "output"
    work = root / "work"
    steps = sorted((p for p in work.iterdir() if p.is_dir() and not p.name.endswith("-intermediate")),
                   reverse=True) if work.is_dir() else []
    for d in steps:
        f = files(d)
        if f:
            return f, f"work/{d.name}"
    return [], "output"


def _load_config(root: Path, problems: list[str]) -> dict:
    """``config.yaml`` as the runner wrote it: every stage as ``{name: {options}}``, with the
    value of every option that ran."""
    p = root / "config.yaml"
    if not p.exists():
        problems.append("config.yaml is missing: no thresholds or cut-offs from the config")
        return {}
    import yaml
    try:
        cfg = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        problems.append(f"config.yaml is not valid YAML ({type(e).__name__}): no thresholds or cut-offs from it")
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _stage_options(cfg: dict) -> list[tuple[str, dict]]:
    """(stage name, options) for each configured stage, exactly as ``config.yaml`` records
    them. Nothing is filled in from today's stage defaults: the run directory says what ran."""
    out = []
    for spec in cfg.get("stages") or []:
        if isinstance(spec, dict) and len(spec) == 1:
            name, given = next(iter(spec.items()))
            out.append((str(name), given if isinstance(given, dict) else {}))
    return out


def _cutoff_pairs(obj: Any, where: str, problems: list[str]) -> dict[str, tuple[float, float]]:
    """``{lang: (p30, p60)}`` from a mapping lang -> [p30, p60], the one shape both
    ``cutoffs.json`` and the ``perplexity`` stage's ``cutoffs`` option use."""
    try:
        return {str(lang): (float(a), float(b)) for lang, (a, b) in obj.items()}
    except (AttributeError, TypeError, ValueError):
        problems.append(f"{where}: not a mapping lang -> [p30, p60]; these cut-offs are not shown")
        return {}


def _find_cutoffs(root: Path, options: list[tuple[str, dict]],
                  problems: list[str]) -> tuple[dict[str, tuple[float, float]], str]:
    """The cut-offs the ``perplexity_buckets`` workflow computed (``work/<step>/cutoffs.json``),
    else those the ``perplexity`` stage ran with (``cutoffs`` in config.yaml)."""
    for p in sorted(root.glob("work/*/cutoffs.json")):
        where = str(p.relative_to(root))
        saved = _read_json(p, None)
        if not isinstance(saved, dict) or "cutoffs" not in saved:
            problems.append(f'{where}: not the perplexity_buckets format ({{"cutoffs": {{lang: [p30, p60]}}}})')
            continue
        if c := _cutoff_pairs(saved["cutoffs"], where, problems):
            return c, where
    for name, opts in options:
        given = opts.get("cutoffs") if name == "perplexity" else None
        if given == "ccnet":
            return dict(CCNET_CUTOFFS), f"config.yaml ({name}.cutoffs: ccnet, CCNet's published values)"
        if given is not None and (c := _cutoff_pairs(given, f"config.yaml {name}.cutoffs", problems)):
            return c, f"config.yaml ({name}.cutoffs)"
    return {}, ""


def _quality_thresholds(root: Path, problems: list[str]) -> tuple[dict[str, float], str]:
    """Per-group thresholds the ``quality_top_fraction`` workflow saved
    (``work/<step>/quality_thresholds.json``: ``{"thresholds": {group: score}, ...}``)."""
    for p in sorted(root.glob("work/*/quality_thresholds.json")):
        where = str(p.relative_to(root))
        try:
            thr = {str(k): float(v) for k, v in _read_json(p, None)["thresholds"].items()}
        except (AttributeError, KeyError, TypeError, ValueError):
            problems.append(f'{where}: not the quality_top_fraction format ({{"thresholds": {{group: score}}}})')
            continue
        if thr := {k: v for k, v in thr.items() if math.isfinite(v)}:
            return thr, where
    return {}, ""


def _quality_threshold(options: list[tuple[str, dict]]) -> tuple[float | None, str]:
    """The ``quality_classifier`` stage's ``threshold`` (None: it only scored)."""
    for name, opts in options:
        if name == "quality_classifier" and opts.get("threshold") is not None:
            return float(opts["threshold"]), f"{name}.threshold"
    return None, ""


def _reject_samples(root: Path, cap: int | None, problems: list[str]) -> dict[tuple[str, str], list[dict]]:
    """(stage, reason) -> sample rows, each naming its ``stage`` and ``reason``: the merged
    ``rejects/<stage>/<reason>.jsonl``, else the parts of a running run
    (``rejects/_parts/<stage>/<reason>/<shard>.jsonl``); at most ``cap`` per key (None: all
    the run kept)."""
    rej = root / "rejects"
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    if not rej.is_dir():
        return out
    bad = 0

    def add(path: Path) -> None:
        nonlocal bad
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                key = (str(r["stage"]), str(r["reason"]))
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            if cap is None or len(out[key]) < cap:
                out[key].append(r)

    merged_dirs = set()
    for stage_dir in sorted(p for p in rej.iterdir() if p.is_dir() and p.name != "_parts"):
        for f in sorted(stage_dir.glob("*.jsonl")):
            merged_dirs.add((stage_dir.name, f.stem))
            add(f)
    parts = rej / "_parts"
    if parts.is_dir():
        for stage_dir in sorted(p for p in parts.iterdir() if p.is_dir()):
            for reason_dir in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
                if (stage_dir.name, reason_dir.name) in merged_dirs:
                    continue
                for f in sorted(reason_dir.glob("*.jsonl")):
                    add(f)
    if bad:
        problems.append(f"rejects/: {bad:,} sample line(s) that are not JSON rows with a stage and a reason, skipped")
    return out


def _cluster_size_counters(stats: list[StageStats]) -> dict[str, list[tuple[str, int]]]:
    """stage -> [(size bucket, clusters)] from ``cluster_size:<bucket>`` counters (dedup workflows)."""
    def lower(label: str) -> float:
        m = re.search(r"\d+", label)
        return float(m.group()) + (0.5 if label.startswith(">") else 0) if m else math.inf
    out = {}
    for s in stats:
        rows = [(k.split(":", 1)[1], v) for k, v in s.counters.items() if k.startswith("cluster_size:")]
        if rows:
            out[s.stage] = sorted(rows, key=lambda kv: lower(kv[0]))
    return out


# ----------------------------------------------------------------------------
# mixture manifests, as `datapipe mix` writes them (format and version: datapipe/tokenstream.py)

_MANIFEST_FORMAT = "datapipe-token-stream"


def _mixtures(root: Path, problems: list[str]) -> list[dict]:
    """One entry per ``mix/<name>/manifest.json``: per group the planned and achieved share of
    the mix's tokens (``target_share``, ``achieved_share``: fractions), ``tokens`` taken,
    ``available_tokens`` and ``epochs``; the tokenizer's ``name``. Folders starting with a dot
    are mixes being written (renamed into place when complete)."""
    out = []
    for man in sorted(root.glob(f"mix/*/{MANIFEST}")):
        if man.parent.name.startswith("."):
            continue
        where = str(man.relative_to(root))
        m = _read_json(man, None)
        if not isinstance(m, dict) or m.get("format") != _MANIFEST_FORMAT or m.get("version") != FORMAT_VERSION:
            problems.append(f"{where}: not a {_MANIFEST_FORMAT} manifest of version {FORMAT_VERSION}; not shown")
            continue
        try:
            rows = [{"group": str(name), "target": float(g["target_share"]), "achieved": float(g["achieved_share"]),
                     "tokens": int(g["tokens"]), "available": int(g["available_tokens"]), "epochs": float(g["epochs"])}
                    for name, g in m["groups"].items()]
            tokenizer = str(m["tokenizer"]["name"])
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            problems.append(f"{where}: groups or tokenizer not as `datapipe mix` writes them ({type(e).__name__}: {e});"
                            " not shown")
            continue
        out.append({"name": man.parent.name, "path": where, "rows": rows, "tokenizer": tokenizer})
    return out


# mixture searches, as `datapipe mix search` writes them (datapipe/mix/search.py)

def _mix_searches(root: Path, problems: list[str]) -> list[dict]:
    """One entry per ``mix_search/<spec>/result.json``: groups, start and chosen weights, the
    candidates (achieved shares, held-out and target losses), the fit's leave-one-out
    predictions and Spearman correlation, and the predicted losses of chosen/start/uniform."""
    out = []
    for res in sorted(root.glob("mix_search/*/result.json")):
        where = str(res.relative_to(root))
        d = _read_json(res, None)
        try:
            groups = [str(g) for g in d["groups"]]
            entry = {"spec": str(d["spec"]), "path": where, "target": str(d["target"]),
                     "out_spec": str(d.get("out_spec", "")), "groups": groups,
                     "start": {g: float(d["start"][g]) for g in groups}, "chosen": {g: float(d["chosen"][g]) for g in groups},
                     "candidates": [{"index": int(c["index"]), "shares": {g: float(c["shares"][g]) for g in groups},
                                     "losses": {k: float(v) for k, v in c["losses"].items()}} for c in d["candidates"]],
                     "loo_pred": [float(x) for x in d["fit"]["loo_pred"]], "cv_spearman": float(d["fit"]["cv_spearman"]),
                     "predicted": {k: float(v) for k, v in d["predicted"].items()}, "proxy": dict(d["proxy"])}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            problems.append(f"{where}: not as `datapipe mix search` writes it ({type(e).__name__}: {e}); not shown")
            continue
        out.append(entry)
    return out


# ----------------------------------------------------------------------------

def collect(run_dir: str | Path) -> dict:
    """Everything the page shows, as plain data."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory")
    stats, stats_source = load_run_stats(root)
    problems: list[str] = []  # files not in their documented format: named on the page, not guessed at
    cfg = _load_config(root, problems)
    options = _stage_options(cfg)
    cap = (cfg.get("rejects") or {}).get("samples_per_reason")
    last = _read_json(root / "last_run.json", {}) or {}
    progress = _progress(root)
    # finished: every step marked complete, last_run.json written, and stats.json not older than any shard's stats
    complete = bool(progress) and all(p["complete"] for p in progress) and bool(last) and stats_source == "stats.json"
    cutoffs, cutoffs_src = _find_cutoffs(root, options, problems)
    threshold, threshold_src = _quality_threshold(options)
    group_thr, group_thr_src = _quality_thresholds(root, problems)
    files, data_source = data_files(root)
    docs: dict = {"n_docs": 0, "hist": {}}
    docs_error = None
    for attempt in range(2):
        try:
            docs = (doc_aggregates(files, cutoffs=cutoffs, threshold=threshold, group_thresholds=group_thr)
                    if files else docs)
            break
        except Exception as e:  # noqa: BLE001 - a running run may remove a stale file under us
            docs_error = f"{type(e).__name__}: {e}"
            files, data_source = data_files(root)
    else:
        docs = {"n_docs": 0, "hist": {}, "error": docs_error}
    samples = _reject_samples(root, cap, problems)
    # domains of dropped documents: from the reject samples (the only URLs of dropped documents kept)
    dropped_domains: dict[str, Counter] = defaultdict(Counter)
    for (stage, reason), rows in samples.items():
        doms = url_domain(pa.array([r.get("url") for r in rows], pa.string())).to_pylist()
        for dom in doms:
            dropped_domains[dom][stage] += 1
    dd = sorted(((dom, sum(c.values()), dict(c)) for dom, c in dropped_domains.items() if dom),
                key=lambda t: (-t[1], t[0]))[:TOP_DOMAINS]
    # estimated tokens per stage from text bytes (exact at the output)
    tokens_est = None
    if docs.get("n_tokens") is not None and docs.get("text_bytes"):
        ratio = docs["n_tokens"] / docs["text_bytes"]
        has_extract = any(s.stage.startswith("extract") for s in stats)
        text_seen = not has_extract
        tokens_est = []
        for s in stats:
            if s.stage.startswith("extract"):
                text_seen = True
            if s.stage == "write":
                tokens_est.append(docs["n_tokens"] if data_source == "output" else None)
            elif (text_seen and s.stage != "read") or not has_extract:
                tokens_est.append(round(s.bytes_out * ratio))
            else:
                tokens_est.append(None)
    return {
        "run_dir": RunDir(root).url or str(root.resolve()),  # a staging copy's page names its URL
        "name": cfg.get("name") or root.name,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "stats": [s.to_dict() for s in stats],
        "stats_source": stats_source,
        "tokens_est": tokens_est,
        "last_run": last,
        "complete": complete,
        "progress": progress,
        "config": cfg,
        "config_text": (root / "config.yaml").read_text() if (root / "config.yaml").exists() else "",
        "cutoffs": {k: list(v) for k, v in cutoffs.items()}, "cutoffs_source": cutoffs_src,
        "quality_threshold": threshold, "quality_threshold_source": threshold_src,
        "quality_group_thresholds": group_thr, "quality_group_thresholds_source": group_thr_src,
        "cluster_sizes": _cluster_size_counters(stats),
        "data_source": data_source, "data_files": len(files),
        "docs": docs,
        "samples": {f"{k[0]}\x1f{k[1]}": v for k, v in samples.items()},
        "samples_cap": cap,
        "domains_dropped": dd,
        "mixtures": _mixtures(root, problems),
        "mix_searches": _mix_searches(root, problems),
        "problems": problems,
    }


