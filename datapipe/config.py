"""YAML pipeline config -> typed, validated model. Nothing runs before this passes.

Errors name the file and the key (``configs/x.yaml: stages[2].langid.threshold:
Input should be a valid number``) and the CLI exits 2 without a traceback.

A stage's ``options`` are what the file wrote; ``StageSpec.resolved()`` adds every other
option with its default from the stage's ``__init__``. Stages are built from the resolved
options, and the run directory's ``config.yaml`` records them (``to_yaml_dict``), so a run
says what ran even after an upgrade changes a default.

Layout of a config::

    name: default               # run directory: runs/<name>
    input: {paths: [...], format: auto, source: cc}
    stages:                     # registry names with keyword options
      - extract: {favor: precision}
      - langid: {languages: {en: 0.65}}
    output: {rows_per_file: 20000, compression: zstd}
    engine: {batch_size: 64, num_workers: null}
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from .stage import StageError, build_stage, get_stage_class, registry, stage_options


class ConfigError(Exception):
    """A config problem, with the file and key it is about."""

    def __init__(self, file: str | None, key: str | None, message: str):
        self.file, self.key, self.message = file, key, message
        where = ": ".join(x for x in (file, key) if x)
        super().__init__(f"{where}: {message}" if where else message)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputConfig(_Strict):
    paths: list[str] = Field(default_factory=list)
    #: mediawiki, code, books, arxiv, stackexchange: the source readers of datapipe/io/
    format: Literal["auto", "warc", "jsonl", "parquet", "text", "arrow",
                    "mediawiki", "code", "books", "arxiv", "stackexchange"] = "auto"
    source: str = "cc"
    #: prefix for relative entries of a CommonCrawl ``warc.paths.gz`` listing
    base_url: str = "https://data.commoncrawl.org/"
    #: records with bigger payloads are skipped (counted as ``oversized``)
    max_html_bytes: int = Field(default=5_000_000, gt=0)
    #: name of the text column for jsonl/parquet inputs
    text_field: str = "text"
    #: fsspec options per protocol for remote inputs: {s3: {endpoint_url: ..., anon: true}}
    storage_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: WARC/WET/ARC files larger than this are read as record-aligned byte ranges of at most about
    #: this many bytes, one shard each (0: one shard per file)
    shard_bytes: int = Field(default=256 << 20, ge=0)
    #: ...cut finer (ranges down to 8 MiB) when the run's crawl bytes would give fewer shards than
    #: this, so every worker has work (a number, not the machine's cores: a resume elsewhere finds
    #: the same shards); see datapipe.io.split_crawl_files
    min_shards: int = Field(default=64, gt=0)

    @field_validator("storage_options")
    @classmethod
    def _protocols(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        import re
        for proto in v:
            if not re.fullmatch(r"[a-z][a-z0-9+.-]*", proto):
                raise ValueError(f"{proto!r} is not a protocol name (s3, gcs, https, ...): "
                                 "write storage_options as {protocol: {option: value}}")
        return v


class OutputConfig(_Strict):
    rows_per_file: int = Field(default=20_000, gt=0)
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    #: write output/<col>=<value>/... partitions (e.g. lid_lang)
    partition_by: Optional[str] = None


class EngineConfig(_Strict):
    batch_size: int = Field(default=64, gt=0)
    #: worker processes (actors) for the stage chain; default: CPUs of the cluster
    num_workers: Optional[int] = Field(default=None, gt=0)
    #: input shards executed together before their completion markers are written
    shards_per_wave: Optional[int] = Field(default=None, gt=0)
    #: run the whole stage chain in one pool of actors, each reading, processing and writing whole
    #: shards (least memory and overhead); False streams through Ray Data with an operator per
    #: stage (a GPU stage's own pool on a cluster)
    fuse: bool = True
    #: object store size for the embedded local Ray, bytes (default: twice the read-ahead
    #: budget + 256 MiB, what a wave keeps in flight; Ray's own default is 30% of RAM)
    object_store_memory: Optional[int] = None
    #: a shard whose worker died (OOM killer, memory monitor, a crash) or hung is redone up to this
    #: many times, then failed by name while the rest of the step is committed
    shard_retries: int = Field(default=3, ge=0)
    #: seconds without progress (no batch of the shard finished) before a shard counts as hung;
    #: default max(hang_floor_s, 10 x the longest batch gap or shard time seen in the step)
    hang_after_s: Optional[float] = Field(default=None, gt=0)
    hang_floor_s: float = Field(default=300.0, gt=0)
    #: on a hang: report it (stage, shard, input, node, Python stack) and then ``retry`` (cancel
    #: the worker, redo the shard; counts against shard_retries) or ``wait``
    on_hang: Literal["retry", "wait"] = "retry"
    #: MiB of blocks in flight between reading, the stages and writing (Ray Data's object-store
    #: budget, so only with fuse: false); default 64 per stage worker, at least 256
    read_ahead_mb: Optional[int] = Field(default=None, gt=0)
    #: the allocator Ray's workers preload: ``auto`` (jemalloc when installed, local Ray only:
    #: 14% less CPU than glibc's malloc on bench/vs_datatrove.py), ``system`` (the C library's), or the absolute
    #: path of a malloc library (on a cluster it must exist there on every node)
    malloc: str = "auto"


class RejectsConfig(_Strict):
    samples_per_reason: int = Field(default=50, ge=0)
    excerpt_chars: int = Field(default=500, ge=0)


class StageSpec(_Strict):
    name: str
    #: the options the config file wrote (types coerced)
    options: dict[str, Any] = Field(default_factory=dict)

    def resolved(self) -> dict[str, Any]:
        """Every option of the stage with the value it runs with: ``options`` over today's defaults."""
        return resolve_options(self.name, self.options)


