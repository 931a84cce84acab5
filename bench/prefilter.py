"""Does ``prefilter_lid`` change what the default pipeline keeps? Every realpages set, two language sets.

    .venv/bin/python bench/prefilter.py [--work /tmp/datapipe-prefilter] [--variants default multi]
        [--report-only]

The streaming stages of ``configs/default.yaml`` up to and including its filters (``url_filter``
... ``nsfw_words``, the step before the first dedup workflow) run through datapipe's CLI
(``datapipe run``, Ray engine, the config's own engine settings) over the five
``../shared/data/warc/realpages/*.warc.gz`` sets (one shard each), once without ``prefilter_lid``
and once with it (where the config places it, else first), wanting exactly the languages the
``langid`` stage keeps.
Two language sets (configs/ has no multilingual default):

- ``default``: ``langid`` as configs/default.yaml ships it (en, de, fr, es, zh, ru >= 0.65);
- ``multi``: every language of the realpages sets, ``MULTI`` below, each >= 0.65.

Per set it prints pages, documents kept without / with the pre-filter, documents kept only
without (lost) / only with (gained), the difference as % of the documents kept without, and
the CPU seconds inside the step's stages (read included; the engine's per-stage CPU counters,
per shard) each way with docs per CPU-second. Each run's process-tree CPU (Ray start-up
included) and wall time are printed under the table. Lost documents are listed with the
pre-filter's language and score. The last line says whether every set stays under 0.5%.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _measure import datapipe_cli, datapipe_env, run_measured  # noqa: E402

REALPAGES = ROOT / ".." / "shared" / "data" / "warc" / "realpages"
DEFAULT = ROOT / "configs" / "default.yaml"
#: every language the ``langid`` stage (lid.176 + CLD2) gives a score >= 0.65 on at least one of
#: the 1,598 extracted realpages texts; pages per language: de 703, en 523, zh 102, es 51, fr 29,
#: la 26, pl 24, pt 11, ja 10, id 9, it 7, tr 5, ru 3, ar 3, ko 2, fa 2, ur 2, hi 2, fi 2,
#: cs 1, hu 1, no 1, bn 1
MULTI = ["de", "en", "zh", "es", "fr", "la", "pl", "pt", "ja", "id", "it", "tr", "ru", "ar", "ko", "fa", "ur",
         "hi", "fi", "cs", "hu", "no", "bn"]
THRESHOLD = 0.5  # % of kept documents the pre-filter may change on every set to become the default


def filter_stages(cfg: dict) -> list[dict]:
    """The default config's stages up to and including nsfw_words (its filters, before dedup)."""
    out = []
    for entry in cfg["stages"]:
        out.append(entry)
        if next(iter(entry)) == "nsfw_words":
            return out
    raise SystemExit(f"{DEFAULT}: no nsfw_words stage; the filters' end is unknown")


def make_config(work: Path, variant: str, prefilter: bool) -> Path:
    cfg = yaml.safe_load(DEFAULT.read_text())
    shipped = [next(iter(e)) for e in filter_stages(cfg)]
    # where the config has it (after url_filter), else first
    at = shipped.index("prefilter_lid") if "prefilter_lid" in shipped else 0
    stages = [dict(e) for e in filter_stages(cfg) if next(iter(e)) != "prefilter_lid"]
    langid = next(e for e in stages if "langid" in e)
    opts = dict(langid["langid"] or {})
    if variant == "multi":
        opts["languages"] = {lang: 0.65 for lang in MULTI}
    langid["langid"] = opts
    langs = opts.get("languages")
    if isinstance(langs, dict):
        langs = list(langs)
    if prefilter:
        stages.insert(at, {"prefilter_lid": {"languages": langs}})
    name = f"prefilter_{variant}_{'with' if prefilter else 'without'}"
    cfg.update(name=name, stages=stages, report=False)
    cfg.pop("mix", None)
    # every reject recorded (ids only) so lost documents can be named
    cfg["rejects"] = {"samples_per_reason": 1_000_000, "excerpt_chars": 0}
    path = work / f"{name}.yaml"
    path.write_text(f"# bench/prefilter.py: {DEFAULT.name}'s streaming filter stages, variant {variant}\n"
                    + yaml.safe_dump(cfg, sort_keys=False))
    return path


