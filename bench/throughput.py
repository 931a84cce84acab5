"""Read + extract throughput: a plain trafilatura loop vs. the datapipe stage vs. the pipeline.

Three ways over the same WARC records, each in a fresh subprocess so that peak RSS
is its own:

- ``plain``:    warcio loop, ``trafilatura.extract(payload_bytes, output_format="txt",
                with_metadata=False, include_comments=False)`` per HTML response: what
                one would write by hand.
- ``stage``:    ``datapipe.io.warc.iter_warc_batches`` -> ``apply_stage(Extract())``,
                in process, one core: the cost the engine pays per batch.
- ``pipeline``: the whole Ray-backed runner (``datapipe.runner.run_pipeline``) with
                only the extract stage; see :func:`run_pipeline` below.

Prints docs/s per core (single process: docs / wall second; pipeline: docs / wall
second / cores), docs per CPU-second (robust when other work shares the cores; for
the pipeline, the engine's per-stage seconds measured inside its workers), CPU ms per doc, per-page latency percentiles (plain loop: what
``timeout_s`` is chosen against) and peak RSS (the pipeline's figure is the
driver's only: Ray workers are not its children).

    python bench/throughput.py                   # realpages (1,600 pages), plain + stage
    python bench/throughput.py --modes plain stage pipeline --repeat 2
    python bench/throughput.py --sample          # the project's own sample crawl instead
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REALPAGES = ROOT / ".." / "shared" / "data" / "warc" / "realpages"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run_plain(paths: list[str], repeat: int) -> dict:
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    docs = yielded = 0
    lat: list[float] = []
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        for p in paths:
            with open(p, "rb") as fh:
                for rec in ArchiveIterator(fh):
                    if rec.rec_type != "response" or rec.http_headers is None:
                        continue
                    if "html" not in (rec.http_headers.get_header("Content-Type") or "").lower():
                        continue
                    body = rec.content_stream().read()
                    t = time.perf_counter()
                    text = trafilatura.extract(body, output_format="txt", with_metadata=False, include_comments=False)
                    lat.append(time.perf_counter() - t)
                    docs += 1
                    yielded += bool(text)
    return {"docs": docs, "yielded": yielded, "wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
            "p50_ms": 1000 * _pct(lat, 0.5), "p99_ms": 1000 * _pct(lat, 0.99), "max_ms": 1000 * max(lat or [0]),
            "cores": 1}


def run_stage(paths: list[str], repeat: int, options: dict) -> dict:
    from datapipe.io.warc import iter_warc_batches
    from datapipe.stage import apply_stage
    from datapipe.stats import StageStats
    from stages.extract import Extract

    st = Extract(**options)
    st.ensure_setup()
    docs = yielded = 0
    read = StageStats("read")
    stage_cpu = 0.0
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        for p in paths:
            for batch in iter_warc_batches(p, source="bench", batch_size=64, max_html_bytes=5_000_000, stats=read):
                t = time.process_time()
                res = apply_stage(st, batch)
                stage_cpu += time.process_time() - t
                docs += batch.num_rows
                yielded += res.kept.num_rows
    return {"docs": docs, "yielded": yielded, "wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
            "extract_cpu_s": stage_cpu, "counters": st.counters(), "cores": 1}


# ---------------------------------------------------------------------------
# >>> PIPELINE PATH (lead: the Ray-backed runner; wire or adjust here) <<<

def run_pipeline(paths: list[str], *, options: dict | None = None, workers: int | None = None) -> dict:
    """Read + extract through ``datapipe.runner.run_pipeline`` (Ray), extract stage only.

    Returns docs, wall seconds, cores and the engine's own per-stage stats."""
    from datapipe.config import parse_config
    from datapipe.runner import run_pipeline as _run

    engine = {"batch_size": 64}
    if workers:
        engine["num_workers"] = workers
    cfg = parse_config({"name": "bench-throughput", "input": {"paths": list(paths), "source": "bench"},
                        "stages": [{"extract": dict(options or {})}], "engine": engine})
    with tempfile.TemporaryDirectory(prefix="dp-bench-") as run_dir:
        w0 = time.perf_counter()
        result = _run(cfg, inputs=list(paths), run_dir=run_dir, quiet=True, fresh=True)
        wall = time.perf_counter() - w0
    by = {s.stage: s for s in result.stats}
    ex = by.get("extract")
    return {"docs": ex.rows_in if ex else 0, "yielded": ex.rows_out if ex else 0, "wall_s": wall,
            "engine_wall_s": result.wall_seconds, "cpu_s": sum(s.seconds for s in result.stats),
            "extract_cpu_s": ex.seconds if ex else float("nan"), "cores": result.cores,
            "counters": ex.counters if ex else {}}

