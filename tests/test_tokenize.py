"""tokenize stage: Llama 3 ids against ids Meta and Hugging Face published, other backends
against those, the separators and columns the mixture step relies on, and config-time failures."""
import numpy as np
import pyarrow as pa
import pytest

from datapipe.config import ConfigError, parse_config
from datapipe.stage import StageError, apply_stage
from stages.tokenize import (Tokenize, load_tokenizer, parse_tokenizer_spec, read_quicktok_ranks,
                             write_hf_tokenizer_json)
from tests import _realpages

# Published Llama 3 token ids (no special tokens added), copied here as data, not computed:
# [meta]  meta-llama/llama3, llama/test_tokenizer.py at commit 07c61c8e03030cea03e4a6b3c69b4802f03e6aa9:
#         Meta's tests of its own tokenizer (test_encode, test_encode_message, test_encode_dialog).
# [hf]    ggerganov/llama.cpp, models/ggml-vocab-llama-bpe.gguf.inp (commit 3269efe70d915d5fdf6f7f0930776e30e9134c4a)
#         and models/ggml-vocab-llama-bpe.gguf.out (commit 284870c8686e1f8cee9871331675b5ef24031f74):
#         written by llama.cpp's convert_hf_to_gguf_update.py with Hugging Face's AutoTokenizer for
#         meta-llama/Meta-Llama-3-8B, `tokenizer.encode(text, add_special_tokens=False)`; a selection
#         of its test strings, the last one being the script's whole `chktxt`.
_CHKTXT = ("\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n"
           "\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f (multiple emojis concatenated) \u2705 "
           "\U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
           "\u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 "
           "?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= "
           "\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 "
           "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? "
           "'M not sure I'll make it, 'D you like some tea? We'Ve a'lL")
LLAMA3_PUBLISHED = [
    ("meta", "This is a test sentence.", [2028, 374, 264, 1296, 11914, 13]),
    ("meta", "This is a response.", [2028, 374, 264, 2077, 13]),
    ("meta", "system", [9125]),
    ("meta", "user", [882]),
    ("meta", "assistant", [78191]),
    ("meta", "\n\n", [271]),
    ("hf", "ied 4 \u00bd months", [1142, 220, 19, 220, 27154, 4038]),
    ("hf", "F\u00fchrer", [37, 51853, 261]),
    ("hf", "\t\n", [1602]),
    ("hf", " Hello, world!", [22691, 11, 1917, 0]),
    ("hf", "    Hello\n    Hello", [262, 22691, 198, 262, 22691]),
    ("hf", "\n =", [198, 284]),
    ("hf", "' era", [6, 11639]),
    ("hf", "w048 7tuijk dsdfhu", [86, 23904, 220, 22, 83, 2005, 42908, 11729, 3013, 17156]),
    ("hf", "\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438",
     [79862, 102118, 13373, 64571, 34694, 3114, 112203, 80112]),
    ("hf", " this is \U0001f999.cpp", [420, 374, 11410, 99, 247, 13, 11055]),
    ("hf", "Hello, y'all! How are you \U0001f601 ?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e",
     [9906, 11, 379, 65948, 0, 2650, 527, 499, 27623, 223, 949, 37046, 101067, 19000, 23182, 102301, 9263, 18136,
      16, 36827, 21909]),
    ("hf", "333333333", [8765, 8765, 8765]),
    ("hf", " Vi\u1ec7t", [101798]),
    ("hf", _CHKTXT,
     [198, 4815, 15073, 66597, 8004, 1602, 2355, 79772, 11187, 9468, 248, 222, 320, 8416, 8, 27623, 114, 102470,
      9468, 234, 104, 31643, 320, 36773, 100166, 98634, 8, 26602, 227, 11410, 99, 247, 9468, 99, 247, 220, 18, 220,
      1644, 220, 8765, 220, 8765, 18, 220, 8765, 1644, 220, 8765, 8765, 220, 8765, 8765, 18, 220, 8765, 8765, 1644,
      220, 18, 13, 18, 220, 18, 497, 18, 220, 18, 1131, 18, 220, 21549, 222, 98629, 241, 45358, 233, 21549, 237,
      45358, 224, 21549, 244, 21549, 115, 21549, 253, 45358, 223, 21549, 253, 21549, 95, 98629, 227, 76460, 223,
      949, 37046, 101067, 19000, 23182, 102301, 9263, 18136, 16, 36827, 21909, 56560, 54337, 19175, 102118, 13373,
      64571, 34694, 3114, 112203, 80112, 3436, 106451, 14196, 14196, 74694, 3089, 3089, 29249, 17523, 3001, 27708,
      7801, 358, 3077, 1027, 364, 83, 820, 568, 596, 1070, 11, 364, 793, 499, 2771, 30, 364, 44, 539, 2771, 358,
      3358, 1304, 433, 11, 364, 35, 499, 1093, 1063, 15600, 30, 1226, 6, 43712, 264, 64966, 43]),
]
#: special token ids in [meta] (test_encode's bos/eos, the chat format's headers and end of turn)
LLAMA3_PUBLISHED_SPECIALS = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|start_header_id|>": 128006,
                             "<|end_header_id|>": 128007, "<|eot_id|>": 128009}

