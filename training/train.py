"""Train one task on a CPU and write a Hugging Face-layout run folder.

    python -m training.train --task collectibles \
        --data ../shared/data/collectibles --data ../shared/data/collectibles_photos \
        --negatives ../shared/data/negatives --other-task ../shared/data/car --out runs/collectibles

Data: every `--data` folder (class folders, CSV manifest or Label Studio export) is merged, each photo
keeping its source and its folder's kind (`scan` or `photo`: `photo=DIR` / `scan=DIR`, or by a folder
name that says "photo"). `--negatives` (pictures of neither task) and `--other-task` (another task's
data) teach the domain head what is not the task's kind (outlier exposure).

Validation holds out whole photo sources (`training.splits`); its photos figure is what decides a
recipe. `--val-fraction 0` trains on everything instead, taking the temperatures and the in-domain
threshold from the held-out run named by `--calibration-from`.

Fast mode: the frozen front of the ImageNet backbone runs once over `--views` augmented views of every
training picture (the first `--plain-views` with timm's augmentation only, the others also through a
phone camera's effects; cached on disk); the last stages and the heads then train on those activations
for a fixed number of epochs (cosine schedule), and the last epoch ships. Outputs: config.json,
model.safetensors, heads.safetensors, model.onnx, metrics.json, plots, train.log and the model card
README.md. `--resume` continues an interrupted run; `--push-to-hub REPO_ID` publishes the folder.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from inference.model import DOMAIN_OUTPUT, ModelConfig, create_eval_transform, create_model, load_checkpoint
from training.model_builder import PRETRAINED_PACKAGES, atomic_write, create_pretrained_model, new_config, \
    save_checkpoint
from inference.predictor import softmax
from inference.tasks import DEFAULT_ARCHITECTURE, TASKS, get_task
from training.activations import CPU_MEMORY_FORMAT, ImageViews, MixedViews, cache_front
from training.augmentation import camera_effects, create_train_transform
from training.calibration import auroc, crossfit_domain_threshold, crossfit_review, crossfit_temperature
from training.data import KINDS, DataError, Sample, add_data_arguments, load_all, load_label_map
from training.domain_head import N_DRAWN, drawn_features, refit_domain_head
from training.export_onnx import export_onnx
from training.loop import EpochResult, cosine_with_warmup, run_epoch, trainable_parameters
from training.losses import UNKNOWN, class_weights, targets_for
from training.metrics import summarize_heads, worst_errors
from training.model_card import write_model_card
from training.plots import plot_confusion_matrices, plot_history, plot_reliability
from training.publish import PublishError, push_to_hub
from training.splits import Split, crossfit_halves, holdout_split

log = logging.getLogger("training")
WORK_DIR = ".work"          # cache and resume state inside a run folder; never published


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(p, TASKS)
    p.add_argument("--out", help="run folder (default runs/<task>)")
    p.add_argument("--arch", default=DEFAULT_ARCHITECTURE, choices=sorted(PRETRAINED_PACKAGES))
    p.add_argument("--image-size", type=int, help="input side in pixels (default: the architecture's own, 224 for lite0, 240 for lite1)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--views", type=int, default=3, help="augmented views per training picture to cache")
    p.add_argument("--plain-views", type=int, default=1,
                   help="how many of those views skip the camera effects (timm's augmentation only)")
    p.add_argument("--frozen-blocks", type=int, default=5, help="backbone stages kept frozen (of 7)")
    p.add_argument("--loss-weight", action="append", default=[], metavar="HEAD=W",
                   help=f"override a head's loss weight, e.g. damage=1.5 or {DOMAIN_OUTPUT}=0.5")
    p.add_argument("--calibration-from", metavar="RUN_DIR",
                   help="with --val-fraction 0 (train on everything): the held-out run whose temperatures, "
                        "threshold and figures this run ships")
    p.add_argument("--max-images", type=int, help="use at most this many pictures (smoke runs)")
    p.add_argument("--workers", type=int, default=1, help="data-loading processes while caching")
    p.add_argument("--no-pretrained", action="store_true", help="random init (tests only)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last epoch")
    p.add_argument("--card-notes", metavar="FILE", help="markdown for the model card's 'Why this recipe' section")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="publish the run folder to this Hub model repo")
    args = p.parse_args(argv)
    if args.val_fraction == 0 and not args.calibration_from:
        p.error("--val-fraction 0 needs --calibration-from RUN_DIR (a held-out run of the same recipe)")
    if args.val_fraction and args.calibration_from:
        p.error("--calibration-from goes with --val-fraction 0")
    return args


def parse_loss_weights(spec, overrides: list[str]) -> dict[str, float]:
    weights = {**spec.loss_weights, DOMAIN_OUTPUT: spec.domain_loss_weight}
    for item in overrides:
        head, _, value = item.partition("=")
        if head not in weights or not value:
            raise SystemExit(f"--loss-weight {item!r}: expected HEAD=W with HEAD one of {', '.join(weights)}")
        weights[head] = float(value)
    return weights


def setup_logging(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    for handler in (logging.FileHandler(run_dir / "train.log"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)


def subsample(samples: list[Sample], n: int, seed: int) -> list[Sample]:
    if n >= len(samples):
        return samples
    order = np.random.default_rng(seed).permutation(len(samples))[:n]
    return [samples[i] for i in sorted(order)]


def load_training_data(args, spec) -> tuple[list[Sample], dict]:
    """Labelled pictures of every --data folder plus the negatives and other-task pictures."""
    samples, folders = load_all(spec, args.data, args.negatives, args.other_task,
                                load_label_map(args.label_map) if args.label_map else None, args.seed)
    if args.max_images:   # smoke runs: a sample of the labelled pictures and of the others
        labelled, outliers = [s for s in samples if s.in_domain], [s for s in samples if not s.in_domain]
        samples = subsample(labelled, args.max_images, args.seed) + subsample(outliers, args.max_images, args.seed)
    return samples, {"folders": folders}


def make_split(args, samples: list[Sample]) -> Split:
    if args.val_fraction == 0:
        return Split(list(samples), [], {s.path: s.source for s in samples})
    return holdout_split(samples, args.val_fraction, args.seed)


def cache_key(args, split: Split) -> str:
    """The cached activations are valid only for the same pictures, split and frozen model front."""
    fields = {k: getattr(args, k) for k in ("arch", "image_size", "frozen_blocks", "no_pretrained")}
    fields["pictures"] = [str(s.path) for s in split.train] + ["|"] + [str(s.path) for s in split.val]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def cache_activations(args, spec, model, config, split: Split, run_dir: Path):
    """The frozen front's activations: every training picture in each augmented view (the first
    `--plain-views` without camera effects), validation once."""
    train_tf = create_train_transform(config.data_config, spec.name)
    cache_dir = run_dir / WORK_DIR / f"cache-{cache_key(args, split)}"
    camera = [v >= args.plain_views for v in range(args.views)]
    view_paths = [cache_dir / f"train_{v}_s{args.seed}_{'camera' if camera[v] else 'plain'}.npy" for v in range(args.views)]
    val_path = cache_dir / "val.npy"
    paths = [*view_paths, *([val_path] if split.val else [])]
    reused = sum(p.with_suffix(".done").exists() for p in paths)
    start = time.time()
    views = [cache_front(model, args.frozen_blocks, ImageViews(split.train, train_tf, camera_effects() if camera[v] else None),
                         view_paths[v], f"caching train view {v + 1}/{args.views}", workers=args.workers)
             for v in range(args.views)]
    val = cache_front(model, args.frozen_blocks, ImageViews(split.val, create_eval_transform(config.data_config)),
                      val_path, "caching validation", workers=args.workers) if split.val else None
    info = {"cache_seconds": round(time.time() - start, 1), "caches_reused": reused, "caches": len(paths)}
    log.info("cached %d x %d training views + %d validation pictures in %.0f s (%d of %d caches reused)",
             len(split.train), args.views, len(split.val), info["cache_seconds"], reused, len(paths))
    return views, val, info


def kind_accuracy(spec, val: list[Sample], result: EpochResult) -> dict[str, dict[str, float]]:
    """Validation accuracy per kind (scan, photo) and head, for the training history."""
    out = {}
    kinds = np.array([s.kind for s in val])
    for kind in KINDS:
        accs = {}
        for h in spec.heads:
            y = np.array([UNKNOWN if s.labels[h] is None else spec.label_index(h, s.labels[h]) for s in val])
            mask = (kinds == kind) & (y != UNKNOWN)
            if mask.any():
                accs[h] = round(float((result.logits[h][mask].argmax(1) == y[mask]).mean()), 4)
        if accs:
            out[kind] = accs
    return out


class Trainer:
    """Optimizer, schedule and resumable state for the cached-activation loop."""

    def __init__(self, args, spec, model, split: Split, views, val_acts, loss_weights: dict[str, float]):
        self.args, self.spec, self.model, self.split, self.val_acts = args, spec, model, split, val_acts
        self.views, self.loss_weights = views, loss_weights
        domain = bool(args.negatives or args.other_task)
        self.train_y = targets_for(spec, split.train, domain)
        self.val_y = targets_for(spec, split.val, domain)
        self.weights = class_weights(spec, self.train_y)
        groups = trainable_parameters(model, args.frozen_blocks)
        for g in groups:
            g["lr"] = args.lr * g["lr_scale"]
        self.optimizer = torch.optim.AdamW(groups, weight_decay=args.weight_decay)
        steps = math.ceil(len(split.train) / args.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_with_warmup(steps * args.epochs, steps))
        self.history: list[dict] = []

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "history": self.history}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = state["history"]

    def evaluate(self, desc: str = "validation") -> EpochResult:
        return run_epoch(self.model, self.args.frozen_blocks, self.val_acts, self.val_y, self.loss_weights,
                         self.weights, desc=desc)

    def epoch(self, epoch: int) -> dict:
        a, t0 = self.args, time.time()
        tr = run_epoch(self.model, a.frozen_blocks, MixedViews(self.views, a.seed * 7919 + epoch), self.train_y,
                       self.loss_weights, self.weights, self.optimizer, self.scheduler, a.batch_size,
                       seed=a.seed + epoch, desc=f"epoch {epoch}/{a.epochs} train", label_smoothing=a.label_smoothing)
        row = {"epoch": epoch, "train_loss": tr.loss, "train_acc": tr.accuracy}
        if self.split.val:
            va = self.evaluate()
            row.update(val_loss=va.loss, val_acc=kind_accuracy(self.spec, self.split.val, va),
                       val_domain_acc=va.accuracy.get(DOMAIN_OUTPUT))
        row["seconds"] = round(time.time() - t0, 1)
        self.history.append(row)
        log.info("epoch %d: train loss %.4f %s | %s | %.0f s", epoch, tr.loss, fmt_acc(tr.accuracy),
                 f"val loss {row['val_loss']:.4f} {row['val_acc']}" if self.split.val else "no validation",
                 row["seconds"])
        return row


def fmt_acc(acc: dict[str, float]) -> str:
    return " ".join(f"{h} {a:.3f}" for h, a in acc.items())


def train_epochs(trainer: Trainer, run_dir: Path, config: ModelConfig) -> float:
    """Run the remaining epochs (resuming after the last finished one); returns the training seconds."""
    state_path = run_dir / WORK_DIR / "last.pt"
    if trainer.args.resume and state_path.exists():
        trainer.restore(torch.load(state_path, map_location="cpu", weights_only=True))
        log.info("resuming after epoch %d", len(trainer.history))
    start = time.time()
    for epoch in range(len(trainer.history) + 1, trainer.args.epochs + 1):
        trainer.epoch(epoch)
        save_checkpoint(trainer.model, config, run_dir)
        atomic_write(state_path, lambda tmp: torch.save(trainer.state(), tmp))
    return time.time() - start


def held_out_figures(spec, split: Split, result: EpochResult, config: ModelConfig, seed: int, run_dir: Path) -> dict:
    """Calibrate on one half of validation and report on the other; summarise scans and photos apart."""
    val = split.val
    halves = crossfit_halves(val, split.unit, seed)
    kinds = np.array([s.kind for s in val])
    calibration, review = {}, {}
    for h in spec.heads:
        y = np.array([UNKNOWN if s.labels[h] is None else spec.label_index(h, s.labels[h]) for s in val])
        known = y != UNKNOWN
        fit = crossfit_temperature(result.logits[h][known], y[known], halves[known])
        config.temperature[h] = fit.temperature
        calibration[h] = fit.to_dict()
        # The review threshold is fitted on the validation photos: what users send, and harder than scans.
        fit_rows = kinds == "photo" if ((kinds == "photo") & known).any() else known
        checked = crossfit_review(result.logits[h], y, halves, fit_rows, config.temperature[h])
        config.review[h] = round(checked.min_confidence, 4)
        review[h] = {"min_confidence": config.review[h],
                     **{f"val_{kind}s": checked.figures(y, kinds == kind) for kind in KINDS if (kinds == kind).any()},
                     "measured_on": "other half (cross-fit): temperature fitted on the labelled validation pictures "
                                    "of one half, threshold on its photos, figures on the other half"}
    probs = {h: softmax(result.logits[h], config.temperature[h]) for h in spec.heads}
    splits = {}
    for kind in KINDS:
        rows = [i for i, s in enumerate(val) if s.kind == kind]
        if rows:
            splits[f"val_{kind}s"] = summarize_heads(spec, [val[i].labels for i in rows],
                                               {h: p[rows] for h, p in probs.items()}, [val[i].source for i in rows])
    for name, summary in splits.items():
        plot_confusion_matrices(summary, run_dir, f"confusion_{name.removeprefix('val_')}")
    plot_reliability({h: result.logits[h] for h in spec.heads},
                     {h: np.array([UNKNOWN if s.labels[h] is None else spec.label_index(h, s.labels[h]) for s in val])
                      for h in spec.heads}, config.temperature, run_dir / "reliability.png")
    metrics = {"splits": splits, "calibration": calibration, "review": review}
    if DOMAIN_OUTPUT in result.logits:
        metrics["ood"] = domain_figures(val, result.logits[DOMAIN_OUTPUT], halves, config)
    metrics["worst_errors"] = worst_errors(spec, val, probs)
    return metrics


def domain_figures(val: list[Sample], domain_logits: np.ndarray, halves: np.ndarray, config: ModelConfig) -> dict:
    """The in-domain check's threshold (fitted on one half) and what it does on the other half."""
    kinds = np.array([s.kind for s in val])
    in_domain = np.array([s.in_domain for s in val])
    fit = crossfit_domain_threshold(domain_logits, in_domain, kinds, halves)
    config.ood = {"method": "domain_head", "temperature": round(fit.temperature, 4), "min_logit": round(fit.min_logit, 4)}
    rate = {kind: round(float(fit.out_of_half_rejected[kinds == kind].mean()), 4) for kind in set(kinds)}
    groups: dict[str, dict] = {}
    for kind in ("negative", "other_task"):
        for g in sorted({s.holdout_group for s in val if s.kind == kind}):
            rows = np.array([s.kind == kind and s.holdout_group == g for s in val])
            groups.setdefault(kind, {})[g] = {"n": int(rows.sum()),
                                              "accepted": round(float(1 - fit.out_of_half_rejected[rows].mean()), 4)}
    return {"method": "domain head trained with outlier exposure (negatives and other tasks' pictures), refitted with drawn outliers",
            "temperature": config.ood["temperature"], "min_logit": config.ood["min_logit"],
            "in_domain_rejected": {k: rate[k] for k in KINDS if k in rate},
            "outliers_accepted": {k: round(1 - rate[k], 4) for k in ("negative", "other_task") if k in rate},
            "n": {k: int((kinds == k).sum()) for k in sorted(set(kinds))},
            "auroc": auroc(fit.out_of_half_scores[in_domain], fit.out_of_half_scores[~in_domain])
            if (~in_domain).any() else None,
            "per_group_accepted": groups,
            "measured_on": "validation: threshold and temperature fitted on one half, figures on the other half (cross-fit)"}


