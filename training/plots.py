"""The run's figures: loss and accuracy curves, confusion matrices, reliability diagrams.

matplotlib's object-oriented API (`matplotlib.figure.Figure`, rendered by Agg): no pyplot state and no
GUI backend, so the plots are safe in a server or a worker thread.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from inference.predictor import softmax
from training.calibration import expected_calibration_error, reliability_bins


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", format="png")
    return path


def _none_to_nan(values):
    return [np.nan if v is None else float(v) for v in values]


def plot_history(history: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """`loss.png` (train/validation loss) and `accuracy.png` (per head: train, validation scans, validation
    photos from held-out sources). Nothing for an empty history."""
    if not history:
        return []
    out_dir = Path(out_dir)
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for key, style, name in (("train_loss", "-o", "train"), ("val_loss", "-s", "validation")):
        if any(row.get(key) is not None for row in history):
            ax.plot(epochs, _none_to_nan(row.get(key) for row in history), style, ms=3, label=name)
    ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    paths = [_save(fig, out_dir / "loss.png")]

    series: dict[tuple[str, str], list] = {}
    for i, row in enumerate(history):
        for head, acc in (row.get("train_acc") or {}).items():
            series.setdefault((head, "train"), [None] * len(history))[i] = acc
        for kind, accs in (row.get("val_acc") or {}).items():
            for head, acc in accs.items():
                series.setdefault((head, f"validation {kind}s"), [None] * len(history))[i] = acc
    heads = list(dict.fromkeys(head for head, _ in series))
    styles = {"train": "--", "validation scans": "-", "validation photos": ":"}
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for (head, name), values in series.items():
        ax.plot(epochs, _none_to_nan(values), styles.get(name, "-."), color=f"C{heads.index(head) % 10}", marker=".",
                label=f"{head} {name}")
    ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy per head")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    paths.append(_save(fig, out_dir / "accuracy.png"))
    return paths


def plot_confusion_matrices(summary: Mapping[str, Any], out_dir: Path, prefix: str = "confusion") -> list[Path]:
    """One `<prefix>_<head>.png` per head of a `summarize_heads()` result: counts annotated, colour by
    row share (recall), labels on both axes, accuracy in the title."""
    out_dir = Path(out_dir)
    paths = []
    for head, m in summary["heads"].items():
        labels = m["labels"]
        cm = np.asarray(m["confusion_matrix"], dtype=float).reshape(len(labels), len(labels))
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        size = 2.2 + 0.75 * len(labels)
        fig = Figure(figsize=(size + 1.0, size))
        ax = fig.subplots()
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                        color="white" if share[i, j] > 0.5 else "black", fontsize=9)
        ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set(xlabel="predicted", ylabel="true")
        acc = m.get("accuracy")
        n = m.get("n", int(cm.sum()))
        ax.set_title(f"{head}: accuracy {'–' if acc is None else f'{acc:.4f}'} (n={n})")
        paths.append(_save(fig, out_dir / f"{prefix}_{head}.png"))
    return paths


def plot_reliability(logits: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray],
                     temperatures: Mapping[str, float], out_path: Path, n_bins: int = 15) -> Path:
    """Reliability diagram, one panel per head: accuracy against confidence before (T = 1) and
    after temperature scaling (T = temperatures[head], 1 if absent), ECE in the legend.

    `logits[head]` is (N, C) raw logits and `y[head]` (N,) label indices (< 0 = unknown).
    """
    heads = list(logits)
    fig = Figure(figsize=(4.2 * max(len(heads), 1), 4.2))
    axes = np.atleast_1d(fig.subplots(1, max(len(heads), 1)))
    for ax, head in zip(axes, heads):
        t = float(temperatures.get(head, 1.0))
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
        for temp, color, name in ((1.0, "C3", "before"), (t, "C0", f"after (T={t:.2f})")):
            p = softmax(logits[head], temp)
            bins = reliability_bins(p, y[head], n_bins)
            used = bins["count"] > 0
            ece = expected_calibration_error(p, y[head], n_bins)
            ax.plot(bins["confidence"][used], bins["accuracy"][used], "-o", color=color, ms=4,
                    label=f"{name}: ECE {ece:.4f}")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=head)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    return _save(fig, out_path)