def run(config: Path, files: list[Path], work: Path, report_only: bool) -> dict:
    run_dir = work / config.stem
    if not report_only:
        cmd = datapipe_cli() + ["run", str(config), "--input", *map(str, files), "--run-dir", str(run_dir),
                                "--fresh", "--quiet", "--no-mix"]
        m = run_measured(cmd, env=datapipe_env(), log=work / f"{config.stem}.log")
        (run_dir / "bench-measures.json").write_text(json.dumps(m))
    return json.loads((run_dir / "bench-measures.json").read_text()) | collect(run_dir)


def collect(run_dir: Path) -> dict:
    """Per shard (input file): stage stats, kept ids; the pre-filter's verdict on dropped ids."""
    import pyarrow.parquet as pq

    from datapipe.rundir import shard_key

    inputs = yaml.safe_load((run_dir / "config.yaml").read_text())["input"]["paths"]
    shards = {shard_key(p): Path(p).name.removeprefix("realpages-").removesuffix(".warc.gz") for p in inputs}
    stats: dict[str, dict] = {s: {} for s in shards.values()}
    for f in (run_dir / "stats").glob("*/*/*.json"):
        d = json.loads(f.read_text())
        if f.stem in shards:
            stats[shards[f.stem]][d["stage"]] = d
    kept: dict[str, set] = {s: set() for s in shards.values()}
    urls = {}
    for f in (run_dir / "output").rglob("*.parquet"):
        shard = f.name.rsplit("-", 1)[0]
        t = pq.read_table(f, columns=["id", "url"])
        kept[shards[shard]].update(t["id"].to_pylist())
        urls.update(zip(t["id"].to_pylist(), t["url"].to_pylist()))
    fate, pre = {}, {}
    for f in (run_dir / "rejects").glob("*/*.jsonl"):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            fate[r["id"]] = r["reason"]
            if r["stage"] == "prefilter_lid":
                pre[r["id"]] = (r.get("prefilter_lid_lang"), r.get("prefilter_lid_score"))
    return {"stats": stats, "kept": kept, "urls": urls, "prefiltered": pre, "fate": fate}


