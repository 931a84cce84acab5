"""``datapipe mix search RUN_DIR --spec SPEC --target TARGET``: a RegMix-style search for the
mixture weights of a spec's groups, from small proxy models (Liu et al. 2024, "RegMix: Data
Mixture as Regression for Language Model Pre-training").

Steps, all under ``RUN_DIR/mix_search/<spec name>/`` (the curated output is only read):

1. Scan the curated output once for the spec's groups (:func:`~datapipe.mix.curated.scan_curated`)
   and hold out, per group, a seeded sample of documents (``holdout_frac`` of its tokens, at most
   ``holdout_tokens``) that no candidate trains on: ``holdout/<group>/`` token streams.
2. Tokenize the target set (a folder of JSONL/Parquet files with a ``text`` field) with the run's
   tokenizer settings: ``target/`` token stream.
3. Draw ``candidates`` mixtures from a Dirichlet around the spec's weights (seeded;
   :func:`~datapipe.mix.fit.dirichlet_alpha`) and, per candidate, write its token stream with the
   mixture planner and writer (mode ``budget``, ``proxy.tokens`` tokens, no epoch caps, so every
   candidate trains on as many tokens), train a proxy LM (:mod:`~datapipe.mix.proxy`) on it and
   score it on every held-out stream and on the target: ``candidates/cand-NNN.json`` (written
   atomically when the candidate is done; a re-run skips finished candidates). With the Ray
   engine the candidates train in parallel, one per worker (:meth:`datapipe.ray_backend.Engine.map`).
4. Fit target loss ~ achieved group shares (:mod:`~datapipe.mix.fit`: ridge, leave-one-out
   Spearman), choose the predicted best mixture and write it as a spec (``<name>-searched.yaml``:
   the starting spec with explicit weights) that ``datapipe mix`` accepts (checked by planning it
   before it is written), plus ``result.json`` (what the HTML report's "Mixture search" section
   shows) and ``report.txt``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from datapipe.rundir import atomic_write_json, atomic_write_text, write_parquet_atomic

from . import fit
from .curated import Curated, run_tokenizer_settings, scan_curated, tokenize_stage
from .proxy import ProxyConfig, VocabMap, build_vocab, evaluate, resolve_device, train_proxy
from .spec import MixError, load_spec, parse_spec
from .streams import mix_from_spec

#: searches go to RUN_DIR/mix_search/<spec name>/
SEARCH_DIR = "mix_search"
RESULT = "result.json"
_VERSION = 1


@dataclass
class SearchOptions:
    candidates: int = 16
    seed: int = 0
    concentration: float | None = None   # Dirichlet concentration (default: number of groups)
    holdout_frac: float = 0.1
    holdout_tokens: int = 30_000
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    device: str = "auto"                  # auto | cpu | cuda
    keep_streams: bool = False

    def fingerprint(self) -> dict:
        d = {k: getattr(self, k) for k in ("candidates", "seed", "concentration", "holdout_frac", "holdout_tokens")}
        d["proxy"] = self.proxy.to_dict()
        return d


@dataclass
class SearchResult:
    data: dict
    out_spec: Path
    search_dir: Path

    def table(self) -> str:
        d = self.data
        groups = d["groups"]
        w = max([9] + [len(g) for g in groups])
        head = f"{'cand':>5}  " + "  ".join(f"{g[:w]:>{w}}" for g in groups) + f"  {'target loss':>11}  {'cv pred':>8}"
        lines = [f"mixture search {d['spec']!r}: {len(d['candidates'])} candidates, proxy "
                 f"d={d['proxy']['d_model']} layers={d['proxy']['layers']} vocab={d['proxy']['vocab']} "
                 f"{d['proxy']['tokens']:,} tokens each, target {d['target']}", "shares (achieved):", head]
        for c, p in zip(d["candidates"], d["fit"]["loo_pred"]):
            lines.append(f"{c['index']:>5}  " + "  ".join(f"{c['shares'][g]:>{w}.3f}" for g in groups)
                         + f"  {c['losses']['target']:>11.4f}  {p:>8.4f}")
        lines.append("held-out loss per group (best candidate per column marked *):")
        cols = groups + ["target"]
        lines.append(f"{'cand':>5}  " + "  ".join(f"{g[:w]:>{w}}" for g in cols))
        best = {g: min(c["losses"][g] for c in d["candidates"]) for g in cols}
        for c in d["candidates"]:
            lines.append(f"{c['index']:>5}  " + "  ".join(
                f"{c['losses'][g]:>{w - 1}.4f}{'*' if c['losses'][g] == best[g] else ' '}" for g in cols))
        f = d["fit"]
        lines.append(f"fit: ridge on shares; leave-one-out Spearman(pred, measured) = {f['cv_spearman']:.3f}"
                     f" (in-sample {f['train_spearman']:.3f})")
        lines.append(f"{'group':<{w}}  {'start':>7}  {'chosen':>7}")
        for g in groups:
            lines.append(f"{g:<{w}}  {d['start'][g]:>7.3f}  {d['chosen'][g]:>7.3f}")
        p = d["predicted"]
        lines.append(f"predicted target loss: chosen {p['chosen']:.4f}, start {p['start']:.4f}, uniform {p['uniform']:.4f}"
                     f"; best candidate measured {min(c['losses']['target'] for c in d['candidates']):.4f}")
        cpu = [c["cpu_seconds"] for c in d["candidates"] if "cpu_seconds" in c]
        lines.append(f"spec written: {self.out_spec}  ({d['seconds']:.0f}s wall, {d['trained_now']} candidate(s) trained now,"
                     f" {len(d['candidates']) - d['trained_now']} reused"
                     + (f"; {np.mean(cpu):.0f} CPU-s per candidate" if cpu else "") + ")")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# inputs

def read_target_texts(path: str | Path) -> pa.Table:
    """``id``, ``text`` of a target set: a JSONL (optionally .gz) or Parquet file, or a folder of them."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                       and (f.suffix in (".jsonl", ".json", ".parquet") or f.name.endswith((".jsonl.gz", ".json.gz"))))
    elif p.is_file():
        files = [p]
    else:
        raise MixError(f"{path}: target set not found (a folder of JSONL/Parquet files with a `text` field)")
    if not files:
        raise MixError(f"{path}: no .jsonl, .jsonl.gz or .parquet files in the target folder")
    texts: list[str] = []
    for f in files:
        try:
            if f.suffix == ".parquet":
                t = pq.read_table(f)
            else:
                with pa.input_stream(str(f), compression="detect") as fh:
                    t = pj.read_json(fh)
        except (pa.ArrowInvalid, OSError) as e:
            raise MixError(f"{f}: unreadable target file: {e}") from None
        if "text" not in t.column_names:
            raise MixError(f"{f}: the target set needs a `text` field (has: {', '.join(t.column_names)})")
        texts += [x for x in t["text"].to_pylist() if isinstance(x, str) and x.strip()]
    if not texts:
        raise MixError(f"{path}: the target set has no non-empty `text`")
    return pa.table({"id": [f"target-{i:06d}" for i in range(len(texts))], "text": pa.array(texts, pa.large_string())})


