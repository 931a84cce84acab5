"""``tokenize``: token counts (and optionally token ids) per document, for the mixture step.

Adds ``n_tokens`` (int32: tokens of ``text`` plus the document separator tokens, i.e.
exactly what the document will occupy in a token stream) and, with
``keep_tokens: true``, ``tokens`` (``list<uint32>``). The mixture step plans from
``n_tokens`` alone, so changing mixture ratios never re-tokenizes; it re-tokenizes only
the documents it writes when ``tokens`` was not kept (the default: ids double the size of
the curated output, and the mix usually takes a subset).

Tokenizers (the ``tokenizer`` option), all offline:

- ``llama3`` (default): the Llama 3 128K tiktoken-style BPE exactly as Meta builds it
  (``tiktoken.Encoding`` over the rank file with Meta's pre-tokenizer regex), with the ranks
  and special tokens read from the ``quicktok-v1`` package's bundled ``llama3.vocab`` /
  ``llama3.special`` (so nothing is downloaded). Spelled out: ``tiktoken:llama3``.
- ``quicktok:llama3``: quicktok's C++ encoder over the same ranks, about 3x faster, but NOT
  byte-identical to the reference: ``tests/test_tokenize.py`` found that quicktok-v1 0.4.0
  splits some words differently (2% of the 74k lingua test sentences, mostly tr/uk/cs/sk/ru;
  e.g. German " architektonische" -> " architekt|on|ische" where rank BPE gives
  " arch|ite|k|ton|ische"); HF ``tokenizers`` with merges derived from the ranks agrees with
  the reference on all of them. Use it only where counts, not exact ids, matter.
- ``quicktok:cl100k_base``, ``quicktok:o200k_base``, ``quicktok:qwen3`` (bare names work too):
  quicktok's other bundled encodings (cl100k matched tiktoken on every lingua sentence).
- ``tiktoken:<name>`` (``cl100k_base``, ``o200k_base`` ...): tiktoken's own encodings, only
  when already in tiktoken's cache (``TIKTOKEN_CACHE_DIR``); this stage never lets tiktoken
  download, and says so at construction.
- ``hf:<path/to/tokenizer.json>`` (or any path ending in ``.json``): a Hugging Face
  ``tokenizers`` file (:func:`write_hf_tokenizer_json` writes one for Llama 3 from the ranks).

Separators: ``add_eos`` (default true) appends the end-of-text token to every document
(Megatron's ``--append-eod`` convention; the loader also masks attention at document
boundaries), ``add_bos`` prepends begin-of-text (Llama 3 style). Empty or null text gives
zero tokens and no separators.

Cost (``bench/tokenize_bench.py``, one core): tiktoken's Rust BPE (the default) encodes a few
MB of text per second, far faster than extraction upstream; one native batch call per batch,
no per-row Python loop in the stage.
"""
from __future__ import annotations

import functools
import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from datapipe.schema import set_column
from datapipe.stage import Stage, StageError, register

#: Meta's Llama 3 pre-tokenizer regex (``llama/tokenizer.py``), also what quicktok compiles
LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QUICKTOK_ENCODINGS = ("llama3", "cl100k_base", "o200k_base", "o200k_harmony", "qwen3")
#: begin/end-of-text token names per encoding family
_SPECIAL_NAMES = {
    "llama3": ("<|begin_of_text|>", "<|end_of_text|>"),
    "cl100k_base": (None, "<|endoftext|>"),
    "o200k_base": (None, "<|endoftext|>"),
    "o200k_harmony": (None, "<|endoftext|>"),
    "qwen3": (None, "<|endoftext|>"),
}
_HF_EOS_CANDIDATES = ("<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>", "<|im_end|>")
_HF_BOS_CANDIDATES = ("<|begin_of_text|>", "<s>", "<bos>")


# ---------------------------------------------------------------------------
# tokenizer backends: one small interface over quicktok, tiktoken and HF tokenizers

