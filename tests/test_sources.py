"""The non-crawl sources of the LLaMA mix: readers (datapipe/io/) and cleaning (stages/sources/).

Inputs are real files or files built here from their publishers' documented formats:
code is this machine's Python standard library; MediaWiki XML follows the export-0.11
schema (mediawiki.org/xml/export-0.11.xsd) incl. Wikimedia's multistream bz2 layout and its
index; Posts.xml follows the StackExchange data-dump schema; LaTeX papers follow arXiv's
source layouts (folder, tarball, gzipped single file, bulk tar of per-paper .gz); books
follow Project Gutenberg's header/footer format, with real prose from the standard
library's pydoc topics. Every cleaning rule has a failing and a passing case.
"""
from __future__ import annotations

import bz2
import gzip
import io
import os
import shutil
import sysconfig
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from xml.sax.saxutils import escape, quoteattr

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datapipe.config import InputConfig, load_config, parse_config
from datapipe.io import read_shard, resolve_inputs
from datapipe.stage import apply_stage, build_stage
from datapipe.stats import StageStats
from tests.conftest import REPO

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def read_all(path, fmt: str, source: str = "src", batch_size: int = 64) -> tuple[pa.Table, StageStats]:
    stats = StageStats(stage="read")
    cfg = InputConfig(format=fmt, source=source)
    batches = list(read_shard([str(path)], input_cfg=cfg, batch_size=batch_size, stats=stats))
    tbl = pa.concat_tables(batches, promote_options="default") if batches else None
    return tbl, stats


def run_stage(name: str, table: pa.Table, **options):
    return apply_stage(build_stage(name, options), table)


# ---------------------------------------------------------------------------
# MediaWiki XML (export-0.11 schema)

NS = "http://www.mediawiki.org/xml/export-0.11/"
SITEINFO = """  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>enwiki</dbname>
    <base>https://en.wikipedia.org/wiki/Main_Page</base>
    <generator>MediaWiki 1.42.0-wmf.10</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="10" case="first-letter">Template</namespace>
    </namespaces>
  </siteinfo>
"""
HEADER = (f'<mediawiki xmlns="{NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
          f'xsi:schemaLocation="{NS} http://www.mediawiki.org/xml/export-0.11.xsd" version="0.11" xml:lang="en">\n'
          + SITEINFO)
FOOTER = "</mediawiki>\n"

ADA = """{{Short description|English mathematician}}
{{Infobox person|name=Ada Lovelace|birth_date=10 December 1815}}
'''Augusta Ada King, Countess of Lovelace''' ({{née}} '''Byron'''; 10 December 1815 – 27 November 1852) was an [[England|English]] [[mathematician]] and writer.<ref name="bbc">{{cite web |url=https://www.bbc.co.uk |title=Ada Lovelace}}</ref> She is chiefly known for her work on [[Charles Babbage]]'s proposed mechanical general-purpose computer, the [[Analytical Engine]].
[[File:Ada Lovelace portrait.jpg|thumb|Portrait of [[Ada Lovelace|Ada]] by [[Alfred Edward Chalon]]]]
<!-- hidden editor comment -->
== Biography ==
=== Childhood ===
Lord Byron expected his child to be a "glorious boy" and was disappointed when Lady Byron gave birth to a girl.
* She was privately educated in mathematics.
* She corresponded with ''Mary Somerville''.
{| class="wikitable"
! Year !! Event
|-
| 1833 || Met Babbage
|}
== Work ==
Her notes include what is recognised as the first [[algorithm]] intended to be carried out by a machine.<ref>Fuegi and Francis 2003.</ref> See [https://www.fourmilab.ch/babbage/sketch.html the Sketch].
== References ==
{{Reflist}}
=== Sources ===
* Stein, Dorothy (1985). ''Ada: A Life and a Legacy''.
== External links ==
* [https://example.org Ada Lovelace Day]
[[Category:1815 births]]
[[de:Ada Lovelace]]
"""


