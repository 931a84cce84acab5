"""The mixture spec: its YAML schema (pydantic models), validation with errors that name the file
and key, and :class:`MixError`. The format is described in :mod:`datapipe.mix`."""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union


class MixError(ValueError):
    """A bad mixture spec or input, with the file and key it is about when known."""


@functools.lru_cache(maxsize=1)
def spec_models():
    """``(MixSpec, Range)``: the spec's pydantic models (built on first use, so importing datapipe.mix does not import pydantic)."""
    from pydantic import BaseModel, ConfigDict, Field

    class _Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class Range(_Strict):
        min: Optional[float] = None
        max: Optional[float] = None

    Scalar = Union[str, int, float, bool]

    class GroupSpec(_Strict):
        name: str = Field(min_length=1)
        where: dict[str, Union[Range, list[Scalar], Scalar]] = Field(default_factory=dict)
        weight: Optional[float] = Field(default=None, ge=0)
        max_epochs: Optional[float] = Field(default=None, gt=0)
        rehydrate: bool = True             # false: this group's documents count once (no `rehydrate:` table)

    class RepeatRow(_Strict):
        min: int = Field(ge=1)             # cluster sizes [min, max); max null: no upper end
        max: Optional[int] = None
        repeat: int = Field(ge=0)          # copies of each document per epoch of its group

    class RehydrateSpec(_Strict):
        column: str = "dup_cluster_size"   # dedup_minhash's cluster size (null counts as 1)
        table: list[RepeatRow] = Field(min_length=1)

    class OutputSpec(_Strict):
        max_tokens_per_shard: int = Field(default=50_000_000, gt=0)
        max_rows_per_shard: int = Field(default=200_000, gt=0)
        row_group_rows: int = Field(default=1_000, gt=0)
        compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
        megatron: bool = False

    class MixSpec(_Strict):
        name: Optional[str] = None
        seed: int = 0
        mode: Literal["sampling", "budget"] = "sampling"
        weighting: Literal["explicit", "temperature", "unimax"] = "explicit"
        temperature: float = Field(default=1.0, gt=0)
        total_tokens: Optional[int] = Field(default=None, gt=0)
        max_epochs: Optional[float] = Field(default=None, gt=0)
        tokenizer: Optional[str] = None
        #: groups with a weight but no documents: "error", or "drop" them and renormalise the rest
        #: (LLaMA-1's table over whichever sources a user actually has)
        missing_groups: Literal["error", "drop"] = "error"
        groups: list[GroupSpec] = Field(min_length=1)
        #: FineWeb-2's rehydration: repeat documents by the size of their duplicate cluster
        rehydrate: Optional[RehydrateSpec] = None
        output: OutputSpec = Field(default_factory=OutputSpec)

    return MixSpec, Range


def parse_spec(data: Any, *, file: str | None = None, default_name: str = "mix"):
    """Validate a spec mapping; errors name the file and key."""
    from pydantic import ValidationError
    MixSpec, _ = spec_models()
    where = f"{file}: " if file else ""
    if not isinstance(data, dict):
        raise MixError(f"{where}a mixture spec is a mapping with `groups:`")
    try:
        spec = MixSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise MixError(f"{where}{loc}: {msg}") from None
    if spec.name is None:
        spec.name = default_name
    if not re.fullmatch(r"[A-Za-z0-9._-]+", spec.name):
        raise MixError(f"{where}name: {spec.name!r} must be a plain folder name (letters, digits, . _ -)")
    names = [g.name for g in spec.groups]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MixError(f"{where}groups: duplicate group name(s) {dup}")
    for i, g in enumerate(spec.groups):
        if spec.weighting == "explicit" and g.weight is None:
            raise MixError(f"{where}groups[{i}].weight: required with weighting: explicit")
        if spec.weighting != "explicit" and g.weight is not None:
            raise MixError(f"{where}groups[{i}].weight: weights come from weighting: {spec.weighting}; remove it")
    if spec.weighting == "explicit" and not sum(g.weight for g in spec.groups) > 0:
        raise MixError(f"{where}groups: weights sum to zero")
    if spec.rehydrate is not None:
        rows = sorted(spec.rehydrate.table, key=lambda r: r.min)
        for i, r in enumerate(rows):
            if r.max is not None and r.max <= r.min:
                raise MixError(f"{where}rehydrate.table: range [{r.min}, {r.max}) is empty")
            nxt = rows[i + 1] if i + 1 < len(rows) else None
            if nxt is not None and (r.max is None or r.max > nxt.min):
                raise MixError(f"{where}rehydrate.table: ranges [{r.min}, {r.max}) and [{nxt.min}, {nxt.max}) overlap")
    if spec.mode == "budget" and spec.total_tokens is None:
        raise MixError(f"{where}total_tokens: required by mode: budget")
    if spec.weighting == "unimax" and spec.total_tokens is None:
        raise MixError(f"{where}total_tokens: required by weighting: unimax")
    return spec


def repeat_counts(rehydrate, sizes: "np.ndarray") -> "np.ndarray":
    """Copies per document from its cluster size through the ``rehydrate`` table (sizes no row
    covers, and sizes < 1, repeat once)."""
    import numpy as np
    sizes = np.asarray(sizes, dtype=np.int64)
    out = np.ones(len(sizes), dtype=np.int64)
    for r in rehydrate.table:
        m = sizes >= r.min
        if r.max is not None:
            m &= sizes < r.max
        out[m] = r.repeat
    return out


def load_spec(path: str | Path):
    """Read and validate a spec YAML file; its name defaults to the file's stem."""
    import yaml
    p = Path(path)
    if not p.is_file():
        raise MixError(f"{path}: mixture spec not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise MixError(f"{path}: invalid YAML: {e}") from None
    return parse_spec(data, file=str(path), default_name=p.stem)
