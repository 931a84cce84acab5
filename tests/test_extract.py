"""The extract stage: main text kept, boilerplate dropped, every drop has its reason."""
from __future__ import annotations

import json
import signal
import threading
import time

import pyarrow as pa
import pytest

from datapipe.samplecrawl import sample_article_page
from datapipe.schema import RAW_SCHEMA, table_from_rows
from datapipe.stage import StageError, apply_stage, build_stage
from stages.extract import STATUS_COL, Extract
from tests.conftest import SHARED_DATA, missing, need_shared

REALPAGES = SHARED_DATA / "warc" / "realpages"


def _raw(*htmls, texts=None) -> pa.Table:
    texts = texts or [None] * len(htmls)
    return table_from_rows(
        [{"id": f"d{i}", "url": f"https://example.org/{i}", "html": h, "text": t} for i, (h, t) in enumerate(zip(htmls, texts))],
        RAW_SCHEMA,
    )


def _norm(s: str) -> str:
    return " ".join(s.split())


def _busy(seconds: float):
    """A pure-Python stand-in for a pathological page (interruptible between bytecodes).

    ``run.finished`` counts the calls that ran to their end: a budget that cuts the page
    short leaves it at 0 (how fast it cuts is bench/guards.py's business, not a test's).
    """
    def run(html):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        run.finished += 1
        return "finished far too late " * 10
    run.finished = 0
    return run


@pytest.mark.parametrize("lang", ["en", "de", "ru", "zh"])
def test_article_kept_and_boilerplate_removed(lang):
    page = sample_article_page(lang, seed=3)
    st = Extract()
    res = apply_stage(st, _raw(page.html))
    assert res.rejected is None
    assert res.kept.num_rows == 1
    assert "html" not in res.kept.column_names
    assert res.kept.schema.field("text").type == pa.large_string()
    text = _norm(res.kept["text"][0].as_py())
    for p in page.paragraphs:
        assert _norm(p) in text, p
    for b in page.boilerplate:
        assert b not in text, f"boilerplate kept: {b!r}"
    assert res.kept[STATUS_COL].to_pylist() == ["extracted"]
    assert st.counters() == {"extracted": 1}


def test_include_comments_option_reaches_trafilatura():
    seed = next(s for s in range(200) if 'class="comments"' in sample_article_page("en", seed=s).html)
    page = sample_article_page("en", seed=seed)
    comment = page.html.split('<div class="comment">', 1)[1].split("<p>", 1)[1].split("</p>", 1)[0]
    without = apply_stage(Extract(), _raw(page.html)).kept["text"][0].as_py()
    with_c = apply_stage(Extract(include_comments=True), _raw(page.html)).kept["text"][0].as_py()
    assert comment not in without
    assert comment in with_c


def test_timeout_signal_path_cuts_a_slow_page_short():
    if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
        missing("SIGALRM is owned by another tool in this test run (pytest-timeout?)")
    st = Extract(timeout_s=0.05, timeout_mode="signal")
    st.ensure_setup()
    st._extract_one = slow = _busy(5.0)
    assert st._pick_mode() == "signal"
    res = apply_stage(st, _raw("<p>slow</p>"))
    assert slow.finished == 0                     # interrupted, not waited out
    assert res.reasons == {"extract:timeout": 1}
    assert res.kept.num_rows == 0
    assert st.counters() == {"timeout": 1}
    # the stage leaves no alarm and no handler of its own behind
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None)


