"""The crawl plan: which pages, of which kind and language, in crawl order (no I/O).

Counts per kind scale with ``n_pages``; every kind is planted at least once (see
:data:`KINDS`), so a crawl needs ``MIN_PAGES``.
"""
from __future__ import annotations

import random

from .lang import LANGS
from .pages import (ArticlePage, Page, _adult_page, _esc, _article_text, _near_dup_paragraphs, _pdf, _png, _repeated_page,
                    _short_page, _slug, _spam_page, _split_sentences, render_article)

MIN_PAGES = 40

#: every kind a build plants (tests assert all are present)
KINDS = ("article", "spam", "adult", "short", "repeated_lines", "exact_dup", "near_dup", "image_png",
         "application_pdf", "malformed_http", "revisit", "charset_cp1252", "charset_latin1", "charset_gb18030",
         "blocklisted_domain")
#: share of articles per language (the rest of the weight is English)
ARTICLE_LANGS = {"en": 0.55, "de": 0.09, "fr": 0.09, "es": 0.09, "ru": 0.09, "zh": 0.09}
#: a domain listed in the UT1 adult blocklist (and with "xxx" in its name)
BLOCKLISTED_DOMAIN = "freexxxvideos.com"
#: hosts of the short (404, coming soon ...) pages
EN_SITES_SHORT = ["riverside-gazette.com", "harborcitytimes.com", "lakeside-daily.net", "smallshop-online.com"]


def _slug_title(art: ArticlePage) -> str:
    """The title for the URL slug; non-Latin titles would slug to nothing, so none."""
    return art.title if LANGS[art.lang].script == "latin" else ""


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


#: share of English articles that end with a reader-contact paragraph (an e-mail address and a
#: phone number: the PII the default config's ``pii`` stage masks)
CONTACT_SHARE = 0.04
_CONTACT_PHONES = ["+44 20 7946 0{:03d}", "(212) 736-{:04d}", "+1 415 {:03d} 0188", "+49 30 {:04d} 5512"]


def _plant_contacts(pages: list[Page], seed: int) -> None:
    """Append a contact paragraph to a few English articles, in place, with a generator of its own
    so that every other page stays byte-identical; never to an article that a duplicate copies."""
    prng = random.Random(f"datapipe-samplecrawl:{seed}:contacts")
    copied = {p.dup_of for p in pages if p.dup_of}
    cands = [i for i, p in enumerate(pages) if p.kind == "article" and p.lang == "en" and p.url not in copied]
    en = LANGS["en"]
    for i in sorted(prng.sample(cands, min(len(cands), max(1, round(len(cands) * CONTACT_SHARE))))):
        p = pages[i]
        first, last = en.person_role(prng, "culture")[0].split()[:2]
        host = p.url.split("/")[2].removeprefix("www.")
        phone = prng.choice(_CONTACT_PHONES).format(prng.randint(100, 999))
        sents = [f"Readers with questions about this story can write to {first.lower()}.{last.lower()}@{host}.",
                 f"The newsroom also answers calls on {phone} on weekdays."]
        html = p.body.decode(p.charset or "utf-8").replace(
            "</article>", f"<p class=\"contact\">{_esc(' '.join(sents))}</p>\n</article>", 1)
        pages[i] = Page(p.url, p.kind, p.lang, html.encode(p.charset or "utf-8"), p.content_type, p.charset,
                        p.dup_of, p.sentences + sents)


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
        url = url_for(art.site[1], art.topic, _slug_title(art))
        sents = [s for p in art.paragraphs for s in _split_sentences(p, lang)]
        page = html_page(url, "article", lang, art.html, sentences=sents)
        pages.append(page)
        articles.append((page, art))

    for i in range(counts["exact_dup"]):
        orig, art = articles[rng.randrange(len(articles))]
        url = url_for(art.site[1], "print", _slug_title(art))
        pages.append(Page(url, "exact_dup", orig.lang, orig.body, orig.content_type, orig.charset, orig.url))
    for i in range(counts["near_dup"]):
        orig, art = articles[rng.randrange(len(articles))]
        L = LANGS[art.lang]
        other_sites = [s for s in L.sites if s != art.site]
        paras = _near_dup_paragraphs(L, rng, art.paragraphs, rng.randint(2, 4))
        nd = render_article(L, rng, site=rng.choice(other_sites), topic=art.topic, paragraphs=paras, title=art.title,
                            layout=art.layout)
        url = url_for(nd.site[1], art.topic, _slug_title(art))
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

    _plant_contacts(pages, seed)
    rng.shuffle(pages)
    assert len(pages) == n_pages, (len(pages), n_pages)
    return pages
