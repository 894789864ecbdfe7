"""Fast CPU training: cache the frozen front of the backbone for several augmented views of each
image once, then train the last backbone stages and the heads on those cached activations.

Also holds the masked multi-head loss and the evaluation loop shared by train and report.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data.mixup import cutmix_bbox_and_lam
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, Dataset as TorchDataset
from tqdm.auto import tqdm

from inference.images import load_image
from inference.model import MultiHeadModel
from inference.tasks import TaskSpec
from training.augment import PhotoRealism, photo_like_view
from training.data import Sample

log = logging.getLogger(__name__)
UNKNOWN = -1  # target value of a label that is not known for a photo: masked out of the loss
# On CPU, oneDNN runs EfficientNet's convolutions faster on channels-last tensors (collectibles with
# --frozen-blocks 4: epochs 82 -> 44 s, caching 601 -> 408 s); saved weights are made contiguous.
CPU_MEMORY_FORMAT = torch.channels_last
DEFAULT_CROP_RATIO = (3 / 4, 4 / 3)


def create_train_transform(data_config: dict, task: str,
                           crop_ratio: tuple[float, float] = DEFAULT_CROP_RATIO):
    """timm's training transform from the same data config inference uses.

    Crops keep most of the photo (damage at the edge must stay in), colour jitter is mild and
    hue is left alone so dirt keeps its colour. `crop_ratio` bounds the crop's width / height in the
    photo's pixels; the crop is then squashed to the square input as inference squashes the whole photo.
    """
    cfg = {k: v for k, v in data_config.items() if k not in ("crop_pct", "crop_mode")}
    scale = (0.35, 1.0) if task == "car" else (0.25, 1.0)
    return timm.data.create_transform(**cfg, is_training=True, scale=scale, ratio=tuple(crop_ratio),
                                      hflip=0.5, color_jitter=(0.2, 0.2, 0.1, 0.0))


def targets_for(spec: TaskSpec, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    return {h: torch.tensor([UNKNOWN if s.labels[h] is None else spec.label_index(h, s.labels[h])
                             for s in samples]) for h in spec.heads}


def class_weights(spec: TaskSpec, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Square-root balanced weights: rare classes count more without a 50x weight on 17 photos."""
    weights = {}
    for h, labels in spec.heads.items():
        known = targets[h][targets[h] != UNKNOWN]
        counts = torch.bincount(known, minlength=len(labels)).float().clamp(min=1)
        w = (counts.sum() / (len(labels) * counts)).sqrt()
        weights[h] = w / w.mean()
    return weights


