"""StackExchange reader (``input.format: stackexchange``): a site's ``Posts.xml`` from the
public data dump, streamed, either unpacked or straight out of the dump's ``.7z`` archives.

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
(wiki, tag excerpts ...), ``no_text``, ``bad_archive`` (below).

Archives: the Internet Archive dump is one ``.7z`` per site (``cooking.stackexchange.com.7z``
holding ``Posts.xml``, ``Users.xml``, ``Comments.xml`` ...; stackoverflow.com is split into
``stackoverflow.com-Posts.7z``, ``stackoverflow.com-Users.7z`` ...). ``expand_input`` takes
them as they are: an archive is one shard, the site is its name less ``.7z`` and ``-Posts``
(the same site, hence the same ids, as the unpacked ``<site>/Posts.xml``). An archive that
holds no ``Posts.xml`` is left out with one logged line, and so is an archive whose site a
``Posts.xml`` beside it already covers (unpacked next to its archive). Reading streams
``Posts.xml`` out of the archive; Posts.xml itself never lands on disk (the grouping spill
is the same as for an unpacked file, sized by Posts.xml's uncompressed size): a thread runs
py7zr's ``extract(targets=[member], factory=...)`` whose writer puts the decompressed chunks
(a few MiB each; py7zr caps one at 128 MB) into a queue of ``_QUEUE_CHUNKS``, and
``iterparse`` reads them from the other end, so memory holds a few chunks, not the file
(measured: a 236 MB Posts.xml in a 77 MB .7z parses in 3.6 s with 26 MB more peak RSS).
Other members in the same solid block before Posts.xml are decompressed and discarded.
A corrupt or truncated archive (bad header, CRC mismatch, LZMA error, XML cut short) is
skipped whole, counted as one ``bad_archive`` row and logged; rows are only yielded after
the whole of Posts.xml has been read, so a skip never leaves half a site behind.
"""
from __future__ import annotations

import contextlib
import html
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.ipc as ipc

from ..schema import parse_time
from ..stats import StageStats
from ._common import batched, count, open_binary

EXTRA = {"title": pa.string(), "source_detail": pa.string(), "se_score": pa.int32(), "se_answers": pa.int32()}
PARTITION_BYTES = 256 * 1024 * 1024
POSTS_NAMES = ("posts.xml", "posts.xml.gz", "posts.xml.bz2", "posts.xml.zst", "posts.xml.xz")
_POST_SCHEMA = pa.schema([("qid", pa.int64()), ("id", pa.int64()), ("kind", pa.int8()), ("score", pa.int32()),
                          ("created", pa.string()), ("title", pa.string()), ("body", pa.large_string())])
_FLUSH_ROWS = 20_000
ARCHIVE_SUFFIXES = (".7z",)
_QUEUE_CHUNKS = 8

log = logging.getLogger(__name__)


def is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def site_of(path: str) -> str:
    """``.../math.stackexchange.com/Posts.xml`` -> ``math.stackexchange.com``; archives:
    ``math.stackexchange.com.7z`` and ``stackoverflow.com-Posts.7z`` -> the name less ``.7z``
    and ``-Posts``, as their unpacked folders ``<site>/`` and ``stackoverflow.com-Posts/``."""
    base = os.path.basename(path)
    if is_archive(base):
        return re.sub(r"-Posts$", "", base[: -len(".7z")], flags=re.I) or "stackexchange"
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


class BadArchive(Exception):
    """A ``.7z`` that cannot be read to the end (header, CRC, decompression or XML error)."""


def _open_archive(path: str):
    import py7zr
    if os.path.exists(path):
        return py7zr.SevenZipFile(path, mode="r")
    import fsspec  # a remote archive: py7zr seeks in it (header at the end, then the data)
    return py7zr.SevenZipFile(fsspec.open(path, "rb").open(), mode="r")


def posts_member(archive) -> Optional[tuple[str, int]]:
    """(name, uncompressed size) of the archive's ``Posts.xml`` (the shallowest one), or None."""
    found = [(f.filename.count("/"), f.filename, f.uncompressed or 0) for f in archive.list()
             if not f.is_directory and f.filename.rsplit("/", 1)[-1].lower() == "posts.xml"]
    return min(found)[1:] if found else None


class _ChunkStream:
    """The read end of an archive member: a file-like ``read(n)`` over the chunks that py7zr's
    extraction thread puts into a bounded queue (``None`` = end, an exception = it failed)."""

    def __init__(self, chunks: "queue.Queue"):
        self.chunks, self.buf, self.pos, self.done = chunks, b"", 0, False

    def read(self, n: int = -1) -> bytes:
        while self.pos >= len(self.buf):
            if self.done:
                return b""
            item = self.chunks.get()
            if item is None:
                self.done = True
                return b""
            if isinstance(item, BaseException):
                self.done = True
                raise BadArchive(f"{type(item).__name__}: {item}") from item
            self.buf, self.pos = item, 0
        end = len(self.buf) if n is None or n < 0 else self.pos + n
        out = self.buf[self.pos:end]
        self.pos += len(out)
        return out


class _Cancelled(Exception):
    """The reader left: stop extracting."""