def test_timeout_in_a_worker_thread_uses_the_watchdog():
    """Ray Data runs actor UDFs in a non-main thread: the budget must hold there too."""
    st = Extract(timeout_s=0.05)
    st.ensure_setup()
    slow, real = _busy(5.0), st._extract_one
    calls = iter([slow, real])
    st._extract_one = lambda html: next(calls)(html)
    out = {}

    def work():
        try:
            out["res"] = apply_stage(st, _raw("<p>slow</p>", sample_article_page("en").html))
            out["mode"] = st._pick_mode()
            end = time.perf_counter() + 0.3   # no stray exception may arrive later
            while time.perf_counter() < end:
                pass
        except BaseException as e:  # noqa: BLE001 - reported below
            out["error"] = e

    th = threading.Thread(target=work)
    th.start()
    th.join(10)
    assert "error" not in out, out.get("error")
    assert out["mode"] == "thread"
    assert slow.finished == 0                     # interrupted, not waited out
    res = out["res"]
    assert res.reasons == {"extract:timeout": 1}
    assert res.kept["id"].to_pylist() == ["d1"]   # the next page was extracted normally
    assert st.counters() == {"timeout": 1, "extracted": 1}


def test_measure_mode_keeps_and_counts_pages_over_budget():
    st = Extract(timeout_s=0.01, timeout_mode="measure")
    st.ensure_setup()
    st._extract_one = _busy(0.05)
    res = apply_stage(st, _raw("<p>slow</p>"))
    assert res.kept.num_rows == 1
    assert st.counters() == {"extracted": 1, "over_budget": 1}


def test_too_large_is_dropped_before_parsing():
    st = Extract(max_html_bytes=1000)
    st.ensure_setup()

    def must_not_parse(html):
        raise AssertionError("parsed a page over max_html_bytes")
    st._extract_one = must_not_parse
    # 400 characters of 3-byte UTF-8: over the byte limit, under it in characters
    res = apply_stage(st, _raw("<p>" + "\u4e2d" * 400 + "</p>"))
    assert res.reasons == {"extract:too_large": 1}
    assert res.rejected["reason"].to_pylist() == ["extract:too_large"]
    assert st.counters() == {"too_large": 1}


def test_rows_with_text_and_no_html_pass_through():
    st = Extract()
    # a JSONL/Parquet-like batch: no html column at all
    batch = pa.table({"id": ["a", "b"], "text": pa.array(["already plain text", "x"], pa.large_string())})
    res = apply_stage(st, batch)
    assert res.kept["text"].to_pylist() == ["already plain text", "x"]
    assert res.kept[STATUS_COL].to_pylist() == ["passthrough", "passthrough"]
    # a WARC batch mixing a WET-like row (text, null html), a page, and a row with neither
    page = sample_article_page("fr").html
    res = apply_stage(st, _raw(None, page, None, texts=["wet text", None, None]))
    assert res.kept["id"].to_pylist() == ["d0", "d1"]
    assert res.kept["text"][0].as_py() == "wet text"
    assert res.reasons == {"extract:empty": 1}
    assert st.counters() == {"passthrough": 3, "extracted": 1, "empty": 1}


def test_errors_and_empty_pages_are_dropped_with_their_reason():
    st = Extract(min_text_chars=200)
    st.ensure_setup()
    real = st._extract_one

    def flaky(html):
        if "boom" in html:
            raise ValueError("parser exploded")
        return real(html)
    st._extract_one = flaky
    short = "<html><body><article><p>Only a short line here.</p></article></body></html>"
    res = apply_stage(st, _raw("<p>boom</p>", short, sample_article_page("es").html))
    assert res.rejected.select(["id", "reason"]).to_pylist() == [
        {"id": "d0", "reason": "extract:error"}, {"id": "d1", "reason": "extract:empty"}]
    assert res.kept["id"].to_pylist() == ["d2"]
    assert st.counters() == {"error": 1, "empty": 1, "extracted": 1}
    assert st.counters() == {}   # reset after each read


def test_options_are_validated_at_construction():
    for bad in ({"favor": "speed"}, {"timeout_s": -1}, {"max_html_bytes": 0}, {"min_text_chars": 0},
                {"timeout_mode": "never"}):
        with pytest.raises(StageError):
            build_stage("extract", bad)


def test_config_validation_knows_the_options():
    from datapipe.config import ConfigError, parse_config

    cfg = parse_config({"stages": [{"extract": {"favor": "precision", "timeout_s": 2}}]})
    assert cfg.stages[0].options == {"favor": "precision", "timeout_s": 2.0}
    with pytest.raises(ConfigError, match="favour"):
        parse_config({"stages": [{"extract": {"favour": "precision"}}]})