# >>> end of pipeline path <<<
# ---------------------------------------------------------------------------


def _child(mode: str, paths: list[str], repeat: int, options: dict, workers: int | None) -> None:
    if mode == "plain":
        r = run_plain(paths, repeat)
    elif mode == "stage":
        r = run_stage(paths, repeat, options)
    else:  # the runner de-duplicates its inputs: --repeat does not apply here
        r = run_pipeline(paths, options=options, workers=workers)
    r["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(r))


def _inputs(args) -> tuple[list[str], str]:
    if args.sample:
        from datapipe.samplecrawl import build_sample_crawl
        out = Path(tempfile.mkdtemp(prefix="dp-sample-"))
        return [str(p) for p in build_sample_crawl(out, n_pages=400, reference_sentences=10)], "sample crawl (400 captures)"
    if not REALPAGES.is_dir():
        raise SystemExit(f"no realpages at {REALPAGES} (needs ../shared/data); use --sample")
    # largest file first, like a scheduler would
    paths = sorted((str(p) for p in REALPAGES.glob("realpages-*.warc.gz")), key=lambda p: -os.path.getsize(p))
    return paths, "realpages (1,600 HTML pages)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", nargs="+", choices=["plain", "stage", "pipeline"], default=["plain", "stage"])
    ap.add_argument("--repeat", type=int, default=1,
                    help="plain/stage: process the records this many times (say so when reporting)")
    ap.add_argument("--sample", action="store_true", help="use the sample crawl instead of realpages")
    ap.add_argument("--favor", choices=["precision", "recall", "balanced"], default=None)
    ap.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--workers", type=int, default=None, help="pipeline mode: engine.num_workers")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--paths", nargs="*", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    options = {k: v for k, v in {"favor": args.favor, "fast": args.fast}.items() if v is not None}
    if args.child:
        _child(args.child, args.paths, args.repeat, options, args.workers)
        return 0

    paths, what = _inputs(args)
    print(f"input: {what}, {len(paths)} files, repeated {args.repeat}x; extract options {options or 'defaults'}; "
          f"{os.cpu_count()} cores on this machine")
    head = (f"{'mode':<10}{'docs':>7}{'yield%':>8}{'wall s':>8}{'docs/s/core':>13}{'docs/cpu-s':>12}{'cpu ms/doc':>12}"
            f"{'peak RSS MB':>13}  notes")
    print(head)
    print("-" * (len(head) + 20))
    for mode in args.modes:
        cmd = [sys.executable, __file__, "--child", mode, "--repeat", str(args.repeat), "--paths", *paths]
        if args.favor:
            cmd += ["--favor", args.favor]
        if args.fast is not None:
            cmd += ["--fast" if args.fast else "--no-fast"]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(f"{mode:<10} failed (rc {proc.returncode}): {proc.stderr.strip().splitlines()[-1:] or ''}")
            continue
        r = json.loads(lines[-1])
        per_core = r["docs"] / r["wall_s"] / r["cores"] if r["wall_s"] else float("nan")
        notes = []
        if mode == "plain":
            notes.append(f"page latency p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms")
        if "extract_cpu_s" in r:
            notes.append(f"extract stage {1000 * r['extract_cpu_s'] / max(r['docs'], 1):.1f} ms/doc")
        if mode == "pipeline":
            notes.append(f"{r['cores']} cores; RSS is the driver's only")
        per_cpu = r["docs"] / r["cpu_s"] if r["cpu_s"] else float("nan")
        print(f"{mode:<10}{r['docs']:>7}{100 * r['yielded'] / max(r['docs'], 1):>8.1f}{r['wall_s']:>8.1f}"
              f"{per_core:>13.1f}{per_cpu:>12.1f}{1000 * r['cpu_s'] / max(r['docs'], 1):>12.1f}{r['peak_rss_mb']:>13.0f}  "
              + "; ".join(notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
