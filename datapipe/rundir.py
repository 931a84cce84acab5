"""Run directory layout, atomic writes and completion markers.

    runs/<name>/
      config.yaml              the resolved config that ran
      shards.json              input shard key -> input path
      output/                  final Parquet shards (zstd)
      work/<NN>-<step>/        outputs of intermediate steps (before a workflow)
      stats/<step>/<stage>/<shard>.json   one file per (stage, shard), written as it finishes
      stats.json               merged stats of the whole run (also after resume)
      rejects/<stage>/<reason>.jsonl      samples of dropped documents (url + excerpt)
      lineage/<step>/<shard>.parquet      every dropped document: stage, reason, scores (datapipe.lineage)
      lineage/kept.parquet                every kept document and its output file
      _done/<step>/<shard>     completion markers
      _tmp/                    in-progress writes, removed on start

Every file is written to a temporary name in the same directory and renamed into
place, so a reader (or a resumed run) never sees a partial file.

A run directory may also be an object-store URL (``s3://bucket/run``, any fsspec URL): the
driver then works in a local *staging* copy (``$DATAPIPE_STAGING_DIR``, default
``~/.cache/datapipe/staging``) that :class:`ObjectStoreMirror` rebuilds from the URL when a
run starts (so a resume, from any machine, starts from what the store holds) and pushes to it
as the run commits. Object stores have no atomic rename, so the commit point is the marker:
a shard's or step's files are uploaded first and its ``_done`` marker last (:meth:`RunDir.commit`);
files without a marker are redone by the next run, as on local disk.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; run files are for everyone to read
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n")


def write_parquet_atomic(table: pa.Table, path: str | Path, *, compression: str | None = "zstd",
                         row_group_rows: int | None = None) -> int:
    """Write ``table`` to ``path`` via a temp file + rename; returns bytes written.

    ``compression``: a Parquet codec, or ``"none"``/None. ``row_group_rows``: rows per row group
    (default: pyarrow's); token streams set it because the loader reads by row group. ``path``
    may be a URL (:func:`is_url`): the file is then one upload, which an object store shows whole
    or not at all."""
    if is_url(path):
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, compression=None if compression == "none" else compression,
                       row_group_size=row_group_rows)
        data = buf.getvalue().to_pybytes()
        write_file(path, data)
        return len(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp, compression=None if compression == "none" else compression,
                       row_group_size=row_group_rows)
        size = tmp.stat().st_size
        os.replace(tmp, path)
        return size
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def shard_key(path: str) -> str:
    """A stable, filesystem-safe key for an input shard: basename + hash of the full path.

    A byte range of a file (``<path>#records=<start>-<end>``, ``#streams=``: see
    ``datapipe.io._common.range_spec``) is keyed ``<basename>.<start, 12 digits>-<hash>``: its
    output files then sort in file order, so the rows of a file read as ranges come in the order
    they come in read whole (the dedup workflows number documents in that order)."""
    from .io._common import split_range_spec
    real, start, _ = split_range_spec(path)
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(real.rstrip("/")))[-80:] or "shard"
    if start is not None:
        base = f"{base}.{start:012d}"
    return f"{base}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:=-]+", "_", s)[:150] or "_"


def is_url(path: str | Path) -> bool:
    """A run directory (or file) on a remote filesystem: ``s3://...``, any fsspec URL but ``file://``."""
    s = str(path)
    return "://" in s and not s.startswith("file://")


# Places that are a local folder or a URL alike: what the engine's workers write a wave into
# (``RUN_DIR/_tmp/...``, on the store itself when the run directory is on one).

def location(path: str | Path) -> str | Path:
    """``path`` as a URL string, or a local ``Path``."""
    return str(path).rstrip("/") if is_url(path) else Path(path)


def join(base: str | Path, *parts: str) -> str | Path:
    """``base / parts``, for a local folder or a URL."""
    return "/".join([str(base).rstrip("/"), *parts]) if is_url(base) else Path(base).joinpath(*parts)


def parent(path: str | Path) -> str | Path:
    return str(path).rstrip("/").rsplit("/", 1)[0] if is_url(path) else Path(path).parent


def write_file(path: str | Path, data: bytes) -> None:
    """Write a whole file: atomically on local disk, as one upload (seen whole or not at all) on a store."""
    if is_url(path):
        import fsspec
        fs, p = fsspec.core.url_to_fs(str(path))
        fs.pipe_file(p, data)  # not fsspec.open(..., "wb"): its auto_mkdir would create a missing bucket
    else:
        atomic_write_bytes(path, data)


def list_files(folder: str | Path, suffix: str) -> list[str]:
    """Files of ``folder`` (not below it) whose names end with ``suffix``, sorted; none when it
    does not exist. Dot files (temp files of atomic writes) are left out."""
    if is_url(folder):
        import fsspec
        fs, base = fsspec.core.url_to_fs(str(folder))
        try:
            fs.invalidate_cache(base)  # workers add files while the driver watches
            names = fs.ls(base, detail=False)
        except FileNotFoundError:
            return []
        proto = str(folder).split("://", 1)[0]
        return sorted(f"{proto}://{n}" for n in names
                      if n.endswith(suffix) and not n.rsplit("/", 1)[-1].startswith("."))
    d = Path(folder)
    return sorted(str(p) for p in d.glob(f"*{suffix}") if not p.name.startswith(".")) if d.is_dir() else []


def read_file(path: str | Path) -> bytes:
    if is_url(path):
        import fsspec
        with fsspec.open(str(path), "rb") as fh:
            return fh.read()
    return Path(path).read_bytes()


#: the file in a staging folder that names the URL it mirrors (never uploaded)
REMOTE_FILE = ".datapipe-remote"


def staging_root() -> Path:
    """Where staging copies of remote run directories live: ``$DATAPIPE_STAGING_DIR``, else
    the user's cache (``$XDG_CACHE_HOME`` or ``~/.cache``) ``/datapipe/staging``."""
    env = os.environ.get("DATAPIPE_STAGING_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "datapipe" / "staging"


def staging_dir(url: str) -> Path:
    """The staging folder of the run directory at ``url``: readable name + hash of the URL."""
    url = url.rstrip("/")
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1])[-80:]
    return staging_root() / f"{tail}-{hashlib.sha1(url.encode()).hexdigest()[:8]}"


