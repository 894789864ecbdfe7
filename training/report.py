"""Metrics, calibration, plots and the model card: pure functions, no model or data loading.

Training (`training.train`) and evaluation (`training.evaluate`) compute predictions; this module
turns them into the numbers in `metrics.json`, the PNG plots and the Hugging Face model card
`README.md`. Every number in the card comes from the metrics dict it is given.

Plots use matplotlib's object-oriented API (`matplotlib.figure.Figure`, rendered by Agg): no
pyplot state and no GUI backend, so they are safe in a server or a worker thread.

Conventions:
- label indices follow the order of the task spec (`spec.heads[head]`);
- in calibration helpers a label below 0 means "unknown" and that row is ignored;
- floats in metric dicts are rounded to 4 decimals; a metric over zero rows is None.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from inference.tasks import TaskSpec, get_task

DIGITS = 4

# The systems this project replaces (../shared/docs/SEEDS.md): accuracy on their own validation splits.
EARLIER_SYSTEMS: dict[str, dict[str, Any]] = {
    "collectibles": {"system": "Keras CNN + Flask app (3 conv layers, 224 px, 20 epochs)",
                     "accuracy": {"category": 0.75}},
    "car": {"system": "EfficientNet-B4 multi-task + Streamlit app (224 px, 15 epochs)",
            "accuracy": {"cleanliness": 0.873, "damage": 0.912}},
}

SPLIT_TITLES = {"val": "validation", "val_photo": "photo-like validation", "test": "test"}

INTENDED_USE = {
    "collectibles": (
        "Collectors and resellers sorting photos of their items into books, coins, drumsticks, "
        "stamps and vinyl records, for example before listing them for sale or cataloguing a "
        "collection. The model answers one of the five categories and says when a photo does not "
        "look like any of them."),
    "car": (
        "Fleet operators of a ride-hailing service checking the phone photos drivers send: is the "
        "car clean, slightly dirty or very dirty (a reminder to wash it), and is there visible "
        "damage (a reason to have the car inspected). It supports people; it does not replace an "
        "inspection, and a `damaged` answer should be confirmed by a person."),
}

LIMITATIONS_COMMON = [
    "Backgrounds and sources can be shortcuts: each image source has its own backdrop, framing and "
    "resolution. The per-source accuracy table above is there so such a shortcut shows up; a "
    "source far below the others is a warning sign.",
    "Scans and studio shots are not phone photos: most training images are flat scans or "
    "showroom/catalogue pictures. Compare the plain and the photo-like validation figures; real "
    "users' photos (hands, tables, shelves, car parks, night, rain) can be harder still.",
    "Out-of-domain photos are flagged by a distance on the backbone features; a photo that is "
    "unusual but in scope may be flagged too, and an odd photo may slip through.",
    "Confidence is calibrated on the validation split; it is not a guarantee on other data.",
]

LIMITATIONS_TASK = {
    "car": [
        "Shadows can be taken for dirt, and dirt in shadow can be missed (a known failure of the "
        "earlier system too).",
        "Small or distant scratches and dents are easy to miss; photograph damage from close by.",
        "`slightly_dirty` has few training images, so it is the least reliable cleanliness label; "
        "cleanliness is ordinal (clean < slightly_dirty < very_dirty) and most errors are between "
        "neighbouring labels.",
    ],
    "collectibles": [
        "Flat printed art is confusable: book covers, album sleeves and stamps that show a "
        "portrait or lettering.",
        "Drumstick training images are small (64 px) ImageNet photos; sharp close-ups of sticks "
        "are the real test.",
        "One item per photo is assumed: a photo with several kinds of items gets one answer.",
    ],
}


# --------------------------------------------------------------------------------------------
# Metrics

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


def summarize(spec: TaskSpec, true_labels: Sequence[Mapping[str, str | None]],
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


# --------------------------------------------------------------------------------------------
# Calibration

def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _valid(a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, y = np.asarray(a, dtype=np.float64), np.asarray(y, dtype=int).reshape(-1)
    if a.ndim != 2 or len(a) != len(y):
        raise ValueError(f"expected (N, C) scores and N labels, got {a.shape} and {y.shape}")
    keep = y >= 0
    return a[keep], y[keep]


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Equal-width confidence bins over (0, 1]: mean confidence, accuracy and count per bin."""
    probs, y = _valid(probs, y)
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == y) if len(probs) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=correct.astype(float), minlength=n_bins) / count
    return {"edges": edges, "confidence": mean_conf, "accuracy": accuracy, "count": count}


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins.

    Rows with y < 0 are ignored; with no rows the ECE is 0.
    """
    bins = reliability_bins(probs, y, n_bins)
    total = bins["count"].sum()
    if total == 0:
        return 0.0
    used = bins["count"] > 0
    gap = np.abs(bins["accuracy"][used] - bins["confidence"][used])
    return float((gap * bins["count"][used]).sum() / total)


def fit_temperature(logits: np.ndarray, y: np.ndarray, max_iter: int = 100) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) (LBFGS on log T), clamped to [0.05, 20].

    Rows with y < 0 are ignored; with no rows T is 1.
    """
    import torch

    logits, y = _valid(logits, y)
    if len(y) == 0:
        return 1.0
    z = torch.as_tensor(logits, dtype=torch.float64)
    target = torch.as_tensor(y, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")
    lo, hi = math.log(0.05), math.log(20.0)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.clamp(lo, hi).exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    t = float(log_t.detach().exp())
    if not math.isfinite(t):
        return 1.0
    return float(min(max(t, 0.05), 20.0))


def calibration_summary(logits: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray],
                        n_bins: int = 15) -> dict[str, dict]:
    """Fit a temperature per head and report ECE before/after: the `calibration` block of metrics.json."""
    out = {}
    for head, z in logits.items():
        t = fit_temperature(z, y[head])
        out[head] = {"temperature": _r(t),
                     "ece_before": _r(expected_calibration_error(softmax(z), y[head], n_bins)),
                     "ece_after": _r(expected_calibration_error(softmax(z, t), y[head], n_bins)),
                     "n": int((np.asarray(y[head]) >= 0).sum())}
    return out


