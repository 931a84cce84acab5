"""Perplexity benchmark: LM training time and size, scoring speed on real pages, separation.

    .venv/bin/python bench/perplexity_bench.py
    .venv/bin/python bench/perplexity_bench.py --vocab-size 65536   # CCNet's SentencePiece size

1. Training (``datapipe.lm.train.train_lm``; needs ``make kenlm``), timed stage by stage, and
   the size of the model files, for two corpora:
   - ``samplecrawl``: the sample crawl's English reference corpus (3,000 generated
     sentences), what ``make pipeline`` trains;
   - ``real``: real English text from ``../shared/data``: the 780 DCLM human-labelled
     Common Crawl documents, the cs336 Wikipedia reference page and 1,000 lingua sentences.
   Models go to a temporary folder (``--keep DIR`` keeps them).
2. Speed of the ``perplexity`` stage (``real`` model) on the realpages documents
   (extracted once, cached in bench/results/): CPU seconds in this process (one core)
   through ``apply_stage`` in batches of 64, for the pages ``langid`` calls English
   (scored) and for all pages (others pass as bucket ``none``); and where the time goes
   (normalisation, SentencePiece, KenLM).
3. Separation on held-out real text: median perplexity of lingua English sentences that
   were not trained on, of the same sentences with their words shuffled, and of random
   letters of the same shape.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from datapipe.lm import LoadedLM, discover_models, normalize_array  # noqa: E402
from datapipe.lm import train as lm_train  # noqa: E402
from datapipe.schema import table_from_rows  # noqa: E402
from datapipe.stage import apply_stage, build_stage  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
LINGUA_EN = DATA / "langid" / "lingua" / "en" / "sentences.txt"
DCLM = DATA / "quality" / "dclm-human-quality-labels"
WIKI = DATA / "quality" / "cs336-fixtures" / "high_quality_wiki_reference.txt"
HELD_OUT = 200


def corpora(tmp: Path) -> dict[str, list[str]]:
    out = {}
    from datapipe.samplecrawl import build_sample_crawl

    crawl = tmp / "samplecrawl"
    build_sample_crawl(crawl)
    out["samplecrawl"] = [str(crawl / "reference_corpus" / "en.txt")]
    real = []
    if LINGUA_EN.is_file():
        train = tmp / "lingua_en_train.txt"
        sents = [s for s in LINGUA_EN.read_text(encoding="utf-8").split("\n") if s.strip()]
        train.write_text("\n".join(sents[HELD_OUT:]) + "\n", encoding="utf-8")
        real.append(str(train))
    real += [str(p) for p in sorted(DCLM.glob("*.jsonl"))] + ([str(WIKI)] if WIKI.is_file() else [])
    if real:
        out["real"] = real
    return out


def train(name: str, inputs: list[str], out: Path, vocab_size: int) -> dict:
    t0 = time.time()
    meta = lm_train.train_lm("en", inputs, out, vocab_size=vocab_size, memory="1G", threads=1,
                             log=lambda m: None, force=True)
    wall = time.time() - t0
    ts = meta["train_seconds"]
    print(f"{name:<12}{meta['docs']:>7,}{meta['chars'] / 1e6:>8.2f}{meta['tokens']:>10,}{meta['sp_pieces']:>8,}"
          f"{ts['normalize']:>7.1f}{ts['sentencepiece']:>7.1f}{ts['tokenize']:>7.1f}{ts['lmplz']:>7.1f}"
          f"{ts['build_binary']:>7.1f}{wall:>8.1f}{meta['sizes']['arpa_bin'] / 1e6:>9.1f}"
          f"{meta['sizes']['sp_model'] / 1e6:>8.2f}")
    return meta


def speed(model_dir: Path) -> None:
    from _pages_text import realpages_text

    from stages.langid import LangID

    t = realpages_text()
    lid = LangID()
    lid.ensure_setup()
    langs, _ = lid.predict(t["text"])
    t = t.append_column("lid_lang", pa.array(langs, pa.string()))
    en = t.filter(pc.equal(t["lid_lang"], "en"))
    st = build_stage("perplexity", {"model_dir": str(model_dir)})
    st.ensure_setup()

    def run(tb: pa.Table) -> tuple[float, np.ndarray]:
        rows = tb.select(["id", "text", "lid_lang"])
        parts = [rows.slice(i, 64) for i in range(0, rows.num_rows, 64)]
        apply_stage(st, parts[0])  # load the model outside the timing
        t0 = time.process_time()
        ppl = [apply_stage(st, p).kept["ppl"] for p in parts]
        return rows.num_rows / (time.process_time() - t0), np.concatenate([np.asarray(x, float) for x in ppl])

    chars = np.asarray(pc.utf8_length(en["text"]))
    dps_en, ppl = run(en)
    dps_all, _ = run(t)
    print(f"\nscoring speed, one core, batches of 64 (model: {model_dir.name}):")
    print(f"  {en.num_rows} English realpages (median {np.median(chars):.0f} chars): {dps_en:,.0f} docs/s per core "
          f"({dps_en * np.mean(chars) / 1e6:.2f} MB/s)")
    print(f"  all {t.num_rows} realpages (non-English pass unscored): {dps_all:,.0f} docs/s per core")
    print(f"  perplexity of English realpages: p10 {np.nanpercentile(ppl, 10):.0f}, "
          f"p50 {np.nanpercentile(ppl, 50):.0f}, p90 {np.nanpercentile(ppl, 90):.0f}")
    # where the time goes
    lm = LoadedLM(discover_models(None, str(model_dir))["en"])
    flat = pc.list_flatten(pc.split_pattern(en["text"].combine_chunks(), pattern="\n"))
    t0 = time.process_time()
    norm = normalize_array(flat)
    t1 = time.process_time()
    lines = norm.filter(pc.greater(pc.utf8_length(norm), 0)).to_pylist()
    pieces = lm.sp.encode(lines, out_type=str)
    t2 = time.process_time()
    for p in pieces:
        lm.lm.score(" ".join(p))
    t3 = time.process_time()
    total = t3 - t0
    print(f"  time split over {len(lines):,} paragraphs: normalise {100 * (t1 - t0) / total:.0f}%, "
          f"SentencePiece {100 * (t2 - t1) / total:.0f}%, KenLM (Python loop) {100 * (t3 - t2) / total:.0f}%")


def separation(model_dir: Path) -> None:
    if not LINGUA_EN.is_file():
        return
    sents = [s for s in LINGUA_EN.read_text(encoding="utf-8").split("\n") if s.strip()][:HELD_OUT]
    rng = random.Random(0)

    def shuffle(s):
        w = s.split()
        rng.shuffle(w)
        return " ".join(w)

    def noise(s):
        return "".join(c if c == " " else rng.choice("abcdefghijklmnopqrstuvwxyz") for c in s)

    st = build_stage("perplexity", {"model_dir": str(model_dir), "lang_column": None})
    res = {}
    for name, texts in (("held-out sentences", sents), ("words shuffled", [shuffle(s) for s in sents]),
                        ("random letters", [noise(s) for s in sents])):
        res[name] = np.asarray(st(table_from_rows({"id": str(i), "text": t} for i, t in enumerate(texts)))["ppl"],
                               float)
    print(f"\nseparation on {len(sents)} held-out lingua English sentences (median perplexity):")
    for k, v in res.items():
        print(f"  {k:<20}{np.median(v):>10.0f}")
    good, shuf = res["held-out sentences"], res["words shuffled"]
    print(f"  sentence scored lower than its shuffle: {np.mean(good < shuf):.1%}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab-size", type=int, default=lm_train.DEFAULT_VOCAB_SIZE)
    ap.add_argument("--keep", default=None, help="keep the trained models in this folder")
    args = ap.parse_args()
    try:
        lm_train.find_kenlm_binaries()
    except lm_train.LMTrainError as e:
        print(e)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="ppl-bench-"))
    try:
        print(f"training, 1 thread, SentencePiece vocab_size={args.vocab_size} (soft), order 5; seconds:")
        print(f"{'corpus':<12}{'docs':>7}{'MB':>8}{'tokens':>10}{'pieces':>8}{'norm':>7}{'spm':>7}{'tok':>7}"
              f"{'lmplz':>7}{'binary':>7}{'total':>8}{'bin MB':>9}{'sp MB':>8}")
        metas = {}
        for name, inputs in corpora(tmp).items():
            metas[name] = train(name, inputs, tmp / name, args.vocab_size)
        best = tmp / ("real" if "real" in metas else "samplecrawl")
        speed(best)
        separation(best)
        if args.keep:
            for name in metas:
                shutil.copytree(tmp / name, Path(args.keep) / name, dirs_exist_ok=True)
        print("\nmodel.json of the real-text model:",
              json.dumps({k: metas[best.name][k] for k in ("model_id", "docs", "tokens", "sizes")}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
