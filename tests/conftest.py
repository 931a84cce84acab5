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


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (the engine reuses it and leaves it running)."""
    import ray
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sample_crawl(tmp_path_factory) -> list[str]:
    from datapipe.samplecrawl import build_sample_crawl
    out = tmp_path_factory.mktemp("sample_crawl")
    return [str(p) for p in build_sample_crawl(out)]


@pytest.fixture(scope="session")
def static_model(tmp_path_factory) -> Path:
    """The static embedding model dedup_semantic's ``model: auto`` uses on CPU, made visible to
    the whole session through DATAPIPE_STATIC_MODEL: ``$DATAPIPE_STATIC_MODEL`` or
    ``runs/_models/...`` when ``make models`` built it, else built here by the same function
    (one distillation pass over MiniLM's vocabulary, offline)."""
    from datapipe.embed import STATIC_ENV, build_static_model, default_static_dir, is_static_folder
    path = default_static_dir()
    if not path.is_absolute():
        path = REPO / path
    if not is_static_folder(path):
        path = build_static_model(tmp_path_factory.mktemp("models") / "minilm-static", quiet=True)
    old = os.environ.get(STATIC_ENV)
    os.environ[STATIC_ENV] = str(path)
    yield path
    if old is None:
        os.environ.pop(STATIC_ENV, None)
    else:
        os.environ[STATIC_ENV] = old
