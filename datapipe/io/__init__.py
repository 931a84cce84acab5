"""Input resolution and readers. Every reader yields ``pa.Table`` batches in the
document schema and counts what it skipped, by reason, into a ``StageStats``
named ``read``.

Inputs may be files, directories, globs, CommonCrawl ``*.paths(.gz)`` listings
(relative entries are prefixed with ``base_url``), or remote URLs that fsspec
understands (``https://``, ``s3://``).

Non-crawl sources (``input.format``): ``mediawiki`` (Wikipedia XML dumps and ``datasets``
exports, :mod:`.wikipedia`), ``code`` (repository trees, :mod:`.code`), ``books``
(Gutenberg-style text, :mod:`.books`), ``arxiv`` (LaTeX folders and tarballs, :mod:`.arxiv`),
``stackexchange`` (``Posts.xml``, :mod:`.stackexchange`). For these a local folder or file
is expanded by the format's own ``expand_input`` (a repository or a folder of paper folders
is one shard; a folder of dumps gives one shard per dump, and a Wikimedia multistream dump
with its index beside it one shard per ~32 MiB run of bz2 streams, named
``<path>#streams=<start>-<end>``: not a file name, only the format's reader opens it).
"""
from __future__ import annotations

import glob
import gzip
import os
import re
from typing import Iterator

import fsspec
import pyarrow as pa

from ..stats import StageStats
from ._common import InputError  # noqa: F401 - public here as datapipe.io.InputError

WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz", ".wet", ".wet.gz", ".warc.wet", ".warc.wet.gz", ".wat", ".wat.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
TEXT_SUFFIXES = (".txt", ".txt.gz")
KNOWN_SUFFIXES = WARC_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES + TEXT_SUFFIXES


def apply_storage_options(options: dict[str, dict] | None) -> None:
    """Make ``{protocol: {option: value}}`` fsspec's defaults for those protocols in this process.

    The driver (listing, globbing) and every read task call this with ``input.storage_options``,
    so options such as ``s3: {endpoint_url: ..., anon: true}`` reach all the places that open a
    remote file, however deep in a reader. Credentials are better left to the usual
    environment variables or files of the protocol's library (``AWS_*`` for s3fs).
    """
    for proto, opts in (options or {}).items():
        conf = fsspec.config.conf.setdefault(proto, {})
        conf.update(opts)


def _is_remote(p: str) -> bool:
    return "://" in p and not p.startswith("file://")


def _read_paths_listing(path: str, base_url: str) -> list[str]:
    with fsspec.open(path, "rb") as fh:
        data = fh.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line if ("://" in line or line.startswith("/")) else base_url.rstrip("/") + "/" + line)
    return out


#: formats whose module expands a local folder (or file) into its shards
SOURCE_FORMATS = ("mediawiki", "code", "books", "arxiv", "stackexchange")
_SOURCE_MODULES = {"mediawiki": "wikipedia", "code": "code", "books": "books", "arxiv": "arxiv",
                   "stackexchange": "stackexchange"}


def _source_module(fmt: str):
    import importlib
    return importlib.import_module(f"{__name__}.{_SOURCE_MODULES[fmt]}")


