"""Train a CCNet-style language model for the ``perplexity`` stage: SentencePiece + KenLM 5-gram.

``train_lm("en", ["enwiki.parquet"], "models/lm")`` (or ``datapipe train-lm --lang en --input
... --out models/lm``):

1. reads documents from text files (one paragraph per line), JSONL / Parquet files (the
   ``text_field`` column), folders of those, a ``datasets`` folder saved with
   ``save_to_disk``, or a Hugging Face ``datasets`` name (``load_dataset``; offline it
   reads the local cache only);
2. splits them into paragraphs and normalises each with :func:`datapipe.lm.normalizer.normalize`
   (CCNet's normaliser, the same code the stage scores with), one paragraph per line;
3. trains a SentencePiece unigram model (CCNet's settings: ``vocab_size`` 65,536 as a soft
   limit, character coverage 0.9995);
4. tokenises the corpus and runs KenLM's ``lmplz -o 5 --discount_fallback`` then
   ``build_binary`` (the programs ``make kenlm`` builds; the pip ``kenlm`` module only
   queries models);
5. writes ``<out>/<lang>.sp.model``, ``<out>/<lang>.arpa.bin`` and, last,
   ``<out>/<lang>.model.json`` (language, order, corpus hash, sizes, timings).

Training is cached: when ``<lang>.model.json`` names the same corpus hash and options,
the model is reused (the corpus is still read and normalised to compute the hash).
Several languages can share one output folder (CCNet's ``lm_sp`` layout).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from datapipe.io import tabular_format
from datapipe.io._common import open_text

from .files import KENLM_MAGIC
from .normalizer import NORMALIZER_VERSION, normalize_array

DEFAULT_VOCAB_SIZE = 65_536


class LMTrainError(RuntimeError):
    """Training cannot run (missing programs, no text, a failing lmplz)."""


def find_kenlm_binaries() -> tuple[str, str]:
    """Paths of ``lmplz`` and ``build_binary``: on PATH or beside this Python (the venv's bin/)."""
    found = []
    here = Path(sys.executable).parent
    for name in ("lmplz", "build_binary"):
        p = shutil.which(name) or (str(here / name) if os.access(here / name, os.X_OK) else None)
        if p is None:
            raise LMTrainError(
                f"KenLM's `{name}` was not found on PATH or in {here}; build lmplz and build_binary once "
                f"with `make kenlm` (runs tools/build_kenlm.sh: needs cmake, g++ and Boost headers)")
        found.append(p)
    return found[0], found[1]


# ---------------------------------------------------------------------------
# reading the reference corpus

def _kind(path: Path) -> str | None:
    """``parquet``, ``json`` or ``text`` by suffix, the same table the pipeline's readers use."""
    return {"jsonl": "json"}.get(fmt := tabular_format(str(path)), fmt)


def _iter_file(path: Path, text_field: str) -> Iterator[str]:
    kind = _kind(path) or "text"
    if kind == "parquet":
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(path)
        if text_field not in pf.schema_arrow.names:
            raise LMTrainError(f"{path}: no column {text_field!r} (columns: {pf.schema_arrow.names})")
        for rb in pf.iter_batches(columns=[text_field], batch_size=4096):
            yield from (t for t in rb.column(0).to_pylist() if t)
    elif kind == "json":
        with open_text(str(path)) as fh:
            for line in fh:
                if line.strip():
                    t = json.loads(line).get(text_field)
                    if isinstance(t, str) and t:
                        yield t
    else:  # plain text: one paragraph per line
        with open_text(str(path)) as fh:
            for line in fh:
                if line.strip():
                    yield line.rstrip("\n")


def iter_documents(inputs: Iterable[str], *, text_field: str = "text", hf_split: str = "train",
                   hf_config: str | None = None) -> Iterator[str]:
    """Texts of every input: files, folders of files, a ``save_to_disk`` folder or a HF dataset name."""
    for inp in inputs:
        p = Path(inp)
        if p.is_dir() and ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file()):
            import datasets
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[hf_split]
            yield from _iter_hf(ds, text_field, inp)
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and _kind(f) and not f.name.startswith("."))
            if not files:
                raise LMTrainError(f"{p}: no .txt/.jsonl/.json/.parquet files")
            for f in files:
                yield from _iter_file(f, text_field)
        elif p.is_file():
            yield from _iter_file(p, text_field)
        else:
            import datasets
            try:
                ds = datasets.load_dataset(inp, hf_config, split=hf_split)
            except Exception as e:  # noqa: BLE001 - datasets raises many types for "not found"
                raise LMTrainError(f"{inp!r} is neither a file, a folder nor a loadable dataset: {e}") from None
            yield from _iter_hf(ds, text_field, inp)


