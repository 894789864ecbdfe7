"""Train one task on a CPU and write a Hugging Face-layout run folder.

    python -m training.train --task car --data ../shared/data/car --out runs/car

Fast mode: the frozen front of the ImageNet backbone runs once over several augmented views of
every training photo (`--views`, of which `--plain-views` without the photo-realism step; cached
on disk), then the last stages and the heads train on those activations, each batch drawing one
of the cached views of each photo at random; with `--ema-decay`, a moving average of the weights
is what is validated and shipped. Outputs: model.safetensors, config.json, ood.safetensors, model.onnx,
metrics.json, plots, train.log and the model card README.md. `--resume` continues an interrupted
run from its last finished epoch; `--report-only` re-measures a finished run and rewrites its
report; `--push-to-hub REPO_ID` publishes the folder.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from timm.utils import ModelEmaV3

from inference.model import ModelConfig, atomic_write, create_eval_transform, create_model, \
    load_checkpoint, save_checkpoint, PRETRAINED_PACKAGES, OOD_NAME
from inference.ood import DEFAULT_K, KnnDetector
from inference.predictor import softmax
from inference.tasks import DEFAULT_ARCHITECTURE, TASKS, get_task
from training import diagnostics, report
from training.augment import PRESETS, SWITCHES as REALISM_SWITCHES, PhotoRealism, RealismConfig
from training.data import DataError, grouped_split, load_dataset, load_label_map
from training.engine import CPU_MEMORY_FORMAT, DEFAULT_CROP_RATIO, ActivationMix, ImageViews, cache_front, \
    class_weights, cosine_with_warmup, create_train_transform, MixedViews, run_epoch, source_weights, targets_for, \
    trainable_parameters, UNKNOWN
from training.publish import PublishError, push_to_hub

log = logging.getLogger("training")
WORK_DIR = ".work"          # cache and resume state inside a run folder; never published


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--data", required=True, help="class folders, a CSV manifest or a Label Studio export")
    p.add_argument("--out", help="run folder (default runs/<task>)")
    p.add_argument("--arch", default=DEFAULT_ARCHITECTURE, choices=sorted(PRETRAINED_PACKAGES))
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--patience", type=int, default=4, help="early stopping: epochs without val-loss gain")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="validate and ship a moving average of the weights (timm ModelEmaV3, warmed up) with "
                        "at most this decay per step; 0 (default) ships the raw weights (the collectibles "
                        "checkpoint used 0.99)")
    p.add_argument("--mix-prob", type=float, default=0.0,
                   help="share of training batches mixed with CutMix or Mixup (half each) on the cached "
                        "activations, labels mixed alike; 0 (default) turns it off")
    p.add_argument("--drop-path", type=float, default=0.0,
                   help="stochastic depth rate of the backbone (timm drop_path_rate; acts only while training)")
    p.add_argument("--source-balance", action="store_true",
                   help="weight each photo by 1/sqrt of its (source, label) group's size, so a label that "
                        "one source supplies in bulk is not learned from that source's photo style (car: "
                        "photo-like val up, plain cleanliness down 4 points, so not the default)")
    p.add_argument("--views", type=int, default=5, help="augmented views per training photo to cache")
    p.add_argument("--plain-views", type=int, default=1,
                   help="how many of those views skip the photo-realism step (timm's augmentation only)")
    p.add_argument("--crop-ratio", type=float, nargs=2, default=DEFAULT_CROP_RATIO, metavar=("LO", "HI"),
                   help="width / height range of the training crops, in the photo's pixels (0.5 2 includes "
                        "whole 2:3 book covers, which inference squashes to the square input)")
    p.add_argument("--frozen-blocks", type=int, default=5,
                   help="backbone stages kept frozen (of 7; the collectibles checkpoint used 4)")
    p.add_argument("--loss-weight", action="append", default=[], metavar="HEAD=W",
                   help="override a head's loss weight, e.g. damage=1.5")
    p.add_argument("--realism", default="full", choices=PRESETS, help="photo-realism augmentation preset")
    for name in REALISM_SWITCHES:
        p.add_argument(f"--realism-{name.replace('_', '-')}", type=float, metavar="P",
                       help=f"probability of the {name.replace('_', ' ')} augmentation (overrides the preset)")
    p.add_argument("--label-map", help="JSON file mapping raw Label Studio labels to [head, label]")
    p.add_argument("--ood-data", action="append", default=[], metavar="DIR",
                   help="images of other kinds for the out-of-distribution report (default: the other tasks' "
                        "data folders beside --data, plus generated photos)")
    p.add_argument("--ood-k", type=int, default=DEFAULT_K,
                   help="in-domain check: distance to the k-th nearest training photo")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-images", type=int, help="use at most this many photos (smoke runs)")
    p.add_argument("--workers", type=int, default=1, help="data-loading processes while caching")
    p.add_argument("--no-pretrained", action="store_true", help="random init (tests only)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last epoch")
    p.add_argument("--report-only", action="store_true",
                   help="no training: re-measure and rewrite the report of the run folder's best checkpoint")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="publish the run folder to this Hub model repo")
    args = p.parse_args(argv)
    if not 0 < args.crop_ratio[0] <= args.crop_ratio[1]:
        p.error(f"--crop-ratio needs 0 < LO <= HI, got {args.crop_ratio[0]:g} {args.crop_ratio[1]:g}")
    return args


def parse_loss_weights(spec, overrides: list[str]) -> dict[str, float]:
    weights = dict(spec.loss_weights)
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


def subsample(samples, n: int, seed: int):
    if n >= len(samples):
        return samples
    order = np.random.default_rng(seed).permutation(len(samples))[:n]
    return [samples[i] for i in sorted(order)]


def cache_key(args, train, val) -> str:
    """The cached activations are valid only for the same photos, split and frozen model front."""
    fields = {k: getattr(args, k) for k in ("arch", "image_size", "frozen_blocks", "seed", "no_pretrained")}
    fields["photos"] = [str(s.path) for s in train] + ["|"] + [str(s.path) for s in val]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def view_name(view: int, realism: RealismConfig | None, crop_ratio: Sequence[float]) -> str:
    """A training view's cache file: its index and its augmentation settings."""
    settings = "plain" if realism is None else hashlib.sha256(
        json.dumps(realism.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    crop = "" if tuple(crop_ratio) == DEFAULT_CROP_RATIO else "_crop{:g}-{:g}".format(*crop_ratio)
    return f"train_{view}_{settings}{crop}.npy"


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
        dataset = load_dataset(spec, args.data, load_label_map(args.label_map) if args.label_map else None)
    except DataError as err:
        log.error("%s", err)
        return 2
    samples = subsample(dataset.samples, args.max_images, args.seed) if args.max_images else dataset.samples
    train, val = grouped_split(samples, args.val_fraction, args.seed)
    log.info("%s: %d photos (%d skipped), train %d, val %d", args.data, len(samples), len(dataset.skipped),
             len(train), len(val))

    config = ModelConfig.for_task(spec, args.arch, args.image_size)
    model = create_model(config, pretrained=not args.no_pretrained, drop_path_rate=args.drop_path)
    model = model.to(memory_format=CPU_MEMORY_FORMAT)
    overrides = {s: getattr(args, f"realism_{s}") for s in REALISM_SWITCHES if getattr(args, f"realism_{s}") is not None}
    realism_config = RealismConfig.preset(args.realism, spec.name).with_overrides(**overrides)
    realism = PhotoRealism(realism_config) if args.realism != "none" or overrides else None
    train_tf, eval_tf = create_train_transform(config.data_config, spec.name, args.crop_ratio), \
        create_eval_transform(config.data_config)

    k = args.frozen_blocks
    cache_dir = run_dir / WORK_DIR / f"cache-{cache_key(args, train, val)}"
    cache_start = time.time()
    view_realism = [None if v < args.plain_views else realism for v in range(args.views)]
    view_paths = [cache_dir / view_name(v, view_realism[v] and realism_config, args.crop_ratio)
                  for v in range(args.views)]
    val_path, photo_path = cache_dir / "val.npy", cache_dir / "val_photo.npy"
    # A cache finished by an earlier run is reused; the card says so, since its time is then not in the run's.
    cache_paths = (*view_paths, val_path, photo_path)
    caches_reused = sum(p.with_suffix(".done").exists() for p in cache_paths)
    train_views = [cache_front(model, k, ImageViews(train, train_tf, spec.name, args.seed * 1000 + v, view_realism[v]),
                               view_paths[v], f"caching train view {v + 1}/{args.views}", workers=args.workers)
                   for v in range(args.views)]
    val_acts = cache_front(model, k, ImageViews(val, eval_tf, spec.name, args.seed), val_path,
                           "caching val", workers=args.workers)
    photo_acts = cache_front(model, k, ImageViews(val, eval_tf, spec.name, args.seed + 1, photo_like=True),
                             photo_path, "caching photo-like val", workers=args.workers)
    cache_seconds = time.time() - cache_start
    log.info("cached %d x %d training views + validation in %.0f s (%d of %d caches reused)", len(train), args.views,
             cache_seconds, caches_reused, len(cache_paths))

    train_y, val_y = targets_for(spec, train), targets_for(spec, val)
    weights = class_weights(spec, train_y)
    per_photo = source_weights(spec, train) if args.source_balance else None
    groups = trainable_parameters(model, k)
    for g in groups:
        g["lr"] = args.lr * g["lr_scale"]
    optimizer = torch.optim.AdamW(groups, weight_decay=args.weight_decay)
    steps = math.ceil(len(train) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(steps * args.epochs, steps))
    ema = ModelEmaV3(model, decay=args.ema_decay, use_warmup=True) if args.ema_decay > 0 else None
    mix = ActivationMix(args.mix_prob) if args.mix_prob > 0 else None

    state_path = run_dir / WORK_DIR / "last.pt"
    history: list[dict] = []
    best_loss, best_epoch, stale, first_epoch = math.inf, 0, 0, 1
    if (args.resume or args.report_only) and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and "ema" in state:
            ema.module.load_state_dict(state["ema"])
        history, best_loss, best_epoch, stale = state["history"], state["best_loss"], state["best_epoch"], state["stale"]
        first_epoch = state["epoch"] + 1
        log.info("resuming after epoch %d (best val loss %.4f at epoch %d)", state["epoch"], best_loss, best_epoch)

    train_start = time.time()
    epochs_run = 0
    for epoch in range(first_epoch, args.epochs + 1):
        if stale >= args.patience or args.report_only:
            break
        t0 = time.time()
        tr = run_epoch(model, k, MixedViews(train_views, args.seed * 7919 + epoch), train_y, loss_weights, weights,
                       optimizer, scheduler, args.batch_size, seed=args.seed + epoch,
                       desc=f"epoch {epoch}/{args.epochs} train", label_smoothing=args.label_smoothing,
                       sample_weights=per_photo, ema=ema, mix=mix)
        validated = model if ema is None else ema.module
        va = run_epoch(validated, k, val_acts, val_y, loss_weights, weights, desc="val")
        vp = run_epoch(validated, k, photo_acts, val_y, loss_weights, weights, desc="photo-like val")
        # Selection uses both: plain scans and photo-like views of the same validation photos.
        val_loss = (va.loss + vp.loss) / 2
        history.append({"epoch": epoch, "train_loss": tr.loss, "val_loss": va.loss, "val_photo_loss": vp.loss,
                        "train_acc": tr.accuracy, "val_acc": va.accuracy, "val_photo_acc": vp.accuracy,
                        "val_acc_combined": float(np.mean(list(va.accuracy.values()))),
                        "seconds": time.time() - t0})
        log.info("epoch %d: train loss %.4f %s | val loss %.4f %s | photo-like val loss %.4f %s | %.0f s",
                 epoch, tr.loss, fmt_acc(tr.accuracy), va.loss, fmt_acc(va.accuracy), vp.loss,
                 fmt_acc(vp.accuracy), time.time() - t0)
        if val_loss < best_loss - 1e-4:
            best_loss, best_epoch, stale = val_loss, epoch, 0
            save_checkpoint(validated, config, run_dir)
            log.info("new best checkpoint (val loss %.4f) saved", val_loss)
        else:
            stale += 1
        epochs_run += 1
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "epoch": epoch, "history": history, "best_loss": best_loss, "best_epoch": best_epoch, "stale": stale,
                 **({} if ema is None else {"ema": ema.module.state_dict()})}
        atomic_write(state_path, lambda tmp: torch.save(state, tmp))
    train_seconds = time.time() - train_start
    if not (run_dir / "model.safetensors").exists():
        log.error("no checkpoint in %s%s", run_dir, " to report on" if args.report_only else " was saved")
        return 1

    model, config = load_checkpoint(run_dir)
    # The in-domain memory bank: each training photo once, in one of its cached views (plain or photo-like).
    metrics = finish_run(args, spec, run_dir, model, config, train, val, MixedViews(train_views, args.seed),
                         val_acts, photo_acts, train_y, val_y, loss_weights)
    command = "python -m training.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    metrics_path = run_dir / "metrics.json"
    if args.report_only and metrics_path.exists():   # keep the figures of the run that trained it
        metrics["training"] = {**json.loads(metrics_path.read_text())["training"], "report_command": command}
    else:
        metrics["training"] = {
            "command": command, "args": vars(args), "loss_weights": loss_weights,
            "realism": realism_config.to_dict(), "epochs_run": len(history), "best_epoch": best_epoch,
            "n_train": len(train), "n_val": len(val), "n_skipped": len(dataset.skipped),
            "cache_seconds": round(cache_seconds, 1), "caches_reused": caches_reused, "caches": len(cache_paths),
            "seconds_per_epoch": round(train_seconds / max(1, epochs_run), 1),
            "seconds": round(time.time() - started, 1)}
    metrics["history"] = history
    atomic_write(metrics_path, lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2)))
    report.plot_history(history, run_dir)
    report.write_model_card(run_dir, spec, json.loads((run_dir / "config.json").read_text()), metrics)
    log.info("done in %.0f s: %s", time.time() - started, run_dir)

    if args.push_to_hub:
        try:
            url = push_to_hub(run_dir, args.push_to_hub)
            log.info("published to %s", url)
        except PublishError as err:
            log.error("%s", err)
            return 3
    return 0


