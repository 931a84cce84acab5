"""Stage protocol and registry.

A **stage** is a small class with a registry ``name``, declared ``inputs`` and
``outputs`` columns (and ``removes``), a ``setup()`` that loads models once per worker, and
a pure ``__call__(batch) -> batch``. Stages never do I/O and never import Ray.

The contract is enforced in one place, :func:`apply_stage` (what the engine, the workflows
and the tests call): ``setup()`` runs once per process before the first batch
(:meth:`Stage.ensure_setup`), declared ``inputs`` are checked before every call, and after
it the declared ``outputs`` must be there, ``removes`` gone and no row dropped -- a stage
that forgets a column fails in its tests, not in a user's run. A stage may set ``inputs``
/``outputs`` per instance in ``__init__`` (they depend on its options); the checks read
the instance. ``resources`` (:class:`Resources`) is what one worker needs; the engine
requests exactly that, and ``needs_model`` stages run in long-lived workers (actors).

A **filter** is a stage that first *scores* (adds columns, never drops rows) and
then *decides*: ``decide(batch)`` returns one reason string per row, null for
rows that are kept. Thresholds can be re-tuned on scored output without
re-scoring (see ``datapipe refilter``). Reasons are ``<check>:<rule>`` names such
as ``gopher_quality_v1:word_count``; every drop has one.

A **workflow** is a global pass (dedup, percentiles) with explicit on-disk
intermediates; it gets shard files in and writes shard files out.

Adding a stage: subclass, decorate with ``@register``, give keyword-only options
with type annotations (config validation reads them), add one YAML line.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class StageError(ValueError):
    """Bad stage options or a missing model/input column (at construction), or a broken
    stage contract (a declared column missing after the call)."""


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage, or one task of a workflow's parallel map, needs.

    The engine requests exactly this from the cluster (``datapipe/ray_backend.py``): CPUs and
    GPUs as Ray resources (so GPU work is placed only where GPUs are, one copy per GPU), and
    ``memory_mb`` as a reservation (None: none) so workers that load large models are not
    packed onto a node beyond its memory. Choose it per instance when it depends on options
    (a transformer on ``device: cuda`` wants ``gpus=1``)."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_mb: int | None = None

    def __post_init__(self):
        if self.cpus < 0 or self.gpus < 0 or (self.memory_mb is not None and self.memory_mb < 0):
            raise StageError(f"resources must be >= 0, got {self}")

    def merge(self, other: "Resources") -> "Resources":
        """What one worker running both in turn needs (a fused stage chain): the larger of each."""
        mem = [m for m in (self.memory_mb, other.memory_mb) if m is not None]
        return Resources(cpus=max(self.cpus, other.cpus), gpus=max(self.gpus, other.gpus),
                         memory_mb=max(mem) if mem else None)


#: identifies this process: a stage set up here carries it; a copy unpickled anywhere (a Ray
#: worker, or a deepcopy) gets a different object, so :meth:`Stage.ensure_setup` runs again there
_PROCESS_TOKEN = object()


class _KeepsOptions:
    """Remembers the arguments an instance was built with (:meth:`built_with`): a stage object
    handed to the Python API (``datapipe.Pipeline``) is sent to the engine's workers as its name
    and these options, and built again there, exactly as a YAML entry is."""

    def __new__(cls, *args: Any, **kwargs: Any):
        self = super().__new__(cls)
        self.__dict__["_built_with"] = (args, dict(kwargs))
        return self

    def built_with(self) -> dict[str, Any]:
        """The keyword options this instance was built with (positional ones by their names)."""
        args, kwargs = self.__dict__.get("_built_with", ((), {}))
        if args:
            bound = inspect.signature(type(self).__init__).bind(self, *args, **kwargs)
            bound.arguments.pop(next(iter(bound.arguments)))  # self
            return dict(bound.arguments)
        return dict(kwargs)


class Stage(_KeepsOptions):
    """Adds or rewrites columns; never drops rows (use :class:`Filter` for that)."""

    name: ClassVar[str] = ""
    #: columns the stage reads; checked against the batch schema before every call
    inputs: ClassVar[tuple[str, ...]] = ("text",)
    #: columns the stage adds or rewrites; checked after every call
    outputs: ClassVar[tuple[str, ...]] = ()
    #: columns the stage removes (e.g. extraction drops ``html``); checked gone after every call
    removes: ClassVar[tuple[str, ...]] = ()
    #: True when setup() loads a model: the engine keeps instances alive in actors (with
    #: ``engine.fuse: false``; a fused chain always runs in actors)
    needs_model: ClassVar[bool] = False
    #: what one worker of this stage needs (the engine requests exactly this)
    resources: ClassVar[Resources] = Resources()

    def setup(self) -> None:
        """Load models or lists; called once per worker before the first batch (through
        :meth:`ensure_setup`; never call it from ``__call__``)."""

    def ensure_setup(self) -> "Stage":
        """Run :meth:`setup` once in this process (again in a process this stage is copied to).
        Returns the stage, so code that calls a stage directly can write ``st = build_stage(...).ensure_setup()``."""
        if self.__dict__.get("_setup_token") is not _PROCESS_TOKEN:
            self.setup()
            self._setup_token = _PROCESS_TOKEN
        return self

    def __call__(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------
    def check_inputs(self, schema: pa.Schema) -> None:
        missing = [c for c in self.inputs if c not in schema.names]
        if missing:
            raise StageError(f"stage {self.name!r} needs column(s) {missing}, batch has {schema.names}")

    def check_outputs(self, batch: pa.Table, out: pa.Table) -> None:
        """After a call: ``out`` has every declared output, none of ``removes``, every row of ``batch``."""
        if not isinstance(out, pa.Table):
            raise StageError(f"stage {self.name!r} returned {type(out).__name__}, not a pyarrow Table")
        missing = [c for c in self.outputs if c not in out.column_names]
        if missing:
            raise StageError(f"stage {self.name!r} did not write its declared output column(s) {missing}; "
                             f"batch has {out.column_names}")
        left = [c for c in self.removes if c in out.column_names]
        if left:
            raise StageError(f"stage {self.name!r} declares it removes column(s) {left}, but the batch still has them")
        if out.num_rows != batch.num_rows:
            raise StageError(f"stage {self.name!r} returned {out.num_rows} rows for {batch.num_rows}: stages never "
                             "drop rows (a Filter names a reason in decide())")

    def counters(self) -> dict[str, int]:
        """Extra per-batch counters (e.g. extraction timeouts); reset after each read."""
        return {}

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"<{type(self).__name__} {self.name}>"


class Filter(Stage):
    """Score, then decide. ``decide`` returns a string array: null = keep, else the reason."""

    def score(self, batch: pa.Table) -> pa.Table:
        return batch

    def decide(self, batch: pa.Table) -> pa.Array:
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.score(batch)


class Workflow(_KeepsOptions):
    """A global pass over all shards with on-disk intermediates (dedup, percentiles).

    ``run(ctx)`` reads ``ctx.inputs`` (Parquet shard files), writes one Parquet file
    per input shard into ``ctx.output_dir`` (same file name), and returns stats per
    shard. Heavy parallel work goes through ``ctx.engine`` (never Ray directly).
    """

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ("text",)
    outputs: ClassVar[tuple[str, ...]] = ()
    #: what one task of the workflow's parallel maps needs (``ctx.engine.map(..., resources=)``);
    #: a workflow whose steps differ passes each map its own
    resources: ClassVar[Resources] = Resources()

    def run(self, ctx: "WorkflowContext") -> dict:
        raise NotImplementedError


@dataclass
class WorkflowContext:
    """What a workflow gets: input Parquet files (one per shard), where to write, scratch space.

    Write one output file per input with :meth:`write` (same basename, atomic); a shard whose
    documents are all dropped still gets an (empty) file so the next step sees every shard.
    """
    inputs: list[str]          # parquet files from the previous step, one per shard
    output_dir: str            # write <output_dir>/<basename of input>
    work_dir: str              # scratch space for intermediates (kept for inspection)
    engine: Any                # datapipe.ray_backend.Engine: num_cpus, num_gpus, map(fn, items, resources=, needs_model=)
    compression: str = "zstd"
    reject_sink: Any = None    # callable(stage, shard, rejected_table_with_reason)
    samples_per_reason: int = 50   # the run's ``rejects`` settings: what a workflow's shard tasks
    excerpt_chars: int = 500       # sample (datapipe.rejects) before their rejects reach the sink
    lineage_dir: str | None = None  # where workflows record each dropped document (datapipe.lineage)

    def output_path(self, input_path: str) -> str:
        import os
        return os.path.join(self.output_dir, os.path.basename(input_path))

    def write(self, input_path: str, table: pa.Table) -> int:
        from .rundir import write_parquet_atomic
        return write_parquet_atomic(table, self.output_path(input_path), compression=self.compression)

    def rejects(self, stage: str, shard: str, table: pa.Table) -> None:
        if self.reject_sink is not None and table is not None and table.num_rows:
            self.reject_sink(stage, shard, table)


# ---------------------------------------------------------------------------
# applying a stage to a batch: the one place that turns reasons into drops

@dataclass
class StageResult:
    kept: pa.Table
    rejected: pa.Table | None     # rows dropped, with a "reason" column
    reasons: dict[str, int]


def apply_stage(stage: Stage, batch: pa.Table) -> StageResult:
    """Run ``stage`` on ``batch`` under its contract (see the module docstring); filters drop rows
    with a reason. Used by the engine, workflows and tests."""
    stage.ensure_setup()
    stage.check_inputs(batch.schema)
    out = stage(batch)
    stage.check_outputs(batch, out)
    if not isinstance(stage, Filter):
        return StageResult(out, None, {})
    reasons = stage.decide(out)
    if isinstance(reasons, pa.ChunkedArray):
        reasons = reasons.combine_chunks()
    if len(reasons) != out.num_rows:
        raise StageError(f"stage {stage.name!r} returned {len(reasons)} decisions for {out.num_rows} rows")
    drop = pc.is_valid(reasons)
    n_drop = pc.sum(drop).as_py() or 0
    if n_drop == 0:
        return StageResult(out, None, {})
    kept = out.filter(pc.invert(drop))
    rejected = out.filter(drop).append_column("reason", reasons.filter(drop))
    vc = pc.value_counts(reasons.filter(drop))
    counts = {v["values"].as_py(): v["counts"].as_py() for v in vc}
    return StageResult(kept, rejected, counts)


def reasons_from_masks(n: int, checks: list[tuple[str, np.ndarray]]) -> pa.Array:
    """Turn ``[(reason, fail_mask), ...]`` into a reason array; the first failing check wins."""
    out = np.full(n, None, dtype=object)
    for reason, mask in checks:
        mask = np.asarray(mask, dtype=bool)
        sel = mask & (out == None)  # noqa: E711 - elementwise on object array
        out[sel] = reason
    return pa.array(out, type=pa.string())


# ---------------------------------------------------------------------------
# registry

_REGISTRY: dict[str, type] = {}
_LOADED = False
#: the entry point group through which an installed package offers stages by name
ENTRY_POINT_GROUP = "datapipe.stages"
#: folders added to ``sys.path`` to import plugin stages (``module:Class``); the engine passes them
#: to its workers (:func:`plugin_paths`, :func:`add_plugin_paths`)
_PLUGIN_PATHS: list[str] = []
_PLUGIN_MODULES: set[str] = set()


def register(cls: type) -> type:
    """Class decorator: make a Stage/Workflow available to YAML by its ``name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"stage name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    for pkg_name in ("stages", "classifiers"):
        try:
            pkg = importlib.import_module(pkg_name)
        except ImportError:
            continue
        for mod in pkgutil.walk_packages(pkg.__path__, prefix=pkg_name + "."):
            importlib.import_module(mod.name)
    _LOADED = True
    _load_entry_points()