# Meta's regex from llama/tokenizer.py, written out here so the reference does not reuse the stage's
META_LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                   r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

SAMPLES = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return [i**2 for i in range(100)]  # 1+2+3==6\n",
    "café résumé naïve — Zürich, 3.14159 and 1234567890",
    "日本語のトークナイザー 中文 한국어 Ω≈ç√∫ Икс हिन्दी",
    "   leading\n\ttabs and  spaces   \r\n windows lines \r\n",
    "don't can't I'll we've they're 'tis 'TWAS ALLCAPS",
    "emoji \U0001f680\U0001f525 <|end_of_text|> is plain text here",
    "Wie eine architektonische Miniatur, die sich zusehends verändert.",
]


def _split(flat, offs, n):
    return [flat[offs[i]:offs[i + 1]].tolist() for i in range(n)]


@pytest.fixture(scope="module")
def reference():
    """A second encoder for long real text: tiktoken over quicktok's shipped ranks with Meta's regex
    (Meta's recipe, built here apart from the stage). It must reproduce the published ids first, so
    the comparisons below rest on them, not on the rank file agreeing with itself."""
    import tiktoken
    ranks, specials = read_quicktok_ranks("llama3")
    assert len(ranks) == 128000 and len(specials) == 256
    enc = tiktoken.Encoding("llama3-ref", pat_str=META_LLAMA3_PAT, mergeable_ranks=ranks, special_tokens=specials)
    for _, text, ids in LLAMA3_PUBLISHED:
        assert enc.encode_ordinary(text) == ids, text
    return enc


@pytest.fixture(scope="module")
def real_texts():
    _realpages.need()
    return [d["text"] for d in _realpages.sample_docs(0.5)]


def test_default_llama3_reproduces_published_ids():
    tok = load_tokenizer("llama3")
    assert tok.vocab_size == 128256 and tok.bos_id == 128000 and tok.eos_id == 128001
    texts = [t for _, t, _ in LLAMA3_PUBLISHED]
    flat, offs = tok.encode_batch(texts)
    for (source, text, ids), got in zip(LLAMA3_PUBLISHED, _split(flat, offs, len(texts))):
        assert got == ids, (source, text)
        assert tok.decode(got) == text
    _, specials = read_quicktok_ranks("llama3")
    assert {k: specials[k] for k in LLAMA3_PUBLISHED_SPECIALS} == LLAMA3_PUBLISHED_SPECIALS
    # Meta's test_encode: encode("This is a test sentence.", bos=True, eos=True), here through the stage
    batch = pa.table({"text": pa.array(["This is a test sentence."], pa.large_string())})
    out = Tokenize(keep_tokens=True, add_bos=True, add_eos=True).ensure_setup()(batch)
    assert out["tokens"].to_pylist() == [[128000, 2028, 374, 264, 1296, 11914, 13, 128001]]


def test_default_llama3_matches_reference_on_samples(reference):
    tok = load_tokenizer("llama3")
    flat, offs = tok.encode_batch(SAMPLES)
    for s, got in zip(SAMPLES, _split(flat, offs, len(SAMPLES))):
        assert got == reference.encode_ordinary(s), s
        assert tok.decode(got) == s


def test_default_llama3_matches_reference_on_real_pages(reference, real_texts):
    tok = load_tokenizer("llama3")
    flat, offs = tok.encode_batch(real_texts)
    assert offs[-1] > 10_000
    for i, s in enumerate(real_texts):
        assert flat[offs[i]:offs[i + 1]].tolist() == reference.encode_ordinary(s)


