"""``datapipe report``: one self-contained HTML page that shows what a run did.

Built from the run directory alone, so it works on a finished run copied to another
machine and on a run that is still going (it reads whatever is committed):

* the funnel and per-stage numbers come from ``stats.json``, or, when that file is
  missing or older than the per-shard files (a run in progress), from merging
  ``stats/<step>/<stage>/<shard>.json`` exactly as the runner's ``finalize`` does;
* document distributions come from the Parquet files in ``output/`` (or, while the
  run has not reached its last step, the newest ``work/<step>/``), aggregated with
  DuckDB, which reads only the columns a chart needs and never holds the data set
  in memory;
* example documents per drop reason come from ``rejects/`` (or the not yet merged
  ``rejects/_parts/`` of a running run);
* thresholds come from ``config.yaml`` (with the stage's own defaults), perplexity
  cut-offs also from any ``cutoffs.json`` a workflow saved under ``work/``, the
  mixture from ``mix/<name>/manifest.json``.

Columns other stages add are used when present and skipped when not: ``lid_lang``,
``lid_score``, ``ppl``, ``ppl_bucket``, ``quality_score``, ``nsfw_ratio``,
``dup_cluster`` (or ``dup_cluster_size``), ``n_tokens``.

Charts: Plotly, with plotly.js (about 4.8 MB) inlined once per page, so the page opens
with no network at all. Plotly rather than matplotlib SVGs because curators read exact
counts on hover, zoom into long tails (perplexity, length) and click a drop-reason bar
to jump to its example documents; rather than Altair because Altair's offline mode
needs vl-convert (a 30 MB native wheel) to inline Vega. Histograms are binned here
(exact counts over all documents) and drawn as step areas, so the page carries a few
hundred numbers per chart, not the data set. Every string that comes from a document,
a URL or the config is HTML-escaped; chart specs are embedded as JSON with ``<``, ``>``
and ``&`` escaped, so no text can close a ``<script>`` element.

    build_report(run_dir) -> Path          # RUN_DIR/report/index.html
    collect(run_dir) -> dict                # every number the page shows (tests use it)
"""
from __future__ import annotations

import hashlib
import html
import inspect
import json
import math
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .rundir import atomic_write_text
from .stats import StageStats, merge, merge_stats_dir

#: example documents shown per drop reason (the run keeps up to ``rejects.samples_per_reason``)
SAMPLES_SHOWN = 8
HIST_BINS = 40
TOP_DOMAINS = 25
TOP_LANGS = 40

# columns other stages add, and their accepted spellings (first present wins)
COLUMNS = {
    "lid_lang": ("lid_lang",),
    "lid_score": ("lid_score",),
    "ppl": ("ppl", "ppl_kenlm"),
    "ppl_bucket": ("ppl_bucket",),
    "quality_score": ("quality_score", "quality_edu"),
    "nsfw_ratio": ("nsfw_ratio",),
    "dup_cluster": ("dup_cluster",),
    "dup_cluster_size": ("dup_cluster_size",),
    "n_tokens": ("n_tokens",),
    "url": ("url",),
    "text": ("text",),
}

_DOMAIN_SQL = ("regexp_replace(lower(regexp_extract({url}, '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/]*@)?([^/:?#]+)', 1)),"
               " '^www\\.', '')")


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


def _data_files(root: Path) -> tuple[list[Path], str]:
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
            from .stage import get_stage_class
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
                    from stages.perplexity import CCNET_CUTOFFS
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
# aggregates over the documents (DuckDB over Parquet)

