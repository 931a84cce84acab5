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

Modules: ``lang`` (sentences from the per-language data files ``data/<code>.json``),
``pages`` (HTML of each kind), ``plan`` (which pages, in crawl order), ``build``
(WARC writing, manifest, details, reference corpus, command line).
"""
from .build import DETAILS_NAME, MANIFEST_NAME, REFERENCE_DIR, REFERENCE_SENTENCES, build_sample_crawl, main
from .lang import LANGS, TOPICS, Lang
from .pages import ArticlePage, Page, render_article, sample_article_page
from .plan import BLOCKLISTED_DOMAIN, KINDS, MIN_PAGES, plan_pages

__all__ = ["ArticlePage", "BLOCKLISTED_DOMAIN", "DETAILS_NAME", "KINDS", "LANGS", "Lang", "MANIFEST_NAME", "MIN_PAGES",
           "Page", "REFERENCE_DIR", "REFERENCE_SENTENCES", "TOPICS", "build_sample_crawl", "main", "plan_pages",
           "render_article", "sample_article_page"]
