"""Language pre-filter on raw HTML: drop pages clearly not in the wanted languages *before*
trafilatura runs (stage ``prefilter_lid``).

Extraction is most of a crawl's cost (trafilatura: ~20 ms of CPU per real page), and an
English-only pipeline throws away about two thirds of a multilingual crawl at language ID,
after paying for their extraction. This stage runs a cheap cascade first:

1. resiliparse's plain-text extraction of the whole page (``extract_plain_text``, C++,
   ~1.3 ms of CPU per real page, ~15x cheaper than trafilatura; its main-content pass,
   ``main_content: true``, costs ~0.9 ms more and lost a page the long-lines rule keeps);
2. keep only its lines of at least ``min_line_chars`` characters (paragraphs, not menus:
   a page with an English article and Chinese navigation reads as Chinese otherwise),
   or the whole text when no line is that long;
3. fastText lid.176 on that text, through :class:`stages.langid.LangID` (same model file,
   same loading and text cut).

A page is dropped (``prefilter_lid:other_language``) only when the top language is *not*
wanted and its score reaches ``confidence``: pages in doubt go on to trafilatura and the
real ``langid`` stage, which still decides. Pages without html (WET, JSONL sources) and
pages where resiliparse finds no text are kept. Columns: ``prefilter_lid_lang``,
``prefilter_lid_score`` (null / 0 for rows not judged).

Measured on the 1,600 realpages (``bench/vs_datatrove.py`` and the figures in
``bench/README.md``): with ``languages: [en]`` and the defaults it drops 62% of the pages
before extraction; of the 516 pages that trafilatura + ``langid`` (en >= 0.65) keep, it
drops 1 (0.2%: an English article whose long lines resiliparse reads as Chinese
navigation text). With ten major languages wanted it drops 2.7% and loses none.
``confidence`` 0.65 loses 1, 0.5 loses 1 on this set; shorter ``min_line_chars`` lose more
(0: 1-4 depending on confidence). Those figures are with resiliparse's main-content pass; the
whole page's text (the default since it was measured, ``bench/README.md``) drops 995 instead of
989 and loses none of the 516, and with the default config's six languages it drops 69
instead of 70 and loses none, at ~27% less CPU.

Cost: one resiliparse parse per page (per-row Python loop: resiliparse works one
document at a time and costs ~100x the loop) and one fastText call per batch.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapipe.schema import set_column
from datapipe.stage import Filter, StageError, reasons_from_masks, register

REASON = "prefilter_lid:other_language"


def html_to_lid_text(html: str | None, *, min_line_chars: int, main_content: bool = False) -> str:
    """The text the pre-filter shows fastText: resiliparse's plain text, long lines only."""
    if not html:
        return ""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    try:
        text = extract_plain_text(HTMLTree.parse(html), main_content=main_content, alt_texts=False)
    except Exception:  # noqa: BLE001 - an unparsable page is left to trafilatura to judge
        return ""
    if min_line_chars > 0:
        long_lines = [ln for ln in text.split("\n") if len(ln) >= min_line_chars]
        if long_lines:
            return "\n".join(long_lines)
    return text


@register
class PrefilterLID(Filter):
    """Cheap language ID on raw HTML (resiliparse text + lid.176); drops pages clearly in other languages.

    Options: ``languages`` (the languages the later ``langid`` stage keeps), ``confidence``
    (drop when an unwanted top language scores at least this; default 0.9), ``min_line_chars``
    (80), ``main_content`` (resiliparse's boilerplate removal first; False), ``model_path``,
    ``max_chars`` and ``second_opinion`` as in ``langid`` (here null by default: lid.176
    alone, whose 0.9 is a confident answer; a page it is sure of that CLD2 would call a
    kept language scores below ``langid``'s thresholds anyway, so dropping it early loses
    nothing the later stage would keep).
    """

    name: ClassVar[str] = "prefilter_lid"
    inputs: ClassVar[tuple[str, ...]] = ("html",)
    outputs: ClassVar[tuple[str, ...]] = ("prefilter_lid_lang", "prefilter_lid_score")
    needs_model: ClassVar[bool] = True

    def __init__(self, *, languages: list[str], confidence: float = 0.9, min_line_chars: int = 80,
                 main_content: bool = False, model_path: str | None = None, max_chars: int = 4000,
                 second_opinion: str | None = None):
        from stages.langid import LangID

        if not languages:
            raise StageError("prefilter_lid: languages must name at least one language (those langid keeps)")
        if not 0.0 < confidence <= 1.0:
            raise StageError(f"prefilter_lid: confidence must be in (0, 1], got {confidence}")
        if min_line_chars < 0:
            raise StageError(f"prefilter_lid: min_line_chars must be >= 0, got {min_line_chars}")
        self.languages = [str(x) for x in languages]
        self.confidence = float(confidence)
        self.min_line_chars = int(min_line_chars)
        self.main_content = bool(main_content)
        # the langid stage owns model lookup, checking and loading; we only call its predict()
        self._lid = LangID(languages=None, model_path=model_path, max_chars=max_chars,
                           second_opinion=second_opinion)

    def setup(self) -> None:
        self._lid.ensure_setup()

    def score(self, batch: pa.Table) -> pa.Table:
        htmls = batch["html"].to_pylist()
        # per-row loop: see the module docstring (resiliparse parses one page at a time)
        texts = [html_to_lid_text(h, min_line_chars=self.min_line_chars, main_content=self.main_content)
                 for h in htmls]
        langs, scores = self._lid.predict(pa.array(texts, pa.large_string()))
        out = batch
        for name, col in (("prefilter_lid_lang", pa.array(langs, pa.string())),
                          ("prefilter_lid_score", pa.array(scores, pa.float64()))):
            out = set_column(out, name, col)
        return out

    def decide(self, batch: pa.Table) -> pa.Array:
        lang = batch["prefilter_lid_lang"]
        wanted = np.asarray(pc.fill_null(pc.is_in(lang, value_set=pa.array(self.languages, pa.string())), True),
                            dtype=bool)
        score = np.asarray(pc.fill_null(batch["prefilter_lid_score"], 0.0), dtype=np.float64)
        return reasons_from_masks(batch.num_rows, [(REASON, ~wanted & (score >= self.confidence))])