def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Docs:
    """DuckDB view ``docs`` over a fixed list of Parquet files (schemas unioned by name)."""

    def __init__(self, files: list[Path]):
        import duckdb
        self.con = duckdb.connect()
        lst = "[" + ", ".join(_sql_str(str(f)) for f in files) + "]"
        # hive_partitioning off: partition folders (lang=xx/) repeat a column that is in the file
        self.con.execute(f"CREATE VIEW docs AS SELECT * FROM read_parquet({lst}, union_by_name=true, "
                         "hive_partitioning=false)")
        self.columns = [r[0] for r in self.con.execute("DESCRIBE docs").fetchall()]

    def col(self, key: str) -> str | None:
        for c in COLUMNS.get(key, (key,)):
            if c in self.columns:
                return c
        return None

    def one(self, sql: str):
        return self.con.execute(sql).fetchone()

    def all(self, sql: str):
        return self.con.execute(sql).fetchall()

    def histogram(self, expr: str, *, log: bool, bins: int = HIST_BINS, lo: float | None = None,
                  hi: float | None = None) -> dict | None:
        """Exact counts in ``bins`` equal-width bins (in log10 space when ``log``)."""
        x = f"CAST({expr} AS DOUBLE)"
        base = f"FROM (SELECT {x} AS x FROM docs) WHERE x IS NOT NULL AND isfinite(x)"
        n_all, mn, mx, n_nonpos = self.one(f"SELECT count(*), min(x), max(x), count(*) FILTER (WHERE x <= 0) {base}")
        if not n_all:
            return None
        if log:
            base += " AND x > 0"
            if n_all == n_nonpos:
                return None
            mn = self.one(f"SELECT min(x) {base}")[0]
        lo = mn if lo is None else min(lo, mn)
        hi = mx if hi is None else max(hi, mx)
        t = (lambda v: math.log10(v)) if log else (lambda v: v)
        tlo, thi = t(lo), t(hi)
        if thi <= tlo:
            thi = tlo + (1.0 if log or tlo == 0 else abs(tlo) * 0.01 or 1.0)
        w = (thi - tlo) / bins
        tx = "log10(x)" if log else "x"
        rows = self.all(f"SELECT LEAST(GREATEST(CAST(FLOOR(({tx} - {tlo!r}) / {w!r}) AS BIGINT), 0), {bins - 1}) AS b, "
                        f"count(*) {base} GROUP BY b")
        counts = [0] * bins
        for b, c in rows:
            counts[int(b)] = int(c)
        edges = [tlo + i * w for i in range(bins + 1)]
        if log:
            edges = [10 ** e for e in edges]
            edges[0], edges[-1] = lo, max(hi, edges[-1])  # exact ends: 10**log10(x) may round below x
        q = self.one(f"SELECT quantile_cont(x, [0.1, 0.5, 0.9]), avg(x) {base}")
        return {"edges": edges, "counts": counts, "n": sum(counts), "log": log,
                "excluded_nonpositive": int(n_nonpos) if log else 0,
                "p10": q[0][0], "p50": q[0][1], "p90": q[0][2], "mean": q[1], "min": mn, "max": mx}


def _doc_aggregates(files: list[Path], *, cutoffs: dict, threshold: float | None,
                    group_thresholds: dict[str, float] | None = None) -> dict:
    d = _Docs(files)
    out: dict[str, Any] = {"columns": d.columns, "hist": {}}
    text, url = d.col("text"), d.col("url")
    ntok = d.col("n_tokens")
    sel = ["count(*)"]
    sel.append(f"sum(strlen({_ident(text)}))" if text else "NULL")
    sel.append(f"sum({_ident(ntok)})" if ntok else "NULL")
    n, text_bytes, tokens = d.one(f"SELECT {', '.join(sel)} FROM docs")
    out.update(n_docs=int(n), text_bytes=int(text_bytes or 0), n_tokens=int(tokens) if tokens is not None else None)
    if not n:
        return out
    H = out["hist"]
    if text:
        H["length"] = d.histogram(f"length({_ident(text)})", log=True) | {
            "title": "Document length (characters)", "column": "length(text)"}
    if ntok:
        H["n_tokens"] = d.histogram(_ident(ntok), log=True) | {"title": "Tokens per document", "column": ntok}
    c = d.col("lid_score")
    if c and (h := d.histogram(_ident(c), log=False, lo=0.0, hi=1.0)):
        H["lid_score"] = h | {"title": "Language-ID score", "column": c}
    c = d.col("ppl")
    if c and (h := d.histogram(_ident(c), log=True)):
        h["lines"] = _cutoff_lines(cutoffs, d)
        H["ppl"] = h | {"title": "Perplexity (KenLM)", "column": c}
    c = d.col("quality_score")
    if c and (h := d.histogram(_ident(c), log=False)):
        h["lines"] = [{"x": threshold, "label": f"threshold {threshold:g}"}] if threshold is not None else []
        for g, v in list((group_thresholds or {}).items())[:3]:  # top-fraction thresholds (first groups)
            h["lines"].append({"x": v, "label": f"{g} top-fraction threshold {v:.3g}"})
        H["quality_score"] = h | {"title": "Quality score", "column": c}
    c = d.col("nsfw_ratio")
    if c and (h := d.histogram(_ident(c), log=False, lo=0.0)):
        h["zero"] = int(d.one(f"SELECT count(*) FROM docs WHERE {_ident(c)} = 0")[0])
        H["nsfw_ratio"] = h | {"title": "NSFW word ratio", "column": c}
    # duplicate clusters: the size column when dedup wrote one, else sizes among the documents here
    cs, cl = d.col("dup_cluster_size"), d.col("dup_cluster")
    if cs:
        rows = d.all(f"SELECT {_ident(cs)} AS s, count(*) FROM docs WHERE {_ident(cs)} IS NOT NULL GROUP BY s ORDER BY s")
        out["dup_sizes"] = {"rows": [(int(s), int(k)) for s, k in rows], "column": cs,
                            "note": "one row per kept document: the size of the cluster it survived"}
    elif cl:
        # dedup that drops keeps one survivor per cluster (all sizes 1 here); one that only marks keeps all
        rows = d.all(f"SELECT s, count(*) FROM (SELECT count(*) AS s FROM docs WHERE {_ident(cl)} IS NOT NULL "
                     f"GROUP BY {_ident(cl)}) GROUP BY s ORDER BY s")
        if any(int(s) > 1 for s, _ in rows):
            out["dup_sizes"] = {"rows": [(int(s), int(k)) for s, k in rows], "column": cl,
                                "note": "clusters counted among the documents in this data set"}
    # ppl buckets
    c = d.col("ppl_bucket")
    if c:
        out["ppl_buckets"] = [(str(b), int(k)) for b, k in
                              d.all(f"SELECT CAST({_ident(c)} AS VARCHAR) AS b, count(*) FROM docs GROUP BY b ORDER BY 2 DESC")]
    # languages
    lang = d.col("lid_lang")
    if lang:
        cols = ["count(*)"]
        names = ["docs"]
        for key, agg, label in (("n_tokens", "sum", "tokens"), ("lid_score", "avg", "mean lid_score"),
                                ("ppl", "median", "median ppl"), ("quality_score", "avg", "mean quality")):
            cc = d.col(key)
            if cc:
                cols.append(f"{agg}({_ident(cc)})")
                names.append(label)
        rows = d.all(f"SELECT CAST({_ident(lang)} AS VARCHAR) AS l, {', '.join(cols)} FROM docs GROUP BY l "
                     f"ORDER BY 2 DESC, 1 LIMIT {TOP_LANGS}")
        n_lang = d.one(f"SELECT count(DISTINCT {_ident(lang)}) FROM docs")[0]
        out["languages"] = {"columns": names, "rows": [list(r) for r in rows], "distinct": int(n_lang)}
    # domains kept
    if url:
        dom = _DOMAIN_SQL.format(url=_ident(url))
        extra = f", sum({_ident(ntok)})" if ntok else ""
        rows = d.all(f"SELECT {dom} AS dom, count(*){extra} FROM docs GROUP BY dom ORDER BY 2 DESC, 1 LIMIT {TOP_DOMAINS}")
        n_dom = d.one(f"SELECT count(DISTINCT {dom}) FROM docs")[0]
        out["domains_kept"] = {"rows": [list(r) for r in rows], "distinct": int(n_dom),
                               "columns": ["docs"] + (["tokens"] if ntok else [])}
    return out


