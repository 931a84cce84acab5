"""The proxy language model of the mixture search: a small decoder-only transformer trained on
one candidate's token stream through :mod:`datapipe.loader`, and scored on held-out streams.

Why these sizes (preset ``cpu``: d=64, 2 layers, 4 heads, 256-token sequences, a 2,048-class
vocabulary, batches of 8, ~0.38 M parameters): a search of 16 candidates must finish within
20 minutes on 2 shared cores. This model trains at ~24 K tokens/s on an idle core (measured with
``torch.set_num_threads(1)``; ~5 K on this project's machine under its usual load), so the
default budget of 300 K tokens per candidate is ~12 s of training on an idle core; 16 candidates on
2 Ray workers took 887 s wall on the 2 shared cores at a load average of ~15-20
(``bench/mix_search.py``). 300 K tokens are a few passes over the sample crawl's ~100 K tokens:
enough for the proxy to learn each group's frequent words and short-range statistics, which is
what separates mixtures on a target. RegMix (Liu et al. 2024) found that the *ranking*
of mixtures by a tiny proxy holds at scale even when the proxy's absolute loss is poor, which is
all the search needs. Preset ``gpu`` (d=256, 4 layers, 512-token sequences, 8,192 classes, 20 M
tokens) is the same recipe for a GPU worker.

Vocabulary: Llama 3's 128 K-way softmax would dominate a model this small. The proxy predicts the
``vocab - 1`` most frequent ids plus one bucket for every other id; the ids are counted on the
held-out documents of every group, each group weighted equally (so no candidate's mixture and not
the target decide them), and the same map is used for every candidate, so losses compare.

Every candidate trains with the same seed (model initialisation and data order): common random
numbers, so the differences between candidates are the mixtures', not the seeds'.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

PRESETS = {
    "cpu": dict(d_model=64, layers=2, heads=4, seq_len=256, vocab=2048, batch_size=8, lr=2e-3, tokens=300_000),
    "gpu": dict(d_model=256, layers=4, heads=8, seq_len=512, vocab=8192, batch_size=32, lr=1e-3, tokens=20_000_000),
}


@dataclass(frozen=True)
class ProxyConfig:
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    seq_len: int = 256
    vocab: int = 2048          # classes: vocab-1 frequent ids + one bucket for the rest
    batch_size: int = 8
    lr: float = 2e-3
    tokens: int = 300_000      # training tokens per candidate (the stream's size)
    eval_tokens: int = 30_000  # most tokens scored per held-out set

    @classmethod
    def preset(cls, name: str, **overrides) -> "ProxyConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown proxy preset {name!r} (choose from {', '.join(PRESETS)})")
        return replace(cls(**PRESETS[name]), **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


class VocabMap:
    """Token id -> proxy class: the kept ids (sorted) get 0..K-1, every other id gets K."""

    def __init__(self, keep_ids: np.ndarray):
        self.keep = np.sort(np.asarray(keep_ids, dtype=np.int64))
        self.size = len(self.keep) + 1

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        j = np.clip(np.searchsorted(self.keep, ids), 0, max(0, len(self.keep) - 1))
        hit = self.keep[j] == ids if len(self.keep) else np.zeros(ids.shape, bool)
        return np.where(hit, j, len(self.keep))


def build_vocab(streams: list[str | Path], size: int) -> VocabMap:
    """The ``size - 1`` ids most frequent over ``streams``, each stream weighted equally."""
    from datapipe.tokenstream import TokenStream
    score: dict[int, float] = {}
    for s in streams:
        ts = TokenStream(s)
        flat, _ = ts.read(0, ts.num_docs)
        ids, counts = np.unique(flat, return_counts=True)
        freq = counts / max(1, counts.sum())
        for i, f in zip(ids.tolist(), freq.tolist()):
            score[i] = score.get(i, 0.0) + f
    ranked = sorted(score, key=lambda i: (-score[i], i))[: size - 1]
    return VocabMap(np.array(ranked, np.int64))


def _model(cfg: ProxyConfig):
    import torch
    import torch.nn.functional as F

    class Block(torch.nn.Module):
        def __init__(self, d: int, h: int):
            super().__init__()
            self.h = h
            self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
            self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
            self.ff = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))

        def forward(self, x, mask):
            B, L, D = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x + self.proj(a.transpose(1, 2).reshape(B, L, D))
            return x + self.ff(self.ln2(x))

    class ProxyLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = torch.nn.Embedding(cfg.vocab, cfg.d_model)
            self.pos = torch.nn.Embedding(cfg.seq_len, cfg.d_model)
            self.blocks = torch.nn.ModuleList(Block(cfg.d_model, cfg.heads) for _ in range(cfg.layers))
            self.norm = torch.nn.LayerNorm(cfg.d_model)
            self.out = torch.nn.Linear(cfg.d_model, cfg.vocab)

        def forward(self, ids, pos, doc_ids):
            from datapipe.loader import block_causal_mask
            x = self.tok(ids) + self.pos(pos)
            mask = block_causal_mask(doc_ids).unsqueeze(1)      # [B, 1, L, L]: within a document, causal
            for blk in self.blocks:
                x = blk(x, mask)
            return self.out(self.norm(x))

    return ProxyLM()


def _batch_loss(model, batch, vmap: VocabMap, device, reduction: str = "mean"):
    import torch
    from datapipe.loader import IGNORE_INDEX
    labels = batch["labels"].numpy()
    keep = labels != IGNORE_INDEX
    lab = np.full(labels.shape, IGNORE_INDEX, np.int64)
    lab[keep] = vmap(labels[keep])
    ids = torch.from_numpy(vmap(batch["input_ids"].numpy())).to(device)
    logits = model(ids, batch["position_ids"].to(device), batch["doc_ids"].to(device))
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(lab).reshape(-1).to(device),
                                             ignore_index=IGNORE_INDEX, reduction=reduction), int(keep.sum())


def resolve_device(device: str) -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def train_proxy(stream: str | Path, cfg: ProxyConfig, vmap: VocabMap, *, seed: int = 0, device: str = "cpu"):
    """Train a fresh proxy on one pass over ``stream`` (AdamW, warm-up then cosine decay); returns
    ``(model, {"steps", "train_tokens", "final_train_loss"})``."""
    import torch
    from datapipe.loader import PackedLoader, PackedTokenDataset
    torch.manual_seed(seed)
    model = _model(cfg).to(device)
    ds = PackedTokenDataset(stream, seq_len=cfg.seq_len, seed=seed, shuffle_window=256)
    loader = PackedLoader(ds, batch_size=cfg.batch_size)
    steps = max(1, math.ceil(ds.num_sequences() / cfg.batch_size))
    warm = max(1, steps // 20)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.1, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    model.train()
    n_tok, last = 0, float("nan")
    for step, b in enumerate(loader):
        loss, n = _batch_loss(model, b, vmap, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        n_tok += n
        last = float(loss.item())
        if not math.isfinite(last):
            raise FloatingPointError(f"proxy loss is {last} at step {step}")
    return model, {"steps": steps, "train_tokens": n_tok, "final_train_loss": last}


def evaluate(model, stream: str | Path, cfg: ProxyConfig, vmap: VocabMap, *, device: str = "cpu") -> float:
    """Mean next-token loss (nats per token, over the proxy's classes) on the first
    ``cfg.eval_tokens`` tokens of ``stream`` in stream order (the same tokens for every model)."""
    import torch
    from datapipe.loader import PackedLoader, PackedTokenDataset
    ds = PackedTokenDataset(stream, seq_len=cfg.seq_len, seed=0, shuffle_window=0)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for b in PackedLoader(ds, batch_size=cfg.batch_size):
            loss, n = _batch_loss(model, b, vmap, device, reduction="sum")
            total += float(loss.item())
            count += n
            if count >= cfg.eval_tokens:
                break
    model.train()
    if count == 0:
        raise ValueError(f"{stream}: no tokens to evaluate on")
    return total / count
