"""Shared fixtures, and the one place that decides what a missing prerequisite means.

A test that needs something not every checkout has (``../shared/data``, a pinned
dependency, KenLM's ``lmplz``, Chromium) asks for it through :func:`need_shared`,
:func:`require` or :func:`missing`: on a developer's machine that is a skip with the reason;
with ``DATAPIPE_STRICT_TESTS=1`` (set by ``.ci/run``) it is a failure, and the session fails
if any test was skipped at all, so CI cannot turn green by skipping. The session also stops
at once, with one line, when what ``make test`` builds first is absent (a fresh clone run
with plain ``pytest``).
"""
import importlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
#: real data beside the repo; DATAPIPE_SHARED_DATA points elsewhere (a worktree whose parent has no shared/)
SHARED_DATA = Path(os.environ.get("DATAPIPE_SHARED_DATA") or REPO / ".." / "shared" / "data").resolve()
STRICT_ENV = "DATAPIPE_STRICT_TESTS"
STRICT = os.environ.get(STRICT_ENV, "") not in ("", "0")
#: what `make test` builds before running pytest (Makefile: install, kenlm, models)
SAMPLE_MODELS = REPO / "runs" / "_sample_crawl" / "lm"
MODEL_LANGS = ("en", "de", "fr")


def missing(reason: str):
    """A prerequisite is absent: skip the test, or fail it under ``DATAPIPE_STRICT_TESTS``."""
    if STRICT:
        pytest.fail(f"{reason} ({STRICT_ENV}=1: a missing prerequisite fails)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def need_shared(*parts: str) -> Path:
    """``SHARED_DATA / parts``, or :func:`missing` when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        missing(f"real data not available: {p} is absent (CI and dev machines have ../shared/data)")
    return p


def require(module: str, why: str = ""):
    """``pytest.importorskip`` that fails under ``DATAPIPE_STRICT_TESTS`` (the module is pinned)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing(f"cannot import {module} ({e}){': ' + why if why else ''}; `make install` installs it")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return need_shared()


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


# ---------------------------------------------------------------------------
# what `make test` builds first, and strict accounting of skips

def _not_built() -> list[str]:
    """What `make test` would have built and is absent (empty when all is there)."""
    out = []
    if importlib.util.find_spec("ray") is None:
        out.append("the pinned dependencies (.venv)")
    here = Path(sys.executable).parent
    if not all(shutil.which(p) or (here / p).is_file() for p in ("lmplz", "build_binary")):
        out.append("KenLM's lmplz/build_binary")
    if not all((SAMPLE_MODELS / f"{lang}.model.json").is_file() for lang in MODEL_LANGS):
        out.append(f"the sample-crawl models ({SAMPLE_MODELS.relative_to(REPO)})")
    from datapipe.embed import default_static_dir, is_static_folder
    static = default_static_dir()
    if not is_static_folder(static if static.is_absolute() else REPO / static):
        out.append(f"the static embedding model ({static})")
    return out


def pytest_sessionstart(session):
    absent = _not_built()
    if absent:
        # a usage error: pytest prints this one line and exits with status 4, before any test
        raise pytest.UsageError(f"missing {', '.join(absent)}: run `make test` (it builds the venv, KenLM and "
                                f"the sample models, then runs pytest)")


_SKIPPED: list[str] = []


def pytest_collectreport(report):
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if STRICT and _SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if STRICT:
        verdict = "; a skip fails the run" if _SKIPPED else ""
        terminalreporter.write_line(f"{STRICT_ENV}=1: {len(_SKIPPED)} skipped (0 expected){verdict}",
                                    red=bool(_SKIPPED), green=not _SKIPPED, bold=True)
        for nodeid in _SKIPPED:
            terminalreporter.write_line(f"  skipped: {nodeid}", red=True)
