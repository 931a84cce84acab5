"""The Python API: build the pipelines of the YAML configs in code, check and run them, get the
stats back and open the output as a ``pyarrow.dataset``, a Hugging Face ``datasets.Dataset`` or a
Ray Dataset.

    import datapipe
    from stages.length import LengthFilter

    pipe = datapipe.Pipeline(
        [datapipe.spec("extract", favor="balanced"),    # a registered stage by its YAML name
         LengthFilter(min_chars=200),                   # or a stage object
         "mypkg.filters:MinWords"],                     # or a user's own stage, module:Class
        input=["crawl/*.warc.gz"], run_dir="runs/mine")
    pipe.check(estimate=True)        # every problem in one list; projected cost
    result = pipe.run()
    result.stats                     # [StageStats], the funnel
    result.to_arrow().to_table()     # pyarrow.dataset.Dataset over output/

A pipeline is a :class:`~datapipe.config.PipelineConfig` built from Python values and validated by
the same code as a YAML file (one path: a stage object becomes its name and the keyword options it
was built with, and is built again by name in each worker), so what runs from Python runs from
YAML and the run directory records it the same way (``config.yaml``). A user's own stage lives in
the user's own module: a :class:`~datapipe.stage.Stage` or :class:`~datapipe.stage.Filter`
subclass with keyword options, used as an object, as ``module:Class`` in YAML, or under a name
through the ``datapipe.stages`` entry point group of an installed package.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

from .config import ConfigError, PipelineConfig, StageSpec, check_config
from .rundir import is_url
from .stage import Stage, Workflow, spec_name
from .stats import StageStats, format_table

if TYPE_CHECKING:  # heavy imports, only where they are used
    import datasets
    import pyarrow.dataset

    from .preflight import CheckReport

#: what a pipeline's stage list accepts: a stage object, a :func:`spec`, a name (or
#: ``module:Class``), or ``(name, {options})``
StageLike = Union[Stage, Workflow, StageSpec, str, "tuple[str, Mapping[str, Any]]"]
PathLike = Union[str, Path]


class PreflightError(ConfigError):
    """The pre-flight check of :meth:`Pipeline.run` found problems (all of them in ``problems``)."""

    def __init__(self, problems: list):
        self.problems = problems
        super().__init__(None, None, "; ".join(p.message for p in problems))


def spec(name: str, /, **options: Any) -> StageSpec:
    """A stage by its YAML name (``"length"``) or ``"module:Class"``, with keyword options:
    ``spec("langid", languages={"en": 0.65})``. Options are validated when the pipeline is."""
    return StageSpec(name=name, options=options)


def _entry(s: Any) -> dict[str, Any]:
    """One stage of a pipeline as a YAML stage-list entry ``{name: {options}}``."""
    if isinstance(s, StageSpec):
        return {s.name: dict(s.options)}
    if isinstance(s, str):
        return {s: {}}
    if isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], str):
        return {s[0]: dict(s[1] or {})}
    if isinstance(s, type) and issubclass(s, (Stage, Workflow)):
        return {spec_name(s): {}}
    if isinstance(s, (Stage, Workflow)):
        return {spec_name(s): s.built_with()}
    raise TypeError(f"a pipeline stage is a Stage object, datapipe.spec(name, **options), a name or "
                    f"(name, options), not {type(s).__name__}")


class Pipeline:
    """A pipeline built in code: stages, input, run directory, and the config sections of YAML
    (``output``, ``engine``, ``rejects`` as mappings of the same keys). Validated on construction
    (:class:`~datapipe.config.ConfigError` names the bad key, as for a file)."""

    def __init__(self, stages: Sequence[StageLike], *, input: "PathLike | Sequence[PathLike] | None" = None,
                 run_dir: Optional[PathLike] = None, name: str = "pipeline", format: str = "auto",
                 source: str = "cc", text_field: str = "text", input_options: Optional[Mapping[str, Any]] = None,
                 output: Optional[Mapping[str, Any]] = None, engine: Optional[Mapping[str, Any]] = None,
                 rejects: Optional[Mapping[str, Any]] = None, report: bool = False, mix: Optional[str] = None):
        paths = [] if input is None else [str(input)] if isinstance(input, (str, Path)) else [str(p) for p in input]
        data: dict[str, Any] = {
            "name": name,
            "input": {"paths": paths, "format": format, "source": source, "text_field": text_field,
                      **dict(input_options or {})},
            "stages": [_entry(s) for s in stages],
            "report": report,
        }
        for key, val in (("output", output), ("engine", engine), ("rejects", rejects), ("mix", mix)):
            if val is not None:
                data[key] = dict(val) if isinstance(val, Mapping) else val
        self._init(data, run_dir, file="<python>")

    def _init(self, data: dict, run_dir: Optional[PathLike], file: Optional[str]) -> None:
        cfg, problems = check_config(data, file=file)
        if problems:
            raise problems[0] if len(problems) == 1 else ConfigError(
                file, None, f"{len(problems)} problems: " + "; ".join(str(p) for p in problems))
        assert cfg is not None
        self.config: PipelineConfig = cfg
        # an object-store URL stays a string (Path would fold s3:// into s3:/)
        self.run_dir: "Path | str" = (str(run_dir) if is_url(run_dir) else Path(run_dir)) if run_dir else Path("runs") / cfg.name

    @classmethod
    def from_yaml(cls, path: PathLike, *, input: "PathLike | Sequence[PathLike] | None" = None,
                  run_dir: Optional[PathLike] = None) -> "Pipeline":
        """A pipeline from a config file (``input`` replaces its ``input.paths``)."""
        from .config import read_config_file
        data = dict(read_config_file(path) or {})
        if input is not None:
            paths = [str(input)] if isinstance(input, (str, Path)) else [str(p) for p in input]
            data["input"] = {**(data.get("input") or {}), "paths": paths}
        self = cls.__new__(cls)
        self._init(data, run_dir, file=str(path))
        return self

    @property
    def inputs(self) -> list[str]:
        return list(self.config.input.paths)

    def to_yaml(self) -> str:
        """The same pipeline as a YAML config (every option resolved), runnable with ``datapipe run``."""
        import yaml
        return yaml.safe_dump(self.config.to_yaml_dict(), sort_keys=False, allow_unicode=True)

    def check(self, *, estimate: bool = False, sample_docs: int = 200, fast: bool = False) -> "CheckReport":
        """``datapipe check``: every problem before any work (``report.problems``); with ``estimate``
        the projected CPU-hours, survivors and output size (``report.estimate``)."""
        from .preflight import preflight
        return preflight(self.config, inputs=self.inputs, run_dir=self.run_dir, fast=fast,
                         estimate=estimate, sample_docs=sample_docs)

    def run(self, *, fresh: bool = False, quiet: bool = True, check: bool = True) -> "Result":
        """Run (or resume) the pipeline on Ray; returns the whole run's stats. ``check``: the fast
        pre-flight check first (:class:`PreflightError` with every problem; nothing started).
        The curation run only: the CLI's after-run steps are ``datapipe.report.build_report(run_dir)``
        and ``datapipe.mix.run_mix(run_dir, spec)``."""
        from .runner import run_pipeline
        if check:
            rep = self.check(fast=True)
            if rep.problems:
                raise PreflightError(rep.problems)
        res = run_pipeline(self.config, inputs=self.inputs, run_dir=self.run_dir, quiet=quiet, fresh=fresh)
        return Result(res.run_dir, res.stats, res.wall_seconds, res.cores, list(res.output_files))

    def __repr__(self) -> str:
        return f"Pipeline({[s.name for s in self.config.stages]}, run_dir={str(self.run_dir)!r})"


@dataclass
class Result:
    """A finished run: its directory, the funnel (merged stats of the whole run) and its output."""
    run_dir: Path
    stats: list[StageStats]
    wall_seconds: float = 0.0
    cores: int = 0
    output_files: list[Path] = field(default_factory=list)

    def __getitem__(self, stage: str) -> StageStats:
        """The stats of one stage by its label: ``result["length"].dropped``."""
        for s in self.stats:
            if s.stage == stage:
                return s
        raise KeyError(f"no stage {stage!r}; stages: {[s.stage for s in self.stats]}")

    def table(self) -> str:
        return format_table(self.stats, cores=self.cores or None, wall_seconds=self.wall_seconds or None)

    @property
    def output_dir(self) -> Path:
        return self.run_dir / "output"

    def to_arrow(self) -> "pyarrow.dataset.Dataset":
        """The output as a ``pyarrow.dataset`` (lazy; Hive partitions of ``output.partition_by`` included)."""
        import pyarrow.dataset as ds
        return ds.dataset([str(p) for p in self.output_files], format="parquet",
                          partitioning="hive", partition_base_dir=str(self.output_dir))

    def to_hf(self, **from_parquet: Any) -> "datasets.Dataset":
        """The output as a Hugging Face ``datasets.Dataset`` (memory-mapped Arrow; ``from_parquet``
        options such as ``cache_dir`` pass through)."""
        import datasets
        if not self.output_files:
            return datasets.Dataset(self.to_arrow().to_table())
        return datasets.Dataset.from_parquet([str(p) for p in self.output_files], **from_parquet)

    def to_ray(self) -> Any:
        """The output as a ``ray.data.Dataset`` (joins ``RAY_ADDRESS``, or the Ray already started, or a local one)."""
        from .ray_backend import read_parquet
        return read_parquet([str(p) for p in self.output_files])


def open_run(run_dir: PathLike) -> Result:
    """A finished run directory as a :class:`Result` (stats from its ``stats.json``). One on an
    object store (a URL) is downloaded into its staging copy first (``datapipe/rundir.py``)."""
    from .rundir import RunDir
    from .runner import load_stats
    rd = RunDir(run_dir)
    rd.pull()  # no-op for a local run directory
    root = rd.root
    stats = load_stats(root)
    last = root / "last_run.json"
    info = json.loads(last.read_text()) if last.exists() else {}
    return Result(root, stats, info.get("wall_seconds", 0.0), info.get("cores", 0), RunDir(root).output_files())
