"""What a run directory records of its config, and whether a re-run may resume it.

The run directory's ``config.yaml`` holds the config that ran with every stage option
resolved (defaults included) and the inputs expanded; ``fingerprint.json`` holds a hash
of the part that decides which rows come out (stages with options, input files, how they
are read, output layout; not the engine), the ``scheme`` it was computed under and, per
stage, the options the config file set (``options_set``; the others took defaults).

A re-run resumes when the fingerprints match. Otherwise :func:`resume_refusal` says why,
naming the first key that differs. When the only differences are defaults that changed
since the run started (an upgrade), it names stage, option, old and new value: pinning the
old value in the config resumes, ``--fresh`` starts over. An option the upgrade added, at
its default, does not block a resume (the run never had it). Run directories written
before options were resolved (no ``scheme``) resume when the config as written is
unchanged; under which defaults their finished shards ran is not recorded, so today's are
assumed and a warning says so.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import yaml

from .config import PipelineConfig, format_key

log = logging.getLogger("datapipe.resume")

#: fingerprint.json's ``scheme``: 2 = over resolved options; absent = over the options as written
FINGERPRINT_SCHEME = 2

_ABSENT = object()

#: input options outside the fingerprint: storage access, and the range planning whose result
#: (``<path>#records=a-b`` shards) the fingerprinted input list already holds
_NOT_FINGERPRINTED = ("storage_options", "shard_bytes", "min_shards")


def run_config(cfg: PipelineConfig, inputs: list[str], *, resolved: bool = True) -> dict:
    """The run directory's ``config.yaml`` data: every option resolved, inputs expanded, secrets
    masked; in its form after a YAML round trip, so a recorded and a fresh one compare equal."""
    d = cfg.to_yaml_dict(resolved=resolved)
    d["input"]["paths"] = list(inputs)
    return yaml.safe_load(yaml.safe_dump(d, sort_keys=False, allow_unicode=True))


def fingerprint_fields(run_cfg: dict) -> dict:
    """What must match for a re-run to resume, from ``config.yaml`` data: stages with options,
    input files, how they are read, output layout (not the engine: it changes no row)."""
    inp = dict(run_cfg.get("input") or {})
    return {"stages": run_cfg.get("stages") or [], "inputs": inp.pop("paths", None) or [],
            # how inputs are cut into shards is in the input list itself (byte ranges), and access
            # options change no row
            "input": {k: v for k, v in inp.items() if k not in _NOT_FINGERPRINTED},
            "output": run_cfg.get("output") or {}}


def digest(fields: dict) -> str:
    """The fingerprint of :func:`fingerprint_fields`' data."""
    return hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def legacy_fingerprint(cfg: PipelineConfig, inputs: list[str]) -> str:
    """The fingerprint of run directories written before options were resolved (no ``scheme``):
    stages with the options as written; kept byte for byte so those runs still resume."""
    d = {"stages": cfg.to_yaml_dict(resolved=False)["stages"], "inputs": inputs,
         "input": cfg.input.model_dump(exclude={"paths", *_NOT_FINGERPRINTED}), "output": cfg.output.model_dump()}
    return digest(d)


def differences(old, new, path: tuple = ()):
    """``(path, old value, new value)`` for every leaf where ``old`` and ``new`` differ, in order
    (``_ABSENT`` for a key or list item only one side has; lists of unequal length give their
    first differing item only)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            yield from differences(old.get(k, _ABSENT), new.get(k, _ABSENT), path + (k,))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            yield from differences(a, b, path + (i,))
    elif isinstance(old, list) and isinstance(new, list):
        i = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
        yield (path + (i,), old[i] if i < len(old) else _ABSENT, new[i] if i < len(new) else _ABSENT)
    elif old != new:
        yield (path, old, new)


def _val(v, limit: int = 80) -> str:
    if v is _ABSENT:
        return "(absent)"
    s = json.dumps(v, default=str)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _stage_option(path: tuple, old_stages: list, cfg: PipelineConfig) -> tuple[int, str, str] | None:
    """``(stage index, stage name, option)`` when ``path`` lies in an option of the same stage in
    the recorded and the new config (``stages[i].<name>.<option>...``), else None."""
    if len(path) < 4 or path[0] != "stages" or not isinstance(path[1], int):
        return None
    i, name, opt = path[1:4]
    if i >= len(cfg.stages) or cfg.stages[i].name != name or i >= len(old_stages) or name not in old_stages[i]:
        return None
    return i, name, opt


def fingerprint_record(cfg: PipelineConfig, fingerprint: str) -> dict:
    """``fingerprint.json``'s data for a run of ``cfg`` with ``fingerprint``."""
    return {"fingerprint": fingerprint, "scheme": FINGERPRINT_SCHEME,
            "options_set": [sorted(s.options) for s in cfg.stages]}