def _one_group_spec(spec, name: str, weights: np.ndarray, *, budget: int | None):
    """A copy of ``spec`` with explicit ``weights`` and no epoch caps: ``budget`` tokens
    (mode budget) or, without one, every selected document once (mode sampling, cap 1)."""
    d = spec.model_dump()
    d.update(name=name, weighting="explicit", temperature=1.0, missing_groups="drop", tokenizer=None)
    d["output"].update(megatron=False)
    for g, w in zip(d["groups"], weights):
        g["weight"] = float(w)
        g["max_epochs"] = None if budget else 1.0
    if budget:
        d.update(mode="budget", total_tokens=int(budget), max_epochs=None)
    else:
        d.update(mode="sampling", total_tokens=None, max_epochs=1.0)
    return parse_spec(d)


def _holdout(cur: Curated, G: int, opts: SearchOptions, names: list[str]) -> np.ndarray:
    """Per document: True when held out (a seeded sample of each group; every group keeps one
    document to train on)."""
    held = np.zeros(len(cur.n_tokens), bool)
    for gi in range(G):
        docs = np.flatnonzero(cur.group_idx == gi)
        if len(docs) < 2:
            continue
        rng = np.random.default_rng([opts.seed, zlib.crc32(names[gi].encode()), 0x401D])
        docs = docs[rng.permutation(len(docs))]
        cs = np.cumsum(cur.n_tokens[docs])
        want = min(opts.holdout_tokens, opts.holdout_frac * cs[-1])
        k = min(max(1, int(np.searchsorted(cs, want, side="left")) + 1), len(docs) - 1)
        held[docs[:k]] = True
    return held


