"""The report page: HTML from :func:`.collect.collect`'s data, one section per method.

The page skeleton and the repeated fragments are ``string.Template`` files in
``templates/``; the style sheet and the chart loader are ``static/report.css`` and
``static/report.js``, inlined. Every value put into a template is HTML already: strings
from a document, a URL or the config are escaped with ``_e`` before they go in; chart
specs are embedded as JSON with ``<``, ``>`` and ``&`` escaped, so no text can close a
``<script>`` element. The page's Content-Security-Policy forbids fetching anything: it
needs nothing from outside.

Charts: Plotly, with plotly.js (about 4.8 MB) inlined once per page, so the page opens
with no network at all. Plotly rather than matplotlib SVGs because curators read exact
counts on hover, zoom into long tails (perplexity, length) and click a drop-reason bar
to jump to its example documents; rather than Altair because Altair's offline mode
needs vl-convert (a 30 MB native wheel) to inline Vega. Histograms arrive binned and are
drawn as step areas.
"""
from __future__ import annotations

import functools
import hashlib
import html
import json
import math
import re
from importlib import resources
from string import Template
from typing import Any

from ..stats import StageStats
from .aggregate import TOP_LANGS

#: example documents shown per drop reason (the run keeps up to ``rejects.samples_per_reason``)
SAMPLES_SHOWN = 8


@functools.cache
def _asset(path: str) -> str:
    """A file shipped in the package (``templates/...``, ``static/...``)."""
    return resources.files(__package__).joinpath(path).read_text(encoding="utf-8")