def _load_entry_points() -> None:
    """Stages that installed packages offer in the ``datapipe.stages`` entry point group:
    ``name = "module:Class"``; the entry point's name is the YAML name. A plugin that fails to
    import is logged and left out (it must not break runs that do not use it)."""
    import logging
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        try:
            cls = ep.load()
            _check_stage_class(cls, ep.value)
        except Exception as e:  # noqa: BLE001 - a broken plugin is named, not fatal
            logging.getLogger(__name__).warning("entry point %s = %s (%s): %s: %s", ep.name, ep.value,
                                                ENTRY_POINT_GROUP, type(e).__name__, e)
            continue
        _REGISTRY[ep.name] = cls


def _check_stage_class(cls: Any, ref: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, (Stage, Workflow))):
        raise StageError(f"{ref} is not a datapipe Stage, Filter or Workflow class")


def registry() -> dict[str, type]:
    _load_all()
    return dict(_REGISTRY)


def plugin_paths() -> list[str]:
    """Folders this process put on ``sys.path`` to import ``module:Class`` stages (the engine
    hands them to its workers, which may not share the driver's ``sys.path``)."""
    return list(_PLUGIN_PATHS)


def plugin_packages() -> list[Any]:
    """The top-level packages of the ``module:Class`` stages this process imported from outside
    its installed packages: a cluster's workers get them shipped (Ray's ``py_modules``)."""
    import sys
    import sysconfig
    installed = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    out = []
    for name in dict.fromkeys(n.split(".")[0] for n in _PLUGIN_MODULES):
        mod = sys.modules.get(name)
        path = getattr(mod, "__path__", None)  # a package; a single-file module cannot be shipped so
        if path and os.path.realpath(os.path.dirname(list(path)[0])) not in installed:
            out.append(mod)
    return out