def _with_groups(cur: Curated, group_idx: np.ndarray) -> Curated:
    return replace(cur, group_idx=group_idx)


# ---------------------------------------------------------------------------
# one candidate (runs in a Ray worker or in-process)

def _candidate(item: dict) -> dict:
    import torch
    t0, c0 = time.time(), time.process_time()
    threads = item["threads"]
    if threads:
        torch.set_num_threads(threads)
    cfg: ProxyConfig = item["proxy"]
    sdir = Path(item["search_dir"])
    i = item["index"]
    out = sdir / "streams" / item["name"]
    plan = mix_from_spec(Path(item["run_dir"]), item["spec"], out_dir=out, curated=item["curated"])
    total = plan.total_tokens
    shares = {g.name: (g.taken_tokens / total if total else 0.0) for g in plan.groups}
    device = resolve_device(item["device"])
    model, info = train_proxy(out, cfg, VocabMap(item["vocab"]), seed=item["seed"], device=device)
    losses = {name: evaluate(model, path, cfg, VocabMap(item["vocab"]), device=device)
              for name, path in item["evals"].items()}
    res = {"index": i, "weights": item["weights"], "shares": shares, "losses": losses, "tokens": total,
           "device": device, "seconds": round(time.time() - t0, 2),
           "cpu_seconds": round(time.process_time() - c0, 2), **info}
    atomic_write_json(Path(item["result_file"]), res)
    if not item["keep_streams"]:
        shutil.rmtree(out, ignore_errors=True)
    return res


# ---------------------------------------------------------------------------

@dataclass
class _Setup:
    """What every proxy training of one search shares: the scan, held-out and target streams,
    the proxy vocabulary, the start weights and the candidates' Dirichlet."""
    run_dir: Path
    spec: object
    names: list
    allowed: np.ndarray
    start: np.ndarray
    alpha: np.ndarray
    sdir: Path
    cur: Curated
    cur_train: Curated
    evals: dict
    vocab: np.ndarray
    opts: SearchOptions


