"""Per-(stage, shard) statistics. Merging is associative, from what is on disk.

The engine counts rows in/out, bytes of text in/out, seconds and drop reasons for
every stage on every batch; stages only name reasons. A shard's stats are
written as one JSON file per stage when the shard completes, so a resumed run
merges finished shards from disk and reports the whole run.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StageStats:
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    shards: int = 0

    def __add__(self, other: "StageStats") -> "StageStats":
        if other.stage != self.stage:
            raise ValueError(f"cannot add stats of {other.stage!r} to {self.stage!r}")
        return StageStats(
            stage=self.stage,
            rows_in=self.rows_in + other.rows_in,
            rows_out=self.rows_out + other.rows_out,
            bytes_in=self.bytes_in + other.bytes_in,
            bytes_out=self.bytes_out + other.bytes_out,
            seconds=self.seconds + other.seconds,
            dropped=dict(Counter(self.dropped) + Counter(other.dropped)),
            counters=dict(Counter(self.counters) + Counter(other.counters)),
            shards=self.shards + other.shards,
        )

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def docs_per_sec(self) -> float:
        """Documents per CPU-second: stage time is measured inside one worker process."""
        return self.rows_in / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return {
            "stage": self.stage, "rows_in": self.rows_in, "rows_out": self.rows_out,
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
            "seconds": round(self.seconds, 6), "dropped": dict(sorted(self.dropped.items())),
            "counters": dict(sorted(self.counters.items())), "shards": self.shards,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "StageStats":
        return cls(
            stage=d["stage"], rows_in=d.get("rows_in", 0), rows_out=d.get("rows_out", 0),
            bytes_in=d.get("bytes_in", 0), bytes_out=d.get("bytes_out", 0),
            seconds=d.get("seconds", 0.0), dropped=dict(d.get("dropped", {})),
            counters=dict(d.get("counters", {})), shards=d.get("shards", 0),
        )


def merge(stats: list[StageStats], order: list[str] | None = None) -> list[StageStats]:
    """Merge stats of the same stage; keep pipeline order when given."""
    acc: dict[str, StageStats] = {}
    for s in stats:
        acc[s.stage] = acc[s.stage] + s if s.stage in acc else StageStats.from_dict(s.to_dict())
    names = list(order or []) + [n for n in acc if n not in (order or [])]
    return [acc[n] for n in names if n in acc]


def merge_stats_dir(stats_dir: Path, order: list[str] | None = None) -> list[StageStats]:
    """Merge every per-shard stats file under ``stats_dir`` (``<stage>/<shard>.json``)."""
    parts = []
    for f in sorted(Path(stats_dir).glob("*/*.json")):
        with open(f) as fh:
            parts.append(StageStats.from_dict(json.load(fh)))
    return merge(parts, order)


def _fmt_n(n: float) -> str:
    return f"{n:,.0f}" if n == n else "-"


def format_table(stats: list[StageStats], *, cores: int | None = None, wall_seconds: float | None = None) -> str:
    """The funnel table: docs in/out per stage, drops by reason, bytes, seconds, docs/s per core."""
    head = f"{'stage':<22}{'docs in':>10}{'docs out':>10}{'kept %':>8}{'MB in':>9}{'MB out':>9}{'cpu s':>9}{'docs/s/core':>13}"
    lines = [head, "-" * len(head)]
    for s in stats:
        kept = 100.0 * s.rows_out / s.rows_in if s.rows_in else float("nan")
        lines.append(
            f"{s.stage:<22}{_fmt_n(s.rows_in):>10}{_fmt_n(s.rows_out):>10}"
            f"{(f'{kept:.1f}' if kept == kept else '-'):>8}"
            f"{s.bytes_in / 1e6:>9.2f}{s.bytes_out / 1e6:>9.2f}{s.seconds:>9.1f}"
            f"{(f'{s.docs_per_sec():.1f}' if s.seconds > 0 else '-'):>13}"
        )
        for reason, n in sorted(s.dropped.items(), key=lambda kv: -kv[1]):
            share = 100.0 * n / s.rows_in if s.rows_in else 0.0
            lines.append(f"    - {reason:<40}{n:>10,}  ({share:.1f}%)")
        for name, n in sorted(s.counters.items()):
            lines.append(f"    · {name:<40}{n:>10,}")
    if wall_seconds is not None:
        lines.append("-" * len(head))
        first = stats[0].rows_in if stats else 0
        last = stats[-1].rows_out if stats else 0
        per_core = first / wall_seconds / cores if (cores and wall_seconds) else float("nan")
        lines.append(f"wall {wall_seconds:.1f}s on {cores} core(s): {first:,} docs in, {last:,} out, "
                     f"{per_core:.1f} docs/s per core end to end")
    return "\n".join(lines)
