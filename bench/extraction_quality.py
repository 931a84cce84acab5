"""Extraction quality of the ``extract`` stage against the realpages gold sidecars.

Reads ``../shared/data/warc/realpages/*.warc.gz`` with the project's WARC reader,
runs the ``extract`` stage through ``datapipe.stage.apply_stage`` and scores the
result against each ``*.gold.jsonl`` sidecar (keyed by ``warc_record_id``):

- sets with full gold text (``gold_content``, magic-html) and the stia set, whose
  reference is trafilatura's own output (``extracted_text_trafilatura``: a measure
  of agreement, not human gold): token-level precision / recall / F1 over the
  multiset of tokens (words; CJK characters one by one), averaged over documents;
  a document that yields no text scores 0.
- sets with snippets (``gold_with`` / ``gold_without``, trafilatura-eval): share of
  must-have snippets found, share of must-not snippets absent, and trafilatura's own
  snippet precision / recall / F1 (TP = must found, FP = must-not found, FN = must
  missed).
- sets whose gold lives in files that are not in ``shared/data`` (chinese-wce,
  mozilla-readability): yield only.

For every set, and over all 1,600 records: the share of records that yield text
(kept by the stage; goal >= 95%) and CPU seconds per page.

    python bench/extraction_quality.py                    # stage defaults
    python bench/extraction_quality.py --favor precision --fast
    python bench/extraction_quality.py --limit 100 --sets magic-html-benchmark
    python bench/extraction_quality.py --cpu-ab fallback_below=null fallback_below=1000 fast=true

``--cpu-ab`` measures CPU instead of quality: each option set (``key=value[,key=value]``,
values in YAML) gets its own ``Extract`` in one process, and they take turns over all the
pages ``--repeat`` times, so that the ratios share the machine's state.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterator

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datapipe.schema import doc_id  # noqa: E402
from datapipe.stage import apply_stage  # noqa: E402
from datapipe.stats import StageStats  # noqa: E402
from stages.extract import Extract  # noqa: E402

REALPAGES = ROOT / ".." / "shared" / "data" / "warc" / "realpages"

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


def tokens(text: str) -> list[str]:
    """Words (lower-cased, NFKC), CJK characters one by one."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def prf(pred: str | None, gold: str) -> tuple[float, float, float]:
    """Token-multiset precision, recall, F1 of ``pred`` against ``gold``."""
    if not pred:
        return 0.0, 0.0, 0.0
    p, g = Counter(tokens(pred)), Counter(tokens(gold))
    overlap = sum((p & g).values())
    if not overlap:
        return 0.0, 0.0, 0.0
    prec, rec = overlap / sum(p.values()), overlap / sum(g.values())
    return prec, rec, 2 * prec * rec / (prec + rec)


