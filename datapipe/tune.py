"""Filters measured against human labels, and thresholds tuned on them (``datapipe tune-filters``).

A labelled set is JSONL with ``text`` and ``label`` (1/0, true/false, good/bad; ``lang`` and
``kind`` optional). :func:`score_labels` runs the text filters of a config over it the way a
run would (each stage scores the text the previous stage left, so C4's rewrite reaches
FineWeb), but without dropping: every row gets every score column. Because filters decide
from score columns only, any combination of thresholds is then evaluated with NumPy in
microseconds (:func:`evaluate`), which is what the curves and the search need.

The tunable unit is one threshold option of one stage (``gopher_quality.min_alpha_words``);
each maps to one rule of a :class:`stages._rules.RuleFilter` (``rules`` tuples, read here by
duck typing: the core never imports ``stages``). Filters without ``rules`` (``length``,
``langid``) keep the config's decision. :func:`propose` searches thresholds for an objective
("keep at least 95% of good documents, drop as many bad ones as possible") on the rows it is
given; the caller keeps a held-out split away from it and reports that split separately
(:func:`split`). The result is an overlay (:func:`overlay_dict`) that ``datapipe run
--overlay`` and ``datapipe refilter --overlay`` apply (:func:`datapipe.config.apply_overlay`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import merge_stage_options
from .stage import Filter, Workflow, build_stage, get_stage_class

#: the DCLM human quality labels (780 CC documents, 424 good / 356 bad)
DCLM_LABELS = ("quality/dclm-human-quality-labels/agreement_data.jsonl",
               "quality/dclm-human-quality-labels/majority_data.jsonl")
_GOOD = {"1", "true", "good", "yes", "keep", "high"}
_BAD = {"0", "false", "bad", "no", "drop", "low"}


class LabelError(ValueError):
    """A labelled file that cannot be read: names the file and line."""


def load_labels(paths: Iterable[str | Path], *, text_field: str = "text", label_field: str = "label") -> pa.Table:
    """``text``, ``good`` (bool) and, where the rows carry them, ``lang`` and ``kind`` from JSONL files."""
    texts, good, langs, kinds = [], [], [], []
    for p in map(Path, paths):
        if not p.is_file():
            raise LabelError(f"{p}: no such file")
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise LabelError(f"{p}:{i}: not JSON ({e.msg})") from None
            if not isinstance(row.get(text_field), str) or label_field not in row:
                raise LabelError(f"{p}:{i}: needs a string {text_field!r} and a {label_field!r}")
            lab = str(row[label_field]).strip().lower()
            if lab not in _GOOD | _BAD:
                raise LabelError(f"{p}:{i}: label {row[label_field]!r} is neither good (1/true/good) nor bad (0/false/bad)")
            texts.append(row[text_field])
            good.append(lab in _GOOD)
            langs.append(row.get("lang"))
            kinds.append(row.get("kind"))
    if not texts:
        raise LabelError("no labelled rows")
    cols = {"id": pa.array([f"l{i}" for i in range(len(texts))]), "text": pa.array(texts, pa.large_string()),
            "good": pa.array(good)}
    if any(x is not None for x in langs):
        cols["lang"] = pa.array(langs, pa.string())
    if any(x is not None for x in kinds):
        cols["kind"] = pa.array(kinds, pa.string())
    return pa.table(cols)


def text_groups(table: pa.Table) -> np.ndarray:
    """One integer per row, equal for rows with the same ``text``: labelled sets repeat documents
    (the DCLM files hold 780 rows of 499 distinct texts), and a copy on each side of a split would
    make the held-out figures partly in-sample."""
    return np.unique(np.asarray(table["text"].to_pylist(), dtype=object), return_inverse=True)[1]


def _shuffled_groups(good: np.ndarray, groups: np.ndarray | None,
                     rng: np.random.Generator) -> tuple[np.ndarray, int, list[np.ndarray]]:
    """``(group of each row, number of groups, [shuffled groups of each label])``; a group's
    label is its first row's."""
    groups = np.arange(len(good)) if groups is None else np.asarray(groups)
    uniq, first, inv = np.unique(groups, return_index=True, return_inverse=True)
    per_label = []
    for cls in (True, False):
        gi = np.flatnonzero(good[first] == cls)
        rng.shuffle(gi)
        per_label.append(gi)
    return inv, len(uniq), per_label