def finish_run(args, spec, run_dir: Path, trainer: Trainer, config: ModelConfig) -> dict:
    """Calibrate, set the in-domain threshold, export ONNX, and measure what the model card shows."""
    model, config = load_checkpoint(run_dir)
    trainer.model = model
    refit = refit_domain(trainer, config) if config.domain_head else None
    if trainer.split.val:
        result = trainer.evaluate("final validation")
        metrics = held_out_figures(spec, trainer.split, result, config, args.seed, run_dir)
        save_validation_outputs(run_dir, trainer.split.val, result)
    else:
        metrics = calibration_from(Path(args.calibration_from), config, run_dir)
    if refit:
        metrics["domain_head_fit"] = refit
    save_checkpoint(model, config, run_dir)
    if not args.no_onnx:
        export_onnx(run_dir)
    return {"task": spec.name, "architecture": config.architecture, **metrics}


def refit_domain(trainer: Trainer, config: ModelConfig) -> dict:
    """The domain head's final fit on the training pictures' features (their first, plain cached view)
    and drawn outliers."""
    a = trainer.args
    train = run_epoch(trainer.model, a.frozen_blocks, trainer.views[0], trainer.train_y, trainer.loss_weights,
                      trainer.weights, desc="features of the training pictures")
    outliers = drawn_features(trainer.model, config, N_DRAWN, a.seed)
    return refit_domain_head(trainer.model, train.features, trainer.train_y[DOMAIN_OUTPUT].numpy().astype(bool), outliers)


