"""Grad-CAM heat maps for one head of a multi-head model (pytorch_grad_cam)."""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import matplotlib
import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from inference.images import load_image
from inference.model import MultiHeadModel
from inference.predictor import Predictor, load_model

OVERLAY_MAX_SIDE = 512


class HeadOutput(nn.Module):
    """Expose one head's logits, so a CAM targets that head only."""

    def __init__(self, model: MultiHeadModel, head: str):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[self.head]


class Explainer:
    """Grad-CAM on a private copy of a predictor's model (its hooks never see other requests)."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.model = copy.deepcopy(predictor.model).eval()
        self.target_layer = self.model.backbone.bn2   # last 7x7 activation map

    def cam(self, batch: torch.Tensor, head: str, class_indices: list[int]) -> np.ndarray:
        """(N, H, W) heat maps in [0, 1] at the input resolution."""
        targets = [ClassifierOutputTarget(i) for i in class_indices]
        with self.predictor.explain_lock, GradCAM(HeadOutput(self.model, head), [self.target_layer]) as cam:
            return cam(input_tensor=batch, targets=targets)

    def overlay(self, image: Any, head: str, label: str | None = None) -> tuple[Image.Image, str]:
        """Heat map for `label` (default: the predicted one) blended over the upright photo."""
        photo = load_image(image)
        predictor = self.predictor
        if label is None:
            label = predictor.predict(photo).heads[head].label
        index = predictor.spec.label_index(head, label)
        heat = self.cam(predictor.preprocess([photo]), head, [index])[0]
        return blend(photo, heat), label


def blend(photo: Image.Image, heat: np.ndarray, alpha: float = 0.45) -> Image.Image:
    photo = photo.copy()
    photo.thumbnail((OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE))
    heat_img = Image.fromarray(np.uint8(heat * 255)).resize(photo.size, Image.BILINEAR)
    colours = matplotlib.colormaps["jet"](np.asarray(heat_img) / 255.0)[..., :3]
    mixed = (1 - alpha) * np.asarray(photo, np.float32) / 255 + alpha * colours
    return Image.fromarray(np.uint8(np.clip(mixed, 0, 1) * 255))


@lru_cache(maxsize=None)
def explainer_for(predictor: Predictor) -> Explainer:
    return Explainer(predictor)


def explain(task: str, image: Any, head: str | None = None, label: str | None = None) -> Image.Image:
    """Grad-CAM overlay for one head of the task's served model (default: its first head)."""
    predictor = load_model(task)
    head = head or predictor.spec.head_names[0]
    if head not in predictor.spec.heads:
        raise ValueError(f"unknown head {head!r} for task {task!r}; expected one of {', '.join(predictor.spec.heads)}")
    return explainer_for(predictor).overlay(image, head, label)[0]
