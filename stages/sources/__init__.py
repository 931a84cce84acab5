"""Per-source cleaning stages for the non-crawl parts of the LLaMA mixture.

One module per source; each reads the columns its reader in ``datapipe/io/`` writes:
``code`` (``code_filter``), ``wikipedia`` (``wiki_clean``), ``arxiv`` (``arxiv_clean``),
``stackexchange`` (``stackexchange``). Books need no per-document cleaning beyond the
reader's Gutenberg header/footer removal; their near-dedup is ``dedup_minhash``
(``configs/sources/books.yaml``). Global passes (code file-level exact dedup, book
near-dedup) reuse ``stages/dedup_exact.py`` and ``stages/dedup_minhash.py``.
"""
