"""One large WARC on 2 workers: read whole (one shard) vs. cut into record-aligned byte ranges.

Builds one WARC from every realpages record (``../shared/data/warc/realpages/*.warc.gz``
concatenated, ``--repeat`` times: ~1,600 HTML pages per copy; repeated records keep their
WARC-Record-IDs, which only this benchmark minds), then runs the default config's streaming
stages (``configs/default.yaml`` without its workflows and mix: url_filter, extract, length,
langid, gopher_*, c4, fineweb, nsfw_words, perplexity, tokenize) over it twice with
``engine.num_workers: 2``, each run a ``datapipe run`` in its own process tree:

- ``whole``:  ``input.shard_bytes: 0``, the file is one shard (what every run did before);
- ``ranges``: the defaults (``input.shard_bytes`` 256 MiB, ``min_shards`` 64, ranges no smaller
  than 8 MiB): the file becomes several ``#records=`` shards.

``--full`` runs the whole default config instead (its workflows too: dedup_exact, dedup_minhash,
dedup_lines, dedup_semantic, perplexity_buckets; not the mix) and adds each step's wall time:
a workflow maps its per-shard work over the previous step's files, so one input read whole is
one task there.

The process tree is sampled every 0.2 s with psutil. Printed per leg: shards, wall, CPU of the
whole tree, each stage worker's CPU-seconds / wall (its busy share; 100% = one core all the
run), the tail (from the first stage worker going idle for good to the last one finishing:
the time one worker works alone), documents out and docs/s, and whether both legs wrote the
same output ids.

    python bench/shards.py [--repeat N] [--full] [--rounds N] [--work DIR]

``--rounds N`` runs the legs N times, alternating (whole, ranges, whole, ...): on a shared machine
the spread between rounds says how much of a difference is noise.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
REALPAGES = ROOT / ".." / "shared" / "data" / "warc" / "realpages"

from _measure import TreeSampler  # noqa: E402

WORKERS = 2
BUSY = 0.5          # a sample interval in which a worker used more than this share of a core: busy
INTERVAL = 0.2


def Timeline(pid: int) -> TreeSampler:
    """CPU seconds of every process of a tree, sampled: ``.timeline`` is ``{(pid, start): [(t, cpu, label), ...]}``."""
    return TreeSampler(pid, INTERVAL, timeline=True)


def build_input(work: Path, repeat: int) -> Path:
    files = sorted(REALPAGES.glob("*.warc.gz"))
    if not files:
        sys.exit(f"no realpages WARCs under {REALPAGES} (../shared/data is absent)")
    out = work / f"realpages-x{repeat}.warc.gz"
    if not out.exists():
        data = b"".join(f.read_bytes() for f in files)  # per-record gzip: members concatenate
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(data * repeat)
        tmp.rename(out)
    return out


def write_config(work: Path, leg: str, full: bool) -> Path:
    from datapipe.stage import Workflow, get_stage_class
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg.pop("mix", None)
    cfg["name"] = f"shards-{leg}"
    if not full:
        cfg["stages"] = [s for s in cfg["stages"] if not issubclass(get_stage_class(next(iter(s))), Workflow)]
    cfg.setdefault("engine", {})["num_workers"] = WORKERS
    if leg == "whole":
        cfg.setdefault("input", {})["shard_bytes"] = 0
    path = work / f"shards-{leg}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_leg(leg: str, warc: Path, work: Path, full: bool) -> dict:
    config = write_config(work, leg, full)
    run_dir = work / f"run-{leg}"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "datapipe.cli", "run", str(config), "--input", str(warc),
           "--run-dir", str(run_dir), "--fresh", "--no-mix"] + ([] if full else ["--quiet"])
    load = os.getloadavg()[0]
    t0 = time.time()
    with open(work / f"run-{leg}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        with Timeline(proc.pid) as tl:
            rc = proc.wait()
    t1 = time.time()
    if rc:
        sys.exit(f"{leg}: datapipe run failed ({rc}); see {work / f'run-{leg}.log'}")
    return analyse(leg, tl, t0, t1, run_dir) | {"load": load, "steps": step_walls(work / f"run-{leg}.log")}


def step_walls(log: Path) -> dict[str, float]:
    """Seconds per step from the runner's progress lines (written without ``--quiet``)."""
    out: dict[str, float] = {}
    for m in re.finditer(r"^\[(\d\d-[\w#]+)\] (?:committed \d+ shard\(s\) in|workflow done in) ([\d.]+)s",
                         log.read_text(errors="replace"), re.M):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def analyse(leg: str, tl: TreeSampler, t0: float, t1: float, run_dir: Path) -> dict:
    import pyarrow.parquet as pq

    from datapipe.runner import load_stats
    wall = t1 - t0
    cpu = sum(s[-1][1] for s in tl.timeline.values())
    workers = []
    for key, s in tl.timeline.items():
        if not any("_StageChain" in lab for _, _, lab in s):
            continue
        last_busy = None
        for (ta, ca, _), (tb, cb, _) in zip(s, s[1:]):
            if (cb - ca) > BUSY * (tb - ta):
                last_busy = tb
        first_busy = next(((tb for (ta, ca, _), (tb, cb, _) in zip(s, s[1:]) if (cb - ca) > BUSY * (tb - ta))), None)
        workers.append({"cpu": s[-1][1], "first": first_busy, "last": last_busy,
                        "busy_s": sum(tb - ta for (ta, ca, _), (tb, cb, _) in zip(s, s[1:]) if (cb - ca) > BUSY * (tb - ta))})
    busy = [w for w in workers if w["last"] is not None]
    tail = None
    if busy:
        # a worker never busy went idle when the work began
        start = min(w["first"] for w in busy)
        ends = [w["last"] if w["last"] is not None else start for w in workers]
        tail = max(ends) - min(ends)
    stats = {s.stage: s for s in load_stats(run_dir)}
    ids = set()
    for f in (run_dir / "output").rglob("*.parquet"):
        ids.update(pq.read_table(f, columns=["id"])["id"].to_pylist())
    first = sorted(p for p in (run_dir / "_done").iterdir() if p.is_dir())[0]
    shards = len(list(first.iterdir()))
    reader_cpu = sum(s[-1][1] for s in tl.timeline.values()
                     if any("(read)" in lab for _, _, lab in s) and not any("_StageChain" in lab for _, _, lab in s))
    return {"leg": leg, "t0": t0, "reader_cpu": reader_cpu, "wall": wall, "cpu": cpu, "workers": sorted(workers, key=lambda w: -w["cpu"]),
            "tail": tail, "shards": shards, "pages": stats["extract"].rows_in,
            "docs_out": stats["write"].rows_out, "ids": ids}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=1, help="copies of the realpages records in the one WARC")
    ap.add_argument("--full", action="store_true", help="the whole default config (workflows too), not its streaming stages")
    ap.add_argument("--rounds", type=int, default=1, help="run both legs this many times, alternating")
    ap.add_argument("--work", type=Path, default=Path("/tmp/datapipe-bench-shards"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    warc = build_input(args.work, args.repeat)
    what = "default config (no mix)" if args.full else "default config's streaming stages"
    print(f"input: {warc.name}, {warc.stat().st_size / 2**20:.1f} MiB, realpages x{args.repeat}; {what}; "
          f"{WORKERS} stage workers; {os.cpu_count()} CPUs on this machine",
          flush=True)
    res = [run_leg(leg, warc, args.work, args.full) for _ in range(args.rounds) for leg in ("whole", "ranges")]
    print(f"{'leg':<7} {'shards':>6} {'wall s':>7} {'CPU s':>7} {'pages':>6} {'pages/s':>7} "
          f"{'worker busy (CPU-s / wall)':<28} {'tail s':>6} {'load':>5}")
    for r in res:
        share = " ".join(f"{w['cpu']:.1f}s={100 * w['cpu'] / r['wall']:.0f}%" for w in r["workers"]) or "-"
        tail = f"{r['tail']:.1f}" if r["tail"] is not None else "n/a"
        print(f"{r['leg']:<7} {r['shards']:>6} {r['wall']:>7.1f} {r['cpu']:>7.1f} {r['pages']:>6} "
              f"{r['pages'] / r['wall']:>7.1f} {share:<28} {tail:>6} {r['load']:>5.1f}")
    for r in res:
        for i, w in enumerate(r["workers"]):
            span = (f"busy from {w['first'] - r['t0']:.1f}s to {w['last'] - r['t0']:.1f}s, {w['busy_s']:.1f}s of it"
                    if w["first"] is not None else "never busy")
            print(f"  {r['leg']} worker {i}: {w['cpu']:.1f} CPU-s, {span}")
        print(f"  {r['leg']} readers: {r['reader_cpu']:.1f} CPU-s; rest of the tree (driver, Ray): "
              f"{r['cpu'] - r['reader_cpu'] - sum(w['cpu'] for w in r['workers']):.1f} CPU-s")
    for a, b in zip(res[::2], res[1::2]):
        if args.full:
            print("step wall s (whole -> ranges): " + "; ".join(
                f"{k} {a['steps'].get(k, 0):.1f} -> {b['steps'].get(k, 0):.1f}" for k in a["steps"]))
        print(f"same output ids: {a['ids'] == b['ids']} ({len(a['ids'])} vs {len(b['ids'])} documents out); "
              f"wall ranges/whole: {b['wall'] / a['wall']:.2f}; CPU ranges/whole: {b['cpu'] / a['cpu']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
