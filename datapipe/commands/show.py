"""``datapipe show RUN_DIR [--stage S] [--where SQL] [--n N]``: print documents of a run.

Without ``--stage`` it reads the run's output Parquet (or, for a run that has not reached
its last step, the newest ``work/<step>/``); with ``--stage S`` the reject samples that
stage kept (``rejects/S/*.jsonl``; their text is the ``excerpt`` column). ``--where`` is a
SQL condition evaluated by DuckDB over the columns, e.g.::

    datapipe show runs/default --where "lid_lang = 'de' AND ppl > 1000" --n 5
    datapipe show runs/default --stage gopher_quality --where "reason LIKE '%stop_words'"

DuckDB reads only the columns it needs and stops after ``--n`` matches, so this is quick
on a large output. Rows come in file order (deterministic); ``--order-by`` sorts.
"""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from . import error as _err

#: score columns printed when present (besides id, url and the columns --where names)
DEFAULT_COLUMNS = ("reason", "lid_lang", "lid_score", "ppl", "ppl_bucket", "quality_score", "topic", "nsfw_ratio",
                   "dup_cluster", "n_tokens", "len_chars")


def register(subparsers) -> None:
    p = subparsers.add_parser("show", help="print documents of a run (output or a stage's rejects), filtered with SQL")
    p.add_argument("run_dir")
    p.add_argument("--stage", help="read the reject samples of this stage instead of the output")
    p.add_argument("--where", help="SQL condition over the columns (DuckDB), e.g. \"lid_lang = 'de' AND ppl > 1000\"")
    p.add_argument("--n", type=int, default=5, help="documents to print (default 5)")
    p.add_argument("--columns", help="comma-separated columns to print besides id and url")
    p.add_argument("--order-by", help="SQL ORDER BY expression, e.g. 'ppl DESC'")
    p.add_argument("--chars", type=int, default=400, help="characters of text to print (0: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object per document")
    p.set_defaults(fn=cmd_show)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _reject_files(root: Path, stage: str) -> list[Path]:
    from datapipe.rundir import safe_name
    rej = root / "rejects"
    d = rej / safe_name(stage)
    files = sorted(d.glob("*.jsonl")) if d.is_dir() else []
    if not files:  # a running run: samples not merged yet
        files = sorted((rej / "_parts" / safe_name(stage)).glob("*/*.jsonl"))
    return [f for f in files if f.stat().st_size > 0]


def cmd_show(args) -> int:
    import duckdb

    from datapipe.report import data_files

    root = Path(args.run_dir)
    if not root.is_dir():
        return _err(f"{root}: not a directory")
    if args.stage:
        files = _reject_files(root, args.stage)
        if not files:
            rej = root / "rejects"
            stages = sorted(p.name for p in rej.iterdir() if p.is_dir() and p.name != "_parts") if rej.is_dir() else []
            return _err(f"no reject samples for stage {args.stage!r}; stages with rejects: {', '.join(stages) or 'none'}")
        lst = "[" + ", ".join(_sql_str(str(f)) for f in files) + "]"
        source = f"rejects of {args.stage}"
        scan = f"read_json_auto({lst}, format='newline_delimited', union_by_name=true)"
    else:
        files, where_from = data_files(root)
        if not files:
            return _err(f"{root}: no Parquet output yet (is this a run directory?)")
        lst = "[" + ", ".join(_sql_str(str(f)) for f in files) + "]"
        source = where_from
        scan = f"read_parquet({lst}, union_by_name=true, hive_partitioning=false)"
    con = duckdb.connect()
    con.execute(f"CREATE VIEW docs AS SELECT * FROM {scan}")
    columns = [r[0] for r in con.execute("DESCRIBE docs").fetchall()]
    text_col = "text" if "text" in columns else ("excerpt" if "excerpt" in columns else None)
    where = f"WHERE {args.where}" if args.where else ""
    order = f"ORDER BY {args.order_by}" if args.order_by else ""
    # the columns to print: id, url, those --where/--order-by name, those asked for, then known scores
    named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", f"{args.where or ''} {args.order_by or ''}"))
    asked = [c.strip() for c in (args.columns or "").split(",") if c.strip()]
    unknown = [c for c in asked if c not in columns]
    if unknown:
        return _err(f"no column(s) {unknown}; columns: {', '.join(columns)}")
    show = [c for c in ("id", "url") if c in columns]
    show += [c for c in columns if c in named and c not in show and c != text_col]
    show += [c for c in asked if c not in show]
    show += [c for c in DEFAULT_COLUMNS if c in columns and c not in show and len(show) < 12]
    sel = ", ".join(_ident(c) for c in show + ([text_col] if text_col else []))
    try:
        total = con.execute(f"SELECT count(*) FROM docs {where}").fetchone()[0]
        rows = con.execute(f"SELECT {sel} FROM docs {where} {order} LIMIT {max(args.n, 0)}").fetchall()
    except duckdb.Error as e:
        msg = str(e).strip().splitlines()[0]
        return _err(f"--where/--order-by: {msg}\ncolumns: {', '.join(columns)}")
    names = show + ([text_col] if text_col else [])
    if args.json:
        for r in rows:
            print(json.dumps(dict(zip(names, r)), ensure_ascii=False, default=str))
        return 0
    print(f"== {total:,} matching document(s) in {source}" + (f" ({len(rows)} shown)" if total > len(rows) else ""))
    for r in rows:
        d = dict(zip(names, r))
        text = d.pop(text_col, None) if text_col else None
        print(f"-- {d.pop('url', None) or ''}  [{d.pop('id', None)}]")
        meta = "  ".join(f"{k}={_fmt(v)}" for k, v in d.items())
        if meta:
            print(textwrap.indent(meta, "   "))
        text = (text or "").strip()
        if args.chars and len(text) > args.chars:
            text = text[: args.chars].rstrip() + " …"
        print(textwrap.indent(text or "(empty)", "   | ", lambda _: True))
    return 0


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
