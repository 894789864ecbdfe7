"""Evaluate a checkpoint on labelled data (fixed interface, used by others).

    python -m training.evaluate --task {collectibles,car} --data [KIND=]DIR [--data ...] [--weights DIR] [--json]
        [--negatives DIR] [--other-task DIR] [--split all|val] [--seed 0] [--val-fraction 0.2]
        [--group-by source|label:<head> ...] [--condition plain|portrait_2x3|square ...]
        [--label-map FILE] [--batch-size 32] [--backend auto|torch|onnx]

Reads every format `training.data.load_dataset` knows, several folders at once, each a `scan` or a
`photo` folder (as in training). `--split val` evaluates only the validation side of the split
training makes from the same arguments and seed (held-out photo sources), so a held-out run's
figures can be measured again. Without --weights it evaluates the checkpoint the app ships
(`inference.load_model(task)`: Hub, HF cache, else the bundled copy). With --json, stdout holds
exactly one JSON object:

    {"task", "checkpoint", "split", "n_images", "n_skipped", "heads", "per_source", "in_domain_rate",
     "by_kind": {"scan"|"photo": {"n_images", "heads", "per_source", "in_domain_rate"}},
     ["outliers": {"negative"|"other_task": {"n", "accepted"}}], ["per_group"], ["per_condition"]}

`heads` holds accuracy, macro F1, per-class precision/recall/F1 and the confusion matrix per head over
the labelled pictures of every kind; rows with an unknown label are left out of that head only.
Skipped files and the progress bar go to stderr. Errors in the data or the checkpoint: a message on
stderr and exit code 2.
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
from inference.predictor import BACKENDS, BATCH_SIZE, Predictor, load_model
from inference.tasks import TASKS, TaskSpec, get_task
from training.data import KINDS, OUTLIER_KINDS, DataError, Sample, add_data_arguments, load_all, load_label_map
from training.metrics import group_accuracy, summarize_heads
from training.splits import holdout_split

EXIT_ERROR = 2
CONDITIONS = ("plain", "portrait_2x3", "square")
# "portrait_2x3" and "square" centre-crop each picture to that shape (width / height): if a model reads
# the class from the picture's shape (2:3 book scans, square album art), recall drops under them.
REFRAME_ASPECTS = {"portrait_2x3": 2 / 3, "square": 1.0}


def group_keys(samples: Sequence[Sample], column: str) -> list[str]:
    """The group of each sample for `--group-by`: "source", or "label:<head>" (unknown -> "unknown")."""
    if column == "source":
        return [str(s.source or "unknown") for s in samples]
    if column.startswith("label:"):
        head = column.removeprefix("label:")
        return [str(s.labels.get(head) or "unknown") for s in samples]
    raise ValueError(f"cannot group by {column!r}; use 'source' or 'label:<head>'")


def centre_crop_to_aspect(image: Image.Image, aspect: float) -> Image.Image:
    """The largest centred crop with width / height = `aspect`."""
    w, h = image.size
    cw, ch = (w, max(1, round(w / aspect))) if aspect > w / h else (max(1, round(h * aspect)), h)
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch))


def condition_loader(condition: str) -> Callable[[Sample], Any]:
    """How a sample is shown to the model: as stored ("plain"), or centre-cropped to another shape."""
    if condition == "plain":
        return lambda sample: str(sample.path)
    if condition in REFRAME_ASPECTS:
        return lambda sample: centre_crop_to_aspect(load_image(sample.path), REFRAME_ASPECTS[condition])
    raise ValueError(f"unknown condition {condition!r}; use one of {', '.join(CONDITIONS)}")


def predict_samples(predictor: Predictor, samples: Sequence[Sample], batch_size: int = BATCH_SIZE,
                    progress: bool = True, condition: str = "plain"
                    ) -> tuple[list[int], dict[str, np.ndarray], list[bool], list[tuple[Path, str]]]:
    """Run the predictor over the samples in chunks.

    Returns the indices of the samples that were predicted, probabilities per head (rows in that
    order, columns in the spec's label order), the in-domain flags, and the samples that could not
    be read at prediction time (path, reason): a bad image costs that image only.
    """
    spec = predictor.spec
    load = condition_loader(condition)
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

    with tqdm(total=len(samples), desc=f"evaluate ({condition})", unit="img", file=sys.stderr,
              disable=not progress) as bar:
        for start in range(0, len(samples), batch_size):
            chunk = list(range(start, min(start + batch_size, len(samples))))
            try:
                for i, prediction in zip(chunk, predictor.predict_batch([load(samples[i]) for i in chunk])):
                    add(i, prediction)
            except (OSError, ValueError):
                # One unreadable image must not sink the batch: retry one by one.
                for i in chunk:
                    try:
                        add(i, predictor.predict_batch([load(samples[i])])[0])
                    except (OSError, ValueError) as one_err:
                        failed.append((samples[i].path, f"{type(one_err).__name__}: {one_err}"))
            bar.update(len(chunk))
    probs = {h: np.asarray(v, dtype=np.float64).reshape(-1, len(spec.heads[h])) for h, v in rows.items()}
    return kept, probs, in_domain, failed


def _labelled_summary(spec: TaskSpec, used: list[Sample], probs: dict[str, np.ndarray], in_domain: list[bool],
                      rows: list[int]) -> dict[str, Any]:
    summary = summarize_heads(spec, [used[i].labels for i in rows], {h: p[rows] for h, p in probs.items()},
                        [str(used[i].source or "unknown") for i in rows])
    return {**summary, "in_domain_rate": round(float(np.mean([in_domain[i] for i in rows])), 4) if rows else None}


def evaluate_samples(predictor: Predictor, samples: Sequence[Sample], batch_size: int = BATCH_SIZE,
                     group_by: Sequence[str] = (), progress: bool = True, condition: str = "plain") -> dict[str, Any]:
    """The evaluation result for already loaded samples (the dict printed by --json)."""
    spec: TaskSpec = predictor.spec
    kept, probs, in_domain, failed = predict_samples(predictor, samples, batch_size, progress, condition)
    for path, reason in failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    used = [samples[i] for i in kept]
    labelled = [i for i, s in enumerate(used) if s.in_domain]
    result: dict[str, Any] = {"task": spec.name, "checkpoint": predictor.description,
                              **_labelled_summary(spec, used, probs, in_domain, labelled), "n_skipped": len(failed)}
    result["by_kind"] = {kind: _labelled_summary(spec, used, probs, in_domain,
                                                 [i for i in labelled if used[i].kind == kind])
                         for kind in KINDS if any(used[i].kind == kind for i in labelled)}
    outliers = {kind: [in_domain[i] for i, s in enumerate(used) if s.kind == kind] for kind in OUTLIER_KINDS}
    if any(outliers.values()):
        result["outliers"] = {kind: {"n": len(flags), "accepted": round(float(np.mean(flags)), 4)}
                              for kind, flags in outliers.items() if flags}
    if group_by:
        true_labels = [used[i].labels for i in labelled]
        result["per_group"] = {column: group_accuracy(spec, true_labels, {h: p[labelled] for h, p in probs.items()},
                                                      group_keys([used[i] for i in labelled], column))
                               for column in group_by}
    return result


def format_table(result: dict[str, Any]) -> str:
    """A readable report of an evaluation result."""
    def f(x):
        return "   –  " if x is None else f"{x:.4f}"

    lines = [f"task: {result['task']}    split: {result.get('split', 'all')}    images: {result['n_images']}    "
             f"skipped: {result.get('n_skipped', 0)}", f"checkpoint: {result.get('checkpoint', '–')}"]
    for kind, k in result.get("by_kind", {}).items():
        lines.append(f"{kind}s: {k['n_images']} images, in-domain {100 * (k['in_domain_rate'] or 0):.1f}%   " + "   ".join(
            f"{h} accuracy {f(m['accuracy'])}" for h, m in k["heads"].items()))
    for kind, o in (result.get("outliers") or {}).items():
        lines.append(f"{kind.replace('_', '-')} pictures: {o['n']}, accepted as in-domain {100 * o['accepted']:.1f}%")
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
    for kind, k in result.get("by_kind", {}).items():
        lines += group_table(f"{kind}s per source", k["per_source"])
    for column, table in (result.get("per_group") or {}).items():
        lines += group_table(f"by {column}", table)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    add_data_arguments(parser, TASKS)
    parser.add_argument("--split", choices=("all", "val"), default="all",
                        help="'val': only the validation side of training's split of these arguments (held-out "
                             "photo sources), with --seed and --val-fraction as in training")
    parser.add_argument("--weights", help="checkpoint folder (config.json + model.safetensors); default: the "
                                          "checkpoint the app ships. 'hf-hub:<repo id>' loads from the Hub.")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--group-by", action="append", default=[], metavar="COLUMN",
                        help="add accuracy per group: 'source' or 'label:<head>' (repeatable)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--condition", action="append", choices=CONDITIONS, default=[],
                        help="how photos are shown: 'plain' (as stored, the default), 'portrait_2x3' or 'square' "
                             "(centre-cropped to that shape: a shape shortcut shows as lost recall); with several, "
                             "'per_condition' compares them and the main figures are the first one's")
    return parser


def load_predictor(spec: TaskSpec, weights: str | None, backend: str) -> Predictor:
    if weights and not weights.startswith(HUB_PREFIX) and not Path(weights).is_dir():
        raise CheckpointError(f"{weights}: weights folder not found")
    source = weights if weights and weights.startswith(HUB_PREFIX) else (Path(weights) if weights else None)
    return load_model(spec.name, source, backend=backend)


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
        samples, folders = load_all(spec, args.data, args.negatives, args.other_task, label_map, args.seed,
                                    min_per_class=0)
        if args.split == "val":
            samples = holdout_split(samples, args.val_fraction, args.seed).val
    except DataError as err:
        return fail(str(err))
    except OSError as err:
        return fail(f"cannot read the data: {err}")
    skipped = [line for folder in folders for line in folder.get("skipped", [])]
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    counts = ", ".join(f"{folder['kind']} {folder['n_images']}" for folder in folders)
    print(f"{len(samples)} images ({counts}), split {args.split}", file=sys.stderr)
    try:
        predictor = load_predictor(spec, args.weights, args.backend)
    except (CheckpointError, OSError) as err:   # OSError: e.g. no Hub access and no bundled copy
        return fail(f"cannot load the {spec.name} checkpoint: {err}")

    conditions = list(dict.fromkeys(args.condition or ["plain"]))
    results = {c: evaluate_samples(predictor, samples, args.batch_size, args.group_by,
                                   progress=not args.no_progress, condition=c) for c in conditions}
    result = {**results[conditions[0]], "split": args.split, "condition": conditions[0]}
    result["n_skipped"] += len(skipped)
    if len(conditions) > 1:
        result["per_condition"] = {c: {"n_images": r["n_images"], "in_domain_rate": r["in_domain_rate"],
                                       "heads": {h: {k: m[k] for k in ("accuracy", "macro_f1", "n")}
                                                 for h, m in r["heads"].items()},
                                       "per_source": r["per_source"],
                                       **({"per_group": r["per_group"]} if "per_group" in r else {})}
                                   for c, r in results.items()}
    if not result["n_images"]:
        return fail("no labelled image could be evaluated")
    print(json.dumps(result) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
