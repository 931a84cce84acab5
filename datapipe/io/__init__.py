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

A folder written by Hugging Face ``datasets`` (``Dataset.save_to_disk``: ``state.json``,
``dataset_info.json`` and ``data-*.arrow``; or a ``DatasetDict``'s, with ``dataset_dict.json``
and a folder per split) is expanded to its Arrow files, one shard each, read as ``arrow``
(:func:`saved_dataset_files`), local or remote.

Large crawl files are split the same way (:func:`split_crawl_files`, called by the runner on
the resolved list): a WARC/WET/ARC file larger than the range target becomes shards
``<path>#records=<start>-<end>``, record-aligned byte ranges cut by
:func:`.framing.record_ranges`, so one big file keeps every worker busy and a run does not
end on one straggling file. Reading the ranges gives the rows and ids of reading the file whole.
"""
from __future__ import annotations

import glob
import gzip
import json
import logging
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import fsspec
import pyarrow as pa

from ..stats import StageStats
from ._common import InputError  # noqa: F401 - public here as datapipe.io.InputError
from ._common import range_spec, split_range_spec

log = logging.getLogger(__name__)

WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz", ".wet", ".wet.gz", ".warc.wet", ".warc.wet.gz", ".wat", ".wat.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".json.zst", ".ndjson", ".ndjson.gz",
                  ".ndjson.zst")
PARQUET_SUFFIXES = (".parquet",)
ARROW_SUFFIXES = (".arrow",)
TEXT_SUFFIXES = (".txt", ".txt.gz", ".txt.zst", ".text", ".text.gz", ".text.zst")
KNOWN_SUFFIXES = WARC_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES + TEXT_SUFFIXES + ARROW_SUFFIXES


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


def saved_dataset_files(folder: str) -> list[str] | None:
    """The Arrow files of a folder written by ``datasets``' ``save_to_disk`` (a ``Dataset``: its
    ``state.json`` lists them in order; a ``DatasetDict``: each split's, in ``dataset_dict.json``'s
    order), or None when ``folder`` is not one. Local or remote (one small read per marker file)."""
    folder = folder.rstrip("/")
    fs, root = fsspec.core.url_to_fs(folder)

    def read_json(name: str):
        try:
            with fs.open(f"{root}/{name}", "rb") as fh:
                data = fh.read()
        except Exception:  # noqa: BLE001 - absent, or not readable as a file: not a saved dataset
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise InputError(f"{folder}/{name}: not valid JSON ({e})") from None

    state = read_json("state.json")
    if state is not None:
        names = [d["filename"] for d in state.get("_data_files") or []]
        if not names:
            raise InputError(f"{folder}: a saved dataset whose state.json lists no data files")
        return [f"{folder}/{n}" for n in names]
    splits = read_json("dataset_dict.json")
    if splits is not None:
        out: list[str] = []
        for split in splits.get("splits") or []:
            out.extend(saved_dataset_files(f"{folder}/{split}") or [])
        return out
    return None


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
    (for the source formats, into the shards their ``expand_input`` names). A byte-range shard
    (``<path>#records=a-b``, ``#streams=``, as a run's ``config.yaml`` records them) stays as it is."""
    files: list[str] = []
    expand = _source_module(format).expand_input if format in SOURCE_FORMATS else None
    for spec in specs:
        spec = str(spec)
        real, start, _ = split_range_spec(spec)
        if start is not None:
            # a shard of an earlier resolution (a run directory's config.yaml lists them): as it is
            if not _is_remote(real) and not os.path.isfile(real.removeprefix("file://")):
                raise InputError(f"{spec}: no such file")
            files.append(spec)
            continue
        if spec.endswith((".paths", ".paths.gz")) or spec.endswith("paths.txt"):
            files.extend(_read_paths_listing(spec, base_url))
            continue
        saved = None
        if format in ("auto", "arrow") and not any(ch in spec for ch in "*?[") and (
                os.path.isdir(spec.removeprefix("file://")) or (_is_remote(spec) and not spec.lower().endswith(KNOWN_SUFFIXES))):
            saved = saved_dataset_files(spec.removeprefix("file://"))
        if saved is not None:
            files.extend(saved)
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


def tabular_format(path: str) -> str | None:
    """``jsonl``, ``parquet`` or ``text`` from a file's suffix (compressed or not), else None."""
    p = split_range_spec(path)[0].lower()
    for fmt, suffixes in (("jsonl", JSONL_SUFFIXES), ("parquet", PARQUET_SUFFIXES), ("text", TEXT_SUFFIXES),
                          ("arrow", ARROW_SUFFIXES)):
        if p.endswith(suffixes):
            return fmt
    return None