def test_realpages_snippets_are_found():
    warc = need_shared("warc", "realpages", "realpages-trafilatura-eval.warc.gz")
    from datapipe.io.warc import iter_warc_batches
    from datapipe.schema import doc_id
    from datapipe.stats import StageStats

    gold = {}
    for line in (REALPAGES / "realpages-trafilatura-eval.gold.jsonl").read_text().splitlines():
        g = json.loads(line)
        gold[doc_id(g["warc_record_id"])] = g
    batch = next(iter_warc_batches(str(warc), source="t", batch_size=40, max_html_bytes=1 << 26, stats=StageStats("read")))
    res = apply_stage(Extract(), batch)
    gold = {i: g for i, g in gold.items() if i in set(batch["id"].to_pylist())}
    assert len(gold) == 40
    texts = {r["id"]: _norm(r["text"]) for r in res.kept.select(["id", "text"]).to_pylist()}
    hit = total = leaked = total_not = 0
    for i, g in gold.items():
        for s in g["gold_with"]:
            total += 1
            hit += _norm(s) in texts.get(i, "")
        for s in g["gold_without"]:
            total_not += 1
            leaked += _norm(s) in texts.get(i, "")
    assert len(texts) >= 38
    assert hit / total >= 0.85          # measured 0.946 over all 990 pages
    assert leaked / total_not <= 0.2    # measured 0.097


def _magic_pages(n: int) -> list[str]:
    warc = need_shared("warc", "realpages", "realpages-magic-html-benchmark.warc.gz")
    from datapipe.io.warc import iter_warc_batches
    from datapipe.stats import StageStats

    batch = next(iter_warc_batches(str(warc), source="t", batch_size=n, max_html_bytes=1 << 26, stats=StageStats("read")))
    return [h for h in batch["html"].to_pylist() if h]


def _spy_cascade(monkeypatch) -> dict[str, list]:
    """Record the length of every main-extractor result and every readability run."""
    import trafilatura.core as core
    import trafilatura.external as external

    seen = {"main": [], "readability": 0}
    main, readability = core.extract_content, external.try_readability

    def extract_content(tree, options):
        body, text = main(tree, options)
        seen["main"].append((len(text), options.focus))
        return body, text

    def try_readability(tree):
        seen["readability"] += 1
        return readability(tree)

    monkeypatch.setattr(core, "extract_content", extract_content)
    monkeypatch.setattr(external, "try_readability", try_readability)
    return seen


def test_fallback_below_compares_only_short_extractions(monkeypatch):
    pages = _magic_pages(30)
    seen = _spy_cascade(monkeypatch)
    gated = apply_stage(Extract(fallback_below=1000), _raw(*pages))
    short = sum(1 for n, _ in seen["main"] if n < 1000)
    assert 0 < short < len(seen["main"])  # the pages hold both kinds
    assert seen["readability"] == short
    assert gated.kept.num_rows >= len(pages) - 1

    seen["main"].clear()
    seen["readability"] = 0
    apply_stage(Extract(fallback_below=None), _raw(*pages))
    # trafilatura's own cascade: readability on every balanced-focus page, long or short
    assert seen["readability"] >= sum(1 for _, focus in seen["main"] if focus != "recall")
    assert seen["readability"] > short


def test_fallback_gate_leaves_other_trafilatura_calls_alone(monkeypatch):
    import trafilatura

    pages = _magic_pages(8)
    apply_stage(Extract(fallback_below=0), _raw(*pages))  # installs the gate; 0 skips every comparison
    seen = _spy_cascade(monkeypatch)
    for html in pages:
        trafilatura.extract(html)
    assert seen["readability"] >= len(pages)  # outside the stage, the whole cascade runs


def test_fallback_below_is_validated():
    assert Extract().fallback_below == 1000
    for bad in (-1, "1000", True, 2.5):
        with pytest.raises(StageError, match="fallback_below"):
            Extract(fallback_below=bad)
