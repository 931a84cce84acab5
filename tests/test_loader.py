"""The trainer's loader: exactly-once coverage across ranks x workers, what a packed sample
holds, bitwise-identical resume (also after SIGKILL), and a tiny causal LM that learns from
tokens the pipeline made out of real pages (and is scored on pages it never trained on)."""
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from datapipe.loader import IGNORE_INDEX, PackedLoader, PackedTokenDataset, block_causal_mask, collate_packed
from datapipe.tokenstream import TokenStream
from datapipe.mix import run_mix
from tests import _realpages
from tests._mixdata import write_curated, write_spec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stream")
    write_curated(root / "run", {"a": 90, "b": 60}, min_len=3, max_len=300, vocab=5000)
    spec = write_spec(root / "s.yaml", {"name": "s", "max_epochs": 1.0,
                                        "groups": [{"name": "all", "where": {}, "weight": 1}],
                                        "output": {"max_rows_per_shard": 40, "row_group_rows": 16}})
    run_mix(root / "run", spec)
    return root / "run" / "mix" / "s"


def _all_docs(path):
    ts = TokenStream(path)
    flat, offs = ts.read(0, ts.num_docs)
    return [flat[offs[i]:offs[i + 1]] for i in range(ts.num_docs)]


def test_exactly_once_across_2_ranks_x_2_workers(stream):
    docs = _all_docs(stream)
    assert len(TokenStream(stream).files) >= 3            # several shards, several row groups
    pieces: dict[int, list] = {}
    n_real = 0
    for rank in range(2):
        ds = PackedTokenDataset(stream, seq_len=128, rank=rank, world_size=2, seed=5, shuffle_window=16,
                                return_doc_index=True)
        loader = PackedLoader(ds, batch_size=3, num_workers=2)
        n_batches_seqs = 0
        for batch in loader:
            n_batches_seqs += batch["input_ids"].shape[0]
            for ids, di in zip(batch["input_ids"].numpy(), batch["doc_index"].numpy()):
                n_real += int((di >= 0).sum())
                # a document's pieces appear in order within and across sequences of its slot
                for d in np.unique(di[di >= 0]):
                    pieces.setdefault(int(d), []).append(ids[di == d])
        assert n_batches_seqs == ds.num_sequences(2)
    assert n_real == sum(len(d) for d in docs)           # no gaps, no duplicates
    assert sorted(pieces) == list(range(len(docs)))
    for i, d in enumerate(docs):
        assert np.array_equal(np.concatenate(pieces[i]), d), i


def test_packed_sample_fields(stream):
    ds = PackedTokenDataset(stream, seq_len=100, seed=1, shuffle_window=8, return_doc_index=True)
    samples = list(ds)
    assert len(samples) == ds.num_sequences()
    padded = 0
    for s in samples:
        ids, lab, pos, seg, di, cu = (s[k].numpy() for k in ("input_ids", "labels", "position_ids", "doc_ids", "doc_index", "cu_seqlens"))
        assert ids.shape == lab.shape == pos.shape == (100,)
        real = di >= 0
        n = int(real.sum())
        assert real[:n].all() and not real[n:].any()      # padding only at the end
        padded += n < 100
        assert (lab[n:] == IGNORE_INDEX).all() and (ids[n:] == ds.pad_id).all()
        # labels: the next token of the same document, never across documents
        for i in range(n - 1):
            assert lab[i] == (ids[i + 1] if di[i + 1] == di[i] else IGNORE_INDEX)
        starts = np.r_[True, di[1:n] != di[:n - 1]]
        assert (pos[:n][starts] == 0).all() and (np.diff(pos[:n])[~starts[1:]] == 1).all()
        assert cu.tolist() == np.flatnonzero(starts).tolist() + [n] + ([100] if n < 100 else [])
        assert (seg[:n] == np.cumsum(starts) - 1).all() and (seg[n:] == -1).all()
    assert padded == 1                                   # only the slot's last sequence
    # the last label of a sequence looks ahead into the next one when the document continues
    a, b = samples[0], samples[1]
    if a["doc_index"][-1] == b["doc_index"][0]:
        assert a["labels"][-1] == b["input_ids"][0]
    else:
        assert a["labels"][-1] == IGNORE_INDEX
    # the mask: causal, within a segment
    m = block_causal_mask(samples[0]["doc_ids"])
    seg = samples[0]["doc_ids"]
    i, j = torch.meshgrid(torch.arange(100), torch.arange(100), indexing="ij")
    assert torch.equal(m, (seg[:, None] == seg[None, :]) & (j <= i))
    # collate: flash-attn varlen layout over the batch
    batch = collate_packed(samples[:3])
    assert batch["input_ids"].shape == (3, 100)
    cu = batch["cu_seqlens"]
    assert cu[0] == 0 and cu[-1] == 300 and (cu[1:] > cu[:-1]).all()
    assert batch["max_seqlen"] == int((cu[1:] - cu[:-1]).max())