# --------------------------------------------------------------------------------------------
# Plots

def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", format="png")
    return path


def _none_to_nan(values):
    return [np.nan if v is None else float(v) for v in values]


def plot_history(history: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """`loss.png` (train/val loss) and `accuracy.png` (train/val accuracy per head, combined
    validation accuracy, photo-like validation accuracy if recorded). Nothing for an empty history."""
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

    heads: list[str] = []
    for row in history:
        for key in ("train_acc", "val_acc", "val_photo_acc"):
            for head in (row.get(key) or {}):
                if head not in heads:
                    heads.append(head)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    colors = [f"C{i}" for i in range(10)]
    for i, head in enumerate(heads):
        color = colors[i % len(colors)]
        for key, style, name in (("train_acc", "--", "train"), ("val_acc", "-", "val"),
                                 ("val_photo_acc", ":", "photo-like val")):
            values = [(row.get(key) or {}).get(head) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, _none_to_nan(values), style, color=color, marker=".", label=f"{head} {name}")
    combined = [row.get("val_acc_combined") for row in history]
    if len(heads) > 1 and any(v is not None for v in combined):
        ax.plot(epochs, _none_to_nan(combined), "-", color="black", lw=2, label="combined val")
    ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy per head")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "accuracy.png"))
    return paths


def plot_confusion_matrices(summary: Mapping[str, Any], out_dir: Path, prefix: str = "confusion") -> list[Path]:
    """One `<prefix>_<head>.png` per head of a `summarize()` result: counts annotated, colour by
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
        ax.set_title(f"{head}: accuracy {_fmt(acc)} (n={n})")
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


# --------------------------------------------------------------------------------------------
# Model card

def _fmt(x: Any, digits: int = DIGITS) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.1f}%"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    s = float(seconds)
    return f"{s:.0f} s ({s / 60:.1f} min)" if s >= 60 else f"{s:.1f} s"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v):
        return _fmt(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _split_title(split: str) -> str:
    return SPLIT_TITLES.get(split, split)


def _yaml_str(s: str) -> str:
    return json.dumps(str(s), ensure_ascii=False)   # a JSON string is a valid double-quoted YAML scalar


def _front_matter(spec: TaskSpec, metrics: Mapping[str, Any]) -> str:
    lines = ["---", "library_name: timm", "license: apache-2.0", "pipeline_tag: image-classification",
             "tags:", "- image-classification", "- timm", f"- {spec.name}"]
    results = []
    for split, summary in (metrics.get("splits") or {}).items():
        metric_lines = []
        for head, m in (summary.get("heads") or {}).items():
            for key, kind, name in (("accuracy", "accuracy", "accuracy"), ("macro_f1", "f1", "macro F1")):
                if m.get(key) is not None:
                    metric_lines += [f"      - type: {kind}",
                                     f"        value: {float(m[key])}",
                                     f"        name: {_yaml_str(f'{head} {name}')}"]
        if metric_lines:
            results += ["  - task:", "      type: image-classification", "      name: Image Classification",
                        "    dataset:", f"      name: {_yaml_str(f'{spec.name} {_split_title(split)}')}",
                        "      type: imagefolder", f"      split: {_yaml_str(split)}",
                        "    metrics:", *metric_lines]
    if results:
        lines += ["model-index:", f"- name: {_yaml_str(spec.hub_repo.split('/')[-1])}", "  results:", *results]
    lines.append("---")
    return "\n".join(lines)


def _summary_section(spec: TaskSpec, config: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[str]:
    dc = config.get("data_config") or {}
    input_size = dc.get("input_size")
    size = f"{input_size[1]}×{input_size[2]} px, {input_size[0]} channels" if input_size and len(input_size) == 3 else "–"
    arch = config.get("architecture") or metrics.get("architecture") or "–"
    out = ["## Summary", "",
           f"- **Task:** `{spec.name}` ({spec.title}): one photo in, one label per head out, plus an "
           "in-domain check (\"this does not look like ...\").",
           f"- **Architecture:** `{arch}` (timm) backbone, global average pooling, dropout and one linear "
           "layer per head.",
           f"- **Input:** {size}; the whole photo is resized to the input size "
           f"(`crop_mode={dc.get('crop_mode', '–')}`, `crop_pct={dc.get('crop_pct', '–')}`, "
           f"{dc.get('interpolation', '–')} interpolation), so nothing at the edges is cut off and every "
           "source is resized the same way.",
           f"- **Normalisation:** mean {dc.get('mean', '–')}, std {dc.get('std', '–')} (timm data config "
           "stored in `config.json`; inference uses the same transform).",
           "", _table(["head", "labels"], [[h, ", ".join(f"`{label}`" for label in labels)] for h, labels in spec.heads.items()])]
    temps = config.get("temperature") or {}
    if temps:
        out += ["", "Calibration temperatures applied at inference: "
                + ", ".join(f"{h} T={_fmt(float(t), 3)}" for h, t in temps.items()) + "."]
    ood = config.get("ood") or {}
    if ood:
        details = ", ".join(f"{k}={_fmt(v)}" for k, v in ood.items() if isinstance(v, (int, float, str)))
        out += ["", f"Out-of-domain detector settings: {details}."]
    return out


def _usage_section(spec: TaskSpec) -> list[str]:
    heads = ", ".join(spec.heads)
    return ["## How to use", "",
            "With this project's `inference` package (the Space's code):", "",
            "```python",
            "from huggingface_hub import snapshot_download",
            "from PIL import Image",
            "from inference.predictor import load_model",
            "",
            f"folder = snapshot_download(\"{spec.hub_repo}\")    # config.json, model.safetensors, ...",
            f"model = load_model(\"{spec.name}\", folder)   # or load_model(\"{spec.name}\"): Hub, cache, else bundled copy",
            "prediction = model.predict(Image.open(\"photo.jpg\"))",
            "if not prediction.in_domain:",
            f"    print(\"{spec.ood_message}\")",
            f"for head, p in prediction.heads.items():    # {heads}",
            "    print(head, p.label, round(p.confidence, 3), p.probabilities)",
            "```", "",
            "Many photos at once: `model.predict_batch([...])`. Evaluate this checkpoint on a labelled folder:",
            "", "```bash",
            f"python -m training.evaluate --task {spec.name} --data DATA_DIR --weights CHECKPOINT_DIR --json",
            "```"]


def _caching(tr: Mapping[str, Any]) -> str | None:
    """Caching time, and how many caches an earlier run had already filled (their time is not counted)."""
    if tr.get("cache_seconds") is None:
        return None
    reused, total = tr.get("caches_reused"), tr.get("caches")
    if not reused:
        return _duration(tr["cache_seconds"])
    return (f"{_duration(tr['cache_seconds'])}; {reused} of {total} activation caches were reused from an earlier "
            "run on the same photos and frozen layers, so a fresh run also spends the time to fill them")


def _training_section(metrics: Mapping[str, Any]) -> list[str]:
    tr = metrics.get("training") or {}
    out = ["## Training data and procedure", ""]
    if not tr:
        return out + ["No training record was stored with these metrics."]
    facts = [("training images", tr.get("n_train")), ("validation images", tr.get("n_val")),
             ("epochs run", tr.get("epochs_run")), ("best epoch (lowest validation loss)", tr.get("best_epoch")),
             ("training time", _duration(tr.get("seconds")) if tr.get("seconds") is not None else None),
             ("seconds per epoch", tr.get("seconds_per_epoch")),
             ("feature caching", _caching(tr))]
    out += [f"- **{name}:** {_fmt(v, 1) if isinstance(v, float) else _fmt(v)}" for name, v in facts if v is not None]
    out += ["", "Stratified 80/20 split with a fixed seed, grouped by perceptual hash so near-duplicate "
            "images never straddle training and validation. The checkpoint kept is the one with the "
            "lowest validation loss."]
    args = tr.get("args") or {}
    if args:
        rows = [[f"`{k}`", json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else str(v)]
                for k, v in args.items()]
        out += ["", "Training arguments:", "", _table(["argument", "value"], rows)]
    return out


def _results_section(spec: TaskSpec, splits: Mapping[str, Any]) -> list[str]:
    out = ["## Results", ""]
    if not splits:
        return out + ["No evaluation results were stored."]
    names = list(splits)
    out += ["Accuracy and macro F1 per head; `n` is the number of images with a known label for that head. "
            + "; ".join(f"*{_split_title(s)}*: {splits[s].get('n_images', '–')} images" for s in names) + ".", ""]
    header = ["head"] + [f"{_split_title(s)} {col}" for s in names for col in ("accuracy", "macro F1", "n")]
    rows = []
    for head in spec.heads:
        row = [head]
        for s in names:
            m = (splits[s].get("heads") or {}).get(head) or {}
            row += [m.get("accuracy"), m.get("macro_f1"), m.get("n")]
        rows.append(row)
    out.append(_table(header, rows))

    out += ["", "### Per class", ""]
    for head, labels in spec.heads.items():
        header = ["class"] + [f"{_split_title(s)} {col}" for s in names for col in ("precision", "recall", "F1", "support")]
        rows = []
        for label in labels:
            row = [f"`{label}`"]
            for s in names:
                c = (((splits[s].get("heads") or {}).get(head) or {}).get("per_class") or {}).get(label) or {}
                row += [c.get("precision"), c.get("recall"), c.get("f1"), c.get("support")]
            rows.append(row)
        out += [f"**{head}**", "", _table(header, rows), ""]

    out += ["### Per source", "",
            "Accuracy per image source (images with a known label in brackets). A source well below the "
            "others points to a shortcut (backdrop, framing, resolution) or to a kind of photo the model "
            "has not learnt.", ""]
    for s in names:
        per_source = splits[s].get("per_source") or {}
        if not per_source:
            continue
        rows = []
        for source, g in per_source.items():
            row = [source, g.get("n_images")]
            for head in spec.heads:
                h = (g.get("heads") or {}).get(head) or {}
                row.append(f"{_fmt(h.get('accuracy'))} ({h.get('n', 0)})")
            rows.append(row)
        out += [f"**{_split_title(s)}**", "", _table(["source", "images"] + list(spec.heads), rows), ""]
    return out


def _calibration_section(metrics: Mapping[str, Any]) -> list[str]:
    cal = metrics.get("calibration")
    if not cal:
        return []
    rows = [[head, c.get("temperature"), c.get("ece_before"), c.get("ece_after")] for head, c in cal.items()]
    return ["## Calibration", "",
            "Temperature scaling fitted per head on the validation split (the temperatures are stored in "
            "`config.json` and applied at inference). Expected calibration error (15 equal-width bins) "
            "before and after:", "",
            _table(["head", "temperature", "ECE before", "ECE after"], rows)]


def _ood_section(spec: TaskSpec, metrics: Mapping[str, Any]) -> list[str]:
    ood = metrics.get("ood")
    if not ood:
        return []
    out = ["## Out-of-domain photos", "",
           f"When a photo is unlike the training data the answer says so (`in_domain: false` with a score; "
           f"the app shows \"{spec.ood_message}\").", "",
           f"- **Method:** {ood.get('method', '–')}",
           f"- **AUROC** (in-domain validation vs out-of-domain photos): {_fmt(ood.get('auroc'))}",
           f"- **In-domain validation photos rejected:** {_pct(ood.get('in_domain_rejection_rate'))} "
           f"({_fmt(ood.get('in_domain_rejection_rate'))})",
           f"- **Threshold:** {_fmt(ood.get('threshold'))}"]
    per_set = ood.get("per_ood_set") or {}
    if per_set:
        rows = [[name, v.get("n"), v.get("auroc")] for name, v in per_set.items()]
        out += ["", _table(["out-of-domain set", "images", "AUROC"], rows)]
    return out


def _gradcam_section(metrics: Mapping[str, Any]) -> list[str]:
    g = metrics.get("gradcam")
    if not g:
        return []
    out = ["## Grad-CAM sanity check", "",
           f"On {_fmt(g.get('n'))} correctly classified composited images (object mask known), on average "
           f"**{_pct(g.get('object_mass_mean'))}** of the Grad-CAM heat-map mass lies on the object "
           f"(object_mass_mean = {_fmt(g.get('object_mass_mean'))}). A low share means the model is right "
           "for the wrong reason (background, framing)."]
    extra = {k: v for k, v in g.items() if k not in ("object_mass_mean", "n") and isinstance(v, (int, float))}
    if extra:
        out += ["", _table(["figure", "value"], [[k, v] for k, v in extra.items()])]
    return out


def _plots_section(spec: TaskSpec, out_dir: Path) -> list[str]:
    captions = [("loss.png", "Training and validation loss"),
                ("accuracy.png", "Accuracy per head (train, validation) and combined")]
    captions += [(f"confusion_{head}.png", f"Confusion matrix, {head} (validation)") for head in spec.heads]
    known = {name for name, _ in captions}
    for path in sorted(out_dir.glob("confusion_*.png")):     # e.g. confusion_photo_<head>.png
        if path.name not in known:
            rest = path.stem.removeprefix("confusion_")
            head = next((h for h in spec.heads if rest.endswith(f"_{h}")), None)
            split = rest.removesuffix(f"_{head}") if head else rest
            split = {"photo": "photo-like validation"}.get(split, _split_title(split)).replace("_", " ")
            captions.append((path.name, f"Confusion matrix, {head} ({split})" if head else f"Confusion matrix ({split})"))
    captions += [("reliability.png", "Reliability diagram before and after temperature scaling")]
    present = [(name, cap) for name, cap in captions if (out_dir / name).is_file()]
    if not present:
        return []
    out = ["## Plots", ""]
    for name, cap in present:
        out += [f"**{cap}**", "", f"![{cap}]({name})", ""]
    return out[:-1]


def _worst_errors_section(metrics: Mapping[str, Any]) -> list[str]:
    errors = metrics.get("worst_errors")
    if not errors:
        return []
    rows = [[e["split"], e["head"], f"`{e['image']}`", e["source"], e["true"], e["predicted"], e["confidence"]]
            for e in errors]
    return ["## Worst errors", "",
            "The most confident wrong answers on the validation photos (plain scans and photo-like views). "
            "The training run also draws them with their Grad-CAM heat maps in `worst_errors.png`, which is "
            "kept out of the published folder because it shows the (third-party) training photos.", "",
            _table(["split", "head", "image", "source", "true", "predicted", "confidence"], rows)]


def _comparison_section(spec: TaskSpec, splits: Mapping[str, Any]) -> list[str]:
    earlier = EARLIER_SYSTEMS.get(spec.name)
    out = ["## Comparison with the earlier system", ""]
    if not earlier:
        return out + ["There is no earlier system for this task."]
    names = list(splits)
    header = ["head", "earlier system"] + [f"this model, {_split_title(s)}" for s in names]
    rows = []
    for head in spec.heads:
        row = [head, _fmt(earlier["accuracy"].get(head), 3)]
        row += [_fmt(((splits[s].get("heads") or {}).get(head) or {}).get("accuracy")) for s in names]
        rows.append(row)
    return out + [f"Accuracy. The earlier system ({earlier['system']}) reported its figures on its own "
                  "validation split, not on the images used here, so the comparison is indicative.", "",
                  _table(header, rows)]


def _limitations_section(spec: TaskSpec, splits: Mapping[str, Any]) -> list[str]:
    items = list(LIMITATIONS_TASK.get(spec.name, [])) + LIMITATIONS_COMMON
    # The scarcest class per head, from the validation figures.
    val = splits.get("val") or next(iter(splits.values()), {})
    for head, m in (val.get("heads") or {}).items():
        per_class = m.get("per_class") or {}
        if len(per_class) > 1:
            supports = [c.get("support", 0) for c in per_class.values()]
            label, c = min(per_class.items(), key=lambda kv: kv[1].get("support", 0))
            if c.get("support", 0) < 0.5 * max(supports):
                n = c.get("support", 0)
                items.append(f"Scarcest `{head}` class in validation: `{label}` with {n} image{'s' * (n != 1)} "
                             f"(F1 {_fmt(c.get('f1'))}, against up to {max(supports)} for other classes); "
                             "its figures are the least certain.")
    return ["## Limitations", ""] + [f"- {item}" for item in items]


def _reproduce_section(spec: TaskSpec, metrics: Mapping[str, Any]) -> list[str]:
    tr = metrics.get("training") or {}
    command = tr.get("command")
    out = ["## Reproduce", ""]
    if command:
        out += ["The command that produced this checkpoint and these figures:", "", "```bash", str(command), "```"]
    else:
        out += ["The exact command was not recorded; the general form is:", "", "```bash",
                f"python -m training.train --task {spec.name} --data DATA_DIR", "```"]
    out += ["", "Evaluate it again (prints the metrics above as JSON):", "", "```bash",
            f"python -m training.evaluate --task {spec.name} --data DATA_DIR --weights THIS_FOLDER --json "
            "--group-by source", "```"]
    return out


def write_model_card(out_dir: Path, spec: TaskSpec | str, config: Mapping[str, Any],
                     metrics: Mapping[str, Any]) -> Path:
    """Write `out_dir/README.md`, a Hugging Face model card built from config.json and metrics.json.

    Only "task" and "splits" are required in `metrics`; every other section appears when its
    key does. Plots are embedded when their PNG exists in `out_dir`.
    """
    spec = get_task(spec) if isinstance(spec, str) else spec
    out_dir = Path(out_dir)
    splits = metrics.get("splits") or {}
    heads_text = "; ".join(f"{h} ({', '.join(labels)})" for h, labels in spec.heads.items())
    parts = [
        _front_matter(spec, metrics),
        f"# {spec.title} classifier (`{spec.name}`)",
        f"An image classifier for the {spec.title.lower()} tab of the Image Understanding Space. "
        f"Heads: {heads_text}. Generated by `training/report.py` from `metrics.json`.",
        "\n".join(_summary_section(spec, config, metrics)),
        "\n".join(_usage_section(spec)),
        "\n".join(_training_section(metrics)),
        "\n".join(_results_section(spec, splits)),
        "\n".join(_calibration_section(metrics)),
        "\n".join(_ood_section(spec, metrics)),
        "\n".join(_gradcam_section(metrics)),
        "\n".join(_worst_errors_section(metrics)),
        "\n".join(_plots_section(spec, out_dir)),
        "\n".join(_comparison_section(spec, splits)),
        "## Intended use\n\n" + INTENDED_USE.get(
            spec.name, f"Sorting photos into the {spec.title.lower()} labels above, with a person in the loop."),
        "\n".join(_limitations_section(spec, splits)),
        "\n".join(_reproduce_section(spec, metrics)),
    ]
    text = "\n\n".join(p.rstrip() for p in parts if p.strip()) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
