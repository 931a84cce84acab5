"""Decontamination: index build time and memory, lookup speed, planted passages found.

    PYTHONPATH=. .venv/bin/python bench/decontaminate.py [--ngram 13] [--eval-pages 800]

No public benchmark set is available offline, so the "evaluation set" is real text: the
paragraphs of ``--eval-pages`` realpages documents (``bench/_pages_text``), one item per paragraph.
The other pages are the "training data"; into ``--planted`` of them one evaluation paragraph is
planted (half of them lightly edited: upper case, punctuation and line breaks changed).

Figures: index build CPU seconds, distinct n-grams, index bytes (and bytes per million n-grams),
the process's peak RSS growth while building; docs/s per core of the per-shard pass (n-gram
hashing, lookup, span removal) over the training pages; planted passages found; other pages
flagged (the realpages sets hold re-crawls and shared boilerplate, so some are real overlaps;
they are listed for audit).
"""
from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ngram", type=int, default=13)
    ap.add_argument("--eval-pages", type=int, default=800)
    ap.add_argument("--planted", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench._pages_text import realpages_text
    from stages.decontaminate import _decide, build_index

    table = realpages_text()
    r = random.Random(args.seed)
    order = list(range(table.num_rows))
    r.shuffle(order)
    eval_idx, train_idx = order[: args.eval_pages], order[args.eval_pages:]
    texts = table["text"].to_pylist()
    paras = [(f"p{i}-{j}", p) for i in eval_idx for j, p in enumerate(texts[i].split("\n")) if len(p.split()) >= 20]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ev = tmp / "eval.parquet"
        pq.write_table(pa.table({"id": [k for k, _ in paras], "text": [p for _, p in paras]}), ev)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.process_time()
        meta = build_index([{"name": "bench", "path": str(ev), "fields": ["text"], "id_field": "id"}],
                           args.ngram, tmp / "index")
        build = time.process_time() - t0
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        per_m = meta["bytes"] / max(meta["ngrams"], 1) * 1e6
        print(f"decontaminate: index of {meta['items']:,} evaluation items (paragraphs of {len(eval_idx)} realpages "
              f"documents), n = {args.ngram}: {meta['ngrams']:,} distinct n-grams, {meta['items_too_short']} items "
              f"shorter than n")
        print(f"  build {build:.2f} CPU s ({meta['ngrams'] / max(build, 1e-9) / 1e6:.2f} M n-grams/s); index "
              f"{meta['bytes'] / 1e6:.2f} MB = {per_m / 1e6:.1f} MB per million n-grams; peak RSS grew "
              f"{(rss1 - rss0) / 1024:.0f} MB while building")

        planted = {}
        rows = []
        for k, i in enumerate(train_idx):
            t = texts[i]
            if k < args.planted:
                pid, p = paras[r.randrange(len(paras))]
                if k % 2:
                    p = p.upper().replace(",", " ;").replace(". ", ".\n", 2)
                paras_i = t.split("\n")
                at = r.randrange(len(paras_i) + 1)
                t = "\n".join(paras_i[:at] + [p] + paras_i[at:])
                planted[str(i)] = pid
            rows.append({"id": str(i), "url": table["url"][i].as_py(), "text": t})
        shard = pa.Table.from_pylist(rows)
        shard = shard.set_column(shard.schema.get_field_index("text"), "text", shard["text"].cast(pa.large_string()))
        _decide(shard.slice(0, 64), 0, index=str(tmp / "index"), n=args.ngram, min_ngrams=1, action="remove",
                work=str(tmp / "w0"))  # warm: the index is memory-mapped once per process
        t0 = time.process_time()
        d = _decide(shard, 0, index=str(tmp / "index"), n=args.ngram, min_ngrams=1, action="remove",
                    work=str(tmp / "w"))
        cpu = time.process_time() - t0
        got = dict(zip(d.table["id"].to_pylist(), d.table["decontam_item"].to_pylist()))
        found = sum(1 for i, pid in planted.items() if got.get(i) is not None)
        found_exact = sum(1 for i, pid in planted.items() if got.get(i) == pid)
        edited = [i for k, i in enumerate(planted) if k % 2]
        found_edited = sum(1 for i in edited if got.get(i) is not None)
        others = [i for i, v in got.items() if v is not None and i not in planted]
        chars = sum(len(x["text"]) for x in rows) / len(rows)
        print(f"  lookup + removal: {len(rows):,} documents (mean {chars:,.0f} chars) in {cpu:.2f} CPU s -> "
              f"{len(rows) / cpu:,.0f} docs/s per core")
        print(f"  planted passages found: {found}/{len(planted)} (item named exactly: {found_exact}; lightly edited "
              f"copies found: {found_edited}/{len(edited)}); unplanted documents flagged: {len(others)} "
              f"(re-crawls / shared text of the realpages sets, for audit)")
        for i in others[:5]:
            print(f"    {table['url'][int(i)].as_py()} ~ item {got[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