@dataclass
class Tokenizer:
    """A loaded tokenizer: ``encode_batch(texts) -> (flat uint32 ids, int64 offsets)``."""

    spec: str                     # canonical name, e.g. "quicktok:llama3"
    backend: str                  # quicktok | tiktoken | hf
    vocab_size: int               # ids are < vocab_size (specials included)
    fingerprint: str              # sha256 over the vocabulary files / ranks (manifest: tokenizer hash)
    bos_id: Optional[int]
    eos_id: Optional[int]
    _encode_batch: Any = field(repr=False)
    _decode: Any = field(repr=False)

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return self._encode_batch(texts)

    def encode(self, text: str) -> list[int]:
        toks, _ = self._encode_batch([text])
        return toks.tolist()

    def decode(self, ids) -> str:
        return self._decode([int(i) for i in ids])


def _flatten(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    if lists:
        np.cumsum([len(x) for x in lists], out=offsets[1:])
    flat = np.fromiter((t for x in lists for t in x), dtype=np.uint32, count=int(offsets[-1]))
    return flat, offsets


def quicktok_data_dir() -> Path:
    import importlib.util
    spec = importlib.util.find_spec("quicktok")
    if spec is None or not spec.submodule_search_locations:
        raise StageError("the quicktok-v1 package is not installed (pip install quicktok-v1)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _vocab_file_stem(name: str) -> str:
    return {"cl100k_base": "cl100k", "o200k_base": "o200k", "o200k_harmony": "o200k"}.get(name, name)


def read_quicktok_ranks(name: str = "llama3") -> tuple[dict[bytes, int], dict[str, int]]:
    """``(mergeable_ranks, special_tokens)`` from quicktok's bundled data files.

    Format (quicktok ``_import_core.write_files``): ``<u32 n>`` then n x ``<u16 len><bytes><u32 rank>``;
    specials: ``<u32 n>`` then n x ``<u32 id><u16 len><utf-8>``.
    """
    d = quicktok_data_dir()
    stem = _vocab_file_stem(name)
    b = (d / f"{stem}.vocab").read_bytes()
    (n,) = struct.unpack_from("<I", b, 0)
    off, ranks = 4, {}
    for _ in range(n):
        (ln,) = struct.unpack_from("<H", b, off)
        raw = b[off + 2: off + 2 + ln]
        (rank,) = struct.unpack_from("<I", b, off + 2 + ln)
        ranks[raw] = rank
        off += 6 + ln
    s = (d / f"{name}.special").read_bytes() if (d / f"{name}.special").exists() else (d / f"{stem}.special").read_bytes()
    (m,) = struct.unpack_from("<I", s, 0)
    off, specials = 4, {}
    for _ in range(m):
        tid, ln = struct.unpack_from("<IH", s, off)
        specials[s[off + 6: off + 6 + ln].decode("utf-8")] = tid
        off += 6 + ln
    return ranks, specials


def _sha256_files(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _load_quicktok(name: str, threads: int) -> Tokenizer:
    try:
        import quicktok
    except ImportError as e:  # pragma: no cover - dependency
        raise StageError("tokenizer needs the quicktok-v1 package (pip install quicktok-v1)") from e
    enc = quicktok.get_encoding(name)
    d = quicktok_data_dir()
    stem = _vocab_file_stem(name)
    files = [d / f"{stem}.vocab"] + [p for p in (d / f"{name}.special",) if p.exists()]
    bos_name, eos_name = _SPECIAL_NAMES.get(name, (None, None))
    specials = {}
    if bos_name or eos_name:
        _, specials = read_quicktok_ranks(name)

    def encode_batch(texts):
        toks, offsets = enc.encode_batch(texts, threads, False)
        return np.asarray(toks, dtype=np.uint32), np.asarray(offsets, dtype=np.int64)

    return Tokenizer(f"quicktok:{name}", "quicktok", int(enc.n_vocab), _sha256_files(*files),
                     specials.get(bos_name) if bos_name else None, specials.get(eos_name) if eos_name else None,
                     encode_batch, enc.decode)


def tiktoken_llama3():
    """tiktoken's ``Encoding`` for Llama 3, built offline from quicktok's ranks (Meta's recipe)."""
    import tiktoken
    ranks, specials = read_quicktok_ranks("llama3")
    return tiktoken.Encoding("llama3", pat_str=LLAMA3_PAT, mergeable_ranks=ranks, special_tokens=specials)


def _no_download(blobpath: str) -> bytes:
    if "://" not in blobpath:
        with open(blobpath, "rb") as fh:
            return fh.read()
    raise StageError(f"tiktoken would download {blobpath}; datapipe never downloads tokenizers. "
                     "Put the encoding in tiktoken's cache (TIKTOKEN_CACHE_DIR) or use tokenizer: llama3 / hf:<tokenizer.json>")


def _load_tiktoken(name: str, threads: int) -> Tokenizer:
    try:
        import tiktoken
        import tiktoken.load
    except ImportError as e:  # pragma: no cover - dependency
        raise StageError("tokenizer tiktoken:* needs the tiktoken package") from e
    if name == "llama3":
        enc = tiktoken_llama3()
        d = quicktok_data_dir()
        fp = _sha256_files(d / "llama3.vocab", d / "llama3.special")
        bos_name, eos_name = _SPECIAL_NAMES["llama3"]
    else:
        if name not in tiktoken.list_encoding_names():
            raise StageError(f"unknown tiktoken encoding {name!r}; known: {', '.join(tiktoken.list_encoding_names())}")
        from unittest import mock
        with mock.patch.object(tiktoken.load, "read_file", _no_download):
            enc = tiktoken.get_encoding(name)
        h = hashlib.sha256()
        for tok, rank in sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1]):
            h.update(struct.pack("<I", rank) + tok)
        fp = h.hexdigest()
        bos_name, eos_name = None, "<|endoftext|>"
    sp = enc._special_tokens

    def encode_batch(texts):
        return _flatten(enc.encode_ordinary_batch(texts, num_threads=max(1, threads)))

    return Tokenizer(f"tiktoken:{name}", "tiktoken", int(enc.n_vocab), fp,
                     sp.get(bos_name) if bos_name else None, sp.get(eos_name) if eos_name else None,
                     encode_batch, enc.decode)


def _load_hf(path: str, threads: int) -> Tokenizer:
    p = Path(path)
    if not p.is_file():
        raise StageError(f"tokenizer.json not found: {path}")
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError as e:  # pragma: no cover - dependency
        raise StageError("tokenizer hf:* needs the tokenizers package") from e
    tok = HFTokenizer.from_file(str(p))
    # web text that happens to contain "<|end_of_text|>" is text, not a control token
    # (tiktoken's encode_ordinary semantics; the separators are added by id)
    tok.encode_special_tokens = True
    vocab = tok.get_vocab(with_added_tokens=True)
    eos = next((vocab[t] for t in _HF_EOS_CANDIDATES if t in vocab), None)
    bos = next((vocab[t] for t in _HF_BOS_CANDIDATES if t in vocab), None)

    def encode_batch(texts):
        encs = tok.encode_batch(texts, add_special_tokens=False)
        return _flatten([e.ids for e in encs])

    return Tokenizer(f"hf:{p.resolve()}", "hf", int(tok.get_vocab_size(with_added_tokens=True)),
                     _sha256_files(p), bos, eos, encode_batch, lambda ids: tok.decode(ids, skip_special_tokens=False))


def parse_tokenizer_spec(spec: str) -> tuple[str, str]:
    """``"llama3" -> ("quicktok", "llama3")``, ``"hf:x.json"``, ``"tiktoken:cl100k_base"`` ..."""
    spec = (spec or "").strip()
    if not spec:
        raise StageError("empty tokenizer name")
    if ":" in spec and spec.split(":", 1)[0] in ("quicktok", "tiktoken", "hf"):
        backend, name = spec.split(":", 1)
    elif spec.endswith(".json"):
        backend, name = "hf", spec
    elif spec == "llama3":
        backend, name = "tiktoken", "llama3"    # exact; quicktok:llama3 is the fast, inexact one
    else:
        backend, name = "quicktok", spec
    if backend == "quicktok" and name not in QUICKTOK_ENCODINGS:
        raise StageError(f"unknown quicktok encoding {name!r}; known: {', '.join(QUICKTOK_ENCODINGS)} "
                         "(or tiktoken:<name>, hf:<tokenizer.json>)")
    if backend == "hf" and not Path(name).is_file():
        raise StageError(f"tokenizer.json not found: {name}")
    return backend, name


@functools.lru_cache(maxsize=8)
def load_tokenizer(spec: str = "llama3", *, threads: int = 1) -> Tokenizer:
    """Load a tokenizer by spec (cached per process). Raises :class:`StageError` when unavailable.
    Loading the default (``llama3``) takes about 0.3 s."""
    backend, name = parse_tokenizer_spec(spec)
    if backend == "quicktok":
        return _load_quicktok(name, threads)
    if backend == "tiktoken":
        return _load_tiktoken(name, threads)
    return _load_hf(name, threads)


def write_hf_tokenizer_json(path: str | Path, name: str = "llama3") -> Path:
    """Write a Hugging Face ``tokenizer.json`` equivalent to quicktok's ``name`` encoding.

    Merges are derived from the ranks the way transformers' ``TikTokenConverter`` does
    (every split of a token into two vocabulary pieces, ordered by the merged token's rank);
    ``ignore_merges`` as in Meta's published Llama 3 ``tokenizer.json``. Used by the
    benchmark and tests to compare with HF ``tokenizers`` offline; HF's merge-list BPE and the
    rank BPE disagree on a tiny fraction of rare non-Latin sequences (quicktok's README).
    """
    from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers
    if name != "llama3":
        raise ValueError("only llama3 is supported")
    ranks, specials = read_quicktok_ranks(name)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_enc = {b: chr(c) for b, c in zip(bs, cs)}

    def uni(tok: bytes) -> str:
        return "".join(byte_enc[b] for b in tok)

    vocab = {uni(t): r for t, r in ranks.items()}
    merges = []
    for tok, rank in ranks.items():
        if len(tok) == 1:
            continue
        local = []
        for i in range(1, len(tok)):
            a, b = tok[:i], tok[i:]
            if a in ranks and b in ranks:
                local.append((ranks[a], ranks[b], a, b))
        local.sort()
        merges.extend((rank, ra, rb, a, b) for ra, rb, a, b in local)
    merges.sort()
    model = models.BPE(vocab=vocab, merges=[(uni(a), uni(b)) for _, _, _, a, b in merges], ignore_merges=True)
    tok = HFTokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s, _ in sorted(specials.items(), key=lambda kv: kv[1])])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


