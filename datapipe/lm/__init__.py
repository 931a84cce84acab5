"""CCNet-style language models: normaliser, model files, scoring, perplexity buckets, training.

Not a stage: the ``perplexity`` stage (:mod:`stages.perplexity`), the ``perplexity_buckets``
workflow (:mod:`stages.perplexity_buckets`), ``datapipe train-lm``
(:mod:`datapipe.commands.train_lm`) and the report all use these pieces.

* :mod:`datapipe.lm.normalizer`: CCNet's text normaliser (``normalize``) and its Arrow twin.
* :mod:`datapipe.lm.files`: a model's files (``<lang>.sp.model``, ``<lang>.arpa.bin``), found and checked.
* :mod:`datapipe.lm.score`: a loaded model and CCNet's document perplexity.
* :mod:`datapipe.lm.buckets`: ``head``/``middle``/``tail`` buckets and CCNet's published cut-offs.
* :mod:`datapipe.lm.train`: SentencePiece + KenLM 5-gram training (needs ``make kenlm``).
"""
from .buckets import BUCKETS, CCNET_CUTOFFS, NO_MODEL, assign_buckets, bucket_reasons
from .files import KENLM_MAGIC, LMFiles, discover_models
from .normalizer import NORMALIZER_VERSION, normalize, normalize_array
from .score import LoadedLM, doc_perplexity
from .train import (DEFAULT_VOCAB_SIZE, LMTrainError, find_kenlm_binaries, iter_documents, train_lm,
                    write_normalized_corpus)

__all__ = [
    "BUCKETS", "CCNET_CUTOFFS", "DEFAULT_VOCAB_SIZE", "KENLM_MAGIC", "LMFiles", "LMTrainError", "LoadedLM",
    "NORMALIZER_VERSION", "NO_MODEL", "assign_buckets", "bucket_reasons", "discover_models", "doc_perplexity",
    "find_kenlm_binaries", "iter_documents", "normalize", "normalize_array", "train_lm", "write_normalized_corpus",
]
