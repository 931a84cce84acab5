"""datapipe: pretraining-data curation on Ray (WARC -> text -> filters -> dedup -> token streams).

The Python API (``datapipe/api.py``), importable from here::

    import datapipe
    pipe = datapipe.Pipeline([datapipe.spec("extract"), datapipe.spec("length", min_chars=200)],
                             input="crawl/", run_dir="runs/mine")
    report = pipe.check(estimate=True)     # every problem at once, projected cost
    result = pipe.run()                    # stats of the whole run
    result.to_arrow() / result.to_hf() / result.to_ray()

Writing a stage: subclass :class:`Stage` (adds columns) or :class:`Filter` (scores, then names a
reason for each drop), with keyword-only options; use it as an object, as ``module:Class`` in
YAML, or register it under a name with the ``datapipe.stages`` entry point group. Names are
imported on first use, so ``import datapipe`` stays cheap (Ray workers import it too).
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# the names' types: datapipe/__init__.pyi (importing them here would tie every module to the API)
_EXPORTS = {
    "Pipeline": "api", "PreflightError": "api", "Result": "api", "open_run": "api", "spec": "api",
    "ConfigError": "config", "PipelineConfig": "config", "load_config": "config",
    "CheckReport": "preflight", "Estimate": "preflight", "preflight": "preflight",
    "Filter": "stage", "Resources": "stage", "Stage": "stage", "StageError": "stage", "Workflow": "stage",
    "WorkflowContext": "stage", "register": "stage",
    "StageStats": "stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'datapipe' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