def source_weights(spec: TaskSpec, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """Per photo and head, 1/sqrt(size of its (source, label) group), mean 1 over known labels.

    A label that one source supplies in bulk (showroom 'intact', web 'damaged') then weighs no more
    than the few photos of a source that has both labels in the same style, so the head learns the
    damage rather than the photo style.
    """
    out = {}
    for h in spec.heads:
        groups = [(s.source, s.labels[h]) for s in samples]
        counts = {g: groups.count(g) for g in set(groups)}
        w = torch.tensor([0.0 if label is None else counts[(src, label)] ** -0.5 for src, label in groups])
        known = w > 0
        w[known] = w[known] / w[known].mean()
        out[h] = w
    return out


def multitask_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                   loss_weights: dict[str, float], weights: dict[str, torch.Tensor] | None = None,
                   label_smoothing: float = 0.0,
                   sample_weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Weighted sum of per-head cross-entropy; photos with an unknown label skip that head only.

    Each head's term is a weighted mean, normalised by the weights of the photos in the batch (class
    weight x photo weight), as PyTorch's own weighted mean is: class weights then shift the balance
    between classes without also scaling the head against the other heads.
    """
    total = logits[next(iter(logits))].new_zeros(())
    for h, out in logits.items():
        known = targets[h] != UNKNOWN
        if known.any():
            y = targets[h][known]
            losses = F.cross_entropy(out[known], y, label_smoothing=label_smoothing,
                                     weight=None if weights is None else weights[h], reduction="none")
            norm = weights[h][y] if weights is not None else torch.ones_like(losses)
            if sample_weights is not None:
                losses, norm = losses * sample_weights[h][known], norm * sample_weights[h][known]
            total = total + loss_weights[h] * losses.sum() / norm.sum()
    return total


class ImageViews(TorchDataset):
    """Decoded photos, optionally made photo-like, then transformed to tensors."""

    def __init__(self, samples: Sequence[Sample], transform: Callable, task: str, seed: int,
                 realism: PhotoRealism | None = None, photo_like: bool = False):
        self.samples, self.transform, self.task, self.seed = list(samples), transform, task, seed
        self.realism, self.photo_like = realism, photo_like
        by_label: dict[str | None, list[int]] = {}
        for i, s in enumerate(self.samples):
            by_label.setdefault(next(iter(s.labels.values())), []).append(i)
        self.by_label = by_label

    def __len__(self) -> int:
        return len(self.samples)

    def _same_class_items(self, i: int, rng: np.random.Generator) -> list:
        """Up to two other photos of the same class, for 'several items in one frame'."""
        peers = self.by_label[next(iter(self.samples[i].labels.values()))]
        picks = rng.choice(peers, size=min(2, len(peers)), replace=False)
        return [load_image(self.samples[j].path) for j in picks if j != i]

    def view(self, i: int) -> tuple[Image.Image, np.ndarray | None]:
        """The (deterministic) picture for photo `i` and, when composited, the item's mask."""
        image = load_image(self.samples[i].path)
        rng = np.random.default_rng([self.seed, i])
        if self.photo_like:
            extras = self._same_class_items(i, rng) if self.task != "car" and rng.random() < 0.3 else []
            return photo_like_view(image, self.task, seed=self.seed * 100_003 + i, extra_items=extras)
        if self.realism is not None:
            extras = self._same_class_items(i, rng) if rng.random() < self.realism.config.multi_item else []
            try:
                return self.realism(image, rng, extras)
            except Exception:  # one odd photo must not end a long run: it is used unaugmented
                log.exception("augmentation failed for %s; using it unaugmented", self.samples[i].path)
        return image, None

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.view(i)[0])


def cache_front(model: MultiHeadModel, frozen_blocks: int, dataset: TorchDataset, path: Path,
                desc: str, batch_size: int = 32, workers: int = 1) -> np.ndarray:
    """Run the frozen front over a dataset once and keep the activations (float16) on disk.

    A finished cache (marked by a `.done` file) is reused, so an interrupted run resumes fast.
    """
    done = path.with_suffix(".done")
    if done.exists():
        return np.load(path, mmap_mode="r")
    path.parent.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    out = None
    model.eval()
    start = 0
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, unit="batch", leave=False):
            act = model.forward_front(batch.contiguous(memory_format=CPU_MEMORY_FORMAT), frozen_blocks).half().numpy()
            if out is None:
                out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16,
                                                shape=(len(dataset), *act.shape[1:]))
            out[start:start + len(act)] = act
            start += len(act)
    out.flush()
    done.touch()
    return np.load(path, mmap_mode="r")


def trainable_parameters(model: MultiHeadModel, frozen_blocks: int) -> list[dict]:
    """Parameter groups: the backbone tail learns slower than the freshly initialised heads."""
    b = model.backbone
    tail = [p for m in (*b.blocks[frozen_blocks:], b.conv_head, b.bn2) for p in m.parameters()]
    return [{"params": tail, "lr_scale": 0.3}, {"params": list(model.heads.parameters()), "lr_scale": 1.0}]


def set_train_mode(model: MultiHeadModel, frozen_blocks: int, train: bool) -> None:
    model.eval()
    if train:
        b = model.backbone
        for m in (*b.blocks[frozen_blocks:], b.conv_head, b.bn2, model.dropout, model.heads):
            m.train()


def cosine_with_warmup(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


class MixedViews:
    """Each photo's activations from a randomly chosen one of its cached views, drawn anew per batch."""

    def __init__(self, views: Sequence[np.ndarray], seed: int):
        self.views, self.rng = list(views), np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.views[0])

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        choice = self.rng.integers(len(self.views), size=len(idx))
        out = np.empty((len(idx), *self.views[0].shape[1:]), dtype=self.views[0].dtype)
        for v, view in enumerate(self.views):
            picked = choice == v
            if picked.any():
                out[picked] = view[idx[picked]]
        return out


