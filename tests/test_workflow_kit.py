"""The small core helpers every stage and workflow shares.

``set_column`` (datapipe.schema), URL -> host/domain in Arrow and in DuckDB (datapipe.urls).
"""
from __future__ import annotations

from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pytest

from datapipe.schema import set_column
from datapipe.urls import url_domain, url_domain_sql, url_host

# ---------------------------------------------------------------------------
# set_column


def test_set_column_replaces_in_place_or_appends():
    t = pa.table({"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1.5]})
    r = set_column(t, "b", pa.array([True, False]))
    assert r.column_names == ["a", "b", "c"] and r["b"].to_pylist() == [True, False]
    assert r.schema.field("b").type == pa.bool_()
    r = set_column(t, "d", [7, 8])  # a list: typed by pa.array
    assert r.column_names == ["a", "b", "c", "d"] and r["d"].type == pa.int64()
    # a field sets type and nullability; plain values are built in the field's type
    f = pa.field("a", pa.int32(), nullable=False)
    r = set_column(t, f, [3, 4])
    assert r.schema.field("a") == f and r.column_names.index("a") == 0 and r["a"].to_pylist() == [3, 4]
    with pytest.raises(pa.ArrowInvalid):
        set_column(t, "d", [1, 2, 3])  # wrong length: Arrow's own error


# ---------------------------------------------------------------------------
# URL -> domain: Arrow and DuckDB agree, and match urlsplit on URLs with a scheme

_SCHEMED = [
    "http://www.Example.com/a", "HTTPS://WWW.EXAMPLE.COM:8443/x?y#z", "http://user:pw@host.org:80/",
    "http://a@b@c.com/p",            # user info ends at the authority's last @
    "http://a.com?x@y", "http://a.com/x@y", "http://a.com#frag@x",  # an @ after the authority is not user info
    "http://[::1]:80/", "http://[2001:db8::1]/",  # IPv6 literals lose their brackets, like urlsplit
    "//cdn.example.net/lib.js", "mailto:x@y.com", "javascript:void(0)", "urn:isbn:123", "http:/x",
    "ftp://ftp.Site.de", "http://www.", "http://wwwx.com", "http://ümlaut.DE/ä", "", "http://", "http:///x",
    "  http://lead.space/", "http://host.com.", "https://sub.www.a.com/", "file:///etc/passwd", "http://x.com:abc/",
]


def _urlsplit_domain(u: str) -> str:
    h = (urlsplit(u).hostname or "").lower()
    return h[4:] if h.startswith("www.") else h


def test_url_domain_matches_urlsplit_and_duckdb():
    urls = _SCHEMED + ["example.com/page", "localhost:8080/x", None]
    arr = pa.array(urls, pa.string())
    got = url_domain(arr).to_pylist()
    assert got[:len(_SCHEMED)] == [_urlsplit_domain(u) for u in _SCHEMED]
    # scheme-less URLs (user-supplied sources) still have a host; null stays null
    assert got[len(_SCHEMED):] == ["example.com", "localhost", None]
    con = duckdb.connect()
    con.register("t", pa.table({"i": list(range(len(urls))), "u": arr}))
    sql = [r[0] for r in con.execute(f"SELECT {url_domain_sql('u')} FROM t ORDER BY i").fetchall()]
    assert sql == got
    # dedup_exact's URL key (urllib: it also re-encodes queries) names the same host
    from stages.dedup_exact import normalize_url
    for u, dom in zip(_SCHEMED, got):
        if u.strip().lower().startswith(("http://", "https://")) and "[" not in u and dom:
            assert normalize_url(u).split("/")[0].rsplit(":", 1)[0] == dom.rstrip("."), u
    # the host keeps www. (the blocklist matches it and its parents); large_string and chunked work
    assert url_host(pa.chunked_array([pa.array(["https://WWW.a.org/x"], pa.large_string())])).to_pylist() == ["www.a.org"]

