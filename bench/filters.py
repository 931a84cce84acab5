"""Heuristic and NSFW filters: docs/s per core, ours vs datatrove's, and drop agreement.

    .venv/bin/python bench/filters.py [--limit N] [--repeat 3] [--batch 64] [--no-datatrove]

Documents: every record of ``../shared/data/warc/realpages/*.warc.gz`` read with warcio
and extracted with trafilatura (no bulk crawl is available offline), cached as JSONL
in /tmp. Both tools score the same documents, each filter separately on the original
text (not chained). All documents are treated as English (no language ID), as
datatrove's filters default to.

Ours: ``score`` + ``decide`` on batches of ``--batch`` rows in this process; datatrove:
``filter(doc)`` per document, run by ``bench/_datatrove_filters.py`` inside
``bench/.venv-datatrove`` (created on first use with ``python3 -m venv`` and
``pip install "datatrove[processing]" spacy``; datatrove is never a datapipe
dependency). docs/s per core = documents / CPU seconds of the filter calls
(``time.process_time``, list loading excluded), median of ``--repeat`` runs for ours,
one run for datatrove.

Same names, same thresholds: FineWeb's duplicate-line threshold is 0.1 on both sides
(datatrove's code default is 0.01); ``nsfw_words`` runs with C4's rule (drop on any
LDNOOBW English word: ``max_bad_words: 0``) against datatrove's ``C4BadWordsFilter``;
``url_filter`` uses UT1 and datatrove's word lists on both sides.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from vs_datatrove import ensure_venv  # noqa: E402  (one datatrove venv, made one way)

DATA = ROOT / ".." / "shared" / "data"
LISTS = DATA / "lists"
REALPAGES = DATA / "warc" / "realpages"
DOCS_CACHE = Path("/tmp/datapipe-bench-filters-docs.jsonl")


def load_docs(limit: int | None) -> list[dict]:
    if not DOCS_CACHE.is_file():
        import trafilatura
        from warcio.archiveiterator import ArchiveIterator

        t = time.time()
        tmp = DOCS_CACHE.with_suffix(".tmp")
        n = 0
        with open(tmp, "w") as out:
            for f in sorted(REALPAGES.glob("*.warc.gz")):
                with open(f, "rb") as fh:
                    for rec in ArchiveIterator(fh):
                        if rec.rec_type != "response":
                            continue
                        url = rec.rec_headers.get_header("WARC-Target-URI")
                        text = trafilatura.extract(rec.content_stream().read(), url=url)
                        if text:
                            out.write(json.dumps({"id": rec.rec_headers.get_header("WARC-Record-ID"),
                                                  "url": url, "text": text}) + "\n")
                            n += 1
        os.replace(tmp, DOCS_CACHE)
        print(f"extracted {n} documents from realpages in {time.time() - t:.0f}s -> {DOCS_CACHE}", file=sys.stderr)
    with open(DOCS_CACHE) as fh:
        docs = [json.loads(line) for line in fh]
    return docs[:limit] if limit else docs


def our_stages():
    from datapipe.stage import build_stage

    assets = LISTS / "datatrove-assets"
    ut1 = str(assets / "url_filterblacklistsv0_3_0.tar.gz")
    return {
        "gopher_quality": build_stage("gopher_quality"),
        "gopher_repetition": build_stage("gopher_repetition"),
        "c4": build_stage("c4"),
        "fineweb": build_stage("fineweb"),
        "nsfw_words": build_stage("nsfw_words", {"lists": [str(LISTS / "ldnoobw" / "en")],
                                                 "max_bad_words": 0, "max_ratio": None}),
        "url_filter": build_stage("url_filter", {
            "domains": [ut1], "urls": [ut1], "banned_words": [str(assets / "banned_words.txt")],
            "banned_subwords": [str(assets / "banned_subwords.txt")],
            "soft_banned_words": [str(assets / "soft_banned_words.txt")]}),
    }


def run_ours(docs: list[dict], batch: int, repeat: int) -> dict:
    import pyarrow as pa

    from datapipe.schema import table_from_rows

    tables = [table_from_rows(docs[i:i + batch]) for i in range(0, len(docs), batch)]
    out = {}
    for name, st in our_stages().items():
        st.ensure_setup()
        st.decide(st(tables[0]))  # warm-up
        times, reasons = [], []
        for _ in range(repeat):
            reasons = []
            t = time.process_time()
            for tb in tables:
                reasons.append(st.decide(st(tb)))
            times.append(time.process_time() - t)
        flat = pa.concat_arrays(reasons).to_pylist()
        out[name] = {"drop": [r is not None for r in flat], "reason": flat, "cpu_s": statistics.median(times)}
    return out


def run_datatrove(docs: list[dict]) -> dict:
    py = ensure_venv()
    src = Path("/tmp/datapipe-bench-filters-subset.jsonl")
    with open(src, "w") as fh:
        for d in docs:
            fh.write(json.dumps(d) + "\n")
    res = Path("/tmp/datapipe-bench-filters-datatrove.json")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TLDEXTRACT_CACHE="/tmp/datapipe-tldextract")
    subprocess.run([str(py), str(ROOT / "bench" / "_datatrove_filters.py"), str(src), str(res), str(LISTS)],
                   check=True, env=env)
    return json.loads(res.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="first N documents only")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-datatrove", action="store_true")
    args = ap.parse_args()
    if not REALPAGES.is_dir():
        sys.exit(f"{REALPAGES} is absent: this benchmark needs ../shared/data")
    docs = load_docs(args.limit)
    n = len(docs)
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    print(f"{n} documents ({mb:.1f} MB of text) from realpages; batch {args.batch}; "
          f"ours: median of {args.repeat}, datatrove: 1 run; single process, CPU time")
    ours = run_ours(docs, args.batch, args.repeat)
    theirs = {} if args.no_datatrove else run_datatrove(docs)
    import re

    cjk_re = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
    # CJK pages: datatrove's English spaCy tokenizer makes a whole run of Han characters one
    # "word"; ours counts characters, so word-based rules differ there by design
    cjk = [len(cjk_re.findall(d["text"])) > 0.3 * max(1, len(d["text"])) for d in docs]
    n_cjk = sum(cjk)
    print(f"{n_cjk} of them are mostly Chinese/Japanese; 'agree% non-CJK' excludes those")
    head = (f"{'filter':<19}{'ours docs/s/core':>17}{'datatrove':>11}{'speed-up':>9}"
            f"{'ours drop%':>11}{'dt drop%':>9}{'agree%':>8}{'agree% non-CJK':>16}")
    print(head)
    print("-" * len(head))
    for name, o in ours.items():
        ours_rate = n / o["cpu_s"] if o["cpu_s"] > 0 else float("inf")
        line = f"{name:<19}{ours_rate:>17,.0f}"
        od = 100 * sum(o["drop"]) / n
        if name in theirs:
            t = theirs[name]
            dt_rate = n / t["cpu_s"] if t["cpu_s"] > 0 else float("inf")
            agree = 100 * sum(a == b for a, b in zip(o["drop"], t["drop"])) / n
            td = 100 * sum(t["drop"]) / n
            pairs = [(a, b) for a, b, c in zip(o["drop"], t["drop"], cjk) if not c]
            agree_l = 100 * sum(a == b for a, b in pairs) / max(1, len(pairs))
            line += f"{dt_rate:>11,.0f}{ours_rate / dt_rate:>8.1f}x{od:>11.1f}{td:>9.1f}{agree:>8.1f}{agree_l:>16.1f}"
        else:
            line += f"{'-':>11}{'-':>9}{od:>11.1f}{'-':>9}{'-':>8}"
        print(line)
    if theirs:
        print("\ndisagreements on non-CJK pages (ours reason <-> datatrove reason), most common first:")
        from collections import Counter

        for name, o in ours.items():
            if name not in theirs:
                continue
            c = Counter((a, b) for a, b, da, db, cj in zip(o["reason"], theirs[name]["reason"], o["drop"],
                                                             theirs[name]["drop"], cjk) if da != db and not cj)
            if c:
                print(f"  {name}: " + "; ".join(f"{a} <-> {b}: {k}" for (a, b), k in c.most_common(4)))


if __name__ == "__main__":
    main()