def _prepare(run_dir, spec_path, target, opts: SearchOptions, *, fresh: bool, quiet: bool) -> _Setup:
    run_dir = Path(run_dir)
    spec = load_spec(spec_path)
    names = [g.name for g in spec.groups]
    G = len(names)
    tok_opts = run_tokenizer_settings(run_dir, spec.tokenizer)
    cur = scan_curated(run_dir, spec, tok_opts, quiet)
    avail = np.bincount(cur.group_idx[cur.group_idx >= 0], weights=cur.n_tokens[cur.group_idx >= 0], minlength=G)
    allowed = avail > 0
    if allowed.sum() < 2:
        raise MixError(f"{spec_path}: a search needs at least two groups with documents "
                       f"(with documents: {[n for n, a in zip(names, allowed) if a] or 'none'})")
    # the starting weights: what the planner gives the spec (any weighting), over groups with documents
    from .plan import plan_mixture
    start = np.array([g.target_share for g in plan_mixture(spec, cur.n_tokens, cur.group_idx).groups], float) * allowed
    if start.sum() <= 0:
        start = allowed.astype(float)
    start /= start.sum()

    sdir = run_dir / SEARCH_DIR / spec.name
    fp = {"version": _VERSION, "spec": spec.model_dump(), "options": opts.fingerprint(),
          "target": str(Path(target).resolve()), "curated_docs": int(len(cur.n_tokens)),
          "curated_files": [str(f.relative_to(cur.root)) for f in cur.files]}
    fp = json.loads(json.dumps(fp, default=str))
    if fresh and sdir.exists():
        shutil.rmtree(sdir)
    if (sdir / "search.json").is_file():
        old = json.loads((sdir / "search.json").read_text())
        if old != fp:
            raise MixError(f"{sdir} holds a search with other settings (spec, options, target or curated output"
                           " changed): pass --fresh to start over")
    else:
        sdir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(sdir / "search.json", fp)

    # 1. held-out documents and streams
    held = _holdout(cur, G, opts, names)
    evals: dict[str, str] = {}
    for gi, g in enumerate(names):
        hdir = sdir / "holdout" / g
        if not allowed[gi] or not (held & (cur.group_idx == gi)).any():
            continue
        if not (hdir / "manifest.json").is_file():
            onehot = np.eye(G)[gi]
            mix_from_spec(run_dir, _one_group_spec(spec, f"holdout-{g}", onehot, budget=None), out_dir=hdir,
                          curated=_with_groups(cur, np.where(held & (cur.group_idx == gi), gi, -1)))
        evals[g] = str(hdir)
    # 2. the target set
    tdir = sdir / "target"
    if not (tdir / "manifest.json").is_file():
        _write_target(target, tok_opts, sdir)
    evals["target"] = str(tdir)
    # 3. vocabulary of the proxies
    vfile = sdir / "vocab.npy"
    if vfile.is_file():
        vocab = np.load(vfile)
    else:
        vocab = build_vocab([evals[g] for g in names if g in evals], opts.proxy.vocab).keep
        tmp = sdir / ".vocab.tmp.npy"
        np.save(tmp, vocab)
        os.replace(tmp, vfile)
    alpha = fit.dirichlet_alpha(start[allowed], opts.concentration or float(allowed.sum()))
    return _Setup(run_dir, spec, names, allowed, start, alpha, sdir, cur, _with_groups(cur, np.where(held, -1, cur.group_idx)),
                  evals, vocab, opts)