def _group_folds(good: np.ndarray, groups: np.ndarray | None, n: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number per row in ``0..n-1``, stratified by label, every copy of a group in one fold."""
    inv, n_groups, per_label = _shuffled_groups(good, groups, rng)
    gfold = np.empty(n_groups, dtype=int)
    for gi in per_label:
        gfold[gi] = np.arange(len(gi)) % n
    return gfold[inv]


def split(good: np.ndarray, holdout: float, seed: int = 0,
          groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(tune, held_out)``: a seeded split stratified by label; rows of one group
    (:func:`text_groups`) land on the same side."""
    inv, n_groups, per_label = _shuffled_groups(good, groups, np.random.default_rng(seed))
    held_g = np.zeros(n_groups, dtype=bool)
    for gi in per_label:
        held_g[gi[:int(round(holdout * len(gi)))]] = True
    held = held_g[inv]
    return np.flatnonzero(~held), np.flatnonzero(held)


# ---------------------------------------------------------------------------
# the cascade of text filters of a config

@dataclass
class StageRef:
    label: str              # name, or name#2 for a second use (as refilter and overlays call it)
    name: str
    options: dict[str, Any]


def text_filters(cfg) -> list[StageRef]:
    """The config's document filters that read text: the Filter stages after ``extract`` up to the
    first global workflow (dedup, percentiles), whose inputs text, ``lid_*`` and earlier outputs satisfy."""
    out, seen, have = [], {}, {"id", "text", "lid_lang", "lid_score"}
    started = not any(s.name == "extract" for s in cfg.stages)
    for s in cfg.stages:
        seen[s.name] = seen.get(s.name, 0) + 1
        label = s.name if seen[s.name] == 1 else f"{s.name}#{seen[s.name]}"
        cls = get_stage_class(s.name)
        if s.name == "extract":
            started = True
            continue
        if not started:
            continue
        if isinstance(cls, type) and issubclass(cls, Workflow):
            break
        if not (isinstance(cls, type) and issubclass(cls, Filter)):
            continue
        stage = build_stage(s.name, s.resolved())
        if not set(stage.inputs) <= have:
            continue
        have |= set(stage.outputs)
        out.append(StageRef(label, s.name, s.resolved()))
    return out


def _round2(x: float) -> float:
    if not np.isfinite(x) or x == 0:
        return float(x)
    return float(np.round(x, 1 - int(np.floor(np.log10(abs(x))))))


@dataclass
class Tunable:
    """One threshold option of one stage and the rule it drives."""
    label: str
    option: str
    rule: str               # the reason it drops with, e.g. gopher_quality_v1:alpha_words
    column: str
    op: str                 # < <= > >= true set
    value: Any              # the value the config runs with
    scores: np.ndarray      # the score column (float; NaN never fails)
    tuned: np.ndarray       # per row: True where the tuned value applies
    fixed: np.ndarray       # per row elsewhere: the threshold the config gives it (NaN: rule off)
    integer: bool = False   # a count threshold (min_words): candidates are whole numbers

    @property
    def key(self) -> str:
        return f"{self.label}.{self.option}"

    def fails(self, value) -> np.ndarray:
        thr = self.fixed.copy()
        thr[self.tuned] = np.nan if value is None or value is False else float(value)
        if self.op in ("true", "set"):
            return (self.scores > 0) & (thr > 0)
        with np.errstate(invalid="ignore"):
            return {"<": self.scores < thr, "<=": self.scores <= thr,
                    ">": self.scores > thr, ">=": self.scores >= thr}[self.op]

    def candidates(self, k: int = 40) -> list:
        """Values worth trying: the config's, off, and quantiles of the scores rounded to two
        significant digits (0.0487 -> 0.049: a proposal should not fit the labels' last digits)."""
        if self.op in ("true", "set"):
            return [True, False]
        v = self.scores[np.isfinite(self.scores)]
        qs = np.unique([_round2(x) for x in np.quantile(v, np.linspace(0, 1, k + 1))]) if len(v) else np.array([])
        out = [None] + ([] if self.value is None else [self.value]) + [float(x) for x in qs]
        if self.integer:
            out = [None if x is None else int(round(x)) for x in out]
        return list(dict.fromkeys(out))


@dataclass
class Scored:
    """A labelled set scored by a cascade: the table, the fixed drops, the tunable rules."""
    table: pa.Table
    good: np.ndarray
    stages: list[StageRef]
    fixed: list[tuple[str, np.ndarray, np.ndarray]]   # (stage label, drop mask, reason array)
    tunables: list[Tunable] = field(default_factory=list)
    #: tuning the thresholds of this language (``per_language``) rather than the stages' own
    language: str | None = None

    def subset(self, idx: np.ndarray) -> "Scored":
        tun = [Tunable(t.label, t.option, t.rule, t.column, t.op, t.value, t.scores[idx], t.tuned[idx], t.fixed[idx],
                       t.integer) for t in self.tunables]
        return Scored(self.table.take(pa.array(idx)), self.good[idx], self.stages,
                      [(l, m[idx], r[idx]) for l, m, r in self.fixed], tun, self.language)

    def values(self) -> dict[str, Any]:
        return {t.key: t.value for t in self.tunables}


def _row_langs(table: pa.Table, default: str) -> np.ndarray:
    # as stages._text.row_languages (zh-Hans -> zh), which the core may not import
    if "lid_lang" not in table.column_names:
        return np.full(table.num_rows, default, dtype=object)
    out = np.array([(x or default).lower().replace("_", "-").split("-")[0] or default
                    for x in table["lid_lang"].to_pylist()], dtype=object)
    return out


def score_labels(labels: pa.Table, stages: list[StageRef], *, chain: bool = True, language: str | None = None,
                 batch_size: int = 256) -> Scored:
    """Score ``labels`` with every stage of ``stages``, dropping nothing.

    ``chain``: each stage scores the text the previous one left (as in a run; C4 rewrites text);
    otherwise each scores the original text (the stage "alone"). A labels ``lang`` column
    becomes ``lid_lang`` unless a langid stage writes it. ``language``: the thresholds to tune
    are that language's ``per_language`` ones (rows of other languages keep theirs); otherwise
    the stages' own, for rows without a per-language override.
    """
    base = labels
    if "lang" in base.column_names and "lid_lang" not in base.column_names:
        base = base.append_column("lid_lang", base["lang"])
    built = [build_stage(s.name, s.options).ensure_setup() for s in stages]
    parts = []
    for i in range(0, base.num_rows, batch_size):
        t = base.slice(i, batch_size)
        orig_text = t["text"]
        for st in built:
            if not chain and "text" in t.column_names:
                t = t.set_column(t.schema.get_field_index("text"), "text", orig_text)
            t = st(t)
        parts.append(t)
    table = pa.concat_tables(parts, promote_options="default").combine_chunks()
    good = np.asarray(labels["good"].to_pylist(), dtype=bool)
    fixed, tunables = [], []
    for ref, st in zip(stages, built):
        rules = getattr(st, "rules", None)
        if not rules:
            reasons = st.decide(table)
            reasons = reasons.combine_chunks() if isinstance(reasons, pa.ChunkedArray) else reasons
            r = np.array(reasons.to_pylist(), dtype=object)
            fixed.append((ref.label, r != None, r))  # noqa: E711 - elementwise
            continue
        langs = _row_langs(table, getattr(st, "default_language", "en"))
        per_lang = getattr(st, "per_language", {}) or {}
        for rule, column, op, option in rules:
            col = table[column]
            if op == "set":
                vals = pc.fill_null(pc.not_equal(col, ""), False)
            elif op == "true":
                vals = pc.fill_null(col, False)
            else:
                vals = pc.fill_null(col.cast(pa.float64()), np.nan)
            vals = np.asarray(vals.to_numpy(zero_copy_only=False), dtype=np.float64)
            top = st.thresholds[option]
            fixed_thr = np.full(len(vals), np.nan if top is None or top is False else float(top))
            overridden = np.zeros(len(vals), dtype=bool)
            for lang, opts in per_lang.items():
                if option in opts:
                    rows = langs == lang
                    overridden |= rows
                    fixed_thr[rows] = np.nan if opts[option] is None or opts[option] is False else float(opts[option])
            if language is None:
                tuned, value = ~overridden, top
            else:
                tuned = langs == language
                value = per_lang.get(language, {}).get(option, top)
            # per_language values arrive as floats (their option type): the stage's own value says
            integer = isinstance(top, int) and not isinstance(top, bool)
            if integer and value is not None:
                value = int(value)
            tunables.append(Tunable(ref.label, option, f"{st.check}:{rule}", column, op, value, vals, tuned, fixed_thr,
                                    integer))
    return Scored(table, good, stages, fixed, tunables, language)


# ---------------------------------------------------------------------------
# evaluation

@dataclass
class Result:
    good: int
    bad: int
    good_dropped: int
    bad_dropped: int

    @property
    def good_kept(self) -> float:
        return 1 - self.good_dropped / self.good if self.good else float("nan")

    @property
    def bad_drop_rate(self) -> float:
        return self.bad_dropped / self.bad if self.bad else float("nan")

    @property
    def precision(self) -> float:
        """Share of the drops that are bad documents."""
        d = self.good_dropped + self.bad_dropped
        return self.bad_dropped / d if d else float("nan")

    def line(self) -> str:
        return (f"good dropped {self.good_dropped}/{self.good} ({100 * (1 - self.good_kept):.1f}%), "
                f"bad dropped {self.bad_dropped}/{self.bad} ({100 * self.bad_drop_rate:.1f}%), "
                f"precision {100 * self.precision:.1f}%")


def result(drop: np.ndarray, good: np.ndarray) -> Result:
    return Result(int(good.sum()), int((~good).sum()), int((drop & good).sum()), int((drop & ~good).sum()))


def evaluate(scored: Scored, values: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(drop mask, first reason per row)`` of the cascade with ``values`` (``label.option`` ->
    threshold) over the config's; stages in cascade order, the first failing rule names a drop."""
    values = dict(scored.values(), **(values or {}))
    n = len(scored.good)
    reason = np.full(n, None, dtype=object)
    fixed = {l: (m, r) for l, m, r in scored.fixed}
    by_stage: dict[str, list[Tunable]] = {}
    for t in scored.tunables:
        by_stage.setdefault(t.label, []).append(t)
    for ref in scored.stages:
        if ref.label in fixed:
            m, r = fixed[ref.label]
            sel = m & (reason == None)  # noqa: E711
            reason[sel] = r[sel]
            continue
        for t in by_stage.get(ref.label, []):
            sel = t.fails(values[t.key]) & (reason == None)  # noqa: E711
            reason[sel] = t.rule
    return reason != None, reason  # noqa: E711


def curve(scored: Scored, t: Tunable, values: dict[str, Any] | None = None) -> list[dict]:
    """For each candidate value of ``t``: good kept and bad dropped by the rule alone and by the
    cascade (other thresholds at ``values``, else the config's)."""
    out = []
    for v in t.candidates():
        alone = result(t.fails(v), scored.good)
        casc = result(evaluate(scored, dict(values or {}, **{t.key: v}))[0], scored.good)
        out.append({"value": v, "alone_good_kept": alone.good_kept, "alone_bad_dropped": alone.bad_drop_rate,
                    "cascade_good_kept": casc.good_kept, "cascade_bad_dropped": casc.bad_drop_rate})
    return out


def propose(scored: Scored, *, keep_good: float, tune: Iterable[str] | None = None,
            loosen_only: bool = False, min_move_precision: float = 0.0, max_steps: int = 200) -> dict[str, Any]:
    """Thresholds meeting "the cascade keeps >= ``keep_good`` of good rows" on ``scored`` with the
    most bad rows dropped (greedy coordinate search; a local optimum, not a proof of the best).

    First loosens, one threshold at a time, the move that gives back the most good rows per bad
    row let through, until the objective holds; then tightens while it keeps holding, taking the
    move that drops the most bad rows per good row lost. ``tune``: the ``label.option`` keys that
    may move (default all); ``loosen_only``: no value that drops a row the config's value keeps;
    ``min_move_precision``: a tightening move must drop at least this share of bad rows among the
    rows it adds (guards small label sets against moves that fit noise).
    Returns the full ``label.option -> value`` mapping.
    """
    allowed = set(tune) if tune is not None else {t.key for t in scored.tunables}
    unknown = allowed - {t.key for t in scored.tunables}
    if unknown:
        raise ValueError(f"unknown threshold(s) {sorted(unknown)}; known: {sorted(t.key for t in scored.tunables)}")
    good = scored.good
    n_good = int(good.sum())
    vals = scored.values()
    cands = {}
    for t in scored.tunables:
        if t.key in allowed:
            now = t.fails(t.value)
            cands[t.key] = [c for c in t.candidates() if not loosen_only or not (t.fails(c) & ~now).any()]

    def stats(v):
        d = evaluate(scored, v)[0]
        return int((d & good).sum()), int((d & ~good).sum())

    def best_move(score_of):
        """The candidate move with the highest ``score_of(g, b)`` (None: not allowed), or None."""
        best = None
        for k, cs in cands.items():
            for c in cs:
                if c == vals[k]:
                    continue
                g, b = stats(dict(vals, **{k: c}))
                score = score_of(g, b)
                if score is not None and (best is None or score > best[0]):
                    best = (score, k, c, g, b)
        return best

    gd, bd = stats(vals)
    need = n_good - int(np.ceil(keep_good * n_good - 1e-9))  # most good rows the cascade may drop
    loosen = lambda g, b: ((gd - g) / max(bd - b, 0.5), -(bd - b)) if g < gd else None  # noqa: E731
    tighten = lambda g, b: (None if g > need or b <= bd  # noqa: E731
                            or (b - bd) < min_move_precision * ((b - bd) + max(g - gd, 0))
                            else ((b - bd) / max(g - gd, 0.5), b - bd))
    for score_of, until_met in ((loosen, True), (tighten, False)):
        for _ in range(max_steps):
            if until_met and gd <= need:
                break
            best = best_move(score_of)
            if best is None:
                break
            _, k, c, gd, bd = best
            vals[k] = c
    return vals


def overlay_dict(scored: Scored, values: dict[str, Any]) -> dict:
    """The changed thresholds as an overlay: ``{"stages": {label: {option: value}}}``, or
    ``{label: {per_language: {lang: {option: value}}}}`` when tuning one language."""
    base = scored.values()
    out: dict[str, dict[str, Any]] = {}
    for k, v in values.items():
        if v != base.get(k):
            label, option = k.split(".", 1)
            if scored.language is None:
                out.setdefault(label, {})[option] = v
            else:
                out.setdefault(label, {}).setdefault("per_language", {}).setdefault(scored.language, {})[option] = v
    return {"stages": out}


def check_with_stages(scored: Scored, values: dict[str, Any]) -> np.ndarray:
    """The cascade's drop mask from the stages' own ``decide`` built with ``values``: the search's
    fast path (:func:`evaluate`) must agree with it."""
    ov = overlay_dict(scored, values)["stages"]
    drop = np.zeros(len(scored.good), dtype=bool)
    for ref in scored.stages:
        st = build_stage(ref.name, merge_stage_options(ref.options, ov.get(ref.label, {})))
        r = st.decide(scored.table)
        r = r.combine_chunks() if isinstance(r, pa.ChunkedArray) else r
        drop |= pc.is_valid(r).to_numpy(zero_copy_only=False)
    return drop


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of ``score`` for ``positive`` (Mann-Whitney U with average ranks; NaN rows ignored)."""
    ok = np.isfinite(score)
    s, y = score[ok], positive[ok].astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if not n1 or not n0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ss = s[order]
    i = 0
    while i < len(ss):  # average ranks over ties
        j = i
        while j + 1 < len(ss) and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def cross_validate(scored: Scored, *, folds: int = 5, seed: int = 0, **propose_kw) -> Result:
    """``propose`` on all folds but one, evaluated on that one, summed over the folds: how a
    proposal procedure does on rows it did not see (to choose its settings without a test set);
    copies of one text stay in one fold."""
    fold = _group_folds(scored.good, text_groups(scored.table) if "text" in scored.table.column_names else None,
                        folds, np.random.default_rng(seed))
    tot = Result(0, 0, 0, 0)
    for k in range(folds):
        fit, ev = scored.subset(np.flatnonzero(fold != k)), scored.subset(np.flatnonzero(fold == k))
        r = result(evaluate(ev, propose(fit, **propose_kw))[0], ev.good)
        tot = Result(tot.good + r.good, tot.bad + r.bad, tot.good_dropped + r.good_dropped,
                     tot.bad_dropped + r.bad_dropped)
    return tot