def _cutoff_lines(cutoffs: dict[str, tuple[float, float]], d: _Docs) -> list[dict]:
    if not cutoffs:
        return []
    langs = list(cutoffs)
    lang_col = d.col("lid_lang")
    if lang_col and len(langs) > 3:  # draw the cut-offs of the languages that matter here
        top = [str(r[0]) for r in d.all(f"SELECT CAST({_ident(lang_col)} AS VARCHAR), count(*) FROM docs "
                                         "GROUP BY 1 ORDER BY 2 DESC LIMIT 10")]
        langs = [l for l in top if l in cutoffs][:3] or langs[:3]
    lines = []
    for lang in langs[:3]:
        a, b = cutoffs[lang]
        g = len(lines) // 2  # one colour per language
        lines += [{"x": a, "label": f"{lang} head|middle {a:g}", "group": g},
                  {"x": b, "label": f"{lang} middle|tail {b:g}", "group": g}]
    return lines


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
    files, data_source = _data_files(root)
    docs: dict = {"n_docs": 0, "hist": {}}
    docs_error = None
    for attempt in range(2):
        try:
            docs = (_doc_aggregates(files, cutoffs=cutoffs, threshold=threshold, group_thresholds=group_thr)
                    if files else docs)
            break
        except Exception as e:  # noqa: BLE001 - a running run may remove a stale file under us
            docs_error = f"{type(e).__name__}: {e}"
            files, data_source = _data_files(root)
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


# ----------------------------------------------------------------------------
# rendering

