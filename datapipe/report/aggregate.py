"""Aggregates over a run's documents for the report: DuckDB over the Parquet files.

DuckDB reads only the columns a chart needs and never holds the data set in memory.
Histograms are binned here, exactly, over all documents, so the page carries a few hundred
numbers per chart, not the data set.

    doc_aggregates(files, cutoffs=..., threshold=..., group_thresholds=...) -> dict
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..urls import url_domain_sql

HIST_BINS = 40
TOP_DOMAINS = 25
TOP_LANGS = 40


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Docs:
    """DuckDB view ``docs`` over a fixed list of Parquet files (schemas unioned by name)."""

    def __init__(self, files: list[Path]):
        import duckdb
        self.con = duckdb.connect()
        lst = "[" + ", ".join(_sql_str(str(f)) for f in files) + "]"
        # hive_partitioning off: partition folders (lang=xx/) repeat a column that is in the file
        self.con.execute(f"CREATE VIEW docs AS SELECT * FROM read_parquet({lst}, union_by_name=true, "
                         "hive_partitioning=false)")
        self.columns = [r[0] for r in self.con.execute("DESCRIBE docs").fetchall()]

    def col(self, name: str) -> str | None:
        """``name`` when the documents have that column (each stage's own column name), else None."""
        return name if name in self.columns else None

    def one(self, sql: str):
        return self.con.execute(sql).fetchone()

    def all(self, sql: str):
        return self.con.execute(sql).fetchall()

    def histogram(self, expr: str, *, log: bool, bins: int = HIST_BINS, lo: float | None = None,
                  hi: float | None = None) -> dict | None:
        """Exact counts in ``bins`` equal-width bins (in log10 space when ``log``)."""
        x = f"CAST({expr} AS DOUBLE)"
        base = f"FROM (SELECT {x} AS x FROM docs) WHERE x IS NOT NULL AND isfinite(x)"
        n_all, mn, mx, n_nonpos = self.one(f"SELECT count(*), min(x), max(x), count(*) FILTER (WHERE x <= 0) {base}")
        if not n_all:
            return None
        if log:
            base += " AND x > 0"
            if n_all == n_nonpos:
                return None
            mn = self.one(f"SELECT min(x) {base}")[0]
        lo = mn if lo is None else min(lo, mn)
        hi = mx if hi is None else max(hi, mx)
        t = (lambda v: math.log10(v)) if log else (lambda v: v)
        tlo, thi = t(lo), t(hi)
        if thi <= tlo:
            thi = tlo + (1.0 if log or tlo == 0 else abs(tlo) * 0.01 or 1.0)
        w = (thi - tlo) / bins
        tx = "log10(x)" if log else "x"
        rows = self.all(f"SELECT LEAST(GREATEST(CAST(FLOOR(({tx} - {tlo!r}) / {w!r}) AS BIGINT), 0), {bins - 1}) AS b, "
                        f"count(*) {base} GROUP BY b")
        counts = [0] * bins
        for b, c in rows:
            counts[int(b)] = int(c)
        edges = [tlo + i * w for i in range(bins + 1)]
        if log:
            edges = [10 ** e for e in edges]
            edges[0], edges[-1] = lo, max(hi, edges[-1])  # exact ends: 10**log10(x) may round below x
        q = self.one(f"SELECT quantile_cont(x, [0.1, 0.5, 0.9]), avg(x) {base}")
        return {"edges": edges, "counts": counts, "n": sum(counts), "log": log,
                "excluded_nonpositive": int(n_nonpos) if log else 0,
                "p10": q[0][0], "p50": q[0][1], "p90": q[0][2], "mean": q[1], "min": mn, "max": mx}


def doc_aggregates(files: list[Path], *, cutoffs: dict, threshold: float | None,
                   group_thresholds: dict[str, float] | None = None) -> dict:
    """Counts, histograms (with threshold lines), languages, domains and duplicate clusters of
    the documents in ``files``; a section's entry is absent when its column is."""
    d = _Docs(files)
    out: dict[str, Any] = {"columns": d.columns, "hist": {}}
    text, url = d.col("text"), d.col("url")
    ntok = d.col("n_tokens")
    sel = ["count(*)"]
    sel.append(f"sum(strlen({_ident(text)}))" if text else "NULL")
    sel.append(f"sum({_ident(ntok)})" if ntok else "NULL")
    n, text_bytes, tokens = d.one(f"SELECT {', '.join(sel)} FROM docs")
    out.update(n_docs=int(n), text_bytes=int(text_bytes or 0), n_tokens=int(tokens) if tokens is not None else None)
    if not n:
        return out
    H = out["hist"]
    if text:
        H["length"] = d.histogram(f"length({_ident(text)})", log=True) | {
            "title": "Document length (characters)", "column": "length(text)"}
    if ntok:
        H["n_tokens"] = d.histogram(_ident(ntok), log=True) | {"title": "Tokens per document", "column": ntok}
    c = d.col("lid_score")
    if c and (h := d.histogram(_ident(c), log=False, lo=0.0, hi=1.0)):
        H["lid_score"] = h | {"title": "Language-ID score", "column": c}
    c = d.col("ppl")
    if c and (h := d.histogram(_ident(c), log=True)):
        h["lines"] = _cutoff_lines(cutoffs, d)
        H["ppl"] = h | {"title": "Perplexity (KenLM)", "column": c}
    c = d.col("quality_score")
    if c and (h := d.histogram(_ident(c), log=False)):
        h["lines"] = [{"x": threshold, "label": f"threshold {threshold:g}"}] if threshold is not None else []
        for g, v in list((group_thresholds or {}).items())[:3]:  # top-fraction thresholds (first groups)
            h["lines"].append({"x": v, "label": f"{g} top-fraction threshold {v:.3g}"})
        H["quality_score"] = h | {"title": "Quality score", "column": c}
    c = d.col("nsfw_ratio")
    if c and (h := d.histogram(_ident(c), log=False, lo=0.0)):
        h["zero"] = int(d.one(f"SELECT count(*) FROM docs WHERE {_ident(c)} = 0")[0])
        H["nsfw_ratio"] = h | {"title": "NSFW word ratio", "column": c}
    # duplicate clusters (dedup_minhash's dup_cluster): sizes among the documents here
    cl = d.col("dup_cluster")
    if cl:
        # dedup that drops keeps one survivor per cluster (all sizes 1 here); one that only marks keeps all
        rows = d.all(f"SELECT s, count(*) FROM (SELECT count(*) AS s FROM docs WHERE {_ident(cl)} IS NOT NULL "
                     f"GROUP BY {_ident(cl)}) GROUP BY s ORDER BY s")
        if any(int(s) > 1 for s, _ in rows):
            out["dup_sizes"] = {"rows": [(int(s), int(k)) for s, k in rows], "column": cl,
                                "note": "clusters counted among the documents in this data set"}
    # ppl buckets
    c = d.col("ppl_bucket")
    if c:
        out["ppl_buckets"] = [(str(b), int(k)) for b, k in
                              d.all(f"SELECT CAST({_ident(c)} AS VARCHAR) AS b, count(*) FROM docs GROUP BY b ORDER BY 2 DESC")]
    # languages
    lang = d.col("lid_lang")
    if lang:
        cols = ["count(*)"]
        names = ["docs"]
        for key, agg, label in (("n_tokens", "sum", "tokens"), ("lid_score", "avg", "mean lid_score"),
                                ("ppl", "median", "median ppl"), ("quality_score", "avg", "mean quality")):
            cc = d.col(key)
            if cc:
                cols.append(f"{agg}({_ident(cc)})")
                names.append(label)
        rows = d.all(f"SELECT CAST({_ident(lang)} AS VARCHAR) AS l, {', '.join(cols)} FROM docs GROUP BY l "
                     f"ORDER BY 2 DESC, 1 LIMIT {TOP_LANGS}")
        n_lang = d.one(f"SELECT count(DISTINCT {_ident(lang)}) FROM docs")[0]
        out["languages"] = {"columns": names, "rows": [list(r) for r in rows], "distinct": int(n_lang)}
    # domains kept
    if url:
        dom = url_domain_sql(_ident(url))
        extra = f", sum({_ident(ntok)})" if ntok else ""
        rows = d.all(f"SELECT {dom} AS dom, count(*){extra} FROM docs GROUP BY dom ORDER BY 2 DESC, 1 LIMIT {TOP_DOMAINS}")
        n_dom = d.one(f"SELECT count(DISTINCT {dom}) FROM docs")[0]
        out["domains_kept"] = {"rows": [list(r) for r in rows], "distinct": int(n_dom),
                               "columns": ["docs"] + (["tokens"] if ntok else [])}
    return out


def _cutoff_lines(cutoffs: dict[str, tuple[float, float]], d: _Docs) -> list[dict]:
    if not cutoffs:
        return []
    langs = list(cutoffs)
    lang_col = d.col("lid_lang")
    if lang_col and len(langs) > 3:  # draw the cut-offs of the languages that matter here
        top = [str(r[0]) for r in d.all(f"SELECT CAST({_ident(lang_col)} AS VARCHAR), count(*) FROM docs "
                                         "GROUP BY 1 ORDER BY 2 DESC LIMIT 10")]
        langs = [l for l in top if l in cutoffs][:3] or langs[:3]
    lines = []
    for lang in langs[:3]:
        a, b = cutoffs[lang]
        g = len(lines) // 2  # one colour per language
        lines += [{"x": a, "label": f"{lang} head|middle {a:g}", "group": g},
                  {"x": b, "label": f"{lang} middle|tail {b:g}", "group": g}]
    return lines