def _norm_ws(s: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", s).split())


def iter_batches(path: str, batch_size: int, stats: StageStats) -> Iterator[pa.Table]:
    """Raw rows of one WARC file through the project's reader. Its own size cap is set
    far above the stage's ``max_html_bytes`` so that the stage decides what is too large."""
    from datapipe.io.warc import iter_warc_batches

    return iter_warc_batches(path, source="realpages", batch_size=batch_size, max_html_bytes=1 << 30, stats=stats)


def _gold_index(gold: list[dict]) -> dict[str, dict]:
    """Map every key a reader may use for a record (WARC-Record-ID, its doc_id,
    the URL) to its gold row."""
    idx: dict[str, dict] = {}
    for g in gold:
        rid = g["warc_record_id"]
        for k in (rid, rid.strip("<>"), doc_id(rid), doc_id(rid.strip("<>"))):
            idx.setdefault(k, g)
        idx.setdefault("url:" + g["url"], g)
    return idx


def _match(row: dict, idx: dict[str, dict]) -> dict | None:
    for key in ("warc_record_id", "record_id", "id"):
        v = row.get(key)
        if v and v in idx:
            return idx[v]
    return idx.get("url:" + (row.get("url") or ""))


# --------------------------------------------------------------------------

def run_set(warc: Path, gold_file: Path, stage: Extract, *, limit: int | None, batch_size: int) -> dict:
    gold = [json.loads(line) for line in gold_file.read_text().splitlines() if line.strip()]
    idx = _gold_index(gold)
    outputs: dict[str, str | None] = {}   # warc_record_id -> text (None: dropped)
    reasons: Counter = Counter()
    cpu = 0.0
    n_read = 0
    read_stats = StageStats("read")
    for batch in iter_batches(str(warc), batch_size, read_stats):
        if limit is not None and n_read >= limit:
            break
        if limit is not None and n_read + batch.num_rows > limit:
            batch = batch.slice(0, limit - n_read)
        n_read += batch.num_rows
        keys = batch.select([c for c in ("id", "url", "warc_record_id", "record_id") if c in batch.column_names]).to_pylist()
        t0 = time.process_time()
        res = apply_stage(stage, batch)
        cpu += time.process_time() - t0
        reasons.update(res.reasons)
        kept = {r["id"]: r["text"] for r in res.kept.select(["id", "text"]).to_pylist()}
        for k in keys:
            g = _match(k, idx)
            if g is not None:
                outputs[g["warc_record_id"]] = kept.get(k["id"])
    counters = stage.counters()
    scored = [g for g in gold if g["warc_record_id"] in outputs]
    n = len(scored)
    yielded = sum(1 for g in scored if outputs[g["warc_record_id"]])
    out = {
        "set": gold[0]["dataset"] if gold else warc.name, "gold_records": len(gold),
        # records the reader dropped count as not yielding text (full runs)
        "denominator": len(gold) if limit is None else n,
        "read": n_read, "read_dropped": dict(read_stats.dropped), "matched": n, "yielded": yielded, "reasons": dict(reasons), "counters": counters,
        "cpu_s": cpu,
    }
    full = [(g, g.get("gold_content") or g.get("extracted_text_trafilatura")) for g in scored]
    full = [(g, t) for g, t in full if t]
    if full:
        scores = [prf(outputs[g["warc_record_id"]], t) for g, t in full]
        out["prf_docs"] = len(scores)
        out["precision"] = sum(s[0] for s in scores) / len(scores)
        out["recall"] = sum(s[1] for s in scores) / len(scores)
        out["f1"] = sum(s[2] for s in scores) / len(scores)
        out["gold_kind"] = "trafilatura reference" if "extracted_text_trafilatura" in full[0][0] else "gold text"
        kinds = sorted({g.get("page_kind") for g, _ in full if g.get("page_kind")})
        if len(kinds) > 1:  # magic-html: articles vs forum threads
            out["by_page_kind"] = {}
            for k in kinds:
                ks = [sc for (g, _), sc in zip(full, scores) if g.get("page_kind") == k]
                out["by_page_kind"][k] = {"docs": len(ks), "precision": sum(x[0] for x in ks) / len(ks),
                                          "recall": sum(x[1] for x in ks) / len(ks), "f1": sum(x[2] for x in ks) / len(ks)}
    snip = [g for g in scored if g.get("gold_with") or g.get("gold_without")]
    if snip:
        tp = fn = fp = tn = 0
        for g in snip:
            text = _norm_ws(outputs[g["warc_record_id"]] or "")
            for s in g.get("gold_with") or []:
                if _norm_ws(s) in text:
                    tp += 1
                else:
                    fn += 1
            for s in g.get("gold_without") or []:
                if _norm_ws(s) in text:
                    fp += 1
                else:
                    tn += 1
        out["must_hit"] = tp / (tp + fn) if tp + fn else float("nan")
        out["must_not_avoided"] = tn / (tn + fp) if tn + fp else float("nan")
        sp = tp / (tp + fp) if tp + fp else 0.0
        sr = tp / (tp + fn) if tp + fn else 0.0
        out["snippet_precision"], out["snippet_recall"] = sp, sr
        out["snippet_f1"] = 2 * sp * sr / (sp + sr) if sp + sr else 0.0
        out["gold_kind"] = "snippets"
    out.setdefault("gold_kind", "none here (gold files absent): yield only")
    return out


def _f(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def format_table(results: list[dict]) -> str:
    head = (f"{'set':<24}{'docs':>6}{'rows':>6}{'yield%':>8}{'P':>7}{'R':>7}{'F1':>7}"
            f"{'must%':>8}{'not%':>7}{'snipF1':>8}{'ms/doc':>8}  gold")
    lines = [head, "-" * (len(head) + 22)]
    tot_n = tot_y = 0
    tot_cpu = 0.0
    for r in results:
        n = r["denominator"]
        tot_n += n
        tot_y += r["yielded"]
        tot_cpu += r["cpu_s"]
        lines.append(
            f"{r['set']:<24}{n:>6}{r['matched']:>6}{_f(r['yielded'] / n if n else None, True):>8}"
            f"{_f(r.get('precision')):>7}{_f(r.get('recall')):>7}{_f(r.get('f1')):>7}"
            f"{_f(r.get('must_hit'), True):>8}{_f(r.get('must_not_avoided'), True):>7}{_f(r.get('snippet_f1')):>8}"
            f"{(1000 * r['cpu_s'] / r['read'] if r['read'] else 0):>8.1f}  {r['gold_kind']}"
        )
        for k, v in r.get("by_page_kind", {}).items():
            lines.append(f"{'  page_kind=' + k:<24}{v['docs']:>6}{'':>14}{_f(v['precision']):>7}{_f(v['recall']):>7}{_f(v['f1']):>7}")
    lines.append("-" * (len(head) + 22))
    lines.append(f"{'all':<24}{tot_n:>6}{'':>6}{_f(tot_y / tot_n if tot_n else None, True):>8}"
                 f"{'':>37}{(1000 * tot_cpu / tot_n if tot_n else 0):>8.1f}  (goal: yield >= 95%)")
    drops: Counter = Counter()
    for r in results:
        drops.update(r["reasons"])
        drops.update({f"read:{k}": v for k, v in r.get("read_dropped", {}).items() if k != "warcinfo"})
    if drops:
        lines.append("drops: " + ", ".join(f"{k} {v}" for k, v in drops.most_common()))
    return "\n".join(lines)


def _parse_opts(spec: str) -> dict:
    import yaml

    out = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise SystemExit(f"--cpu-ab: {part!r} is not key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def cpu_ab(specs: list[str], data: Path, repeat: int) -> str:
    """CPU seconds of each option set over every realpages page, in turns; ratios to the first."""
    stages = [(spec, Extract(**_parse_opts(spec))) for spec in specs]
    for _, st in stages:
        st.ensure_setup()
    htmls = [h for warc in sorted(data.glob("realpages-*.warc.gz"))
             for b in iter_batches(str(warc), 256, StageStats("read")) for h in b["html"].to_pylist() if h]
    cpu = dict.fromkeys(specs, 0.0)
    for _ in range(repeat):
        for spec, st in stages:
            t = time.process_time()
            for h in htmls:
                st._extract_one(h)
            cpu[spec] += time.process_time() - t
    base = cpu[specs[0]]
    lines = [f"{len(htmls):,} pages x {repeat}, CPU seconds (ratio to {specs[0]}):"]
    lines += [f"  {spec:40s} {c:8.1f}  {c / base:.3f}  {1000 * c / (len(htmls) * repeat):.1f} ms/page"
              for spec, c in cpu.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--favor", choices=["precision", "recall", "balanced"], default=None,
                    help="stage option (default: the stage's default)")
    ap.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                    help="stage option: skip trafilatura's fallback extractors")
    ap.add_argument("--fallback-below", type=int, default=None,
                    help="stage option: compare with readability/jusText only below this many characters")
    ap.add_argument("--include-comments", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--min-text-chars", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None, help="records per set")
    ap.add_argument("--sets", nargs="*", default=None, help="subset of set names (e.g. magic-html-benchmark)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--data", type=Path, default=REALPAGES)
    ap.add_argument("--cpu-ab", nargs="+", metavar="OPTS", default=None,
                    help="CPU of these option sets in turns (e.g. fallback_below=null fast=true), no quality")
    ap.add_argument("--repeat", type=int, default=2, help="--cpu-ab: passes over the pages")
    args = ap.parse_args(argv)

    if not args.data.is_dir():
        print(f"no realpages data at {args.data} (needs ../shared/data beside the repo)", file=sys.stderr)
        return 2
    if args.cpu_ab:
        print(cpu_ab(args.cpu_ab, args.data, args.repeat))
        return 0
    opts = {k: v for k, v in {"favor": args.favor, "fast": args.fast, "fallback_below": args.fallback_below,
                              "include_comments": args.include_comments,
                              "min_text_chars": args.min_text_chars}.items() if v is not None}
    stage = Extract(**opts)
    stage.ensure_setup()
    shown = {k: getattr(stage, k) for k in ("favor", "fast", "fallback_below", "include_tables", "include_comments", "deduplicate",
                                            "min_text_chars", "timeout_s", "max_html_bytes")}
    print(f"extract options: {shown}")
    results = []
    for warc in sorted(args.data.glob("realpages-*.warc.gz")):
        name = warc.name[len("realpages-"):-len(".warc.gz")]
        if args.sets and name not in args.sets:
            continue
        gold_file = warc.with_name(warc.name.replace(".warc.gz", ".gold.jsonl"))
        r = run_set(warc, gold_file, stage, limit=args.limit, batch_size=args.batch_size)
        print(f"  {name}: {r['matched']} records, {r['cpu_s']:.1f} cpu s", file=sys.stderr)
        results.append(r)
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps({"options": shown, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
