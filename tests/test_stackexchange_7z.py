"""StackExchange dump archives (``.7z``) read as they are downloaded from the Internet Archive.

Archives are built here with py7zr the way the dump ships them: one per site
(``<site>.7z`` holding ``Posts.xml`` beside ``Users.xml``, ``Comments.xml`` ... in one solid
block), and stackoverflow.com split into ``stackoverflow.com-Posts.7z``,
``stackoverflow.com-Users.7z`` ... The Posts.xml inside is the one the tests of
``tests/test_sources.py`` read unpacked (``SE_ROWS``, the data-dump schema), plus a larger
generated site. Every expectation is the reader's own output on the unpacked file.
"""
from __future__ import annotations

import logging
import random
import shutil
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import require

py7zr = require("py7zr")

from datapipe.config import parse_config  # noqa: E402
from datapipe.io import InputError, resolve_inputs  # noqa: E402
from tests.test_sources import SE_ROWS, posts_xml, read_all  # noqa: E402

OTHER_FILES = {"Comments.xml": b'<?xml version="1.0" encoding="utf-8"?>\n<comments>\n  <row Id="1" PostId="1" Text="hi" />\n</comments>\n',
               "Users.xml": b'<?xml version="1.0" encoding="utf-8"?>\n<users>\n  <row Id="5" DisplayName="x" />\n</users>\n'}


