"""Source-code reader (``input.format: code``): a directory tree of repositories, or a
``datasets`` export of files.

**Directory trees.** An input folder is either one repository (it holds a licence file, a
``.git`` folder or a ``repo.json``) or a folder of repositories, one per sub-folder; each
repository is one shard. Every file whose extension names a programming/markup language
(:data:`EXTENSIONS`, shared with the ``code_filter`` stage) becomes one
row. Skipped and counted: files over ``MAX_FILE_BYTES`` (``too_large``), files with NUL bytes
(``binary``), undecodable UTF-8 (``not_utf8``), empty files (``no_text``); folders like
``.git``, ``node_modules``, ``__pycache__`` and vendored dependencies are not entered.

Licence: the licence file of the nearest enclosing repository (``LICENSE*``, ``LICENCE*``,
``COPYING*``), identified by :func:`detect_license` (SPDX ids), unless ``repo.json`` names
``license``; ``repo.json`` may also give ``name`` and ``url`` (the repository's web URL).
Columns: ``repo``, ``path`` (relative to the repository), ``license`` (SPDX id, ``unknown``
when no licence file is found, ``other`` when one is found but not recognised),
``source_detail`` (``repo``), ``url`` (repository URL + ``/blob/HEAD/<path>`` when known).

**``datasets`` exports** (``.parquet``/``.jsonl``): text from ``content`` / ``code`` /
``text``; ``repo_name``/``max_stars_repo_name`` -> ``repo``, ``path``/``max_stars_repo_path``
-> ``path``, ``license``/``licenses``/``max_stars_repo_licenses`` -> ``license`` (first entry
of a list) — the layouts of codeparrot/github-code and bigcode/the-stack.
"""
from __future__ import annotations

import json
import os
import re
from typing import Iterator, Optional

import pyarrow as pa

from ..schema import set_column
from ..stats import StageStats
from ._common import batched, count, is_export
from .tabular import iter_export_batches

MAX_FILE_BYTES = 1_000_000
#: extension (lower case, with dot) or exact file name -> language
EXTENSIONS: dict[str, str] = {
    ".py": "Python", ".pyi": "Python", ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".cxx": "C++",
    ".hpp": "C++", ".hh": "C++", ".hxx": "C++", ".c++": "C++", ".h++": "C++", ".cs": "C#", ".java": "Java",
    ".js": "JavaScript", ".mjs": "JavaScript", ".cjs": "JavaScript", ".jsx": "JavaScript", ".ts": "TypeScript",
    ".tsx": "TypeScript", ".go": "Go", ".rs": "Rust", ".rb": "Ruby", ".php": "PHP", ".pl": "Perl", ".pm": "Perl",
    ".sh": "Shell", ".bash": "Shell", ".zsh": "Shell", ".ps1": "PowerShell", ".bat": "Batchfile", ".cmd": "Batchfile",
    ".scala": "Scala", ".kt": "Kotlin", ".kts": "Kotlin", ".swift": "Swift", ".m": "Objective-C", ".mm": "Objective-C++",
    ".lua": "Lua", ".r": "R", ".jl": "Julia", ".hs": "Haskell", ".ml": "OCaml", ".mli": "OCaml", ".fs": "F#",
    ".erl": "Erlang", ".ex": "Elixir", ".exs": "Elixir", ".clj": "Clojure", ".lisp": "Common Lisp", ".el": "Emacs Lisp",
    ".scm": "Scheme", ".dart": "Dart", ".f": "Fortran", ".f90": "Fortran", ".f95": "Fortran", ".for": "Fortran",
    ".vb": "Visual Basic", ".asm": "Assembly", ".s": "Assembly", ".sql": "SQL", ".css": "CSS", ".scss": "SCSS",
    ".html": "HTML", ".htm": "HTML", ".xml": "XML", ".md": "Markdown", ".markdown": "Markdown", ".rst": "reStructuredText",
    ".tex": "TeX", ".cmake": "CMake", ".proto": "Protocol Buffer", ".vue": "Vue", ".groovy": "Groovy",
    ".yaml": "YAML", ".yml": "YAML", ".toml": "TOML", ".json": "JSON", ".ini": "INI", ".dockerfile": "Dockerfile",
    "makefile": "Makefile", "gnumakefile": "Makefile", "dockerfile": "Dockerfile", "cmakelists.txt": "CMake",
}

def language_of(name: str) -> Optional[str]:
    """Language of a file name (``Makefile``, ``foo.py``), None when unknown."""
    base = os.path.basename(name).lower()
    if base in EXTENSIONS:
        return EXTENSIONS[base]
    ext = os.path.splitext(base)[1]
    return EXTENSIONS.get(ext) if ext else None


EXTRA = {"repo": pa.string(), "path": pa.string(), "license": pa.string(), "source_detail": pa.string()}
SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".tox", ".venv", "venv", ".mypy_cache",
             ".pytest_cache", "site-packages", "dist", "build", ".idea", ".vscode", "vendor", "third_party"}
LICENSE_FILE = re.compile(r"^(licen[cs]e|copying|unlicense)([-._].*)?$", re.I)