def test_quicktok_llama3_is_close_to_reference(reference, real_texts):
    """quicktok-v1 0.4.0 is fast but not byte-identical for Llama 3 (it is for cl100k); this pins how
    close it is, so the docstring's claim stays true and a fixed release shows up as a change."""
    qt = load_tokenizer("quicktok:llama3")
    texts = SAMPLES[:6] + real_texts
    flat, offs = qt.encode_batch(texts)
    same_docs = same_len = 0
    for i, s in enumerate(texts):
        ref = reference.encode_ordinary(s)
        got = flat[offs[i]:offs[i + 1]].tolist()
        same_docs += got == ref
        same_len += abs(len(got) - len(ref)) <= max(2, 3 * len(ref) // 100)  # counts within 3%
        assert qt.decode(got) == s  # lossless even where the split differs
    assert same_docs >= 0.9 * len(texts)
    assert same_len == len(texts)
    # the divergence found by this test: a word rank BPE never merges that far
    word = " architektonische"
    assert reference.encode_ordinary(word) != qt.encode(word)


def test_hf_tokenizer_json_backend(tmp_path, reference):
    path = write_hf_tokenizer_json(tmp_path / "tokenizer.json")
    tok = load_tokenizer(f"hf:{path}")
    assert parse_tokenizer_spec(str(path)) == ("hf", str(path))
    assert tok.eos_id == 128001 and tok.vocab_size == 128256
    texts = [t for _, t, _ in LLAMA3_PUBLISHED]
    flat, offs = tok.encode_batch(texts)
    assert _split(flat, offs, len(texts)) == [ids for _, _, ids in LLAMA3_PUBLISHED]
    flat, offs = tok.encode_batch(SAMPLES)
    for i, s in enumerate(SAMPLES):
        assert flat[offs[i]:offs[i + 1]].tolist() == reference.encode_ordinary(s), s


def test_stage_columns_and_separators():
    texts = ["Hello world.", "", None, "Second document, a little longer than the first one."]
    batch = pa.table({"id": ["a", "b", "c", "d"], "text": pa.array(texts, pa.large_string())})
    ref = load_tokenizer("llama3")
    plain = [ref.encode(t) if t else [] for t in texts]

    res = apply_stage(Tokenize(keep_tokens=True, add_bos=True, add_eos=True), batch)
    out = res.kept
    assert out.num_rows == 4 and res.rejected is None
    assert out.schema.field("n_tokens").type == pa.int32()
    assert out.schema.field("tokens").type == pa.list_(pa.uint32())
    toks = out["tokens"].to_pylist()
    for p, t, n in zip(plain, toks, out["n_tokens"].to_pylist()):
        assert n == len(t)
        assert t == ([128000] + p + [128001] if p else [])

    counts = Tokenize(add_eos=False).ensure_setup()(batch)
    assert "tokens" not in counts.column_names
    assert counts["n_tokens"].to_pylist() == [len(p) for p in plain]


def test_stage_replaces_stale_columns():
    batch = pa.table({"text": pa.array(["abc def"], pa.large_string()), "n_tokens": pa.array([999], pa.int32())})
    out = Tokenize().ensure_setup()(batch)
    assert out.column_names.count("n_tokens") == 1 and out["n_tokens"][0].as_py() == 3


def test_bad_options_fail_at_config_time(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown quicktok encoding"):
        parse_config({"stages": [{"tokenize": {"tokenizer": "gpt2-nope"}}]}, file="<t>")
    with pytest.raises(ConfigError, match="tokenizer.json not found"):
        parse_config({"stages": [{"tokenize": {"tokenizer": str(tmp_path / "missing.json")}}]}, file="<t>")
    with pytest.raises(ConfigError, match="begin-of-text"):
        parse_config({"stages": [{"tokenize": {"tokenizer": "cl100k_base", "add_bos": True}}]}, file="<t>")
    # tiktoken by name with an empty cache: refused, never downloaded
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    load_tokenizer.cache_clear()
    with pytest.raises(StageError, match="never downloads"):
        Tokenize(tokenizer="tiktoken:cl100k_base")
    cfg = parse_config({"stages": [{"tokenize": {"keep_tokens": True}}]}, file="<t>")
    assert cfg.stages[0].options == {"keep_tokens": True}


def test_tokens_are_vectorised_consistently_with_offsets():
    """The scatter that inserts separators must keep every document's body intact."""
    rng = np.random.default_rng(1)
    words = ["alpha", "beta", "gamma", "δέλτα", "ε", "  ", "\n"]
    texts = ["".join(rng.choice(words, size=int(k))) if k else "" for k in rng.integers(0, 40, 200)]
    batch = pa.table({"text": pa.array(texts, pa.large_string())})
    out = Tokenize(keep_tokens=True, add_bos=True).ensure_setup()(batch)
    ref = load_tokenizer("llama3")
    for t, toks in zip(texts, out["tokens"].to_pylist()):
        assert toks == ([128000] + ref.encode(t) + [128001] if t else [])
