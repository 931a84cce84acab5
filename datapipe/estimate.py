"""``datapipe check --estimate``: the cost of a run projected from a sample of its records.

The streaming stages run in this process, one after the other as the engine chains them, on about
``sample_docs`` records read from up to eight input files spread over the input list; their CPU
time, the documents each keeps and the Parquet bytes of what survives are scaled by the input's
bytes over the bytes the sample took. Global passes (dedup, percentiles) are not sampled: they
count as keeping every document and their cost is not in the figure. What it measures is this
machine's single-core CPU time; a cluster divides the wall time, not the CPU-hours.
"""
from __future__ import annotations

import io
import math
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import pyarrow as pa

from .config import PipelineConfig
from .stage import StageError, Workflow, apply_stage, build_stage, get_stage_class
from .stats import StageStats

_REMOTE_SIZE_LOOKUPS = 200  # size lookups of remote files; the rest are taken as their mean


@dataclass
class StageEstimate:
    stage: str
    sample_in: int
    sample_out: int
    sample_cpu_s: float
    docs_in: float      # projected over the whole input
    docs_out: float
    cpu_hours: float
    sampled: bool = True  # False: a global pass, counted as keeping everything


@dataclass
class Estimate:
    """Projection of a run from a sample (see the module docstring)."""
    sample_docs: int
    sample_bytes: int
    sample_files: int
    input_bytes: int
    input_files: int
    stages: list[StageEstimate]
    output_bytes: float
    compression: str
    notes: list[str] = field(default_factory=list)

    @property
    def docs_total(self) -> float:
        return self.stages[0].docs_out if self.stages else 0.0

    @property
    def cpu_hours(self) -> float:
        return sum(s.cpu_hours for s in self.stages)

    def table(self) -> str:
        def n(x: float) -> str:
            return f"{x:,.0f}"
        lines = [f"estimate from {self.sample_docs:,} sampled document(s) in {self.sample_files} of {self.input_files} "
                 f"input file(s) ({fmt_bytes(self.sample_bytes)} of {fmt_bytes(self.input_bytes)} read): whole input "
                 f"~{n(self.docs_total)} documents",
                 f"{'stage':<22}{'docs in':>14}{'docs out':>14}{'kept':>8}{'CPU ms/doc':>12}{'CPU-hours':>12}"]
        for s in self.stages:
            kept = f"{s.docs_out / s.docs_in:.1%}" if s.docs_in else "-"
            cpu = f"{s.cpu_hours:.3g}" if s.sampled else "n/a"
            per = f"{1000 * s.sample_cpu_s / s.sample_in:.2f}" if s.sampled and s.sample_in else "n/a"
            lines.append(f"{s.stage:<22}{n(s.docs_in):>14}{n(s.docs_out):>14}{kept:>8}{per:>12}{cpu:>12}"
                         + ("" if s.sampled else "  (global pass: not sampled)"))
        lines.append(f"total ~{self.cpu_hours:.3g} CPU-hours; output ~{fmt_bytes(self.output_bytes)} "
                     f"({self.compression} Parquet), ~{n(self.stages[-1].docs_out if self.stages else 0)} documents")
        lines.extend(f"note: {x}" for x in self.notes)
        return "\n".join(lines)


def fmt_bytes(b: float) -> str:
    """``1.5 GiB`` / ``12.0 MiB``."""
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"



class QuietLogger:
    """Holds a logger at ERROR until :meth:`restore` (the check reports what its readers would log)."""

    def __init__(self, logger: str):
        import logging
        self.log = logging.getLogger(logger)
        self.level = self.log.level
        self.log.setLevel(logging.ERROR)

    def restore(self) -> None:
        self.log.setLevel(self.level)


