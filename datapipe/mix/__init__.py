"""Mixture: plan a data mixture from ``n_tokens`` and write shuffled Parquet token streams.

``datapipe mix RUN_DIR --spec SPEC.yaml`` (or :func:`run_mix`) reads the curated output of a
run (``RUN_DIR/output``), never changes it, and writes ``RUN_DIR/mix/<spec name>/``. Tuning
ratios means editing the spec and running the command again: planning reads only the
``n_tokens`` column and the columns the groups test, so ``--dry-run`` prints a new plan in
seconds (``bench/mixture_bench.py``: a million documents).

A spec (YAML)::

    name: llama1                  # output folder RUN_DIR/mix/<name> (default: file stem)
    seed: 0                       # document sampling and the global shuffle
    mode: sampling                # sampling | budget (below)
    weighting: explicit           # explicit (group weights) | temperature | unimax
    temperature: 1.0              # p ∝ n^(1/T) over available tokens n, for weighting: temperature
    total_tokens: null            # the token budget (required by mode: budget and by unimax)
    max_epochs: null              # default per-group epoch cap
    tokenizer: null               # must match the run's tokenize stage when given
    groups:                       # first matching group wins; documents matching none are left out
      - name: wikipedia
        where: {source: wikipedia}               # equality
        weight: 4.5                              # normalised over groups
        max_epochs: 2.45
      - name: en_hq
        where: {lid_lang: [en], quality_score: {min: 0.5}}   # list = one of; {min, max} = [min, max)
    output: {max_tokens_per_shard: 50000000, max_rows_per_shard: 200000, megatron: false}
    rehydrate:                    # optional (FineWeb-2): repeat documents by duplicate-cluster size
      column: dup_cluster_size    # written by dedup_minhash on survivors (null counts as 1)
      table:                      # cluster sizes [min, max) -> copies per epoch; sizes no row covers: 1
        - {min: 1, max: 2, repeat: 1}
        - {min: 2, max: 5, repeat: 2}
        - {min: 5, repeat: 3}
    # a group with `rehydrate: false` counts its documents once

Modes:

- ``sampling`` (LLaMA-style): the proportions are exact and the total is the largest one at
  which no group passes its epoch cap (and no more than ``total_tokens`` when given):
  ``T = min(total_tokens, min_g cap_g * n_g / p_g)``.
- ``budget``: fill ``total_tokens``; a group that would pass its epoch cap takes ``cap * n``
  and its remainder is shared by the others in proportion to their weights (water-filling).
  ``weighting: unimax`` is this with uniform weights (UniMax, Chung et al. 2023).

Sampling is by whole documents and deterministic: a group taking ``e`` epochs takes every
document ``floor(e)`` times, then the prefix of a seeded permutation (seeded by the spec seed
and the group's name, so editing one group leaves the others' samples alone) whose tokens come
closest to the fractional remainder. Rows are shuffled globally with the seed and cut into
shards of at most ``max_tokens_per_shard`` tokens and ``max_rows_per_shard`` rows, through
per-shard buckets on disk (one input file and one output shard in memory at a time).

Rehydration makes each document ``r`` copies of itself in its group's pool (``r`` from the
table): weights, epoch caps and epochs count the rehydrated pool (``available_tokens``), and
the plan reports ``unique_tokens`` and the factor (``rehydr x``) per group.

Token ids come from the curated ``tokens`` column when the tokenize stage kept it, else the
selected documents are tokenized again with the run's tokenizer settings (from
``RUN_DIR/config.yaml``); their lengths must equal ``n_tokens`` or the step stops.

Modules: :mod:`~datapipe.mix.spec` (the spec's schema and validation), :mod:`~datapipe.mix.plan`
(weights, caps and the seeded selection; no I/O), :mod:`~datapipe.mix.curated` (reading a run's
curated output and tokenizer settings), :mod:`~datapipe.mix.streams` (writing the streams and
manifest), :mod:`~datapipe.mix.search` (``datapipe mix search``: proxy-model mixture search, with
:mod:`~datapipe.mix.proxy` and :mod:`~datapipe.mix.fit`). The stream format and the trainer's side are :mod:`datapipe.tokenstream` and
:mod:`datapipe.loader`.
"""
from .curated import curated_files, run_tokenizer_settings, scan_curated
from .plan import GroupPlan, MixPlan, plan_mixture, temperature_weights, unimax_budgets, water_fill
from .spec import MixError, load_spec, parse_spec
from .streams import MIX_DIR, mix_from_spec, run_mix

__all__ = ["MIX_DIR", "GroupPlan", "MixError", "MixPlan", "curated_files", "load_spec", "mix_from_spec",
           "parse_spec", "plan_mixture", "run_mix", "run_tokenizer_settings", "scan_curated",
           "temperature_weights", "unimax_budgets", "water_fill"]
