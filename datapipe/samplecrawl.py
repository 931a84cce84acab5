"""A deterministic sample crawl: CommonCrawl-like WARC files built offline.

``build_sample_crawl(out_dir, n_pages=400, n_files=4, seed=0)`` writes
``n_files`` per-record-gzip WARC files (warcio) with, per capture, the records a
CommonCrawl WARC has: ``request``, ``response``, ``metadata`` (plus one
``warcinfo`` per file). The pages exercise every stage of the pipeline:

=====================  =========================================================
kind                   what is planted
=====================  =========================================================
``article``            news articles, mostly English, also de/fr/es/ru/zh, with
                       navigation, cookie banner, share bar, related links,
                       comments and footer around them (extraction removes them);
                       some carry a table, sub-headings or a blockquote
``spam``               keyword-stuffed pages with link farms
``adult``              pages with a few (tame) adult words
``short``              404 / "coming soon" / "enable JavaScript" pages
``repeated_lines``     event listings where most lines repeat
``exact_dup``          byte-identical copy of an article at another URL
``near_dup``           an article re-published on another site, a few words changed
``image_png``          a PNG image (non-HTML response)
``application_pdf``    a small PDF (non-HTML response)
``malformed_http``     a response whose HTTP header block is broken
``revisit``            a WARC ``revisit`` record (identical-payload-digest)
``charset_cp1252``     German article in windows-1252, charset only in ``<meta>``
``charset_latin1``     French article in ISO-8859-1, charset only in ``<meta>``
``charset_gb18030``    Chinese article in GB18030 (HTTP header and ``<meta>``)
``blocklisted_domain`` an ordinary article on a domain of the UT1 adult list
=====================  =========================================================

Beside the WARCs: ``sample_crawl_manifest.json`` (``url -> kind``, what tests
assert on), ``sample_crawl_details.json`` (per URL: kind, language, file, record
id, ``dup_of``, charset) and ``reference_corpus/<lang>.txt`` (3,000 sentences per
language from the same generators, none of them in any page: the training text for
a KenLM model that later scores the articles as head/middle and spam as tail).

Deterministic: the same ``seed`` gives byte-identical files (WARC-Date and
WARC-Record-ID derive from the seed; gzip members carry no mtime). No network.

    python -m datapipe.samplecrawl OUT_DIR [--n-pages 400] [--n-files 4] [--seed 0]

Cost: ~1 s for the default 400 pages (about 6 MB of WARC).
"""
from __future__ import annotations

import argparse
import hashlib
import html as htmllib
import io
import json
import random
import re
import struct
import sys
import unicodedata
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .samplelang import LANGS, TOPICS, Lang, cap

MANIFEST_NAME = "sample_crawl_manifest.json"
DETAILS_NAME = "sample_crawl_details.json"
REFERENCE_DIR = "reference_corpus"
REFERENCE_SENTENCES = 3000
MIN_PAGES = 40

#: every kind a build plants (tests assert all are present)
KINDS = ("article", "spam", "adult", "short", "repeated_lines", "exact_dup", "near_dup", "image_png",
         "application_pdf", "malformed_http", "revisit", "charset_cp1252", "charset_latin1", "charset_gb18030",
         "blocklisted_domain")
#: share of articles per language (the rest of the weight is English)
ARTICLE_LANGS = {"en": 0.55, "de": 0.09, "fr": 0.09, "es": 0.09, "ru": 0.09, "zh": 0.09}
#: a domain listed in the UT1 adult blocklist (and with "xxx" in its name)
BLOCKLISTED_DOMAIN = "freexxxvideos.com"
BASE_DATE = datetime(2024, 5, 18, 0, 0, 0, tzinfo=timezone.utc)

SPAM_KEYWORDS = ["cheap watches", "replica handbags", "casino bonus", "payday loans", "online pharmacy", "weight loss pills",
                 "free shipping", "best price", "buy now", "discount code", "cheap flights", "crypto profit",
                 "limited offer", "click here", "make money fast", "no prescription", "free spins", "lowest price"]
ADULT_WORDS = ["porn", "xxx", "nude", "erotic", "sex", "webcam", "escort", "camgirl", "playboy", "nsfw"]
ADULT_TEMPLATES = ["Watch the hottest {a} videos, updated every day.", "Our {a} models are online right now.",
                   "Join for free to see {a} photos and {b} chats.", "The best {a} site with thousands of {b} galleries.",
                   "New {a} clips and {b} shows every hour.", "Meet a {a} near you tonight, no sign-up needed."]