def generated_rows(n_questions: int = 1500, seed: int = 7) -> list[dict]:
    """Questions and answers with random scores, answers out of order, a few orphans and
    wiki posts: enough text (~1.5 MB) that py7zr hands it over in several chunks."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    rows, nid = [], 1
    qids = []
    for _ in range(n_questions):
        qid, nid = nid, nid + 1
        qids.append(qid)
        rows.append({"Id": qid, "PostTypeId": 1, "CreationDate": f"2014-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T10:00:00.000",
                     "Score": rng.randint(-3, 50), "Title": " ".join(rng.choices(words, k=6)) + " <&>?",
                     "Body": "<p>" + " ".join(rng.choices(words, k=rng.randint(20, 120))) + "</p>"})
    for _ in range(n_questions * 2):
        aid, nid = nid, nid + 1
        parent = rng.choice(qids) if rng.random() > 0.01 else 10**9 + aid  # a few orphans
        rows.append({"Id": aid, "PostTypeId": 2 if rng.random() > 0.02 else 5, "ParentId": parent,
                     "CreationDate": "2015-01-01T00:00:00.000", "Score": rng.randint(-2, 30),
                     "Body": "<p>" + " ".join(rng.choices(words, k=rng.randint(5, 80))) + "</p>"})
    rng.shuffle(rows)
    return rows


def write_7z(path: Path, files: dict[str, bytes]) -> Path:
    with py7zr.SevenZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(data, name)
    return path


def unpacked_and_archived(tmp_path: Path, site_dir: str, archive: str, posts: bytes, others=OTHER_FILES):
    """``unpacked/<site_dir>/Posts.xml`` and ``archives/<archive>`` holding the same Posts.xml
    (after the other files of the site, as in the dump's solid archives)."""
    u = tmp_path / "unpacked" / site_dir
    u.mkdir(parents=True)
    (u / "Posts.xml").write_bytes(posts)
    a = tmp_path / "archives"
    a.mkdir(exist_ok=True)
    return u / "Posts.xml", write_7z(a / archive, {**others, "Posts.xml": posts})


def by_id(tbl) -> list[dict]:
    return sorted(tbl.to_pylist(), key=lambda r: r["id"])


def no_extraction_threads() -> bool:
    return not any(t.name.startswith("7z:") and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("site_dir,archive,rows", [
    ("cooking.stackexchange.com", "cooking.stackexchange.com.7z", SE_ROWS),
    ("stackoverflow.com-Posts", "stackoverflow.com-Posts.7z", SE_ROWS),
    ("math.stackexchange.com", "math.stackexchange.com.7z", None),
])
def test_7z_reads_exactly_the_unpacked_posts(tmp_path, site_dir, archive, rows):
    posts = posts_xml(rows if rows is not None else generated_rows())
    xml_path, arch = unpacked_and_archived(tmp_path, site_dir, archive, posts)
    want, want_stats = read_all(xml_path, "stackexchange", source="se")
    got, got_stats = read_all(arch, "stackexchange", source="se")
    assert want.num_rows >= 2
    assert got.schema == want.schema
    assert by_id(got) == by_id(want)  # ids (site included), text, url, metadata: every column
    assert got_stats.to_dict() == want_stats.to_dict()
    site = site_dir.removesuffix("-Posts")
    assert {r["source_detail"] for r in got.to_pylist()} == {site}
    assert all(r["id"].startswith(site + "/") for r in got.to_pylist())
    assert no_extraction_threads()


def test_expand_input_takes_archives(tmp_path, caplog):
    _, arch = unpacked_and_archived(tmp_path, "cooking.stackexchange.com", "cooking.stackexchange.com.7z", posts_xml(SE_ROWS))
    a = arch.parent
    users = write_7z(a / "stackoverflow.com-Users.7z", {"Users.xml": OTHER_FILES["Users.xml"]})
    so = write_7z(a / "stackoverflow.com-Posts.7z", {"Posts.xml": posts_xml(SE_ROWS)})
    with caplog.at_level(logging.WARNING, logger="datapipe.io.stackexchange"):
        assert resolve_inputs([str(a)], format="stackexchange") == [str(arch), str(so)]
    skipped = [r.getMessage() for r in caplog.records if "no Posts.xml" in r.getMessage()]
    assert len(skipped) == 1 and str(users) in skipped[0]
    # a single archive named on the command line
    assert resolve_inputs([str(so)], format="stackexchange") == [str(so)]
    # nothing readable left: a clear InputError
    only = tmp_path / "only_users"
    only.mkdir()
    shutil.copy(users, only / users.name)
    with pytest.raises(InputError, match="stackexchange"):
        resolve_inputs([str(only)], format="stackexchange")
    with pytest.raises(InputError, match="stackexchange"):
        resolve_inputs([str(users)], format="stackexchange")
    # an archive unpacked beside itself is read once, from its Posts.xml
    both = tmp_path / "both"
    (both / "cooking.stackexchange.com").mkdir(parents=True)
    (both / "cooking.stackexchange.com" / "Posts.xml").write_bytes(posts_xml(SE_ROWS))
    shutil.copy(arch, both / arch.name)
    assert resolve_inputs([str(both)], format="stackexchange") == [str(both / "cooking.stackexchange.com" / "Posts.xml")]


def _corrupt_copies(arch: Path, posts: bytes, out: Path) -> dict[str, Path]:
    data = arch.read_bytes()
    flipped = bytearray(data)
    mid = 32 + (len(data) - 32) // 2  # inside the packed stream (the header is at the end)
    for i in range(mid, mid + 16):
        flipped[i] ^= 0x5A
    # stored (no compression): one letter of a body changed keeps the XML well-formed and
    # only the CRC, checked after the last byte, tells: every row was parsed before the error
    stored = out.parent / "stored.7z"
    with py7zr.SevenZipFile(stored, "w", filters=[{"id": py7zr.FILTER_COPY}]) as z:
        z.writestr(posts, "Posts.xml")
    crc = bytearray(stored.read_bytes())
    at = crc.index(b"&lt;/p&gt;", len(crc) // 2) - 1
    crc[at] = ord("z") if crc[at] != ord("z") else ord("y")
    copies = {"truncated_half": data[: len(data) // 2], "truncated_tail": data[:-7],
              "corrupt_middle": bytes(flipped), "crc_mismatch": bytes(crc), "empty": b""}
    out.mkdir()
    paths = {}
    for kind, blob in copies.items():
        paths[kind] = out / f"{kind}.stackexchange.com.7z"
        paths[kind].write_bytes(blob)
    return paths


def test_truncated_or_corrupt_7z_is_a_counted_skip(tmp_path, caplog):
    posts = posts_xml(generated_rows(800))
    _, arch = unpacked_and_archived(tmp_path, "math.stackexchange.com", "math.stackexchange.com.7z", posts)
    bad = _corrupt_copies(arch, posts, tmp_path / "bad")
    for kind, path in bad.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="datapipe.io.stackexchange"):
            tbl, stats = read_all(path, "stackexchange")  # read_shard: must not raise
        assert tbl is None, kind
        assert stats.dropped == {"bad_archive": 1} and stats.rows_in == 1 and stats.rows_out == 0, (kind, stats)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and str(path) in lines[0] and "bad_archive" in lines[0], (kind, lines)
        assert no_extraction_threads(), kind
    # the folder keeps them (their header may not even open): the reader counts them
    listed = resolve_inputs([str(tmp_path / "bad")], format="stackexchange")
    assert sorted(listed) == sorted(str(p) for p in bad.values())


def test_7z_end_to_end_same_output_as_unpacked(ray_session, tmp_path):
    from datapipe.runner import load_stats, run_pipeline
    sites = {"math.stackexchange.com": "math.stackexchange.com.7z",
             "stackoverflow.com-Posts": "stackoverflow.com-Posts.7z",
             "cooking.stackexchange.com": "cooking.stackexchange.com.7z"}  # not a default site: dropped
    rows = generated_rows(300, seed=3)
    for i, (d, a) in enumerate(sites.items()):
        unpacked_and_archived(tmp_path, d, a, posts_xml(SE_ROWS + rows if i == 0 else SE_ROWS))
    archives = tmp_path / "archives"
    write_7z(archives / "stackoverflow.com-Users.7z", {"Users.xml": OTHER_FILES["Users.xml"]})
    (archives / "broken.stackexchange.com.7z").write_bytes((archives / "math.stackexchange.com.7z").read_bytes()[:-40])

    cfg = parse_config({"name": "se-7z", "input": {"format": "stackexchange", "source": "stackexchange"},
                        "stages": [{"stackexchange": {"min_answers": 0}}],
                        "output": {"rows_per_file": 500}, "engine": {"batch_size": 64}}, file="<test>")

    def run(folder: Path, name: str):
        res = run_pipeline(cfg, inputs=[str(folder)], run_dir=tmp_path / name, quiet=True)
        out = [r for f in sorted((res.run_dir / "output").rglob("*.parquet"))
               for r in pq.read_table(f, columns=["id", "text", "source_detail"]).to_pylist()]
        return sorted((r["id"], r["text"]) for r in out), {s.stage: s for s in load_stats(res.run_dir)}

    want, want_stats = run(tmp_path / "unpacked", "run_unpacked")
    got, got_stats = run(archives, "run_7z")
    assert len(want) > 300 and {i.split("/")[0] for i, _ in want} == {"math.stackexchange.com", "stackoverflow.com"}
    assert got == want
    assert got_stats["stackexchange"].dropped == want_stats["stackexchange"].dropped
    assert got_stats["stackexchange"].dropped.get("stackexchange_v1:site")  # cooking, by its archive's name
    # the broken archive: one counted skip in the read stats, the rest as unpacked
    extra = dict(got_stats["read"].dropped)
    assert extra.pop("bad_archive") == 1
    assert extra == want_stats["read"].dropped
    assert got_stats["read"].rows_in == want_stats["read"].rows_in + 1