def add_plugin_paths(paths: list[str]) -> None:
    """Put ``paths`` on ``sys.path`` (a worker does this before it builds plugin stages)."""
    import sys
    for p in paths:
        if p not in sys.path:
            sys.path.insert(0, p)
        if p not in _PLUGIN_PATHS:
            _PLUGIN_PATHS.append(p)


def _import_class(ref: str) -> type:
    """``"package.module:Class"`` -> the class, imported as ``python`` would from the current
    folder (or ``PYTHONPATH``); a user's stage runs without being registered in this repository."""
    import sys
    mod_name, _, qual = ref.partition(":")
    if not mod_name or not qual:
        raise KeyError(ref)
    hint = " (is its folder the current folder or on PYTHONPATH?)"
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        cwd = os.getcwd()
        if e.name != mod_name.split(".")[0] or cwd in sys.path:
            raise StageError(f"cannot import module {mod_name!r}: {e}{hint}") from None
        add_plugin_paths([cwd])
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e2:
            raise StageError(f"cannot import module {mod_name!r}: {e2}{hint}") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing: say so
        raise StageError(f"importing module {mod_name!r} failed: {type(e).__name__}: {e}") from None
    _note_module_root(mod)
    obj: Any = mod
    for part in qual.split("."):
        if not hasattr(obj, part):
            raise StageError(f"module {mod_name!r} has no {qual!r}")
        obj = getattr(obj, part)
    _check_stage_class(obj, ref)
    return obj


