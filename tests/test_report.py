"""The HTML run report and ``datapipe show``.

* A real run of the Ray pipeline on the sample crawl: the report's numbers equal the run's
  stats and what the output Parquet holds (recomputed here with pyarrow/numpy, not DuckDB);
  the same numbers come out of a run that has not finalised (no stats.json, samples unmerged).
* A synthetic run directory with every optional column (lid, ppl + cut-offs, quality +
  threshold, nsfw, dup clusters, tokens) and a mixture manifest: each section is built
  from it, and document text containing ``<script>`` is escaped everywhere.
* A browser test: headless Chromium (Debian ``chromium`` + ``chromium-driver``, installed
  here when missing and we are root) renders every chart with the run's numbers, makes no
  network request and runs no injected script; a screenshot is saved.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from datapipe.cli import main as cli_main
from datapipe.config import parse_config
from datapipe.report import anchor, build_report, collect
from datapipe.runner import load_stats, run_pipeline

XSS = '<script>window.__pwned = 1</script>'


# ---------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def real_run(ray_session, sample_crawl, tmp_path_factory) -> Path:
    cfg = parse_config({
        "name": "report-e2e",
        "stages": [{"extract": {}}, {"length": {"min_chars": 200}}, {"url_filter": {}},
                   {"gopher_quality": {}}, {"nsfw_words": {}}],
        "output": {"rows_per_file": 100},
        "engine": {"batch_size": 32},
    }, file="<test>")
    res = run_pipeline(cfg, inputs=sample_crawl, run_dir=tmp_path_factory.mktemp("report") / "run", quiet=True)
    return res.run_dir


def _domain(url: str) -> str:
    h = (urlsplit(url).hostname or "").lower()
    return h[4:] if h.startswith("www.") else h


def _write_synthetic_run(root: Path, n: int = 600, seed: int = 0) -> dict:
    """A finished run directory as the runner lays it out, with every optional column."""
    rng = np.random.default_rng(seed)
    langs = rng.choice(["en", "de", "fr"], size=n, p=[0.6, 0.25, 0.15])
    ppl = np.exp(rng.normal(6.0, 0.6, n))
    lengths = rng.integers(200, 20_000, n)
    texts = ["w " * (k // 2) for k in lengths]
    texts[0] = f"An article quoting {XSS} in its body. " + texts[0]
    domains = [f"site{i % 7}.example" for i in range(n)]
    urls = [f"https://www.{d}/p/{i}" for i, d in enumerate(domains)]
    urls[1] = 'https://evil"><script>window.__pwned=2</script>.example/x'  # a host the domain table shows
    cluster = rng.integers(0, n // 3, n)
    table = pa.table({
        "id": [f"doc{i:05d}" for i in range(n)],
        "text": pa.array(texts, pa.large_string()),
        "url": urls,
        "lid_lang": langs,
        "lid_score": rng.uniform(0.65, 1.0, n),
        "ppl": ppl,
        "ppl_bucket": np.where(ppl < 340, "head", np.where(ppl < 520, "middle", "tail")),
        "quality_score": rng.uniform(0, 5, n),
        "nsfw_ratio": np.where(rng.uniform(size=n) < 0.7, 0.0, rng.uniform(0, 0.01, n)),
        "dup_cluster": cluster,
        "n_tokens": (lengths // 4).astype(np.int64),
    })
    out = root / "output"
    out.mkdir(parents=True)
    pq.write_table(table.slice(0, n // 2), out / "shard-a-00000.parquet")
    pq.write_table(table.slice(n // 2), out / "shard-b-00000.parquet")
    # an in-flight temp file of the runner must be ignored
    (out / ".shard-c-00000.parquet.1234.tmp").write_bytes(b"not parquet")
    stats = [
        {"stage": "read", "rows_in": 2000, "rows_out": 1000, "bytes_in": 9_000_000, "bytes_out": 8_000_000,
         "seconds": 1.0, "dropped": {"request": 1000}, "counters": {}, "shards": 2},
        {"stage": "extract", "rows_in": 1000, "rows_out": 1000, "bytes_in": 8_000_000, "bytes_out": 6_000_000,
         "seconds": 4.0, "dropped": {}, "counters": {}, "shards": 2},
        {"stage": "quality<b>", "rows_in": 1000, "rows_out": n, "bytes_in": 6_000_000, "bytes_out": 5_000_000,
         "seconds": 2.0, "dropped": {"q_v1:low": 1000 - n - 50, f"q_v1:{XSS}": 50}, "counters": {}, "shards": 2},
        {"stage": "dedup_minhash", "rows_in": n, "rows_out": n, "bytes_in": 5_000_000, "bytes_out": 5_000_000,
         "seconds": 1.0, "dropped": {}, "counters": {"cluster_size:2": 40, "cluster_size:3-4": 12,
                                                     "cluster_size:11-100": 2, "cluster_size:>1000": 1}, "shards": 2},
        {"stage": "write", "rows_in": n, "rows_out": n, "bytes_in": 0, "bytes_out": 1_000_000,
         "seconds": 0.0, "dropped": {}, "counters": {}, "shards": 2},
    ]
    (root / "stats.json").write_text(json.dumps({"stages": stats, "steps": []}))
    (root / "plan.json").write_text(json.dumps([{"step": "01-extract", "kind": "stream",
                                                 "stages": ["extract", "quality<b>"]}]))
    (root / "_done").mkdir()
    (root / "_done" / "01-extract.complete").write_text("{}")
    (root / "last_run.json").write_text(json.dumps({"wall_seconds": 5.0, "cores": 2, "shards_run": 2,
                                                    "shards_skipped": 0, "finished": "2026-01-01T00:00:00"}))
    (root / "config.yaml").write_text(
        "name: synthetic\nstages:\n- extract: {}\n- quality_classifier:\n    model: models/quality\n    threshold: 3.0\n"
        "    threads: null\nrejects:\n  samples_per_reason: 5\n  excerpt_chars: 500\n")
    rej = root / "rejects" / "quality_b_"
    rej.mkdir(parents=True)
    rej_rows = [{"id": "r1", "url": f"https://bad.example/{XSS}", "reason": f"q_v1:{XSS}", "stage": "quality<b>",
                 "excerpt": f"dropped text with {XSS} inside", "quality_score": 0.5},
                {"id": "r2", "url": "https://www.bad.example/2", "reason": "q_v1:low", "stage": "quality<b>",
                 "excerpt": "low quality words", "quality_score": 1.0}]
    (rej / "q_v1:low.jsonl").write_text(json.dumps(rej_rows[1]) + "\n")
    (rej / "q_v1__script_.jsonl").write_text(json.dumps(rej_rows[0]) + "\n")
    cut = root / "work" / "02-perplexity-intermediate"
    cut.mkdir(parents=True)
    # as the perplexity_buckets workflow saves them
    (cut / "cutoffs.json").write_text(json.dumps({"percentiles": [30, 60],
                                                  "cutoffs": {"en": [340.0, 520.0], "de": [300.0, 600.0]}}))
    (cut / "quality_thresholds.json").write_text(json.dumps({"fraction": 0.5, "thresholds": {"en": 2.5, "de": 2.0}}))
    mix = root / "mix" / "llama1"
    mix.mkdir(parents=True)
    # the shape `datapipe mix` writes (its manifest writer; shards, spec and plan left out)
    (mix / "manifest.json").write_text(json.dumps({
        "format": "datapipe-token-stream", "version": 1,
        "tokenizer": {"name": "llama3", "hash": "0" * 64, "vocab_size": 128256, "add_bos": False, "add_eos": True,
                      "bos_id": 128000, "eos_id": 128001},
        "total_rows": 120, "total_tokens": 9_700,
        "groups": {"cc": {"docs_available": 100, "available_tokens": 9_000, "rows": 74, "unique_docs": 74,
                          "tokens": 6_700, "target_share": 0.67, "achieved_share": 6_700 / 9_700, "epochs": 0.74},
                   "wiki": {"docs_available": 20, "available_tokens": 1_500, "rows": 46, "unique_docs": 20,
                            "tokens": 3_000, "target_share": 0.33, "achieved_share": 3_000 / 9_700, "epochs": 2.0}},
    }))
    (root / "mix" / ".llama1.tmp-1234").mkdir()  # a mix being written: not shown
    (root / "mix" / ".llama1.tmp-1234" / "manifest.json").write_text("{}")
    return {"table": table, "stats": stats}


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic") / "run"
    info = _write_synthetic_run(root)
    build_report(root)
    return root, info


# ---------------------------------------------------------------------------
# the report of a real run

def test_real_run_report_matches_stats_and_output(real_run):
    page = build_report(real_run)
    assert page == real_run / "report" / "index.html" and page.stat().st_size > 1_000_000  # plotly.js inlined
    d = collect(real_run)
    stats = load_stats(real_run)
    assert d["stats"] == [s.to_dict() for s in stats]
    assert d["complete"] and d["data_source"] == "output" and d["problems"] == []
    # documents: recomputed from the Parquet files with pyarrow/numpy
    files = sorted((real_run / "output").rglob("*.parquet"))
    t = pa.concat_tables(pq.read_table(f, columns=["text", "url"]) for f in files)
    assert d["docs"]["n_docs"] == t.num_rows == stats[-1].rows_out > 0
    lengths = pc.utf8_length(t["text"]).to_numpy()
    h = d["docs"]["hist"]["length"]
    assert sum(h["counts"]) == t.num_rows
    assert h["p50"] == pytest.approx(np.median(lengths))
    assert h["edges"][0] <= lengths.min() and h["edges"][-1] >= lengths.max() * 0.999999
    # the bin of every document: counts per bin agree with numpy over the same edges
    np_counts, _ = np.histogram(lengths, bins=np.array(h["edges"]))
    assert list(np_counts) == h["counts"]
    hn = d["docs"]["hist"]["nsfw_ratio"]
    assert hn["n"] == t.num_rows
    kept = Counter(_domain(u) for u in t["url"].to_pylist())
    top = [(dom, n) for dom, n, *_ in d["docs"]["domains_kept"]["rows"]]
    assert dict(top) == {dom: kept[dom] for dom, _ in top} and top[0][1] == max(kept.values())
    # dropped domains come from the reject samples
    samples = [json.loads(line) for f in (real_run / "rejects").glob("*/*.jsonl") for line in f.read_text().splitlines()]
    dropped = Counter(_domain(s["url"]) for s in samples)
    assert {dom: n for dom, n, _ in d["domains_dropped"]} == {dom: dropped[dom] for dom, _, _ in d["domains_dropped"]}
    # the page: every stage with its counts, every reason linked to its examples
    html = page.read_text()
    for s in stats:
        assert f"<td>{s.stage}</td><td>{s.rows_in:,}</td><td>{s.rows_out:,}</td>" in html, s.stage
        for reason in s.dropped:
            a = anchor(s.stage, reason)
            if (real_run / "rejects" / s.stage / f"{reason}.jsonl").exists():
                assert f'id="{a}"' in html and f'href="#{a}"' in html, (s.stage, reason)


def test_report_of_unfinished_run_reads_what_is_committed(real_run, tmp_path):
    """No stats.json, no merged reject samples, no completion: the same numbers, marked in progress."""
    run = tmp_path / "copy"
    shutil.copytree(real_run, run, ignore=shutil.ignore_patterns("report"))
    (run / "stats.json").unlink()
    (run / "last_run.json").unlink()
    for p in (run / "_done").glob("*.complete"):
        p.unlink()
    for d in (run / "rejects").iterdir():
        if d.name != "_parts":
            shutil.rmtree(d)
    finished, unfinished = collect(real_run), collect(run)
    assert unfinished["stats"] == finished["stats"] and unfinished["stats_source"].startswith("stats/")
    assert not unfinished["complete"]
    assert sorted(unfinished["samples"]) == sorted(finished["samples"])
    assert unfinished["docs"]["n_docs"] == finished["docs"]["n_docs"]
    assert "has not finished" in build_report(run).read_text()


def test_report_cli_prints_path_and_fails_cleanly(real_run, tmp_path, capsys):
    assert cli_main(["report", str(real_run), "--out", str(tmp_path / "r.html")]) == 0
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'r.html'}"
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "no stats.json" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# optional sections, from a synthetic run with every column

def test_all_sections_from_synthetic_run(synthetic_run):
    root, info = synthetic_run
    t = info["table"]
    d = collect(root)
    docs = d["docs"]
    assert docs["n_docs"] == t.num_rows  # the temp file is not read
    assert docs["n_tokens"] == pc.sum(t["n_tokens"]).as_py()
    H = docs["hist"]
    for key in ("length", "n_tokens", "lid_score", "ppl", "quality_score", "nsfw_ratio"):
        assert sum(H[key]["counts"]) == t.num_rows, key
    ppl = t["ppl"].to_numpy()
    assert list(np.histogram(ppl, bins=np.array(H["ppl"]["edges"]))[0]) == H["ppl"]["counts"]
    # cut-offs saved under work/ are drawn, with the threshold from config.yaml
    xs = sorted(line["x"] for line in H["ppl"]["lines"])
    assert xs == [300.0, 340.0, 520.0, 600.0]
    assert [line["x"] for line in H["quality_score"]["lines"]] == [3.0, 2.5, 2.0]
    assert d["cluster_sizes"] == {"dedup_minhash": [("2", 40), ("3-4", 12), ("11-100", 2), (">1000", 1)]}
    assert H["nsfw_ratio"]["zero"] == int((t["nsfw_ratio"].to_numpy() == 0).sum())
    sizes = Counter(Counter(t["dup_cluster"].to_pylist()).values())
    assert dict(docs["dup_sizes"]["rows"]) == dict(sizes)
    assert dict(docs["ppl_buckets"]) == dict(Counter(t["ppl_bucket"].to_pylist()))
    langs = {r[0]: r[1] for r in docs["languages"]["rows"]}
    assert langs == dict(Counter(t["lid_lang"].to_pylist()))
    # tokens: exact at the written output, scaled by text bytes before it, absent before extraction
    est = d["tokens_est"]
    assert est[0] is None and est[-1] == docs["n_tokens"]
    ratio = docs["n_tokens"] / docs["text_bytes"]
    assert est[1] == round(6_000_000 * ratio)
    assert d["problems"] == []  # every file in its documented format
    assert len(d["mixtures"]) == 1
    mix = d["mixtures"][0]
    assert mix["tokenizer"] == "llama3" and [r["epochs"] for r in mix["rows"]] == [0.74, 2.0]
    assert [(r["group"], r["target"]) for r in mix["rows"]] == [("cc", 0.67), ("wiki", 0.33)]
    assert mix["rows"][0]["achieved"] == pytest.approx(6_700 / 9_700)
    html = (root / "report" / "index.html").read_text()
    for section in ("funnel", "drops", "distributions", "languages", "domains", "mixture", "throughput", "examples"):
        assert f'<section id="{section}">' in html, section


def test_document_text_is_escaped(synthetic_run):
    root, _ = synthetic_run
    html = (root / "report" / "index.html").read_text()
    # the only script elements are the page's own: chart specs, plotly.js and the loader
    n_specs = len(re.findall(r'<div class="chart" id="', html))
    assert html.count("<script") == n_specs + 2
    assert "__pwned" in html  # the text is there ...
    assert "<script>window.__pwned" not in html  # ... but never as markup
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html  # excerpt and reason, escaped
    assert "<td>evil&quot;&gt;&lt;script&gt;window.__pwned=2&lt;</td>" in html  # a domain of a kept document
    assert "quality&lt;b&gt;" in html and "<b>quality" not in html
    # chart specs are JSON that cannot close their element
    for spec in re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', html, re.S):
        assert "<" not in spec and ">" not in spec
        json.loads(spec)


def _copy_run(root: Path, dest: Path) -> Path:
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns("report"))
    return dest


def test_thresholds_are_what_config_yaml_recorded_not_todays_defaults(synthetic_run, tmp_path, monkeypatch):
    """The report shows the options config.yaml recorded: a stage default that differs today (here a
    quality_classifier threshold of 4.0) never shows as if it had run."""
    from datapipe.stage import get_stage_class
    run = _copy_run(synthetic_run[0], tmp_path / "run")
    shutil.rmtree(run / "work")  # no saved cut-offs or top-fraction thresholds: only config.yaml counts
    cls = get_stage_class("quality_classifier")
    orig = cls.__init__

    def init(self, *, model: str = "", threshold: float | None = 4.0, threads: int | None = None):
        orig(self, model=model, threshold=threshold, threads=threads)
    monkeypatch.setattr(cls, "__init__", init)
    (run / "config.yaml").write_text("name: synthetic\nstages:\n- quality_classifier:\n    model: m\n"
                                     "- perplexity:\n    cutoffs: ccnet\nrejects:\n  samples_per_reason: 5\n")
    d = collect(run)
    assert d["quality_threshold"] is None and d["docs"]["hist"]["quality_score"]["lines"] == []
    assert "No quality threshold found in config.yaml." in build_report(run).read_text()
    # cut-offs recorded as `ccnet`: CCNet's published values (en: p30 340, p60 520), named as such
    assert d["cutoffs"]["en"] == [340.0, 520.0] and len(d["cutoffs"]) == 48
    assert d["cutoffs_source"] == "config.yaml (perplexity.cutoffs: ccnet, CCNet's published values)"
    (run / "config.yaml").write_text("name: synthetic\nstages:\n- quality_classifier:\n    model: m\n"
                                     "    threshold: 2.75\n")
    d = collect(run)
    assert d["quality_threshold"] == 2.75 and d["cutoffs"] == {} and d["samples_cap"] is None
    assert [line["x"] for line in d["docs"]["hist"]["quality_score"]["lines"]] == [2.75]


def test_files_not_in_their_format_are_named_not_guessed(synthetic_run, tmp_path):
    """A manifest, cut-off file or reject sample not in its documented format is left out and
    named on the page; no other spelling of a key is tried."""
    run = _copy_run(synthetic_run[0], tmp_path / "run")
    man = run / "mix" / "llama1" / "manifest.json"
    m = json.loads(man.read_text())
    for g in m["groups"].values():
        g["share"] = g.pop("achieved_share")
    man.write_text(json.dumps(m))
    (run / "mix" / "other").mkdir()
    (run / "mix" / "other" / "manifest.json").write_text(json.dumps({"groups": {"cc": {"target_share": 1.0}}}))
    (run / "work" / "02-perplexity-intermediate" / "cutoffs.json").write_text(
        json.dumps({"cutoffs": {"en": {"p30": 340.0, "p60": 520.0}}}))
    rej = run / "rejects" / "quality_b_" / "q_v1:low.jsonl"
    rej.write_text("not json\n" + json.dumps({"id": "x", "excerpt": "no stage or reason"}) + "\n" + rej.read_text())
    d = collect(run)
    assert d["mixtures"] == [] and d["cutoffs"] == {} and d["docs"]["hist"]["ppl"]["lines"] == []
    assert [r["id"] for r in d["samples"]["quality<b>\x1fq_v1:low"]] == ["r2"]
    assert len(d["problems"]) == 4, d["problems"]
    for where in ("work/02-perplexity-intermediate/cutoffs.json", "rejects/: 2 sample line(s)",
                  "mix/llama1/manifest.json: groups or tokenizer", "mix/other/manifest.json: not a datapipe-token-stream"):
        assert sum(p.startswith(where) for p in d["problems"]) == 1, where
    html = build_report(run).read_text()
    assert "Left out, not in their documented format" in html and "mix/other/manifest.json" in html
    assert '<section id="mixture">' not in html


# ---------------------------------------------------------------------------
# datapipe show

def test_show_filters_output_with_sql(synthetic_run, capsys):
    root, info = synthetic_run
    t = info["table"]
    want = [r for r in t.select(["id", "lid_lang", "ppl"]).to_pylist() if r["lid_lang"] == "de" and r["ppl"] > 500]
    assert cli_main(["show", str(root), "--where", "lid_lang = 'de' AND ppl > 500", "--n", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in want[:3]]
    assert all(r["lid_lang"] == "de" and r["ppl"] > 500 for r in rows)
    assert cli_main(["show", str(root), "--where", "lid_lang = 'de' AND ppl > 500", "--n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"== {len(want):,} matching document(s) in output (2 shown)")
    assert out.count("\n-- ") == 2 and "ppl=" in out


def test_show_reads_rejects_and_reports_bad_sql(synthetic_run, capsys):
    root, _ = synthetic_run
    assert cli_main(["show", str(root), "--stage", "quality<b>", "--where", "quality_score < 0.7", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["r1"] and XSS in rows[0]["excerpt"]
    assert cli_main(["show", str(root), "--where", "no_such_column > 1"]) == 2
    err = capsys.readouterr().err
    assert "no_such_column" in err and "lid_lang" in err
    assert cli_main(["show", str(root), "--stage", "nope"]) == 2


# ---------------------------------------------------------------------------
# in a browser

CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                  "--window-size=1400,1000"]


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(chromium, chromedriver) from Debian; installed with apt-get when missing and we are root."""
    from tests.conftest import missing

    def find():
        return shutil.which("chromium"), shutil.which("chromedriver")
    browser, driver = find()
    if not (browser and driver):
        if not shutil.which("apt-get") or os.geteuid() != 0:
            missing("headless browser test needs Debian packages chromium and chromium-driver "
                    "(not installed, and cannot apt-get install them here)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
        if r.returncode != 0:  # stale package lists: update once and retry
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
        browser, driver = find()
        if not (browser and driver):
            missing(f"could not install chromium/chromium-driver: {(r.stderr or r.stdout)[-400:]}")
    return browser, driver


@pytest.fixture
def browser(chromium, tmp_path):
    from tests.conftest import require
    webdriver = require("selenium.webdriver", "the test extra: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for drivers online
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium[0]
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=chromium[1]), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _open(drv, page: Path) -> dict:
    """Load ``page``, wait for every chart, return what the browser saw."""
    from selenium.webdriver.support.ui import WebDriverWait
    drv.get_log("performance")  # drop events from before this page
    drv.get(page.as_uri())
    WebDriverWait(drv, 60).until(lambda d: d.execute_script(
        "return document.documentElement.getAttribute('data-charts-rendered') || "
        "document.documentElement.getAttribute('data-charts-error')"))
    seen = drv.execute_script("""
        const texts = sel => Array.from(document.querySelectorAll(sel)).map(e => e.textContent);
        return {
          rendered: document.documentElement.getAttribute('data-charts-rendered'),
          error: document.documentElement.getAttribute('data-charts-error'),
          charts: document.querySelectorAll('div.chart').length,
          drawn: Array.from(document.querySelectorAll('div.chart')).filter(el => el.querySelector('svg.main-svg')).length,
          funnel: texts('#funnel text'),
          drops: Array.from(document.querySelectorAll('div.chart[id^="drops-"]')).map(
                   el => ({id: el.id, texts: Array.from(el.querySelectorAll('text')).map(e => e.textContent),
                           links: Array.from(el.querySelectorAll('g.ytick text')).map(
                                    t => ((t.getAttribute('data-unformatted') || '').match(/href="([^"]+)"/) || [])[1])})),
          resources: performance.getEntriesByType('resource').map(e => e.name),
          pwned: window.__pwned === undefined ? null : window.__pwned,
        };""")
    events = [json.loads(e["message"])["message"] for e in drv.get_log("performance")]
    sent = [e["params"] for e in events if e["method"] == "Network.requestWillBeSent"]
    # requests the page made (the browser's own chrome:// pages are not the report's)
    seen["requests"] = [p["request"]["url"] for p in sent if p.get("documentURL") == page.as_uri()]
    seen["remote"] = [p["request"]["url"] for p in sent if not p["request"]["url"].startswith(("file:", "chrome:", "data:"))]
    seen["console"] = [e["message"] for e in drv.get_log("browser")]
    return seen


def _screenshot(drv, path: Path) -> None:
    """Full-page PNG through the DevTools protocol."""
    import base64
    drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    h = drv.execute_script("return document.documentElement.scrollHeight")
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": 1400, "height": min(int(h), 16000), "deviceScaleFactor": 1, "mobile": False})
    png = drv.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(png["data"]))