def fmt_acc(acc: dict[str, float]) -> str:
    return " ".join(f"{h} {a:.3f}" for h, a in acc.items())


def finish_run(args, spec, run_dir, model, config, train, val, train_acts, val_acts, photo_acts,
               train_y, val_y, loss_weights) -> dict:
    """Calibrate, fit the OOD detector, export ONNX, and measure everything the model card shows."""
    k = args.frozen_blocks
    va = run_epoch(model, k, val_acts, val_y, loss_weights, desc="final val")
    vp = run_epoch(model, k, photo_acts, val_y, loss_weights, desc="final photo-like val")
    tr = run_epoch(model, k, train_acts, train_y, loss_weights, desc="train features")

    calibration = {}
    for h in spec.heads:
        known = (val_y[h] != UNKNOWN).numpy()
        y = val_y[h].numpy()[known]
        logits = va.logits[h][known]
        t = report.fit_temperature(logits, y)
        config.temperature[h] = t
        calibration[h] = {"temperature": round(t, 4),
                          "ece_before": round(report.expected_calibration_error(softmax(logits), y), 4),
                          "ece_after": round(report.expected_calibration_error(softmax(logits, t), y), 4)}
    report.plot_reliability({h: va.logits[h] for h in spec.heads}, {h: val_y[h].numpy() for h in spec.heads},
                            config.temperature, run_dir / "reliability.png")

    def probs(result):
        return {h: softmax(result.logits[h], config.temperature[h]) for h in spec.heads}

    labels, sources = [s.labels for s in val], [s.source for s in val]
    splits = {"val": report.summarize(spec, labels, probs(va), sources),
              "val_photo": report.summarize(spec, labels, probs(vp), sources)}
    report.plot_confusion_matrices(splits["val"], run_dir, "confusion")
    report.plot_confusion_matrices(splits["val_photo"], run_dir, "confusion_photo")

    detector = KnnDetector.fit(tr.features, args.ood_k)
    ood = diagnostics.evaluate_ood(args, spec, model, config, detector, va.features, vp.features)
    config.ood = {"method": "knn", "k": detector.k, "threshold": ood["threshold"], "file": OOD_NAME}
    detector.save(run_dir / OOD_NAME)
    save_checkpoint(model, config, run_dir)
    if not args.no_onnx:
        from inference.export_onnx import export_onnx
        export_onnx(run_dir)

    metrics = {"task": spec.name, "architecture": config.architecture, "splits": splits,
               "calibration": calibration, "ood": ood}
    metrics.update(diagnostics.gradcam_and_worst_errors(spec, run_dir, val, args.seed + 1, splits, probs(va), probs(vp)))
    return metrics


if __name__ == "__main__":
    sys.exit(main())