def search_mixture(run_dir: str | Path, spec_path: str | Path, target: str | Path, *,
                   options: SearchOptions | None = None, engine: str = "ray", out_spec: str | Path | None = None,
                   fresh: bool = False, quiet: bool = True) -> SearchResult:
    """Run (or resume) the search; see the module docstring. ``engine``: ``"ray"`` (candidates
    in parallel through :class:`datapipe.ray_backend.Engine`, one CPU or GPU each) or ``"local"``
    (one after another in this process)."""
    t_start = time.time()
    opts = options or SearchOptions()
    if opts.candidates < 3:
        raise MixError("--candidates: need at least 3 to fit and cross-validate")
    st = _prepare(run_dir, spec_path, target, opts, fresh=fresh, quiet=quiet)
    run_dir, spec, names, allowed, start, alpha, sdir, cur = (st.run_dir, st.spec, st.names, st.allowed, st.start,
                                                              st.alpha, st.sdir, st.cur)
    G = len(names)

    # 4. candidates
    rng = np.random.default_rng([opts.seed, 0xCA4D])
    W = np.zeros((opts.candidates, G))
    W[:, allowed] = rng.dirichlet(alpha, size=opts.candidates)
    done: dict[int, dict] = {}
    todo = []
    for i in range(opts.candidates):
        f = sdir / "candidates" / f"cand-{i:03d}.json"
        if f.is_file():
            r = json.loads(f.read_text())
            if np.allclose(r.get("weights", []), W[i].tolist()):
                done[i] = r
                continue
        todo.append(_item(st, i, f"cand-{i:03d}", W[i], f, opts.seed))
    if todo and not quiet:
        print(f"mix search: {len(todo)} candidate(s) to train, {len(done)} done earlier", file=sys.stderr)
    if todo:
        for r in _run_candidates(todo, engine, opts.device, quiet):
            done[r["index"]] = r
    cands = [done[i] for i in range(opts.candidates)]

    # 5. fit and choose
    X = np.array([[c["shares"][g] for g in names] for c in cands])[:, allowed]
    y = np.array([c["losses"]["target"] for c in cands])
    coef = fit.fit_ridge(X, y)
    loo = fit.loo_predictions(X, y)
    chosen_a, pred_chosen = fit.choose(coef, alpha, seed=opts.seed)
    chosen = np.zeros(G)
    chosen[allowed] = chosen_a
    uniform = np.full(int(allowed.sum()), 1.0 / allowed.sum())
    data = {
        "version": _VERSION, "spec": spec.name, "spec_file": str(spec_path), "target": str(target),
        "groups": [g for g, a in zip(names, allowed) if a], "groups_without_documents": [g for g, a in zip(names, allowed) if not a],
        "start": {g: float(w) for g, w, a in zip(names, start, allowed) if a},
        "chosen": {g: float(w) for g, w, a in zip(names, chosen, allowed) if a},
        "alpha": alpha.tolist(), "proxy": opts.proxy.to_dict(), "options": opts.fingerprint(),
        "candidates": cands,
        "fit": {"model": "ridge(shares)", "coef": coef.tolist(), "loo_pred": loo.tolist(),
                "train_pred": fit.predict(coef, X).tolist(),
                "cv_spearman": fit.spearman(loo, y), "train_spearman": fit.spearman(fit.predict(coef, X), y)},
        "predicted": {"chosen": pred_chosen, "start": float(fit.predict(coef, start[allowed][None])[0]),
                      "uniform": float(fit.predict(coef, uniform[None])[0])},
        "trained_now": len(todo), "seconds": round(time.time() - t_start, 1),
    }
    out = Path(out_spec) if out_spec else sdir / f"{spec.name}-searched.yaml"
    _write_spec(spec, chosen, out, data, run_dir, cur)
    data["out_spec"] = str(out)
    atomic_write_json(sdir / RESULT, data)
    res = SearchResult(data, out, sdir)
    atomic_write_text(sdir / "report.txt", res.table() + "\n")
    return res


def _item(st: _Setup, i: int, name: str, w: np.ndarray, result_file: Path, seed: int) -> dict:
    """What one proxy training needs (pickled to a Ray worker)."""
    return {"index": i, "name": name, "weights": np.asarray(w, float).tolist(), "run_dir": str(st.run_dir),
            "search_dir": str(st.sdir), "result_file": str(result_file),
            "spec": _one_group_spec(st.spec, name, w, budget=st.opts.proxy.tokens), "curated": st.cur_train,
            "proxy": st.opts.proxy, "vocab": st.vocab, "evals": st.evals, "seed": seed, "device": st.opts.device,
            "keep_streams": st.opts.keep_streams, "threads": None}


def score_mixtures(run_dir: str | Path, spec_path: str | Path, target: str | Path, mixtures: dict[str, dict],
                   *, seeds: list[int], options: SearchOptions | None = None, engine: str = "ray",
                   quiet: bool = True) -> dict[str, list[dict]]:
    """Train a proxy on each of ``mixtures`` (``{label: {group: weight}}``) with each seed, with the
    search's recipe, held-out sets, target and vocabulary (the search folder of ``spec_path``:
    same options as the search), and return ``{label: [result per seed]}`` (losses per group
    and on the target). Results are kept under ``scores/`` and reused. For benchmarks: how the
    chosen mixture does against others, and the loss spread across seeds of one mixture."""
    opts = options or SearchOptions()
    st = _prepare(run_dir, spec_path, target, opts, fresh=False, quiet=quiet)
    todo, out = [], {}
    for label, wd in mixtures.items():
        unknown = set(wd) - set(st.names)
        if unknown:
            raise MixError(f"mixture {label!r}: unknown group(s) {sorted(unknown)}")
        w = np.array([float(wd.get(g, 0.0)) for g in st.names]) * st.allowed
        w = w / w.sum()
        for seed in seeds:
            f = st.sdir / "scores" / f"{label}-s{seed}.json"
            if f.is_file() and np.allclose(json.loads(f.read_text()).get("weights", []), w.tolist()):
                continue
            todo.append(_item(st, len(todo), f"score-{label}-s{seed}", w, f, seed))
    if todo:
        _run_candidates(todo, engine, opts.device, quiet)
    for label in mixtures:
        out[label] = [json.loads((st.sdir / "scores" / f"{label}-s{seed}.json").read_text()) for seed in seeds]
    return out