def _iter_hf(ds, text_field: str, name: str) -> Iterator[str]:
    if text_field not in ds.column_names:
        raise LMTrainError(f"{name}: no column {text_field!r} (columns: {ds.column_names})")
    for batch in ds.select_columns([text_field]).iter(batch_size=1024):
        yield from (t for t in batch[text_field] if t)


def write_normalized_corpus(docs: Iterable[str], out_path: Path, *, max_docs: int | None = None) -> dict:
    """Normalise every paragraph of ``docs`` into ``out_path`` (one per line, blanks dropped).

    Returns counts and the sha1 of the normalised corpus (the cache key of a model)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    h = hashlib.sha1()
    n_docs = n_lines = n_chars = 0
    buf: list[str] = []

    def flush(fh) -> None:
        nonlocal n_lines, n_chars
        lists = pc.split_pattern(pa.array(buf, pa.large_string()), pattern="\n")
        norm = normalize_array(pc.list_flatten(lists))
        norm = norm.filter(pc.greater(pc.utf8_length(norm), 0))
        if len(norm):
            data = ("\n".join(norm.to_pylist()) + "\n").encode("utf-8")
            fh.write(data)
            h.update(data)
            n_lines += len(norm)
            n_chars += int(pc.sum(pc.utf8_length(norm)).as_py())
        buf.clear()

    with open(out_path, "wb") as fh:
        for doc in docs:
            if max_docs is not None and n_docs >= max_docs:
                break
            buf.append(doc)
            n_docs += 1
            if len(buf) >= 2000:
                flush(fh)
        if buf:
            flush(fh)
    return {"corpus_sha1": h.hexdigest(), "docs": n_docs, "lines": n_lines, "chars": n_chars}


# ---------------------------------------------------------------------------

def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise LMTrainError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def _model_ok(out: Path, lang: str) -> bool:
    lm = out / f"{lang}.arpa.bin"
    if not (lm.is_file() and (out / f"{lang}.sp.model").is_file()):
        return False
    with open(lm, "rb") as fh:
        return fh.read(len(KENLM_MAGIC)) == KENLM_MAGIC


def train_lm(lang: str, inputs: list[str] | str, out_dir: str | Path, *, order: int = 5,
             vocab_size: int = DEFAULT_VOCAB_SIZE, text_field: str = "text", max_docs: int | None = None,
             hf_split: str = "train", hf_config: str | None = None, memory: str = "2G",
             threads: int | None = None, character_coverage: float = 0.9995, keep_arpa: bool = False,
             force: bool = False, log=None) -> dict:
    """Train (or reuse) ``<out_dir>/<lang>.sp.model`` + ``<lang>.arpa.bin``; returns the model.json dict.

    ``memory`` is lmplz's ``-S`` (sorting memory: ``2G``, ``25%``); ``threads`` is for
    SentencePiece (default: all CPUs). ``max_docs`` caps the documents read (CCNet used the
    first 1M Wikipedia openings). ``force`` retrains even when the cache matches.
    """
    import sentencepiece as spm

    from datapipe.rundir import atomic_write_json

    log = log or (lambda msg: print(f"[train-lm {lang}] {msg}", file=sys.stderr, flush=True))
    if isinstance(inputs, (str, Path)):
        inputs = [str(inputs)]
    if not inputs:
        raise LMTrainError("no input given")
    if not (2 <= order <= 6):
        raise LMTrainError(f"order must be 2..6 (KenLM is built with KENLM_MAX_ORDER=6), got {order}")
    lmplz, build_binary = find_kenlm_binaries()
    threads = threads or os.cpu_count() or 1
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / f"{lang}.model.json"
    params = {"order": order, "vocab_size": vocab_size, "character_coverage": character_coverage,
              "normalizer": NORMALIZER_VERSION, "model_type": "unigram"}
    tmp = Path(tempfile.mkdtemp(prefix=f".{lang}.train-", dir=out))
    t_start = time.time()
    times: dict[str, float] = {}
    try:
        t = time.time()
        corpus = tmp / "corpus.txt"
        counts = write_normalized_corpus(
            iter_documents(inputs, text_field=text_field, hf_split=hf_split, hf_config=hf_config),
            corpus, max_docs=max_docs)
        times["normalize"] = time.time() - t
        key = hashlib.sha1((counts["corpus_sha1"] + json.dumps(params, sort_keys=True)).encode()).hexdigest()
        if not force and meta_path.is_file() and _model_ok(out, lang):
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError:
                meta = {}
            if meta.get("key") == key:
                log(f"reusing {out}/{lang}.arpa.bin (same corpus {counts['corpus_sha1'][:10]} and options)")
                return meta
        if counts["lines"] == 0:
            raise LMTrainError(f"no text in {inputs} (field {text_field!r})")
        log(f"corpus: {counts['docs']:,} docs, {counts['lines']:,} paragraphs, {counts['chars']:,} chars "
            f"normalised in {times['normalize']:.1f}s")

        t = time.time()
        sp_prefix = tmp / f"{lang}.sp"
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(sp_prefix), vocab_size=vocab_size, hard_vocab_limit=False,
            character_coverage=character_coverage, model_type="unigram", input_sentence_size=2_000_000,
            shuffle_input_sentence=True, num_threads=threads, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=f"{sp_prefix}.model")
        times["sentencepiece"] = time.time() - t
        log(f"SentencePiece: {sp.get_piece_size():,} pieces in {times['sentencepiece']:.1f}s")

        t = time.time()
        tokens = tmp / "tokens.txt"
        n_tokens = 0
        with open(corpus, encoding="utf-8") as src, open(tokens, "w", encoding="utf-8") as dst:
            while True:
                chunk = [line.rstrip("\n") for _, line in zip(range(20_000), src)]
                if not chunk:
                    break
                pieces = sp.encode(chunk, out_type=str, num_threads=threads)
                n_tokens += sum(len(p) for p in pieces)
                dst.write("\n".join(" ".join(p) for p in pieces) + "\n")
        times["tokenize"] = time.time() - t

        t = time.time()
        arpa = tmp / f"{lang}.arpa"
        _run([lmplz, "-o", str(order), "-S", memory, "-T", str(tmp), "--discount_fallback",
              "--text", str(tokens), "--arpa", str(arpa)], "lmplz")
        times["lmplz"] = time.time() - t
        t = time.time()
        binary = tmp / f"{lang}.arpa.bin"
        _run([build_binary, str(arpa), str(binary)], "build_binary")
        times["build_binary"] = time.time() - t

        # replace the model: old metadata first (a half-replaced model must not look valid)
        meta_path.unlink(missing_ok=True)
        os.replace(f"{sp_prefix}.model", out / f"{lang}.sp.model")
        os.replace(binary, out / f"{lang}.arpa.bin")
        if keep_arpa:
            os.replace(arpa, out / f"{lang}.arpa")
        times["total"] = time.time() - t_start
        meta = {
            "model_id": f"{lang}-{order}g-{key[:10]}", "lang": lang, "order": order, "key": key,
            **params, "sp_pieces": sp.get_piece_size(), "corpus_sha1": counts["corpus_sha1"],
            "docs": counts["docs"], "paragraphs": counts["lines"], "chars": counts["chars"], "tokens": n_tokens,
            "inputs": [str(i) for i in inputs], "text_field": text_field, "max_docs": max_docs,
            "sizes": {"sp_model": (out / f"{lang}.sp.model").stat().st_size,
                      "arpa_bin": (out / f"{lang}.arpa.bin").stat().st_size},
            "train_seconds": {k: round(v, 2) for k, v in times.items()},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(meta_path, meta)
        log(f"done in {times['total']:.1f}s: {out}/{lang}.arpa.bin ({meta['sizes']['arpa_bin'] / 1e6:.1f} MB)")
        return meta
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