def save_validation_outputs(run_dir: Path, val: list[Sample], result: EpochResult) -> None:
    """Validation logits and features with each picture's kind and source, for later analysis (not published)."""
    np.savez_compressed(run_dir / WORK_DIR / "validation_outputs.npz", features=result.features,
                        **{f"logits_{h}": v for h, v in result.logits.items()},
                        path=np.array([str(s.path) for s in val]), kind=np.array([s.kind for s in val]),
                        source=np.array([s.source for s in val]), group=np.array([s.holdout_group or "" for s in val]))


def calibration_from(recipe_run: Path, config: ModelConfig, run_dir: Path) -> dict:
    """An all-data run ships the temperatures and threshold of the held-out run of its recipe, and its
    figures: the numbers and the validation plots (confusion matrices, reliability)."""
    source = ModelConfig.from_file(recipe_run / "config.json")
    config.temperature, config.review, config.ood = dict(source.temperature), dict(source.review), source.ood
    for plot in [*recipe_run.glob("confusion_*.png"), recipe_run / "reliability.png"]:
        if plot.is_file():
            shutil.copyfile(plot, run_dir / plot.name)
    figures = json.loads((recipe_run / "metrics.json").read_text())
    return {"held_out_run": {"folder": str(recipe_run), "command": figures["training"]["command"],
                             **{k: figures[k] for k in ("splits", "calibration", "review", "ood", "split")
                                if k in figures}}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = get_task(args.task)
    run_dir = Path(args.out or f"runs/{spec.name}")
    setup_logging(run_dir)
    loss_weights = parse_loss_weights(spec, args.loss_weight)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    started = time.time()
    try:
        samples, data_record = load_training_data(args, spec)
        split = make_split(args, samples)
    except DataError as err:
        log.error("%s", err)
        return 2
    log.info("%d pictures: train %d, validation %d; %s", len(samples), len(split.train), len(split.val),
             json.dumps(split.describe()["per_kind"]))

    config = new_config(spec, args.arch, args.image_size)
    config.domain_head = bool(args.negatives or args.other_task)
    model = create_model(config) if args.no_pretrained else create_pretrained_model(config)
    model = model.to(memory_format=CPU_MEMORY_FORMAT)
    views, val_acts, cache_info = cache_activations(args, spec, model, config, split, run_dir)
    trainer = Trainer(args, spec, model, split, views, val_acts, loss_weights)
    train_seconds = train_epochs(trainer, run_dir, config)

    metrics = finish_run(args, spec, run_dir, trainer, config)
    command = "python -m training.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    metrics.update(data=data_record, split=split.describe(), history=trainer.history, training={
        "command": command, "args": vars(args), "loss_weights": loss_weights, **cache_info,
        "epochs_run": len(trainer.history), "n_train": len(split.train), "n_val": len(split.val),
        "seconds_per_epoch": round(train_seconds / max(1, args.epochs), 1),
        "seconds": round(time.time() - started, 1)})
    atomic_write(run_dir / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2)))
    plot_history(trainer.history, run_dir)
    notes = Path(args.card_notes).read_text(encoding="utf-8") if args.card_notes else None
    write_model_card(run_dir, spec, load_checkpoint(run_dir)[1], metrics, notes)
    log.info("done in %.0f s: %s", time.time() - started, run_dir)

    if args.push_to_hub:
        try:
            log.info("published to %s", push_to_hub(run_dir, args.push_to_hub))
        except PublishError as err:
            log.error("%s", err)
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
