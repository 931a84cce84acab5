"""Measuring a command's whole process tree, for the benchmarks that run datapipe through its CLI.

``TreeSampler`` samples a process tree (every benchmark that reports a tree's memory or CPU:
vs_datatrove, prefilter, ray_footprint, shards, dedup).
``run_measured(cmd)`` runs a command and samples its process tree every 0.5 s with psutil:
CPU seconds per process (the largest value seen, so processes that exit between samples
lose at most half a second), peak RSS and peak PSS summed over the tree (PSS counts shared
pages once), and at the moment of peak PSS the processes then alive, each with its *kind*
(raylet, gcs_server, ``ray::<actor or task>``, the dashboard and its agents, the driver,
datatrove's workers and extraction sandboxes ...), so reports can say what holds the memory.

``datapipe_cli()`` is how the benchmarks start datapipe: the interpreter running the
benchmark with ``-m datapipe.cli`` and this checkout first on ``PYTHONPATH``, so a worktree
measures its own code whatever virtualenv it borrows.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Ray's own processes, by a file their command line runs
_RAY_SCRIPTS = (("dashboard/agent.py", "ray dashboard agent"), ("runtime_env/agent/main.py", "ray runtime_env agent"),
                ("dashboard/dashboard.py", "ray dashboard"), ("log_monitor.py", "ray log_monitor"),
                ("autoscaler/_private/monitor.py", "ray autoscaler monitor"),
                ("workers/default_worker.py", "ray worker (starting)"))


def datapipe_cli() -> list[str]:
    return [sys.executable, "-m", "datapipe.cli"]


def datapipe_env(**extra: str) -> dict:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _kind(name: str, cmd: list[str]) -> str | None:
    """A process's kind from its name and command line; None for a plain Python process."""
    if name.startswith("ray::"):
        return name.split("(")[0].split(" ")[0]
    if name in ("raylet", "gcs_server") or (cmd and os.path.basename(cmd[0]) in ("raylet", "gcs_server")):
        return name if name in ("raylet", "gcs_server") else os.path.basename(cmd[0])
    joined = " ".join(cmd)
    for script, kind in _RAY_SCRIPTS:
        if script in joined:
            return kind
    if "datapipe.cli" in joined or (cmd[1:2] and cmd[1].endswith("/datapipe")):
        return "datapipe driver"
    return None


