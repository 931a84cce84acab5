"""The label cache: append-only Parquet part files keyed by (document id, prompt id, model)."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import pyarrow as pa

CACHE_SCHEMA = pa.schema([
    ("id", pa.string()), ("prompt_id", pa.string()), ("model", pa.string()),
    ("status", pa.string()),            # ok | parse_error
    ("label", pa.string()), ("score", pa.float64()), ("parsed_by", pa.string()),
    ("raw", pa.large_string()), ("error", pa.string()), ("served_by", pa.string()),
    ("truncated", pa.bool_()), ("doc_tokens", pa.int32()), ("prompt_tokens", pa.int32()),
    ("completion_tokens", pa.int32()), ("requests", pa.int32()), ("latency_s", pa.float32()),
    ("labelled_at", pa.timestamp("s", tz="UTC")),
    # from the reply's logprobs (null without them): label probabilities as JSON {label: p},
    # the expected score, and the top-k probability the label tokens had before normalising
    ("probs", pa.string()), ("expected", pa.float64()), ("prob_mass", pa.float64()),
])


class LabelCache:
    """Append-only label store: ``<root>/part-<time>-<uuid>.parquet``, each written atomically.

    Keyed by (id, prompt_id, model). Where a key appears twice (two runs at once), an ``ok``
    row wins over a ``parse_error`` row. ``compact()`` merges the parts into one file.
    """

    def __init__(self, root: str | Path, *, flush_every: int = 64, flush_interval_s: float = 10.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self._buf: list[dict] = []
        self._last_flush = time.monotonic()
        self._rows: dict[tuple[str, str, str], dict] = {}
        self.parts_written = 0
        self._load()

    def _parts(self) -> list[Path]:
        return sorted(p for p in self.root.glob("part-*.parquet"))

    def _load(self) -> None:
        import pyarrow.parquet as pq
        for p in self._parts():
            for r in pq.read_table(p).to_pylist():
                self._put(r)

    def _put(self, r: dict) -> None:
        k = (r["id"], r["prompt_id"], r["model"])
        old = self._rows.get(k)
        if old is None or (old["status"] != "ok" and r["status"] == "ok"):
            self._rows[k] = r

    def get(self, doc_id: str, prompt_id: str, model: str) -> dict | None:
        return self._rows.get((doc_id, prompt_id, model))

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: dict) -> None:
        self._put(row)
        self._buf.append(row)
        if len(self._buf) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        from datapipe.rundir import write_parquet_atomic
        self._last_flush = time.monotonic()
        if not self._buf:
            return
        rows, self._buf = self._buf, []
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
        write_parquet_atomic(pa.Table.from_pylist(rows, schema=CACHE_SCHEMA), self.root / name)
        self.parts_written += 1

    def compact(self) -> None:
        """Rewrite all parts as one (written first, then the old parts removed: a crash in
        between leaves duplicates, which loading resolves)."""
        from datapipe.rundir import write_parquet_atomic
        self.flush()
        old = self._parts()
        if len(old) <= 1:
            return
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}-compact.parquet"
        write_parquet_atomic(pa.Table.from_pylist(list(self._rows.values()), schema=CACHE_SCHEMA), self.root / name)
        for p in old:
            p.unlink(missing_ok=True)
