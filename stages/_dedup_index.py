"""A persistent dedup index: what earlier runs kept, so a new snapshot is deduplicated against them.

``dedup_exact`` and ``dedup_minhash`` take ``index: PATH``. The folder holds *generations*,
one per run that appended to it, and one manifest that lists them::

    PATH/manifest.json          format, workflow, dedup parameters, partitions, generations
    PATH/g=000000-<tag>/...     one generation: the workflow's partition files (see each
                                workflow), written in full before the manifest names it

Appending is atomic: a run writes its generation folder, then replaces ``manifest.json`` with
one that names it (temp file + rename). A crash before the rename leaves the index as it was
(the orphan folder is ignored and removed by the next append); a crash after it leaves the
new generation in. A re-run of the *same* documents (a resumed run that crashed after the
commit) is recognised by the generation's fingerprint of its documents' ids: it reads the
index without that generation and does not append it twice. Only the last generation is
matched so: a run of documents an earlier generation already holds finds them all indexed
(dropped); to rebuild an index, start a new folder and run the snapshots again in order.

The dedup parameters (``params``) are part of the index: a run with other parameters would
compare hashes that mean other things, so it stops with a config error naming both.
Readers and writers of one index must not run at the same time (one writer per index).
Readers scan the index's files with their own keys as the filter (Arrow dataset push-down
per batch), so a task holds its matches, never a whole generation.
"""
from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np

from datapipe.rundir import atomic_write_json
from datapipe.stage import StageError

FORMAT = "datapipe-dedup-index/1"
#: run gids are ``shard << 32 | row`` with shard < 2^30; index nodes live above them
INDEX_GID_BASE = np.int64(1) << np.int64(62)
#: fault injection for tests: ``before_commit`` raises after the generation is written,
#: before the manifest names it (a crash mid-append)
FAULT_ENV = "DATAPIPE_INDEX_FAULT"


class IndexFault(RuntimeError):
    """Raised by the fault injection of :data:`FAULT_ENV` (tests only)."""


def fingerprint(ids: Iterable[str]) -> str:
    """Order-independent fingerprint of a run's document ids (xxh3-64 of each, summed, and the count)."""
    import xxhash
    total, n = 0, 0
    for s in ids:
        total = (total + xxhash.xxh3_64_intdigest(s.encode("utf-8"))) & 0xFFFFFFFFFFFFFFFF
        n += 1
    return f"{n}:{total:016x}"


class DedupIndex:
    """One index folder: open (or create) it for a workflow with given parameters.

    ``generations``: the folders a run reads (the committed ones, minus a generation with the
    run's own fingerprint); ``base``: the first node number the run's documents get."""

    def __init__(self, path: str | Path, *, workflow: str, params: dict, partitions: int | None = None):
        self.path = Path(path)
        self.workflow = workflow
        self.params = dict(params)
        self.manifest_path = self.path / "manifest.json"
        if self.manifest_path.exists():
            try:
                m = json.loads(self.manifest_path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise StageError(f"{workflow}: index {self.path}: unreadable manifest.json ({e})") from None
            if m.get("format") != FORMAT:
                raise StageError(f"{workflow}: index {self.path}: format {m.get('format')!r}, expected {FORMAT!r}")
            if m.get("workflow") != workflow:
                raise StageError(f"{workflow}: index {self.path} was built by {m.get('workflow')!r}; "
                                 f"use a separate index folder per dedup workflow")
            if m.get("params") != self.params:
                diff = {k: (m.get("params", {}).get(k), self.params.get(k))
                        for k in sorted(set(m.get("params", {})) | set(self.params))
                        if m.get("params", {}).get(k) != self.params.get(k)}
                raise StageError(f"{workflow}: index {self.path} was built with other dedup parameters "
                                 f"(index vs this run: {diff}); use the index's parameters or a new index folder")
            self.manifest = m
        else:
            self.manifest = {"format": FORMAT, "workflow": workflow, "params": self.params,
                             "partitions": partitions, "generations": [], "nodes": 0}
        self.own: dict | None = None

    @property
    def partitions(self) -> int | None:
        return self.manifest.get("partitions")

    def exclude_fingerprint(self, fp: str) -> None:
        """Leave out a committed generation of these very documents (a re-run after a crash that
        came after the commit); the run then re-appends it in the same place."""
        gens = self.manifest["generations"]
        if gens and gens[-1]["fingerprint"] == fp:
            self.own = gens[-1]

    @property
    def generations(self) -> list[Path]:
        return [self.path / g["dir"] for g in self.manifest["generations"] if g is not self.own]

    @property
    def base(self) -> int:
        """Node number of the run's first document."""
        return int(self.own["base"]) if self.own is not None else int(self.manifest.get("nodes", 0))

    def new_generation(self) -> Path:
        """A fresh folder for this run's generation; orphans of crashed appends are removed."""
        self.path.mkdir(parents=True, exist_ok=True)
        listed = {g["dir"] for g in self.manifest["generations"]}
        for p in self.path.glob("g=*"):
            if p.name not in listed:
                shutil.rmtree(p, ignore_errors=True)
        n = len(self.manifest["generations"]) - (1 if self.own is not None else 0)
        d = self.path / f"g={n:06d}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d

    def commit(self, gen_dir: Path, *, fp: str, docs: int, info: dict | None = None) -> None:
        """Name ``gen_dir`` in the manifest (atomic rename): the append's only commit point."""
        import os
        if os.environ.get(FAULT_ENV) == "before_commit":
            raise IndexFault(f"{FAULT_ENV}=before_commit: crash injected before the manifest names {gen_dir.name}")
        gens = [g for g in self.manifest["generations"] if g is not self.own]
        entry = {"dir": gen_dir.name, "fingerprint": fp, "base": self.base, "docs": int(docs),
                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())} | (info or {})
        m = dict(self.manifest, generations=gens + [entry], nodes=self.base + int(docs))
        atomic_write_json(self.manifest_path, m)
        if self.own is not None:
            shutil.rmtree(self.path / self.own["dir"], ignore_errors=True)
        self.manifest, self.own = m, None

    def files(self, sub: str) -> list[str]:
        """Parquet files under ``<generation>/<sub>`` of every generation read."""
        from datapipe.workflow import list_parquet
        out: list[str] = []
        for g in self.generations:
            out += list_parquet(g / sub)
        return out
