"""``datapipe train-lm``: SentencePiece + KenLM 5-gram per language (CCNet), see stages/lm_train.py."""


def register(sub) -> None:
    from stages.lm_train import add_arguments, run_cli
    t = sub.add_parser("train-lm", help="train a SentencePiece + KenLM 5-gram model for the perplexity stage")
    add_arguments(t)
    t.set_defaults(fn=run_cli)
