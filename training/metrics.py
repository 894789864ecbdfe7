"""Classification metrics of predictions: per head, per class, per source. Pure functions.

Conventions: label indices follow the order of the task spec (`spec.heads[head]`); a row whose label
is unknown for a head is left out of that head only; floats are rounded to 4 decimals; a metric over
zero rows is None.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from inference.tasks import TaskSpec
from training.data import Sample

DIGITS = 4
WORST_ERRORS = 10


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), DIGITS)


def head_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix.

    Indices refer to `labels`. The confusion matrix has rows = true, columns = predicted and
    covers every label, present or not. Macro F1 averages over the labels that occur in
    `y_true` or `y_pred` (scikit-learn's default), so a class absent from a small evaluation set
    does not count as F1 0. With no rows, accuracy and macro F1 are None.
    """
    y_true = np.asarray(y_true, dtype=int).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=int).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {len(y_true)} rows, y_pred {len(y_pred)}")
    n_labels = len(labels)
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_labels):
        raise ValueError(f"label indices must lie in [0, {n_labels})")
    idx = list(range(n_labels))
    if len(y_true):
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
        cm = confusion_matrix(y_true, y_pred, labels=idx)
    else:
        p = r = f = s = np.zeros(n_labels)
        cm = np.zeros((n_labels, n_labels), int)
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    return {
        "accuracy": _r((y_true == y_pred).mean()) if len(y_true) else None,
        "macro_f1": _r(np.mean([f[i] for i in present])) if present else None,
        "per_class": {label: {"precision": _r(p[i]), "recall": _r(r[i]), "f1": _r(f[i]), "support": int(s[i])}
                      for i, label in enumerate(labels)},
        "confusion_matrix": cm.astype(int).tolist(),
        "labels": list(labels),
    }


def _check_rows(spec: TaskSpec, true_labels: Sequence[Mapping], probs: Mapping[str, np.ndarray],
                groups: Sequence[str]) -> int:
    n = len(true_labels)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups/sources for {n} rows")
    for head, labels in spec.heads.items():
        if head not in probs:
            raise ValueError(f"no probabilities for head {head!r}")
        shape = np.shape(probs[head])
        if shape != (n, len(labels)):
            raise ValueError(f"probs[{head!r}] has shape {shape}, expected {(n, len(labels))}")
    return n


def _known(spec: TaskSpec, true_labels: Sequence[Mapping], head: str) -> tuple[np.ndarray, np.ndarray]:
    """Row indices with a known label for `head`, and those labels as indices."""
    rows, ys = [], []
    for i, row in enumerate(true_labels):
        label = row.get(head)
        if label is not None:
            rows.append(i)
            ys.append(spec.label_index(head, label))
    return np.asarray(rows, dtype=int), np.asarray(ys, dtype=int)


def group_accuracy(spec: TaskSpec, true_labels: Sequence[Mapping[str, str | None]],
                   probs: Mapping[str, np.ndarray], groups: Sequence[str]) -> dict:
    """Accuracy per head within each group: {group: {"n_images", "heads": {head: {"accuracy", "n"}}}}.

    `groups[i]` is row i's group (a source, a condition, a label...). Rows with an unknown label
    are left out of that head only; a head with no known rows in a group has accuracy None.
    """
    _check_rows(spec, true_labels, probs, groups)
    groups = [str(g) if g is not None and g != "" else "unknown" for g in groups]
    preds = {head: np.asarray(probs[head]).argmax(axis=1) for head in spec.heads}
    known = {head: _known(spec, true_labels, head) for head in spec.heads}
    group_arr = np.asarray(groups, dtype=object)
    table = {}
    for group in sorted(set(groups)):
        in_group = group_arr == group
        heads = {}
        for head in spec.heads:
            rows, ys = known[head]
            mask = in_group[rows] if len(rows) else np.zeros(0, bool)
            k = int(mask.sum())
            acc = float((preds[head][rows[mask]] == ys[mask]).mean()) if k else None
            heads[head] = {"accuracy": _r(acc), "n": k}
        table[group] = {"n_images": int(in_group.sum()), "heads": heads}
    return table


def summarize_heads(spec: TaskSpec, true_labels: Sequence[Mapping[str, str | None]],
              probs: Mapping[str, np.ndarray], sources: Sequence[str]) -> dict:
    """Metrics per head (rows with an unknown label left out of that head only) and per source.

    `probs[head]` is (N, C) for all N rows, columns in the spec's label order.
    """
    n = _check_rows(spec, true_labels, probs, sources)
    heads = {}
    for head, labels in spec.heads.items():
        rows, ys = _known(spec, true_labels, head)
        pred = np.asarray(probs[head]).argmax(axis=1)[rows] if len(rows) else np.zeros(0, int)
        heads[head] = {**head_metrics(ys, pred, labels), "n": int(len(rows))}
    return {"n_images": n, "heads": heads, "per_source": group_accuracy(spec, true_labels, probs, sources)}


def worst_errors(spec: TaskSpec, val: list[Sample], probs: dict[str, np.ndarray]) -> list[dict]:
    """The most confident wrong answers on the validation pictures, by file name (the pictures are third-party)."""
    errors = []
    for h in spec.heads:
        for i, sample in enumerate(val):
            if sample.labels[h] is None:
                continue
            predicted = int(probs[h][i].argmax())
            if predicted != spec.label_index(h, sample.labels[h]):
                errors.append((float(probs[h][i].max()), h, i, predicted))
    errors.sort(reverse=True)
    return [{"kind": val[i].kind, "head": h, "image": val[i].path.name, "source": val[i].source,
             "true": val[i].labels[h], "predicted": spec.heads[h][p], "confidence": round(conf, 4)}
            for conf, h, i, p in errors[:WORST_ERRORS]]
