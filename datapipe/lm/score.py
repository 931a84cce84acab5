"""A loaded SentencePiece + KenLM model and CCNet's document perplexity.

Per paragraph (``\\n``-separated line) ``log10 p`` from the KenLM model with ``<s>``/``</s>``,
tokens = pieces + 1 (for ``</s>``), both summed over the document;
``ppl = 10 ** (-sum(log10 p) / sum(tokens))`` (CCNet's ``DocLM`` and ``pp()``). Blank lines
are not scored, and paragraphs are normalised one by one (see the ``perplexity`` stage).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .files import LMFiles
from .normalizer import normalize_array


class LoadedLM:
    """SentencePiece + KenLM of one language, loaded."""

    def __init__(self, files: LMFiles):
        import kenlm
        import sentencepiece as spm

        self.files = files
        self.sp = spm.SentencePieceProcessor(model_file=str(files.sp_path))
        self.lm = kenlm.Model(str(files.lm_path))

    def score_lines(self, norm_lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(log10 p, tokens)`` per already normalised line (tokens include ``</s>``)."""
        if not norm_lines:
            return np.zeros(0), np.zeros(0)
        pieces = self.sp.encode(norm_lines, out_type=str)
        score = self.lm.score
        # measured exception to "no per-row Python loop": KenLM's Python API scores one
        # sentence per call; this loop is ~25% of the stage's time (bench/perplexity_bench.py)
        logp = np.fromiter((score(" ".join(p)) for p in pieces), dtype=np.float64, count=len(pieces))
        ntok = np.fromiter((len(p) + 1 for p in pieces), dtype=np.float64, count=len(pieces))
        return logp, ntok

    def perplexity(self, texts: pa.Array) -> np.ndarray:
        """Document perplexities (NaN for documents with no non-blank line)."""
        return doc_perplexity(texts, self.score_lines)


def doc_perplexity(texts: pa.Array | pa.ChunkedArray, score_lines) -> np.ndarray:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    n = len(texts)
    lists = pc.split_pattern(pc.fill_null(texts, ""), pattern="\n")
    parents = np.asarray(pc.list_parent_indices(lists))
    norm = normalize_array(pc.list_flatten(lists))
    keep = np.asarray(pc.greater(pc.utf8_length(norm), 0), dtype=bool)
    logp, ntok = score_lines(norm.filter(pa.array(keep)).to_pylist())
    parents = parents[keep]
    lsum = np.bincount(parents, weights=logp, minlength=n)
    tsum = np.bincount(parents, weights=ntok, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tsum > 0, 10.0 ** (-lsum / np.where(tsum > 0, tsum, 1)), np.nan)

