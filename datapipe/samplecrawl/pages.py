"""The pages of the sample crawl: an article inside a full site layout, and the planted
junk (keyword spam, adult, short, repeated-line pages, a PNG, a PDF).

Everything here takes a seeded ``random.Random`` and draws from it in a fixed order,
which is what keeps the crawl byte-identical per seed. Text comes from :mod:`.lang`.
"""
from __future__ import annotations

import html as htmllib
import io
import random
import re
import struct
import unicodedata
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .lang import LANGS, TOPICS, Lang, cap

BASE_DATE = datetime(2024, 5, 18, 0, 0, 0, tzinfo=timezone.utc)

SPAM_KEYWORDS = ["cheap watches", "replica handbags", "casino bonus", "payday loans", "online pharmacy", "weight loss pills",
                 "free shipping", "best price", "buy now", "discount code", "cheap flights", "crypto profit",
                 "limited offer", "click here", "make money fast", "no prescription", "free spins", "lowest price"]
ADULT_WORDS = ["porn", "xxx", "nude", "erotic", "sex", "webcam", "escort", "camgirl", "playboy", "nsfw"]
ADULT_TEMPLATES = ["Watch the hottest {a} videos, updated every day.", "Our {a} models are online right now.",
                   "Join for free to see {a} photos and {b} chats.", "The best {a} site with thousands of {b} galleries.",
                   "New {a} clips and {b} shows every hour.", "Meet a {a} near you tonight, no sign-up needed."]


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
        if L.script == "han":
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
    """The sentences of one paragraph (what the reference corpus must not repeat)."""
    if LANGS[lang].script == "han":
        return [s for s in re.findall(r"[^。！？]*[。！？][”」]?", text) if s.strip()]
    return [s for s in re.split(r"(?<=[.!?\u00bb\u201c\u201d])\s+", text) if s.strip()]
