"""arXiv reader (``input.format: arxiv``): LaTeX sources, a folder per paper or tarballs.

Layouts (all may be mixed inside an input folder):

- a **paper folder**: a folder holding the paper's ``.tex`` files (sub-folders allowed);
  an input folder whose sub-folders are paper folders is read as one shard;
- a **paper tarball**: ``<id>.tar.gz`` / ``.tgz`` / ``.tar`` (the arXiv "source" download),
  or ``<id>.gz`` that is a gzipped tar or a single gzipped ``.tex`` (arXiv serves both);
- an arXiv **bulk tar** (``arXiv_src_2301_001.tar``): ``<yymm>/<id>.gz`` members, each
  one paper as above.

A paper becomes one row: the main file (the one with ``\\documentclass``, preferring one
with ``\\begin{document}``, then ``main.tex``/``ms.tex``, then the largest) with
``\\input{}``/``\\include{}`` files inlined (depth <= 8); without a main file, all ``.tex``
files concatenated in name order. Bytes that are not UTF-8 are read as Latin-1 (counter
``latin1_decoded``). The raw LaTeX goes to ``text`` (``content_type`` ``text/x-tex``);
the ``arxiv_clean`` stage applies LLaMA's cleaning. Columns: ``title`` (``\\title{}``),
``source_detail`` (``arxiv:<id>`` or the folder name), ``url`` (``https://arxiv.org/abs/<id>``
when the name is an arXiv id). Skipped: papers with no ``.tex`` (``no_tex``: PDF-only
submissions), unreadable archives (``bad_archive``).

``datasets`` exports (``.parquet``/``.jsonl``, e.g. RedPajama's arXiv: ``text`` + ``meta``)
are read as rows with text already cleaned or not, as the file holds them.
"""
from __future__ import annotations

import bz2
import gzip
import io
import os
import re
import tarfile
from typing import Iterator, Optional

import fsspec
import pyarrow as pa

from ..stats import StageStats
from ._common import batched, count, is_export
from .tabular import iter_export_batches

EXTRA = {"title": pa.string(), "source_detail": pa.string()}
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".gz", ".tar.bz2")
_ARXIV_ID = re.compile(r"^(\d{4}\.\d{4,5}(?:v\d+)?|[a-z-]+(?:\.[A-Z]{2})?/?\d{7}(?:v\d+)?)$")
_INPUT = re.compile(r"\\(?:input|include)\s*\{([^}]+)\}|\\input\s+([^\s{}\\%]+)")
_TITLE = re.compile(r"\\title\s*(?:\[[^\]]*\])?\s*\{((?:[^{}]|\{[^{}]*\})*)\}", re.S)


def _decode(data: bytes, stats: StageStats) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        stats.counters["latin1_decoded"] = stats.counters.get("latin1_decoded", 0) + 1
        return data.decode("latin-1")


def assemble(files: dict[str, str]) -> Optional[str]:
    """One LaTeX document from a paper's ``{relative path: text}`` (``.tex`` files only)."""
    if not files:
        return None
    mains = [p for p, t in files.items() if "\\documentclass" in t or "\\documentstyle" in t]
    if not mains:
        return "\n".join(files[p] for p in sorted(files))

    def rank(p: str):
        t = files[p]
        return ("\\begin{document}" not in t, os.path.basename(p) not in ("main.tex", "ms.tex", "paper.tex"), -len(t))
    main = sorted(mains, key=rank)[0]
    norm = {os.path.normpath(p): t for p, t in files.items()}

    def inline(text: str, base: str, depth: int) -> str:
        if depth > 8:
            return text

        def repl(m: re.Match) -> str:
            name = (m.group(1) or m.group(2) or "").strip()
            cand = [os.path.normpath(os.path.join(base, name)), os.path.normpath(name)]
            cand += [c + ".tex" for c in cand]
            for c in cand:
                if c in norm:
                    return inline(norm[c], base, depth + 1)
            return m.group(0)
        return _INPUT.sub(repl, text)
    return inline(files[main], os.path.dirname(main), 0)


def _paper_id(name: str) -> tuple[str, Optional[str]]:
    base = os.path.basename(name.rstrip("/"))
    for s in TARBALL_SUFFIXES:
        if base.lower().endswith(s):
            base = base[: -len(s)]
            break
    # old-style ids lose their slash in file names: hep-th9901001 -> hep-th/9901001
    m = re.fullmatch(r"([a-z-]+(?:\.[A-Z]{2})?)(\d{7}(?:v\d+)?)", base)
    aid = f"{m.group(1)}/{m.group(2)}" if m else base
    return base, (aid if _ARXIV_ID.match(aid) else None)


def _row(name: str, files: dict[str, str], *, source: str, stats: StageStats) -> Optional[dict]:
    stats.rows_in += 1
    text = assemble(files)
    if not text or not text.strip():
        count(stats, "no_tex")
        return None
    base, aid = _paper_id(name)
    m = _TITLE.search(text)
    title = " ".join(m.group(1).split()) if m else None
    stats.rows_out += 1
    stats.bytes_out += len(text.encode("utf-8", "replace"))
    return {"id": f"arxiv/{aid or base}", "text": text, "source": source,
            "url": f"https://arxiv.org/abs/{aid}" if aid else None, "content_type": "text/x-tex",
            "title": title, "source_detail": f"arxiv:{aid or base}"}


