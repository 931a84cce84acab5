"""StackExchange reader (``input.format: stackexchange``): a site's ``Posts.xml`` from the
public data dump, streamed.

``Posts.xml`` is one ``<posts>`` element with a ``<row .../>`` per post (the dump's schema:
``Id``, ``PostTypeId`` 1 = question, 2 = answer, ``ParentId`` of an answer, ``Score``,
``Body`` as HTML, ``Title``, ``Tags``, ``CreationDate`` ...). Rows are parsed with
``lxml.etree.iterparse`` and cleared as they go. An answer can come long after its question
(years of posts apart), so grouping spills: questions and answers are appended to
``partitions`` Arrow files keyed by question id (``id % partitions``, one partition per
``PARTITION_BYTES`` of input), then each partition is grouped in memory. Memory is one
partition, whatever the size of the site.

One row per question: ``text`` is ``Q: <title>\\n\\n<question body>`` followed by
``\\n\\nA: <answer body>`` for every answer, answers ordered by score (highest first, then
the older one), as LLaMA did; bodies are still HTML here: the ``stackexchange`` stage
strips the markup. Columns: ``title``, ``source_detail`` (the site, e.g.
``math.stackexchange.com``, from the folder name, or ``Posts.xml``'s parent: the dump's
archives unpack to ``<site>/Posts.xml``; ``stackoverflow.com-Posts/`` works too),
``se_score`` (question score), ``se_answers`` (answer count), ``url``
(``https://<site>/questions/<id>``), ``fetch_time`` (question creation date).
Counted skips: ``orphan_answer`` (its question is not in the file), ``other_post_type``
(wiki, tag excerpts ...), ``no_text``.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.ipc as ipc

from ..schema import parse_time
from ..stats import StageStats
from ._common import batched, build_batch, count, open_binary

EXTRA = {"title": pa.string(), "source_detail": pa.string(), "se_score": pa.int32(), "se_answers": pa.int32()}
PARTITION_BYTES = 256 * 1024 * 1024
POSTS_NAMES = ("posts.xml", "posts.xml.gz", "posts.xml.bz2", "posts.xml.zst", "posts.xml.xz")
_POST_SCHEMA = pa.schema([("qid", pa.int64()), ("id", pa.int64()), ("kind", pa.int8()), ("score", pa.int32()),
                          ("created", pa.string()), ("title", pa.string()), ("body", pa.large_string())])
_FLUSH_ROWS = 20_000


def site_of(path: str) -> str:
    """``.../math.stackexchange.com/Posts.xml`` -> ``math.stackexchange.com``."""
    base = os.path.basename(path)
    m = re.match(r"^(.+?)[-.]Posts\.xml", base, re.I)
    if m:
        return m.group(1)
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return re.sub(r"-Posts$", "", parent, flags=re.I) or "stackexchange"


def iter_post_rows(stream) -> Iterator[dict]:
    """The attributes of every ``<row>`` of a Posts.xml stream."""
    from lxml import etree
    for _, el in etree.iterparse(stream, events=("end",), tag="row", huge_tree=True):
        yield dict(el.attrib)
        el.clear()
        parent = el.getparent()
        if parent is not None:
            while el.getprevious() is not None:
                del parent[0]


def _int(v: Optional[str], default: int = 0) -> int:
    try:
        return int(v) if v is not None else default
    except ValueError:
        return default


class _Spill:
    """Appends posts to one Arrow IPC file per partition; buffers rows per partition."""

    def __init__(self, folder: str, parts: int):
        self.folder, self.parts = folder, parts
        self.buf: list[list[dict]] = [[] for _ in range(parts)]
        self.writers: dict[int, ipc.RecordBatchFileWriter] = {}

    def add(self, row: dict) -> None:
        p = row["qid"] % self.parts
        self.buf[p].append(row)
        if len(self.buf[p]) >= _FLUSH_ROWS:
            self._flush(p)

    def _flush(self, p: int) -> None:
        if not self.buf[p]:
            return
        if p not in self.writers:
            self.writers[p] = ipc.new_file(os.path.join(self.folder, f"p{p:05d}.arrow"), _POST_SCHEMA)
        self.writers[p].write_table(pa.Table.from_pylist(self.buf[p], schema=_POST_SCHEMA))
        self.buf[p] = []

    def partitions(self) -> Iterator[pa.Table]:
        if self.parts == 1 and not self.writers:
            yield pa.Table.from_pylist(self.buf[0], schema=_POST_SCHEMA)
            return
        for p in range(self.parts):
            self._flush(p)
        for w in self.writers.values():
            w.close()
        for p in range(self.parts):
            f = os.path.join(self.folder, f"p{p:05d}.arrow")
            if os.path.exists(f):
                with ipc.open_file(f) as r:
                    yield r.read_all()


def iter_question_rows(path: str, *, source: str, stats: StageStats, partitions: Optional[int] = None) -> Iterator[dict]:
    site = site_of(path)
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    parts = partitions or max(1, -(-size // PARTITION_BYTES))
    tmp = tempfile.mkdtemp(prefix="se-posts-")
    try:
        spill = _Spill(tmp, parts)
        with open_binary(path) as fh:
            for a in iter_post_rows(fh):
                kind = a.get("PostTypeId")
                if kind == "1":
                    qid = _int(a.get("Id"))
                    spill.add({"qid": qid, "id": qid, "kind": 1, "score": _int(a.get("Score")),
                               "created": a.get("CreationDate"), "title": a.get("Title") or "",
                               "body": a.get("Body") or ""})
                elif kind == "2":
                    spill.add({"qid": _int(a.get("ParentId"), -1), "id": _int(a.get("Id")), "kind": 2,
                               "score": _int(a.get("Score")), "created": a.get("CreationDate"), "title": None,
                               "body": a.get("Body") or ""})
                else:
                    stats.rows_in += 1
                    count(stats, "other_post_type")
        for tbl in spill.partitions():
            yield from _group(tbl, site=site, source=source, stats=stats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _group(tbl: pa.Table, *, site: str, source: str, stats: StageStats) -> Iterator[dict]:
    if tbl.num_rows == 0:
        return
    # question first, then answers by score (desc), then id: one sort does the grouping
    tbl = tbl.append_column("neg_score", pa.array([-s for s in tbl["score"].to_pylist()], pa.int64()))
    tbl = tbl.sort_by([("qid", "ascending"), ("kind", "ascending"), ("neg_score", "ascending"), ("id", "ascending")])
    cur: Optional[dict] = None
    answers: list[str] = []

    def emit():
        stats.rows_in += 1
        # the title is plain text in the dump, bodies are HTML: escape the title so that one
        # HTML-to-text pass (the ``stackexchange`` stage) gives both back
        text = f"Q: {html.escape(cur['title'], quote=False)}\n\n{cur['body']}" + "".join(f"\n\nA: {a}" for a in answers)
        if not (cur["title"].strip() or cur["body"].strip()):
            count(stats, "no_text")
            return None
        stats.rows_out += 1
        stats.bytes_out += len(text.encode("utf-8", "replace"))
        return {"id": f"{site}/{cur['qid']}", "text": text, "source": source,
                "url": f"https://{site}/questions/{cur['qid']}", "fetch_time": parse_time(cur["created"]),
                "content_type": "text/html", "title": cur["title"], "source_detail": site,
                "se_score": cur["score"], "se_answers": len(answers)}

    for r in tbl.select(["qid", "kind", "score", "created", "title", "body"]).to_pylist():
        if r["kind"] == 1:
            if cur is not None:
                row = emit()
                if row:
                    yield row
            cur, answers = r, []
        elif cur is not None and r["qid"] == cur["qid"]:
            answers.append(r["body"])
        else:
            stats.rows_in += 1
            count(stats, "orphan_answer")
    if cur is not None:
        row = emit()
        if row:
            yield row


def expand_input(spec: str) -> list[str]:
    if os.path.isdir(spec):
        return sorted(os.path.join(dp, f) for dp, _, fs in os.walk(spec) for f in fs
                      if f.lower().endswith(POSTS_NAMES))
    return [os.path.abspath(spec)]


def iter_batches(path: str, *, input_cfg, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    yield from batched(iter_question_rows(path, source=input_cfg.source, stats=stats), batch_size, EXTRA)
