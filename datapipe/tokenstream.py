"""Token streams on disk: the Parquet layout the mixture step writes and the loader reads,
plus the Megatron-LM ``.bin/.idx`` exporter.

A token stream is a folder::

    data/shard-00000.parquet   one row per document: id, group, source, epoch, n_tokens, tokens
    data/shard-00001.parquet   (rows globally shuffled across shards with the mix seed)
    manifest.json                      tokenizer (name, hash, vocab size, separators), totals per group,
                               shards with row and token counts, the mixture spec and plan
    megatron/<name>_text_document.{bin,idx}   with ``output.megatron: true`` (or export-megatron)

Columns: ``id`` (string, the curated document id; a document repeated across epochs appears
once per epoch), ``group`` (mixture group), ``source``, ``epoch`` (int32, which repetition of
the document this row is, 0-based), ``n_tokens`` (int32), ``tokens`` (``list<uint32>``).
Plain Parquet under ``data/`` (so ``pq.read_table(dir / "data")`` works with the manifest
beside it): pyarrow, ``datasets.load_dataset("parquet", data_files=...)``, DuckDB and Ray
Data read it without datapipe.

Megatron export (:func:`export_megatron`) writes Megatron-LM's ``MMapIndexedDataset``
format (``megatron/core/datasets/indexed_dataset.py``): ``PREFIX.bin`` holds the tokens of
every document back to back (``uint16`` when the vocabulary has fewer than 65,500 ids, else
``int32``, Megatron's ``DType.optimal_dtype``); ``PREFIX.idx`` is ``b"MMIDIDX\\x00\\x00"``,
``<Q version=1>``, ``<B dtype code>``, ``<Q sequence count>``, ``<Q document count>``, then
int32 sequence lengths, int64 byte pointers and int64 document indices ``[0, 1, ..., N]``
(one sequence per document, as ``tools/preprocess_data.py`` writes without sentence
splitting).
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"
FORMAT_VERSION = 1

STREAM_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("group", pa.string()),
    pa.field("source", pa.string()),
    pa.field("epoch", pa.int32()),
    pa.field("n_tokens", pa.int32()),
    pa.field("tokens", pa.list_(pa.uint32())),
])


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.parquet"


def list_arrays(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``list<uint32>`` column -> ``(flat uint32 values, int64 offsets)`` without a Python loop."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    col = col.cast(pa.large_list(pa.uint32()))
    offsets = np.asarray(col.offsets, dtype=np.int64)
    values = np.asarray(col.values, dtype=np.uint32)
    if offsets[0] != 0:  # a sliced array: rebase
        values = values[offsets[0]:offsets[-1]]
        offsets = offsets - offsets[0]
    return values, offsets


class TokenStream:
    """Read-only view of a token-stream folder: per-document lengths and token ranges.

    Documents are numbered globally in shard order (the order of the manifest's shard list).
    ``read(a, b)`` returns the tokens of documents ``[a, b)`` reading only the Parquet row
    groups that hold them.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mf = self.path / MANIFEST
        if mf.is_file():
            self.manifest = json.loads(mf.read_text())
            self.files = [self.path / s["file"] for s in self.manifest["shards"]]
        else:  # a folder of shards without a manifest (written by another tool)
            self.manifest = {}
            self.files = sorted(self.path.glob("data/*.parquet")) or sorted(self.path.glob("*.parquet"))
        if not self.files:
            raise FileNotFoundError(f"no token-stream shards in {self.path}")
        self._pf: dict[int, pq.ParquetFile] = {}
        rows, rg_starts = [], []
        for i, f in enumerate(self.files):
            md = pq.ParquetFile(f).metadata
            rows.append(md.num_rows)
            starts = np.zeros(md.num_row_groups + 1, dtype=np.int64)
            np.cumsum([md.row_group(j).num_rows for j in range(md.num_row_groups)], out=starts[1:])
            rg_starts.append(starts)
        self.file_rows = np.asarray(rows, dtype=np.int64)
        self.file_start = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(self.file_rows, out=self.file_start[1:])
        self._rg_starts = rg_starts
        self._lengths: np.ndarray | None = None

    @property
    def num_docs(self) -> int:
        return int(self.file_start[-1])

    @property
    def tokenizer(self) -> dict:
        return self.manifest.get("tokenizer", {})

    def lengths(self) -> np.ndarray:
        """``n_tokens`` of every document (int64), read once from the small ``n_tokens`` column."""
        if self._lengths is None:
            parts = [pq.read_table(f, columns=["n_tokens"])["n_tokens"].to_numpy().astype(np.int64)
                     for f in self.files]
            self._lengths = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return self._lengths

    def _file(self, i: int) -> pq.ParquetFile:
        pf = self._pf.get(i)
        if pf is None:
            pf = self._pf[i] = pq.ParquetFile(self.files[i])
        return pf

    def read(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of documents ``[a, b)``: ``(flat uint32, int64 offsets of length b-a+1)``."""
        vals, offs = [], [np.zeros(1, np.int64)]
        base = 0
        fa = int(np.searchsorted(self.file_start, a, side="right") - 1)
        while a < b:
            f0 = int(self.file_start[fa])
            lo, hi = a - f0, min(b, int(self.file_start[fa + 1])) - f0
            starts = self._rg_starts[fa]
            g0 = int(np.searchsorted(starts, lo, side="right") - 1)
            g1 = int(np.searchsorted(starts, hi, side="left"))
            t = self._file(fa).read_row_groups(list(range(g0, g1)), columns=["tokens"])
            col = t["tokens"].slice(lo - int(starts[g0]), hi - lo)
            v, o = list_arrays(col)
            vals.append(v)
            offs.append(o[1:] + base)
            base += int(o[-1])
            a = f0 + hi
            fa += 1
        return (np.concatenate(vals) if vals else np.zeros(0, np.uint32)), np.concatenate(offs)


# ---------------------------------------------------------------------------
# Megatron-LM MMapIndexedDataset

MEGATRON_INDEX_HEADER = b"MMIDIDX\x00\x00"
#: Megatron's DType codes
MEGATRON_DTYPE_CODES = {np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5,
                        np.float64: 6, np.float32: 7, np.uint16: 8}


def megatron_dtype(vocab_size: int | None):
    """Megatron's ``DType.optimal_dtype``: uint16 below 65,500 ids, else int32."""
    return np.uint16 if vocab_size is not None and vocab_size < 65500 else np.int32


def export_megatron(stream_dir: str | Path, prefix: str | Path | None = None, *,
                    vocab_size: int | None = None) -> tuple[Path, Path]:
    """Write ``PREFIX.bin`` / ``PREFIX.idx`` (Megatron ``MMapIndexedDataset``) from a token stream.

    Documents keep the stream's (shuffled) order; one sequence per document. Default prefix:
    ``<stream_dir>/megatron/<folder name>_text_document`` (Megatron's naming). Written
    through temporary names and renamed, so a reader never sees a partial pair.
    """
    ts = TokenStream(stream_dir)
    vocab_size = vocab_size or ts.tokenizer.get("vocab_size")
    if vocab_size is None:
        raise ValueError("vocab size unknown (no manifest): pass vocab_size=")
    dtype = megatron_dtype(vocab_size)
    if prefix is None:
        prefix = Path(stream_dir) / "megatron" / f"{Path(stream_dir).resolve().name}_text_document"
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    bin_path, idx_path = Path(f"{prefix}.bin"), Path(f"{prefix}.idx")
    tmp_bin, tmp_idx = bin_path.with_name(f".{bin_path.name}.tmp"), idx_path.with_name(f".{idx_path.name}.tmp")
    lengths = []
    with open(tmp_bin, "wb") as fh:
        for f in ts.files:
            pf = pq.ParquetFile(f)
            for rg in range(pf.metadata.num_row_groups):
                vals, offs = list_arrays(pf.read_row_group(rg, columns=["tokens"])["tokens"])
                if vals.size and int(vals.max()) >= vocab_size:
                    raise ValueError(f"token id {int(vals.max())} >= vocab size {vocab_size} in {f}")
                fh.write(vals.astype(dtype).tobytes(order="C"))
                lengths.append(np.diff(offs))
    seq_len = np.concatenate(lengths).astype(np.int32) if lengths else np.zeros(0, np.int32)
    itemsize = np.dtype(dtype).itemsize
    pointers = np.zeros(len(seq_len), dtype=np.int64)
    if len(seq_len) > 1:
        np.cumsum(seq_len[:-1].astype(np.int64) * itemsize, out=pointers[1:])
    doc_idx = np.arange(len(seq_len) + 1, dtype=np.int64)
    with open(tmp_idx, "wb") as fh:
        fh.write(MEGATRON_INDEX_HEADER)
        fh.write(struct.pack("<Q", 1))
        fh.write(struct.pack("<B", MEGATRON_DTYPE_CODES[dtype]))
        fh.write(struct.pack("<Q", len(seq_len)))
        fh.write(struct.pack("<Q", len(doc_idx)))
        fh.write(seq_len.tobytes(order="C"))
        fh.write(pointers.tobytes(order="C"))
        fh.write(doc_idx.tobytes(order="C"))
    os.replace(tmp_bin, bin_path)
    os.replace(tmp_idx, idx_path)
    return bin_path, idx_path
