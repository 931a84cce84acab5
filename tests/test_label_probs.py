"""Label probabilities from logprobs: the reply formats of OpenAI, vLLM and llama.cpp
(tests/data/logprobs/), the labeller's probability columns against the test double, and the
training target built from them."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from classifiers.label import ClientConfig, LabelCache, LabelParseError, Prompt, label_table
from classifiers.logprobs import Position, label_distribution, norm_token, token_positions
from tests.fake_llm import FakeLLMServer, rubric_quality, rubric_reply

DATA = Path(__file__).parent / "data" / "logprobs"

#: file -> (argmax label, expected score, label mass): summed by hand from the files' numbers
CASES = {
    "openai_chat.json": ("4", 3.5 / 0.93, 0.93),            # the score after the reason, not the "2" in it
    "vllm_chat.json": ("2", 1.85 / 0.95, 0.95),             # -9999 (vLLM's underflow) counts as 0
    "vllm_completions.json": ("1", 0.8, 1.0),               # legacy {token: logprob} dicts, " 1" tokens
    "llamacpp_chat.json": ("4", 3.85 / 0.99, 0.99),
    "llamacpp_completion.json": ("0", 0.09 / 0.99, 0.99),
    "llamacpp_completion_post_sampling.json": ("3", 3.1, 1.0),  # probabilities, not logprobs
    "llamacpp_completion_legacy.json": ("5", 4.3 / 0.9, 0.9),
}


def _content(body: dict) -> str:
    if "choices" in body:
        ch = body["choices"][0]
        return ch["message"]["content"] if "message" in ch else ch["text"]
    return body["content"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_server_formats_give_label_probabilities(name):
    body = json.loads((DATA / name).read_text())
    prompt = Prompt.load("quality_edu_score_v1")
    parsed = prompt.parse(_content(body)).label
    dist = label_distribution(token_positions(body), prompt.labels, parsed=parsed,
                              values=[float(x) for x in prompt.labels])
    argmax, expected, mass = CASES[name]
    assert dist is not None
    assert dist.argmax == argmax == parsed
    assert dist.expected == pytest.approx(expected, abs=1e-4)
    assert dist.mass == pytest.approx(mass, abs=1e-4)
    assert sum(dist.probs.values()) == pytest.approx(1.0)
    assert set(dist.probs) == set(prompt.labels)


def test_the_logprobs_part_alone_reads_the_same_as_the_whole_body():
    body = json.loads((DATA / "vllm_chat.json").read_text())
    assert token_positions(body["choices"][0]["logprobs"]) == token_positions(body)
    assert token_positions(None) == [] and token_positions({"choices": [{}]}) == []


def test_recorded_smollm2_reply():
    """A real reply of `classify serve --model smollm2`, recorded: 20 alternatives, few of them digits."""
    body = json.loads((DATA / "datapipe_smollm2_chat.json").read_text())
    prompt = Prompt.load("quality_edu_score_v1")
    with pytest.raises(LabelParseError):   # it wrote "The answer" instead of a digit
        prompt.parse(_content(body))
    pos = token_positions(body)
    assert len(pos[0].alternatives) == 20
    dist = label_distribution(pos, prompt.labels, values=[float(x) for x in prompt.labels])
    # the digits 1, 0, 2, 3 are among its 20 alternatives: about 10 % of the probability
    assert dist.position == 0 and dist.argmax == "1" and dist.mass == pytest.approx(0.0996, abs=1e-3)
    assert dist.probs["4"] == dist.probs["5"] == 0.0
    assert dist.expected == pytest.approx(sum(int(k) * p for k, p in dist.probs.items()))


def test_position_choice_and_token_normalisation():
    labels = ["0", "1", "2"]
    pos = [Position("Score", {"Score": 0.9, "1": 0.05}), Position(":", {":": 1.0}),
           Position("\u01202", {"\u01202": 0.7, "\u2581" + "1": 0.2, "x": 0.1})]
    # with the parsed label: the last position that generated it
    d = label_distribution(pos, labels, parsed="2", values=[0, 1, 2])
    assert d.position == 2 and d.probs["2"] == pytest.approx(0.7 / 0.9) and d.mass == pytest.approx(0.9)
    # without it: the first position that offers a label token
    assert label_distribution(pos, labels).position == 0
    assert label_distribution([Position("The", {"The": 0.9, "A": 0.1})], labels) is None
    assert norm_token(' "3"') == "3" and norm_token("\u01203") == "3"


# ---------------------------------------------------------------------------
# the labeller's columns

def _docs() -> pa.Table:
    texts = [("Photosynthesis is the process by which plants use light energy. Students learn in this lesson that "
              "the process happens in the cells of the leaf, because chloroplasts contain chlorophyll. ") * k
             for k in (1, 3, 6)] + ["Buy cheap pills now, best price, click here. " * 5]
    return pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": pa.array(texts, pa.large_string())})


def test_labeller_records_probabilities_expected_score_and_argmax(tmp_path):
    prompt = Prompt.load("quality_edu_v1")
    docs = _docs()
    with FakeLLMServer() as srv:
        cfg = ClientConfig(base_url=srv.base_url, top_logprobs=20)
        out, rep = label_table(docs, prompt, cfg, LabelCache(tmp_path / "c"))
        plain, _ = label_table(docs, prompt, ClientConfig(base_url=srv.base_url), LabelCache(tmp_path / "p"))
    assert rep.labelled == 4 and rep.parse_failures == 0
    for row, text in zip(out.to_pylist(), docs["text"].to_pylist()):
        s = rubric_quality(text)[0]
        probs = dict(row["label_probs"])
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4) and row["label_parsed_by"] == "logprobs"
        assert row["label"] == str(s) == max(probs, key=probs.get)
        assert row["label_expected"] == pytest.approx(sum(int(k) * v for k, v in probs.items()), abs=1e-4)
        assert row["label_expected"] != s          # the double spreads 40 % over the neighbours
        assert row["label_prob_mass"] == pytest.approx(0.95, abs=0.01)
    # without logprobs: the same labels, parsed from the text, no probabilities
    assert plain["label"].to_pylist() == out["label"].to_pylist()
    assert set(plain["label_parsed_by"].to_pylist()) == {"json"}
    assert plain["label_expected"].null_count == 4 and plain["label_probs"].null_count == 4


def test_logprobs_rescue_an_unparsable_reply_and_the_failure_is_counted(tmp_path):
    prompt = Prompt.load("quality_edu_v1")

    def sloppy(messages):  # the score is there, but not as JSON nor in the fallback format
        return "Hmm, " + json.loads(rubric_reply(messages))["reason"][:20] + ' I would say "score": 2 overall'
    with FakeLLMServer(backend=sloppy) as srv:
        out, rep = label_table(_docs(), prompt, ClientConfig(base_url=srv.base_url, top_logprobs=5, parse_retries=0),
                               LabelCache(tmp_path / "c"))
        bare, rep2 = label_table(_docs(), prompt, ClientConfig(base_url=srv.base_url, parse_retries=0),
                                 LabelCache(tmp_path / "b"))
    assert rep.parse_failures == 4 and rep.parse_errors == 0
    assert set(out["label"].to_pylist()) == {"2"} and set(out["label_parsed_by"].to_pylist()) == {"logprobs"}
    assert rep2.parse_failures == 4 and rep2.parse_errors == 4
    assert set(bare["label_status"].to_pylist()) == {"parse_error"}


def test_training_target_expected(tmp_path):
    from classifiers.train import load_labels
    t = pa.table({"id": ["a", "b", "c", "d"], "text": ["w x", "y z", "p q", "r s"], "label": ["1", "1", "2", "3"],
                  "label_expected": [1.4, 1.6, None, 2.49], "label_status": ["ok"] * 4})
    pq.write_table(t, tmp_path / "l.parquet")
    assert load_labels(tmp_path / "l.parquet").labels == ["1", "1", "2", "3"]
    assert load_labels(tmp_path / "l.parquet", target="expected").labels == ["1", "2", "2", "2"]
    pq.write_table(t.drop(["label_expected"]), tmp_path / "n.parquet")
    with pytest.raises(ValueError, match="label_expected"):
        load_labels(tmp_path / "n.parquet", target="expected")