# ---------------------------------------------------------------------------
# pages

@dataclass
class ArticlePage:
    """One rendered article page and what extraction should keep or drop."""

    html: str
    title: str
    paragraphs: list[str]        # the article text, one entry per <p>
    boilerplate: list[str]       # strings around the article that extraction must remove
    lang: str
    site: tuple[str, str]
    topic: str
    layout: dict = field(default_factory=dict)   # sub-headings, blockquote, table


@dataclass
class Page:
    url: str
    kind: str
    lang: str | None
    body: bytes                  # HTTP payload
    content_type: str            # HTTP Content-Type
    charset: str | None = None
    dup_of: str | None = None
    sentences: list[str] = field(default_factory=list)


def _esc(s: str) -> str:
    return htmllib.escape(s, quote=True)


def _slug(text: str, fallback: str) -> str:
    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return "-".join(s.split("-")[:8]) or fallback


def _article_text(L: Lang, rng: random.Random, topic: str, n_par: int, title: str = "") -> list[str]:
    return L.article(rng, topic, n_par, avoid=title)


def render_article(L: Lang, rng: random.Random, *, site: tuple[str, str] | None = None, topic: str | None = None,
                   paragraphs: list[str] | None = None, title: str | None = None, charset: str = "utf-8",
                   related: list[str] | None = None, date: datetime | None = None,
                   layout: dict | None = None) -> ArticlePage:
    """An article inside a full site layout (header, nav, cookie banner, share bar,
    related links, optional comments, footer)."""
    topic = topic or rng.choice(TOPICS)
    site = site or rng.choice(L.sites)
    title = title or L.headline(rng, topic)
    paragraphs = paragraphs or _article_text(L, rng, topic, rng.randint(4, 8), title)
    date = date or BASE_DATE - timedelta(days=rng.randint(1, 400))
    related = related or [L.headline(rng, rng.choice(TOPICS)) for _ in range(4)]
    B = L.boiler
    name, _, _ = L.person_role(rng, topic)
    author = name
    rights = f"\u00a9 {date.year} {site[0]}. {B.rights}"

    if layout is None:  # where sub-headings, a blockquote and a table go; near-dups reuse it
        layout = {"subheads": {}, "quote_at": -1, "table": None}
        if rng.random() < 0.3 and len(paragraphs) >= 5:
            heads = rng.sample(L.subheads, 2)
            layout["subheads"] = {i: h for i, h in zip((2, 4), heads)}
        if rng.random() < 0.2:
            layout["quote_at"] = rng.randrange(len(paragraphs))
        if rng.random() < 0.15 and len(paragraphs) >= 5:
            layout["table"] = [(y, rng.randint(10, 900), f"{rng.choice(['+', '-'])}{rng.randint(1, 30)}%")
                               for y in range(2021, 2024)]
    body: list[str] = []
    for i, p in enumerate(paragraphs):
        if i in layout["subheads"]:
            body.append(f"<h2>{_esc(layout['subheads'][i])}</h2>")
        if i == layout["quote_at"]:
            body.append(f"<blockquote><p>{_esc(p)}</p></blockquote>")
        else:
            body.append(f"<p>{_esc(p)}</p>")
    if layout["table"]:
        rows = "".join(f"<tr><td>{a}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in layout["table"])
        head = "".join(f"<th>{_esc(h)}</th>" for h in L.table_head)
        body.append(f"<table class=\"data\"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    comments = ""
    if rng.random() < 0.3:
        cs = "".join(f"<div class=\"comment\"><span class=\"user\">user{rng.randint(10, 9999)}</span>"
                     f"<p>{_esc(c)}</p></div>" for c in rng.sample(L.comments, 2))
        comments = f"<section class=\"comments\" id=\"comments\"><h3>{_esc(B.comments)}</h3>{cs}</section>"
    nav = "".join(f"<li><a href=\"/{_slug(n, 'section')}/\">{_esc(n)}</a></li>" for n in B.nav)
    rel = "".join(f"<li><a href=\"/{topic}/{_slug(t, str(i))}-{rng.randint(1000, 99999)}.html\">{_esc(t)}</a></li>"
                  for i, t in enumerate(related))
    foot = "".join(f"<li><a href=\"/{_slug(f, 'page')}\">{_esc(f)}</a></li>" for f in B.footer_links)
    meta_charset = f"<meta charset=\"{charset}\">"
    page = f"""<!DOCTYPE html>
<html lang="{L.code}">
<head>
{meta_charset}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)} | {_esc(site[0])}</title>
<meta name="description" content="{_esc(paragraphs[0][:150])}">
<link rel="stylesheet" href="/static/css/main.{rng.randint(10000, 99999)}.css">
<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments);}}gtag('js',new Date());</script>
</head>
<body class="article-page">
<div id="cookie-banner" class="cookie-banner"><p>{_esc(B.cookie)}</p><button type="button">{_esc(B.accept)}</button></div>
<header class="site-header">
<a class="logo" href="/">{_esc(site[0])}</a>
<nav class="main-nav" aria-label="main"><ul>{nav}</ul></nav>
<form class="search" action="/search"><input type="search" name="q" placeholder="{_esc(B.search)}"></form>
</header>
<main id="content">
<div class="breadcrumbs"><a href="/">{_esc(B.home)}</a> &rsaquo; <a href="/{topic}/">{_esc(B.topic_names[topic])}</a></div>
<article class="story">
<h1>{_esc(title)}</h1>
<p class="byline">{_esc(B.byline)} <a rel="author" href="/authors/{_slug(author, 'author')}">{_esc(author)}</a> \u00b7 <time datetime="{date:%Y-%m-%d}">{date:%Y-%m-%d}</time></p>
{chr(10).join(body)}
</article>
<div class="share"><span>{_esc(B.share)}</span> <a href="#">Facebook</a> <a href="#">X</a> <a href="#">E-mail</a></div>
{comments}
<aside class="related"><h3>{_esc(B.related)}</h3><ul>{rel}</ul></aside>
<div class="newsletter"><p>{_esc(B.newsletter)}</p><form><input type="email" name="email"><button>OK</button></form></div>
</main>
<footer class="site-footer">
<ul class="footer-links">{foot}</ul>
<p class="copyright">{_esc(rights)}</p>
</footer>
<script src="/static/js/app.{rng.randint(10000, 99999)}.js" defer></script>
</body>
</html>
"""
    boilerplate = [B.cookie, B.newsletter, rights, B.related] + list(related)
    return ArticlePage(page, title, paragraphs, boilerplate, L.code, site, topic, layout)


def sample_article_page(lang: str = "en", seed: int = 0) -> ArticlePage:
    """One article page in ``lang`` exactly as the builder writes them (for tests)."""
    return render_article(LANGS[lang], random.Random(f"{seed}:sample-article:{lang}"))


def _spam_page(rng: random.Random) -> tuple[str, list[str]]:
    kws = SPAM_KEYWORDS
    title = " ".join(cap(k) for k in rng.sample(kws, 4))
    paras = []
    for _ in range(rng.randint(4, 7)):
        words = [rng.choice(kws) for _ in range(rng.randint(25, 45))]
        paras.append(" ".join(words) + " " + rng.choice(["!!!", "$$$", ">>>", "100% FREE"]))
    links = "".join(f"<li><a href=\"/go/{rng.randint(100, 999)}\">{_esc(rng.choice(kws))} {_esc(rng.choice(kws))}</a></li>"
                    for _ in range(30))
    body = "".join(f"<p>{_esc(p)}</p>" for p in paras)
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>"
            f"<meta name=\"keywords\" content=\"{_esc(', '.join(kws))}\"></head><body>"
            f"<div class=\"content\"><h1>{_esc(title)}</h1>{body}<ul class=\"links\">{links}</ul></div>"
            f"<div class=\"footer\">{_esc(' | '.join(kws[:6]))}</div></body></html>")
    return page, paras


def _adult_page(rng: random.Random) -> tuple[str, list[str]]:
    paras = []
    for _ in range(rng.randint(3, 5)):
        sents = [rng.choice(ADULT_TEMPLATES).format(a=rng.choice(ADULT_WORDS), b=rng.choice(ADULT_WORDS))
                 for _ in range(rng.randint(3, 5))]
        paras.append(" ".join(sents))
    title = f"Free {rng.choice(ADULT_WORDS)} and {rng.choice(ADULT_WORDS)} videos"
    body = "".join(f"<p>{_esc(p)}</p>" for p in paras)
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_esc(title)}</title></head>"
            f"<body><nav><a href=\"/\">Home</a> <a href=\"/new\">New</a> <a href=\"/top\">Top rated</a></nav>"
            f"<article><h1>{_esc(title)}</h1>{body}</article>"
            f"<footer><p>You must be 18 or older to enter this site.</p></footer></body></html>")
    return page, paras