def _put(chunks: "queue.Queue", item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            chunks.put(item, timeout=0.2)
            return
        except queue.Full:
            continue
    raise _Cancelled()


def _stream_member(archive, member: str, stop: threading.Event) -> tuple[_ChunkStream, threading.Thread]:
    """Start extracting ``member`` into a queue (a daemon thread that owns and closes ``archive``)."""
    from py7zr.io import Py7zIO, WriterFactory
    chunks: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)

    class Writer(Py7zIO):
        def write(self, s) -> int:
            _put(chunks, bytes(s), stop)
            return len(s)

        def read(self, size=None) -> bytes:
            return b""

        def seek(self, offset: int, whence: int = 0) -> int:
            return 0

        def flush(self) -> None:
            pass

        def size(self) -> int:
            return 0

    class Factory(WriterFactory):
        def create(self, filename: str) -> Py7zIO:
            return Writer()

    def produce():
        try:
            archive.extract(targets=[member], factory=Factory())
            _put(chunks, None, stop)
        except _Cancelled:
            pass
        except BaseException as e:  # handed to the reader, which counts the skip
            try:
                _put(chunks, e, stop)
            except _Cancelled:
                pass
        finally:
            try:
                archive.close()
            except Exception:
                pass

    t = threading.Thread(target=produce, name=f"7z:{member}", daemon=True)
    t.start()
    return _ChunkStream(chunks), t


@contextlib.contextmanager
def _open_posts(path: str) -> Iterator[tuple[int, Iterator[dict]]]:
    """(uncompressed size, rows of Posts.xml): a file opened by suffix, or the ``Posts.xml`` of
    a ``.7z`` streamed by an extraction thread that is stopped however the caller leaves.
    Archive trouble raises ``BadArchive``."""
    if not is_archive(path):
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        with open_binary(path) as fh:
            yield size, iter_post_rows(fh)
        return
    try:
        archive = _open_archive(path)
    except Exception as e:
        raise BadArchive(f"{type(e).__name__}: {e}") from e
    try:
        member = posts_member(archive)
    except Exception as e:
        archive.close()
        raise BadArchive(f"{type(e).__name__}: {e}") from e
    if member is None:
        archive.close()
        raise BadArchive("no Posts.xml in the archive")
    stop = threading.Event()
    stream, thread = _stream_member(archive, member[0], stop)
    try:
        yield member[1], iter_post_rows(stream)
    except Exception as e:
        from lxml import etree
        if isinstance(e, etree.XMLSyntaxError):  # cut short or garbled inside a sound archive
            raise BadArchive(f"Posts.xml is not well-formed XML: {e}") from e
        raise
    finally:
        stop.set()
        thread.join(timeout=5)


def iter_question_rows(path: str, *, source: str, stats: StageStats, partitions: Optional[int] = None) -> Iterator[dict]:
    site = site_of(path)
    tmp = tempfile.mkdtemp(prefix="se-posts-")
    try:
        other = 0
        try:
            with _open_posts(path) as (size, posts):
                spill = _Spill(tmp, partitions or max(1, -(-size // PARTITION_BYTES)))
                for a in posts:
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
                        other += 1
        except BadArchive as e:
            _skip(path, stats, e)
            return
        # counted once the whole file is read: a skipped archive leaves only its bad_archive row
        if other:
            stats.rows_in += other
            count(stats, "other_post_type", other)
        for tbl in spill.partitions():
            yield from _group(tbl, site=site, source=source, stats=stats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _skip(path: str, stats: StageStats, err: Exception) -> None:
    """One unreadable archive: one ``bad_archive`` row in the read stats, one log line."""
    stats.rows_in += 1
    count(stats, "bad_archive")
    log.warning("%s: unreadable StackExchange archive, skipped (bad_archive): %s", path, err)


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
    """A folder: its ``Posts.xml`` files and its ``.7z`` archives that hold a ``Posts.xml``;
    a file: itself (an archive without ``Posts.xml``: nothing). Archives whose header cannot be
    read are kept: the reader counts them as ``bad_archive``."""
    if os.path.isdir(spec):
        found = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(spec) for f in fs
                       if f.lower().endswith(POSTS_NAMES + ARCHIVE_SUFFIXES) and not f.startswith("."))
    else:
        found = [os.path.abspath(spec)]
    unpacked = {site_of(f) for f in found if not is_archive(f)}
    out = []
    for f in found:
        if is_archive(f):
            if site_of(f) in unpacked:
                log.warning("%s: skipped, %s is already read from its unpacked Posts.xml", f, site_of(f))
                continue
            if not _holds_posts(f):
                log.warning("%s: skipped, the archive holds no Posts.xml", f)
                continue
        out.append(f)
    return out


def _holds_posts(path: str) -> bool:
    try:
        archive = _open_archive(path)
    except Exception:
        return True  # unreadable: the reader counts and logs it
    try:
        return posts_member(archive) is not None
    except Exception:
        return True
    finally:
        archive.close()


def iter_batches(path: str, *, input_cfg, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    yield from batched(iter_question_rows(path, source=input_cfg.source, stats=stats), batch_size, EXTRA)