def test_shuffle_is_seeded_and_changes_per_epoch(stream):
    def order(seed, epoch, window=16):
        ds = PackedTokenDataset(stream, seq_len=64, seed=seed, epoch=epoch, shuffle_window=window, return_doc_index=True)
        seq = [int(d) for s in ds for d in s["doc_index"].tolist() if d >= 0]
        return [d for i, d in enumerate(seq) if i == 0 or seq[i - 1] != d]   # visiting order of documents

    e0 = order(1, 0)
    assert e0 == order(1, 0)
    assert e0 != order(1, 1) and e0 != order(2, 0)
    assert sorted(set(e0)) == sorted(set(order(1, 1)))
    assert order(1, 0, window=0) == list(range(len(e0)))   # window 0: stream order


def _run(stream, num_workers, *, stop=None, state=None, epochs=1, batch_size=3):
    ds = PackedTokenDataset(stream, seq_len=96, rank=1, world_size=2, seed=11, shuffle_window=16)
    loader = PackedLoader(ds, batch_size=batch_size, num_workers=num_workers)
    if state is not None:
        loader.load_state_dict(json.loads(json.dumps(state)))    # through JSON, as a checkpoint would
    got = []
    while ds.epoch < epochs:
        for batch in loader:
            got.append(batch)
            if stop is not None and len(got) == stop:
                return got, loader.state_dict()
    return got, loader.state_dict()


