"""A sample of real pages (``../shared/data/warc/realpages``) as extracted text, for tests.

Records are read with warcio and extracted with trafilatura; the sample takes the
first records of each set (en, de, fr, zh ... pages) and is cached per process.
"""
from __future__ import annotations

import functools
from tests.conftest import SHARED_DATA, missing

REALPAGES = SHARED_DATA / "warc" / "realpages"
#: records taken from each file, in this order (about 100 in all)
PER_FILE = {
    "realpages-trafilatura-eval.warc.gz": 35,
    "realpages-magic-html-benchmark.warc.gz": 25,
    "realpages-mozilla-readability.warc.gz": 15,
    "realpages-chinese-wce.warc.gz": 15,
    "realpages-stia-neardup-originals.warc.gz": 15,
}


def available() -> bool:
    return all((REALPAGES / f).is_file() for f in PER_FILE)


def need() -> None:
    """Skip (or fail, under DATAPIPE_STRICT_TESTS) when the real pages are absent."""
    if not available():
        missing(f"real data not available: {REALPAGES} is absent (CI and dev machines have ../shared/data)")


@functools.lru_cache(maxsize=4)
def sample_docs(scale: float = 1.0) -> tuple[dict, ...]:
    """``({"id", "url", "text"}, ...)`` of real pages with non-empty extracted text."""
    need()
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    docs = []
    for name, n in PER_FILE.items():
        want = max(1, int(n * scale))
        got = 0
        with open(REALPAGES / name, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type != "response":
                    continue
                url = rec.rec_headers.get_header("WARC-Target-URI")
                rid = rec.rec_headers.get_header("WARC-Record-ID")
                body = rec.content_stream().read()
                text = trafilatura.extract(body, url=url, include_comments=False)
                if not text:
                    continue
                docs.append({"id": rid, "url": url, "text": text})
                got += 1
                if got >= want:
                    break
    return tuple(docs)