def _fill(template: str, /, **values: Any) -> str:
    """``templates/<template>.html`` with ``values`` (already HTML) substituted; fragments
    lose their file's final newline."""
    text = _asset(f"templates/{template}.html")
    if template != "page":
        text = text.rstrip("\n")
    return Template(text).substitute(values)


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _n(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{int(x):,}"


def _pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "–"


def anchor(stage: str, reason: str) -> str:
    """The id of a (stage, reason)'s example documents on the page."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{stage}-{reason}".lower()).strip("-")[:60]
    digest = hashlib.sha1((stage + "\x1f" + reason).encode()).hexdigest()[:6]
    return f"rej-{slug}-{digest}"


def _json_for_script(obj: Any) -> str:
    s = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_json_default)
    # inside <script type="application/json"> nothing may look like "</script" or "<!--"
    return (s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


class _Page:
    """The charts of one page: each ``chart()`` returns its placeholder ``<div>`` and keeps its
    spec for ``specs()`` (the JSON the loader in ``static/report.js`` draws from)."""

    def __init__(self):
        self.charts: list[tuple[str, dict]] = []

    def chart(self, cid: str, data: list[dict], layout: dict, *, height: int = 360, caption: str = "") -> str:
        base = {"height": height, "margin": {"l": 60, "r": 30, "t": 44, "b": 50},
                "paper_bgcolor": "white", "plot_bgcolor": "#fafafa", "font": {"size": 12}}
        layout = base | layout
        if isinstance(layout.get("title"), dict):  # left: the mode bar sits top right
            layout["title"] = {"x": 0.01, "xanchor": "left", "font": {"size": 14}} | layout["title"]
        self.charts.append((cid, {"data": data, "layout": layout}))
        cap = f'<p class="caption">{caption}</p>' if caption else ""
        return f'<div class="chart" id="{_e(cid)}" data-chart="{_e(cid)}"></div>{cap}'

    def specs(self) -> str:
        return "\n".join(f'<script type="application/json" id="{_e(cid)}-spec">{_json_for_script(spec)}</script>'
                         for cid, spec in self.charts)


def _table(headers: list[str], rows: list[list[str]], *, cls: str = "", raw_cols: set[int] = frozenset()) -> str:
    """A table; cells are escaped unless their column index is in ``raw_cols`` (already HTML)."""
    th = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if i in raw_cols else _e(c)}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _count_axis(counts: list[int]) -> str:
    """Log scale only where counts span orders of magnitude (cluster sizes usually do)."""
    pos = [c for c in counts if c > 0]
    return "log" if pos and max(pos) / min(pos) >= 50 else "linear"


def _hist_chart(page: _Page, cid: str, h: dict) -> str:
    edges, counts = h["edges"], h["counts"]
    # a step area: one point per bin edge; exact under a log axis where bars would distort
    xs = list(edges)
    ys = list(counts) + [counts[-1]]
    text = [f"{_n(a)} – {_n(b)}: {c:,} docs" for a, b, c in zip(edges, edges[1:], counts)] + [""]
    data = [{"type": "scatter", "x": xs, "y": ys, "mode": "lines", "line": {"shape": "hv", "width": 1.5, "color": "#1f77b4"},
             "fill": "tozeroy", "fillcolor": "rgba(31,119,180,0.35)", "text": text, "hovertemplate": "%{text}<extra></extra>",
             "name": _e(h["column"])}]
    shapes, notes = [], []
    palette = ["#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
    for i, ln in enumerate(h.get("lines") or []):
        color = palette[ln.get("group", i) % len(palette)]
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": ln["x"], "x1": ln["x"], "y0": 0, "y1": 1,
                       "line": {"color": color, "width": 2, "dash": "dash"}})
        notes.append({"x": math.log10(ln["x"]) if h["log"] and ln["x"] > 0 else ln["x"], "xref": "x", "yref": "paper",
                      "y": 1.0 - 0.08 * (i % 6), "text": _e(ln["label"]), "showarrow": False, "xanchor": "left",
                      "font": {"color": color, "size": 11}, "bgcolor": "rgba(255,255,255,0.7)"})
    layout = {"title": {"text": _e(h["title"])}, "xaxis": {"type": "log" if h["log"] else "linear", "title": {"text": _e(h["column"])}},
              "yaxis": {"title": {"text": "documents"}, "rangemode": "tozero"}, "shapes": shapes, "annotations": notes,
              "showlegend": False}
    cap = (f'{h["n"]:,} documents · p10 {_n(h["p10"])} · median {_n(h["p50"])} · p90 {_n(h["p90"])} · '
           f'min {_n(h["min"])} · max {_n(h["max"])}')
    if h.get("excluded_nonpositive"):
        cap += f' · {h["excluded_nonpositive"]:,} at ≤ 0 not drawn (log axis)'
    if "zero" in h:
        cap += f' · {h["zero"]:,} ({_pct(h["zero"], h["n"])}) exactly 0'
    return page.chart(cid, data, layout, height=320, caption=_e(cap))


Section = tuple[str, str, str]  # (id, title, html)


class _Sections:
    """One method per section of the page, in page order; each returns ``None`` when its
    data is absent. Charts are registered on ``self.page`` in the order they appear."""

    def __init__(self, data: dict):
        self.data = data
        self.page = _Page()
        self.stats = [StageStats.from_dict(s) for s in data["stats"]]
        self.docs = data["docs"]
        self.last = data["last_run"] or {}
        self.samples = {tuple(k.split("\x1f", 1)): v for k, v in data["samples"].items()}
        self.first_in = self.stats[0].rows_in if self.stats else 0
        self.final_out = self.stats[-1].rows_out if self.stats else 0

    def all(self) -> list[Section]:
        order = (self.summary, self.funnel, self.drops, self.distributions, self.languages, self.domains,
                 self.mixture, self.mix_search, self.throughput, self.examples, self.config)
        return [s for s in (f() for f in order) if s]

    def summary(self) -> Section:
        data, docs, last, first_in, final_out = self.data, self.docs, self.last, self.first_in, self.final_out
        cards = [("records in", _n(first_in)), ("documents out", _n(final_out)), ("kept", _pct(final_out, first_in)),
                 ("stages", str(len(self.stats)))]
        if docs.get("n_tokens") is not None:
            cards.append(("tokens out", _n(docs["n_tokens"])))
        if last.get("wall_seconds") is not None:
            cards.append(("wall time", f"{last['wall_seconds']:.1f} s"))
            cards.append(("cores", _n(last.get("cores"))))
            if last.get("cores"):
                cards.append(("docs/s per core, end to end", f"{first_in / last['wall_seconds'] / last['cores']:,.1f}"))
        status = ('<p class="warn">This run has not finished (or was interrupted): the numbers below are what is '
                  'committed so far.</p>' if not data["complete"] else "")
        prog_rows = [[p["step"], p["kind"], ", ".join(p["stages"]), _n(p["shards_done"]), "yes" if p["complete"] else "no"]
                     for p in data["progress"]]
        if data["problems"]:
            status += ('<p class="warn">Left out, not in their documented format:<br>'
                       + "<br>".join(_e(p) for p in data["problems"]) + "</p>")
        summary = (status + '<div class="cards">' + "".join(_fill("card", value=_e(v), label=_e(k)) for k, v in cards)
                   + "</div>"
                   + f'<p class="note">Stats from <code>{_e(data["stats_source"])}</code>; documents from '
                   f'<code>{_e(data["data_source"])}</code> ({_n(data["data_files"])} Parquet file(s)).'
                   + (f' Last run finished {_e(last.get("finished"))}; {_n(last.get("shards_run"))} shard(s) run, '
                      f'{_n(last.get("shards_skipped"))} resumed.' if last else "") + "</p>"
                   + (_table(["step", "kind", "stages", "shards done", "complete"], prog_rows) if prog_rows else ""))
        return "summary", "Summary", summary

    def funnel(self) -> Section | None:
        stats, page = self.stats, self.page
        if not stats:
            return None
        labels = ["input"] + [s.stage for s in stats]
        values = [stats[0].rows_in] + [s.rows_out for s in stats]
        fdata = [{"type": "funnel", "name": "documents", "y": [_e(l) for l in labels], "x": values,
                  "text": [f"{v:,}" for v in values], "textinfo": "text+percent initial", "textposition": "inside",
                  "hovertemplate": "%{y}: %{x:,} documents (%{percentInitial:.1%} of input, "
                                   "%{percentPrevious:.1%} of previous)<extra></extra>",
                  "marker": {"color": "#1f77b4"}, "connector": {"line": {"color": "#9ca3af"}}}]
        tok = self.data.get("tokens_est")
        out = page.chart("funnel", fdata, {"title": {"text": "Documents kept after each stage"},
                                           "yaxis": {"automargin": True}}, height=max(300, 46 * len(labels) + 80))
        if tok and any(t is not None for t in tok):
            tl = [l for l, t in zip(labels[1:], tok) if t is not None]
            tv = [t for t in tok if t is not None]
            tdata = [{"type": "funnel", "name": "tokens", "y": [_e(l) for l in tl], "x": tv,
                      "text": [f"{v:,}" for v in tv], "textinfo": "text+percent initial",
                      "marker": {"color": "#2ca02c"}}]
            out += page.chart("funnel-tokens", tdata, {"title": {"text": "Tokens kept after each stage"},
                                                       "yaxis": {"automargin": True}},
                              height=max(260, 46 * len(tl) + 80),
                              caption="Written output: exact sum of <code>n_tokens</code>. Earlier stages: "
                                      "≈ text bytes × (output tokens / output text bytes).")
        rows = []
        for s, t in zip(stats, tok or [None] * len(stats)):
            rows.append([s.stage, _n(s.rows_in), _n(s.rows_out), _n(s.rows_dropped), _pct(s.rows_out, s.rows_in),
                         f"{s.bytes_in / 1e6:,.2f}", f"{s.bytes_out / 1e6:,.2f}"] + ([_n(t)] if tok else []))
        heads = ["stage", "docs in", "docs out", "dropped", "kept %", "MB in", "MB out"] + (["≈ tokens out"] if tok else [])
        out += _table(heads, rows, cls="funnel-table")
        return "funnel", "Funnel", out

    def drops(self) -> Section | None:
        parts = []
        for i, s in enumerate(self.stats):
            if not s.dropped:
                continue
            items = sorted(s.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
            reasons = [r for r, _ in items]
            counts = [n for _, n in items]
            shares = [n / s.rows_in if s.rows_in else 0.0 for n in counts]
            anchors = ["#" + anchor(s.stage, r) for r in reasons]
            has = [(s.stage, r) in self.samples for r in reasons]
            ticks = [f'<a href="{a}">{_e(r)}</a>' if h else _e(r) for r, a, h in zip(reasons, anchors, has)]
            bdata = [{"type": "bar", "orientation": "h", "y": ticks[::-1], "x": counts[::-1],
                      "text": [f"{n:,} ({sh:.1%})" for n, sh in zip(counts, shares)][::-1], "textposition": "auto",
                      "customdata": [a if h else "" for a, h in zip(anchors, has)][::-1],
                      "hovertemplate": "%{y}<br>%{x:,} docs dropped (%{text})<extra></extra>",
                      "marker": {"color": "#d62728"}}]
            title = f"{s.stage}: {s.rows_dropped:,} of {s.rows_in:,} dropped ({_pct(s.rows_dropped, s.rows_in)})"
            chart = self.page.chart(f"drops-{i}", bdata, {"title": {"text": _e(title)}, "yaxis": {"automargin": True},
                                                          "xaxis": {"title": {"text": "documents dropped"}}},
                                    height=max(180, 34 * len(items) + 100))
            trows = [[f'<a href="{a}">{_e(r)}</a>' if h else _e(r), _n(n), f"{sh:.2%}",
                      _n(len(self.samples.get((s.stage, r), [])))]
                     for r, n, sh, a, h in zip(reasons, counts, shares, anchors, has)]
            parts.append(f'<h3 id="drops-{_e(s.stage)}">{_e(s.stage)}</h3>' + chart
                         + _table(["reason", "dropped", "share of stage input", "examples"], trows, raw_cols={0},
                                  cls="drops-table"))
        if not parts:
            return None
        return "drops", "Drop reasons", "<p class=note>Click a bar or a reason for example documents.</p>" + "".join(parts)

    def distributions(self) -> Section | None:
        data, docs, page, stats = self.data, self.docs, self.page, self.stats
        H = docs.get("hist") or {}
        dist = []
        for key in ("length", "n_tokens", "lid_score", "ppl", "quality_score", "nsfw_ratio"):
            if H.get(key):
                dist.append(_hist_chart(page, f"hist-{key}", H[key]))
        extra = []
        if docs.get("ppl_buckets"):
            pb = docs["ppl_buckets"]
            tot = sum(k for _, k in pb)
            extra.append("<h3>Perplexity buckets</h3>" + _table(["bucket", "docs", "share"],
                                                                  [[b, _n(k), _pct(k, tot)] for b, k in pb]))
        if data.get("cutoffs"):
            extra.append('<p class="note">Perplexity cut-offs (p30, p60) from <code>' + _e(data["cutoffs_source"])
                         + "</code>: " + ", ".join(f"{_e(l)} {a:g} / {b:g}" for l, (a, b) in data["cutoffs"].items())
                         + "</p>")
        if H.get("quality_score") and data.get("quality_threshold") is None and not data.get("quality_group_thresholds"):
            extra.append('<p class="note">No quality threshold found in config.yaml.</p>')
        for j, (stage, rows) in enumerate((data.get("cluster_sizes") or {}).items()):
            cdata = [{"type": "bar", "x": [_e(b) for b, _ in rows], "y": [k for _, k in rows],
                      "text": [f"{k:,}" for _, k in rows], "textposition": "auto",
                      "hovertemplate": "clusters of size %{x}: %{y:,}<extra></extra>", "marker": {"color": "#9467bd"}}]
            dist.append(page.chart(f"hist-clusters-{j}", cdata, {
                "title": {"text": _e(f"Duplicate-cluster sizes ({stage})")},
                "xaxis": {"type": "category", "title": {"text": "documents per cluster"}},
                "yaxis": {"type": _count_axis([k for _, k in rows]), "title": {"text": "clusters"}}}, height=320,
                caption=_e(f"{sum(k for _, k in rows):,} clusters of 2 or more documents; "
                           f"{next((s.rows_dropped for s in stats if s.stage == stage), 0):,} duplicates removed")))
        if data.get("quality_group_thresholds"):
            extra.append('<p class="note">Top-fraction quality thresholds from <code>'
                         + _e(data["quality_group_thresholds_source"]) + "</code>: "
                         + ", ".join(f"{_e(g)} {v:.3g}" for g, v in data["quality_group_thresholds"].items()) + "</p>")
        if docs.get("dup_sizes"):
            ds = docs["dup_sizes"]
            ddata = [{"type": "bar", "x": [s for s, _ in ds["rows"]], "y": [k for _, k in ds["rows"]],
                      "text": [f"{k:,}" for _, k in ds["rows"]], "textposition": "auto",
                      "hovertemplate": "cluster size %{x}: %{y:,}<extra></extra>", "marker": {"color": "#9467bd"}}]
            dist.append(page.chart("hist-dup", ddata, {"title": {"text": "Duplicate-cluster sizes"},
                                                       "xaxis": {"title": {"text": f"cluster size ({_e(ds['column'])})"}},
                                                       "yaxis": {"type": _count_axis([k for _, k in ds["rows"]]),
                                                                 "title": {"text": "count"}}},
                                   height=320, caption=_e(ds["note"])))
        if dist or extra:
            src = _e(data["data_source"])
            return ("distributions", "Distributions",
                    f'<p class="note">Over the {_n(docs.get("n_docs"))} documents in <code>{src}</code> '
                    f'(documents a stage dropped are not in it; see their examples below).</p>'
                    + '<div class="grid">' + "".join(f"<div>{c}</div>" for c in dist) + "</div>" + "".join(extra))
        if docs.get("error"):
            return ("distributions", "Distributions",
                    f'<p class="warn">Could not read the documents: {_e(docs["error"])}</p>')
        return None

    def languages(self) -> Section | None:
        docs = self.docs
        if not docs.get("languages"):
            return None
        L = docs["languages"]
        n = docs["n_docs"]
        rows = [[r[0] if r[0] is not None else "(none)", _n(r[1]), _pct(r[1], n)] + [_n(v) for v in r[2:]]
                for r in L["rows"]]
        return ("languages", "Languages",
                f'<p class="note">{L["distinct"]:,} language(s) among the documents kept'
                + (f"; top {TOP_LANGS} shown" if L["distinct"] > TOP_LANGS else "") + ".</p>"
                + _table(["language", "docs", "share"] + L["columns"][1:], rows, cls="lang-table"))

    def domains(self) -> Section | None:
        data, docs = self.data, self.docs
        out = ""
        if docs.get("domains_kept"):
            D = docs["domains_kept"]
            rows = [[r[0] or "(none)", _n(r[1]), _pct(r[1], docs["n_docs"])] + [_n(v) for v in r[2:]]
                    for r in D["rows"]]
            out += (f"<h3>Top domains kept</h3><p class=note>{D['distinct']:,} distinct domain(s).</p>"
                    + _table(["domain", "docs", "share"] + D["columns"][1:], rows, cls="domains-kept"))
        if data.get("domains_dropped"):
            rows = [[dom, _n(n), ", ".join(f"{st} {k:,}" for st, k in sorted(by.items(), key=lambda kv: -kv[1]))]
                    for dom, n, by in data["domains_dropped"]]
            kept = "" if data["samples_cap"] is None else f" (up to {data['samples_cap']} kept per stage and reason)"
            out += (f"<h3>Top domains dropped</h3><p class=note>Counted over the reject samples{kept}, "
                    "not over every dropped document.</p>"
                    + _table(["domain", "sampled rejects", "by stage"], rows, cls="domains-dropped"))
        return ("domains", "Domains", out) if out else None

    def mixture(self) -> Section | None:
        if not self.data.get("mixtures"):
            return None
        parts = []
        for j, mx in enumerate(self.data["mixtures"]):
            head = f"<h3>{_e(mx['name'])}</h3><p class=note><code>{_e(mx['path'])}</code>" + (
                f" · tokenizer {_e(mx['tokenizer'])}" if mx.get("tokenizer") else "") + "</p>"
            rows = mx["rows"]
            groups = [_e(r["group"]) for r in rows]
            mdata = [{"type": "bar", "name": "plan", "x": groups, "y": [r["target"] for r in rows],
                      "text": [f"{r['target']:.1%}" for r in rows],
                      "textposition": "auto", "hovertemplate": "%{x}: plan %{y:.2%}<extra></extra>"},
                     {"type": "bar", "name": "achieved", "x": groups, "y": [r["achieved"] for r in rows],
                      "text": [f"{r['achieved']:.1%}" for r in rows],
                      "textposition": "auto", "hovertemplate": "%{x}: achieved %{y:.2%}<extra></extra>"}]
            chart = self.page.chart(f"mix-{j}", mdata, {"barmode": "group",
                                                        "title": {"text": "Mixture: plan vs achieved share"},
                                                        "yaxis": {"tickformat": ".0%"}}, height=340) if rows else ""
            trows = [[r["group"], f"{r['target']:.2%}", f"{r['achieved']:.2%}", _n(r["available"]),
                      _n(r["tokens"]), f"{r['epochs']:.2f}"] for r in rows]
            parts.append(head + chart + _table(["group", "plan", "achieved", "tokens available", "tokens taken",
                                                "epochs"], trows, cls="mix-table"))
        return "mixture", "Mixture", "".join(parts)

    def mix_search(self) -> Section | None:
        """``datapipe mix search``: measured vs predicted (leave-one-out) target loss per
        candidate, and the chosen weights against the starting spec's."""
        searches = self.data.get("mix_searches") or []
        if not searches:
            return None
        parts = []
        for j, s in enumerate(searches):
            groups, cands = s["groups"], s["candidates"]
            p = s["predicted"]
            head = (f"<h3>{_e(s['spec'])}</h3><p class=note><code>{_e(s['path'])}</code> · target <code>{_e(s['target'])}</code>"
                    f" · {len(cands)} proxy candidates (d={_e(s['proxy'].get('d_model'))}, {_e(s['proxy'].get('layers'))} layers,"
                    f" {_n(s['proxy'].get('tokens'))} tokens each) · leave-one-out Spearman {s['cv_spearman']:.3f}"
                    f" · predicted target loss: chosen {p['chosen']:.4f}, start {p['start']:.4f}, uniform {p['uniform']:.4f}"
                    + (f" · spec written: <code>{_e(s['out_spec'])}</code>" if s.get("out_spec") else "") + "</p>")
            meas = [c["losses"]["target"] for c in cands]
            lo, hi = min(meas + s["loo_pred"]), max(meas + s["loo_pred"])
            sdata = [{"type": "scatter", "mode": "markers+text", "x": s["loo_pred"], "y": meas, "name": "candidates",
                      "text": [str(c["index"]) for c in cands], "textposition": "top center",
                      "hovertemplate": "candidate %{text}: predicted %{x:.4f}, measured %{y:.4f}<extra></extra>"},
                     {"type": "scatter", "mode": "lines", "x": [lo, hi], "y": [lo, hi], "name": "predicted = measured",
                      "line": {"dash": "dot", "color": "#888"}, "hoverinfo": "skip"}]
            scatter = self.page.chart(f"mixsearch-fit-{j}", sdata, {
                "title": {"text": "Target loss: measured vs predicted (leave-one-out)"},
                "xaxis": {"title": {"text": "predicted"}}, "yaxis": {"title": {"text": "measured"}}}, height=340)
            wdata = [{"type": "bar", "name": "start", "x": [_e(g) for g in groups], "y": [s["start"][g] for g in groups],
                      "text": [f"{s['start'][g]:.1%}" for g in groups], "textposition": "auto"},
                     {"type": "bar", "name": "chosen", "x": [_e(g) for g in groups], "y": [s["chosen"][g] for g in groups],
                      "text": [f"{s['chosen'][g]:.1%}" for g in groups], "textposition": "auto"}]
            bars = self.page.chart(f"mixsearch-weights-{j}", wdata, {"barmode": "group", "title": {"text": "Weights: start vs chosen"},
                                                                   "yaxis": {"tickformat": ".0%"}}, height=320)
            cols = groups + ["target"]
            trows = [[str(c["index"])] + [f"{c['shares'][g]:.3f}" for g in groups]
                     + [f"{c['losses'].get(g, float('nan')):.4f}" for g in cols] + [f"{pr:.4f}"]
                     for c, pr in zip(cands, s["loo_pred"])]
            table = _table(["candidate"] + [f"share {g}" for g in groups] + [f"loss {g}" for g in cols] + ["predicted target"],
                           trows, cls="mix-table")
            parts.append(head + scatter + bars + table)
        return "mix-search", "Mixture search", "".join(parts)

    def throughput(self) -> Section | None:
        stats, last, first_in, final_out = self.stats, self.last, self.first_in, self.final_out
        if not stats:
            return None
        timed = [s for s in stats if s.seconds > 0]
        tp = [s.docs_per_sec() for s in timed]
        tdata = [{"type": "bar", "orientation": "h", "y": [_e(s.stage) for s in timed][::-1], "x": tp[::-1],
                  "text": [f"{v:,.0f}" for v in tp][::-1], "textposition": "auto",
                  "hovertemplate": "%{y}: %{x:,.1f} docs/s per core<extra></extra>", "marker": {"color": "#ff7f0e"}}]
        total_cpu = sum(s.seconds for s in stats) or 1.0
        rows = [[s.stage, _n(s.rows_in), f"{s.seconds:,.2f}", _pct(s.seconds, total_cpu),
                 f"{s.docs_per_sec():,.1f}" if s.seconds > 0 else "–",
                 f"{s.bytes_in / 1e6 / s.seconds:,.2f}" if s.seconds > 0 else "–"] for s in stats]
        wall = ""
        if last.get("wall_seconds"):
            w, c = last["wall_seconds"], last.get("cores") or 0
            wall = (f"<p>Wall time <b>{w:,.1f} s</b> on {c} core(s); {first_in:,} records in, {final_out:,} documents "
                    "out; " + (f"{first_in / w / c:,.1f} records/s per core end to end" if c else "") + ".</p>")
        chart = self.page.chart("throughput", tdata, {"title": {"text": "Throughput per stage (docs/s per core)"},
                                                      "xaxis": {"type": "log", "title": {"text": "docs per CPU-second"}},
                                                      "yaxis": {"automargin": True}},
                                height=max(200, 34 * len(timed) + 100)) if timed else ""
        return ("throughput", "Throughput",
                wall + chart
                + _table(["stage", "docs in", "CPU s", "share of CPU", "docs/s per core", "MB/s per core"], rows,
                         cls="throughput-table")
                + '<p class="note">Stage time is CPU time measured inside one worker process, so docs per '
                  'CPU-second is the rate of one core.</p>')

    def examples(self) -> Section | None:
        stats, samples = self.stats, self.samples
        parts = []
        order = {s.stage: i for i, s in enumerate(stats)}
        for (stage, reason) in sorted(samples, key=lambda k: (order.get(k[0], 1e9), k[0], k[1])):
            rows = samples[(stage, reason)]
            st = next((s for s in stats if s.stage == stage), None)
            count = st.dropped.get(reason) if st else None
            items = []
            for r in rows[:SAMPLES_SHOWN]:
                scores = {k: v for k, v in r.items() if k not in ("id", "url", "reason", "excerpt", "stage", "text")}
                sc = " · ".join(f"{_e(k)}={_e(_n(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)}"
                                for k, v in scores.items())
                items.append(_fill("sample", url=_e(r.get("url") or ""), id=_e(r.get("id")),
                                   scores=f"<br>{sc}" if sc else "", excerpt=_e(r.get("excerpt") or "(no text)")))
            parts.append(_fill("reason", anchor=anchor(stage, reason), stage=_e(stage), reason=_e(reason),
                               count=_n(count), kept=len(rows),
                               more=f" (showing {SAMPLES_SHOWN})" if len(rows) > SAMPLES_SHOWN else "",
                               samples="".join(items)))
        return ("examples", "Examples of dropped documents", "".join(parts)) if parts else None

    def config(self) -> Section | None:
        if not self.data.get("config_text"):
            return None
        return ("config", "Config", f'<details><summary>config.yaml of this run</summary>'
                                    f'<pre class="ex">{_e(self.data["config_text"])}</pre></details>')


def render(data: dict) -> str:
    """The whole page, self-contained (plotly.js, style sheet and loader inlined)."""
    from plotly.offline import get_plotlyjs

    sec = _Sections(data)
    sections = sec.all()
    return _fill(
        "page", name=_e(data["name"]), run_dir=_e(data["run_dir"]), generated=_e(data["generated"]),
        nav="".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t, _ in sections),
        body="".join(_fill("section", id=sid, title=_e(t), html=h) for sid, t, h in sections),
        specs=sec.page.specs(), plotlyjs=get_plotlyjs(), css=_asset("static/report.css"), js=_asset("static/report.js"))
