import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (CI and dev machines have ../shared)")
    return SHARED_DATA


def start_test_ray():
    """The session's local Ray (also restarted by tests that need a Ray of their own for a while)."""
    import ray
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    return ray


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (the engine reuses it and leaves it running)."""
    ray = start_test_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sample_crawl(tmp_path_factory) -> list[str]:
    from datapipe.samplecrawl import build_sample_crawl
    out = tmp_path_factory.mktemp("sample_crawl")
    return [str(p) for p in build_sample_crawl(out)]
