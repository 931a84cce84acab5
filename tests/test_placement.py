"""Placement: work that declares a GPU runs only on the node that has one, never more copies than GPUs.

A two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``, CPU-only): the head
has CPUs only; the second node *advertises* one GPU it does not have, so Ray schedules GPU
work there while the work itself stays on CPU. An embedding-style map goes through
``Engine.map`` with ``Resources(gpus=1)``, as semantic dedup's embedding step does when it
runs the transformer on GPUs; every call records where and when it ran.
"""
import functools
import json
import time

import pytest

from conftest import start_test_ray
from datapipe.ray_backend import Engine, EngineError
from datapipe.stage import Resources


@pytest.fixture
def gpu_cluster():
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the session's local Ray, if a test before started it; restarted below
    node_args = dict(include_dashboard=False, object_store_memory=80 * 2**20)
    # num_gpus=0: on a machine with a real GPU the head would otherwise advertise it too
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=2, num_gpus=0, **node_args))
    gpu_node = cluster.add_node(num_cpus=2, num_gpus=1, **node_args)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    try:
        yield cluster, gpu_node
    finally:
        ray.shutdown()
        cluster.shutdown()
        start_test_ray()


def test_gpu_map_runs_only_where_the_gpu_is_one_copy_at_a_time(gpu_cluster, tmp_path):
    cluster, gpu_node = gpu_cluster

    def embed_like(x: int, *, log: str) -> list[float]:
        """Stands for embedding one shard (defined here so it travels to the workers by value):
        records its node, GPU ids and start/end."""
        import ray
        t0 = time.time()
        ctx = ray.get_runtime_context()
        time.sleep(0.2)
        with open(log, "a") as fh:  # one short line per call: appends do not interleave
            fh.write(json.dumps({"x": x, "node": ctx.get_node_id(), "gpus": [str(g) for g in ray.get_gpu_ids()],
                                 "start": t0, "end": time.time()}) + "\n")
        return [float(x), float(x) ** 2]

    engine = Engine(quiet=True)  # joins the running cluster
    assert engine.num_gpus == 1 and engine.num_cpus == 4
    log = tmp_path / "calls.jsonl"
    items = list(range(8))
    out = engine.map(functools.partial(embed_like, log=str(log)), items, resources=Resources(gpus=1))
    assert out == [[float(x), float(x) ** 2] for x in items]  # in input order

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(c["x"] for c in calls) == items
    # placed only on the node that advertises the GPU, and given that GPU
    assert {c["node"] for c in calls} == {gpu_node.node_id}
    assert all(c["gpus"] == ["0"] for c in calls)
    # never two copies at once: sorted by start, each call began after the previous one ended
    calls.sort(key=lambda c: c["start"])
    for prev, nxt in zip(calls, calls[1:]):
        assert nxt["start"] >= prev["end"], (prev, nxt)

    # CPU work (the default) may use every node; asking for more GPUs than the cluster has is
    # refused at once instead of waiting forever
    cpu_log = tmp_path / "cpu.jsonl"
    engine.map(functools.partial(embed_like, log=str(cpu_log)), items)
    cpu_calls = [json.loads(line) for line in cpu_log.read_text().splitlines()]
    assert len(cpu_calls) == len(items) and all(c["gpus"] == [] for c in cpu_calls)
    with pytest.raises(EngineError, match="needs 2 GPU per worker; the Ray cluster has 1"):
        engine.map(functools.partial(embed_like, log=str(cpu_log)), items, resources=Resources(gpus=2))


def _wait_gone(pids, timeout=60.0) -> set:
    import psutil
    t_end = time.time() + timeout
    alive = set(pids)
    while alive and time.time() < t_end:
        alive = {p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
        time.sleep(0.5)
    return alive


def test_local_ray_keeps_no_helpers_or_workers_beyond_the_work():
    import os

    import psutil
    import ray

    ray.shutdown()  # the engine starts its own local Ray, as a run does
    engine = Engine(quiet=True)
    try:
        assert engine.started_here
        cmds = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)]
        assert any("raylet" in c for c in cmds)
        for unused in ("dashboard/dashboard.py", "autoscaler/_private/monitor.py", "log_monitor.py"):
            assert not [c for c in cmds if unused in c], unused

        def pid(_):
            return os.getpid()
        # work that loads a model runs in workers that exit with the map (the model's memory goes)
        model_pids = set(engine.map(pid, range(4), needs_model=True))
        assert model_pids and not _wait_gone(model_pids)
        # plain task workers left idle after the work exit too (Ray keeps one per CPU by default)
        task_pids = set(engine.map(pid, range(4)))
        assert task_pids and not _wait_gone(task_pids)
    finally:
        engine.shutdown()
        start_test_ray()