#: (SPDX id, all of these phrases, none of these) -- first match wins; phrases are lower case,
#: whitespace-collapsed. Order matters: LGPL/AGPL before GPL, BSD-3 before BSD-2.
_LICENSE_RULES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("PSF-2.0", ("python software foundation license",), ()),
    ("Apache-2.0", ("apache license", "version 2.0"), ()),
    ("MIT", ("permission is hereby granted, free of charge",), ()),
    ("ISC", ("permission to use, copy, modify, and/or distribute this software for any purpose",), ()),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "neither the name"), ()),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "may not be used to endorse"), ()),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms",), ()),
    ("Unlicense", ("this is free and unencumbered software released into the public domain",), ()),
    ("MPL-2.0", ("mozilla public license", "2.0"), ()),
    ("AGPL-3.0", ("gnu affero general public license",), ()),
    ("LGPL-3.0", ("gnu lesser general public license", "version 3"), ()),
    ("LGPL-2.1", ("gnu lesser general public license",), ()),
    ("LGPL-2.1", ("gnu library general public license",), ()),
    ("GPL-3.0", ("gnu general public license", "version 3"), ()),
    ("GPL-2.0", ("gnu general public license", "version 2"), ()),
    ("CC0-1.0", ("cc0 1.0 universal",), ()),
    ("EPL-2.0", ("eclipse public license", "2.0"), ()),
    ("Zlib", ("this software is provided 'as-is', without any express or implied warranty",), ()),
]
_SPDX = re.compile(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+-]+)")


def detect_license(text: str) -> str:
    """SPDX id of a licence text (an ``SPDX-License-Identifier`` line wins), else ``other``."""
    m = _SPDX.search(text[:4000])
    if m:
        return m.group(1)
    t = " ".join(text.lower().split())[:20000]
    for spdx, need, avoid in _LICENSE_RULES:
        if all(p in t for p in need) and not any(p in t for p in avoid):
            return spdx
    return "other"


def _is_repo_root(d: str) -> bool:
    try:
        names = os.listdir(d)
    except OSError:
        return False
    return any(n == ".git" or n == "repo.json" or LICENSE_FILE.match(n) for n in names)


def expand_input(spec: str) -> list[str]:
    """One shard per repository: the folder itself if it is one, else each sub-folder.
    A file input is an export (Parquet/JSONL)."""
    if not os.path.isdir(spec):
        return [os.path.abspath(spec)]
    spec = os.path.abspath(spec)
    if _is_repo_root(spec):
        return [spec]
    subs = sorted(os.path.join(spec, n) for n in os.listdir(spec)
                  if not n.startswith(".") and os.path.isdir(os.path.join(spec, n)))
    exports = sorted(os.path.join(spec, n) for n in os.listdir(spec) if is_export(n))
    return (subs + exports) or [spec]


def _repo_info(root: str) -> dict:
    info = {"name": os.path.basename(root.rstrip("/")), "url": None, "license": None}
    meta = os.path.join(root, "repo.json")
    if os.path.isfile(meta):
        with open(meta, encoding="utf-8") as fh:
            d = json.load(fh)
        info.update({k: d[k] for k in ("name", "url", "license") if d.get(k)})
    if not info["license"]:
        found = sorted(n for n in os.listdir(root) if LICENSE_FILE.match(n) and os.path.isfile(os.path.join(root, n)))
        if found:
            with open(os.path.join(root, found[0]), encoding="utf-8", errors="replace") as fh:
                info["license"] = detect_license(fh.read())
    return info


def iter_tree_rows(root: str, *, source: str, stats: StageStats, max_bytes: int = MAX_FILE_BYTES) -> Iterator[dict]:
    root = os.path.abspath(root)
    # repositories nested inside the input (a sub-folder with its own licence) get their own info
    infos: dict[str, dict] = {}

    def info_for(d: str) -> tuple[str, dict]:
        while True:
            if d in infos:
                return d, infos[d]
            if d == root or _is_repo_root(d):
                infos[d] = _repo_info(d)
                return d, infos[d]
            d = os.path.dirname(d)

    for dp, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        repo_dir, info = info_for(dp)
        for f in sorted(files):
            if f.startswith(".") or language_of(f) is None:
                continue
            full = os.path.join(dp, f)
            stats.rows_in += 1
            try:
                size = os.path.getsize(full)
                if size > max_bytes:
                    count(stats, "too_large")
                    continue
                with open(full, "rb") as fh:
                    data = fh.read()
            except OSError:
                count(stats, "unreadable")
                continue
            if b"\x00" in data:
                count(stats, "binary")
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                count(stats, "not_utf8")
                continue
            if not text.strip():
                count(stats, "no_text")
                continue
            rel = os.path.relpath(full, repo_dir).replace(os.sep, "/")
            url = f"{info['url'].rstrip('/')}/blob/HEAD/{rel}" if info.get("url") else None
            stats.rows_out += 1
            stats.bytes_out += len(data)
            yield {"id": f"{info['name']}/{rel}", "text": text, "source": source, "url": url,
                   "content_type": "text/x-source", "repo": info["name"], "path": rel,
                   "license": info["license"] or "unknown", "source_detail": info["name"]}


def iter_batches(path: str, *, input_cfg, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    if is_export(path):
        def fill(tbl: pa.Table) -> pa.Table:
            if tbl["source_detail"].null_count == tbl.num_rows:
                tbl = set_column(tbl, "source_detail", tbl["repo"])
            return tbl
        yield from iter_export_batches(
            path, source=input_cfg.source, batch_size=batch_size, stats=stats,
            text_candidates=(input_cfg.text_field, "content", "code", "text"),
            rename={"repo_name": "repo", "max_stars_repo_name": "repo", "max_stars_repo_path": "path",
                    "licenses": "license", "max_stars_repo_licenses": "license"},
            extra=EXTRA, fill=fill)
        return
    if not os.path.isdir(path):
        from ._common import InputError
        raise InputError(f"{path}: input.format code reads a folder (a repository or a folder of them) "
                         "or a Parquet/JSONL export")
    yield from batched(iter_tree_rows(path, source=input_cfg.source, stats=stats), batch_size, EXTRA)