def _tex_from_tar(tf: tarfile.TarFile, stats: StageStats) -> dict[str, str]:
    out = {}
    for m in tf.getmembers():
        if m.isfile() and m.name.lower().endswith(".tex"):
            fh = tf.extractfile(m)
            if fh is not None:
                out[m.name] = _decode(fh.read(), stats)
    return out


def _unpack(data: bytes) -> bytes:
    """gzip / bzip2 by magic bytes (arXiv names gzipped tars ``.gz``), else as is."""
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    return data


def _paper_from_bytes(name: str, data: bytes, stats: StageStats) -> dict[str, str]:
    """A paper's .tex files from the bytes of ``<id>.gz`` / ``.tar.gz`` / ``.tar``."""
    data = _unpack(data)
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            return _tex_from_tar(tf, stats)
    except tarfile.ReadError:
        # a single gzipped .tex file (or a PDF, which has no LaTeX to offer)
        if data[:5] == b"%PDF-":
            return {}
        return {os.path.basename(name) + ".tex": _decode(data, stats)}


def iter_tarball_rows(path: str, *, source: str, stats: StageStats) -> Iterator[dict]:
    with fsspec.open(path, "rb") as fh:
        data = fh.read()
    raw = _unpack(data)
    try:
        tf = tarfile.open(fileobj=io.BytesIO(raw))
    except tarfile.ReadError:
        row = _row(path, _paper_from_bytes(path, data, stats), source=source, stats=stats)
        if row:
            yield row
        return
    with tf:
        members = [m for m in tf.getmembers() if m.isfile()]
        nested = [m for m in members if m.name.lower().endswith((".gz", ".tar", ".tgz"))]
        if nested and not any(m.name.lower().endswith(".tex") for m in members):
            # bulk tar: one paper per member
            for m in nested:
                fh = tf.extractfile(m)
                try:
                    files = _paper_from_bytes(m.name, fh.read(), stats) if fh else {}
                except (OSError, EOFError, tarfile.TarError):
                    stats.rows_in += 1
                    count(stats, "bad_archive")
                    continue
                row = _row(m.name, files, source=source, stats=stats)
                if row:
                    yield row
        else:
            row = _row(path, _tex_from_tar(tf, stats), source=source, stats=stats)
            if row:
                yield row


def _folder_files(d: str, stats: StageStats) -> dict[str, str]:
    out = {}
    for dp, dirs, fs in os.walk(d):
        dirs.sort()
        for f in sorted(fs):
            if f.lower().endswith(".tex"):
                full = os.path.join(dp, f)
                with open(full, "rb") as fh:
                    out[os.path.relpath(full, d)] = _decode(fh.read(), stats)
    return out


def _has_tex_top(d: str) -> bool:
    return any(f.lower().endswith(".tex") for f in os.listdir(d))


def iter_folder_rows(path: str, *, source: str, stats: StageStats) -> Iterator[dict]:
    """A paper folder, or a folder of paper folders (and tarballs are their own inputs)."""
    if _has_tex_top(path):
        row = _row(path, _folder_files(path, stats), source=source, stats=stats)
        if row:
            yield row
        return
    for name in sorted(os.listdir(path)):
        sub = os.path.join(path, name)
        if os.path.isdir(sub) and not name.startswith("."):
            row = _row(sub, _folder_files(sub, stats), source=source, stats=stats)
            if row:
                yield row


def expand_input(spec: str) -> list[str]:
    """A folder -> its tarballs (one shard each) plus the folder itself when it holds paper
    folders or ``.tex`` files (one shard for all of them)."""
    if not os.path.isdir(spec):
        return [os.path.abspath(spec)]
    spec = os.path.abspath(spec)
    if _has_tex_top(spec):
        return [spec]
    out = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(spec) for f in fs
                 if not f.startswith(".") and f.lower().endswith(TARBALL_SUFFIXES + (".parquet", ".jsonl")))
    if any(os.path.isdir(os.path.join(spec, n)) and any(
            f.lower().endswith(".tex") for _, _, fs in os.walk(os.path.join(spec, n)) for f in fs)
           for n in os.listdir(spec)):
        out.append(spec)
    return out or [spec]


def iter_batches(path: str, *, input_cfg, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    if is_export(path):
        yield from iter_export_batches(path, source=input_cfg.source, batch_size=batch_size, stats=stats,
                                       text_candidates=(input_cfg.text_field, "text"), rename={}, extra=EXTRA)
        return
    if os.path.isdir(path):
        rows = iter_folder_rows(path, source=input_cfg.source, stats=stats)
    else:
        rows = iter_tarball_rows(path, source=input_cfg.source, stats=stats)
    yield from batched(rows, batch_size, EXTRA)