class PipelineConfig(_Strict):
    name: str = "default"
    input: InputConfig = Field(default_factory=InputConfig)
    stages: list[StageSpec] = Field(default_factory=list)
    output: OutputConfig = Field(default_factory=OutputConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    rejects: RejectsConfig = Field(default_factory=RejectsConfig)
    #: mixture spec (``configs/mix/*.yaml``) applied after the run: token streams in RUN_DIR/mix/
    mix: Optional[str] = None
    #: write RUN_DIR/report/index.html at the end of the run
    report: bool = True
    #: where the file came from (for error messages); not part of the YAML
    source_file: Optional[str] = Field(default=None, exclude=True)

    def to_yaml_dict(self, *, resolved: bool = True) -> dict:
        """The config as YAML-ready data with every stage option resolved (``resolved=False``:
        only those the file wrote, as older run directories recorded them); secrets in
        ``input.storage_options`` are masked."""
        d = self.model_dump(exclude={"source_file"})
        d["stages"] = [{s.name: _plain(s.resolved()) if resolved else s.options} for s in self.stages]
        d["input"]["storage_options"] = _mask_secrets(d["input"]["storage_options"])
        return d


_SECRET_KEY = ("secret", "password", "token", "key", "credential")


def _mask_secrets(v: Any) -> Any:
    """``{"key": "AKIA..", "endpoint_url": "http://.."}`` -> ``{"key": "***", "endpoint_url": ...}``, nested."""
    if isinstance(v, dict):
        return {k: "***" if any(w in str(k).lower() for w in _SECRET_KEY) and isinstance(x, (str, bytes))
                else _mask_secrets(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_mask_secrets(x) for x in v]
    return v


def _plain(v: Any) -> Any:
    """Option values as YAML's plain types: tuples as lists, enums by value, paths as strings."""
    import enum
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_plain(x) for x in (sorted(v) if isinstance(v, (set, frozenset)) else v)]
    if isinstance(v, enum.Enum):
        return _plain(v.value)
    if isinstance(v, Path):
        return str(v)
    return v


def resolve_options(stage_name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` validated and completed with the defaults of the stage's ``__init__``
    (raises pydantic's ValidationError for unknown options and wrong types)."""
    validated = _options_model(get_stage_class(stage_name)).model_validate(options)
    return {k: getattr(validated, k) for k in type(validated).model_fields}


def _options_model(cls: type):
    """A pydantic model of a stage's keyword options (unknown keys and wrong types fail)."""
    fields = {}
    for name, p in stage_options(cls).items():
        ann = p.annotation if p.annotation is not inspect.Parameter.empty else Any
        if isinstance(ann, str):  # `from __future__ import annotations`
            try:
                ann = eval(ann, vars(inspect.getmodule(cls)))  # noqa: S307 - our own annotations
            except Exception:
                ann = Any
        default = p.default if p.default is not inspect.Parameter.empty else ...
        fields[name] = (ann, default)
    return create_model(f"{cls.__name__}Options", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields)


def format_key(loc: tuple) -> str:
    """``("stages", 2, "langid", "threshold")`` -> ``stages[2].langid.threshold``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _did_you_mean(word: str, choices) -> str:
    import difflib
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (sub)model that holds ``loc``'s last key (for "did you mean")."""
    for part in loc[:-1]:
        f = model.model_fields.get(part) if isinstance(part, str) else None
        ann = f.annotation if f is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _pydantic_problems(e: ValidationError, model: type[BaseModel], file: str | None, prefix: str,
                       noun: str) -> list[ConfigError]:
    out = []
    for err in e.errors():
        loc = tuple(err["loc"])
        sub = format_key(loc)
        if err["type"] == "extra_forbidden":
            msg = f"unknown {noun}" + _did_you_mean(loc[-1], _fields_at(model, loc)) if loc else f"unknown {noun}"
        else:
            msg = err["msg"]
        key = f"{prefix}.{sub}" if prefix and sub else (prefix or sub)
        out.append(ConfigError(file, key or None, msg))
    return out


def _drop_key(data: dict, loc: tuple) -> bool:
    """Remove what ``loc`` points at (a list item: the whole list), so the rest can be validated."""
    if loc and isinstance(loc[-1], int):
        loc = loc[:-1]
    node: Any = data
    for part in loc[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node[part] = dict(node[part]) if isinstance(node[part], dict) else node[part]
        node = node[part]
    if isinstance(node, dict) and loc and loc[-1] in node:
        del node[loc[-1]]
        return True
    return False


def check_config(data: Any, *, file: str | None = None, first_only: bool = False
                 ) -> tuple[Optional[PipelineConfig], list[ConfigError]]:
    """Every problem of a config, not only the first: unknown keys, stages and options (with a
    "did you mean"), wrong types and values, and stages that cannot be built (a missing model
    file). Returns the config with the bad parts left out (their defaults; bad stages dropped),
    so later checks (inputs, run directory) can still run, and the problems in file order:
    stage entries, then the other keys, then stage construction. ``first_only``: stop at the first
    (what :func:`parse_config` raises)."""
    problems: list[ConfigError] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [ConfigError(file, None, f"top level must be a mapping, got {type(data).__name__}")]
    data = dict(data)
    raw_stages = data.get("stages") or []
    if not isinstance(raw_stages, list):
        problems.append(ConfigError(file, "stages", "must be a list of {stage_name: {options}}"))
        raw_stages = []
    specs, positions = [], []
    known: Optional[dict] = None
    for i, entry in enumerate(raw_stages):
        if first_only and problems:
            return None, problems
        key = f"stages[{i}]"
        if isinstance(entry, str):
            name, opts = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, opts = next(iter(entry.items()))
            opts = opts or {}
        else:
            problems.append(ConfigError(file, key, "each stage is `name` or `{name: {options}}`"))
            continue
        try:
            cls = get_stage_class(str(name))
        except KeyError:
            known = known if known is not None else registry()
            dym = _did_you_mean(name, known)
            problems.append(ConfigError(file, f"{key}.{name}", f"unknown stage {name!r}" + (f"{dym} " if dym else "; ")
                                        + f"known: {', '.join(sorted(known))} (or module:Class for your own)"))
            continue
        except StageError as e:
            problems.append(ConfigError(file, f"{key}.{name}", str(e)))
            continue
        if not isinstance(opts, dict):
            problems.append(ConfigError(file, f"{key}.{name}", f"options must be a mapping, got {type(opts).__name__}"))
            continue
        model = _options_model(cls)
        try:
            validated = model.model_validate(opts)
        except ValidationError as e:
            problems.extend(_pydantic_problems(e, model, file, f"{key}.{name}", "option"))
            continue
        # keep what the user wrote, with coerced types (StageSpec.resolved() adds the defaults)
        specs.append({"name": name, "options": {k: getattr(validated, k) for k in opts}})
        positions.append(i)
    if first_only and problems:
        return None, problems
    data["stages"] = specs
    cfg = None
    for _ in range(64):  # each round leaves out the keys that failed, so the rest is checked too
        try:
            cfg = PipelineConfig.model_validate(data)
            break
        except ValidationError as e:
            found = _pydantic_problems(e, PipelineConfig, file, "", "key")
            problems.extend(found)
            if first_only or not all([_drop_key(data, tuple(err["loc"])) for err in e.errors()]):
                return None, problems
    if cfg is None:
        return None, problems
    cfg.source_file = file
    # construct every stage once so bad values (thresholds, missing model files) fail now
    for i, s in zip(positions, cfg.stages):
        try:
            build_stage(s.name, s.resolved())
        except StageError as e:
            problems.append(ConfigError(file, f"stages[{i}].{s.name}", str(e)))
            if first_only:
                return None, problems
    return cfg, problems


def parse_config(data: Any, *, file: str | None = None) -> PipelineConfig:
    """The config as a typed model; raises :class:`ConfigError` for its first problem
    (``datapipe check`` lists them all: :func:`check_config`)."""
    cfg, problems = check_config(data, file=file, first_only=True)
    if problems:
        raise problems[0]
    assert cfg is not None
    return cfg


def read_config_file(path: str | Path, overrides: dict | None = None, *, overlay: str | Path | None = None) -> Any:
    """The YAML data of a config file (with top-level ``overrides``, and ``overlay``: an overlay
    file, :func:`load_overlay`, merged over its stage options); ConfigError if unreadable."""
    path = str(path)
    p = Path(path)
    if not p.is_file():
        raise ConfigError(path, None, "config file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(path, None, f"invalid YAML: {e}") from None
    if overrides:
        data = dict(data or {})
        for k, v in overrides.items():
            data[k] = v
    if overlay is not None:
        data = apply_overlay(data if isinstance(data, dict) else {}, load_overlay(overlay), file=str(overlay))
    return data


def load_config(path: str | Path, overrides: dict | None = None, *, overlay: str | Path | None = None) -> PipelineConfig:
    return parse_config(read_config_file(path, overrides, overlay=overlay), file=str(path))


# ---------------------------------------------------------------------------
# overlays: threshold changes kept apart from the config they apply to

def load_overlay(path: str | Path) -> dict:
    """An overlay file: ``stages: {label: {option: value}}`` (label = stage name, or ``name#2`` for
    its second use), as ``datapipe tune-filters`` writes it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(str(path), None, "overlay file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(str(path), None, f"invalid YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict) or set(data) - {"stages"}:
        raise ConfigError(str(path), None, "an overlay is `stages: {stage_label: {option: value}}`")
    for label, opts in data["stages"].items():
        if not isinstance(opts, dict):
            raise ConfigError(str(path), f"stages.{label}", "must be a mapping of options")
    return data


def stage_labels(raw_stages: list) -> list[str]:
    """``name`` for a stage's first use in a config, ``name#2`` ... for later ones (as refilter names them)."""
    seen: dict[str, int] = {}
    out = []
    for entry in raw_stages:
        name = entry if isinstance(entry, str) else next(iter(entry))
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def apply_overlay(data: dict, overlay: dict, *, file: str | None = None) -> dict:
    """Raw config ``data`` with the overlay's options merged over its stages' options (a new dict).
    An overlay stage that the config does not have is an error naming it."""
    data = dict(data or {})
    raw = list(data.get("stages") or [])
    labels = stage_labels(raw)
    for label in overlay.get("stages", {}):
        if label not in labels:
            raise ConfigError(file, f"stages.{label}", f"the config has no stage {label!r}; it has {', '.join(labels)}")
    out = []
    for label, entry in zip(labels, raw):
        name, opts = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        extra = overlay.get("stages", {}).get(label)
        out.append({name: merge_stage_options(opts or {}, extra)} if extra else entry)
    data["stages"] = out
    return data


def merge_stage_options(options: dict, changes: dict) -> dict:
    """``changes`` over ``options``; ``per_language`` merges per language and option, so an overlay
    for one language keeps the config's other languages."""
    out = dict(options, **{k: v for k, v in changes.items() if k != "per_language"})
    if isinstance(changes.get("per_language"), dict):
        pl = {k: dict(v) for k, v in (options.get("per_language") or {}).items()}
        for lang, opts in changes["per_language"].items():
            pl.setdefault(lang, {}).update(opts or {})
        out["per_language"] = pl
    return out
