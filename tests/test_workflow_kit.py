"""The workflow kit and the small core helpers every stage and workflow shares.

``set_column`` (datapipe.schema), URL -> host/domain in Arrow and in DuckDB (datapipe.urls),
the reject sampler (datapipe.rejects) and the per-shard decision pass (datapipe.workflow).
"""
from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datapipe import workflow as W
from datapipe.rejects import reject_rows, sample_rejects
from datapipe.schema import set_column
from datapipe.stage import WorkflowContext
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


# ---------------------------------------------------------------------------
# reject sampling


def test_sample_rejects_keeps_the_first_rows_of_each_reason_and_shard():
    reasons = ["a", "b", "a", "a", "b", "a", "c"]
    shards = ["s1", "s1", "s1", "s2", "s1", "s2", "s2"]
    t = pa.table({"id": [str(i) for i in range(7)], "text": ["é" * 10] * 7, "reason": reasons, "_shard": shards})
    got = sample_rejects(t, 1, excerpt_chars=3)
    # first row of (s1,a), (s1,b), (s2,a), (s2,c), in table order; texts cut by characters
    assert got["id"].to_pylist() == ["0", "1", "3", "6"] and got["text"].to_pylist() == ["ééé"] * 4
    assert sample_rejects(t.drop_columns(["_shard"]), 2)["id"].to_pylist() == ["0", "1", "2", "4", "6"]
    assert sample_rejects(t, 0) is None and sample_rejects(t.slice(0, 0), 5) is None and sample_rejects(None, 5) is None
    assert sample_rejects(t, 50).num_rows == 7


def test_reject_rows_are_light_columns_stage_and_excerpt():
    t = pa.table({"id": ["1", "2", "3"], "url": ["u1", None, "u3"], "text": ["hello world", None, "x"],
                  "tokens": [[1], [2], [3]], "reason": ["r", "r", "q"], "gq_word_count": [2, 0, 1]})
    rows = reject_rows(t, stage="st", cap=5, excerpt_chars=5)
    assert rows == [
        {"id": "1", "url": "u1", "reason": "r", "gq_word_count": 2, "stage": "st", "excerpt": "hello"},
        {"id": "2", "url": None, "reason": "r", "gq_word_count": 0, "stage": "st", "excerpt": ""},
        {"id": "3", "url": "u3", "reason": "q", "gq_word_count": 1, "stage": "st", "excerpt": "x"}]
    # chosen columns, in the order given, heavy ones never
    rows = reject_rows(t, stage="st", cap=1, excerpt_chars=50, columns=["reason", "id", "tokens", "missing"])
    assert rows == [{"reason": "r", "id": "1", "stage": "st", "excerpt": "hello world"},
                    {"reason": "q", "id": "3", "stage": "st", "excerpt": "x"}]


# ---------------------------------------------------------------------------
# the per-shard decision pass


def _write_shards(tmp_path, n_shards=2, rows=5):
    paths = []
    for k in range(n_shards):
        t = pa.table({"id": [f"{k}-{i}" for i in range(rows)], "text": [f"doc {k} {i}" for i in range(rows)],
                      "score": pa.array([float(i) for i in range(rows)])})
        p = tmp_path / "in" / f"shard-{k}.parquet"
        p.parent.mkdir(exist_ok=True)
        pq.write_table(t, p)
        paths.append(str(p))
    return paths


def test_rows_by_gid_joins_decisions_to_rows_with_fill(tmp_path):
    dec = pa.table({"gid": W.gids(1, 0, 5)[[4, 1]].tolist() + W.gids(0, 0, 5)[[2]].tolist(),
                    "reason": ["r4", None, "r0"], "keep": [False, False, True]})
    p = tmp_path / "dec.parquet"
    pq.write_table(dec, p)
    got = W.rows_by_gid([str(p)], 1, 5, {"reason": pa.scalar(None, pa.string()), "keep": pa.scalar(True)})
    assert got["reason"].to_pylist() == [None, None, None, None, "r4"]
    assert got["keep"].to_pylist() == [True, False, True, True, False]
    none = W.rows_by_gid([], 0, 3, {"x": pa.scalar(-1, pa.int32())})
    assert none["x"].to_pylist() == [-1, -1, -1] and none["x"].type == pa.int32()


def _decide(table, si, *, cut):
    """Drop rows scoring >= cut (reason by parity), mark every row, count the drops."""
    s = table["score"].to_numpy()
    reasons = pa.array([None if v < cut else f"t:{'even' if v % 2 == 0 else 'odd'}" for v in s], pa.string())
    marked = set_column(table, "text", pa.array(["marked"] * table.num_rows, pa.large_string()))
    return W.Decisions(set_column(marked, "shard", pa.array([si] * table.num_rows, pa.int64())), reasons,
                       reject_columns={"why": pa.array([f"s{v}" for v in s])},
                       counters={"dropped_here": int((s >= cut).sum()), "zero": 0}, rejects_from=table)


def test_filter_shards_writes_kept_rows_stats_and_reject_samples(tmp_path):
    inputs = _write_shards(tmp_path)
    sunk = []
    ctx = WorkflowContext(inputs=inputs, output_dir=str(tmp_path / "out"), work_dir=str(tmp_path / "work"),
                          engine=None, reject_sink=lambda st, sh, tb: sunk.append((st, sh, tb)),
                          samples_per_reason=1, excerpt_chars=4)
    stats = W.filter_shards(ctx, "toy", functools.partial(_decide, cut=2.0), shard_cpu=[10.0, 20.0], global_cpu=5.0)
    assert list(stats) == ["shard-0.parquet", "shard-1.parquet"]
    for k, p in enumerate(inputs):
        out = pq.read_table(tmp_path / "out" / Path(p).name)
        assert out["id"].to_pylist() == [f"{k}-0", f"{k}-1"] and out["text"].to_pylist() == ["marked"] * 2
        assert out["shard"].to_pylist() == [k, k] and "why" not in out.column_names and "reason" not in out.column_names
        st = stats[Path(p).name]
        assert (st.stage, st.rows_in, st.rows_out) == ("toy", 5, 2)
        assert st.dropped == {"t:even": 2, "t:odd": 1} and st.counters == {"dropped_here": 3}
        assert st.bytes_in == sum(len(f"doc {k} {i}") for i in range(5)) and st.bytes_out == 2 * len("marked")
    assert stats["shard-0.parquet"].seconds >= 15.0 and 20.0 <= stats["shard-1.parquet"].seconds < 25.0
    # one sample per reason, from the rows before decide rewrote them, with the reject-only column
    assert [(st, sh) for st, sh, _ in sunk] == [("toy", "shard-0"), ("toy", "shard-1")]
    tb = sunk[0][2]
    assert tb["id"].to_pylist() == ["0-2", "0-3"] and tb["reason"].to_pylist() == ["t:even", "t:odd"]
    assert tb["text"].to_pylist() == ["doc ", "doc "] and tb["why"].to_pylist() == ["s2.0", "s3.0"]


def test_filter_shards_refuses_a_decision_per_row_mismatch(tmp_path):
    inputs = _write_shards(tmp_path, n_shards=1)
    ctx = WorkflowContext(inputs=inputs, output_dir=str(tmp_path / "out"), work_dir=str(tmp_path / "w"), engine=None)
    with pytest.raises(ValueError, match="4 decisions and 5 rows"):
        W.filter_shards(ctx, "toy", _short_decide)


def _short_decide(table, si):
    return W.Decisions(table, pa.nulls(table.num_rows - 1, pa.string()))