_SHORT = [("Page not found", "Sorry, the page you are looking for does not exist."),
          ("Coming soon", "Our new website is under construction."),
          ("Loading", "Please enable JavaScript to view this site."),
          ("Sign in", "Please log in to continue.")]


def _short_page(rng: random.Random, i: int) -> str:
    title, line = _SHORT[i % len(_SHORT)]
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>"
            f"<body><div class=\"box\"><h1>{title}</h1><p>{line}</p></div></body></html>")


def _repeated_page(L: Lang, rng: random.Random) -> tuple[str, list[str]]:
    venues = ["Riverside Hall", "the Old Market", "the City Park stage", "the Harbour Club", "St. Mary's Church"]
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    months = ["June", "July", "August", "September"]
    lines = []
    for _ in range(rng.randint(12, 20)):
        lines.append(f"{rng.choice(days)}, {rng.randint(1, 28)} {rng.choice(months)}: {rng.choice(venues)}")
        lines.append("Tickets available at the door.")
        lines.append("Doors open one hour before the show.")
    title = f"{rng.choice(['Summer', 'Autumn', 'Open air', 'Jazz'])} tour dates {rng.randint(2023, 2024)}"
    body = "".join(f"<p>{_esc(x)}</p>" for x in lines)
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_esc(title)}</title></head><body>"
            f"<header><a href=\"/\">The Lanterns</a></header><article><h1>{_esc(title)}</h1>{body}</article>"
            f"<footer><p>\u00a9 The Lanterns</p></footer></body></html>")
    return page, lines


