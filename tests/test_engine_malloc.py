"""The allocator of a local Ray's workers (``engine.malloc``, ``datapipe.ray_backend.worker_malloc``).

Each check runs in a fresh Python process: the test session's own Ray is already started, and
an engine that joins a running Ray starts no workers of its own.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import missing
from datapipe.ray_backend import _JEMALLOC_PATHS, EngineError, worker_malloc

REPO = Path(__file__).resolve().parents[1]


def _jemalloc() -> str:
    path = next((p for p in _JEMALLOC_PATHS if os.path.isfile(p)), None)
    if path is None:
        missing("jemalloc is not installed (apt install libjemalloc2; `make install` installs it)")
    return path


_PROBE = r"""
import json, os, sys
from datapipe.ray_backend import Engine

def probe(_):
    from datapipe.ray_backend import _release_free_memory
    # ~300 MiB of malloc'd objects (over pymalloc's 512 bytes) freed below one still in use (no
    # automatic trim of the heap's top), then the allocator's free pages handed back
    junk = [bytes(1000) for _ in range(300_000)]
    pin = bytes(1000)
    del junk
    def rss():
        return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
    before = rss()
    _release_free_memory()
    maps = open("/proc/self/maps").read()
    return {"jemalloc": "libjemalloc" in maps, "pin": len(pin), "rss_before": before, "rss_after": rss()}

engine = Engine(quiet=True, malloc=sys.argv[1])
out = {"malloc": engine.malloc, "workers": engine.map(probe, range(2)),
       "driver_preload": os.environ.get("LD_PRELOAD"),
       "driver_jemalloc": "libjemalloc" in open("/proc/self/maps").read()}
engine.shutdown()
print("RESULT " + json.dumps(out))
"""


def _run(malloc: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "LD_PRELOAD")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", _PROBE, malloc], capture_output=True, text=True,
                       timeout=300, env=env, cwd=REPO)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert p.returncode == 0 and line, p.stderr[-3000:]
    return json.loads(line[len("RESULT "):])


def test_auto_runs_the_workers_on_jemalloc_and_purges_it_not_the_driver():
    path = _jemalloc()
    out = _run("auto")
    assert out["malloc"] == path
    assert out["driver_preload"] is None and not out["driver_jemalloc"]  # the driver's environment is restored
    for w in out["workers"]:
        assert w["jemalloc"]
        # jemalloc's purge (mallctl) hands the freed pages back; without it they stay mapped
        assert w["rss_before"] - w["rss_after"] > 40, w


def test_system_keeps_the_c_library_malloc_and_trims_it():
    out = _run("system")
    assert out["malloc"] is None
    for w in out["workers"]:
        assert not w["jemalloc"]
        assert w["rss_before"] - w["rss_after"] > 40, w  # glibc's malloc_trim


def test_malloc_setting_is_checked():
    path = _jemalloc()
    assert worker_malloc("auto", local=True) == path
    assert worker_malloc("auto", local=False) is None  # a cluster's nodes are not this machine
    assert worker_malloc("system", local=True) is None
    assert worker_malloc(path, local=True) == path
    assert worker_malloc("/opt/on-the-nodes/libjemalloc.so.2", local=False) == "/opt/on-the-nodes/libjemalloc.so.2"
    with pytest.raises(EngineError, match="does not exist"):
        worker_malloc("/nonexistent/libjemalloc.so.2", local=True)
    with pytest.raises(EngineError, match="not auto, system or an absolute path"):
        worker_malloc("jemalloc", local=True)


def test_config_takes_the_setting():
    from datapipe.config import PipelineConfig
    assert PipelineConfig().engine.malloc == "auto"
    assert PipelineConfig.model_validate({"engine": {"malloc": "system"}}).engine.malloc == "system"
