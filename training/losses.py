"""Targets and the masked multi-head loss: a picture whose label is unknown for a head skips that head."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from inference.model import DOMAIN_OUTPUT
from inference.tasks import TaskSpec
from training.data import Sample

UNKNOWN = -1  # target value of a label that is not known for a picture: masked out of the loss


def targets_for(spec: TaskSpec, samples: Sequence[Sample], domain: bool = False) -> dict[str, torch.Tensor]:
    """Class index per photo and head (UNKNOWN where not known); with `domain`, DOMAIN_OUTPUT is 1 for the
    task's own photos and 0 for negatives and other tasks' photos."""
    targets = {h: torch.tensor([UNKNOWN if s.labels[h] is None else spec.label_index(h, s.labels[h])
                                for s in samples]) for h in spec.heads}
    if domain:
        targets[DOMAIN_OUTPUT] = torch.tensor([int(s.in_domain) for s in samples])
    return targets


def class_weights(spec: TaskSpec, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Square-root balanced weights: rare classes count more without a 50x weight on 17 photos."""
    weights = {}
    for h, t in targets.items():
        n_classes = 2 if h == DOMAIN_OUTPUT else len(spec.heads[h])
        counts = torch.bincount(t[t != UNKNOWN], minlength=n_classes).float().clamp(min=1)
        w = (counts.sum() / (n_classes * counts)).sqrt()
        weights[h] = w / w.mean()
    return weights


def multitask_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                   loss_weights: dict[str, float], weights: dict[str, torch.Tensor] | None = None,
                   label_smoothing: float = 0.0) -> torch.Tensor:
    """Weighted sum of per-head cross-entropy; photos with an unknown label skip that head only.

    Each head's term is a weighted mean, normalised by the class weights of the photos in the batch, as
    PyTorch's own weighted mean is: class weights then shift the balance
    between classes without also scaling the head against the other heads.
    """
    total = logits[next(iter(logits))].new_zeros(())
    for h, out in logits.items():
        known = targets[h] != UNKNOWN
        if known.any():
            y = targets[h][known]
            if h == DOMAIN_OUTPUT:   # one logit: binary cross-entropy, no smoothing
                losses = F.binary_cross_entropy_with_logits(out[known], y.float(), reduction="none")
                if weights is not None:
                    losses = losses * weights[h][y]
            else:
                losses = F.cross_entropy(out[known], y, label_smoothing=label_smoothing,
                                         weight=None if weights is None else weights[h], reduction="none")
            norm = weights[h][y] if weights is not None else torch.ones_like(losses)
            total = total + loss_weights[h] * losses.sum() / norm.sum()
    return total