@dataclass(frozen=True)
class ActivationMix:
    """CutMix or Mixup applied to a batch of cached activations, as timm's `Mixup` does to images:
    each photo is mixed with the batch reversed. Random draws come from NumPy's global generator
    (timm's box helper uses it too), which training seeds.
    """
    prob: float                 # share of training batches that are mixed
    cutmix_share: float = 0.5   # of those, CutMix (a box of the partner's activation map); else Mixup (a blend)
    alpha: float = 1.0          # the mixing weight is drawn from Beta(alpha, alpha)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The mixed batch and lam, the share of each photo's own labels in its loss."""
        if np.random.rand() >= self.prob:
            return x, 1.0
        lam = float(np.random.beta(self.alpha, self.alpha))
        partner = x.flip(0)
        if np.random.rand() < self.cutmix_share:
            (yl, yu, xl, xu), lam = cutmix_bbox_and_lam(x.shape, lam)
            x = x.clone()
            x[:, :, yl:yu, xl:xu] = partner[:, :, yl:yu, xl:xu]
            return x, lam
        return lam * x + (1 - lam) * partner, lam


def reversed_batch(per_head: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    """Per-head batch tensors in the order of the mixing partners (the batch reversed)."""
    return None if per_head is None else {h: t.flip(0) for h, t in per_head.items()}


@dataclass
class EpochResult:
    loss: float
    accuracy: dict[str, float]
    logits: dict[str, np.ndarray]
    features: np.ndarray


def run_epoch(model: MultiHeadModel, frozen_blocks: int, activations: np.ndarray | MixedViews,
              targets: dict[str, torch.Tensor], loss_weights: dict[str, float],
              weights: dict[str, torch.Tensor] | None = None, optimizer: torch.optim.Optimizer | None = None,
              scheduler=None, batch_size: int = 64, seed: int = 0, desc: str = "",
              label_smoothing: float = 0.0, sample_weights: dict[str, torch.Tensor] | None = None,
              ema: ModelEmaV3 | None = None, mix: ActivationMix | None = None) -> EpochResult:
    """One pass over cached activations: trains when an optimizer is given, else evaluates.

    With `ema`, its moving average of the weights is updated after every optimizer step. With `mix`,
    training batches are mixed and the loss is lam x (own labels) + (1 - lam) x (partner's labels).
    """
    train = optimizer is not None
    set_train_mode(model, frozen_blocks, train)
    n = len(activations)
    order = np.random.default_rng(seed).permutation(n) if train else np.arange(n)
    total_loss, seen = 0.0, 0
    correct = {h: 0 for h in targets}
    known = {h: int((t != UNKNOWN).sum()) for h, t in targets.items()}
    all_logits = {h: [] for h in targets}
    all_features = []
    bar = tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False)
    for start in bar:
        idx = np.sort(order[start:start + batch_size])
        x = torch.from_numpy(np.asarray(activations[idx], dtype=np.float32)).contiguous(memory_format=CPU_MEMORY_FORMAT)
        y = {h: t[idx] for h, t in targets.items()}
        photo_weights = {h: w[idx] for h, w in sample_weights.items()} if train and sample_weights else None
        x, lam = mix(x) if train and mix is not None else (x, 1.0)
        with torch.set_grad_enabled(train):
            features = model.forward_tail(x, frozen_blocks)
            logits = model.classify(features)
            smoothing = label_smoothing if train else 0.0
            loss = multitask_loss(logits, y, loss_weights, weights, smoothing, photo_weights)
            if lam < 1.0:  # the partner's labels, for its share of the mixed activations
                loss = lam * loss + (1 - lam) * multitask_loss(logits, reversed_batch(y), loss_weights, weights,
                                                               smoothing, reversed_batch(photo_weights))
        if train:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update(model, step=scheduler.last_epoch if scheduler is not None else None)
        else:
            all_features.append(features.numpy())
        total_loss += loss.item() * len(idx)
        seen += len(idx)
        for h, out in logits.items():
            mask = y[h] != UNKNOWN
            correct[h] += int((out.argmax(1)[mask] == y[h][mask]).sum())
            if not train:
                all_logits[h].append(out.detach().numpy())
        bar.set_postfix(loss=f"{total_loss / seen:.3f}",
                        **{f"acc_{h}": f"{correct[h] / max(1, known[h]):.3f}" for h in targets})
    accuracy = {h: correct[h] / max(1, known[h]) for h in targets}
    return EpochResult(total_loss / max(1, seen), accuracy,
                       {h: np.concatenate(v) for h, v in all_logits.items() if v},
                       np.concatenate(all_features) if all_features else np.empty((0,)))
