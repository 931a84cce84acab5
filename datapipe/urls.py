"""URL -> host and domain: one rule, vectorised over an Arrow column and as a DuckDB expression.

The host is what ``urllib.parse.urlsplit(url).hostname`` gives for URLs with a scheme: lower
case, without user info, port or IPv6 brackets. Unlike ``urlsplit`` a scheme-less
``example.com/page`` has host ``example.com`` (user-supplied sources carry such URLs), while an
opaque ``mailto:``/``javascript:``/``urn:`` URL has none (``""``). The domain is the host
without a leading ``www.``. Null URLs give null.

Both forms run the same RE2 patterns (pyarrow and DuckDB both use RE2), so they agree;
``tests/test_workflow_kit.py`` checks that on tricky URLs.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

#: optional ``scheme://`` or ``//``, user info up to the authority's last ``@``, then the host
#: (a bracketed IPv6 literal, or up to ``/ ? # :``): the only capture group
_HOST = r"^\s*(?:[a-z][a-z0-9+.\-]*://|//)?(?:[^/?#]*@)?(?P<h>\[[^\]]*\]|[^/?#:]*)"
#: ``scheme:`` not followed by ``//`` nor by a port number: an opaque URL without a host
_OPAQUE = r"^\s*[a-z][a-z0-9+.\-]*:(?:$|[^/0-9]|/$|/[^/])"
_BRACKETS = (r"^\[(.*)\]$", r"\1")
_WWW = r"^www\."


def url_host(urls: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The lower-case host of every URL (see the module docstring); ``""`` where there is none."""
    low = pc.utf8_lower(urls if urls.type == pa.string() else urls.cast(pa.string()))
    host = pc.struct_field(pc.extract_regex(low, _HOST), "h")
    host = pc.if_else(pc.match_substring_regex(low, _OPAQUE), "", host)
    return pc.replace_substring_regex(host, _BRACKETS[0], _BRACKETS[1])


def url_domain(urls: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """:func:`url_host` without a leading ``www.``: the domain the report and samplers group by."""
    return pc.replace_substring_regex(url_host(urls), _WWW, "")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def url_domain_sql(column: str) -> str:
    """:func:`url_domain` as a DuckDB expression over the SQL expression ``column``.

    The report aggregates every kept document's domain inside DuckDB, straight from the
    Parquet files, so the URLs of a whole run never have to pass through Python."""
    low = f"lower({column})"
    host = f"regexp_extract({low}, {_sql_str(_HOST)}, 1)"
    host = f"regexp_replace({host}, {_sql_str(_BRACKETS[0])}, {_sql_str(_BRACKETS[1])})"
    return (f"CASE WHEN regexp_matches({low}, {_sql_str(_OPAQUE)}) THEN '' "
            f"ELSE regexp_replace({host}, {_sql_str(_WWW)}, '') END")