def _png(rng: random.Random, w: int = 16, h: int = 16) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    base = rng.randint(0, 200)
    raw = b"".join(b"\x00" + bytes((base + x * 3 + y * 5) % 256 for x in range(w * 3)) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _pdf(text: str) -> bytes:
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + o + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref))
    return out.getvalue()


def _near_dup_paragraphs(L: Lang, rng: random.Random, paragraphs: list[str], n_changes: int) -> list[str]:
    """Change ``n_changes`` words (numbers, names, single words) of an article."""
    paras = list(paragraphs)
    for _ in range(n_changes):
        i = rng.randrange(len(paras))
        if L.code == "zh":
            p = paras[i]
            cjk = [k for k, ch in enumerate(p) if "\u4e00" <= ch <= "\u9fff"]
            j = cjk[rng.randrange(len(cjk))]
            paras[i] = p[:j] + rng.choice("新大小多少") + p[j + 1:]
            continue
        words = paras[i].split(" ")
        j = rng.randrange(len(words))
        w = words[j]
        if re.fullmatch(r"\d+[.,%]?", w):
            words[j] = re.sub(r"\d+", str(rng.randint(2, 99)), w)
        else:
            words[j] = rng.choice([w.upper() if len(w) < 4 else w[:-1], w + w[-1:], rng.choice(L.last)])
        paras[i] = " ".join(words)
    return paras


def _split_sentences(text: str, lang: str) -> list[str]:
    if lang == "zh":
        return [s for s in re.findall(r"[^。！？]*[。！？][”」]?", text) if s.strip()]
    return [s for s in re.split(r"(?<=[.!?\u00bb\u201c\u201d])\s+", text) if s.strip()]


# ---------------------------------------------------------------------------
# the crawl plan

