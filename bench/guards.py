"""How quickly the run's guards act: figures that tests must not gate on (wall-clock).

1. ``extract``'s per-page time budget (``timeout_s``): a page that would run 5 s is cut
   short; printed is the wall time from the call to the ``extract:timeout`` decision, for the
   ``signal`` mode (main thread, SIGALRM) and the ``thread`` mode (watchdog, as in a Ray
   actor), over ``--repeat`` pages, against the budget.
2. An unreachable ``RAY_ADDRESS``: wall seconds until ``datapipe run`` exits with status 3
   and "cannot reach the Ray cluster" (a fresh Python process, imports included).

tests/test_extract.py and tests/test_reliability.py check the behaviour (the slow page never
runs to its end; the exit status and message); this script prints the times.

    .venv/bin/python bench/guards.py [--budget 0.05] [--repeat 20]
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _busy(seconds: float):
    def run(html):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return "finished far too late"
    return run


def extract_budget(mode: str, budget: float, repeat: int) -> list[float]:
    """Seconds from the call to the decision, one per slow page, in ``mode``."""
    from datapipe.schema import RAW_SCHEMA, table_from_rows
    from datapipe.stage import apply_stage
    from stages.extract import Extract

    st = Extract(timeout_s=budget, timeout_mode=mode)
    st.setup()
    st._extract_one = _busy(5.0)
    batch = table_from_rows([{"id": "d0", "url": "https://example.org/", "html": "<p>slow</p>", "text": None}],
                            RAW_SCHEMA)
    times: list[float] = []

    def work():
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = apply_stage(st, batch)
            times.append(time.perf_counter() - t0)
            assert res.reasons == {"extract:timeout": 1}, res.reasons

    if mode == "thread":  # off the main thread, where Ray Data runs actor UDFs
        th = threading.Thread(target=work)
        th.start()
        th.join()
    else:
        work()
    assert len(times) == repeat, f"{mode}: a page was not cut short"
    return times


def _tiny_warc(path: Path) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter
    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True)
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        body = b"<html><body><p>" + b"A page of plain words for the guard benchmark. " * 20 + b"</p></body></html>"
        w.write_record(w.create_warc_record("https://example.org/a", "response", payload=io.BytesIO(body),
                                            http_headers=http))


def unreachable_ray() -> tuple[float, int]:
    """(wall seconds, exit status) of ``datapipe run`` against RAY_ADDRESS=127.0.0.1:9."""
    with tempfile.TemporaryDirectory(prefix="guards-") as tmp:
        tmp = Path(tmp)
        cfg = tmp / "c.yaml"
        cfg.write_text("name: guards\nstages:\n  - extract: {}\n")
        warc = tmp / "a.warc.gz"
        _tiny_warc(warc)
        env = dict(os.environ, RAY_ADDRESS="127.0.0.1:9", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "datapipe.cli", "run", str(cfg), "--input", str(warc),
                            "--run-dir", str(tmp / "run")], capture_output=True, text=True, env=env, cwd=ROOT,
                           timeout=600)
        dt = time.perf_counter() - t0
        if "cannot reach the Ray cluster" not in r.stderr:
            print(f"  unexpected stderr: {r.stderr[-500:]}", file=sys.stderr)
        return dt, r.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=0.05, help="extract timeout_s for the slow pages")
    ap.add_argument("--repeat", type=int, default=20, help="slow pages per mode")
    args = ap.parse_args()

    print(f"extract: a 5 s page under timeout_s={args.budget} ({args.repeat} pages per mode)")
    print(f"  {'mode':<8}{'median s':>10}{'max s':>10}{'max / budget':>14}")
    for mode in ("signal", "thread"):
        ts = sorted(extract_budget(mode, args.budget, args.repeat))
        print(f"  {mode:<8}{ts[len(ts) // 2]:>10.3f}{ts[-1]:>10.3f}{ts[-1] / args.budget:>14.1f}")

    dt, rc = unreachable_ray()
    print(f"unreachable RAY_ADDRESS: `datapipe run` exited {rc} after {dt:.1f} s (wall, new process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
