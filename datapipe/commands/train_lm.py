"""``datapipe train-lm --lang L --input FILES --out DIR``: SentencePiece + KenLM 5-gram per language (CCNet).

The command line of :func:`datapipe.lm.train.train_lm`; prints the new (or reused) model's
``model.json`` summary. Exit 2 when training cannot run (no ``lmplz``, no text ...).
"""
from __future__ import annotations

import json
import sys


def register(sub) -> None:
    t = sub.add_parser("train-lm", help="train a SentencePiece + KenLM 5-gram model for the perplexity stage")
    add_arguments(t)
    t.set_defaults(fn=run_cli)


def add_arguments(p) -> None:
    p.add_argument("--lang", required=True, help="language code, as lid_lang names it (en, de ...)")
    p.add_argument("--input", nargs="+", required=True,
                   help="text/JSONL/Parquet files or folders, a save_to_disk folder, or a datasets name")
    p.add_argument("--out", required=True, help="model folder (<lang>.sp.model, <lang>.arpa.bin, <lang>.model.json)")
    p.add_argument("--order", type=int, default=5)
    # None: train_lm's DEFAULT_VOCAB_SIZE (not imported here: datapipe.lm loads pyarrow, and every CLI start
    # registers this command)
    p.add_argument("--vocab-size", type=int, default=None, help="SentencePiece vocab (soft limit)")
    p.add_argument("--text-field", default="text")
    p.add_argument("--max-docs", type=int, default=None)
    p.add_argument("--hf-split", default="train")
    p.add_argument("--hf-config", default=None)
    p.add_argument("--memory", default="2G", help="lmplz -S (sorting memory)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--keep-arpa", action="store_true")
    p.add_argument("--force", action="store_true", help="retrain even if the cached model matches")


def run_cli(args) -> int:
    from datapipe.lm.train import DEFAULT_VOCAB_SIZE, LMTrainError, train_lm

    vocab_size = DEFAULT_VOCAB_SIZE if args.vocab_size is None else args.vocab_size
    try:
        meta = train_lm(args.lang, args.input, args.out, order=args.order, vocab_size=vocab_size,
                        text_field=args.text_field, max_docs=args.max_docs, hf_split=args.hf_split,
                        hf_config=args.hf_config, memory=args.memory, threads=args.threads,
                        keep_arpa=args.keep_arpa, force=args.force)
    except LMTrainError as e:
        print(f"train-lm: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: meta[k] for k in ("model_id", "lang", "order", "sp_pieces", "docs", "tokens", "sizes",
                                           "train_seconds") if k in meta}, indent=1))
    return 0
