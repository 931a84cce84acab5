"""Synthetic curated outputs (run directories) for the mixture and loader tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

CURATED_SCHEMA = pa.schema([
    pa.field("id", pa.string()), pa.field("text", pa.large_string()), pa.field("source", pa.string()),
    pa.field("lid_lang", pa.string()), pa.field("quality_score", pa.float64()),
    pa.field("n_tokens", pa.int32()), pa.field("tokens", pa.list_(pa.uint32())),
])


def write_curated(run_dir: Path, docs_per_source: dict[str, int], *, n_files: int = 3, seed: int = 0,
                  min_len: int = 20, max_len: int = 300, vocab: int = 128000) -> dict[str, np.ndarray]:
    """A fake finished run: ``run_dir/output/*.parquet`` with ``tokens`` + ``n_tokens`` and a few
    grouping columns. Returns ``{id: tokens}``."""
    rng = np.random.default_rng(seed)
    out = Path(run_dir) / "output"
    out.mkdir(parents=True, exist_ok=True)
    langs = np.array(["en", "de", "fr", "zh"])
    by_id = {}
    rows = [[] for _ in range(n_files)]
    for src, n in docs_per_source.items():
        for j in range(n):
            ln = int(rng.integers(min_len, max_len + 1))
            toks = rng.integers(0, vocab, ln).astype(np.uint32)
            did = f"{src}-{j:06d}"
            by_id[did] = toks
            rows[j % n_files].append({"id": did, "text": f"doc {did}", "source": src,
                                      "lid_lang": str(langs[j % len(langs)]), "quality_score": float(rng.random()),
                                      "n_tokens": ln, "tokens": toks})
    for i, rs in enumerate(rows):
        cols = {f.name: [r[f.name] for r in rs] for f in CURATED_SCHEMA if f.name != "tokens"}
        offs = np.concatenate([[0], np.cumsum([len(r["tokens"]) for r in rs])]).astype(np.int32)
        flat = np.concatenate([r["tokens"] for r in rs]) if rs else np.zeros(0, np.uint32)
        t = pa.table({k: pa.array(v, CURATED_SCHEMA.field(k).type) for k, v in cols.items()})
        t = t.append_column("tokens", pa.ListArray.from_arrays(pa.array(offs), pa.array(flat, pa.uint32())))
        pq.write_table(t.select(CURATED_SCHEMA.names), out / f"shard{i}-00000.parquet")
    return by_id


def write_spec(path: Path, spec: dict) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
