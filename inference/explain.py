"""Grad-CAM heat maps for the heads of a multi-head model (pytorch_grad_cam).

pytorch_grad_cam is imported on the first heat map, not with this module: it pulls in scikit-learn,
SciPy and matplotlib (about 1.1 s), which would otherwise sit in every app start before the first answer.
A server calls `import_grad_cam` in the background once it is up.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from itertools import accumulate
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from inference.images import load_image
from inference.model import MultiHeadModel
from inference.predictor import Predictor, load_model

OVERLAY_MAX_SIDE = 512


class AllHeads(nn.Module):
    """Every head's logits side by side, so each CAM target picks one head's class by its offset."""

    def __init__(self, model: MultiHeadModel, heads: list[str]):
        super().__init__()
        self.model, self.head_names = model, heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return torch.cat([logits[h] for h in self.head_names], dim=1)


class Explainer:
    """Grad-CAM on a model no prediction runs through, so its hooks never see other requests:
    the predictor's own torch model when onnxruntime serves predictions, else a private copy.

    Only the target layer keeps trainable weights, so the backward pass stops there instead of
    computing weight gradients for the whole backbone.
    """

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        model = predictor.model if predictor.backend == "onnx" else copy.deepcopy(predictor.model)
        self.model = model.eval().requires_grad_(False)
        self.target_layer = self.model.backbone.bn2   # last 7x7 activation map
        self.target_layer.requires_grad_(True)
        sizes = [len(labels) for labels in predictor.config.heads.values()]
        self.offsets = dict(zip(predictor.config.heads, accumulate([0, *sizes[:-1]])))

    def cams(self, batch: torch.Tensor, targets: list[tuple[str, int]]) -> np.ndarray:
        """(N, H, W) heat maps in [0, 1] at the input resolution, one (head, class index) per image."""
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam_targets = [ClassifierOutputTarget(self.offsets[head] + index) for head, index in targets]
        with self.predictor.explain_lock, GradCAM(AllHeads(self.model, list(self.offsets)), [self.target_layer]) as cam:
            return cam(input_tensor=batch, targets=cam_targets)

    def cam(self, batch: torch.Tensor, head: str, class_indices: list[int]) -> np.ndarray:
        """Heat maps of one head's classes, one per image in the batch."""
        return self.cams(batch, [(head, i) for i in class_indices])

    def overlays(self, photo: Image.Image, labels: dict[str, str]) -> dict[str, Image.Image]:
        """One heat map per head (for its given label) blended over the decoded, upright photo.

        The photo is preprocessed once and all heads come from one forward and backward pass.
        """
        spec = self.predictor.spec
        x = self.predictor.preprocess([photo])
        heats = self.cams(x.repeat(len(labels), 1, 1, 1),
                          [(head, spec.label_index(head, label)) for head, label in labels.items()])
        return {head: blend(photo, heat) for head, heat in zip(labels, heats)}


def import_grad_cam() -> None:
    """Import pytorch_grad_cam now, so the first heat map does not wait for it."""
    import pytorch_grad_cam  # noqa: F401


def blend(photo: Image.Image, heat: np.ndarray, photo_weight: float = 0.55) -> Image.Image:
    """The heat map in the jet colours over the photo, at most OVERLAY_MAX_SIDE pixels (grad-cam's blend)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    small = photo.copy()
    small.thumbnail((OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE))
    mask = np.asarray(Image.fromarray(heat.astype(np.float32), "F").resize(small.size, Image.BILINEAR))
    return Image.fromarray(show_cam_on_image(np.asarray(small, np.float32) / 255, mask.clip(0, 1), use_rgb=True,
                                             image_weight=photo_weight))


@lru_cache(maxsize=None)
def explainer_for(predictor: Predictor) -> Explainer:
    return Explainer(predictor)


def explain(task: str, image: Any, head: str | None = None, label: str | None = None) -> Image.Image:
    """Grad-CAM overlay for one head of the task's served model (default: its first head)."""
    predictor = load_model(task)
    head = head or predictor.spec.head_names[0]
    if head not in predictor.spec.heads:
        raise ValueError(f"unknown head {head!r} for task {task!r}; expected one of {', '.join(predictor.spec.heads)}")
    photo = load_image(image)
    label = label or predictor.predict_photos([photo])[0].heads[head].label
    return explainer_for(predictor).overlays(photo, {head: label})[head]