def test_report_renders_in_headless_chromium(real_run, synthetic_run, browser, tmp_path):
    page = build_report(real_run)
    seen = _open(browser, page)
    stats = load_stats(real_run)
    assert seen["error"] is None, seen["error"]
    assert int(seen["rendered"]) == seen["charts"] == seen["drawn"] >= 3
    # the funnel draws the run's numbers: the input and every stage's output
    funnel = " ".join(seen["funnel"])
    for s in stats:
        assert s.stage in funnel and f"{s.rows_out:,}" in funnel, s.stage
    assert f"{stats[0].rows_in:,}" in funnel
    # one bar chart per stage that dropped something, with each reason's count and a link to its examples
    drops = {c["id"]: c for c in seen["drops"]}
    dropping = [s for s in stats if s.dropped]
    assert len(drops) == len(dropping)
    for chart, s in zip(seen["drops"], dropping):
        text = " ".join(chart["texts"])
        for reason, n in s.dropped.items():
            assert reason in text and f"{n:,}" in text, (s.stage, reason)
            if (real_run / "rejects" / s.stage / f"{reason}.jsonl").exists():
                assert f"#{anchor(s.stage, reason)}" in chart["links"]
    # clicking a reason's label or its bar jumps to that reason's examples
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    s = next(s for s in dropping if any((real_run / "rejects" / s.stage / f"{r}.jsonl").exists() for r in s.dropped))
    chart = browser.find_element(By.ID, f"drops-{stats.index(s)}")
    label = chart.find_elements(By.CSS_SELECTOR, "g.ytick text")[-1]  # the top bar: the most frequent reason
    top = max(s.dropped.items(), key=lambda kv: (kv[1], [-ord(c) for c in kv[0]]))[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", chart)
    label.click()
    assert browser.execute_script("return location.hash") == f"#{anchor(s.stage, top)}"
    browser.execute_script("location.hash = ''")
    bar = chart.find_elements(By.CSS_SELECTOR, "g.point path")[-1]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", chart)
    ActionChains(browser).move_to_element(bar).click().perform()
    assert browser.execute_script("return location.hash") == f"#{anchor(s.stage, top)}"
    # nothing was fetched: the only request is the page itself
    assert seen["resources"] == []
    assert seen["requests"] == [page.as_uri()] and seen["remote"] == []
    assert not [m for m in seen["console"] if "Content Security Policy" in m or "SEVERE" in m.upper()], seen["console"]
    shot = tmp_path / "report.png"
    _screenshot(browser, shot)
    assert shot.stat().st_size > 50_000
    if os.environ.get("DATAPIPE_TEST_ARTIFACTS"):
        Path(os.environ["DATAPIPE_TEST_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["DATAPIPE_TEST_ARTIFACTS"]) / "report.png")

    # the synthetic page: every optional chart renders, and the injected scripts never run
    root, _ = synthetic_run
    seen = _open(browser, root / "report" / "index.html")
    assert seen["error"] is None and int(seen["rendered"]) == seen["charts"] == seen["drawn"] >= 10
    assert seen["pwned"] is None
    assert seen["resources"] == [] and seen["remote"] == []
    if os.environ.get("DATAPIPE_TEST_ARTIFACTS"):
        _screenshot(browser, Path(os.environ["DATAPIPE_TEST_ARTIFACTS"]) / "synthetic.png")