#: cmdline fragment -> kind for ``proc_kind``, first match wins (Ray's helper processes are Python scripts)
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
    """What the process is in a (Ray) run, as of now: driver, raylet, gcs_server, dashboard, ray::IDLE, ..."""
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
    """PSS bytes of ``pid`` from ``/proc/<pid>/smaps_rollup``; None when unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class TreeSampler:
    """Samples a process tree (``pid``; default this process) every ``interval`` s with psutil.

    Tree-wide: peak RSS and PSS (summed over the tree; PSS from smaps_rollup, so shared pages
    count once), the largest single process's PSS (``peak_one``) and RSS (``peak_rss_one``),
    the most processes at once, and at peak PSS the processes then alive (``peak_at``: (pss,
    key, name); ``peak_breakdown``: (pss, label)). Per process (key ``(pid, start time)``): CPU
    seconds (max seen; ``cpu_at_start`` holds the values at ``__enter__``) and, with
    ``timeline=True``, every sample as ``(time, cpu seconds, label)``. Per ``proc_kind``: the
    most processes at once, peak PSS, PSS at the tree's peak (``peak_by_kind``), and CPU seconds.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.5, *, timeline: bool = False):
        import psutil
        self.root = psutil.Process(pid if pid is not None else os.getpid())
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.peak_one = self.peak_rss_one = 0
        self.peak_procs = 0
        self.peak_at: list[tuple[int, tuple, str]] = []  # (pss, key, name) of every process at the peak
        self.peak_breakdown: list[tuple[int, str]] = []  # (pss, label) of the same
        self.info: dict[tuple, dict] = {}               # key -> name, cmd, parent key
        self.cpu: dict[tuple, float] = {}
        self.cpu_at_start: dict[tuple, float] = {}
        self.timeline: dict[tuple, list[tuple[float, float, str]]] | None = {} if timeline else None
        self.labels: dict[tuple, str] = {}
        self.kinds: dict[tuple, str] = {}
        #: PSS per kind in the sample where the tree's PSS peaked
        self.peak_by_kind: dict[str, int] = {}
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
        now = time.time()
        keys = {}
        for p in procs:
            try:
                keys[p.pid] = (p.pid, p.create_time())
            except psutil.Error:
                pass
        rss = pss = 0
        each = []
        by_kind_pss: dict[str, int] = defaultdict(int)
        by_kind_n: dict[str, int] = defaultdict(int)
        label_now: dict[tuple, str] = {}
        for p in procs:
            try:
                with p.oneshot():
                    key = keys.get(p.pid) or (p.pid, p.create_time())
                    ct = p.cpu_times()
                    used = ct.user + ct.system
                    name = p.name()
                    if name.startswith("ray::") and len(name) == 15:  # the kernel's comm is cut at 15
                        try:
                            name = (p.cmdline() or [name])[0].split(" ")[0] or name
                        except psutil.Error:
                            pass
                    if key not in self.info:
                        try:
                            cmd = p.cmdline()
                        except psutil.Error:
                            cmd = []
                        self.info[key] = {"name": name, "cmd": cmd, "parent": keys.get(p.ppid()), "names": []}
                        self.labels[key] = proc_label(p)
                    seen = self.info[key]["names"]
                    if not seen or seen[-1] != name:
                        seen.append(name)
                    # a worker's title changes (IDLE -> task): classify on every sample
                    kind = proc_kind(p, self.root.pid)
                    if kind == "?":
                        kind = self.kinds.get(key, "?")
                    self.kinds[key] = kind
                    self.kind_cpu[kind] += max(0.0, used - self.cpu.get(key, 0.0))
                    self.cpu[key] = max(self.cpu.get(key, 0.0), used)
                    if self.timeline is not None:
                        label = name if name.startswith("ray::") else \
                            " ".join(os.path.basename(c) for c in p.cmdline()[:2])[:50]
                        self.timeline.setdefault(key, []).append((now, used, label))
                    mine_rss = p.memory_info().rss
                    rss += mine_rss
                    self.peak_rss_one = max(self.peak_rss_one, mine_rss)
                    mine = read_pss(p.pid)
                    if mine is not None:
                        pss += mine
                        self.peak_one = max(self.peak_one, mine)
                        each.append((mine, key, name))
                        label_now[key] = proc_label(p)
                        by_kind_pss[kind] += mine
                    by_kind_n[kind] += 1
            except psutil.Error:
                pass
        self.samples += 1
        self.peak_rss = max(self.peak_rss, rss)
        if pss > self.peak_pss:
            self.peak_pss, self.peak_at = pss, sorted(each, reverse=True)
            self.peak_breakdown = [(v, label_now.get(k, n)) for v, k, n in self.peak_at]
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
        import psutil
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                ct = p.cpu_times()
                self.cpu_at_start[(p.pid, p.create_time())] = ct.user + ct.system
            except psutil.Error:
                pass
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join()

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())

    @property
    def cpu_since_start(self) -> float:
        """CPU seconds of the tree spent while sampled (less what its processes had used before)."""
        return sum(c - self.cpu_at_start.get(k, 0.0) for k, c in self.cpu.items())

    def cpu_by_kind(self) -> dict[str, float]:
        """CPU seconds per ``proc_kind``, as sampled (a process's last interval before it exits is not seen)."""
        return dict(self.kind_cpu)

    def kind(self, key: tuple, name: str | None = None) -> str:
        """What a process is (``name``: its name at the moment asked about; default: over its life).

        A Ray worker is named by the last task or actor it ran (``ray::IDLE (was ray::X)`` when
        idle at that moment); a plain Python process by its script, its children by depth.
        """
        info = self.info.get(key, {"name": name or "?", "cmd": [], "parent": None, "names": []})
        ran = [n.split("(")[0] for n in info["names"] if n.startswith("ray::") and not n.startswith("ray::IDLE")]
        if name is None:
            return ran[-1] if ran else (_kind(info["names"][-1] if info["names"] else info["name"], info["cmd"])
                                        or self._plain(key))
        k = _kind(name, info["cmd"])
        if k == "ray::IDLE" and ran:
            return f"ray::IDLE (was {ran[-1]})"
        return k or self._plain(key)

    def _plain(self, key: tuple, depth: int = 0) -> str:
        info = self.info[key]
        parent = info.get("parent")
        if parent is not None and parent in self.info and not _kind(self.info[parent]["name"], self.info[parent]["cmd"]):
            return self._plain(parent, depth + 1)
        cmd = info["cmd"]
        script = next((os.path.basename(c) for c in cmd[1:] if c.endswith(".py")), None)
        root = script or (os.path.basename(cmd[0]) if cmd else info["name"])
        return root + (f" [depth {depth}]" if depth else "")


def run_measured(cmd: list[str], *, env: dict, log: Path, cwd: Path = ROOT) -> dict:
    """Run ``cmd`` to the end (exit on failure, with the log's tail) and return what was measured.

    ``by_kind`` (at peak PSS): kind -> [processes, PSS bytes]; ``cpu_by_kind``: kind ->
    [processes over the run, CPU seconds].
    """
    t = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        with TreeSampler(proc.pid) as s:
            rc = proc.wait()
    wall = time.time() - t
    if rc != 0:
        sys.exit(f"{cmd[0]} failed with exit code {rc}; last lines of {log}:\n" + "".join(open(log).readlines()[-30:]))
    by_kind: dict[str, list] = defaultdict(lambda: [0, 0])
    for pss, key, name in s.peak_at:
        k = s.kind(key, name)
        by_kind[k][0] += 1
        by_kind[k][1] += pss
    cpu_by_kind: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for key, sec in s.cpu.items():
        k = s.kind(key)
        cpu_by_kind[k][0] += 1
        cpu_by_kind[k][1] += sec
    return {"wall": wall, "cpu": sum(s.cpu.values()), "peak_rss": s.peak_rss, "peak_pss": s.peak_pss,
            "procs": s.peak_procs, "procs_at_peak": len(s.peak_at), "procs_total": len(s.cpu),
            "breakdown": [(pss, s.kind(key, name)) for pss, key, name in s.peak_at[:8]],
            "by_kind": dict(by_kind), "cpu_by_kind": dict(cpu_by_kind)}


def fmt_kinds(by_kind: dict, *, mib: bool = True) -> str:
    """``raylet 1 x 45, ray::IDLE 2 x 1,360, ...`` (processes x MiB, or x CPU-s), largest first."""
    items = sorted(by_kind.items(), key=lambda kv: -kv[1][1])
    return ", ".join(f"{k} {n}x {v / 2**20:,.0f}" if mib else f"{k} {n}x {v:,.1f}" for k, (n, v) in items)
