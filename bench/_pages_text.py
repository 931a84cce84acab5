"""Real pages as extracted text, for the LID and perplexity benchmarks.

The 1,600 realpages records (``../shared/data/warc/realpages``, de/en/es/fr/pl/pt/it/zh/ar
pages ...) go through the project's ``extract`` stage once; the texts are cached in
``bench/results/realpages_text.parquet`` (git-ignored) so later benchmark runs start at once.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
REALPAGES = ROOT / ".." / "shared" / "data" / "warc" / "realpages"
CACHE = ROOT / "bench" / "results" / "realpages_text.parquet"


def realpages_text() -> pa.Table:
    """``id``, ``url``, ``text`` (large_string), ``set`` of every realpages record with text."""
    if CACHE.is_file():
        return pq.read_table(CACHE)
    files = sorted(REALPAGES.glob("*.warc.gz"))
    if not files:
        raise SystemExit(f"no realpages WARCs in {REALPAGES} (../shared/data is needed for this benchmark)")
    sys.path.insert(0, str(ROOT))
    from warcio.archiveiterator import ArchiveIterator

    from datapipe.schema import RAW_SCHEMA, doc_id, table_from_rows
    from datapipe.stage import apply_stage, build_stage

    extract = build_stage("extract", {})
    extract.ensure_setup()
    parts = []
    for f in files:
        rows = []
        with open(f, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type != "response":
                    continue
                body = rec.content_stream().read()
                rows.append({"id": doc_id(f.name, rec.rec_headers.get_header("WARC-Record-ID")),
                             "url": rec.rec_headers.get_header("WARC-Target-URI"),
                             "content_type": "text/html", "source": "realpages",
                             "html": body.decode("utf-8", "replace")})
        print(f"[pages] extracting {len(rows)} pages of {f.name}", file=sys.stderr, flush=True)
        for i in range(0, len(rows), 64):
            out = apply_stage(extract, table_from_rows(rows[i:i + 64], RAW_SCHEMA)).kept
            out = out.filter(pa.compute.greater(pa.compute.utf8_length(pa.compute.fill_null(out["text"], "")), 0))
            set_name = f.name.removeprefix("realpages-").removesuffix(".warc.gz")
            parts.append(pa.table({"id": out["id"], "url": out["url"], "text": out["text"],
                                   "set": pa.array([set_name] * out.num_rows, pa.string())}))
    table = pa.concat_tables(parts)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, CACHE)
    return table