# ---------------------------------------------------------------------------
# the stage

def tokenize_texts(tok: Tokenizer, texts: list, *, add_bos: bool, add_eos: bool) -> tuple[np.ndarray, np.ndarray]:
    """Encode texts (None -> empty) with separators; ``(flat uint32, int64 offsets)``."""
    clean = [t if t else "" for t in texts]
    flat, offsets = tok.encode_batch(clean)
    counts = np.diff(offsets)
    nonempty = np.array([bool(t) for t in clean], dtype=bool)
    extra = np.zeros(len(clean), dtype=np.int64)
    if add_bos:
        extra += nonempty
    if add_eos:
        extra += nonempty
    if not extra.any():
        return flat.astype(np.uint32, copy=False), offsets
    new_counts = counts + extra
    new_off = np.zeros(len(clean) + 1, dtype=np.int64)
    np.cumsum(new_counts, out=new_off[1:])
    out = np.empty(int(new_off[-1]), dtype=np.uint32)
    # vectorised scatter: the body of doc i lands at new_off[i] + bos_i
    bos_shift = (nonempty.astype(np.int64) if add_bos else np.zeros(len(clean), np.int64))
    doc_of_tok = np.repeat(np.arange(len(clean)), counts)
    pos_in_doc = np.arange(len(flat)) - offsets[:-1][doc_of_tok]
    out[new_off[:-1][doc_of_tok] + bos_shift[doc_of_tok] + pos_in_doc] = flat
    if add_bos:
        out[new_off[:-1][nonempty]] = tok.bos_id
    if add_eos:
        out[new_off[1:][nonempty] - 1] = tok.eos_id
    return out, new_off