def _kind_counts(n: int) -> dict[str, int]:
    counts = {
        "spam": max(2, round(n * 0.04)), "adult": max(2, round(n * 0.015)), "short": max(2, round(n * 0.025)),
        "repeated_lines": max(2, round(n * 0.025)), "exact_dup": max(2, round(n * 0.03)),
        "near_dup": max(2, round(n * 0.03)), "image_png": max(1, n // 200), "application_pdf": max(1, n // 200),
        "malformed_http": 1, "revisit": 1, "charset_cp1252": 1, "charset_latin1": 1, "charset_gb18030": 1,
        "blocklisted_domain": 1,
    }
    counts["article"] = n - sum(counts.values())
    return counts


def _article_langs(n: int, rng: random.Random) -> list[str]:
    langs: list[str] = []
    for code, share in ARTICLE_LANGS.items():
        if code != "en":
            langs += [code] * max(2, round(n * share))
    langs += ["en"] * (n - len(langs))
    rng.shuffle(langs)
    return langs


def plan_pages(n_pages: int = 400, seed: int = 0) -> list[Page]:
    """Every capture of the crawl, in crawl order (no I/O)."""
    if n_pages < MIN_PAGES:
        raise ValueError(f"n_pages must be >= {MIN_PAGES} so that every kind is planted, got {n_pages}")
    rng = random.Random(f"datapipe-samplecrawl:{seed}:plan")
    counts = _kind_counts(n_pages)
    pages: list[Page] = []
    used_urls: set[str] = set()

    def url_for(domain: str, topic: str, title: str, scheme: str = "https") -> str:
        while True:
            u = f"{scheme}://www.{domain}/{topic}/{rng.randint(2023, 2024)}/{rng.randint(1, 12):02d}/" \
                f"{_slug(title, 'story')}-{rng.randint(10000, 999999)}.html"
            if u not in used_urls:
                used_urls.add(u)
                return u

    def html_page(url, kind, lang, html, *, charset="utf-8", ctype=None, sentences=(), dup_of=None) -> Page:
        data = html.encode(charset)
        return Page(url, kind, lang, data, ctype or f"text/html; charset={charset.upper() if charset != 'utf-8' else 'utf-8'}",
                    charset, dup_of, list(sentences))

    articles: list[tuple[Page, ArticlePage]] = []
    for lang in _article_langs(counts["article"], rng):
        L = LANGS[lang]
        art = render_article(L, rng)
        url = url_for(art.site[1], art.topic, art.title if lang not in ("zh", "ru") else "")
        sents = [s for p in art.paragraphs for s in _split_sentences(p, lang)]
        page = html_page(url, "article", lang, art.html, sentences=sents)
        pages.append(page)
        articles.append((page, art))

    for i in range(counts["exact_dup"]):
        orig, art = articles[rng.randrange(len(articles))]
        url = url_for(art.site[1], "print", art.title if art.lang not in ("zh", "ru") else "")
        pages.append(Page(url, "exact_dup", orig.lang, orig.body, orig.content_type, orig.charset, orig.url))
    for i in range(counts["near_dup"]):
        orig, art = articles[rng.randrange(len(articles))]
        L = LANGS[art.lang]
        other_sites = [s for s in L.sites if s != art.site]
        paras = _near_dup_paragraphs(L, rng, art.paragraphs, rng.randint(2, 4))
        nd = render_article(L, rng, site=rng.choice(other_sites), topic=art.topic, paragraphs=paras, title=art.title,
                            layout=art.layout)
        url = url_for(nd.site[1], art.topic, art.title if art.lang not in ("zh", "ru") else "")
        sents = [s for p in paras for s in _split_sentences(p, art.lang)]
        pages.append(html_page(url, "near_dup", art.lang, nd.html, sentences=sents, dup_of=orig.url))

    for i in range(counts["spam"]):
        html, paras = _spam_page(rng)
        pages.append(html_page(url_for(rng.choice(["best-deals-online.biz", "cheap-offers-24.info", "top-bonus.win"]),
                                       "offers", "deal"), "spam", "en", html))
    for i in range(counts["adult"]):
        html, paras = _adult_page(rng)
        pages.append(html_page(url_for(rng.choice(["hotcamlounge.net", "nightclips.example.org"]), "videos", "clip"),
                               "adult", "en", html))
    for i in range(counts["short"]):
        pages.append(html_page(url_for(rng.choice(EN_SITES_SHORT), "page", "x"), "short", "en", _short_page(rng, i)))
    for i in range(counts["repeated_lines"]):
        html, lines = _repeated_page(LANGS["en"], rng)
        pages.append(html_page(url_for("thelanterns-band.com", "tour", "dates"), "repeated_lines", "en", html))
    for i in range(counts["image_png"]):
        pages.append(Page(url_for("riverside-gazette.com", "images", "photo").replace(".html", ".png"), "image_png", None,
                          _png(rng), "image/png"))
    for i in range(counts["application_pdf"]):
        pages.append(Page(url_for("northern-courier.co.uk", "files", "report").replace(".html", ".pdf"), "application_pdf",
                          None, _pdf(f"Annual report {2020 + i}"), "application/pdf"))

    # non-UTF-8 pages: the HTTP header of cp1252/latin-1 names no charset, only <meta> does
    de = LANGS["de"]
    title = de.headline(rng, "culture")
    paras = _article_text(de, rng, "culture", 5, title)
    paras[-1] += f" Der Eintritt kostet {rng.randint(5, 25)} \u20ac, erm\u00e4\u00dfigt die H\u00e4lfte."
    art = render_article(de, rng, topic="culture", paragraphs=paras, title=title, charset="windows-1252")
    pages.append(html_page(url_for(art.site[1], "kultur", art.title), "charset_cp1252", "de", art.html,
                           charset="windows-1252", ctype="text/html",
                           sentences=[s for p in paras for s in _split_sentences(p, "de")]))
    fr = LANGS["fr"]
    while True:  # ISO-8859-1 has no œ, ’ or €: draw until the text fits
        art = render_article(fr, rng, charset="iso-8859-1")
        try:
            art.html.encode("iso-8859-1")
            break
        except UnicodeEncodeError:
            continue
    pages.append(html_page(url_for(art.site[1], art.topic, art.title), "charset_latin1", "fr", art.html,
                           charset="iso-8859-1", ctype="text/html",
                           sentences=[s for p in art.paragraphs for s in _split_sentences(p, "fr")]))
    zh = LANGS["zh"]
    title = zh.headline(rng, "culture")
    paras = _article_text(zh, rng, "culture", 5, title)
    paras[-1] += f"展览门票为{rng.randint(10, 40)}\u20ac。"  # € is two bytes in GB18030, one (0x80) in GBK
    art = render_article(zh, rng, topic="culture", paragraphs=paras, title=title, charset="gb18030")
    pages.append(html_page(url_for(art.site[1], "culture", ""), "charset_gb18030", "zh", art.html,
                           charset="gb18030", ctype="text/html; charset=GB18030",
                           sentences=[s for p in paras for s in _split_sentences(p, "zh")]))

    en = LANGS["en"]
    art = render_article(en, rng, site=("Free XXX Videos", BLOCKLISTED_DOMAIN))
    pages.append(html_page(url_for(BLOCKLISTED_DOMAIN, art.topic, art.title, scheme="http"), "blocklisted_domain", "en",
                           art.html, sentences=[s for p in art.paragraphs for s in _split_sentences(p, "en")]))

    # a response whose HTTP header block is broken, and a revisit of an article
    pages.append(Page(url_for("lakeside-daily.net", "city", "broken"), "malformed_http", "en",
                      b"HTPP/1.1 two hundred\r\nContent-Type text/html\r\nthis is not a header\r\n\r\n"
                      b"<html><body><p>Half a page.</p></body></html>", "text/html"))
    orig = articles[rng.randrange(len(articles))][0]
    pages.append(Page(orig.url + "?utm_source=feed", "revisit", orig.lang, b"", orig.content_type, orig.charset, orig.url))
    used_urls.add(orig.url + "?utm_source=feed")

    rng.shuffle(pages)
    assert len(pages) == n_pages, (len(pages), n_pages)
    return pages


EN_SITES_SHORT = ["riverside-gazette.com", "harborcitytimes.com", "lakeside-daily.net", "smallshop-online.com"]


# ---------------------------------------------------------------------------
# writing

def _record_id(seed: int, *parts: object) -> str:
    h = hashlib.sha1(("datapipe-samplecrawl\x1f" + "\x1f".join(map(str, (seed,) + parts))).encode()).digest()
    return f"<urn:uuid:{uuid.UUID(bytes=h[:16], version=4)}>"


def _warc_date(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _http_date(dt: datetime) -> str:
    return dt.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _write_file(path: Path, pages: list[Page], *, seed: int, file_index: int, clock: datetime,
                pages_by_url: dict[str, Page], record_ids: dict[str, str]) -> datetime:
    from warcio.recordloader import ArcWarcRecord
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True, warc_version="1.0")
        info_id = _record_id(seed, "warcinfo", file_index)
        info = (f"software: datapipe.samplecrawl/1\r\nisPartOf: DATAPIPE-SAMPLE-CRAWL-S{seed}\r\n"
                f"operator: datapipe (synthetic crawl, built offline)\r\n"
                f"description: Deterministic sample crawl for tests and demos; seed {seed}\r\n"
                f"robots: classic\r\nformat: WARC File Format 1.0\r\n").encode()
        w.write_record(w.create_warc_record(
            "", "warcinfo", payload=io.BytesIO(info), length=len(info), warc_content_type="application/warc-fields",
            warc_headers_dict={"WARC-Date": _warc_date(clock), "WARC-Record-ID": info_id, "WARC-Filename": path.name}))
        rng = random.Random(f"datapipe-samplecrawl:{seed}:file:{file_index}")
        for p in pages:
            clock += timedelta(seconds=rng.randint(1, 30))
            date = _warc_date(clock)
            resp_id = record_ids[p.url]
            host = p.url.split("/")[2]
            path_q = "/" + p.url.split("/", 3)[3]
            common = {"WARC-Date": date, "WARC-Warcinfo-ID": info_id, "WARC-IP-Address": f"192.0.2.{rng.randint(1, 254)}"}
            req_http = StatusAndHeaders(f"GET {path_q} HTTP/1.1", [
                ("Host", host), ("User-Agent", "datapipe-samplecrawl/1.0 (synthetic; no network)"),
                ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                ("Accept-Language", "en-US,en;q=0.5"), ("Accept-Encoding", "br,gzip"), ("Connection", "Keep-Alive"),
            ], protocol="", is_http_request=True)
            w.write_record(w.create_warc_record(
                p.url, "request", http_headers=req_http,
                warc_headers_dict={**common, "WARC-Record-ID": _record_id(seed, "request", p.url),
                                   "WARC-Concurrent-To": resp_id}))
            if p.kind == "revisit":
                orig = pages_by_url[p.dup_of]
                http = StatusAndHeaders("200 OK", [("Date", _http_date(clock)), ("Server", "nginx"),
                                                   ("Content-Type", orig.content_type),
                                                   ("Content-Length", str(len(orig.body)))], protocol="HTTP/1.1")
                digest = "sha1:" + _b32_sha1(orig.body)
                rec = w.create_revisit_record(
                    p.url, digest, p.dup_of, _warc_date(BASE_DATE - timedelta(days=30)), http_headers=http,
                    warc_headers_dict={**common, "WARC-Record-ID": resp_id, "WARC-Refers-To": record_ids[p.dup_of]})
                w.write_record(rec)
                continue
            if p.kind == "malformed_http":
                hd = StatusAndHeaders("", [("WARC-Type", "response"), ("WARC-Date", date), ("WARC-Record-ID", resp_id),
                                           ("WARC-Warcinfo-ID", info_id), ("WARC-Target-URI", p.url),
                                           ("Content-Type", "application/http; msgtype=response")], protocol="WARC/1.0")
                rec = ArcWarcRecord("warc", "response", hd, io.BytesIO(p.body), None,
                                    "application/http; msgtype=response", len(p.body))
                rec.payload_length = len(p.body)
                w.write_record(rec)
                continue
            http = StatusAndHeaders("200 OK", [
                ("Date", _http_date(clock)), ("Server", rng.choice(["nginx", "Apache", "cloudflare"])),
                ("Content-Type", p.content_type), ("Content-Length", str(len(p.body))),
                ("Cache-Control", "max-age=600"), ("Connection", "close"),
            ], protocol="HTTP/1.1")
            mime = p.content_type.split(";")[0]
            w.write_record(w.create_warc_record(
                p.url, "response", payload=io.BytesIO(p.body), length=len(p.body), http_headers=http,
                warc_headers_dict={**common, "WARC-Record-ID": resp_id, "WARC-Identified-Payload-Type": mime}))
            meta = f"fetchTimeMs: {rng.randint(40, 900)}\r\n"
            if p.charset:
                meta += f"charset-detected: {p.charset.upper()}\r\n"
            if p.lang:
                meta += f'languages-cld2: {{"reliable":true,"languages":[{{"code":"{p.lang}","text-covered":0.98}}]}}\r\n'
            meta_b = meta.encode()
            w.write_record(w.create_warc_record(
                p.url, "metadata", payload=io.BytesIO(meta_b), length=len(meta_b),
                warc_content_type="application/warc-fields",
                warc_headers_dict={"WARC-Date": date, "WARC-Warcinfo-ID": info_id,
                                   "WARC-Record-ID": _record_id(seed, "metadata", p.url), "WARC-Concurrent-To": resp_id}))
    return clock


def _b32_sha1(data: bytes) -> str:
    import base64
    return base64.b32encode(hashlib.sha1(data).digest()).decode()


def _reference_corpus(seed: int, page_sentences: dict[str, set[str]], n: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for code, L in LANGS.items():
        rng = random.Random(f"datapipe-samplecrawl:{seed}:reference:{code}")
        taken = page_sentences.get(code, set())
        seen: set[str] = set()
        sents: list[str] = []
        tries = 0
        while len(sents) < n and tries < n * 50:
            tries += 1
            s = L.sentence(rng, rng.choice(TOPICS))
            if s in taken or s in seen:
                continue
            seen.add(s)
            sents.append(s)
        out[code] = sents
    return out


def build_sample_crawl(out_dir: str | Path, *, n_pages: int = 400, n_files: int = 4, seed: int = 0,
                       reference_sentences: int = REFERENCE_SENTENCES) -> list[Path]:
    """Write the sample crawl into ``out_dir``; return the WARC paths (sorted).

    Also writes the manifest (``url -> kind``), the details file and the reference
    corpus. Same arguments, same bytes."""
    if n_files < 1:
        raise ValueError(f"n_files must be >= 1, got {n_files}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages = plan_pages(n_pages, seed)
    by_url = {p.url: p for p in pages}
    record_ids = {p.url: _record_id(seed, "response", p.url) for p in pages}
    per_file = -(-len(pages) // n_files)
    paths: list[Path] = []
    details: dict[str, dict] = {}
    clock = BASE_DATE + timedelta(seconds=random.Random(f"datapipe-samplecrawl:{seed}:clock").randint(0, 86_399))
    for i in range(n_files):
        chunk = pages[i * per_file:(i + 1) * per_file]
        path = out / f"sample-s{seed}-{i:05d}.warc.gz"
        clock = _write_file(path, chunk, seed=seed, file_index=i, clock=clock, pages_by_url=by_url, record_ids=record_ids)
        paths.append(path)
        for p in chunk:
            d = {"kind": p.kind, "lang": p.lang, "file": path.name, "record_id": record_ids[p.url],
                 "content_type": p.content_type}
            if p.charset and p.charset != "utf-8":
                d["charset"] = p.charset
            if p.dup_of:
                d["dup_of"] = p.dup_of
            details[p.url] = d
    manifest = {url: d["kind"] for url, d in sorted(details.items())}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / DETAILS_NAME).write_text(json.dumps({"seed": seed, "n_pages": n_pages, "files": [p.name for p in paths],
                                                "pages": details}, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    page_sents: dict[str, set[str]] = {}
    for p in pages:
        if p.lang:
            page_sents.setdefault(p.lang, set()).update(p.sentences)
    ref = out / REFERENCE_DIR
    ref.mkdir(exist_ok=True)
    for code, sents in _reference_corpus(seed, page_sents, reference_sentences).items():
        (ref / f"{code}.txt").write_text("\n".join(sents) + "\n", encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m datapipe.samplecrawl",
                                 description="Build the deterministic sample crawl (no network).")
    ap.add_argument("out_dir")
    ap.add_argument("--n-pages", type=int, default=400)
    ap.add_argument("--n-files", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        paths = build_sample_crawl(args.out_dir, n_pages=args.n_pages, n_files=args.n_files, seed=args.seed)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    manifest = json.loads((Path(args.out_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
    kinds: dict[str, int] = {}
    for k in manifest.values():
        kinds[k] = kinds.get(k, 0) + 1
    size = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} WARC files ({size / 1e6:.1f} MB, {len(manifest)} captures) to {args.out_dir}")
    print("kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
