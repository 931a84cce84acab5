"""NSFW filters: multilingual bad-word counts and a FineWeb-style URL blocklist.

Two registered filters, score-then-decide like :mod:`stages._rules` (every rule a
named, versioned reason; ``decide`` reads only score columns, so ``datapipe
refilter`` re-tunes thresholds without re-scoring):

* ``nsfw_words`` counts bad-word occurrences: ``nsfw_words``, ``nsfw_ratio``.
* ``url_filter`` checks the ``url`` column against domain and URL blocklists and
  banned words: ``urlf_domain``, ``urlf_url``, ``urlf_banned_word``,
  ``urlf_soft_words``, ``urlf_banned_subword``.

Lists come from files, folders or tarballs that the config names (LDNOOBW's folder
of per-language files; UT1's ``adult/domains`` and ``adult/urls``, also inside
datatrove's ``url_filterblacklistsv0_3_0.tar.gz``); without configuration the
small lists in ``stages/data/`` are used, so a fresh clone runs.
"""
from __future__ import annotations

import hashlib
import os
import re
from array import array
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.schema import set_column
from datapipe.urls import url_host
from datapipe.stage import StageError, register

from . import _text as T
from ._rules import RuleFilter

#: C4 allows these (each drops > 10% of pages of its language when banned)
DEFAULT_ALLOW = {"ja": ["sm", "グロ", "女の子"], "zh": ["性"]}
_LANG_FILE = re.compile(r"^([a-z]{2,3})(?:[-_][A-Za-z0-9-]+)?$")


def _lang_of(path: Path) -> str | None:
    """Language code of a list file named like LDNOOBW's (``en``, ``fr-CA-u-sd-caqc``, ``zh.txt``)."""
    if path.suffix not in ("", ".txt"):
        return None
    m = _LANG_FILE.match(path.stem if path.suffix else path.name)
    return m.group(1) if m else None


def load_word_lists(paths: Iterable[str]) -> dict[str, set[str]]:
    """Per-language word lists from files and folders (files named by language code)."""
    out: dict[str, set[str]] = {}
    for p in map(Path, paths):
        files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
        for f in files:
            lang = _lang_of(f)
            if lang is None:
                if not p.is_dir():
                    raise StageError(f"nsfw_words: cannot tell the language of {f} (name it <lang> or <lang>.txt)")
                continue
            out.setdefault(lang, set()).update(w.lower() for w in T.read_list(f, comments=False))
    return out


