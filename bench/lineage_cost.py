"""What lineage (``datapipe/lineage.py``) costs: bytes per document and CPU share.

    .venv/bin/python bench/lineage_cost.py [--docs 20000] [--work /tmp/datapipe-lineage-cost]
    .venv/bin/python bench/lineage_cost.py --from-run /tmp/vs20k/datapipe-vs_datatrove_en_dedup   # a finished run

``--from-run`` measures the run directory of an earlier run of the same config (e.g. the trimmed
leg of ``bench/vs_datatrove.py --docs 20000 --dedup``, which is this very pipeline on this input)
instead of running it again.

Runs ``bench/configs/vs_datatrove_en_dedup.yaml`` (the vs-datatrove pipeline: extract, lid.176,
Gopher, C4, FineWeb, MinHash) through the real runner on ``bench/soak.py``'s input (the
realpages repeated with perturbations, as ``bench/vs_datatrove.py`` uses), then prints: the
lineage's bytes per document read; and its CPU, measured by replaying what the engine and
the workflows did for lineage on this run's own drops (building each dropped row's record with
its scores, writing one part per engine batch, splitting them per shard, writing
``kept.parquet``) in this process, next to the CPU seconds the stages spent (stats.json). The
replay stands in for timing inside Ray workers; it does the same calls on the same rows.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "datapipe-lineage-cost"))
    ap.add_argument("--from-run", metavar="RUN_DIR", help="a finished run of vs_datatrove_en_dedup.yaml to measure")
    args = ap.parse_args(argv)
    import pyarrow as pa
    from datapipe import lineage
    from datapipe.config import load_config
    from datapipe.runner import load_stats, run_pipeline
    from datapipe.schema import SHARD_COL
    from soak import build_input
    cfg = load_config(REPO / "bench" / "configs" / "vs_datatrove_en_dedup.yaml")
    if args.from_run:
        rd, wall = Path(args.from_run), None
        if not (rd / "lineage").is_dir():
            ap.error(f"{rd}: no lineage/ folder (not a finished datapipe run directory)")
    else:
        work = Path(args.work)
        files = build_input(work / f"input-{args.docs}", args.docs)
        t0 = time.time()
        rd = run_pipeline(cfg, inputs=[str(f) for f in files], run_dir=work / "run", quiet=True, fresh=True).run_dir
        wall = time.time() - t0
    stats = load_stats(rd)
    docs = next(s for s in stats if s.stage == "read").rows_out
    stage_cpu = sum(s.seconds for s in stats if s.stage not in ("read", "write"))
    size = sum(f.stat().st_size for f in (rd / "lineage").rglob("*.parquet"))
    drops, kept = lineage.load(rd)

    # replay: the engine's per-batch records and parts, the per-shard split, kept.parquet
    tmp = Path(tempfile.mkdtemp(prefix="lineage-replay-"))
    batch = cfg.engine.batch_size
    spent = 0.0
    parts = 0
    for (step, stage), grp in _groups(drops):
        # the dropped rows as the stage saw them: id, url, reason and its score columns (setup, not timed)
        scores = [json.loads(s) if s else {} for s in grp["scores"].to_pylist()]
        cols = sorted({k for s in scores for k in s})
        t = grp.select(["id", "url", "reason"]).append_column(SHARD_COL, pa.array(["s"] * grp.num_rows))
        for c in cols:
            t = t.append_column(c, pa.array([s.get(c) for s in scores]))
        c0 = time.process_time()
        for i in range(0, t.num_rows, batch):
            lineage.write_part(tmp / "parts", f"{step}-{stage}-{i}",
                               [lineage.drop_records(t.slice(i, batch), stage=stage, score_columns=cols)])
            parts += 1
        spent += time.process_time() - c0
    c0 = time.process_time()
    lineage.commit_wave(tmp / "parts", tmp / "committed", ["s"])
    lineage.write_kept(tmp, sorted((rd / "output").rglob("*.parquet")))
    replay_total = spent + time.process_time() - c0
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"lineage cost: {docs:,} documents read, {drops.num_rows:,} dropped, {kept.num_rows:,} kept; "
          + (f"run wall {wall:.0f}s" if wall is not None else f"measured on {rd}"))
    print(f"  bytes: {size:,} in {len(list((rd / 'lineage').rglob('*.parquet')))} files = "
          f"{size / max(docs, 1):.1f} bytes per document")
    print(f"  CPU (replay): {replay_total:.2f}s for {parts} batch parts; stages "
          f"{stage_cpu:.1f}s -> {100 * replay_total / max(stage_cpu, 1e-9):.2f}% of stage CPU")
    return 0


def _groups(drops):
    import pyarrow.compute as pc
    keys = sorted({(a, b) for a, b in zip(drops["step"].to_pylist(), drops["stage"].to_pylist())})
    for step, stage in keys:
        yield (step, stage), drops.filter(pc.and_(pc.equal(drops["step"], step), pc.equal(drops["stage"], stage)))


if __name__ == "__main__":
    sys.exit(main())