def resume_refusal(root: Path, cfg: PipelineConfig, inputs: list[str], run_cfg: dict, *,
                   name: str | None = None) -> str | None:
    """Why the run directory ``root`` cannot be resumed with ``cfg`` over ``inputs`` (``run_cfg``:
    their :func:`run_config`), or None when it can (also when it holds no run yet). ``name``:
    what messages call it (a remote run directory's URL; ``root`` is then its staging copy)."""
    fp_file = root / "fingerprint.json"
    shown = name or str(root)
    if not fp_file.exists():
        return None
    rec = json.loads(fp_file.read_text())
    old, now = rec.get("fingerprint"), fingerprint_fields(run_cfg)
    fingerprints = f"fingerprint {old} != {digest(now)}"
    if rec.get("scheme") == FINGERPRINT_SCHEME and old == digest(now):
        return None
    recorded = None
    if (root / "config.yaml").exists():
        recorded = fingerprint_fields(yaml.safe_load((root / "config.yaml").read_text()) or {})
    if rec.get("scheme") is None:  # written before options were resolved: compare what the user wrote
        if old == legacy_fingerprint(cfg, inputs):
            log.warning("%s was written by an older datapipe that recorded only the options the config "
                        "wrote; resuming on those (its finished shards are assumed to have run under "
                        "today's defaults)", shown)
            return None
        as_written = fingerprint_fields(run_config(cfg, inputs, resolved=False))
        return _mismatch(shown, fingerprints, list(differences(recorded, as_written)) if recorded else [])
    if recorded is None or digest(recorded) != old:  # config.yaml lost or edited: cannot say what differs
        return _mismatch(shown, fingerprints, [])
    set_before = rec.get("options_set") or []
    changed_defaults: dict[tuple[int, str, str], tuple] = {}
    others, added = [], []
    for path, a, b in differences(recorded, now):
        so = _stage_option(path, recorded["stages"], cfg)
        if so is None or so[2] in cfg.stages[so[0]].options or (so[0] < len(set_before) and so[2] in set_before[so[0]]):
            others.append((path, a, b))  # not a stage option, or one the config sets now or did set
            continue
        i, name, opt = so
        a, b = (st[i][name].get(opt, _ABSENT) for st in (recorded["stages"], now["stages"]))
        if b is _ABSENT:  # an option this datapipe no longer has
            others.append((path[:4], a, b))
        elif a is _ABSENT:  # an option this datapipe added, at its default: the run never had it
            added.append(format_key(path[:4]))
        else:
            changed_defaults[so] = (a, b)
    if others:
        return _mismatch(shown, fingerprints, others)
    if changed_defaults:
        what = "; ".join(f"stage {name} (stages[{i}]): option {opt} ran with {_val(a)}, its default is now {_val(b)}"
                         for (i, name, opt), (a, b) in changed_defaults.items())
        pins = ", ".join(f"stages[{i}].{name}.{opt}: {_val(a)}" for (i, name, opt), (a, _) in changed_defaults.items())
        return (f"{shown} holds a run under other defaults than this datapipe's ({what}); resuming would mix "
                f"shards decided under both values: pin the value that ran in your config to resume ({pins}), "
                "or pass --fresh to start over")
    log.info("%s: resuming; options this datapipe added, at their defaults: %s", shown, ", ".join(added))
    return None


def _mismatch(root: "Path | str", fingerprints: str, diffs: list) -> str:
    """The refusal for a run directory of another config or input, naming the first key that differs."""
    what = ""
    if diffs:
        path, a, b = diffs[0]
        more = f" (and {len(diffs) - 1} more difference(s))" if len(diffs) > 1 else ""
        what = f"{format_key(path)} was {_val(a)}, now {_val(b)}{more}; "
        if path[:1] == ("inputs",) and "#records=" in f"{a}{b}":
            what += "how large crawl files are cut into byte ranges changed (input.shard_bytes, input.min_shards); "
    return (f"{root} holds a run of a different config or input ({what}{fingerprints}); "
            "use another --run-dir, or --fresh to start over")