def page_xml(title: str, pid: int, text: str | None, *, ns: int = 0, redirect: str | None = None) -> str:
    red = f"    <redirect title={quoteattr(redirect)} />\n" if redirect else ""
    body = (f'      <text bytes="{len(text.encode())}" xml:space="preserve">{escape(text)}</text>\n'
            if text is not None else '      <text bytes="0" deleted="deleted" />\n')
    return (f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n    <id>{pid}</id>\n{red}"
            f"    <revision>\n      <id>{pid * 10}</id>\n      <parentid>{pid * 10 - 1}</parentid>\n"
            f"      <timestamp>2024-01-0{1 + pid % 9}T12:00:00Z</timestamp>\n"
            f"      <contributor>\n        <username>Editor</username>\n        <id>7</id>\n      </contributor>\n"
            f"      <comment>edit</comment>\n      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f"{body}      <sha1>phoiac9h4m842xq45sp7s6u21eteeq1</sha1>\n    </revision>\n  </page>\n")


def wiki_pages() -> list[str]:
    return [
        page_xml("Ada Lovelace", 974, ADA),
        page_xml("AdaLovelace", 975, "#REDIRECT [[Ada Lovelace]]\n\n{{R from CamelCase}}", redirect="Ada Lovelace"),
        page_xml("Template:Infobox person", 976, "{{Infobox\n| above = {{{name|}}}\n}}", ns=10),
        page_xml("Mercury", 977, "'''Mercury''' may refer to:\n* [[Mercury (planet)]]\n* [[Mercury (element)]]\n{{disambiguation}}"),
        page_xml("Deleted page", 978, None),
        page_xml("Analytical Engine", 979, "The '''Analytical Engine''' was a proposed [[digital computer]] designed by [[Charles Babbage]]."
                 "<ref>Babbage 1864.</ref>\n== See also ==\n* [[Difference engine]]\n"),
        page_xml("Stub", 980, "{{stub}}<ref>x</ref>"),
    ]


def test_mediawiki_reader_streams_pages_with_metadata(tmp_path):
    dump = tmp_path / "enwiki-20240101-pages-articles.xml.bz2"
    dump.write_bytes(bz2.compress((HEADER + "".join(wiki_pages()) + FOOTER).encode()))
    tbl, stats = read_all(dump, "mediawiki", source="wikipedia", batch_size=3)
    rows = {r["title"]: r for r in tbl.to_pylist()}
    assert "Deleted page" not in rows and stats.dropped == {"no_text": 1}
    assert stats.rows_in == 7 and stats.rows_out == len(rows) == 6
    ada = rows["Ada Lovelace"]
    assert ada["id"] == "enwiki/974" and ada["source"] == "wikipedia" and ada["lang"] == "en"
    assert ada["url"] == "https://en.wikipedia.org/wiki/Ada_Lovelace" and ada["source_detail"] == "enwiki"
    assert ada["content_type"] == "text/x-wiki" and ada["text"] == ADA and ada["wiki_namespace"] == 0
    assert ada["fetch_time"].isoformat().startswith("2024-01-03T12:00")  # day 1 + 974 % 9
    assert rows["AdaLovelace"]["wiki_redirect"] == "Ada Lovelace" and ada["wiki_redirect"] is None
    assert rows["Template:Infobox person"]["wiki_namespace"] == 10
    assert tbl.schema.field("text").type == pa.large_string()


def test_mediawiki_multistream_whole_file_and_byte_ranges(tmp_path):
    """Wikimedia's multistream layout: a header stream, streams of N pages, a footer stream,
    and an index of ``offset:page_id:title`` lines (itself bz2)."""
    from datapipe.io.wikipedia import iter_multistream_pages, read_multistream_index
    pages = wiki_pages()
    ids = [974, 975, 976, 977, 978, 979, 980]
    titles = ["Ada Lovelace", "AdaLovelace", "Template:Infobox person", "Mercury", "Deleted page",
              "Analytical Engine", "Stub"]
    streams = [bz2.compress(HEADER.encode())]
    index_lines = []
    offset = len(streams[0])
    for i in range(0, len(pages), 3):
        chunk = bz2.compress("".join(pages[i:i + 3]).encode())
        index_lines += [f"{offset}:{ids[j]}:{titles[j]}" for j in range(i, min(i + 3, len(pages)))]
        streams.append(chunk)
        offset += len(chunk)
    streams.append(bz2.compress(FOOTER.encode()))
    dump = tmp_path / "enwiki-20240101-pages-articles-multistream.xml.bz2"
    dump.write_bytes(b"".join(streams))
    index = tmp_path / "enwiki-20240101-pages-articles-multistream-index.txt.bz2"
    index.write_bytes(bz2.compress(("\n".join(index_lines) + "\n").encode()))

    whole, stats = read_all(dump, "mediawiki")
    assert whole["title"].to_pylist() == [t for t in titles if t != "Deleted page"]
    offsets = read_multistream_index(str(index))
    assert len(offsets) == 3 and offsets[0] == len(streams[0])
    # the second stream alone: pages 4..6, with the site info of the header stream
    got = list(iter_multistream_pages(str(dump), offsets[1], offsets[2], header_end=offsets[0]))
    assert [p["title"] for p in got] == titles[3:6]
    assert all(p["site"]["dbname"] == "enwiki" for p in got)
    # the last stream runs to the end of the file (the footer stream is tolerated)
    last = list(iter_multistream_pages(str(dump), offsets[2], None, header_end=offsets[0]))
    assert [p["title"] for p in last] == titles[6:]
    # and the folder expansion leaves the index out
    assert resolve_inputs([str(tmp_path)], format="mediawiki") == [str(dump)]


def test_wiki_clean_renders_articles_and_drops_non_articles(tmp_path):
    dump = tmp_path / "enwiki-20240101-pages-articles.xml"
    dump.write_text(HEADER + "".join(wiki_pages()) + FOOTER)
    tbl, _ = read_all(dump, "mediawiki")
    res = run_stage("wiki_clean", tbl)
    kept = {r["title"]: r for r in res.kept.to_pylist()}
    reasons = dict(zip(res.rejected["title"].to_pylist(), res.rejected["reason"].to_pylist()))
    # fail/pass pairs: redirect, namespace, disambiguation, too_short vs. real articles
    assert reasons == {"AdaLovelace": "wiki_clean_v1:redirect", "Template:Infobox person": "wiki_clean_v1:namespace",
                       "Mercury": "wiki_clean_v1:disambiguation", "Stub": "wiki_clean_v1:too_short"}
    assert set(kept) == {"Ada Lovelace", "Analytical Engine"}
    text = kept["Ada Lovelace"]["text"]
    assert kept["Ada Lovelace"]["content_type"] == "text/plain"
    # kept: lead text, link labels, section titles and their text, list items
    assert text.startswith("Augusta Ada King, Countess of Lovelace (Byron; 10 December 1815 – 27 November 1852)")
    for s in ("was an English mathematician and writer.", "Charles Babbage's proposed", "the Analytical Engine.",
              "\nBiography\n", "\nChildhood\n", "She was privately educated in mathematics.", "Mary Somerville",
              "first algorithm intended", "See the Sketch."):
        assert s in text, s
    # removed: templates, refs, file links and captions, comments, tables, markup, dropped sections
    for s in ("{{", "}}", "[[", "]]", "<ref", "cite web", "Fuegi", "thumb", "Portrait of", "hidden editor",
              "wikitable", "Met Babbage", "'''", "''", "References", "Stein, Dorothy", "External links",
              "Ada Lovelace Day", "Category:", "de:Ada", "https://"):
        assert s not in text, s
    # a dropped section stops at the next heading of its level or above
    ae = kept["Analytical Engine"]["text"]
    assert ae == "The Analytical Engine was a proposed digital computer designed by Charles Babbage."
    # options turn rules off: the disambiguation page and the redirect survive
    res2 = run_stage("wiki_clean", tbl, drop_disambiguation=False, keep_redirects=True, namespaces=[0, 10])
    assert {"Mercury", "AdaLovelace"} <= set(res2.kept["title"].to_pylist())
    # the template page now passes the namespace rule; as text it is empty
    assert dict(zip(res2.rejected["title"].to_pylist(), res2.rejected["reason"].to_pylist())) == {
        "Template:Infobox person": "wiki_clean_v1:too_short", "Stub": "wiki_clean_v1:too_short"}


def test_wikipedia_datasets_export_is_plain_text(tmp_path):
    d = tmp_path / "20231101.en"
    d.mkdir()
    text = "Ada Lovelace was an English mathematician. [citation] {{not a template here}}"
    pq.write_table(pa.table({"id": ["974"], "url": ["https://en.wikipedia.org/wiki/Ada_Lovelace"],
                             "title": ["Ada Lovelace"], "text": [text]}), d / "train-00000-of-00001.parquet")
    tbl, stats = read_all(d / "train-00000-of-00001.parquet", "mediawiki", source="wikipedia")
    row = tbl.to_pylist()[0]
    assert row["lang"] == "en" and row["content_type"] == "text/plain" and row["title"] == "Ada Lovelace"
    assert row["source"] == "wikipedia" and stats.rows_out == 1
    res = run_stage("wiki_clean", tbl)
    assert res.kept["text"].to_pylist() == [text], "plain-text exports are not re-parsed"


# ---------------------------------------------------------------------------
# code: the Python standard library as repositories

MIT = """MIT License

Copyright (c) 2024 Example Authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:
"""
STDLIB_FILES = ["abc.py", "numbers.py", "uu.py", "colorsys.py", "bisect.py", "keyword.py"]


@pytest.fixture()
def code_repos(tmp_path) -> Path:
    root = tmp_path / "repos"
    mit = root / "stdlib-mit"
    (mit / "pkg").mkdir(parents=True)
    (mit / "LICENSE").write_text(MIT)
    for f in STDLIB_FILES[:4]:
        shutil.copy(STDLIB / f, mit / "pkg" / f)
    shutil.copy(STDLIB / "colorsys.py", mit / "colorsys_copy.py")     # an exact duplicate file
    (mit / "blob.py").write_bytes(b"x = 1\x00\x00")                    # binary
    (mit / "notes.bin").write_bytes(b"not code")                      # unknown extension: not read
    (mit / "__pycache__").mkdir()
    (mit / "__pycache__" / "abc.py").write_text("x = 1\n")            # skipped folder
    psf = root / "stdlib-psf"
    psf.mkdir(parents=True)
    shutil.copy(STDLIB / "LICENSE.txt", psf / "LICENSE.txt")
    for f in STDLIB_FILES[4:]:
        shutil.copy(STDLIB / f, psf / f)
    return root


def test_code_reader_reads_repositories_with_licences(code_repos):
    shards = resolve_inputs([str(code_repos)], format="code")
    assert [Path(s).name for s in shards] == ["stdlib-mit", "stdlib-psf"]
    tbl, stats = read_all(shards[0], "code", source="github")
    rows = {r["path"]: r for r in tbl.to_pylist()}
    assert set(rows) == {f"pkg/{f}" for f in STDLIB_FILES[:4]} | {"colorsys_copy.py"}
    assert stats.dropped == {"binary": 1}
    r = rows["pkg/abc.py"]
    assert r["text"] == (STDLIB / "abc.py").read_text() and r["repo"] == "stdlib-mit"
    assert r["license"] == "MIT" and r["source"] == "github" and r["id"] == "stdlib-mit/pkg/abc.py"
    psf, _ = read_all(shards[1], "code")
    assert set(psf["license"].to_pylist()) == {"PSF-2.0"}, "the stdlib's own LICENSE.txt is the PSF licence"


def test_detect_license():
    from datapipe.io.code import detect_license
    assert detect_license(MIT) == "MIT"
    assert detect_license((STDLIB / "LICENSE.txt").read_text()) == "PSF-2.0"
    assert detect_license("Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/") == "Apache-2.0"
    bsd = ("Redistribution and use in source and binary forms, with or without modification, are permitted "
           "provided that the following conditions are met:")
    assert detect_license(bsd) == "BSD-2-Clause"
    assert detect_license(bsd + " 3. Neither the name of the copyright holder nor the names of its contributors") == "BSD-3-Clause"
    assert detect_license("GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007") == "GPL-3.0"
    assert detect_license("GNU LESSER GENERAL PUBLIC LICENSE Version 3") == "LGPL-3.0"
    assert detect_license("// SPDX-License-Identifier: BSD-3-Clause\n") == "BSD-3-Clause"
    assert detect_license("All rights reserved. Do not copy.") == "other"


def test_code_filter_license_keep_list(code_repos):
    tables = [read_all(s, "code")[0] for s in resolve_inputs([str(code_repos)], format="code")]
    tbl = pa.concat_tables(tables)
    res = run_stage("code_filter", tbl)
    assert set(res.kept["license"].to_pylist()) == {"MIT"}
    assert res.reasons == {"code_filter_v1:license": len(STDLIB_FILES[4:])}
    assert set(run_stage("code_filter", tbl, licenses=["PSF-*"]).kept["license"].to_pylist()) == {"PSF-2.0"}
    assert run_stage("code_filter", tbl, keep_all_licenses=True).kept.num_rows == tbl.num_rows
    no_licence = tbl.drop_columns(["license"])
    assert run_stage("code_filter", no_licence).kept.num_rows == 0


def _code_table(files: dict[str, str], license: str = "MIT") -> pa.Table:
    return pa.table({"id": list(files), "text": pa.array(list(files.values()), pa.large_string()),
                     "path": list(files), "license": [license] * len(files)})


def test_code_filter_removes_licence_headers_only():
    abc = (STDLIB / "abc.py").read_text()
    uu = (STDLIB / "uu.py").read_text()
    bisect = (STDLIB / "bisect.py").read_text()
    plain = "# Helpers for the demo\nimport os\n\nprint(os.sep)\n"
    c_file = "/*\n * Copyright (c) 2024 Example\n * SPDX-License-Identifier: MIT\n */\n#include <stdio.h>\nint main(void) { return 0; }\n"
    res = run_stage("code_filter", _code_table({"abc.py": abc, "uu.py": uu, "bisect.py": bisect, "plain.py": plain,
                                                "main.c": c_file}))
    out = dict(zip(res.kept["id"].to_pylist(), res.kept["text"].to_pylist()))
    removed = dict(zip(res.kept["id"].to_pylist(), res.kept["code_header_chars"].to_pylist()))
    assert not out["abc.py"].startswith("# Copyright") and out["abc.py"].lstrip().startswith('"""Abstract Base Classes')
    assert abc.endswith(out["abc.py"]) and removed["abc.py"] > 0
    assert out["uu.py"].startswith("#! /usr/bin/env python3\n") and "Lance Ellinghouse" not in out["uu.py"]
    assert out["main.c"].startswith("#include <stdio.h>")
    # no licence words in the leading comment (or no leading comment): untouched
    assert out["plain.py"] == plain and out["bisect.py"] == bisect
    assert removed["plain.py"] == removed["bisect.py"] == 0
    kept = run_stage("code_filter", _code_table({"abc.py": abc}), remove_headers=False).kept
    assert kept["text"].to_pylist() == [abc]


def test_code_filter_rules_fail_and_pass():
    good = "def f(x):\n    return x + 1\n"
    files = {
        "long_line_fail.py": "x = '" + "a" * 1000 + "'\n",           # 1,006-char line
        "long_line_pass.py": "x = '" + "a" * 990 + "'\n" + good * 60,
        "avg_line_fail.js": ("var a = '" + "b" * 150 + "';\n") * 5,     # mean 160 chars
        "avg_line_pass.js": ("var a = '" + "b" * 80 + "';\n") * 5,
        "alnum_fail.py": "{}[](){}[]();;--==++\n" * 10,
        "alnum_pass.py": good,
        "unknown.xyz": good,
        "header_only.py": "# Copyright 2020 Example\n# Licensed under the MIT License\n",
        "Makefile": "all:\n\tcc -o demo demo.c\n",
    }
    res = run_stage("code_filter", _code_table(files))
    reasons = dict(zip(res.rejected["id"].to_pylist(), res.rejected["reason"].to_pylist()))
    assert reasons == {"long_line_fail.py": "code_filter_v1:max_line_length",
                       "avg_line_fail.js": "code_filter_v1:avg_line_length",
                       "alnum_fail.py": "code_filter_v1:alnum_fraction",
                       "unknown.xyz": "code_filter_v1:language",
                       "header_only.py": "code_filter_v1:empty"}
    langs = dict(zip(res.kept["id"].to_pylist(), res.kept["language"].to_pylist()))
    assert langs == {"long_line_pass.py": "Python", "avg_line_pass.js": "JavaScript", "alnum_pass.py": "Python",
                     "Makefile": "Makefile"}
    # thresholds are options; a language allow-list narrows further
    assert "long_line_fail.py" in run_stage("code_filter", _code_table(files), max_line_length=2000,
                                               max_avg_line_length=2000).kept["id"].to_pylist()
    only_py = run_stage("code_filter", _code_table(files), languages=["Python"]).kept["id"].to_pylist()
    assert set(only_py) == {"long_line_pass.py", "alnum_pass.py"}
    with pytest.raises(Exception, match="unknown language"):
        build_stage("code_filter", {"languages": ["Klingon"]})


# ---------------------------------------------------------------------------
# books: Project Gutenberg format, near-dup

def gutenberg(body: str, *, title: str = "Pride and Prejudice", author: str = "Jane Austen", number: int = 1342) -> str:
    return (f"The Project Gutenberg eBook of {title}, by {author}\n\n"
            "This eBook is for the use of anyone anywhere in the United States and\n"
            "most other parts of the world at no cost and with almost no restrictions\n"
            "whatsoever. You may copy it, give it away or re-use it under the terms\n"
            "of the Project Gutenberg License included with this eBook or online at\n"
            "www.gutenberg.org.\n\n"
            f"Title: {title}\n\nAuthor: {author}\n\nRelease Date: June, 1998 [eBook #{number}]\n"
            "[Most recently updated: August 23, 2021]\n\nLanguage: English\n\n"
            "Character set encoding: UTF-8\n\n"
            f"*** START OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***\n\n"
            "Produced by Anonymous Volunteers and David Widger\n\n"
            f"{body}\n\n"
            f"*** END OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***\n\n"
            "Updated editions will replace the previous one--the old editions will\n"
            "be renamed.\n\nSTART: FULL LICENSE\n\nTHE FULL PROJECT GUTENBERG LICENSE\n")


def test_strip_gutenberg_header_footer_and_metadata(tmp_path):
    from datapipe.io.books import strip_gutenberg
    body = "Chapter 1\n\nIt is a truth universally acknowledged, that a single man in possession\nof a good fortune, must be in want of a wife."
    text, meta = strip_gutenberg(gutenberg(body))
    assert text == body + "\n"
    assert meta["title"] == "Pride and Prejudice" and meta["author"] == "Jane Austen"
    assert meta["ebook"] == "1342" and meta["lang"] == "en" and meta["header"] and meta["footer"]
    # older files: "End of the Project Gutenberg EBook of ..." footer
    old = ("Title: Emma\n\n*** START OF THIS PROJECT GUTENBERG EBOOK EMMA ***\n\nVOLUME I\n\nEmma Woodhouse.\n\n"
           "End of the Project Gutenberg EBook of Emma, by Jane Austen\n\n*** END OF THIS PROJECT GUTENBERG EBOOK EMMA ***\n")
    t2, m2 = strip_gutenberg(old)
    assert t2 == "VOLUME I\n\nEmma Woodhouse.\n" and m2["title"] == "Emma"
    # a plain text without markers is kept whole
    plain = "A book without any Gutenberg header.\nSecond line.\n"
    t3, m3 = strip_gutenberg(plain)
    assert t3 == plain and not m3["header"] and not m3["footer"]
    # through the reader: id, url, counters
    (tmp_path / "pg1342.txt").write_text(gutenberg(body))
    tbl, stats = read_all(tmp_path / "pg1342.txt", "books", source="books")
    row = tbl.to_pylist()[0]
    assert row["id"] == "gutenberg/1342" and row["url"] == "https://www.gutenberg.org/ebooks/1342"
    assert row["text"] == body + "\n" and row["title"] == "Pride and Prejudice"
    assert stats.counters == {"gutenberg_header_removed": 1, "gutenberg_footer_removed": 1}


class SerialEngine:
    num_cpus = 2

    def map(self, fn, items, *, num_cpus=1, max_in_flight=None):
        return [fn(x) for x in items]


def _prose() -> list[str]:
    """Real English prose: the paragraphs of the Python docs' topics shipped in pydoc_data."""
    from pydoc_data.topics import topics
    paras = [p.strip() for k in sorted(topics) for p in topics[k].split("\n\n")]
    return [" ".join(p.split()) for p in paras if len(p.split()) >= 25 and not p.startswith(("   ", ">>>"))]


def test_book_near_dedup_drops_over_90_percent_overlap(tmp_path):
    from datapipe.stage import WorkflowContext
    paras = _prose()
    assert len(paras) > 900
    a = paras[:300]
    near = list(a)
    for i in range(0, 300, 50):          # edit 6 of 300 paragraphs: ~98% overlap
        near[i] = paras[600 + i]
    partial = a[:180] + paras[300:420]   # 60% overlap: a different book that shares chapters
    other = paras[420:720]
    books = {"a": a, "near": near + ["Appendix: " + paras[800]], "partial": partial, "other": other}
    folder = tmp_path / "books"
    folder.mkdir()
    for i, (name, ps) in enumerate(books.items()):
        (folder / f"{name}.txt").write_text(gutenberg("\n\n".join(ps), title=f"Book {name}", number=9000 + i))
    shard_files = []
    for p in resolve_inputs([str(folder)], format="books"):
        tbl, _ = read_all(p, "books", source="books")
        f = tmp_path / "in" / f"{Path(p).stem}.parquet"
        f.parent.mkdir(exist_ok=True)
        pq.write_table(tbl, f)
        shard_files.append(str(f))
    # the options of configs/sources/books.yaml
    cfg = load_config(REPO / "configs" / "sources" / "books.yaml")
    spec = next(s for s in cfg.stages if s.name == "dedup_minhash")
    wf = build_stage(spec.name, spec.options)
    rejects = []
    ctx = WorkflowContext(inputs=sorted(shard_files), output_dir=str(tmp_path / "out"), work_dir=str(tmp_path / "w"),
                          engine=SerialEngine(), reject_sink=lambda stage, shard, t: rejects.append(t))
    (tmp_path / "out").mkdir()
    wf.run(ctx)
    kept = {r["title"] for f in shard_files for r in pq.read_table(tmp_path / "out" / Path(f).name).to_pylist()}
    dropped = {r["title"] for t in rejects for r in t.to_pylist()}
    # of the >90% pair the longer book stays; 60% overlap and unrelated books stay
    assert dropped == {"Book a"}
    assert kept == {"Book near", "Book partial", "Book other"}


# ---------------------------------------------------------------------------
# arXiv LaTeX sources

MAIN_TEX = r"""\documentclass[11pt]{article}
\usepackage{amsmath,amssymb}
\newcommand{\R}{\mathbb{R}}
\newcommand\eps{\varepsilon}
\renewcommand*{\vec}{\mathbf{v}_{\R}}
\def\loss{\mathcal{L}}
\newcommand{\norm}[1]{\left\|#1\right\|}
\def\pair#1#2{(#1,#2)}
\title{On the Convergence of Gradient Descent}
\author{A. Author}
\begin{document}
\maketitle
\begin{abstract}
We study gradient descent.
\end{abstract}
\section{Introduction}
Let $x \in \R^n$ and $\eps > 0$; we minimise $\loss(\vec)$ over 50\% of the data. % TODO: cite
% this whole line is a comment
\begin{comment}
An old paragraph that was commented out.
\end{comment}
The norm $\norm{x}$ and the pair $\pair{a}{b}$ keep their definitions. \Roman{2} is not \R.
\input{sections/method}
\bibliographystyle{plain}
\bibliography{refs}
\appendix
\section{Proofs}
Omitted.
\end{document}
"""
METHOD_TEX = r"""\section{Method}
We take steps of size $\eps$ in $\R^n$.\\% a line break then a comment
"""


def test_arxiv_reader_layouts(tmp_path):
    root = tmp_path / "arxiv"
    folder = root / "2301.00001"
    (folder / "sections").mkdir(parents=True)
    (folder / "main.tex").write_text(MAIN_TEX)
    (folder / "sections" / "method.tex").write_text(METHOD_TEX)
    (folder / "fig.pdf").write_bytes(b"%PDF-1.4")

    def tar_bytes(files: dict[str, str], mode: str = "w:gz") -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as tf:
            for name, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return buf.getvalue()
    (root / "2302.00002.tar.gz").write_bytes(tar_bytes({"main.tex": MAIN_TEX, "sections/method.tex": METHOD_TEX}))
    (root / "2303.00003.gz").write_bytes(gzip.compress(MAIN_TEX.replace(r"\input{sections/method}", "").encode()))
    bulk = io.BytesIO()
    with tarfile.open(fileobj=bulk, mode="w") as tf:
        for name, data in (("2304/2304.00004.gz", tar_bytes({"paper.tex": MAIN_TEX})),
                           ("2304/hep-th9901001.gz", gzip.compress(b"\\documentclass{article}\\begin{document}\\section{A}Old.\\end{document}")),
                           ("2304/2304.00005.gz", gzip.compress(b"%PDF-1.5 binary"))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (root / "arXiv_src_2304_001.tar").write_bytes(bulk.getvalue())

    shards = resolve_inputs([str(root)], format="arxiv")
    assert [Path(s).name for s in shards] == ["2302.00002.tar.gz", "2303.00003.gz", "arXiv_src_2304_001.tar", "arxiv"]
    rows, skipped = {}, {}
    for s in shards:
        tbl, stats = read_all(s, "arxiv", source="arxiv")
        skipped.update(stats.dropped)
        rows.update({r["id"]: r for r in tbl.to_pylist()} if tbl is not None else {})
    assert set(rows) == {"arxiv/2301.00001", "arxiv/2302.00002", "arxiv/2303.00003", "arxiv/2304.00004",
                         "arxiv/hep-th/9901001"}
    assert skipped == {"no_tex": 1}
    p = rows["arxiv/2301.00001"]
    assert p["url"] == "https://arxiv.org/abs/2301.00001" and p["title"] == "On the Convergence of Gradient Descent"
    assert "We take steps of size" in p["text"] and r"\input{sections/method}" not in p["text"], "\\input inlined"
    assert rows["arxiv/2302.00002"]["text"] == p["text"]
    assert rows["arxiv/hep-th/9901001"]["url"] == "https://arxiv.org/abs/hep-th/9901001"


def _tex_table(texts: dict[str, str]) -> pa.Table:
    return pa.table({"id": list(texts), "text": pa.array(list(texts.values()), pa.large_string())})


def test_arxiv_clean_rules_fail_and_pass():
    from datapipe.io.arxiv import assemble
    paper = assemble({"main.tex": MAIN_TEX, "sections/method.tex": METHOD_TEX})
    nosec = "\\documentclass{article}\\begin{document}Only an abstract.\\end{document}"
    res = run_stage("arxiv_clean", _tex_table({"p": paper, "nosec": nosec}))
    assert dict(zip(res.rejected["id"].to_pylist(), res.rejected["reason"].to_pylist())) == {
        "nosec": "arxiv_clean_v1:no_section"}
    # without require_section a paper is kept from its start; nothing left is "empty"
    loose = run_stage("arxiv_clean", _tex_table({"nosec": nosec, "empty": "% only a comment\n\\bibliography{x}"}),
                      require_section=False)
    assert loose.reasons == {"arxiv_clean_v1:empty": 1} and loose.kept["id"].to_pylist() == ["nosec"]
    text = res.kept["text"].to_pylist()[0]
    # first section: preamble, title and abstract are gone; the text starts at \section
    assert text.startswith(r"\section{Introduction}") and "We study gradient descent" not in text
    # comments: inline, whole-line and comment environments removed; \% is a percent sign
    assert "TODO" not in text and "whole line is a comment" not in text and "old paragraph" not in text
    assert r"50\% of the data." in text and r"$\mathbb{R}^n$.\\" in text and "a line break then a comment" not in text
    # macros without arguments are expanded (nested too), with arguments kept, \Roman untouched
    assert r"$x \in \mathbb{R}^n$" in text and r"\varepsilon > 0" in text
    assert r"\mathcal{L}(\mathbf{v}_{\mathbb{R}})" in text and r"in $\mathbb{R}^n$" in text
    assert r"\norm{x}" in text and r"\pair{a}{b}" in text and r"\Roman{2} is not \mathbb{R}." in text
    assert res.kept["arxiv_macros_expanded"].to_pylist() == [4]
    # bibliography and everything after it is gone
    assert "bibliography" not in text and "Proofs" not in text and r"\section{Method}" in text
    # passing cases of each rule on their own
    assert run_stage("arxiv_clean", _tex_table({"x": "\\section{S}\nplain text"})).kept["text"].to_pylist() == ["\\section{S}\nplain text"]


# ---------------------------------------------------------------------------
# StackExchange Posts.xml (data-dump schema)

def posts_xml(rows: list[dict]) -> bytes:
    root = ET.Element("posts")
    for r in rows:
        ET.SubElement(root, "row", {k: str(v) for k, v in r.items()})
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8")


SE_ROWS = [
    {"Id": 1, "PostTypeId": 1, "AcceptedAnswerId": 4, "CreationDate": "2010-07-20T19:09:27.200", "Score": 12,
     "ViewCount": 1200, "Body": "<p>How do I compare <code>a &lt; b</code> for generic <T>?</p>\n",
     "OwnerUserId": 5, "LastActivityDate": "2012-01-01T00:00:00.000", "Title": "Comparing <T> values & more",
     "Tags": "<java><generics>", "AnswerCount": 3, "CommentCount": 0, "ContentLicense": "CC BY-SA 2.5"},
    {"Id": 2, "PostTypeId": 1, "CreationDate": "2010-07-21T10:00:00.000", "Score": 0, "Body": "<p>Unanswered?</p>",
     "Title": "Nobody answers", "Tags": "<misc>", "AnswerCount": 0, "ContentLicense": "CC BY-SA 2.5"},
    {"Id": 3, "PostTypeId": 2, "ParentId": 1, "CreationDate": "2010-07-20T19:20:00.000", "Score": 2,
     "Body": "<p>Use <code>compareTo</code>.</p>", "ContentLicense": "CC BY-SA 2.5"},
    {"Id": 4, "PostTypeId": 2, "ParentId": 1, "CreationDate": "2010-07-20T19:30:00.000", "Score": 30,
     "Body": "<p>Implement <strong>Comparable</strong>:</p>\n<pre><code>if (a.compareTo(b) &lt; 0) {}\n</code></pre>\n<ul><li>one</li><li>two</li></ul>",
     "ContentLicense": "CC BY-SA 2.5"},
    {"Id": 5, "PostTypeId": 4, "Body": "<p>Tag wiki excerpt</p>"},
    {"Id": 6, "PostTypeId": 2, "ParentId": 999, "Score": 1, "Body": "<p>orphan</p>"},
    {"Id": 9, "PostTypeId": 2, "ParentId": 1, "CreationDate": "2015-01-01T00:00:00.000", "Score": 2,
     "Body": "<p>Late answer, same score&nbsp;as another &#8212; older first.</p>", "ContentLicense": "CC BY-SA 3.0"},
]


def test_posts_reader_groups_answers_by_score(tmp_path):
    from datapipe.io.stackexchange import iter_question_rows
    site = tmp_path / "math.stackexchange.com"
    site.mkdir()
    (site / "Posts.xml").write_bytes(posts_xml(SE_ROWS))
    assert resolve_inputs([str(tmp_path)], format="stackexchange") == [str(site / "Posts.xml")]
    tbl, stats = read_all(site / "Posts.xml", "stackexchange", source="stackexchange")
    rows = {r["id"]: r for r in tbl.to_pylist()}
    assert set(rows) == {"math.stackexchange.com/1", "math.stackexchange.com/2"}
    assert stats.dropped == {"other_post_type": 1, "orphan_answer": 1}
    q = rows["math.stackexchange.com/1"]
    assert q["source_detail"] == "math.stackexchange.com" and q["se_answers"] == 3 and q["se_score"] == 12
    assert q["url"] == "https://math.stackexchange.com/questions/1" and q["title"] == "Comparing <T> values & more"
    t = q["text"]
    assert t.startswith("Q: Comparing &lt;T&gt; values &amp; more\n\n<p>How do I compare")
    # answers by score, highest first; equal scores: the older answer first
    assert t.index("Implement") < t.index("compareTo</code>.") < t.index("Late answer")
    assert t.count("\n\nA: ") == 3
    # spilling to several partitions gives the same documents
    spilled = list(iter_question_rows(str(site / "Posts.xml"), source="s", stats=StageStats("read"), partitions=3))
    assert sorted((r["id"], r["text"]) for r in spilled) == sorted((k, v["text"]) for k, v in rows.items())


def test_stackexchange_stage_html_sites_and_answers(tmp_path):
    site = tmp_path / "math.stackexchange.com"
    site.mkdir()
    (site / "Posts.xml").write_bytes(posts_xml(SE_ROWS))
    tbl, _ = read_all(site / "Posts.xml", "stackexchange")
    res = run_stage("stackexchange", tbl)
    assert res.kept.num_rows == 2
    t = res.kept.filter(pa.compute.equal(res.kept["se_answers"], 3))["text"].to_pylist()[0]
    assert t.startswith("Q: Comparing <T> values & more\n\nHow do I compare a < b for generic ?")
    assert "if (a.compareTo(b) < 0) {}" in t and "Comparable:" in t and "<strong>" not in t and "<p>" not in t
    assert "\n- one\n- two" in t and "\n\nA: Late answer, same score as another — older first." in t
    assert "\n\nA: Implement Comparable:" in t
    # site keep-list: a site outside the list fails, short names match
    assert run_stage("stackexchange", tbl, sites=["superuser.com"]).reasons == {"stackexchange_v1:site": 2}
    assert run_stage("stackexchange", tbl, sites=["math"]).kept.num_rows == 2
    assert run_stage("stackexchange", tbl.drop_columns(["source_detail"]), all_sites=True).kept.num_rows == 2
    # answers: the unanswered question fails min_answers: 1
    assert run_stage("stackexchange", tbl, min_answers=1).reasons == {"stackexchange_v1:min_answers": 1}


# ---------------------------------------------------------------------------
# configs and the real runner

def test_source_configs_are_valid():
    for name in ("wikipedia", "code", "books", "arxiv", "stackexchange", "c4"):
        cfg = load_config(REPO / "configs" / "sources" / f"{name}.yaml")
        assert cfg.name == name
    assert load_config(REPO / "configs" / "sources" / "c4.yaml").input.source == "c4"
    llama = load_config(REPO / "configs" / "llama1.yaml")
    assert llama.mix and (REPO / llama.mix).exists()
    with pytest.raises(Exception, match="format"):
        parse_config({"input": {"format": "pdf"}})
    from datapipe.io import detect_format
    assert detect_format("dumps/enwiki-20240101-pages-articles-multistream.xml.bz2") == "mediawiki"
    assert detect_format("math.stackexchange.com/Posts.xml") == "stackexchange"
    assert detect_format("x/Posts.xml", "code") == "code" and detect_format("a.warc.gz") == "warc"


def test_code_source_end_to_end(ray_session, code_repos, tmp_path):
    from datapipe.runner import load_stats, run_pipeline
    cfg = load_config(REPO / "configs" / "sources" / "code.yaml")
    res = run_pipeline(cfg, inputs=[str(code_repos)], run_dir=tmp_path / "run", quiet=True)
    rows = [r for f in sorted((res.run_dir / "output").rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    paths = {r["path"] for r in rows}
    assert paths - {"pkg/colorsys.py", "colorsys_copy.py"} == {f"pkg/{f}" for f in STDLIB_FILES[:3]}
    assert len(paths & {"pkg/colorsys.py", "colorsys_copy.py"}) == 1, "the two colorsys copies are one file"
    assert {r["license"] for r in rows} == {"MIT"} and {r["language"] for r in rows} == {"Python"}
    assert all(r["source"] == "github" for r in rows)
    stats = {s.stage: s for s in load_stats(res.run_dir)}
    assert stats["code_filter"].dropped == {"code_filter_v1:license": 2}
    assert stats["dedup_exact"].dropped == {"dedup_exact_v1:text": 1}
    assert stats["read"].dropped == {"binary": 1}
