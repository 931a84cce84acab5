"""Measuring a command's whole process tree, for the benchmarks that run datapipe through its CLI.

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


class TreeSampler:
    """Peak RSS/PSS (summed over the tree), CPU seconds per process and the processes at peak PSS."""

    def __init__(self, pid: int, interval: float = 0.5):
        import psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self.peak_at: list[tuple[int, tuple]] = []      # (pss, key) of every process at the peak
        self.info: dict[tuple, dict] = {}               # key -> name, cmd, parent key
        self.cpu: dict[tuple, float] = {}
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        import psutil
        while not self._stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                break
            keys = {}
            for p in procs:
                try:
                    keys[p.pid] = (p.pid, p.create_time())
                except psutil.Error:
                    pass
            rss = pss = 0
            each = []
            for p in procs:
                try:
                    with p.oneshot():
                        key = keys.get(p.pid) or (p.pid, p.create_time())
                        ct = p.cpu_times()
                        self.cpu[key] = max(self.cpu.get(key, 0.0), ct.user + ct.system)
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
                        seen = self.info[key]["names"]
                        if not seen or seen[-1] != name:
                            seen.append(name)
                        try:
                            mi = p.memory_full_info()
                            rss += mi.rss
                            pss += mi.pss
                            each.append((mi.pss, key, name))
                        except psutil.AccessDenied:
                            rss += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            if pss > self.peak_pss:
                self.peak_pss, self.peak_at = pss, sorted(each, reverse=True)
            self.peak_procs = max(self.peak_procs, len(procs))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join()

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