class ObjectStoreMirror:
    """A remote run directory (``url``) and its local staging copy (``local``).

    :meth:`pull` makes the staging folder a copy of what the store holds (less ``_tmp/``);
    :meth:`push` uploads staging files, in the order given and each call after the previous
    one finished, so a caller that pushes a marker after its files commits them. Uploads and
    downloads of a call run concurrently (fsspec's batched ``put``/``get``)."""

    def __init__(self, url: str, local: str | Path):
        self.url = url.rstrip("/")
        self.local = Path(local)
        self._fs = None

    @property
    def fs(self):
        if self._fs is None:  # late: storage options (fsspec's config) are applied by then
            import fsspec
            self._fs, self._base = fsspec.core.url_to_fs(self.url)
        return self._fs

    @property
    def base(self) -> str:
        self.fs
        return self._base.rstrip("/")

    def remote(self, rel: str) -> str:
        """The filesystem path (no protocol) of ``rel`` in the remote run directory."""
        return f"{self.base}/{rel}" if rel else self.base

    def url_of(self, rel: str) -> str:
        return f"{self.url}/{rel}" if rel else self.url

    def rel(self, path: str | Path) -> str:
        return Path(path).resolve().relative_to(self.local.resolve()).as_posix()

    def list(self, rel: str = "") -> list[str]:
        """Files under ``rel`` in the store, relative to the run directory."""
        root = self.remote(rel)
        try:
            found = self.fs.find(root)
        except FileNotFoundError:
            return []
        n = len(self.base) + 1
        return sorted(p[n:] for p in found if p.startswith(self.base + "/") and len(p) > n)

    def pull(self, only: tuple[str, ...] = ()) -> int:
        """Replace the staging folder by a copy of the remote run directory (its files whose path
        starts with one of ``only``, all when empty); returns files copied."""
        shutil.rmtree(self.local, ignore_errors=True)
        self.local.mkdir(parents=True, exist_ok=True)
        (self.local / REMOTE_FILE).write_text(self.url + "\n")
        rels = [r for r in self.list() if not r.startswith("_tmp/") and (not only or r.startswith(only))]
        for r in rels:
            (self.local / r).parent.mkdir(parents=True, exist_ok=True)
        if rels:
            self.fs.get([self.remote(r) for r in rels], [str(self.local / r) for r in rels])
        return len(rels)

    def push(self, paths: Iterable[str | Path]) -> None:
        """Upload staging files (paths under ``local``); folders are uploaded whole; dot files
        (temp files of atomic writes, :data:`REMOTE_FILE`) never."""
        files: list[Path] = []
        for p in paths:
            p = Path(p)
            if p.is_dir():
                files.extend(f for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith("."))
            elif p.is_file() and not p.name.startswith("."):
                files.append(p)
        if files:
            self.fs.put([str(f) for f in files], [self.remote(self.rel(f)) for f in files])

    def fetch(self, rel: str, local: str | Path, *, skip: tuple[str, ...] = ()) -> None:
        """Download the files under ``rel`` into the folder ``local``, less those whose path
        below ``rel`` starts with one of ``skip``."""
        rels = [r[len(rel) + 1:] for r in self.list(rel)]
        rels = [r for r in rels if not r.startswith(skip)]
        for r in rels:
            (Path(local) / r).parent.mkdir(parents=True, exist_ok=True)
        if rels:
            self.fs.get([self.remote(f"{rel}/{r}") for r in rels], [str(Path(local) / r) for r in rels])

    def copy_in(self, pairs: list[tuple[str, Path]]) -> None:
        """``(URL in this store, staging path)``: copy each file within the store (no download and
        upload through this machine) to the staging path's place, and download it into staging."""
        if not pairs:
            return
        srcs = [self.fs._strip_protocol(u) for u, _ in pairs]
        dests = [self.remote(self.rel(p)) for _, p in pairs]
        self.fs.copy(srcs, dests)
        for _, p in pairs:
            Path(p).parent.mkdir(parents=True, exist_ok=True)
        self.fs.get(srcs, [str(p) for _, p in pairs])

    def delete(self, rels: Iterable[str], *, recursive: bool = False) -> None:
        """Remove files (or folders, ``recursive``) of the remote run directory; absent ones are fine."""
        targets = [self.remote(r) for r in rels]
        for t in targets:
            try:
                self.fs.rm(t, recursive=recursive)
            except FileNotFoundError:
                pass

    def clear(self) -> None:
        """Remove the whole remote run directory (``--fresh``)."""
        self.delete([""], recursive=True)


