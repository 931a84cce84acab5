"""How well a labeller agrees with people: ``datapipe classify eval LABELS --human HUMAN``.

``LABELS``: the output of ``datapipe classify label`` (``text``, ``label``, ``label_status`` and,
when the server returned logprobs, ``label_expected``). ``HUMAN``: JSONL files (or a folder of
them) with ``text`` and a binary ``label`` (1/true/good vs 0/false/bad), e.g. DCLM's human quality
labels in ``../shared/data/quality/dclm-human-quality-labels/``. Rows are matched by their text
(a hash of it), so the two files need no common ids.

Reported: accuracy of ``label >= threshold`` (the prompt's ``positive_from``: 3 for the 0-5
FineWeb-Edu scale) against the human label, next to the majority-class baseline; ROC AUC of the
expected score and of the argmax label (threshold-free: does the labeller rank good pages above
bad ones?); Spearman's rank correlation; the confusion matrix (human label x LLM label, and at the
threshold); the same per source; and the parse-failure rate.

DCLM's two files overlap (780 lines, 499 distinct pages: ``agreement_data.jsonl`` holds the 281
pages all annotators agreed on, ``majority_data.jsonl`` all 499 with the majority label).
:func:`load_human` keeps each page once and names its group as the ``source``: ``agreement``
(the annotators agreed) or ``majority`` (the rest).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datapipe.mix.fit import spearman
from datapipe.tune import LabelError, load_labels as load_good_bad, roc_auc

#: DCLM's human labels inside ../shared/data (see its README)
DCLM_DIR = "quality/dclm-human-quality-labels"


class AgreementError(ValueError):
    """Labels or human labels that cannot be compared: says which file and why."""


def text_key(text: str) -> str:
    """The join key of a document: the first 16 hex digits of the SHA-1 of its text."""
    return hashlib.sha1((text or "").encode("utf-8")).hexdigest()[:16]


def _human_files(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.jsonl"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if not files:
        raise AgreementError(f"no .jsonl files in {', '.join(map(str, paths))}")
    # DCLM: the pages the annotators agreed on first, so they keep the "agreement" source
    return sorted(files, key=lambda f: (not f.stem.startswith("agreement"), f.name))


def load_human(paths: str | Path | Sequence[str | Path]) -> tuple[pa.Table, dict]:
    """Human labels, one row per distinct text: ``id`` (:func:`text_key`), ``text``, ``human``
    (bool), ``source`` (the file's name up to ``_data``). Returns (table, info) where info counts
    the lines read, the distinct pages, and pages dropped because two files disagree on them."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    rows: dict[str, dict] = {}
    lines = conflicts = 0
    conflicted: set[str] = set()
    for f in _human_files(paths):
        try:
            t = load_good_bad([f])
        except LabelError as e:
            raise AgreementError(str(e)) from None
        lines += t.num_rows
        src = f.stem.removesuffix("_data")
        for text, good in zip(t["text"].to_pylist(), t["good"].to_pylist()):
            k = text_key(text)
            if k in rows:
                if rows[k]["human"] != good and k not in conflicted:
                    conflicted.add(k)
                    conflicts += 1
                continue
            rows[k] = {"id": k, "text": text, "human": good, "source": src}
    for k in conflicted:
        rows.pop(k)
    table = pa.Table.from_pylist(list(rows.values()), schema=pa.schema([
        ("id", pa.string()), ("text", pa.large_string()), ("human", pa.bool_()), ("source", pa.string())]))
    return table, {"lines": lines, "distinct": len(rows) + conflicts, "conflicting_dropped": conflicts,
                   "kept": len(rows)}


def prompt_threshold(prompt_id: str | None) -> float | None:
    """The ``positive_from`` of the template a prompt id (``quality_edu_v1-1a2b3c4d``) came from."""
    if not prompt_id:
        return None
    from .prompts import Prompt
    try:
        p = Prompt.load(prompt_id.rsplit("-", 1)[0])
    except (FileNotFoundError, ValueError):
        return None
    return float(p.positive_from) if p.positive_from is not None else None


def _metrics(label: np.ndarray, expected: np.ndarray, human: np.ndarray, ok: np.ndarray,
             threshold: float) -> dict:
    """Agreement of the ok rows; ``label``/``expected`` NaN where missing."""
    n = int(ok.sum())
    h = human[ok]
    lab = label[ok]
    pred = lab >= threshold
    m: dict = {"n": n, "human_positive_rate": round(float(h.mean()), 4) if n else None}
    if not n:
        return m
    m["accuracy"] = round(float((pred == h).mean()), 4)
    m["majority_baseline"] = round(float(max(h.mean(), 1 - h.mean())), 4)
    m["predicted_positive_rate"] = round(float(pred.mean()), 4)
    m["roc_auc_label"] = _r(roc_auc(lab, h))
    e = expected[ok]
    if np.isfinite(e).any():
        m["n_expected"] = int(np.isfinite(e).sum())
        m["roc_auc_expected"] = _r(roc_auc(e, h))
        fe = np.isfinite(e)
        m["spearman_expected"] = _r(spearman(e[fe], h[fe].astype(float)))
        m["expected_mean_by_human"] = {str(int(v)): _r(float(e[fe & (h == v)].mean())) if (fe & (h == v)).any() else None
                                       for v in (False, True)}
    m["spearman_label"] = _r(spearman(lab, h.astype(float)))
    tp = int((pred & h).sum())
    fp = int((pred & ~h).sum())
    fn = int((~pred & h).sum())
    tn = int((~pred & ~h).sum())
    m["at_threshold"] = {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
                         "precision": _r(tp / (tp + fp)) if tp + fp else None,
                         "recall": _r(tp / (tp + fn)) if tp + fn else None}
    return m


def _r(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def evaluate_labels(labels: str | Path | pa.Table, human: str | Path | Sequence | pa.Table, *,
                    threshold: float | None = None, prompt: str | None = None) -> dict:
    """Agreement of an LLM label set with human labels (module docstring). ``threshold``: labels
    at or above it count as positive (default: the prompt's ``positive_from``, else 3 for labels
    above 1, else 1)."""
    if not isinstance(labels, pa.Table):
        p = Path(labels)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file (make one with `datapipe classify label`)")
        labels = pq.read_table(p)
    for col in ("text", "label"):
        if col not in labels.column_names:
            raise AgreementError(f"labels lack a {col!r} column (columns: {labels.column_names})")
    info = {}
    if not isinstance(human, pa.Table):
        human, info = load_human(human)
    hum = {k: (g, s) for k, g, s in zip(human["id"].to_pylist(), human["human"].to_pylist(),
                                        human["source"].to_pylist())}
    keys = [text_key(t) for t in labels["text"].to_pylist()]
    match = np.array([k in hum for k in keys])
    if not match.any():
        raise AgreementError("no labelled document matches a human-labelled one (rows are matched by their text)")
    n = labels.num_rows
    status = (labels["label_status"].to_pylist() if "label_status" in labels.column_names
              else ["ok" if x is not None else "parse_error" for x in labels["label"].to_pylist()])
    raw = labels["label"].to_pylist()
    try:
        label = np.array([float(x) if x is not None else np.nan for x in raw])
    except ValueError:
        raise AgreementError("labels are not numeric: `classify eval` compares quality scores") from None
    expected = (np.array([np.nan if x is None else float(x) for x in labels["label_expected"].to_pylist()])
                if "label_expected" in labels.column_names else np.full(n, np.nan))
    prompt_id = prompt or (labels["label_prompt"][0].as_py() if "label_prompt" in labels.column_names and n else None)
    if threshold is None:
        threshold = prompt_threshold(prompt_id)
    if threshold is None:
        threshold = 3.0 if np.nanmax(label, initial=0) > 1 else 1.0
    h = np.array([bool(hum[k][0]) if k in hum else False for k in keys])
    src_h = [hum[k][1] if k in hum else None for k in keys]
    if "source" in labels.column_names:  # the labelled file's own sources win over the human file's groups
        src = [s if s is not None else sh for s, sh in zip(labels["source"].to_pylist(), src_h)]
    else:
        src = src_h
    st = np.array(status)
    ok = match & (st == "ok") & np.isfinite(label)
    parse_fail = int((match & (st == "parse_error")).sum())
    not_labelled = int((match & ~np.isin(st, ["ok", "parse_error"])).sum())
    # replies whose text did not parse, those that logprobs rescued included
    if "label_parse_error" in labels.column_names:
        perr = np.array([x is not None for x in labels["label_parse_error"].to_pylist()])
        text_fail = int((match & np.isin(st, ["ok", "parse_error"]) & (perr | (st == "parse_error"))).sum())
    else:
        text_fail = parse_fail
    answered = parse_fail + int((match & (st == "ok")).sum())
    res: dict = {
        "labels_rows": n, "matched": int(match.sum()), "human_file": info,
        "prompt_id": prompt_id,
        "label_model": labels["label_model"][0].as_py() if "label_model" in labels.column_names and n else None,
        "threshold": threshold,
        "parse_failures": parse_fail, "not_labelled": not_labelled,
        "parse_failure_rate": round(parse_fail / max(1, answered), 4),
        "text_parse_failures": text_fail, "text_parse_failure_rate": round(text_fail / max(1, answered), 4),
    }
    if "label_parsed_by" in labels.column_names:
        how: dict = {}
        for x, m in zip(labels["label_parsed_by"].to_pylist(), match):
            if m and x:
                how[x] = how.get(x, 0) + 1
        res["read_from"] = how
    res |= _metrics(label, expected, h, ok, threshold)
    classes = sorted({x for x in label[ok]})
    res["confusion"] = {"rows": "human 0/1", "cols": [_fmt(c) for c in classes], "matrix": [
        [int((ok & (h == hv) & (label == c)).sum()) for c in classes] for hv in (False, True)]}
    res["per_source"] = {s: _metrics(label, expected, h, ok & (np.array(src) == s), threshold)
                         for s in sorted({x for x, m in zip(src, match) if m and x is not None})}
    return res


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def format_agreement(res: dict, *, title: str = "labeller vs. human labels") -> str:
    """The terminal report of :func:`evaluate_labels`."""
    def line(m: dict) -> str:
        if not m.get("n"):
            return "no labelled rows"
        parts = [f"accuracy {m['accuracy']:.3f} at label >= {res['threshold']:g} (majority baseline "
                 f"{m['majority_baseline']:.3f}, predicted positive {m['predicted_positive_rate']:.0%})",
                 f"ROC AUC label {_s(m.get('roc_auc_label'))}"]
        if "roc_auc_expected" in m:
            parts.append(f"ROC AUC expected score {_s(m['roc_auc_expected'])}")
            parts.append(f"Spearman expected {_s(m.get('spearman_expected'))}")
        else:
            parts.append(f"Spearman label {_s(m.get('spearman_label'))}")
        return ", ".join(parts)
    hf = res.get("human_file") or {}
    out = [f"{title}: {res['matched']} of {res['labels_rows']} labelled documents have a human label"
           + (f" (human file: {hf['lines']} lines, {hf['distinct']} distinct pages, deduplicated by text"
              + (f", {hf['conflicting_dropped']} with conflicting labels dropped" if hf.get('conflicting_dropped') else "")
              + ")" if hf else ""),
           f"  prompt {res['prompt_id']}, model {res['label_model']}",
           f"  replies whose text did not parse: {res['text_parse_failures']} ({res['text_parse_failure_rate']:.1%}); "
           f"left without a label: {res['parse_failures']} ({res['parse_failure_rate']:.1%}); not labelled {res['not_labelled']}"
           + ("; labels read from " + ", ".join(f"{k} {v}" for k, v in sorted(res["read_from"].items()))
              if res.get("read_from") else ""),
           f"  {line(res)}"]
    if res.get("expected_mean_by_human"):
        e = res["expected_mean_by_human"]
        out.append(f"  mean expected score: human-bad pages {_s(e.get('0'))}, human-good pages {_s(e.get('1'))}")
    cm = res["confusion"]
    out.append("  confusion (rows: human 0/1, cols: LLM label " + " ".join(cm["cols"]) + "):")
    for hv, row in zip(("0", "1"), cm["matrix"]):
        out.append(f"    human {hv}: " + " ".join(f"{v:4d}" for v in row))
    for s, m in res["per_source"].items():
        out.append(f"  source {s} (n={m['n']}): {line(m)}")
    return "\n".join(out)


def _s(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"



def classifier_vs_human(model_dir: str | Path, human: pa.Table) -> dict:
    """A trained classifier (``datapipe classify train``) scored on human-labelled pages: ROC AUC
    of its score (expected class value) and accuracy of "predicted class >= positive_from"."""
    from .apply import load_classifier, read_card
    card = read_card(model_dir)
    clf = load_classifier(model_dir)
    proba = clf.predict_proba(human["text"].combine_chunks())
    values = np.array(card["class_values"], dtype=float)
    score = proba @ values
    pred = values[proba.argmax(axis=1)] >= float(card["positive_from"])
    h = np.array(human["human"].to_pylist(), dtype=bool)
    return {"n": int(len(h)), "roc_auc": _r(roc_auc(score, h)), "accuracy": round(float((pred == h).mean()), 4),
            "majority_baseline": round(float(max(h.mean(), 1 - h.mean())), 4),
            "spearman": _r(spearman(score, h.astype(float))),
            "positive_from": card["positive_from"], "predicted_positive_rate": round(float(pred.mean()), 4)}