def _run_candidates(todo: list[dict], engine: str, device: str, quiet: bool) -> list[dict]:
    if engine == "local":
        # one thread per CPU proxy: its matrices are too small to gain from a second thread, and
        # on a shared machine two spinning OpenMP threads were measured 8x slower than one
        for it in todo:
            it["threads"] = 1 if resolve_device(device) == "cpu" else None
        return [_candidate(it) for it in todo]
    if engine != "ray":
        raise MixError(f"engine: {engine!r} (ray | local)")
    from datapipe.ray_backend import Engine
    from datapipe.stage import Resources
    eng = Engine(quiet=quiet)
    try:
        gpu = resolve_device(device) == "cuda" or (device == "auto" and eng.num_gpus > 0)
        res = Resources(cpus=1.0, gpus=1.0 if gpu else 0.0)
        for it in todo:
            it["threads"] = 1
            if gpu:
                it["device"] = "cuda"
        return eng.map(_candidate, todo, resources=res)
    finally:
        eng.shutdown()


def _write_target(target, tok_opts: dict, sdir: Path) -> None:
    """The target texts as a one-file curated run (tokenized with the run's settings), then as a
    token stream by the mixture writer."""
    import yaml
    t = read_target_texts(target)
    tok = tokenize_stage(tok_opts)
    tok.ensure_setup()
    flat, offs = tok.encode(t["text"].to_pylist())
    t = t.append_column("source", pa.array(["target"] * t.num_rows)).append_column(
        "n_tokens", pa.array(np.diff(offs).astype(np.int32)))
    t = t.append_column("tokens", pa.LargeListArray.from_arrays(pa.array(offs.astype(np.int64)), pa.array(flat, pa.uint32())))
    trun = sdir / "_target_run"
    write_parquet_atomic(t, trun / "output" / "target.parquet")
    atomic_write_text(trun / "config.yaml", yaml.safe_dump({"stages": [{"tokenize": tok_opts}]}))
    spec = parse_spec({"name": "target", "mode": "sampling", "max_epochs": 1.0,
                       "groups": [{"name": "target", "where": {}, "weight": 1.0}]})
    mix_from_spec(trun, spec, out_dir=sdir / "target")


def _write_spec(spec, chosen: np.ndarray, out: Path, data: dict, run_dir: Path, cur: Curated) -> None:
    """The starting spec with the chosen weights (explicit), planned once before it is written."""
    import yaml
    d = spec.model_dump(exclude_none=True)
    d["name"] = f"{spec.name}-searched"
    d["weighting"] = "explicit"
    d.pop("temperature", None)
    for g, w in zip(d["groups"], chosen):
        g["weight"] = round(float(w), 4)
        if not g.get("where"):
            g["where"] = {}
    checked = parse_spec(json.loads(json.dumps(d)), file=str(out))
    mix_from_spec(run_dir, checked, dry_run=True, curated=cur)    # the planner accepts it (MixError if not)
    f = data["fit"]
    head = (f"# written by `datapipe mix search` from {data['spec_file']} (target: {data['target']})\n"
            f"# {len(data['candidates'])} proxy candidates; leave-one-out Spearman {f['cv_spearman']:.3f}; "
            f"predicted target loss {data['predicted']['chosen']:.4f} (start {data['predicted']['start']:.4f}, "
            f"uniform {data['predicted']['uniform']:.4f})\n")
    atomic_write_text(out, head + yaml.safe_dump(d, sort_keys=False))