@contextmanager
def local_copy(url: str, *, only: tuple[str, ...] = ()) -> Iterator[Path]:
    """A throwaway local copy of the remote run directory ``url`` (its files under ``only``, all
    when empty) for what reads a local run directory (``datapipe why``, ``inspect``, ``show``,
    ``report``); removed afterwards. Never the staging copy, which a run on this machine may be
    writing. What is written into it and published goes to ``url`` (:class:`RunDir`)."""
    root = staging_root()
    root.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="_read-", dir=root))
    try:
        ObjectStoreMirror(url, d).pull(only=only)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class _Commit:
    """Files and markers of one commit (:meth:`RunDir.commit`)."""

    def __init__(self, rd: "RunDir"):
        self.rd = rd
        self.files: list[Path] = []
        self.copies: list[tuple[str, Path]] = []
        self.markers: list[Path] = []

    def add(self, *paths: str | Path) -> None:
        self.files.extend(Path(p) for p in paths)

    def move(self, src: str | Path, dest: Path) -> None:
        """Move a file a worker wrote (a local path, or a URL in the run directory's store) to
        ``dest`` in the run directory (a staging path when it is on a store)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if is_url(src):
            self.copies.append((str(src), dest))
        else:
            os.replace(src, dest)
            self.add(dest)

    def mark_done(self, step: str, shard: str, info: dict | None = None) -> None:
        self.markers.append(self.rd._write_marker(self.rd.marker(step, shard), info))

    def mark_step_complete(self, step: str) -> None:
        self.markers.append(self.rd._write_marker(self.rd.root / "_done" / f"{step}.complete", None))


class RunDir:
    """A run directory: a local folder, or an object-store URL worked on through a local staging
    copy (see the module docstring). ``root`` is always local; ``url`` is the URL or None;
    ``name`` is what messages call it."""

    def __init__(self, root: str | Path):
        self.url: str | None = None
        self.mirror: ObjectStoreMirror | None = None
        if is_url(root):
            self.url = str(root).rstrip("/")
            self.root = staging_dir(self.url)
            self.mirror = ObjectStoreMirror(self.url, self.root)
        else:
            self.root = Path(str(root).removeprefix("file://"))
            remote = self.root / REMOTE_FILE
            # a staging copy (under staging_root(): a copy moved elsewhere is a plain local run
            # directory): what is written into it goes to its URL too
            if remote.is_file() and self.root.resolve().is_relative_to(staging_root().resolve()):
                self.url = remote.read_text().strip()
                self.mirror = ObjectStoreMirror(self.url, self.root)

    @property
    def name(self) -> str:
        return self.url or str(self.root)

    # object store -----------------------------------------------------------
    def pull(self) -> None:
        """A remote run directory: make the staging copy what the store holds (no-op when local)."""
        if self.mirror is not None:
            self.mirror.pull()

    def publish(self, *paths: str | Path) -> None:
        """Upload files or folders written in the staging copy (no-op for a local run directory)."""
        if self.mirror is not None:
            self.mirror.push(paths)

    def unpublish(self, *paths: str | Path, recursive: bool = False) -> None:
        """Remove from the store what was removed from the staging copy (no-op when local)."""
        if self.mirror is not None:
            self.mirror.delete([self.mirror.rel(p) for p in paths], recursive=recursive)

    @contextmanager
    def commit(self) -> Iterator[_Commit]:
        """Collect files (``c.add``) and markers (``c.mark_done``, ``c.mark_step_complete``); on a
        remote run directory the files are uploaded when the block ends, the markers after them."""
        c = _Commit(self)
        yield c
        if self.mirror is not None:
            self.mirror.push(c.files)
            self.mirror.copy_in(c.copies)
            self.mirror.push(c.markers)

    # layout ---------------------------------------------------------------
    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def stats_dir(self) -> Path:
        return self.root / "stats"

    @property
    def rejects_dir(self) -> Path:
        return self.root / "rejects"

    @property
    def tmp(self) -> Path:
        return self.root / "_tmp"

    def step_output(self, step: str, final: bool) -> Path:
        return self.output if final else self.root / "work" / step

    def marker(self, step: str, shard: str) -> Path:
        return self.root / "_done" / step / shard

    def stats_file(self, step: str, stage: str, shard: str) -> Path:
        return self.stats_dir / step / safe_name(stage) / f"{shard}.json"

    # markers --------------------------------------------------------------
    def _write_marker(self, path: Path, info: dict | None) -> Path:
        atomic_write_json(path, info or {})
        return path

    def mark_done(self, step: str, shard: str, info: dict | None = None) -> None:
        with self.commit() as c:
            c.mark_done(step, shard, info)

    def done_shards(self, step: str) -> set[str]:
        d = self.root / "_done" / step
        return {p.name for p in d.iterdir() if not p.name.startswith(".")} if d.is_dir() else set()

    def step_complete(self, step: str) -> bool:
        return (self.root / "_done" / f"{step}.complete").exists()

    def mark_step_complete(self, step: str) -> None:
        with self.commit() as c:
            c.mark_step_complete(step)

    def wave_tmp(self, name: str) -> str | Path:
        """Where the engine's workers write a wave (``_tmp/<name>``): on the store itself when the
        run directory is on one, so that workers on every node reach it."""
        return self.mirror.url_of(f"_tmp/{name}") if self.mirror is not None else self.tmp / name

    def remote_path(self, path: Path) -> str:
        """A file of the run directory as workers on other nodes reach it: its URL on a store."""
        return self.mirror.url_of(self.mirror.rel(path)) if self.mirror is not None else str(path)

    def clean_tmp(self) -> None:
        """Start a run clean: the temp folder, and temp files of atomic writes that a killed run
        left half-written (``.NAME.XXXXXXXX.tmp``; the renamed files are the only real ones)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.mirror is not None:
            self.mirror.delete(["_tmp"], recursive=True)
        for p in self.root.rglob(".*.tmp"):
            p.unlink(missing_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def output_files(self, step_dir: Path | None = None) -> list[Path]:
        d = step_dir or self.output
        return sorted(p for p in d.rglob("*.parquet") if not p.name.startswith("."))