@register
class Tokenize(Stage):
    """Adds ``n_tokens`` (int32) and, with ``keep_tokens``, ``tokens`` (list<uint32>).

    Options: ``tokenizer`` (``llama3`` | ``quicktok:<enc>`` | ``tiktoken:<enc>`` | ``hf:<tokenizer.json>``,
    see the module docstring),
    ``add_bos``/``add_eos`` (document separators, counted in ``n_tokens``), ``keep_tokens``,
    ``threads`` (quicktok/tiktoken threads per worker; 1 under Ray, where each worker has a core).
    Cost: one native ``encode_batch`` per batch; see ``bench/tokenize_bench.py``.
    """

    name = "tokenize"
    inputs = ("text",)
    outputs = ("n_tokens", "tokens")
    needs_model = True

    def __init__(self, *, tokenizer: str = "llama3", keep_tokens: bool = False, add_bos: bool = False,
                 add_eos: bool = True, threads: int = 1):
        if threads < 1:
            raise StageError(f"threads must be >= 1, got {threads}")
        self.backend, self.tok_name = parse_tokenizer_spec(tokenizer)
        self.tokenizer, self.keep_tokens = tokenizer, keep_tokens
        self.outputs = ("n_tokens", "tokens") if keep_tokens else ("n_tokens",)
        self.add_bos, self.add_eos, self.threads = add_bos, add_eos, threads
        self._tok: Tokenizer | None = None
        if self.backend == "tiktoken" or add_bos or add_eos:
            # tiktoken may be uncached; separators may not exist: find out now, not mid-run
            tok = load_tokenizer(tokenizer, threads=threads)
            if add_bos and tok.bos_id is None:
                raise StageError(f"tokenizer {tokenizer!r} has no begin-of-text token; set add_bos: false")
            if add_eos and tok.eos_id is None:
                raise StageError(f"tokenizer {tokenizer!r} has no end-of-text token; set add_eos: false")

    def setup(self) -> None:
        self._tok = load_tokenizer(self.tokenizer, threads=self.threads)

    def settings(self) -> dict:
        """What a token stream needs to record (and a re-tokenization needs to repeat)."""
        tok = self._tok or load_tokenizer(self.tokenizer, threads=self.threads)
        return {"name": tok.spec, "hash": tok.fingerprint, "vocab_size": tok.vocab_size,
                "add_bos": self.add_bos, "add_eos": self.add_eos, "bos_id": tok.bos_id, "eos_id": tok.eos_id}

    #: ``"llama3" -> ("tiktoken", "llama3")``, for callers that reach this stage through the registry
    parse_tokenizer = staticmethod(parse_tokenizer_spec)

    def encode(self, texts: list) -> tuple[np.ndarray, np.ndarray]:
        """``(flat uint32 ids, int64 offsets)`` of ``texts`` with this stage's separators, exactly what
        ``n_tokens`` counts (the mixture step re-tokenizes the documents it writes with it)."""
        tok = self._tok or load_tokenizer(self.tokenizer, threads=self.threads)
        return tokenize_texts(tok, texts, add_bos=self.add_bos, add_eos=self.add_eos)

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch["text"].to_pylist()
        flat, offsets = tokenize_texts(self._tok, texts, add_bos=self.add_bos, add_eos=self.add_eos)
        n = pa.array(np.diff(offsets).astype(np.int32), type=pa.int32())
        batch = set_column(batch, "n_tokens", n)
        if self.keep_tokens:
            if offsets[-1] >= 2**31:
                raise StageError("batch has over 2^31 tokens; lower engine.batch_size")
            tokens = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat, type=pa.uint32()))
            batch = set_column(batch, "tokens", tokens)
        elif "tokens" in batch.column_names:
            batch = batch.drop_columns(["tokens"])  # ids of an earlier tokenizer: stale
        return batch
