"""A PyTorch data loader over a token stream (``RUN_DIR/mix/<name>``), for trainers.

:class:`PackedTokenDataset` is an ``IterableDataset`` that packs documents into fixed-length
sequences (default 8,192 tokens) and yields, per sequence:

- ``input_ids`` (int64 [L]), ``labels`` (int64 [L]): the next token, or ``-100`` where the
  next token belongs to another document (no prediction across documents) and on padding;
- ``position_ids`` (int64 [L]): restart at 0 at every document segment of the sequence;
- ``doc_ids`` (int32 [L]): segment number within the sequence (-1 on padding), from which
  :func:`block_causal_mask` builds the attention mask that stops attention at document
  boundaries;
- ``cu_seqlens`` (int32 [segments+1]): segment boundaries for flash-attention's varlen
  kernels (variable length: batch with :func:`collate_packed`, which flattens a batch into
  one ``cu_seqlens`` and gives ``max_seqlen``);
- ``slot``, ``index``: which shard of the data and which of its sequences this is (the
  loader's progress bookkeeping; see below).

Sharding: documents are split into ``world_size x num_workers`` contiguous *slots* of about
equal token counts; data-parallel rank ``r``'s DataLoader worker ``w`` reads one slot. Every
document belongs to exactly one slot and every token of a slot is emitted exactly once per
epoch (the last sequence of a slot is padded unless ``drop_last``): no overlap, no gaps.

Shuffling: within a slot, documents are permuted inside windows of ``shuffle_window``
documents and the windows are visited in a permuted order, with a new permutation each
epoch, all seeded by ``(seed, epoch, slot)``. It does the job of a seeded shuffle buffer while
keeping Parquet reads sequential; unlike a streaming reservoir it is a pure function of the
position, so the state to resume is a counter: sequence ``k`` of a slot is tokens
``[k*L, (k+1)*L)`` of the slot's (permuted) concatenation, found from ``n_tokens`` alone.

A batch holds consecutive sequences of one slot (one DataLoader worker), so a document longer
than ``seq_len`` spans neighbouring sequences of the same batch: with 8K sequences and web
documents (~1K tokens) a batch mixes dozens of documents; with short test sequences it may
hold one page (``tests/test_loader.py`` trains its tiny LM on 256-token sequences for that
reason).

Resume: :class:`PackedLoader` (a ``torch.utils.data.DataLoader``) records, in the training
process, how many sequences of each slot the trainer has received, and which worker gave the
last batch. ``loader.state_dict()`` is small JSON-able data; a new loader with
``load_state_dict(state)`` continues with exactly the next batch an uninterrupted run would
have given (same batches, bitwise), including the DataLoader's round-robin over workers,
which it restores by rotating the worker -> slot assignment. Resume needs the same stream,
``seq_len``, ``world_size``, ``num_workers``, batch size, seed and ``shuffle_window``.

Works on CPU; nothing here needs a GPU.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .tokenstream import TokenStream

IGNORE_INDEX = -100
_STATE_VERSION = 1


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in key])


class PackedTokenDataset(IterableDataset):
    """Fixed-length packed sequences from a token-stream folder (see the module docstring)."""

    def __init__(self, path: str | Path, *, seq_len: int = 8192, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle_window: int = 1024, drop_last: bool = False,
                 pad_id: int | None = None, epoch: int = 0, return_doc_index: bool = False):
        if seq_len < 1:
            raise ValueError("seq_len must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if shuffle_window < 0:
            raise ValueError("shuffle_window must be >= 0 (0: stream order)")
        self.path = str(path)
        self.seq_len, self.rank, self.world_size = seq_len, rank, world_size
        self.seed, self.shuffle_window, self.drop_last = seed, shuffle_window, drop_last
        self.epoch = epoch
        self.return_doc_index = return_doc_index
        ts = self._ts()
        self.pad_id = pad_id if pad_id is not None else (ts.tokenizer.get("eos_id") or 0)
        # progress, in the process that owns the training loop
        self._consumed: dict[int, int] = {}
        self._next_local = 0          # local slot the next batch comes from (worker rotation)
        self._num_workers = None      # set by PackedLoader; None: unknown / in-process (1)

    # -- pickling into DataLoader workers: re-open files there ----------------------------
    def __getstate__(self):
        d = dict(self.__dict__)
        d.pop("_stream", None)
        return d

    def _ts(self) -> TokenStream:
        ts = self.__dict__.get("_stream")
        if ts is None:
            ts = self._stream = TokenStream(self.path)
        return ts

    # -- layout -----------------------------------------------------------------------------
    def slot_bounds(self, num_workers: int) -> np.ndarray:
        """Document index where each of the ``world_size * num_workers`` slots starts (+ end)."""
        n_slots = self.world_size * max(1, num_workers)
        lengths = self._ts().lengths()
        cs = np.concatenate([[0], np.cumsum(lengths)])
        cuts = np.searchsorted(cs, cs[-1] * np.arange(n_slots + 1) / n_slots, side="left")
        cuts[0], cuts[-1] = 0, len(lengths)
        return np.maximum.accumulate(cuts)

    def _visit(self, slot: int, a: int, b: int, epoch: int) -> list[tuple[int, int, np.ndarray]]:
        """Windows of a slot in visiting order: ``(doc_start, doc_end, permutation)``."""
        w = self.shuffle_window or max(1, b - a)
        starts = list(range(a, b, w))
        if self.shuffle_window:
            order = _rng(self.seed, epoch, slot, 1).permutation(len(starts))
        else:
            order = np.arange(len(starts))
        out = []
        for k in order:
            s = starts[k]
            e = min(s + w, b)
            perm = _rng(self.seed, epoch, slot, 2, s).permutation(e - s) if self.shuffle_window else np.arange(e - s)
            out.append((s, e, perm))
        return out

    def sequences_in_slot(self, n_tokens: int) -> int:
        return n_tokens // self.seq_len if self.drop_last else -(-n_tokens // self.seq_len)

    def num_sequences(self, num_workers: int = 0) -> int:
        """Sequences this rank yields per epoch (all its workers together)."""
        W = max(1, num_workers)
        bounds = self.slot_bounds(W)
        lengths = self._ts().lengths()
        return sum(self.sequences_in_slot(int(lengths[bounds[s]:bounds[s + 1]].sum()))
                   for s in range(self.rank * W, (self.rank + 1) * W))

    # -- iteration ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        W = info.num_workers if info is not None else 1
        wid = info.id if info is not None else 0
        if self._num_workers is not None and max(1, self._num_workers) != W:
            raise RuntimeError(f"the loader state is for {self._num_workers} workers; this loader has {W}")
        local = (wid + self._next_local) % W
        slot = self.rank * W + local
        bounds = self.slot_bounds(W)
        a, b = int(bounds[slot]), int(bounds[slot + 1])
        start = self._consumed.get(slot, 0)
        in_process = info is None
        for idx, sample in self._iter_slot(slot, a, b, self.epoch, start):
            if in_process:   # iterated directly or with num_workers=0: this object is the trainer's
                self._consumed[slot] = idx + 1
            yield sample

    def _iter_slot(self, slot: int, a: int, b: int, epoch: int, start_seq: int):
        L = self.seq_len
        ts = self._ts()
        lengths = ts.lengths()
        windows = self._visit(slot, a, b, epoch)
        # token offset of every window in the slot's concatenation
        win_tokens = np.array([int(lengths[s:e].sum()) for s, e, _ in windows], dtype=np.int64)
        win_start = np.concatenate([[0], np.cumsum(win_tokens)])
        total = int(win_start[-1])
        n_seq = self.sequences_in_slot(total)
        if start_seq >= n_seq:
            return
        pos = start_seq * L                              # stream position of the next sequence
        wi = int(np.searchsorted(win_start, pos, side="right") - 1)
        buf_tok = np.zeros(0, np.int64)
        buf_doc = np.zeros(0, np.int64)
        buf_pos = int(win_start[wi])                     # stream position of buf[0]
        for k in range(start_seq, n_seq):
            need_end = min((k + 1) * L + 1, total)       # one token of look-ahead for the last label
            while buf_pos + len(buf_tok) < need_end:
                s, e, perm = windows[wi]
                toks, docs = self._window_tokens(ts, s, e, perm)
                buf_tok = np.concatenate([buf_tok, toks])
                buf_doc = np.concatenate([buf_doc, docs])
                wi += 1
            lo = k * L - buf_pos
            if lo > 0:                                    # drop what earlier sequences used
                buf_tok, buf_doc, buf_pos = buf_tok[lo:], buf_doc[lo:], buf_pos + lo
            yield k, self._make_sample(slot, k, buf_tok, buf_doc, min(L, total - k * L))

    @staticmethod
    def _window_tokens(ts: TokenStream, s: int, e: int, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat, offs = ts.read(s, e)
        lens = np.diff(offs)[perm]
        starts = offs[:-1][perm]
        # gather the permuted documents without a Python loop: token j of visit-doc i is flat[starts[i] + j]
        rep_starts = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        idx = np.arange(int(lens.sum()), dtype=np.int64) + rep_starts
        return flat[idx].astype(np.int64), np.repeat(perm.astype(np.int64) + s, lens)

    def _make_sample(self, slot: int, k: int, tok: np.ndarray, doc: np.ndarray, n: int) -> dict[str, Any]:
        L = self.seq_len
        t, d = tok[:n], doc[:n]
        nxt_t, nxt_d = tok[1:n + 1], doc[1:n + 1]
        labels = np.full(L, IGNORE_INDEX, np.int64)
        m = len(nxt_t)                                   # n, or n-1 at the very end of the slot
        same = nxt_d == d[:m]
        labels[:m][same] = nxt_t[same]
        starts = np.ones(n, bool)
        starts[1:] = d[1:] != d[:-1]
        seg_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        pos = np.arange(n) - seg_start
        seg = np.cumsum(starts) - 1
        cu = np.flatnonzero(starts).tolist() + [n]
        input_ids = np.full(L, self.pad_id, np.int64)
        input_ids[:n] = t
        position_ids = np.zeros(L, np.int64)
        position_ids[:n] = pos
        doc_ids = np.full(L, -1, np.int32)
        doc_ids[:n] = seg
        if n < L:                                        # padding is one more segment
            position_ids[n:] = np.arange(L - n)
            cu.append(L)
        out = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
               "position_ids": torch.from_numpy(position_ids), "doc_ids": torch.from_numpy(doc_ids),
               "cu_seqlens": torch.tensor(cu, dtype=torch.int32),
               "slot": torch.tensor(slot, dtype=torch.int64), "index": torch.tensor(k, dtype=torch.int64)}
        if self.return_doc_index:
            di = np.full(L, -1, np.int64)
            di[:n] = d
            out["doc_index"] = torch.from_numpy(di)
        return out

    # -- state ------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._consumed = {}
        self._next_local = 0

    def observe(self, batch: dict[str, Any]) -> None:
        """Record that the trainer received ``batch`` (PackedLoader calls this for you)."""
        slots = batch["slot"].reshape(-1).tolist()
        idxs = batch["index"].reshape(-1).tolist()
        for s, i in zip(slots, idxs):
            if i + 1 > self._consumed.get(s, 0):
                self._consumed[s] = i + 1
        W = self._num_workers or 1
        self._next_local = (slots[-1] - self.rank * W + 1) % W

    def state_dict(self) -> dict[str, Any]:
        return {"version": _STATE_VERSION, "path": self.path, "epoch": self.epoch, "seq_len": self.seq_len,
                "rank": self.rank, "world_size": self.world_size, "num_workers": self._num_workers or 0,
                "seed": self.seed, "shuffle_window": self.shuffle_window, "drop_last": self.drop_last,
                "consumed": {str(k): v for k, v in sorted(self._consumed.items())},
                "next_local": self._next_local}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in ("seq_len", "rank", "world_size", "seed", "shuffle_window", "drop_last"):
            if state.get(k) != getattr(self, k):
                raise ValueError(f"loader state has {k}={state.get(k)!r}, this loader has {getattr(self, k)!r}")
        self.epoch = int(state["epoch"])
        self._consumed = {int(k): int(v) for k, v in state["consumed"].items()}
        self._next_local = int(state["next_local"])
        self._num_workers = int(state["num_workers"])


class PackedLoader(DataLoader):
    """A DataLoader over a :class:`PackedTokenDataset` that tracks progress for exact resume.

    ``state_dict()`` / ``load_state_dict()`` delegate to the dataset after recording every batch
    the training loop received. When an epoch's iteration finishes, the next one starts at
    ``epoch + 1`` (iterating the dataset directly, call ``set_epoch`` yourself).
    """

    def __init__(self, dataset: PackedTokenDataset, *, batch_size: int = 1, num_workers: int = 0, **kw):
        kw.setdefault("collate_fn", collate_packed)
        if kw.get("in_order") is False:
            raise ValueError("exact resume needs in_order=True")
        if kw.get("persistent_workers"):
            raise ValueError("persistent_workers would keep the workers' epoch and progress stale; leave it off")
        super().__init__(dataset, batch_size=batch_size, num_workers=num_workers, **kw)
        if dataset._consumed and dataset._num_workers is not None and dataset._num_workers != num_workers:
            raise ValueError(f"the dataset is mid-epoch with num_workers={dataset._num_workers}, got {num_workers}")
        dataset._num_workers = num_workers

    def __iter__(self):
        ds: PackedTokenDataset = self.dataset
        epoch = ds.epoch
        for batch in super().__iter__():
            ds.observe(batch)
            yield batch
        ds.set_epoch(epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("num_workers", 0)) != self.num_workers:
            raise ValueError(f"loader state was saved with num_workers={state.get('num_workers')}, this loader has {self.num_workers}")
        self.dataset.load_state_dict(state)


def collate_packed(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack fixed-size fields; flatten ``cu_seqlens`` over the batch (flash-attn varlen layout:
    the batch is one long sequence of ``B*L`` tokens) and add ``max_seqlen``."""
    out = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "cu_seqlens"}
    L = samples[0]["input_ids"].shape[0]
    cus = [samples[0]["cu_seqlens"]] + [s["cu_seqlens"][1:] + i * L for i, s in enumerate(samples) if i]
    cu = torch.cat(cus).to(torch.int32)
    out["cu_seqlens"] = cu
    out["max_seqlen"] = int((cu[1:] - cu[:-1]).max()) if len(cu) > 1 else 0
    return out


def block_causal_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask ``[..., L, L]``: causal and within one document segment
    (``True`` = may attend), for ``torch.nn.functional.scaled_dot_product_attention``."""
    L = doc_ids.shape[-1]
    same = doc_ids.unsqueeze(-1) == doc_ids.unsqueeze(-2)
    causal = torch.ones(L, L, dtype=torch.bool, device=doc_ids.device).tril()
    return same & causal
