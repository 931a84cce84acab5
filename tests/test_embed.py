"""Text embedders (datapipe/embed.py): the static model distilled from MiniLM, the choice of
embedder per device, and what a missing model folder says."""
from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from datapipe import embed as E
from datapipe.stage import StageError, build_stage
from tests.conftest import SHARED_DATA


def _real_pages(n: int) -> list[str]:
    """Distinct real page texts (realpages magic-html gold content), 1,500+ characters."""
    out, seen = [], set()
    with open(SHARED_DATA / "warc" / "realpages" / "realpages-magic-html-benchmark.gold.jsonl", encoding="utf-8") as fh:
        for line in fh:
            t = json.loads(line).get("gold_content") or ""
            if len(t) >= 1500 and re.search(r"[a-z]{4} [a-z]{4}", t) and t[:200] not in seen:
                seen.add(t[:200])
                out.append(t)
    return out[:n]


def _near_copy(text: str, other: str, rng: random.Random) -> str:
    """What a mirror does to a page: 1% of the words replaced (by words of another page), a
    line added at the end."""
    words, pool = text.split(" "), other.split()
    for j in rng.sample(range(len(words)), max(1, len(words) // 100)):
        words[j] = rng.choice(pool)
    return " ".join(words) + "\nShare this page."


def test_static_embedder_is_deterministic_and_normalised(static_model):
    texts = ["The harbour authority raised its fees.", "", "Ein Satz auf Deutsch, bitte.", "数据管道"] * 3
    a = E.StaticEmbedder(static_model).embed(texts)
    b = E.StaticEmbedder(static_model).embed(list(reversed(texts)))[::-1]
    assert a.dtype == np.float32 and a.shape == (len(texts), E.StaticEmbedder(static_model).dim)
    assert np.array_equal(a, b)                     # same text, same vector, whatever the batch order
    norms = np.linalg.norm(a, axis=1)
    assert np.allclose(norms[[0, 2, 3]], 1.0, atol=1e-5)
    assert norms[1] == 0.0                          # no word piece: a zero vector, not NaN
    assert not np.isnan(a).any()


def test_static_embedder_separates_near_copies_from_other_pages(static_model, shared_data):
    pages = _real_pages(24)
    assert len(pages) == 24
    rng = random.Random(0)
    emb = E.StaticEmbedder(static_model)
    x = emb.embed(pages)
    y = emb.embed([_near_copy(t, pages[i - 1], rng) for i, t in enumerate(pages)])
    near = np.sum(x * y, axis=1)                    # each page with its own near copy
    other = x @ x.T
    np.fill_diagonal(other, -1)
    thr = 1 - emb.default_eps                       # what dedup_semantic drops at its default eps
    assert (near > thr).all(), near.min()
    assert other.max() < thr, other.max()
    assert near.min() > other.max()


def test_static_embedder_gives_model2vecs_vectors_in_75_languages(static_model, shared_data):
    """The Arrow word split + cached WordPiece + sparse pooling is model2vec's ``encode``
    (the tokenizer's own normaliser, pre-tokeniser, truncation and [UNK] handling), on real
    pages and on lingua's sentences in 75 languages and scripts."""
    from model2vec import StaticModel
    texts = _real_pages(60)
    for f in sorted((shared_data / "langid" / "lingua").glob("*/sentences.txt")):
        texts += [ln for ln in f.read_text(encoding="utf-8").split("\n")[:20] if ln]
    assert len(texts) > 1000
    ref = StaticModel.from_pretrained(str(static_model), normalize=True)
    for max_tokens in (64, 384):
        ours = E.StaticEmbedder(static_model, max_tokens=max_tokens).embed(texts)
        theirs = ref.encode([t[: max_tokens * 8] for t in texts], max_length=max_tokens,
                            use_multiprocessing=False).astype(np.float32)
        theirs /= np.maximum(np.linalg.norm(theirs, axis=1, keepdims=True), 1e-12)
        cos = np.sum(ours * theirs, axis=1)
        both_empty = (np.linalg.norm(ours, axis=1) == 0) & (np.linalg.norm(theirs, axis=1) == 0)
        bad = [texts[i][:60] for i in np.flatnonzero((cos < 0.99999) & ~both_empty)]
        assert not bad, bad[:5]


def test_auto_is_static_on_cpu_and_minilm_on_gpu(static_model, monkeypatch):
    monkeypatch.setattr(E, "gpu_visible", lambda: False)
    e = E.make_embedder("auto", max_tokens=128)
    assert isinstance(e, E.StaticEmbedder) and e.path == str(static_model.resolve()) and e.max_tokens == 128
    st = build_stage("dedup_semantic", {})
    assert st.embedder.kind == "static" and st.eps == E.StaticEmbedder.default_eps
    assert build_stage("dedup_semantic", {"eps": 0.05}).eps == 0.05
    # explicit choices win over the device
    assert isinstance(E.make_embedder("minilm"), E.TransformerEmbedder)
    assert isinstance(E.make_embedder(str(static_model)), E.StaticEmbedder)
    assert isinstance(E.make_embedder("auto", device="cuda"), E.TransformerEmbedder)
    monkeypatch.setattr(E, "gpu_visible", lambda: True)
    e = E.make_embedder("auto")
    assert isinstance(e, E.TransformerEmbedder) and e.model == E.MINILM
    assert build_stage("dedup_semantic", {}).eps == E.TransformerEmbedder.default_eps
    assert isinstance(E.make_embedder("auto", device="cpu"), E.StaticEmbedder)


def test_cache_keys_name_the_model_and_truncation(static_model, tmp_path):
    keys = {E.make_embedder("static", max_tokens=256).key, E.make_embedder("static", max_tokens=128).key,
            E.make_embedder("minilm", max_tokens=256).key}
    assert len(keys) == 3
    # another static model (other weights) in a folder of the same name: another key
    import shutil
    other = tmp_path / static_model.name
    shutil.copytree(static_model, other)
    from safetensors.numpy import load_file, save_file
    w = load_file(str(other / "model.safetensors"))
    save_file({k: v[::-1].copy() for k, v in w.items()}, str(other / "model.safetensors"))
    assert E.StaticEmbedder(other).key != E.StaticEmbedder(static_model).key


def test_missing_static_model_says_make_models(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "gpu_visible", lambda: False)
    monkeypatch.delenv(E.STATIC_ENV, raising=False)
    monkeypatch.chdir(tmp_path)                     # no runs/_models here
    with pytest.raises(E.EmbedderError, match="make models"):
        E.make_embedder("auto")
    with pytest.raises(StageError, match=r"dedup_semantic: .*runs/_models/minilm-static-256.*make models"):
        build_stage("dedup_semantic", {})
    monkeypatch.setenv(E.STATIC_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(StageError, match="nowhere.*make models"):
        build_stage("dedup_semantic", {"model": "static"})
    # a folder that is neither kind of model
    (tmp_path / "empty").mkdir()
    with pytest.raises(StageError, match="not a local sentence-transformers folder"):
        build_stage("dedup_semantic", {"model": str(tmp_path / "empty")})


def test_build_static_model_refuses_a_source_that_is_not_local(tmp_path):
    with pytest.raises(E.EmbedderError, match="never downloaded"):
        E.build_static_model(tmp_path / "m", source="sentence-transformers/all-MiniLM-L6-v2")
    assert not (tmp_path / "m").exists()