def report(variant: str, langs, without: dict, with_: dict) -> float:
    """Print the two tables of one language variant; return the largest per-set change due to the pre-filter."""
    print(f"\n=== variant {variant}: langid keeps {', '.join(langs)} (>= 0.65); prefilter_lid wants the same ===")
    sets = sorted(without["stats"])
    rows, worst = [], 0.0
    for s in sets + ["all five"]:
        names = sets if s == "all five" else [s]
        kw = set().union(*(without["kept"][x] for x in names))
        k1 = set().union(*(with_["kept"][x] for x in names))
        lost, gained = sorted(kw - k1), sorted(k1 - kw)
        by_pre = [d for d in lost if d in with_["prefiltered"]]
        sw = [without["stats"][x] for x in names]
        s1 = [with_["stats"][x] for x in names]

        def total(stats, stage=None, key="seconds"):
            return sum(v[key] for st in stats for name, v in st.items() if stage in (None, name))
        rows.append({
            "set": s, "pages": total(sw, "read", "rows_out"), "kw": len(kw), "k1": len(k1), "lost": lost,
            "by_pre": by_pre, "gained": gained, "diff": 100 * (len(lost) + len(gained)) / max(1, len(kw)),
            "diff_pre": 100 * len(by_pre) / max(1, len(kw)), "pre_drops": total(s1, "prefilter_lid", "rows_in")
            - total(s1, "prefilter_lid", "rows_out"), "x_in": (total(sw, "extract", "rows_in"), total(s1, "extract", "rows_in")),
            "cpu": (total(sw), total(s1)), "pre_cpu": total(s1, "prefilter_lid"),
            "x_cpu": (total(sw, "extract"), total(s1, "extract"))})
        if s != "all five":
            worst = max(worst, rows[-1]["diff_pre"])
    print("  kept set (documents out of nsfw_words)")
    print(f"  {'set':<24}{'pages':>6}{'kept w/o':>9}{'kept w/':>8}{'only w/o':>9}{'by prefilter':>13}{'only w/':>8}"
          f"{'diff %':>8}{'diff % by prefilter':>20}")
    for r in rows:
        print(f"  {r['set']:<24}{r['pages']:>6,}{r['kw']:>9,}{r['k1']:>8,}{len(r['lost']):>9,}{len(r['by_pre']):>13,}"
              f"{len(r['gained']):>8,}{r['diff']:>8.2f}{r['diff_pre']:>20.2f}")
    print("  CPU seconds inside the step's stages (read included), docs per CPU-second = pages / CPU-s")
    print(f"  {'set':<24}{'pages':>6}{'pre drops':>10}{'extracted w/o':>14}{'w/':>6}{'CPU-s w/o':>10}{'w/':>7}"
          f"{'docs/CPU-s w/o':>15}{'w/':>7}{'w/o / w/':>9}{'prefilter CPU-s':>16}{'extract CPU-s w/o':>18}{'w/':>7}")
    for r in rows:
        (cw, c1), (xw, x1), (ew, e1) = r["cpu"], r["x_in"], r["x_cpu"]
        print(f"  {r['set']:<24}{r['pages']:>6,}{r['pre_drops']:>10,}{xw:>14,}{x1:>6,}{cw:>10.1f}{c1:>7.1f}"
              f"{r['pages'] / cw:>15.1f}{r['pages'] / c1:>7.1f}{cw / c1:>8.2f}x{r['pre_cpu']:>16.1f}{ew:>18.1f}{e1:>7.1f}")
    for label, run in (("without", without), ("with", with_)):
        stage_cpu = sum(x["seconds"] for st in run["stats"].values() for x in st.values())
        timeouts = sum(x.get("dropped", {}).get("extract:timeout", 0) for st in run["stats"].values() for x in st.values())
        print(f"  run {label} prefilter_lid: process tree {run['cpu']:.1f} CPU-s (stages {stage_cpu:.1f}), wall "
              f"{run['wall']:.1f} s, peak PSS {run['peak_pss'] / 2**20:,.0f} MiB, extract:timeout {timeouts} "
              f"(a wall-clock budget: a loaded machine trips it)")
    tot = rows[-1]
    for d in tot["lost"][:20]:
        lang, score = with_["prefiltered"].get(d, (None, None))
        why = f"prefilter_lid: {lang} {score:.2f}" if lang else with_["fate"].get(d, "?")
        print(f"    only without: {without['urls'].get(d)} (with the pre-filter: {why})")
    for d in tot["gained"][:20]:
        print(f"    only with: {with_['urls'].get(d)} (without the pre-filter: {without['fate'].get(d, '?')})")
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/datapipe-prefilter")
    ap.add_argument("--variants", nargs="+", choices=["default", "multi"], default=["default", "multi"])
    ap.add_argument("--report-only", action="store_true", help="no runs: report on WORK's last runs")
    args = ap.parse_args()
    files = sorted(REALPAGES.glob("*.warc.gz"))
    if not files:
        print(f"{REALPAGES} has no WARCs: this benchmark needs ../shared/data", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"input: the {len(files)} realpages sets in {REALPAGES.resolve()}, one shard each; stages: "
          + " -> ".join(next(iter(e)) for e in filter_stages(yaml.safe_load(DEFAULT.read_text())))
          + " (configs/default.yaml), with and without prefilter_lid")
    worst = {}
    for variant in args.variants:
        runs = {}
        for pre in (False, True):
            config = make_config(work, variant, pre)
            runs[pre] = run(config, files, work, args.report_only)
        langs = yaml.safe_load(make_config(work, variant, False).read_text())
        langs = next(e["langid"] for e in langs["stages"] if "langid" in e)["languages"]
        worst[variant] = report(variant, list(langs), runs[False], runs[True])
    w = max(worst.values())
    print(f"\nlargest change of the kept set due to prefilter_lid on any set: {w:.2f}% of kept documents "
          + ", ".join(f"({v}: {x:.2f}%)" for v, x in worst.items())
          + f"; {'under' if w < THRESHOLD else 'NOT under'} {THRESHOLD}% on every set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
