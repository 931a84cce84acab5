"""Ray's footprint on a local run: processes and peak PSS per process kind, CPU seconds.

    PYTHONPATH=$PWD .venv/bin/python bench/ray_footprint.py [--config configs/default.yaml]
        [--input runs/_sample_crawl/*.warc.gz] [--run-dir /tmp/datapipe-footprint/run]
        [--interval 0.2] [--env RAY_FOO=1 ...] [--no-mix]

Runs ``python -m datapipe.cli run CONFIG --fresh`` in a subprocess and samples its whole process
tree every ``--interval`` seconds (``bench/_measure.py``): the driver, Ray's GCS and raylet,
any dashboard / agents / monitors, idle workers and the stage workers. Prints, per kind, the
most processes seen at once, the peak PSS of the kind (summed over its processes, PSS so
shared pages count once), its PSS at the moment the whole tree peaked, and CPU seconds; then
the tree's peak PSS and process count, and documents per CPU-second (documents read / CPU
seconds of the whole tree) next to the stages' own CPU seconds from the run's stats (the
rest is engine overhead and Ray).
``--env`` sets environment variables for the run (to measure a Ray setting's effect).
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _measure import TreeSampler  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    ap.add_argument("--input", nargs="+", default=None)
    ap.add_argument("--run-dir", default="/tmp/datapipe-footprint/run")
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the run's environment")
    ap.add_argument("--no-mix", action="store_true")
    args = ap.parse_args()

    inputs = args.input or sorted(glob.glob(str(ROOT / "runs" / "_sample_crawl" / "*.warc.gz")))
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    cmd = [sys.executable, "-m", "datapipe.cli", "run", args.config, "--run-dir", args.run_dir, "--fresh",
           "--quiet", "--input", *inputs] + (["--no-mix"] if args.no_mix else [])
    log = Path(args.run_dir).with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        with TreeSampler(proc.pid, interval=args.interval) as s:
            rc = proc.wait()
    wall = time.time() - t0
    if rc != 0:
        sys.exit(f"run failed ({rc}); last lines of {log}:\n" + "".join(open(log).readlines()[-30:]))

    from datapipe.runner import load_stats
    stats = {st.stage: st for st in load_stats(args.run_dir)}
    docs = stats["read"].rows_out if "read" in stats else 0
    stage_cpu = sum(st.seconds for name, st in stats.items() if name not in ("write",))
    cpu = s.cpu_by_kind()
    mib = 2**20
    print(f"{'process kind':<44} {'procs':>5} {'peak PSS MiB':>12} {'at tree peak':>12} {'CPU s':>7}")
    for kind in sorted(s.kind_peak_count, key=lambda k: -s.kind_peak_pss.get(k, 0)):
        print(f"{kind:<44} {s.kind_peak_count[kind]:>5} {s.kind_peak_pss.get(kind, 0) / mib:>12.1f} "
              f"{s.peak_by_kind.get(kind, 0) / mib:>12.1f} {cpu.get(kind, 0.0):>7.1f}")
    print(f"tree: {len(s.cpu)} processes in all, at most {s.peak_procs} at once; peak PSS {s.peak_pss / mib:.0f} MiB "
          f"(held by: {', '.join(f'{label} {p / mib:.0f}' for p, label in s.peak_breakdown[:6])})")
    print(f"wall {wall:.1f} s; CPU {s.cpu_seconds:.1f} s (stages {stage_cpu:.1f} s); {docs} docs read; "
          f"{docs / max(s.cpu_seconds, 1e-9):.2f} docs per CPU-second (tree), "
          f"{docs / max(stage_cpu, 1e-9):.2f} per stage CPU-second; {s.samples} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
