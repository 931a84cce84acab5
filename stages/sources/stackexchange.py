"""``stackexchange``: LLaMA's StackExchange cleaning (Touvron et al. 2023, §2.1).

"We kept the data from the 28 largest websites, removed the HTML tags from text and
sorted the answers by score (from highest to lowest)." The reader
(``datapipe/io/stackexchange.py``) groups each question with its answers in score order;
this stage:

- REWRITES ``text``: HTML to plain text -- block elements (``p``, ``div``, ``pre``,
  ``blockquote``, headings, lists, tables, ``br``, ``hr``) become line breaks, list items
  start with ``- ``, every other tag is removed (the text inside ``<code>``/``<pre>`` stays),
  entities are decoded (``&lt;`` in code blocks becomes ``<``);
- decides ``stackexchange_v1:<rule>``: ``site`` (``source_detail`` not in ``sites``; names
  may be given short, ``math`` = ``math.stackexchange.com``; ``all_sites: true`` keeps every
  site), ``min_answers`` (fewer than ``min_answers`` answers, ``se_answers``), ``empty``.

Default ``sites``: 28 of the largest sites of the network by number of posts. LLaMA does not
publish its list; this one is our reading of the dump's sizes (2023) -- check it against the
dump you use (the 7z archive sizes rank the sites) and override ``sites`` as needed.

Cost: vectorised RE2 replacements over the batch; entity decoding of rows that still hold
an entity after the common ones is a per-row ``html.unescape`` (few rows).
"""
from __future__ import annotations

import html
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.schema import set_column
from datapipe.stage import Filter, StageError, reasons_from_masks, register

CHECK = "stackexchange_v1"
LARGEST_SITES = [
    "stackoverflow.com", "math.stackexchange.com", "superuser.com", "serverfault.com", "askubuntu.com",
    "unix.stackexchange.com", "tex.stackexchange.com", "english.stackexchange.com", "physics.stackexchange.com",
    "electronics.stackexchange.com", "stats.stackexchange.com", "apple.stackexchange.com", "gis.stackexchange.com",
    "mathoverflow.net", "softwareengineering.stackexchange.com", "salesforce.stackexchange.com",
    "gaming.stackexchange.com", "ell.stackexchange.com", "codereview.stackexchange.com", "scifi.stackexchange.com",
    "dba.stackexchange.com", "magento.stackexchange.com", "wordpress.stackexchange.com",
    "sharepoint.stackexchange.com", "diy.stackexchange.com", "mathematica.stackexchange.com",
    "security.stackexchange.com", "ru.stackoverflow.com",
]
_BLOCK = r"(?i)</?(?:p|div|pre|blockquote|h[1-6]|ul|ol|table|thead|tbody|tr|dl|dt|dd)\b[^>]*>"
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'"), ("&#x27;", "'"), ("&nbsp;", " "),
             ("&amp;", "&"))


def site_key(site: str) -> str:
    s = site.strip().lower()
    for suffix in (".stackexchange.com", ".stackexchange"):
        if s.endswith(suffix):
            return s[: -len(suffix)]
    return s


def html_to_text(arr: pa.Array) -> pa.Array:
    """Vectorised HTML -> text over a string column (see the module docstring)."""
    a = pc.fill_null(arr, "")
    a = pc.replace_substring_regex(a, r"(?i)<br\s*/?>|<hr[^>]*>", "\n")
    a = pc.replace_substring_regex(a, r"(?i)<li\b[^>]*>", "\n- ")
    a = pc.replace_substring_regex(a, r"(?i)</li>", "")
    a = pc.replace_substring_regex(a, r"(?i)</t[dh]>", "\t")
    a = pc.replace_substring_regex(a, _BLOCK, "\n")
    a = pc.replace_substring_regex(a, r"<[^>]*>", "")
    for ent, ch in _ENTITIES:   # &amp; last: "&amp;lt;" must become "&lt;", not "<"
        a = pc.replace_substring(a, ent, ch)
    rest = pc.match_substring_regex(a, r"&(?:#[0-9]+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]+);")
    if pc.any(rest).as_py():
        vals = a.to_pylist()
        for i in np.flatnonzero(rest.to_numpy(zero_copy_only=False)):
            vals[i] = html.unescape(vals[i])
        a = pa.array(vals, arr.type)
    a = pc.replace_substring_regex(a, r"[ \t]+\n", "\n")
    a = pc.replace_substring_regex(a, r"\n{3,}", "\n\n")
    # the reader's "A: " markers: the answer's first paragraph goes on the marker's line
    a = pc.replace_substring_regex(a, r"(^|\n)(Q|A):\s*\n+", "\\1\\2: ")
    return pc.utf8_trim(a, " \n\t")


@register
class StackExchangeClean(Filter):
    __doc__ = __doc__
    name = "stackexchange"
    inputs = ("text",)

    def __init__(self, *, sites: Optional[list[str]] = None, all_sites: bool = False, min_answers: int = 0):
        if min_answers < 0:
            raise StageError(f"stackexchange: min_answers must be >= 0, got {min_answers}")
        if sites is not None and not sites:
            raise StageError("stackexchange: sites is empty; use all_sites: true to keep every site")
        self.sites = None if all_sites else {site_key(s) for s in (sites or LARGEST_SITES)}
        self.min_answers = min_answers

    def score(self, batch: pa.Table) -> pa.Table:
        text = batch["text"].combine_chunks()
        return set_column(batch, batch.schema.field("text"), html_to_text(text).cast(batch.schema.field("text").type))

    def decide(self, batch: pa.Table) -> pa.Array:
        n = batch.num_rows
        site_fail = np.zeros(n, bool)
        if self.sites is not None:
            if "source_detail" not in batch.column_names:
                site_fail[:] = True
            else:
                vals = batch["source_detail"].to_pylist()
                ok = {v: v is not None and site_key(v) in self.sites for v in set(vals)}
                site_fail = np.array([not ok[v] for v in vals], bool)
        if self.min_answers and "se_answers" in batch.column_names:
            few = pc.fill_null(pc.less(batch["se_answers"], self.min_answers), True).to_numpy(zero_copy_only=False)
        else:
            few = np.zeros(n, bool)
        empty = pc.utf8_length(pc.fill_null(batch["text"], "")).to_numpy(zero_copy_only=False) == 0
        return reasons_from_masks(n, [(f"{CHECK}:site", site_fail), (f"{CHECK}:min_answers", few),
                                      (f"{CHECK}:empty", empty)])
