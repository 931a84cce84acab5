"""Runs datatrove's filters on a JSONL of documents; run by bench/filters.py inside
bench/.venv-datatrove (datatrove is never a datapipe dependency).

usage: python _datatrove_filters.py DOCS.jsonl OUT.json LISTS_DIR

Writes {filter: {"drop": [bool per doc], "reason": [...], "cpu_s": float}}; CPU time is
time.process_time() around the filter calls only (construction and list loading
excluded). Thresholds are set to datapipe's defaults where the two differ
(FineWeb's char_duplicates_ratio 0.1, C4 bad words from the local LDNOOBW folder).
"""
from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    docs_path, out_path, lists_dir = sys.argv[1:4]
    from datatrove.data import Document
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter, URLFilter)
    from datatrove.pipeline.filters import c4_filters
    from datatrove.pipeline.filters.c4_filters import C4BadWordsFilter

    # no network here: C4's bad words from the local LDNOOBW folder
    ldnoobw = os.path.join(lists_dir, "ldnoobw")
    c4_filters.cached_asset_path_or_download = lambda url, **kw: os.path.join(ldnoobw, url.rsplit("/", 1)[-1])

    with open(docs_path) as fh:
        rows = [json.loads(line) for line in fh]

    def url_filter():
        from tldextract import TLDExtract

        f = URLFilter()
        f.tldextractor = TLDExtract(suffix_list_urls=())  # the bundled public-suffix snapshot, no fetch
        f.download_data()
        return f

    filters = {
        "gopher_quality": GopherQualityFilter,
        "gopher_repetition": GopherRepetitionFilter,
        "c4": C4QualityFilter,
        "fineweb": lambda: FineWebQualityFilter(char_duplicates_ratio=0.1),
        "nsfw_words": lambda: C4BadWordsFilter(default_language="en"),
        "url_filter": url_filter,
    }
    only = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else None
    out = {}
    for name, make in filters.items():
        if only and name not in only:
            continue
        f = make()
        if name != "url_filter":  # warm up lazy loads (spaCy, regexes) outside the timing
            f.filter(Document(text="Warm up the tokenizer. " * 20, id="w", metadata={"url": "https://a.b/"}))
        docs = [Document(text=r["text"], id=r["id"], metadata={"url": r["url"]}) for r in rows]
        drop, reason = [], []
        t = time.process_time()
        for d in docs:
            r = f.filter(d)
            keep = r if isinstance(r, bool) else r[0]
            drop.append(not keep)
            reason.append(None if keep else (r[1] if isinstance(r, tuple) else "dropped"))
        cpu = time.process_time() - t
        out[name] = {"drop": drop, "reason": reason, "cpu_s": cpu}
        print(f"datatrove {name}: {len(docs)} docs, {cpu:.2f} cpu s", file=sys.stderr)
    with open(out_path, "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main()
