"""Soak benchmark: the default pipeline over >= 100,000 documents, memory sampled throughout.

There is no bulk CommonCrawl offline, so the input is the 1,600 real pages of
``../shared/data/warc/realpages/`` **repeated with perturbations** (new URL and record id,
a few words of the page changed per copy) until ``--docs`` records exist. The output says so.

    .venv/bin/python bench/soak.py --docs 100000 [--config configs/default.yaml] [--work /tmp/soak]

Prints wall time, docs/s per core per stage (CPU time inside each stage) and the peak RSS of
the driver and of the Ray workers, plus RSS at each tenth of the run, to show that memory
stays flat as the corpus grows (the streaming stages hold one batch per worker).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REALPAGES = REPO / ".." / "shared" / "data" / "warc" / "realpages"


def _load_pages() -> list[tuple[str, str, bytes]]:
    from warcio.archiveiterator import ArchiveIterator
    pages = []
    for f in sorted(REALPAGES.glob("*.warc.gz")):
        with open(f, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type == "response":
                    pages.append((rec.rec_headers.get_header("WARC-Target-URI"),
                                  rec.http_headers.get_header("Content-Type") or "text/html",
                                  rec.content_stream().read()))
    return pages


_WORDS = [b"alpha", b"river", b"stone", b"garden", b"signal", b"harbor", b"meadow", b"copper"]


def _write_file(args) -> str:
    """One WARC file of copies ``[start, stop)``; per-record gzip members at level 1 (fast)."""
    import gzip
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter
    path, start, stop, pages, seed = args
    rng = random.Random(f"{seed}-{start}")
    with open(path + ".tmp", "wb") as out:
        for i in range(start, stop):
            url, ctype, body = pages[i % len(pages)]
            rep = i // len(pages)
            if rep:
                # perturb: overwrite 5 words at random places so copies are near, not exact, duplicates
                body = bytearray(body)
                for _ in range(5):
                    at = body.find(b" ", rng.randrange(max(1, len(body))))
                    if at < 0:
                        continue
                    end = body.find(b" ", at + 1)
                    if end < 0 or end - at > 20:
                        continue
                    body[at + 1:end] = rng.choice(_WORDS)
                body = bytes(body)
            buf = io.BytesIO()
            w = WARCWriter(buf, gzip=False)
            http = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(f"{url}#soak{rep}", "response", payload=io.BytesIO(body),
                                                http_headers=http))
            out.write(gzip.compress(buf.getvalue(), compresslevel=1, mtime=0))
    os.replace(path + ".tmp", path)
    return path


def build_input(out: Path, n_docs: int, per_file: int = 2000, seed: int = 0) -> list[Path]:
    """``n_docs`` WARC records: the real pages repeated, each copy perturbed (built once, cached)."""
    from concurrent.futures import ProcessPoolExecutor
    marker = out / f"_complete_{n_docs}"
    if marker.exists():
        return sorted(out.glob("soak-*.warc.gz"))
    out.mkdir(parents=True, exist_ok=True)
    pages = _load_pages()
    jobs = [(str(out / f"soak-{k:05d}.warc.gz"), a, min(a + per_file, n_docs), pages, seed)
            for k, a in enumerate(range(0, n_docs, per_file))]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as ex:
        files = [Path(p) for p in ex.map(_write_file, jobs)]
    marker.write_text("ok\n")
    return files


def _tree_rss(root_pid: int) -> tuple[int, int]:
    """(driver RSS, sum of all other RSS) in bytes over the process tree and Ray's workers."""
    import psutil
    try:
        root = psutil.Process(root_pid)
        driver = root.memory_info().rss
        others = 0
        for p in root.children(recursive=True):
            try:
                others += p.memory_info().rss
            except psutil.Error:
                pass
        return driver, others
    except psutil.Error:
        return 0, 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--config", default=str(REPO / "bench" / "configs" / "soak.yaml"))
    ap.add_argument("--work", default="/tmp/datapipe-soak")
    args = ap.parse_args()
    if not REALPAGES.is_dir():
        print(f"needs {REALPAGES}", file=sys.stderr)
        return 2
    work = Path(args.work)
    t0 = time.time()
    files = build_input(work / "input", args.docs)
    print(f"input: {args.docs:,} WARC records = the {len(list(REALPAGES.glob('*.warc.gz')))} realpages files' "
          f"1,600 real pages repeated with perturbations, in {len(files)} files ({time.time() - t0:.0f}s to build)")
    run_dir = work / "run"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    cmd = [sys.executable, "-m", "datapipe.cli", "run", args.config, "--input", *map(str, files),
           "--run-dir", str(run_dir), "--fresh", "--quiet", "--no-mix"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            d, o = _tree_rss(proc.pid)
            done = run_dir / "_done"
            n = sum(1 for _ in done.rglob("*")) if done.is_dir() else 0
            samples.append((time.time() - t1, n, d, o))
            time.sleep(1.0)
    t1 = time.time()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    stop.set()
    th.join()
    wall = time.time() - t1
    if proc.returncode != 0:
        print(out[-3000:])
        return proc.returncode
    stats = json.loads((run_dir / "stats.json").read_text())["stages"]
    cores = os.cpu_count()
    print(f"wall {wall:.0f}s on {cores} cores; {stats[0]['rows_in']:,} records read, "
          f"{stats[-1]['rows_out']:,} documents written; end to end "
          f"{stats[0]['rows_in'] / wall / cores:.1f} records/s per core")
    print(f"{'stage':<22}{'docs in':>10}{'docs out':>10}{'cpu s':>9}{'docs/s/core':>13}")
    for s in stats:
        rate = s["rows_in"] / s["seconds"] if s["seconds"] else float("nan")
        print(f"{s['stage']:<22}{s['rows_in']:>10,}{s['rows_out']:>10,}{s['seconds']:>9.1f}{rate:>13.1f}")
    peak_d = max(x[2] for x in samples) / 2**20
    peak_o = max(x[3] for x in samples) / 2**20
    print(f"peak RSS: driver {peak_d:.0f} MiB, Ray processes (workers, raylet, GCS, object store client) {peak_o:.0f} MiB")
    print("RSS through the run (elapsed s, markers done, driver MiB, Ray processes MiB):")
    for k in range(1, 11):
        x = samples[min(len(samples) - 1, k * len(samples) // 10 - 1)]
        print(f"  {x[0]:7.0f}s  {x[1]:6d}  {x[2] / 2**20:8.0f}  {x[3] / 2**20:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