def spread(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spread, first and last included."""
    if len(items) <= n:
        return list(items)
    step = (len(items) - 1) / (n - 1) if n > 1 else 0
    return list(dict.fromkeys(items[round(i * step)] for i in range(n)))


def input_bytes(files: list[str], *, remote_lookups: int = _REMOTE_SIZE_LOOKUPS) -> int:
    """Total size of the input files (remote sizes looked up for a sample, the rest taken as their mean)."""
    from .io._common import split_range_spec
    local, remote = [], []
    for f in files:
        real, start, end = split_range_spec(f)
        if start is not None and end is not None:
            local.append(end - start)
        elif "://" in real and not real.startswith("file://"):
            remote.append(real)
        else:
            try:
                local.append(os.path.getsize(real.removeprefix("file://")))
            except OSError:
                pass
    total = sum(local)
    if remote:
        import fsspec
        sizes = []
        for r in spread(remote, remote_lookups):
            try:
                fs, p = fsspec.core.url_to_fs(r)
                sizes.append(int(fs.size(p)))
            except Exception:  # noqa: BLE001 - a size we cannot see is left out of the mean
                pass
        if sizes:
            total += int(sum(sizes) / len(sizes) * len(remote))
    return total


#: a unit of the sample (a file, or the first byte range of a big crawl file) is read to its end
#: when it is at most this big, so its size is exactly what its records took
WHOLE_UNIT_BYTES = 64 << 20
#: big crawl files are sampled by their first record-aligned byte range of about this size
SAMPLE_RANGE_BYTES = 8 << 20


@dataclass
class Sample:
    """Records read for an estimate. ``docs`` (at most the quota per unit) go through the stages;
    ``read`` counts everything read, over ``bytes_read`` input bytes (whole units: exact)."""
    docs: Optional[pa.Table]
    read: StageStats
    bytes_read: int
    units: int
    exact: bool


def _sample_unit(cfg: PipelineConfig, f: str) -> tuple[str, Optional[int]]:
    """What to read of input ``f`` and its size: the file, or the first byte range of a big crawl file."""
    from .io import detect_format, split_crawl_files
    from .io._common import split_range_spec
    real, start, end = split_range_spec(f)
    if start is not None and end is not None:
        return f, end - start
    size = input_bytes([real]) or None
    if size and size > WHOLE_UNIT_BYTES and detect_format(f, cfg.input.format) == "warc":
        first = split_crawl_files([f], format=cfg.input.format, shard_bytes=SAMPLE_RANGE_BYTES, min_shards=1)[0]
        _, a, b = split_range_spec(first)
        if a is not None and b is not None:
            return first, b - a
    return f, size


def sample_records(cfg: PipelineConfig, files: list[str], n: int, *, max_files: int = 8) -> Sample:
    """About ``n`` records for the stages, from up to ``max_files`` input files spread over the list.
    Each unit (:func:`_sample_unit`) is read to its end when small enough, counting its records,
    so records per input byte are measured, not guessed."""
    from .io import read_shard
    picked = spread(files, max_files)
    quiet = QuietLogger("datapipe.io")  # damaged records are counted in the read row, not logged here
    quota = max(1, math.ceil(n / len(picked)))
    tables, total = [], StageStats(stage="read")
    used, exact = 0, True
    for f in picked:
        unit, size = _sample_unit(cfg, f)
        whole = size is not None and size <= WHOLE_UNIT_BYTES
        st = StageStats(stage="read")
        got = 0
        t0 = time.process_time()
        gen = read_shard([unit], input_cfg=cfg.input, batch_size=min(quota, cfg.engine.batch_size), stats=st)
        ended = True
        try:
            for b in gen:
                if got < quota:
                    tables.append(b.slice(0, quota - got))
                got += b.num_rows
                if got >= quota and not whole:
                    ended = next(gen, None) is None
                    break
        finally:
            gen.close()
        st.seconds = time.process_time() - t0
        if ended and size is not None:
            used += size
        else:  # a big file read in part: its reader's byte count (or its text) stands in
            used += st.bytes_in or st.bytes_out
            exact = False
        total = total + st
    quiet.restore()
    if not tables:
        return Sample(None, total, used, len(picked), exact)
    from .schema import conform
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except Exception:  # noqa: BLE001 - readers agree on the schema; be lenient with extra columns
        table = pa.concat_tables([conform(t) for t in tables], promote_options="permissive")
    return Sample(table, total, used, len(picked), exact)


def estimate_run(cfg: PipelineConfig, files: list[str], *, sample_docs: int = 200,
                 skip: Optional[set[int]] = None) -> Estimate:
    """Run the streaming stages on a sample (in this process) and project the whole run: every
    sampled document stands for ``docs_total / sampled`` documents of the input."""
    import pyarrow.parquet as pq
    smp = sample_records(cfg, files, sample_docs)
    total_in = input_bytes(files)
    comp = cfg.output.compression
    notes: list[str] = []
    if smp.docs is None or not smp.bytes_read:
        return Estimate(0, smp.bytes_read, smp.units, total_in, len(files), [], 0.0, comp, ["no record could be read"])
    per_byte = total_in / smp.bytes_read
    docs_total = smp.read.rows_out * per_byte
    factor = docs_total / smp.docs.num_rows  # input documents per sampled document
    stages = [StageEstimate("read", smp.read.rows_in, smp.read.rows_out, smp.read.seconds,
                            smp.read.rows_in * per_byte, docs_total, smp.read.seconds * per_byte / 3600)]
    batch = smp.docs
    for i, s in enumerate(cfg.stages):
        n_in = batch.num_rows
        if skip and i in skip:
            notes.append(f"stages[{i}].{s.name} could not be built: counted as keeping everything")
            continue
        if issubclass(get_stage_class(s.name), Workflow):
            stages.append(StageEstimate(s.name, n_in, n_in, 0.0, n_in * factor, n_in * factor, 0.0, sampled=False))
            continue
        try:
            st = build_stage(s.name, s.resolved()).ensure_setup()
        except StageError as e:
            notes.append(f"stages[{i}].{s.name} could not be built ({e}): counted as keeping everything")
            continue
        t0 = time.process_time()
        kept = []
        try:
            for off in range(0, n_in, cfg.engine.batch_size):
                kept.append(apply_stage(st, batch.slice(off, cfg.engine.batch_size)).kept)
        except StageError as e:
            # e.g. a column a global pass before it would have written
            notes.append(f"stages[{i}].{s.name} not sampled ({e}); later stages count as keeping everything")
            stages.append(StageEstimate(s.name, n_in, n_in, 0.0, n_in * factor, n_in * factor, 0.0, sampled=False))
            break
        dt = time.process_time() - t0
        batch = pa.concat_tables(kept) if kept else batch.slice(0, 0)
        stages.append(StageEstimate(s.name, n_in, batch.num_rows, dt, n_in * factor, batch.num_rows * factor,
                                    dt * factor / 3600))
    out_bytes = 0.0
    if batch.num_rows:
        buf = io.BytesIO()
        pq.write_table(batch, buf, compression=None if comp == "none" else comp)
        out_bytes = buf.tell() * factor
    if smp.docs.num_rows < 50:
        notes.append(f"only {smp.docs.num_rows} document(s) sampled: the figures are rough (--sample-docs raises it)")
    if not smp.exact:
        notes.append("a big non-crawl file was read in part: records per input byte are approximate")
    notes.append("CPU-hours are this machine's single-core time; a cluster divides the wall time, not the CPU-hours")
    return Estimate(smp.docs.num_rows, smp.bytes_read, smp.units, total_in, len(files), stages, out_bytes, comp, notes)
