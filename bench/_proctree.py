"""Sampling a process tree: peak PSS and RSS (summed over the tree and per process kind), CPU seconds.

Shared by the benchmarks that report memory (``vs_datatrove.py``, ``ray_footprint.py``).
PSS comes from ``/proc/<pid>/smaps_rollup`` (shared pages counted once over the tree; cheaper
than psutil's full smaps walk, so a 0.2 s interval stays cheap); RSS from psutil.
A process's *kind* names what it is in a Ray run (raylet, gcs_server, dashboard, ray::IDLE, a
stage worker ...), so a footprint can be read per kind.
"""
from __future__ import annotations

import os
import re
import threading
from collections import defaultdict

#: cmdline fragment -> kind, first match wins (Ray's helper processes are Python scripts)
_SCRIPT_KINDS = (
    ("dashboard/agent.py", "dashboard agent"),
    ("dashboard/dashboard.py", "dashboard"),
    ("runtime_env/agent/main.py", "runtime_env agent"),
    ("log_monitor.py", "log_monitor"),
    ("autoscaler/_private/monitor.py", "monitor (autoscaler)"),
    ("ray_client_server", "ray client server"),
    ("default_worker.py", "ray worker (starting)"),
)


#: a Ray worker's title without the method it is running (``ray::_StatsActor.update_metrics``)
_RAY_TITLE = re.compile(r"(ray::[^.( ]*(?:\(.*\))?)")
_RAY_TITLES = {"ray::IDLE": "ray::IDLE", "ray::DashboardAgent": "dashboard agent",
               "ray::RuntimeEnvAgent": "runtime_env agent"}


def proc_label(p) -> str:
    """A short, readable name of one process (its Ray title, or its first words of command line)."""
    try:
        name = p.name()
        if name.startswith("ray::"):
            return name
        cmd = p.cmdline()
        return " ".join(os.path.basename(c) for c in cmd[:3])[:60] or name
    except Exception:  # noqa: BLE001 - the process went away
        return "?"


def proc_kind(p, root_pid: int) -> str:
    """What the process is in a (Ray) run: driver, raylet, gcs_server, dashboard, ray::IDLE, ..."""
    try:
        if p.pid == root_pid:
            return "driver"
        name = p.name()
        if name in ("raylet", "gcs_server", "plasma_store"):
            return name
        cmd = " ".join(p.cmdline())
        if not cmd:  # exiting
            return "?"
        if cmd.startswith("ray::"):  # a worker's title (the process name alone is cut at 15 characters)
            title = _RAY_TITLE.match(cmd).group(1)
            return _RAY_TITLES.get(title, f"worker {title[:60]}")
        for frag, kind in _SCRIPT_KINDS:
            if frag in cmd:
                return kind
        return proc_label(p)
    except Exception:  # noqa: BLE001
        return "?"


def read_pss(pid: int) -> int | None:
    """PSS bytes of ``pid`` from smaps_rollup; None when unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class TreeSampler:
    """Samples a process tree every ``interval`` s: peak PSS/RSS of the tree (and which processes
    held it), peak PSS and process count per kind, CPU seconds per process (max seen)."""

    def __init__(self, pid: int, interval: float = 0.5):
        import psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self.peak_breakdown: list = []
        #: PSS per kind in the sample where the tree's PSS peaked
        self.peak_by_kind: dict[str, int] = {}
        self.labels: dict = {}
        self.kinds: dict = {}
        self.cpu: dict[tuple[int, float], float] = {}
        #: CPU seconds per kind: each sample's CPU delta booked to the kind the process had then
        self.kind_cpu: dict[str, float] = defaultdict(float)
        self.kind_peak_pss: dict[str, int] = defaultdict(int)
        self.kind_peak_count: dict[str, int] = defaultdict(int)
        self.samples = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        import psutil
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            self._stop.set()
            return
        rss = pss = 0
        each = []
        by_kind_pss: dict[str, int] = defaultdict(int)
        by_kind_n: dict[str, int] = defaultdict(int)
        for p in procs:
            try:
                with p.oneshot():
                    ct = p.cpu_times()
                    key = (p.pid, p.create_time())
                    if key not in self.labels:
                        self.labels[key] = proc_label(p)
                    # a worker's title changes (IDLE -> task): classify on every sample
                    kind = proc_kind(p, self.root.pid)
                    if kind == "?":
                        kind = self.kinds.get(key, "?")
                    self.kinds[key] = kind
                    used = ct.user + ct.system
                    self.kind_cpu[kind] += max(0.0, used - self.cpu.get(key, 0.0))
                    self.cpu[key] = max(self.cpu.get(key, 0.0), used)
                    rss += p.memory_info().rss
                    mine = read_pss(p.pid)
                    if mine is not None:
                        pss += mine
                        each.append((mine, proc_label(p)))
                        by_kind_pss[kind] += mine
                    by_kind_n[kind] += 1
            except psutil.Error:
                pass
        self.samples += 1
        self.peak_rss = max(self.peak_rss, rss)
        if pss > self.peak_pss:
            self.peak_pss, self.peak_breakdown = pss, sorted(each, reverse=True)
            self.peak_by_kind = dict(by_kind_pss)
        self.peak_procs = max(self.peak_procs, len(procs))
        for k, v in by_kind_pss.items():
            self.kind_peak_pss[k] = max(self.kind_peak_pss[k], v)
        for k, v in by_kind_n.items():
            self.kind_peak_count[k] = max(self.kind_peak_count[k], v)

    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join()

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())

    def cpu_by_kind(self) -> dict[str, float]:
        """CPU seconds per kind, as sampled (a process's last interval before it exits is not seen)."""
        return dict(self.kind_cpu)