def resolve_inputs(specs: list[str], *, base_url: str = "https://data.commoncrawl.org/",
                   format: str = "auto") -> list[str]:
    """Expand files, folders, globs, ``*.paths(.gz)`` listings and URLs into a sorted file list
    (for the source formats, into the shards their ``expand_input`` names)."""
    files: list[str] = []
    expand = _source_module(format).expand_input if format in SOURCE_FORMATS else None
    for spec in specs:
        spec = str(spec)
        if spec.endswith((".paths", ".paths.gz")) or spec.endswith("paths.txt"):
            files.extend(_read_paths_listing(spec, base_url))
            continue
        if _is_remote(spec):
            if any(ch in spec for ch in "*?["):
                fs, _, paths = fsspec.get_fs_token_paths(spec)
                proto = spec.split("://", 1)[0]
                files.extend(f"{proto}://{p}" for p in sorted(paths))
            else:
                files.append(spec)
            continue
        if spec.startswith("file://"):
            spec = spec[len("file://"):]
        if expand is not None and any(ch in spec for ch in "*?[") and not os.path.exists(spec):
            found = sorted(glob.glob(spec, recursive=True))
            if not found:
                raise InputError(f"{spec}: glob matches nothing")
            for f in found:
                files.extend(expand(f))
            continue
        if expand is not None and os.path.exists(spec):
            found = expand(spec)
            if not found:
                raise InputError(f"{spec}: holds nothing that input.format {format} reads")
            files.extend(found)
            continue
        if os.path.isdir(spec):
            found = sorted(
                os.path.join(dp, f) for dp, _, fs in os.walk(spec) for f in fs
                if f.endswith(KNOWN_SUFFIXES) and not f.startswith(".")
            )
            # a crawl folder often holds sidecars (manifests, gold JSONL, notes): when it has
            # WARC/ARC/WET files, those are the input and the rest is ignored
            crawl = [f for f in found if f.lower().endswith(WARC_SUFFIXES)]
            if crawl and format in ("auto", "warc"):
                found = crawl
            if not found:
                raise InputError(f"{spec}: folder holds no WARC/ARC/WET/JSONL/Parquet/text files")
            files.extend(found)
        elif any(ch in spec for ch in "*?["):
            found = sorted(glob.glob(spec, recursive=True))
            found = [f for f in found if os.path.isfile(f)]
            if not found:
                raise InputError(f"{spec}: glob matches no files")
            files.extend(found)
        elif os.path.isfile(spec):
            files.append(os.path.abspath(spec))
        else:
            raise InputError(f"{spec}: no such file or folder")
    # de-duplicate, keep order stable
    seen, out = set(), []
    for f in files:
        f = os.path.abspath(f) if not _is_remote(f) else f
        if f not in seen:
            seen.add(f)
            out.append(f)
    if not out:
        raise InputError("no input files")
    return out


def detect_format(path: str, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    p = path.lower()
    if p.endswith(WARC_SUFFIXES):
        return "warc"
    if p.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if p.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if p.endswith(TEXT_SUFFIXES):
        return "text"
    base = os.path.basename(p)
    if base.startswith("posts.xml") or re.match(r".+[-.]posts\.xml", base):
        return "stackexchange"
    if ".xml" in base and ("pages-" in base or base.startswith(("enwiki", "simplewiki"))):
        return "mediawiki"
    return "warc"  # CommonCrawl listings sometimes lack suffixes; the WARC reader reports bad input


def read_shard(paths: list[str], *, input_cfg, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    """Yield batches for one shard (one input file, or the Parquet files of a previous step)."""
    from . import tabular
    for path in paths:
        fmt = detect_format(path, input_cfg.format)
        if fmt == "warc":
            from .warc import iter_warc_batches
            yield from iter_warc_batches(path, source=input_cfg.source, batch_size=batch_size,
                                         max_html_bytes=input_cfg.max_html_bytes, stats=stats)
        elif fmt == "jsonl":
            yield from tabular.iter_jsonl_batches(path, source=input_cfg.source, batch_size=batch_size,
                                                  text_field=input_cfg.text_field, stats=stats)
        elif fmt == "parquet":
            yield from tabular.iter_parquet_batches(path, source=input_cfg.source, batch_size=batch_size,
                                                    text_field=input_cfg.text_field, stats=stats)
        elif fmt == "text":
            yield from tabular.iter_text_batches(path, source=input_cfg.source, batch_size=batch_size, stats=stats)
        elif fmt in SOURCE_FORMATS:
            yield from _source_module(fmt).iter_batches(path, input_cfg=input_cfg, batch_size=batch_size, stats=stats)
        else:  # pragma: no cover - guarded by config validation
            raise InputError(f"unknown input format {fmt!r}")