def _note_module_root(mod: Any) -> None:
    """Remember the ``sys.path`` folder ``mod`` was imported from, for the engine's workers (whose
    ``sys.path`` is not the driver's when the user added to it in code)."""
    f = getattr(mod, "__file__", None)
    if not f:
        return
    _PLUGIN_MODULES.add(mod.__name__)
    up = mod.__name__.count(".") + (1 if os.path.basename(f).startswith("__init__.") else 0)
    root = os.path.dirname(os.path.abspath(f))
    for _ in range(up):
        root = os.path.dirname(root)
    if root not in _PLUGIN_PATHS:
        _PLUGIN_PATHS.append(root)


def get_stage_class(name: str) -> type:
    """The class of a stage: a registered name (``length``), an entry point of the
    ``datapipe.stages`` group, or ``module:Class`` (a user's stage in the user's own module).
    Raises KeyError for an unknown name and StageError for a ``module:Class`` that cannot be imported."""
    reg = registry()
    if name in reg:
        return reg[name]
    if ":" in name:
        return _import_class(name)
    raise KeyError(name)


def spec_name(stage: Any) -> str:
    """The name a stage object (or class) is built from again, in YAML and in the engine's workers:
    its registry name when it is registered under it, else ``module:Class``."""
    cls = stage if isinstance(stage, type) else type(stage)
    _check_stage_class(cls, repr(cls))
    reg = registry()
    if cls.name and reg.get(cls.name) is cls:
        return cls.name
    for n, c in reg.items():  # an entry point names it otherwise
        if c is cls:
            return n
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise StageError(f"{cls.__qualname__} is defined in {'a function' if '<locals>' in cls.__qualname__ else '__main__'}: "
                         "the engine's workers import stages by name; define it in a module (a .py file "
                         "on PYTHONPATH) and import it from there")
    import sys
    _note_module_root(sys.modules.get(cls.__module__))
    return f"{cls.__module__}:{cls.__qualname__}"


def stage_options(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword options a stage accepts, from its ``__init__`` signature."""
    init = cls.__init__
    if init is object.__init__:
        return {}
    sig = inspect.signature(init)
    return {
        n: p for n, p in sig.parameters.items()
        if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def build_stage(name: str, options: dict | None = None):
    """Instantiate a stage by name (see :func:`get_stage_class`); bad options raise StageError."""
    cls = get_stage_class(name)
    try:
        return cls(**(options or {}))
    except StageError:
        raise
    except (TypeError, ValueError) as e:
        raise StageError(str(e)) from e
