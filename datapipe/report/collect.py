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
* thresholds come from ``config.yaml`` (with the stage's own defaults), perplexity
  cut-offs also from any ``cutoffs.json`` a workflow saved under ``work/``, the
  mixture from ``mix/<name>/manifest.json``.

    collect(run_dir) -> dict                # every number the page shows (tests use it)
"""
from __future__ import annotations

import inspect
import json
import math
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..stats import StageStats, merge, merge_stats_dir
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


def _load_config(root: Path) -> dict:
    p = root / "config.yaml"
    if not p.exists():
        return {}
    import yaml
    try:
        return yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError:
        return {}


def _stage_options(cfg: dict) -> list[tuple[str, dict]]:
    """(stage name, options with the stage's own defaults filled in) for each configured stage."""
    out = []
    for spec in cfg.get("stages") or []:
        if not isinstance(spec, dict) or len(spec) != 1:
            continue
        name, given = next(iter(spec.items()))
        opts: dict = {}
        try:  # defaults from the stage's signature; the stage may not import on this machine
            from ..stage import get_stage_class
            sig = inspect.signature(get_stage_class(name).__init__)
            opts = {k: p.default for k, p in sig.parameters.items()
                    if p.kind is p.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}
        except Exception:  # noqa: BLE001 - a report must not fail on an unknown stage
            pass
        opts.update(given or {})
        out.append((name, opts))
    return out


def _parse_cutoffs(obj: Any) -> dict[str, tuple[float, float]]:
    """{lang: (p30, p60)} from the shapes a cut-off file or option may take."""
    out: dict[str, tuple[float, float]] = {}
    if not isinstance(obj, dict):
        return out
    if isinstance(obj.get("cutoffs"), dict):
        return _parse_cutoffs(obj["cutoffs"])
    for lang, v in obj.items():
        nums: list[float] = []
        if isinstance(v, (list, tuple)):
            nums = [float(x) for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
        elif isinstance(v, dict):
            nums = sorted(float(x) for x in v.values() if isinstance(x, (int, float)) and not isinstance(x, bool))
        if len(nums) >= 2:
            out[str(lang)] = (nums[0], nums[1])
    return out


def _find_cutoffs(root: Path, options: list[tuple[str, dict]]) -> tuple[dict[str, tuple[float, float]], str]:
    for p in sorted((root / "work").rglob("*cutoffs*.json")) if (root / "work").is_dir() else []:
        c = _parse_cutoffs(_read_json(p, {}))
        if c:
            return c, str(p.relative_to(root))
    for name, opts in options:
        if "ppl" in name or "perplex" in name:
            given = opts.get("cutoffs")
            if given == "ccnet":
                try:
                    from datapipe.lm import CCNET_CUTOFFS
                    return dict(CCNET_CUTOFFS), f"config.yaml ({name}.cutoffs: ccnet, CCNet's published values)"
                except Exception:  # noqa: BLE001 - the stage may not import on this machine
                    continue
            c = _parse_cutoffs(given)
            if c:
                return c, f"config.yaml ({name}.cutoffs)"
    return {}, ""


def _quality_thresholds(root: Path) -> tuple[dict[str, float], str]:
    """Per-group thresholds a top-fraction workflow saved (``work/*/quality_thresholds.json``)."""
    for p in sorted((root / "work").rglob("quality_thresholds.json")) if (root / "work").is_dir() else []:
        d = _read_json(p, {}) or {}
        thr = d.get("thresholds") if isinstance(d, dict) else None
        if isinstance(thr, dict):
            out = {str(k): float(v) for k, v in thr.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
            if out:
                return out, str(p.relative_to(root))
    return {}, ""


def _quality_threshold(options: list[tuple[str, dict]]) -> tuple[float | None, str]:
    for name, opts in options:
        if ("quality" in name or "classif" in name) and not name.startswith("gopher"):
            for key in ("threshold", "min_score", "quality_threshold", "min_quality"):
                v = opts.get(key)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    return float(v), f"{name}.{key}"
    return None, ""


def _reject_samples(root: Path, cap: int) -> dict[tuple[str, str], list[dict]]:
    """(stage, reason) -> sample rows. Merged files, else the parts of a running run."""
    rej = root / "rejects"
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    if not rej.is_dir():
        return out

    def add(path: Path, stage_dir: str, reason_name: str) -> None:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            key = (str(r.get("stage") or stage_dir), str(r.get("reason") or reason_name))
            if len(out[key]) < cap:
                out[key].append(r)

    merged_dirs = set()
    for stage_dir in sorted(p for p in rej.iterdir() if p.is_dir() and p.name != "_parts"):
        for f in sorted(stage_dir.glob("*.jsonl")):
            merged_dirs.add((stage_dir.name, f.stem))
            add(f, stage_dir.name, f.stem)
    parts = rej / "_parts"
    if parts.is_dir():
        for stage_dir in sorted(p for p in parts.iterdir() if p.is_dir()):
            for reason_dir in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
                if (stage_dir.name, reason_dir.name) in merged_dirs:
                    continue
                for f in sorted(reason_dir.glob("*.jsonl")):
                    add(f, stage_dir.name, reason_dir.name)
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


def _domain(url: str | None) -> str:
    try:
        host = (urlsplit(url or "").hostname or "").lower()
    except ValueError:
        return ""
    return host[4:] if host.startswith("www.") else host


# ----------------------------------------------------------------------------
# mixture manifest (written by `datapipe mix`; read leniently)

_TARGET_KEYS = ("target_share", "target", "share_target", "weight", "proportion", "target_proportion")
_ACHIEVED_KEYS = ("achieved_share", "achieved", "actual_share", "share", "realized_share")
_TOKEN_KEYS = ("tokens_taken", "tokens", "n_tokens", "taken_tokens")


def _num(d: dict, keys) -> float | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def _mixtures(root: Path) -> list[dict]:
    out = []
    for man in sorted((root / "mix").glob("*/manifest.json")) if (root / "mix").is_dir() else []:
        if man.parent.name.startswith("."):  # a mix being written (renamed into place when complete)
            continue
        m = _read_json(man, None)
        if not isinstance(m, dict):
            continue
        groups: list[dict] = []
        for key in ("groups", "plan", "totals", "per_group", "mixture"):
            g = m.get(key)
            if isinstance(g, dict) and g and all(isinstance(v, dict) for v in g.values()):
                groups = [{"name": k} | v for k, v in g.items()]
            elif isinstance(g, list) and g and all(isinstance(v, dict) for v in g):
                groups = [{"name": v.get("name") or v.get("group") or str(i)} | v for i, v in enumerate(g)]
            if groups:
                break
        rows = []
        for g in groups:
            rows.append({"group": str(g["name"]), "target": _num(g, _TARGET_KEYS),
                         "achieved": _num(g, _ACHIEVED_KEYS), "tokens": _num(g, _TOKEN_KEYS),
                         "available": _num(g, ("available_tokens", "tokens_available")),
                         "epochs": _num(g, ("epochs",))})
        total = sum(r["tokens"] or 0 for r in rows)
        for r in rows:
            if r["achieved"] is None and total and r["tokens"] is not None:
                r["achieved"] = r["tokens"] / total
        # shares given in percent: bring to fractions so target and achieved compare
        for k in ("target", "achieved"):
            vals = [r[k] for r in rows if r[k] is not None]
            if vals and sum(vals) > 1.5:
                s = sum(vals)
                for r in rows:
                    if r[k] is not None:
                        r[k] = r[k] / s
        out.append({"name": man.parent.name, "path": str(man.relative_to(root)), "rows": rows,
                    "raw": m if not rows else None,
                    "tokenizer": m.get("tokenizer") if isinstance(m.get("tokenizer"), str) else
                    (m.get("tokenizer") or {}).get("name") if isinstance(m.get("tokenizer"), dict) else None})
    return out


# ----------------------------------------------------------------------------

def collect(run_dir: str | Path) -> dict:
    """Everything the page shows, as plain data."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory")
    stats, stats_source = load_run_stats(root)
    cfg = _load_config(root)
    options = _stage_options(cfg)
    cap = int(((cfg.get("rejects") or {}).get("samples_per_reason")) or 50)
    last = _read_json(root / "last_run.json", {}) or {}
    progress = _progress(root)
    # finished: every step marked complete, last_run.json written, and stats.json not older than any shard's stats
    complete = bool(progress) and all(p["complete"] for p in progress) and bool(last) and stats_source == "stats.json"
    cutoffs, cutoffs_src = _find_cutoffs(root, options)
    threshold, threshold_src = _quality_threshold(options)
    group_thr, group_thr_src = _quality_thresholds(root)
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
    samples = _reject_samples(root, cap)
    # domains of dropped documents: from the reject samples (the only URLs of dropped documents kept)
    dropped_domains: dict[str, Counter] = defaultdict(Counter)
    for (stage, reason), rows in samples.items():
        for r in rows:
            dropped_domains[_domain(r.get("url"))][stage] += 1
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
        "run_dir": str(root.resolve()),
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
        "mixtures": _mixtures(root),
    }


