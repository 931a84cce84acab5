"""A language model's files on disk (CCNet's ``lm_sp`` layout): finding, checking and naming them.

``<dir>/<lang>.sp.model`` (SentencePiece), ``<dir>/<lang>.arpa.bin`` (KenLM binary) and,
for models :mod:`datapipe.lm.train` built, ``<dir>/<lang>.model.json``; CCNet's released
``en.arpa.bin`` / ``en.sp.model`` work as is. Errors are :class:`~datapipe.stage.StageError`:
they are raised when the ``perplexity`` stage is built, before anything runs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from datapipe.stage import StageError

#: first bytes of every KenLM binary model (probing and trie)
KENLM_MAGIC = b"mmap lm http://kheafield.com/code"


class LMFiles:
    """The files of one language's model and a short id naming it in ``ppl_model``."""

    def __init__(self, lang: str, sp_path: Path, lm_path: Path):
        self.lang, self.sp_path, self.lm_path = lang, sp_path, lm_path
        self.meta_path = lm_path.with_name(f"{lang}.model.json")
        self._id: str | None = None

    @property
    def model_id(self) -> str:
        if self._id is None:
            self._id = self._model_id()
        return self._id

    def _model_id(self) -> str:
        if self.meta_path.is_file():
            try:
                meta = json.loads(self.meta_path.read_text())
                return str(meta["model_id"])
            except (ValueError, KeyError):
                pass
        h = hashlib.sha1(self.sp_path.read_bytes())
        h.update(str(self.lm_path.stat().st_size).encode())
        with open(self.lm_path, "rb") as fh:
            h.update(fh.read(1 << 16))
        return f"{self.lang}-{h.hexdigest()[:10]}"

    def validate(self) -> None:
        for p in (self.sp_path, self.lm_path):
            if not p.is_file():
                raise StageError(f"perplexity: model file {p} not found; train one with "
                                 f"`datapipe train-lm --lang {self.lang} --input CORPUS --out {p.parent}`")
        with open(self.lm_path, "rb") as fh:
            head = fh.read(len(KENLM_MAGIC))
        if head != KENLM_MAGIC:
            raise StageError(f"perplexity: {self.lm_path} is not a KenLM binary model "
                             f"(expected it to start with {KENLM_MAGIC.decode()!r}); rebuild it with build_binary")
        import sentencepiece as spm  # ~ms: a corrupt SentencePiece model fails here, not mid-run
        try:
            spm.SentencePieceProcessor(model_file=str(self.sp_path))
        except Exception as e:  # noqa: BLE001 - sentencepiece raises OSError/RuntimeError by version
            raise StageError(f"perplexity: {self.sp_path} is not a SentencePiece model: {e}") from None


def discover_models(models: dict[str, str] | None, model_dir: str | None) -> dict[str, LMFiles]:
    """Languages -> model files from ``model_dir`` (every ``<lang>.arpa.bin``) and ``models``
    (``lang -> dir``; wins over ``model_dir``)."""
    found: dict[str, LMFiles] = {}
    if model_dir is not None:
        d = Path(model_dir)
        if not d.is_dir():
            raise StageError(f"perplexity: model_dir {d} does not exist; train a model with "
                             f"`datapipe train-lm --lang LANG --input CORPUS --out {d}`")
        for lm in sorted(d.glob("*.arpa.bin")):
            lang = lm.name[: -len(".arpa.bin")]
            found[lang] = LMFiles(lang, d / f"{lang}.sp.model", lm)
        if not found:
            raise StageError(f"perplexity: no <lang>.arpa.bin model in {d}")
    for lang, path in (models or {}).items():
        d = Path(path)
        if d.is_file():  # a path to the .arpa.bin itself
            d = d.parent
        found[lang] = LMFiles(lang, d / f"{lang}.sp.model", d / f"{lang}.arpa.bin")
    if not found:
        raise StageError("perplexity: no language model configured; set `model_dir` or `models` "
                         "(train one with `datapipe train-lm`)")
    for f in found.values():
        f.validate()
        f.model_id  # noqa: B018 - read the id now (cheap), not in every worker
    return found
