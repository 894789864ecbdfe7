"""Checks behind the model report: out-of-distribution rejection, where Grad-CAM looks, worst errors."""
from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from inference.explain import explainer_for
from inference.model import create_eval_transform
from inference.predictor import load_model
from inference.tasks import TASKS, TaskSpec
from training.data import DataError, load_dataset
from training.engine import ImageViews
from training.ood_sets import ood_photo_sets

log = logging.getLogger(__name__)
OOD_ACCEPT_PERCENTILE = 98.5   # share of in-domain validation photos (scans and photo-like) accepted
OTHER_TASK_PHOTOS = 300
GRADCAM_SAMPLES = 40
WORST_ERRORS = 8
WORST_ERRORS_FIGURE = "worst_errors.png"


def features_of(model, config, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
    transform = create_eval_transform(config.data_config)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.stack([transform(im) for im in images[start:start + batch_size]])
            out.append(model.features(batch).numpy())
    return np.concatenate(out) if out else np.empty((0, model.backbone.num_features), np.float32)


def other_task_photos(args, spec: TaskSpec) -> dict[str, list[Image.Image]]:
    """A sample of the other tasks' photos (default: their data folders beside --data)."""
    folders = [Path(d) for d in args.ood_data] or [Path(args.data).parent / name for name in TASKS if name != spec.name]
    sets = {}
    rng = np.random.default_rng(args.seed)
    for folder in folders:
        if not folder.exists():
            continue
        other = next((t for t in TASKS.values() if t.name == folder.name and t.name != spec.name), None)
        try:
            paths = [s.path for s in load_dataset(other, folder, check_images=False, min_per_class=1).samples] if other \
                else sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
        except DataError as err:
            log.warning("OOD photos from %s skipped: %s", folder, err)
            continue
        picks = rng.permutation(len(paths))[:OTHER_TASK_PHOTOS]
        sets[f"{folder.name}_photos"] = [Image.open(paths[i]).convert("RGB") for i in picks]
    return sets


def evaluate_ood(args, spec, model, config, detector, val_features, photo_features) -> dict:
    val_scores, photo_scores = detector.score(val_features), detector.score(photo_features)
    threshold = float(np.percentile(np.concatenate([val_scores, photo_scores]), OOD_ACCEPT_PERCENTILE))
    sets = {**other_task_photos(args, spec), **ood_photo_sets(args.seed)}
    per_set, all_ood = {}, []
    for name, images in sets.items():
        scores = detector.score(features_of(model, config, images))
        all_ood.append(scores)
        per_set[name] = {"n": len(images), "auroc": auroc(val_scores, scores),
                         "rejected": round(float((scores > threshold).mean()), 4)}
    ood_scores = np.concatenate(all_ood) if all_ood else np.empty(0)
    return {"method": f"knn (k={detector.k}, cosine distance on pooled backbone features)", "threshold": round(threshold, 4),
            "auroc": auroc(val_scores, ood_scores) if len(ood_scores) else None,
            "in_domain_rejection_rate": round(float((val_scores > threshold).mean()), 4),
            "photo_like_rejection_rate": round(float((photo_scores > threshold).mean()), 4),
            "accept_percentile": OOD_ACCEPT_PERCENTILE, "per_ood_set": per_set}


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    y = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    return round(float(roc_auc_score(y, np.r_[in_scores, out_scores])), 4)


def gradcam_and_worst_errors(spec, run_dir: Path, val, photo_seed: int, splits, probs_val, probs_photo) -> dict:
    predictor = load_model(spec.name, source=run_dir, backend="torch")
    explainer = explainer_for(predictor)
    result = {}
    head = spec.head_names[0]
    views = ImageViews(val, predictor.transform, spec.name, photo_seed, photo_like=True)
    masses, areas = [], []
    for i, sample in enumerate(val):
        if len(masses) >= GRADCAM_SAMPLES or sample.labels[head] is None:
            continue
        predicted = int(probs_photo[head][i].argmax())
        if predicted != spec.label_index(head, sample.labels[head]):
            continue
        image, mask = views.view(i)
        if mask is None:
            continue
        size = tuple(predictor.config.data_config["input_size"][1:])[::-1]
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
        cam = explainer.cam(predictor.preprocess([image]), head, [predicted])[0]
        masses.append(float((cam * mask).sum() / max(cam.sum(), 1e-8)))
        areas.append(float(mask.mean()))
    if masses:
        result["gradcam"] = {"object_mass_mean": round(float(np.mean(masses)), 4),
                             "object_area_mean": round(float(np.mean(areas)), 4), "n": len(masses), "head": head}
    result["worst_errors"] = write_worst_errors(spec, val, views, explainer, probs_val, probs_photo,
                                                run_dir / WORST_ERRORS_FIGURE)
    return result


def write_worst_errors(spec, val, views, explainer, probs_val, probs_photo, path: Path) -> list[dict]:
    """The most confident mistakes (plain and photo-like validation), listed and drawn with Grad-CAM.

    The figure shows training-data photos, which may be third-party: it stays in the run folder
    and is neither bundled nor published (training.publish ignores it); the list goes in the card.
    """
    errors = []
    for kind, probs in (("scan", probs_val), ("photo-like", probs_photo)):
        for h in spec.heads:
            for i, sample in enumerate(val):
                if sample.labels[h] is None:
                    continue
                p = probs[h][i]
                if int(p.argmax()) != spec.label_index(h, sample.labels[h]):
                    errors.append((float(p.max()), kind, h, i))
    errors.sort(reverse=True)
    errors = errors[:WORST_ERRORS]
    listed = [{"split": "val_photo" if kind == "photo-like" else "val", "head": h, "image": val[i].path.name,
               "source": val[i].source, "true": val[i].labels[h],
               "predicted": spec.heads[h][int((probs_photo if kind == "photo-like" else probs_val)[h][i].argmax())],
               "confidence": round(conf, 4)} for conf, kind, h, i in errors]
    if not errors:
        return listed
    fig, axes = plt.subplots(len(errors), 2, figsize=(6, 3 * len(errors)), squeeze=False)
    for row, (conf, kind, h, i) in zip(axes, errors):
        image = views.view(i)[0] if kind == "photo-like" else Image.open(val[i].path).convert("RGB")
        predicted = spec.heads[h][int((probs_photo if kind == "photo-like" else probs_val)[h][i].argmax())]
        overlay, _ = explainer.overlay(image, h, predicted)
        row[0].imshow(image)
        row[0].set_title(f"{kind} · {val[i].source}\n{h}: true {val[i].labels[h]}", fontsize=8)
        row[1].imshow(overlay)
        row[1].set_title(f"predicted {predicted} ({conf:.0%})", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return listed
