"""The training views' augmentation: timm's transform from the same data config inference uses, and, for
some views, the camera effects of a phone photo before it.

Of the photo-realism steps the project used while it had only scans (compositing onto generated
backgrounds, extra items, cut-outs, perspective, hands, aspect crops, lighting, down-scaling, blur,
noise, JPEG), only the camera effects still earned their keep once real photos were in training
(docs/experiments.md: collectibles photos 0.951 with them alone, 0.931 with all steps, 0.926 with none).
Blur and JPEG are torchvision's; uneven light, down-scaling and sensor noise have no torchvision
counterpart and are the few lines below. Random draws come from torch's generator, as torchvision's do
(the caching DataLoader seeds it per worker).
"""
from __future__ import annotations

import math

import numpy as np
import timm
import torch
from PIL import Image
from torchvision.transforms import v2

CROP_RATIO = (3 / 4, 4 / 3)   # width / height of the training crops, in the picture's pixels


def create_train_transform(data_config: dict, task: str):
    """timm's training transform from the same data config inference uses.

    Crops keep most of the photo (damage at the edge must stay in), colour jitter is mild and hue is left
    alone so dirt keeps its colour. The crop is then squashed to the square input as inference squashes
    the whole photo.
    """
    cfg = {k: v for k, v in data_config.items() if k not in ("crop_pct", "crop_mode")}
    scale = (0.35, 1.0) if task == "car" else (0.25, 1.0)
    return timm.data.create_transform(**cfg, is_training=True, scale=scale, ratio=CROP_RATIO,
                                      hflip=0.5, color_jitter=(0.2, 0.2, 0.1, 0.0))


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def _rng() -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(2**31, ())))


class UnevenLight:
    """Overall exposure, a gradient across the frame, sometimes a vignette, and a white-balance cast
    (warm, cool, tungsten, fluorescent, shade), mild and keeping the luminance."""

    CASTS = ((0, 0, 0), (1, 1 / 3, -1), (-1, 0, 1), (1.6, 0.4, -1.8), (-0.5, 0.5, -1 / 3), (-0.5, 0, 0.6))

    def __call__(self, img: Image.Image) -> Image.Image:
        a = np.asarray(img, np.float32)
        h, w = a.shape[:2]
        x, y = np.arange(w, dtype=np.float32)[None, :] / w - 0.5, np.arange(h, dtype=np.float32)[:, None] / h - 0.5
        angle = _uniform(0, 2 * math.pi)
        field = math.exp(_uniform(-0.3, 0.15)) * (1 + _uniform(0, 0.3) * 2 * (x * math.cos(angle) + y * math.sin(angle)))
        if torch.rand(()) < 0.5:
            field = field * (1 - _uniform(0.1, 0.4) * 2 * (x ** 2 + y ** 2))
        gains = 1 + _uniform(0.03, 0.1) * np.asarray(self.CASTS[int(torch.randint(len(self.CASTS), ()))], np.float32)
        gains /= gains @ np.array([0.299, 0.587, 0.114], np.float32)
        return Image.fromarray(np.clip(a * field[..., None] * gains, 0, 255).astype(np.uint8))


class Downscale:
    """Down to a `lo`-`hi` px short side and back up, so no class can be told by its resolution (most
    drumstick pictures are 64 px ImageNet photos)."""

    def __init__(self, lo: int = 48, hi: int = 160):
        self.lo, self.hi = lo, hi

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        short = min(w, h)
        target = int(torch.randint(self.lo, self.hi + 1, ()))
        scale = (target if target < short else max(8, int(short * 0.6))) / short
        small = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        return small.resize((w, h), Image.BICUBIC)


class SensorNoise:
    """Luma noise with weaker chroma noise, stronger in the dark parts, as a phone sensor's."""

    def __call__(self, img: Image.Image) -> Image.Image:
        a = np.asarray(img, np.float32)
        rng, sigma = _rng(), _uniform(2, 9)
        noise = rng.standard_normal((*a.shape[:2], 1), dtype=np.float32) * sigma
        noise = noise + rng.standard_normal(a.shape, dtype=np.float32) * sigma * _uniform(0.2, 0.5)
        return Image.fromarray(np.clip(a + noise * (1.3 - 0.6 * a.mean(2, keepdims=True) / 255), 0, 255).astype(np.uint8))


def camera_effects() -> v2.Compose:
    """A phone camera's imperfections, each with its probability, on the picture before timm's transform."""
    return v2.Compose([v2.RandomApply([UnevenLight()], p=0.6), v2.RandomApply([Downscale()], p=0.4),
                       v2.RandomApply([v2.GaussianBlur(9, sigma=(0.3, 2.0))], p=0.3),
                       v2.RandomApply([SensorNoise()], p=0.4), v2.RandomApply([v2.JPEG((30, 90))], p=0.5)])