def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _n(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{int(x):,}"


def _pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "–"


def anchor(stage: str, reason: str) -> str:
    """The id of a (stage, reason)'s example documents on the page."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{stage}-{reason}".lower()).strip("-")[:60]
    digest = hashlib.sha1((stage + "\x1f" + reason).encode()).hexdigest()[:6]
    return f"rej-{slug}-{digest}"


def _json_for_script(obj: Any) -> str:
    s = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_json_default)
    # inside <script type="application/json"> nothing may look like "</script" or "<!--"
    return (s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


class _Page:
    def __init__(self):
        self.charts: list[tuple[str, dict]] = []

    def chart(self, cid: str, data: list[dict], layout: dict, *, height: int = 360, caption: str = "") -> str:
        base = {"height": height, "margin": {"l": 60, "r": 30, "t": 44, "b": 50},
                "paper_bgcolor": "white", "plot_bgcolor": "#fafafa", "font": {"size": 12}}
        layout = base | layout
        if isinstance(layout.get("title"), dict):  # left: the mode bar sits top right
            layout["title"] = {"x": 0.01, "xanchor": "left", "font": {"size": 14}} | layout["title"]
        self.charts.append((cid, {"data": data, "layout": layout}))
        cap = f'<p class="caption">{caption}</p>' if caption else ""
        return f'<div class="chart" id="{_e(cid)}" data-chart="{_e(cid)}"></div>{cap}'

    def specs(self) -> str:
        return "\n".join(f'<script type="application/json" id="{_e(cid)}-spec">{_json_for_script(spec)}</script>'
                         for cid, spec in self.charts)


def _table(headers: list[str], rows: list[list[str]], *, cls: str = "", raw_cols: set[int] = frozenset()) -> str:
    """A table; cells are escaped unless their column index is in ``raw_cols`` (already HTML)."""
    th = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if i in raw_cols else _e(c)}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _count_axis(counts: list[int]) -> str:
    """Log scale only where counts span orders of magnitude (cluster sizes usually do)."""
    pos = [c for c in counts if c > 0]
    return "log" if pos and max(pos) / min(pos) >= 50 else "linear"


def _hist_chart(page: _Page, cid: str, h: dict) -> str:
    edges, counts = h["edges"], h["counts"]
    # a step area: one point per bin edge; exact under a log axis where bars would distort
    xs = list(edges)
    ys = list(counts) + [counts[-1]]
    text = [f"{_n(a)} – {_n(b)}: {c:,} docs" for a, b, c in zip(edges, edges[1:], counts)] + [""]
    data = [{"type": "scatter", "x": xs, "y": ys, "mode": "lines", "line": {"shape": "hv", "width": 1.5, "color": "#1f77b4"},
             "fill": "tozeroy", "fillcolor": "rgba(31,119,180,0.35)", "text": text, "hovertemplate": "%{text}<extra></extra>",
             "name": _e(h["column"])}]
    shapes, notes = [], []
    palette = ["#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
    for i, ln in enumerate(h.get("lines") or []):
        color = palette[ln.get("group", i) % len(palette)]
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": ln["x"], "x1": ln["x"], "y0": 0, "y1": 1,
                       "line": {"color": color, "width": 2, "dash": "dash"}})
        notes.append({"x": math.log10(ln["x"]) if h["log"] and ln["x"] > 0 else ln["x"], "xref": "x", "yref": "paper",
                      "y": 1.0 - 0.08 * (i % 6), "text": _e(ln["label"]), "showarrow": False, "xanchor": "left",
                      "font": {"color": color, "size": 11}, "bgcolor": "rgba(255,255,255,0.7)"})
    layout = {"title": {"text": _e(h["title"])}, "xaxis": {"type": "log" if h["log"] else "linear", "title": {"text": _e(h["column"])}},
              "yaxis": {"title": {"text": "documents"}, "rangemode": "tozero"}, "shapes": shapes, "annotations": notes,
              "showlegend": False}
    cap = (f'{h["n"]:,} documents · p10 {_n(h["p10"])} · median {_n(h["p50"])} · p90 {_n(h["p90"])} · '
           f'min {_n(h["min"])} · max {_n(h["max"])}')
    if h.get("excluded_nonpositive"):
        cap += f' · {h["excluded_nonpositive"]:,} at ≤ 0 not drawn (log axis)'
    if "zero" in h:
        cap += f' · {h["zero"]:,} ({_pct(h["zero"], h["n"])}) exactly 0'
    return page.chart(cid, data, layout, height=320, caption=_e(cap))


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#f3f4f6}
header{background:#1f2937;color:#fff;padding:14px 28px}header h1{margin:0;font-size:20px}
header .sub{color:#cbd5e1;font-size:12px;margin-top:4px;word-break:break-all}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 28px;z-index:10;font-size:13px}
nav a{margin-right:14px;color:#1d4ed8;text-decoration:none}
main{padding:10px 28px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:12px 18px;margin:14px 0}
h2{font-size:17px;margin:4px 0 10px}h3{font-size:15px;margin:14px 0 6px}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #e5e7eb;border-radius:6px;padding:8px 14px;min-width:130px}
.card .v{font-size:20px;font-weight:600}.card .k{font-size:12px;color:#555}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}th,td{border-bottom:1px solid #e5e7eb;padding:3px 10px;text-align:right}
th{background:#f9fafb}td:first-child,th:first-child{text-align:left}
.caption{font-size:12px;color:#555;margin:0 0 10px}.note{font-size:12px;color:#666}
.warn{background:#fff7ed;border:1px solid #fdba74;padding:6px 10px;border-radius:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(540px,1fr));gap:10px}
.sample{border-top:1px solid #eee;padding:6px 0}.sample .meta{font-size:12px;color:#444;word-break:break-all}
pre.ex{white-space:pre-wrap;word-break:break-word;background:#f8fafc;border:1px solid #e5e7eb;padding:6px 8px;margin:4px 0;font-size:12px;max-height:220px;overflow:auto}
.reason{scroll-margin-top:40px}.reason:target{outline:3px solid #fbbf24}
code{background:#f3f4f6;padding:0 3px}
"""

JS = """
(function(){
  var charts = document.querySelectorAll('div.chart'), pending = [];
  var cfg = {displaylogo:false, responsive:true, showSendToCloud:false, showEditInChartStudio:false,
             modeBarButtonsToRemove:['select2d','lasso2d']};
  charts.forEach(function(el){
    var spec = JSON.parse(document.getElementById(el.id + '-spec').textContent);
    pending.push(Plotly.newPlot(el, spec.data, spec.layout, cfg).then(function(){
      el.on('plotly_click', function(ev){
        var p = ev && ev.points && ev.points[0];
        if (p && typeof p.customdata === 'string' && p.customdata.charAt(0) === '#') { location.hash = p.customdata; }
      });
      // reason labels are <a href="#..."> links; plotly.js drops relative hrefs on file:// pages
      el.addEventListener('click', function(ev){
        var t = ev.target && ev.target.closest && ev.target.closest('g.ytick text, g.xtick text');
        var m = t && /href="(#[^"]+)"/.exec(t.getAttribute('data-unformatted') || '');
        if (m) { location.hash = m[1]; }
      });
    }));
  });
  Promise.all(pending).then(function(){ document.documentElement.setAttribute('data-charts-rendered', String(charts.length)); },
                            function(err){ document.documentElement.setAttribute('data-charts-error', String(err)); });
})();
"""


def render(data: dict) -> str:
    from plotly.offline import get_plotlyjs

    page = _Page()
    stats = [StageStats.from_dict(s) for s in data["stats"]]
    docs = data["docs"]
    last = data["last_run"] or {}
    sections: list[tuple[str, str, str]] = []  # (id, title, html)
    samples = {tuple(k.split("\x1f", 1)): v for k, v in data["samples"].items()}

    # ---- summary
    first_in = stats[0].rows_in if stats else 0
    final_out = stats[-1].rows_out if stats else 0
    cards = [("records in", _n(first_in)), ("documents out", _n(final_out)), ("kept", _pct(final_out, first_in)),
             ("stages", str(len(stats)))]
    if docs.get("n_tokens") is not None:
        cards.append(("tokens out", _n(docs["n_tokens"])))
    if last.get("wall_seconds") is not None:
        cards.append(("wall time", f"{last['wall_seconds']:.1f} s"))
        cards.append(("cores", _n(last.get("cores"))))
        if last.get("cores"):
            cards.append(("docs/s per core, end to end", f"{first_in / last['wall_seconds'] / last['cores']:,.1f}"))
    status = ('<p class="warn">This run has not finished (or was interrupted): the numbers below are what is '
              'committed so far.</p>' if not data["complete"] else "")
    prog_rows = [[p["step"], p["kind"], ", ".join(p["stages"]), _n(p["shards_done"]), "yes" if p["complete"] else "no"]
                 for p in data["progress"]]
    summary = (status + '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>' for k, v in cards) + "</div>"
        + f'<p class="note">Stats from <code>{_e(data["stats_source"])}</code>; documents from '
        f'<code>{_e(data["data_source"])}</code> ({_n(data["data_files"])} Parquet file(s)).'
        + (f' Last run finished {_e(last.get("finished"))}; {_n(last.get("shards_run"))} shard(s) run, '
           f'{_n(last.get("shards_skipped"))} resumed.' if last else "") + "</p>"
        + (_table(["step", "kind", "stages", "shards done", "complete"], prog_rows) if prog_rows else ""))
    sections.append(("summary", "Summary", summary))

    # ---- funnel
    if stats:
        labels = ["input"] + [s.stage for s in stats]
        values = [stats[0].rows_in] + [s.rows_out for s in stats]
        fdata = [{"type": "funnel", "name": "documents", "y": [_e(l) for l in labels], "x": values,
                  "text": [f"{v:,}" for v in values], "textinfo": "text+percent initial", "textposition": "inside",
                  "hovertemplate": "%{y}: %{x:,} documents (%{percentInitial:.1%} of input, "
                                   "%{percentPrevious:.1%} of previous)<extra></extra>",
                  "marker": {"color": "#1f77b4"}, "connector": {"line": {"color": "#9ca3af"}}}]
        tok = data.get("tokens_est")
        funnel_html = page.chart("funnel", fdata, {"title": {"text": "Documents kept after each stage"},
                                                   "yaxis": {"automargin": True}}, height=max(300, 46 * len(labels) + 80))
        if tok and any(t is not None for t in tok):
            tl = [l for l, t in zip(labels[1:], tok) if t is not None]
            tv = [t for t in tok if t is not None]
            tdata = [{"type": "funnel", "name": "tokens", "y": [_e(l) for l in tl], "x": tv,
                      "text": [f"{v:,}" for v in tv], "textinfo": "text+percent initial",
                      "marker": {"color": "#2ca02c"}}]
            funnel_html += page.chart("funnel-tokens", tdata, {"title": {"text": "Tokens kept after each stage"},
                                                               "yaxis": {"automargin": True}},
                                      height=max(260, 46 * len(tl) + 80),
                                      caption="Written output: exact sum of <code>n_tokens</code>. Earlier stages: "
                                              "≈ text bytes × (output tokens / output text bytes).")
        rows = []
        for s, t in zip(stats, tok or [None] * len(stats)):
            rows.append([s.stage, _n(s.rows_in), _n(s.rows_out), _n(s.rows_dropped), _pct(s.rows_out, s.rows_in),
                         f"{s.bytes_in / 1e6:,.2f}", f"{s.bytes_out / 1e6:,.2f}"] + ([_n(t)] if tok else []))
        heads = ["stage", "docs in", "docs out", "dropped", "kept %", "MB in", "MB out"] + (["≈ tokens out"] if tok else [])
        funnel_html += _table(heads, rows, cls="funnel-table")
        sections.append(("funnel", "Funnel", funnel_html))

    # ---- drop reasons
    drops_html = []
    for i, s in enumerate(stats):
        if not s.dropped:
            continue
        items = sorted(s.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
        reasons = [r for r, _ in items]
        counts = [n for _, n in items]
        shares = [n / s.rows_in if s.rows_in else 0.0 for n in counts]
        anchors = ["#" + anchor(s.stage, r) for r in reasons]
        has = [(s.stage, r) in samples for r in reasons]
        ticks = [f'<a href="{a}">{_e(r)}</a>' if h else _e(r) for r, a, h in zip(reasons, anchors, has)]
        bdata = [{"type": "bar", "orientation": "h", "y": ticks[::-1], "x": counts[::-1],
                  "text": [f"{n:,} ({sh:.1%})" for n, sh in zip(counts, shares)][::-1], "textposition": "auto",
                  "customdata": [a if h else "" for a, h in zip(anchors, has)][::-1],
                  "hovertemplate": "%{y}<br>%{x:,} docs dropped (%{text})<extra></extra>", "marker": {"color": "#d62728"}}]
        title = f"{s.stage}: {s.rows_dropped:,} of {s.rows_in:,} dropped ({_pct(s.rows_dropped, s.rows_in)})"
        chart = page.chart(f"drops-{i}", bdata, {"title": {"text": _e(title)}, "yaxis": {"automargin": True},
                                                 "xaxis": {"title": {"text": "documents dropped"}}},
                           height=max(180, 34 * len(items) + 100))
        trows = [[f'<a href="{a}">{_e(r)}</a>' if h else _e(r), _n(n), f"{sh:.2%}",
                  _n(len(samples.get((s.stage, r), [])))]
                 for r, n, sh, a, h in zip(reasons, counts, shares, anchors, has)]
        drops_html.append(f'<h3 id="drops-{_e(s.stage)}">{_e(s.stage)}</h3>' + chart
                          + _table(["reason", "dropped", "share of stage input", "examples"], trows, raw_cols={0},
                                   cls="drops-table"))
    if drops_html:
        sections.append(("drops", "Drop reasons", "<p class=note>Click a bar or a reason for example documents.</p>"
                         + "".join(drops_html)))

    # ---- distributions
    H = docs.get("hist") or {}
    dist = []
    for key in ("length", "n_tokens", "lid_score", "ppl", "quality_score", "nsfw_ratio"):
        if H.get(key):
            dist.append(_hist_chart(page, f"hist-{key}", H[key]))
    extra = []
    if docs.get("ppl_buckets"):
        pb = docs["ppl_buckets"]
        tot = sum(k for _, k in pb)
        extra.append("<h3>Perplexity buckets</h3>" + _table(["bucket", "docs", "share"],
                                                              [[b, _n(k), _pct(k, tot)] for b, k in pb]))
    if data.get("cutoffs"):
        extra.append('<p class="note">Perplexity cut-offs (p30, p60) from <code>' + _e(data["cutoffs_source"]) + "</code>: "
                     + ", ".join(f"{_e(l)} {a:g} / {b:g}" for l, (a, b) in data["cutoffs"].items()) + "</p>")
    if H.get("quality_score") and data.get("quality_threshold") is None and not data.get("quality_group_thresholds"):
        extra.append('<p class="note">No quality threshold found in config.yaml.</p>')
    for j, (stage, rows) in enumerate((data.get("cluster_sizes") or {}).items()):
        cdata = [{"type": "bar", "x": [_e(b) for b, _ in rows], "y": [k for _, k in rows],
                  "text": [f"{k:,}" for _, k in rows], "textposition": "auto",
                  "hovertemplate": "clusters of size %{x}: %{y:,}<extra></extra>", "marker": {"color": "#9467bd"}}]
        dist.append(page.chart(f"hist-clusters-{j}", cdata, {
            "title": {"text": _e(f"Duplicate-cluster sizes ({stage})")},
            "xaxis": {"type": "category", "title": {"text": "documents per cluster"}},
            "yaxis": {"type": _count_axis([k for _, k in rows]), "title": {"text": "clusters"}}}, height=320,
            caption=_e(f"{sum(k for _, k in rows):,} clusters of 2 or more documents; "
                       f"{next((s.rows_dropped for s in stats if s.stage == stage), 0):,} duplicates removed")))
    if data.get("quality_group_thresholds"):
        extra.append('<p class="note">Top-fraction quality thresholds from <code>'
                     + _e(data["quality_group_thresholds_source"]) + "</code>: "
                     + ", ".join(f"{_e(g)} {v:.3g}" for g, v in data["quality_group_thresholds"].items()) + "</p>")
    if docs.get("dup_sizes"):
        ds = docs["dup_sizes"]
        ddata = [{"type": "bar", "x": [s for s, _ in ds["rows"]], "y": [k for _, k in ds["rows"]],
                  "text": [f"{k:,}" for _, k in ds["rows"]], "textposition": "auto",
                  "hovertemplate": "cluster size %{x}: %{y:,}<extra></extra>", "marker": {"color": "#9467bd"}}]
        dist.append(page.chart("hist-dup", ddata, {"title": {"text": "Duplicate-cluster sizes"},
                                                   "xaxis": {"title": {"text": f"cluster size ({_e(ds['column'])})"}},
                                                   "yaxis": {"type": _count_axis([k for _, k in ds["rows"]]),
                                                             "title": {"text": "count"}}},
                               height=320, caption=_e(ds["note"])))
    if dist or extra:
        src = _e(data["data_source"])
        sections.append(("distributions", "Distributions",
                         f'<p class="note">Over the {_n(docs.get("n_docs"))} documents in <code>{src}</code> '
                         f'(documents a stage dropped are not in it; see their examples below).</p>'
                         + '<div class="grid">' + "".join(f"<div>{c}</div>" for c in dist) + "</div>" + "".join(extra)))
    elif docs.get("error"):
        sections.append(("distributions", "Distributions", f'<p class="warn">Could not read the documents: {_e(docs["error"])}</p>'))

    # ---- languages
    if docs.get("languages"):
        L = docs["languages"]
        n = docs["n_docs"]
        rows = [[r[0] if r[0] is not None else "(none)", _n(r[1]), _pct(r[1], n)] + [_n(v) for v in r[2:]] for r in L["rows"]]
        sections.append(("languages", "Languages",
                         f'<p class="note">{L["distinct"]:,} language(s) among the documents kept'
                         + (f"; top {TOP_LANGS} shown" if L["distinct"] > TOP_LANGS else "") + ".</p>"
                         + _table(["language", "docs", "share"] + L["columns"][1:], rows, cls="lang-table")))

    # ---- domains
    dom_html = ""
    if docs.get("domains_kept"):
        D = docs["domains_kept"]
        rows = [[r[0] or "(none)", _n(r[1]), _pct(r[1], docs["n_docs"])] + [_n(v) for v in r[2:]] for r in D["rows"]]
        dom_html += (f"<h3>Top domains kept</h3><p class=note>{D['distinct']:,} distinct domain(s).</p>"
                     + _table(["domain", "docs", "share"] + D["columns"][1:], rows, cls="domains-kept"))
    if data.get("domains_dropped"):
        rows = [[dom, _n(n), ", ".join(f"{st} {k:,}" for st, k in sorted(by.items(), key=lambda kv: -kv[1]))]
                for dom, n, by in data["domains_dropped"]]
        dom_html += ("<h3>Top domains dropped</h3><p class=note>Counted over the reject samples (up to "
                     f"{data['samples_cap']} kept per stage and reason), not over every dropped document.</p>"
                     + _table(["domain", "sampled rejects", "by stage"], rows, cls="domains-dropped"))
    if dom_html:
        sections.append(("domains", "Domains", dom_html))

    # ---- mixture
    if data.get("mixtures"):
        parts = []
        for j, mx in enumerate(data["mixtures"]):
            head = f"<h3>{_e(mx['name'])}</h3><p class=note><code>{_e(mx['path'])}</code>" + (
                f" · tokenizer {_e(mx['tokenizer'])}" if mx.get("tokenizer") else "") + "</p>"
            rows = mx["rows"]
            if not rows:
                parts.append(head + "<p class=note>No per-group table recognised in the manifest; as written:</p>"
                             f'<pre class="ex">{_e(json.dumps(mx["raw"], indent=1)[:20000])}</pre>')
                continue
            groups = [_e(r["group"]) for r in rows]
            mdata = []
            if any(r["target"] is not None for r in rows):
                mdata.append({"type": "bar", "name": "plan", "x": groups, "y": [r["target"] for r in rows],
                              "text": [f"{r['target']:.1%}" if r["target"] is not None else "" for r in rows],
                              "textposition": "auto", "hovertemplate": "%{x}: plan %{y:.2%}<extra></extra>"})
            if any(r["achieved"] is not None for r in rows):
                mdata.append({"type": "bar", "name": "achieved", "x": groups, "y": [r["achieved"] for r in rows],
                              "text": [f"{r['achieved']:.1%}" if r["achieved"] is not None else "" for r in rows],
                              "textposition": "auto", "hovertemplate": "%{x}: achieved %{y:.2%}<extra></extra>"})
            chart = page.chart(f"mix-{j}", mdata, {"barmode": "group", "title": {"text": "Mixture: plan vs achieved share"},
                                                   "yaxis": {"tickformat": ".0%"}}, height=340) if mdata else ""
            trows = [[r["group"], f"{r['target']:.2%}" if r["target"] is not None else "–",
                      f"{r['achieved']:.2%}" if r["achieved"] is not None else "–", _n(r["available"]),
                      _n(r["tokens"]), f"{r['epochs']:.2f}" if r["epochs"] is not None else "–"]
                     for r in rows]
            parts.append(head + chart + _table(["group", "plan", "achieved", "tokens available", "tokens taken",
                                                "epochs"], trows, cls="mix-table"))
        sections.append(("mixture", "Mixture", "".join(parts)))

    # ---- throughput
    if stats:
        timed = [s for s in stats if s.seconds > 0]
        tp = [s.docs_per_sec() for s in timed]
        tdata = [{"type": "bar", "orientation": "h", "y": [_e(s.stage) for s in timed][::-1], "x": tp[::-1],
                  "text": [f"{v:,.0f}" for v in tp][::-1], "textposition": "auto",
                  "hovertemplate": "%{y}: %{x:,.1f} docs/s per core<extra></extra>", "marker": {"color": "#ff7f0e"}}]
        total_cpu = sum(s.seconds for s in stats) or 1.0
        rows = [[s.stage, _n(s.rows_in), f"{s.seconds:,.2f}", _pct(s.seconds, total_cpu),
                 f"{s.docs_per_sec():,.1f}" if s.seconds > 0 else "–",
                 f"{s.bytes_in / 1e6 / s.seconds:,.2f}" if s.seconds > 0 else "–"] for s in stats]
        wall = ""
        if last.get("wall_seconds"):
            w, c = last["wall_seconds"], last.get("cores") or 0
            wall = (f"<p>Wall time <b>{w:,.1f} s</b> on {c} core(s); {first_in:,} records in, {final_out:,} documents out; "
                    + (f"{first_in / w / c:,.1f} records/s per core end to end" if c else "") + ".</p>")
        tp_html = (wall + (page.chart("throughput", tdata, {"title": {"text": "Throughput per stage (docs/s per core)"},
                                                            "xaxis": {"type": "log", "title": {"text": "docs per CPU-second"}},
                                                            "yaxis": {"automargin": True}},
                                      height=max(200, 34 * len(timed) + 100)) if timed else "")
                   + _table(["stage", "docs in", "CPU s", "share of CPU", "docs/s per core", "MB/s per core"], rows,
                            cls="throughput-table")
                   + '<p class="note">Stage time is CPU time measured inside one worker process, so docs per '
                     'CPU-second is the rate of one core.</p>')
        sections.append(("throughput", "Throughput", tp_html))

    # ---- examples of dropped documents
    ex_parts = []
    order = {s.stage: i for i, s in enumerate(stats)}
    for (stage, reason) in sorted(samples, key=lambda k: (order.get(k[0], 1e9), k[0], k[1])):
        rows = samples[(stage, reason)]
        st = next((s for s in stats if s.stage == stage), None)
        count = st.dropped.get(reason) if st else None
        items = []
        for r in rows[:SAMPLES_SHOWN]:
            scores = {k: v for k, v in r.items() if k not in ("id", "url", "reason", "excerpt", "stage", "text")}
            sc = " · ".join(f"{_e(k)}={_e(_n(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)}"
                            for k, v in scores.items())
            items.append(f'<div class="sample"><div class="meta"><b>{_e(r.get("url") or "")}</b> '
                         f'<span>id {_e(r.get("id"))}</span>' + (f"<br>{sc}" if sc else "") + "</div>"
                         f'<pre class="ex">{_e(r.get("excerpt") or "(no text)")}</pre></div>')
        more = f" (showing {SAMPLES_SHOWN})" if len(rows) > SAMPLES_SHOWN else ""
        ex_parts.append(f'<div class="reason" id="{anchor(stage, reason)}"><h3>{_e(stage)} · {_e(reason)}</h3>'
                        f'<p class="note">{_n(count)} dropped; {len(rows)} example(s) kept in the run{more}. '
                        f'<code>datapipe inspect RUN_DIR --stage {_e(stage)} --reason {_e(reason)}</code></p>'
                        + "".join(items) + "</div>")
    if ex_parts:
        sections.append(("examples", "Examples of dropped documents", "".join(ex_parts)))

    if data.get("config_text"):
        sections.append(("config", "Config", f'<details><summary>config.yaml of this run</summary>'
                                             f'<pre class="ex">{_e(data["config_text"])}</pre></details>'))

    nav = "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(t)}</h2>{h}</section>' for sid, t, h in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        # belt and braces: the page needs nothing from outside, so forbid fetching anything
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline' "
        "'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>datapipe report: {_e(data['name'])}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>datapipe report: {_e(data['name'])}</h1><div class=\"sub\">{_e(data['run_dir'])} · "
        f"generated {_e(data['generated'])}</div></header><nav>{nav}</nav><main>{body}</main>"
        f"{page.specs()}<script>{get_plotlyjs()}</script><script>{JS}</script></body></html>\n"
    )


def build_report(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """Write ``RUN_DIR/report/index.html`` (or ``out``) and return its path."""
    root = Path(run_dir)
    path = Path(out) if out else root / "report" / "index.html"
    atomic_write_text(path, render(collect(root)))
    return path


__all__ = ["build_report", "collect", "render", "anchor", "load_run_stats", "ReportError"]