@register
class NSFWWords(RuleFilter):
    """Counts bad words per document; drops above a count or a ratio.

    Columns: ``nsfw_words`` (occurrences of listed words or phrases), ``nsfw_ratio``
    (``nsfw_words`` / words; CJK characters and Thai clusters count as words).

    Rules ``nsfw_v1:<rule>``: ``bad_words`` (``nsfw_words`` > ``max_bad_words``; C4
    drops at any bad word, i.e. ``max_bad_words: 0``), ``bad_words_ratio``
    (``nsfw_ratio`` > ``max_ratio``). Either may be ``null`` (off).

    A row is matched against the list of its language (``lid_lang``, else
    ``default_language``) plus the lists of ``always_languages`` (English by
    default: adult spam is mostly English whatever the page's language). As C4:
    lists of languages written with spaces match whole words and phrases (lower
    case, word boundaries are any non-letter/digit), zh/ja/th lists match
    substrings; the allow-list drops C4's known over-matching entries ("性" in zh ...).

    Cost: two RE2 passes over the batch per language present; the lists compile to
    one automaton each.
    """

    name = "nsfw_words"
    check = "nsfw_v1"
    inputs = ("text",)
    rules = (
        ("bad_words", "nsfw_words", ">", "max_bad_words"),
        ("bad_words_ratio", "nsfw_ratio", ">", "max_ratio"),
    )
    score_options = ("lists", "always_languages", "default_language", "allow")

    def __init__(
        self, *,
        max_bad_words: int | None = 20,
        max_ratio: float | None = 0.01,
        lists: list[str] | None = None,
        always_languages: list[str] = ["en"],  # noqa: B006 - read only
        default_language: str = "en",
        allow: dict[str, list[str]] | None = None,
        per_language: dict[str, dict[str, float | None]] | None = None,
    ):
        if max_bad_words is not None and max_bad_words < 0:
            raise StageError(f"{self.name}: max_bad_words must be >= 0")
        if max_ratio is not None and not 0.0 <= max_ratio <= 1.0:
            raise StageError(f"{self.name}: max_ratio must be in [0, 1]")
        self.lists = list(lists) if lists else [str(T.DATA_DIR / "nsfw")]
        for p in self.lists:
            if not Path(p).exists():
                raise StageError(f"{self.name}: word list {p!r} not found")
        self.always_languages = [x.lower() for x in always_languages]
        self.allow = {k: set(v) for k, v in (DEFAULT_ALLOW if allow is None else allow).items()}
        self._words: dict[str, set[str]] | None = None
        self._patterns: dict[str, tuple[str | None, str | None]] = {}
        self._init_rules(dict(max_bad_words=max_bad_words, max_ratio=max_ratio), per_language, default_language)

    def setup(self) -> None:
        if self._words is None:
            words = load_word_lists(self.lists)
            for lang, allowed in self.allow.items():
                if lang in words:
                    words[lang] -= allowed
            self._words = words

    def _pattern(self, lang: str) -> tuple[str | None, str | None]:
        """(word-boundary pattern over normalised text, substring pattern over lower text)."""
        if lang not in self._patterns:
            bounded, sub = set(), set()
            for code in dict.fromkeys([lang, *self.always_languages]):
                for w in self._words.get(code, ()):
                    if code in T.NO_SPACE_LANGS:
                        sub.add(T.re2_escape(w))
                    else:
                        norm = _normalise_words(w)
                        if norm:
                            bounded.add(norm)
            # longest first: leftmost-first alternation should prefer the longer phrase
            b = " (?:" + "|".join(sorted(bounded, key=lambda s: (-len(s), s))) + ") " if bounded else None
            s = "|".join(sorted(sub, key=lambda s: (-len(s), s))) if sub else None
            self._patterns[lang] = (b, s)
        return self._patterns[lang]

    def score(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        text = T.text_column(batch)
        langs = T.row_languages(batch, self.default_language)
        counts = np.zeros(n, dtype=np.int64)
        lower = pc.utf8_lower(text)
        for lang in np.unique(langs.astype(str)):
            rows = np.flatnonzero(langs == lang)
            bounded, sub = self._pattern(lang)
            part = lower.take(pa.array(rows)) if len(rows) < n else lower
            if bounded:
                # two spaces for every separator: each match consumes one on each side,
                # so adjacent words ("fuck fuck") are both counted
                pad = pa.scalar("  ", pa.large_string())
                spaced = pc.binary_join_element_wise(
                    pad, pc.replace_substring_regex(part, r"[^\p{L}\p{M}\p{N}]+", "  "), pad,
                    pa.scalar("", pa.large_string()))
                counts[rows] += pc.count_substring_regex(spaced, bounded).to_numpy(zero_copy_only=False)
            if sub:
                counts[rows] += pc.count_substring_regex(part, sub).to_numpy(zero_copy_only=False)
        n_words = pc.count_substring_regex(text, T.WORD_COUNT).to_numpy(zero_copy_only=False)
        batch = set_column(batch, "nsfw_words", pa.array(counts, pa.int64()))
        batch = set_column(batch, "nsfw_ratio", T.safe_div(counts, n_words))
        return batch


def _normalise_words(s: str) -> str:
    """Lower case, every run of non-letters/digits -> two spaces (as the text is normalised)."""
    import regex

    return regex.sub(r"[^\p{L}\p{M}\p{N}]+", "  ", s.lower()).strip()


# ---------------------------------------------------------------------------
# URL filter

def _hash(s: str) -> int:
    import xxhash

    return xxhash.xxh3_64_intdigest(s.encode("utf-8"))


def _norm_url(s: str) -> str:
    s = s.strip().lower()
    s = re.sub(r"^[a-z][a-z0-9+.\-]*://", "", s)
    if s.startswith("www."):
        s = s[4:]
    return s.rstrip("/")


def _cache_dir(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    base = os.environ.get("DATAPIPE_CACHE") or os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / ("" if os.environ.get("DATAPIPE_CACHE") else "datapipe") / "url_filter"


def load_domain_hashes(paths: Iterable[str], *, cache_dir: str | Path | None = None) -> np.ndarray:
    """A sorted, de-duplicated ``uint64`` array of xxh3-64 hashes of every listed domain.

    8 bytes per domain (UT1's 4.56 M domains: 36 MB) instead of ~120 bytes for a Python
    ``set`` of strings; lines are streamed from files or tarballs in chunks, so the
    peak while loading is about twice the final array. A false positive needs a
    64-bit collision: with 4.6 M entries about 2.5e-13 per looked-up name. The array
    is cached as ``.npy`` keyed by the sources' paths, sizes and mtimes.
    """
    paths = [str(Path(p).resolve()) for p in paths]
    key = hashlib.sha1()
    for p in paths:
        st = os.stat(p)
        key.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"domains-{key.hexdigest()[:20]}.npy"
        if cache.is_file():
            try:
                return np.load(cache, mmap_mode=None)
            except (OSError, ValueError):
                pass
    import xxhash

    h = xxhash.xxh3_64_intdigest
    chunks: list[np.ndarray] = []
    for p in paths:
        for _, fh in T.iter_list_files(p, "domains", raw="file"):
            with fh:
                rest = b""
                while True:
                    block = fh.read(1 << 23)
                    eof = not block
                    block = rest + block
                    cut = len(block) if eof else block.rfind(b"\n") + 1
                    rest, block = block[cut:], block[:cut].lower()
                    if _needs_clean(block):  # rare forms: "#" comments, "*.x", "x.", spaces, CRLF
                        lines = [c for c in map(_clean_domain, block.split(b"\n")) if c]
                    else:
                        lines = [x for x in block.split(b"\n") if x]
                    chunks.append(np.fromiter(map(h, lines), dtype=np.uint64, count=len(lines)))
                    del lines
                    if eof:
                        break
    # np.unique would need ~4x the array; sort in place and drop repeats instead
    out = np.concatenate(chunks) if chunks else np.empty(0, np.uint64)
    del chunks
    out.sort()
    if len(out) > 1:
        keep = np.empty(len(out), dtype=bool)
        keep[0] = True
        np.not_equal(out[1:], out[:-1], out=keep[1:])
        out = out[keep]
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, out)
            os.replace(tmp, cache)
        except OSError:
            pass
    return out


def _needs_clean(block: bytes) -> bool:
    """Cheap test on a block of lines: does any line need more than lower-casing?"""
    return any(m in block for m in (b"#", b"*", b" ", b"\t", b"\r", b".\n", b"\n.")) \
        or block[:1] == b"." or block.endswith(b".")


def _clean_domain(x: bytes) -> bytes:
    x = x.strip()
    if x.startswith(b"#"):
        return b""
    x = x.rstrip(b".")
    if x.startswith(b"*."):
        x = x[2:]
    return x.lstrip(b".")


def load_url_set(paths: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for p in paths:
        for _, lines in T.iter_list_files(p, "urls"):
            out.update(u for u in map(_norm_url, lines) if u)
    return out


def _load_normalised(paths: Iterable[str]) -> set[str]:
    """datatrove's list normalisation: lower case, non-alphanumerics removed, ``#`` lines skipped."""
    out: set[str] = set()
    for p in paths:
        out.update(x for x in (re.sub(r"[^a-z0-9]+", "", w.lower()) for w in T.read_list(p)) if x)
    return out


@register
class URLFilter(RuleFilter):
    """FineWeb-style URL filter (datatrove ``URLFilter``), every hit named.

    Columns: ``urlf_domain`` (the listed domain that matched the host or one of its
    parent domains, else null), ``urlf_url`` (the URL is on the exact-URL list),
    ``urlf_banned_word`` (first banned word found as a whole word of the URL),
    ``urlf_soft_words`` (distinct soft-banned words in the URL),
    ``urlf_banned_subword`` (first banned subword found in the URL with
    non-alphanumerics removed).

    Rules ``url_filter_v1:<rule>``: ``domain``, ``url``, ``banned_word``,
    ``soft_banned_words`` (>= ``soft_word_threshold``, 2), ``banned_subword``.

    Domain matching checks every suffix of the host (``a.b.example.com``,
    ``b.example.com``, ``example.com``, ``com``) against the domain list held as
    sorted 64-bit hashes (:func:`load_domain_hashes`): UT1 in about 36 MB. datatrove
    checks only the registered domain (via tldextract's public-suffix list) and the
    full host; we need no suffix list and also catch listed intermediate domains.
    Exact URLs are compared without scheme, leading ``www.`` and trailing ``/``
    (UT1 lists them so; datatrove compares the raw URL, which never matches UT1's
    scheme-less entries). URL words are lower-cased before matching (datatrove
    lower-cases the lists but not the URL).

    Rows without a URL are never dropped. Cost: vectorised except one short Python
    loop per row building host suffixes (about a microsecond per row).
    """

    name = "url_filter"
    check = "url_filter_v1"
    inputs = ("url",)
    rules = (
        ("domain", "urlf_domain", "set", "filter_domains"),
        ("url", "urlf_url", "true", "filter_urls"),
        ("banned_word", "urlf_banned_word", "set", "filter_banned_words"),
        ("soft_banned_words", "urlf_soft_words", ">=", "soft_word_threshold"),
        ("banned_subword", "urlf_banned_subword", "set", "filter_banned_subwords"),
    )
    score_options = ("domains", "urls", "banned_words", "banned_subwords", "soft_banned_words", "cache_dir")

    def __init__(
        self, *,
        domains: list[str] | None = None,
        urls: list[str] | None = None,
        banned_words: list[str] | None = None,
        banned_subwords: list[str] | None = None,
        soft_banned_words: list[str] | None = None,
        soft_word_threshold: int | None = 2,
        filter_domains: bool = True,
        filter_urls: bool = True,
        filter_banned_words: bool = True,
        filter_banned_subwords: bool = True,
        cache_dir: str | None = None,
    ):
        d = T.DATA_DIR / "url"
        self.domains = list(domains) if domains is not None else [str(d / "domains.txt")]
        self.urls = list(urls) if urls is not None else [str(d / "urls.txt")]
        self.banned_words = list(banned_words) if banned_words is not None else [str(d / "banned_words.txt")]
        self.banned_subwords = (list(banned_subwords) if banned_subwords is not None
                                else [str(d / "banned_subwords.txt")])
        self.soft_banned_words = (list(soft_banned_words) if soft_banned_words is not None
                                  else [str(d / "soft_banned_words.txt")])
        for p in [*self.domains, *self.urls, *self.banned_words, *self.banned_subwords, *self.soft_banned_words]:
            if not Path(p).exists():
                raise StageError(f"{self.name}: list {p!r} not found")
        if soft_word_threshold is not None and soft_word_threshold < 1:
            raise StageError(f"{self.name}: soft_word_threshold must be >= 1")
        self.cache_dir = cache_dir
        self._loaded = False
        self._init_rules(dict(filter_domains=filter_domains, filter_urls=filter_urls,
                              filter_banned_words=filter_banned_words, soft_word_threshold=soft_word_threshold,
                              filter_banned_subwords=filter_banned_subwords), None, "en")

    def setup(self) -> None:
        if self._loaded:
            return
        self._domain_hashes = load_domain_hashes(self.domains, cache_dir=_cache_dir(self.cache_dir))
        self._urls = pa.array(sorted(load_url_set(self.urls)), pa.string())
        self._banned = pa.array(sorted(_load_normalised(self.banned_words)), pa.string())
        self._soft = pa.array(sorted(_load_normalised(self.soft_banned_words)), pa.string())
        sub = sorted(_load_normalised(self.banned_subwords), key=lambda s: (-len(s), s))
        self._sub_pattern = f"(?P<w>{'|'.join(sub)})" if sub else None
        self._loaded = True

    def _domain_hits(self, hosts: list) -> list:
        """The listed domain matching each host (itself or a parent domain), or None."""
        cand_hash: list[int] = []
        cand_row: list[int] = []
        cand_name: list[str] = []
        for i, host in enumerate(hosts):  # per-row loop: a few suffixes per host
            if not host:
                continue
            host = host.rstrip(".")
            start = 0
            while True:
                suffix = host[start:]
                cand_hash.append(_hash(suffix))
                cand_row.append(i)
                cand_name.append(suffix)
                dot = host.find(".", start)
                if dot < 0:
                    break
                start = dot + 1
        out = [None] * len(hosts)
        if not cand_hash or len(self._domain_hashes) == 0:
            return out
        q = np.array(cand_hash, dtype=np.uint64)
        idx = np.searchsorted(self._domain_hashes, q)
        idx[idx >= len(self._domain_hashes)] = 0
        hit = self._domain_hashes[idx] == q
        for j in np.flatnonzero(hit):  # longest suffix first within a row: keep the first
            r = cand_row[j]
            if out[r] is None:
                out[r] = cand_name[j]
        return out

    def score(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        col = batch.column("url")
        url = (col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col).cast(pa.string())
        url = pc.fill_null(url, "")
        lower = pc.utf8_lower(url)

        domain = self._domain_hits(url_host(url).to_pylist())

        bare = pc.utf8_rtrim(pc.replace_substring_regex(
            pc.replace_substring_regex(lower, r"^[a-z][a-z0-9+.\-]*://", ""), r"^www\.", ""), "/")
        url_hit = pc.and_(pc.is_in(bare, value_set=self._urls), pc.not_equal(bare, ""))

        words, parent = T.flatten_lists(pc.split_pattern_regex(lower, r"[^a-z0-9]+"))
        banned = np.full(n, None, dtype=object)
        hit = pc.fill_null(pc.is_in(words, value_set=self._banned), False).to_numpy(zero_copy_only=False)
        if hit.any():
            rows, first = np.unique(parent[hit], return_index=True)
            banned[rows] = np.array(words.filter(pa.array(hit)).to_pylist(), dtype=object)[first]
        pos = pc.index_in(words, value_set=self._soft)
        soft_hit = pc.is_valid(pos).to_numpy(zero_copy_only=False)
        key = parent[soft_hit] * max(len(self._soft), 1) + pos.to_numpy(zero_copy_only=False)[soft_hit].astype(np.int64)
        soft = T.bincount(np.unique(key) // max(len(self._soft), 1), n) if len(key) else np.zeros(n, np.int64)

        if self._sub_pattern:
            squashed = pc.replace_substring_regex(lower, r"[^a-z0-9]+", "")
            sub = pc.struct_field(pc.extract_regex(squashed, self._sub_pattern), "w")
        else:
            sub = pa.nulls(n, pa.string())

        batch = set_column(batch, "urlf_domain", pa.array(domain, pa.string()))
        batch = set_column(batch, "urlf_url", url_hit)
        batch = set_column(batch, "urlf_banned_word", pa.array(banned, pa.string()))
        batch = set_column(batch, "urlf_soft_words", pa.array(soft, pa.int64()))
        batch = set_column(batch, "urlf_banned_subword", sub.cast(pa.string()))
        return batch
