"""``configs/default.yaml`` as shipped, end to end, the way a user runs it (the CLI, from the
repository root, over the sample crawl): every step finishes, every stage of the config shows up
in the stats with a funnel that adds up, the planted junk and duplicates are gone, token streams
and the report are written.

This is the one test that runs every stage of the default pipeline (semantic dedup, perplexity
with the sample KenLM models that `make models` builds, tokenize, the mix); the other tests run
trimmed configs.
"""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from tests.conftest import REPO


def test_default_config_as_shipped(sample_crawl, tmp_path):
    cfg_file = REPO / "configs" / "default.yaml"
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    p = subprocess.run([sys.executable, "-m", "datapipe.cli", "run", str(cfg_file), "--input", *sample_crawl,
                        "--run-dir", str(run_dir), "--quiet"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]

    # every step of the plan has a completion marker per shard
    plan = json.loads((run_dir / "plan.json").read_text())
    for step in plan:
        assert any((run_dir / "_done" / step["step"]).iterdir()), step

    # every stage of the shipped config ran and is in the stats; the funnel adds up
    shipped = [next(iter(s)) for s in yaml.safe_load(cfg_file.read_text())["stages"]]
    stats = {s["stage"]: s for s in json.loads((run_dir / "stats.json").read_text())["stages"]}
    missing = [s for s in shipped if s not in stats]
    assert not missing, f"stages of configs/default.yaml absent from stats.json: {missing}"
    order = ["read", *shipped]
    for prev, cur in zip(order, order[1:]):
        assert stats[cur]["rows_in"] == stats[prev]["rows_out"], (prev, cur)
        assert stats[cur]["rows_in"] - stats[cur]["rows_out"] == sum(stats[cur]["dropped"].values()), cur

    rows = []
    for f in sorted((run_dir / "output").rglob("*.parquet")):
        rows.extend(pq.read_table(f, columns=["id", "url", "text", "n_tokens"]).to_pylist())
    assert len(rows) > 50
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["n_tokens"] > 0 for r in rows)

    # the sample crawl's plants: junk never survives; of a planted (near-)duplicate and its
    # original at most one does; no two outputs share a text
    pages = json.loads((Path(sample_crawl[0]).parent / "sample_crawl_details.json").read_text())["pages"]
    kept = {r["url"] for r in rows}
    junk = {"spam", "adult", "short", "blocklisted_domain", "image_png", "application_pdf"}
    assert not [u for u in kept if pages.get(u, {}).get("kind") in junk]
    pairs = [(u, d["dup_of"]) for u, d in pages.items() if d.get("kind") in ("exact_dup", "near_dup")]
    assert pairs
    assert not [(u, o) for u, o in pairs if u in kept and o in kept]
    assert len({r["text"] for r in rows}) == len(rows)

    # PII: the crawl's reader-contact paragraphs (an e-mail and a phone each) reach the pii stage,
    # which masks them and counts the masks by type; no kept text keeps a planted address (once
    # masked, the paragraphs are one repeated line, which dedup_lines then strips as boilerplate)
    pii = stats["pii"]["counters"]
    assert pii.get("masked:email", 0) >= 1 and pii.get("masked:phone", 0) >= 1, pii
    assert not [r["url"] for r in rows if re.search(r"can write to \S+@", r["text"])]

    # token streams for the trainer and the report
    manifest = json.loads((run_dir / "mix" / "default" / "manifest.json").read_text())
    assert sum(g["tokens"] for g in manifest["groups"].values()) == sum(r["n_tokens"] for r in rows)
    assert (run_dir / "report" / "index.html").stat().st_size > 10_000