def _same(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], torch.Tensor):
                assert torch.equal(x[k], y[k]), k
            else:
                assert x[k] == y[k], k


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_is_bitwise_identical(stream, num_workers):
    full, _ = _run(stream, num_workers, epochs=2)
    per_epoch = len(full) // 2
    for stop in (1, per_epoch // 2 + 1, per_epoch - 1, per_epoch + 3):
        head, state = _run(stream, num_workers, stop=stop, epochs=2)
        assert len(head) == stop
        tail, _ = _run(stream, num_workers, state=state, epochs=2)
        _same(head + tail, full)
    with pytest.raises(ValueError, match="num_workers"):
        _run(stream, 1 if num_workers else 2, state=state)


CHILD = r"""
import hashlib, json, os, sys
sys.path.insert(0, {repo!r})
from datapipe.loader import PackedLoader, PackedTokenDataset
ds = PackedTokenDataset({path!r}, seq_len=96, rank=1, world_size=2, seed=11, shuffle_window=16)
loader = PackedLoader(ds, batch_size=3, num_workers=2)
with open({log!r}, "a") as log:
    for i, batch in enumerate(loader):
        h = hashlib.sha1(b"".join(batch[k].numpy().tobytes() for k in sorted(batch) if hasattr(batch[k], "numpy"))).hexdigest()
        log.write(json.dumps({{"step": i, "hash": h, "state": loader.state_dict()}}) + "\n")
        log.flush()
        os.fsync(log.fileno())
        if i >= {slow_after}:
            import time; time.sleep(0.2)      # give the parent time to kill us mid-epoch
"""


def _hash(batch):
    return hashlib.sha1(b"".join(batch[k].numpy().tobytes() for k in sorted(batch) if hasattr(batch[k], "numpy"))).hexdigest()


def test_sigkill_mid_epoch_then_resume(stream, tmp_path):
    full, _ = _run(stream, 2)
    log = tmp_path / "steps.jsonl"
    code = CHILD.format(repo=str(REPO), path=str(stream), log=str(log), slow_after=4)
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= 7:
            break
        if proc.poll() is not None:
            pytest.fail(f"child exited early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)                    # workers die with it (they watch the parent)
    proc.wait()
    lines = [json.loads(l) for l in log.read_text().splitlines() if l.endswith("}")]
    assert 7 <= len(lines) < len(full)
    assert [l["hash"] for l in lines] == [_hash(b) for b in full[:len(lines)]]
    tail, _ = _run(stream, 2, state=lines[-1]["state"])
    assert [l["hash"] for l in lines] + [_hash(b) for b in tail] == [_hash(b) for b in full]


# ---------------------------------------------------------------------------
# a real client: a tiny causal LM learns from tokens the pipeline made from real pages

class TinyLM(torch.nn.Module):
    def __init__(self, vocab: int, seq_len: int, d: int = 64, heads: int = 4, layers: int = 2):
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Embedding(seq_len, d)
        self.blocks = torch.nn.ModuleList(torch.nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True,
                                                                          norm_first=True) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(d)
        self.out = torch.nn.Linear(d, vocab)

    def forward(self, ids, pos, doc_ids):
        x = self.tok(ids) + self.pos(pos)
        allowed = block_causal_mask(doc_ids)                       # [B, L, L], True = may attend
        heads = self.blocks[0].self_attn.num_heads
        mask = (~allowed).repeat_interleave(heads, dim=0)         # nn.Transformer: True = blocked
        for blk in self.blocks:
            x = blk(x, src_mask=mask)
        return self.out(self.norm(x))


def test_tiny_causal_lm_loss_goes_down_on_held_out_real_pages(tmp_path):
    """Trained on some real pages, evaluated on others it never saw (before and after training)."""
    from datapipe.stage import apply_stage
    from stages.tokenize import Tokenize
    docs = _realpages.sample_docs(0.5)
    # held out: every fourth distinct page, with any re-crawl of it (the sets hold a few copies
    # of one page, recognised by their opening), so no evaluation text was trained on
    openings = list(dict.fromkeys(d["text"][:200] for d in docs))
    held = set(openings[3::4])
    split = ["held_out" if d["text"][:200] in held else "train" for d in docs]
    batch = pa.table({"id": [d["id"] for d in docs], "text": pa.array([d["text"] for d in docs], pa.large_string()),
                      "source": split, "url": [d["url"] for d in docs]})
    curated = apply_stage(Tokenize(), batch).kept                 # the pipeline's tokenize stage
    run = tmp_path / "run"
    (run / "output").mkdir(parents=True)
    pq.write_table(curated, run / "output" / "realpages-00000.parquet")
    (run / "config.yaml").write_text("stages:\n  - tokenize: {}\n")
    plans = {}
    for part in ("train", "held_out"):
        spec = write_spec(tmp_path / f"{part}.yaml", {"name": part, "max_epochs": 1.0,
                                                      "groups": [{"name": "web", "where": {"source": part},
                                                                  "weight": 1}]})
        plans[part] = run_mix(run, spec)
    assert plans["train"].total_tokens > 20_000 and plans["held_out"].total_tokens > 4_000
    stream_dir, held_dir = run / "mix" / "train", run / "mix" / "held_out"
    train_ids = set(pq.read_table(stream_dir / "data", columns=["id"])["id"].to_pylist())
    held_ids = set(pq.read_table(held_dir / "data", columns=["id"])["id"].to_pylist())
    assert train_ids and held_ids and not train_ids & held_ids

    # the LM's vocabulary: the 2,047 most frequent ids of the training pages plus one bucket for
    # the rest (a 128K softmax is needless for a smoke test and slow on a shared 2-core machine)
    ts = TokenStream(stream_dir)
    flat, _ = ts.read(0, ts.num_docs)
    ids_, counts = np.unique(flat, return_counts=True)
    keep_ids = np.sort(ids_[np.argsort(-counts, kind="stable")[:2047]])
    V = len(keep_ids) + 1

    def remap(t):
        a = t.numpy()
        j = np.clip(np.searchsorted(keep_ids, a), 0, len(keep_ids) - 1)
        return torch.from_numpy(np.where(keep_ids[j] == a, j, V - 1))

    def loss_of(model, b):
        labels = b["labels"].clone()
        keep = labels != IGNORE_INDEX
        labels[keep] = remap(labels[keep])
        logits = model(remap(b["input_ids"]), b["position_ids"], b["doc_ids"])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=IGNORE_INDEX)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        # sequences long enough to hold several documents, so that a batch is not one page
        L = 256
        model = TinyLM(V, L)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = PackedLoader(PackedTokenDataset(stream_dir, seq_len=L, seed=0), batch_size=4)
        # evaluation batches: the held-out pages, the same before and after
        held_out = list(itertools.islice(PackedLoader(PackedTokenDataset(held_dir, seq_len=L, seed=99),
                                                      batch_size=4), 4))
        assert len(held_out) == 4

        def evaluate():
            with torch.no_grad():
                return float(np.mean([loss_of(model, b).item() for b in held_out]))

        before = evaluate()
        steps = 0
        while steps < 40:
            for b in loader:
                loss = loss_of(model, b)
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
                assert np.isfinite(loss.item())
                if steps == 40:
                    break
        after = evaluate()
    finally:
        torch.set_num_threads(threads)
    print(f"\nheld-out loss before {before:.2f}, after 40 steps {after:.2f}")
    assert after < before - 1.0, (before, after)