def detect_format(path: str, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    p = split_range_spec(path)[0].lower()
    if p.endswith(WARC_SUFFIXES):
        return "warc"
    if tabular_format(p):
        return tabular_format(p)
    base = os.path.basename(p)
    if base.startswith("posts.xml") or re.match(r".+[-.]posts\.xml", base):
        return "stackexchange"
    if ".xml" in base and ("pages-" in base or base.startswith(("enwiki", "simplewiki"))):
        return "mediawiki"
    return "warc"  # CommonCrawl listings sometimes lack suffixes; the WARC reader reports bad input


#: ranges are not cut smaller than this to spread a run over ``min_shards`` (an explicit
#: ``shard_bytes`` below it wins): ~300 CommonCrawl records, seconds of extraction per range,
#: against a shard's fixed cost (a read task, Parquet files, stats files and markers per step)
MIN_RANGE_BYTES = 8 << 20
#: remote crawl files are cut only when a run names at most this many: each cut costs a few small
#: requests from the driver before the run starts (a few per GiB at the default target), while a run
#: over more files than that keeps every worker busy with whole files
REMOTE_SPLIT_MAX_FILES = 1000
_PLAN_THREADS = 16  # the planning is waiting on stat calls and small reads, not CPU


def range_target(total_bytes: int, *, shard_bytes: int, min_shards: int) -> int:
    """Bytes per range for a run whose crawl files hold ``total_bytes``: at most ``shard_bytes``
    (bounds a shard's time: the tail, and the work a crash loses), and small enough that the run
    has about ``min_shards`` shards (so every worker has work), but not under
    :data:`MIN_RANGE_BYTES` unless ``shard_bytes`` is. A function of the inputs and the config
    only, not of the machine: a resume on another cluster finds the same shards."""
    spread = max(MIN_RANGE_BYTES, math.ceil(total_bytes / max(1, min_shards)))
    return max(1, min(shard_bytes, spread))


def _size(path: str) -> int | None:
    try:
        if _is_remote(path):
            fs, p = fsspec.core.url_to_fs(path)
            return int(fs.size(p))
        return os.path.getsize(path)
    except Exception as e:  # the reader reports an unreadable file; planning never fails a run
        log.warning("%s: size unknown (%s: %s); read as one shard", path, type(e).__name__, e)
        return None


def shard_weight(paths: list[str]) -> int:
    """A shard's bytes (a range's length, a local file's size): what progress estimates time
    left from. Remote files count 1 MiB each rather than cost a request."""
    total = 0
    for spec in paths:
        path, start, end = split_range_spec(spec)
        if start is not None:
            total += end - start
        elif not _is_remote(path) and os.path.isfile(path):
            total += os.path.getsize(path)
        else:
            total += 1 << 20
    return max(1, total)


def _cut(path: str, size: int, target: int) -> list[tuple[int, int]]:
    from .framing import record_ranges
    n = math.ceil(size / target)
    try:
        return record_ranges(path, math.ceil(size / n))  # n even ranges, not n-1 and a scrap
    except Exception as e:
        log.warning("%s: not cut into byte ranges (%s: %s); read as one shard", path, type(e).__name__, e)
        return [(0, size)]


def split_crawl_files(files: list[str], *, format: str = "auto", shard_bytes: int,
                      min_shards: int) -> list[str]:
    """Replace each WARC/WET/ARC file of ``files`` larger than :func:`range_target` by its
    record-aligned byte ranges ``<path>#records=<start>-<end>`` (in place, in file order); other
    files, smaller ones, and those that cannot be cut (single-stream gzip, plain ARC, not
    seekable, unreadable: the reader reports them) stay whole. ``shard_bytes`` 0: no splitting.

    Runs in the driver before the run: a stat per crawl file and a few small reads per cut
    (16 at a time), so the shard keys, resume markers and the run's fingerprint know every range.
    """
    if shard_bytes <= 0:
        return list(files)
    crawl = [f for f in files if detect_format(f, format) == "warc" and split_range_spec(f)[1] is None]
    remote = sum(_is_remote(f) for f in crawl)
    if remote > REMOTE_SPLIT_MAX_FILES:
        log.info("%d remote crawl files: read whole (cutting them would cost requests before the run starts)", remote)
        crawl = [f for f in crawl if not _is_remote(f)]
    if not crawl:
        return list(files)
    with ThreadPoolExecutor(min(_PLAN_THREADS, len(crawl))) as pool:
        sizes = dict(zip(crawl, pool.map(_size, crawl)))
        target = range_target(sum(s for s in sizes.values() if s), shard_bytes=shard_bytes, min_shards=min_shards)
        big = [f for f in crawl if (sizes[f] or 0) > target]
        ranges = dict(zip(big, pool.map(lambda f: _cut(f, sizes[f], target), big)))
    out: list[str] = []
    for f in files:
        r = ranges.get(f)
        if r and len(r) > 1:
            out.extend(range_spec(f, "records", a, b) for a, b in r)
        else:
            out.append(f)
    if ranges:
        log.info("%d crawl file(s) cut into %d byte ranges of ~%.1f MiB", len(ranges),
                 sum(len(r) for r in ranges.values()), target / 2**20)
    return out


def read_shard(paths: list[str], *, input_cfg, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    """Yield batches for one shard (one input file, or the Parquet files of a previous step)."""
    from . import tabular
    for path in paths:
        fmt = detect_format(path, input_cfg.format)
        if fmt == "warc":
            from .warc import iter_warc_batches
            real, start, end = split_range_spec(path, "records")
            yield from iter_warc_batches(real, source=input_cfg.source, batch_size=batch_size,
                                         max_html_bytes=input_cfg.max_html_bytes, stats=stats,
                                         byte_range=None if start is None else (start, end))
        elif fmt == "jsonl":
            yield from tabular.iter_jsonl_batches(path, source=input_cfg.source, batch_size=batch_size,
                                                  text_field=input_cfg.text_field, stats=stats)
        elif fmt == "parquet":
            yield from tabular.iter_parquet_batches(path, source=input_cfg.source, batch_size=batch_size,
                                                    text_field=input_cfg.text_field, stats=stats)
        elif fmt == "arrow":
            yield from tabular.iter_arrow_batches(path, source=input_cfg.source, batch_size=batch_size,
                                                  text_field=input_cfg.text_field, stats=stats)
        elif fmt == "text":
            yield from tabular.iter_text_batches(path, source=input_cfg.source, batch_size=batch_size, stats=stats)
        elif fmt in SOURCE_FORMATS:
            yield from _source_module(fmt).iter_batches(path, input_cfg=input_cfg, batch_size=batch_size, stats=stats)
        else:  # pragma: no cover - guarded by config validation
            raise InputError(f"unknown input format {fmt!r}")
