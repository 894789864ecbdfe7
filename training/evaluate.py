"""Evaluate a checkpoint on a labelled data set (fixed interface, used by others).

    python -m training.evaluate --task {collectibles,car} --data DIR [--weights DIR] [--json]
        [--group-by source|label:<head> ...] [--condition plain|photo_like|portrait_2x3|square ...]
        [--label-map FILE] [--batch-size 32]
        [--backend auto|torch|onnx]

Reads any format `training.data.load_dataset` knows (class folders, CSV manifest, Label Studio
export). Without --weights it evaluates the checkpoint the app ships (`inference.load_model(task)`:
Hub, HF cache, else the bundled copy); with --weights DIR that folder. With --json, stdout holds
exactly one JSON object:

    {"task", "n_images", "heads": {head: {"accuracy", "macro_f1", "per_class", "confusion_matrix",
     "labels", "n"}}, "per_source": {source: {"n_images", "heads": {head: {"accuracy", "n"}}}},
     "in_domain_rate", "checkpoint", "n_skipped", ["per_group": {column: {group: ...}}]}

Rows with an unknown label are left out of that head only. Skipped files go to stderr, as does
the progress bar. Errors in the data or the checkpoint: a message on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from inference.hub import HUB_PREFIX
from inference.images import load_image
from inference.model import CheckpointError
from inference.predictor import BACKENDS, BATCH_SIZE, load_model
from inference.tasks import TASKS, TaskSpec, get_task
from training.data import DataError, load_dataset, load_label_map
from training.augment import crop_size_for_aspect, photo_like_view
from training.report import group_accuracy, summarize

EXIT_ERROR = 2
CONDITIONS = ("plain", "photo_like", "portrait_2x3", "square")
# "portrait_2x3" and "square" centre-crop each picture to that shape (width / height): if a model reads
# the class from the picture's shape (2:3 book scans, square album art), recall drops under them.
REFRAME_ASPECTS = {"portrait_2x3": 2 / 3, "square": 1.0}
PHOTO_LIKE_SEED = 20_000   # not a seed training uses for its own photo-like views


def group_keys(samples: Sequence[Any], column: str) -> list[str]:
    """The group of each sample for `--group-by`: "source", or "label:<head>" (unknown -> "unknown")."""
    if column == "source":
        return [str(s.source or "unknown") for s in samples]
    if column.startswith("label:"):
        head = column.removeprefix("label:")
        return [str(s.labels.get(head) or "unknown") for s in samples]
    raise ValueError(f"cannot group by {column!r}; use 'source' or 'label:<head>'")


def condition_loader(condition: str, task: str) -> Callable[[Any, int], Any]:
    """How a sample is shown to the model: as stored ("plain"), re-staged as a phone photo
    ("photo_like": training.augment.photo_like_view with a fixed seed per image), or centre-cropped
    to another picture shape ("portrait_2x3", "square")."""
    if condition == "plain":
        return lambda sample, i: str(sample.path)
    if condition == "photo_like":
        return lambda sample, i: photo_like_view(load_image(sample.path), task, seed=PHOTO_LIKE_SEED + i)[0]
    if condition in REFRAME_ASPECTS:
        return lambda sample, i: centre_crop_to_aspect(load_image(sample.path), REFRAME_ASPECTS[condition])
    raise ValueError(f"unknown condition {condition!r}; use one of {', '.join(CONDITIONS)}")


def centre_crop_to_aspect(image: Image.Image, aspect: float) -> Image.Image:
    """The largest centred crop with width / height = `aspect`."""
    w, h = image.size
    cw, ch = crop_size_for_aspect(w, h, aspect)
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch))


def predict_samples(predictor, samples: Sequence[Any], batch_size: int = BATCH_SIZE,
                    progress: bool = True, condition: str = "plain"
                    ) -> tuple[list[int], dict[str, np.ndarray], list[bool], list[tuple[Path, str]]]:
    """Run the predictor over the samples in chunks.

    Returns the indices of the samples that were predicted, probabilities per head (rows in that
    order, columns in the spec's label order), the in-domain flags, and the samples that could not
    be read at prediction time (path, reason): a bad image costs that image only.
    """
    spec = predictor.spec
    load = condition_loader(condition, spec.name)
    kept: list[int] = []
    rows: dict[str, list[list[float]]] = {h: [] for h in spec.heads}
    in_domain: list[bool] = []
    failed: list[tuple[Path, str]] = []

    def add(index: int, prediction) -> None:
        kept.append(index)
        in_domain.append(bool(prediction.in_domain))
        for head, labels in spec.heads.items():
            p = prediction.heads[head].probabilities
            rows[head].append([p[label] for label in labels])

    bar = tqdm(total=len(samples), desc=f"evaluate ({condition})", unit="img", file=sys.stderr, disable=not progress)
    with bar:
        for start in range(0, len(samples), batch_size):
            chunk = list(range(start, min(start + batch_size, len(samples))))
            try:
                predictions = predictor.predict_batch([load(samples[i], i) for i in chunk])
                for i, prediction in zip(chunk, predictions):
                    add(i, prediction)
            except (OSError, ValueError):
                # One unreadable image must not sink the batch: retry one by one.
                for i in chunk:
                    try:
                        add(i, predictor.predict_batch([load(samples[i], i)])[0])
                    except (OSError, ValueError) as one_err:
                        failed.append((samples[i].path, f"{type(one_err).__name__}: {one_err}"))
            bar.update(len(chunk))
    probs = {h: np.asarray(v, dtype=np.float64).reshape(-1, len(spec.heads[h])) for h, v in rows.items()}
    return kept, probs, in_domain, failed


def evaluate_samples(predictor, samples: Sequence[Any], batch_size: int = BATCH_SIZE,
                     group_by: Sequence[str] = (), progress: bool = True, condition: str = "plain") -> dict[str, Any]:
    """The evaluation result for already loaded samples (the dict printed by --json)."""
    spec: TaskSpec = predictor.spec
    kept, probs, in_domain, failed = predict_samples(predictor, samples, batch_size, progress, condition)
    for path, reason in failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    used = [samples[i] for i in kept]
    true_labels = [{h: s.labels.get(h) for h in spec.heads} for s in used]
    summary = summarize(spec, true_labels, probs, [str(s.source or "unknown") for s in used])
    result: dict[str, Any] = {
        "task": spec.name,
        **summary,
        "in_domain_rate": round(float(np.mean(in_domain)), 4) if in_domain else None,
        "checkpoint": predictor.description,
        "n_skipped": len(failed),
    }
    if group_by:
        result["per_group"] = {column: group_accuracy(spec, true_labels, probs, group_keys(used, column))
                               for column in group_by}
    return result


def format_table(result: dict[str, Any]) -> str:
    """A readable report of an evaluation result."""
    def f(x):
        return "   –  " if x is None else f"{x:.4f}"

    lines = [f"task: {result['task']}    images: {result['n_images']}    skipped: {result.get('n_skipped', 0)}",
             f"checkpoint: {result.get('checkpoint', '–')}"]
    if result.get("in_domain_rate") is not None:
        lines.append(f"predicted in-domain: {100 * result['in_domain_rate']:.1f}%")
    for head, m in result["heads"].items():
        labels = m["labels"]
        width = max(len(label) for label in labels + ["label"]) + 2
        lines += ["", f"== {head}: accuracy {f(m['accuracy'])}   macro F1 {f(m['macro_f1'])}   (n={m.get('n', '–')})",
                  f"{'label':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
        for label in labels:
            c = m["per_class"][label]
            lines.append(f"{label:<{width}}{f(c['precision']):>10}{f(c['recall']):>10}{f(c['f1']):>10}{c['support']:>9}")
        lines += ["confusion matrix (rows true, columns predicted):",
                  " " * width + "".join(f"{label[:9]:>10}" for label in labels)]
        for label, row in zip(labels, m["confusion_matrix"]):
            lines.append(f"{label:<{width}}" + "".join(f"{v:>10}" for v in row))

    def group_table(title: str, table: dict[str, Any]) -> list[str]:
        heads = list(result["heads"])
        width = max([len(g) for g in table] + [len(title)]) + 2
        out = ["", f"{title:<{width}}{'images':>8}" + "".join(f"{h[:16]:>18}" for h in heads)]
        for group, g in table.items():
            cells = "".join(f"{f(g['heads'][h]['accuracy']) + ' (' + str(g['heads'][h]['n']) + ')':>18}" for h in heads)
            out.append(f"{group:<{width}}{g['n_images']:>8}{cells}")
        return out

    for condition, c in (result.get("per_condition") or {}).items():
        lines.append(f"condition {condition}: " + "   ".join(
            f"{h} accuracy {f(m['accuracy'])} macro F1 {f(m['macro_f1'])}" for h, m in c["heads"].items()))
    lines += group_table("per source", result.get("per_source") or {})
    for column, table in (result.get("per_group") or {}).items():
        lines += group_table(f"by {column}", table)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--data", required=True, type=Path,
                        help="class folders, a CSV manifest, or a Label Studio export (folder or file)")
    parser.add_argument("--weights", help="checkpoint folder (config.json + model.safetensors); default: the "
                                          "checkpoint the app ships. 'hf-hub:<repo id>' loads from the Hub.")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--group-by", action="append", default=[], metavar="COLUMN",
                        help="add accuracy per group: 'source' or 'label:<head>' (repeatable)")
    parser.add_argument("--label-map", type=Path, help="JSON file mapping raw label names to task labels")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--condition", action="append", choices=CONDITIONS, default=[],
                        help="how photos are shown: 'plain' (as stored, the default), 'photo_like' "
                             "(re-staged as phone photos), 'portrait_2x3' or 'square' (centre-cropped to "
                             "that shape: a shape shortcut shows as lost recall); with several, "
                             "'per_condition' compares them and the main figures are the first one's")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    spec = get_task(args.task)
    for column in args.group_by:
        head = column.removeprefix("label:")
        if column != "source" and not (column.startswith("label:") and head in spec.heads):
            parser.error(f"--group-by {column!r}: use 'source' or 'label:<head>' with a head of "
                         f"{spec.name!r} ({', '.join(spec.heads)})")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR

    try:
        label_map = load_label_map(args.label_map) if args.label_map else None
        # min_per_class=0: an evaluation set may lack a class (only coins, only damaged cars).
        dataset = load_dataset(spec, args.data, label_map=label_map, min_per_class=0, check_images=True)
    except DataError as err:
        return fail(str(err))
    except OSError as err:
        return fail(f"cannot read the data: {err}")
    for path, reason in dataset.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not dataset.samples:
        return fail(f"{args.data}: no usable images")
    print(f"{len(dataset.samples)} images ({dataset.format}), {len(dataset.skipped)} skipped", file=sys.stderr)

    source = None
    if args.weights:
        if args.weights.startswith(HUB_PREFIX):
            source = args.weights
        elif not Path(args.weights).is_dir():
            return fail(f"{args.weights}: weights folder not found")
        else:
            source = Path(args.weights)
    try:
        predictor = load_model(spec.name, source, backend=args.backend)
    except CheckpointError as err:
        return fail(f"cannot load the checkpoint: {err}")
    except OSError as err:   # e.g. no Hub access and no bundled copy
        return fail(f"cannot load the {spec.name} checkpoint: {err}")

    conditions = list(dict.fromkeys(args.condition or ["plain"]))
    results = {c: evaluate_samples(predictor, dataset.samples, args.batch_size, args.group_by,
                                   progress=not args.no_progress, condition=c) for c in conditions}
    result = results[conditions[0]]
    result["condition"] = conditions[0]
    if len(conditions) > 1:
        result["per_condition"] = {c: {"n_images": r["n_images"], "in_domain_rate": r["in_domain_rate"],
                                       "heads": {h: {k: m[k] for k in ("accuracy", "macro_f1", "n")}
                                                 for h, m in r["heads"].items()},
                                       "per_source": r["per_source"],
                                       **({"per_group": r["per_group"]} if "per_group" in r else {})}
                                   for c, r in results.items()}
    result["n_skipped"] += len(dataset.skipped)
    if not result["n_images"]:
        return fail("no image could be evaluated")
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
