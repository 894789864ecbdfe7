"""Is a photo worth judging? Cheap checks before the model: too small, too dark, too bright, washed out, blurred.

`check_quality(photo, task)` measures a few explainable figures on a grayscale copy at a fixed working size
(longest side `WORK_SIDE`, about the model's 224-240 px input, so a figure means the same for a 12 MP photo
and a 256 px one) and compares them with the task's thresholds. A photo that fails is not judged; the
user gets `inference.messages.retake_text` ("Please retake the photo: ...") and clients the `quality` field
(`to_dict()`).

The thresholds were set on half of the shared in-class photo sources and checked on the other half and on
synthetic degradations: `python -m training.quality_figures`, docs/quality.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

WORK_SIDE = 256   # px, the longest side of the copy every figure is measured on
# Luminance counted as burnt out: fully saturated. White paint or paper in sun sits at 250-254: with the car limit
# at the accepting edge, counting from 250 turned away 3.1% of the car scans (mostly white cars) and caught 84%
# of the calibration photos' over-exposed x2 copies; counting only 255, 2.5% and 97.5%.
CLIP_LEVEL = 255

# Shorter side in pixels, both tasks; from what the models need, not fitted. They squash a photo to 224 (car)
# / 240 (collectibles) px and were trained on photos down-scaled to a 48-160 px short side and on 64 px
# ImageNet drumsticks; below 64 px they see a >3.5x enlarged smear. Measured: it turns away 0.2% of the shared
# collectibles photos (two 4:1 banners, 256 x 51 and 256 x 62), 0.1% of the scans and no car photo.
MIN_SIDE = 64


@dataclass(frozen=True)
class Thresholds:
    """A task's limits, fitted on the calibration half of the shared photo sources (training/quality_figures.py):
    halfway between the accepting edge (the value that turns away 0.3% of those photos) and the catching edge
    (the value that catches 99% of their copies with the check's target degradation), or the accepting edge
    where the two overlap; rounded to two significant figures in the accepting direction."""
    min_luminance_p95: float         # too dark below: even the brightest 5% of the photo is darker (0-255)
    max_centre_clipped: float        # too bright above: share of the middle half burnt out (>= CLIP_LEVEL)
    max_luminance_p5: float | None   # washed out above: even the darkest 5% is lighter (0-255); None: unchecked
    min_sharpness: float             # blurred below: variance of the Laplacian / variance of the luminance


THRESHOLDS = {
    # Calibration half: 3 of the 7 car photo sources (324 photos). Figures: accepting edge / catching edge.
    "car": Thresholds(
        min_luminance_p95=83,      # halfway: photos 129 / darkened x0.15 copies 38
        max_centre_clipped=0.053,  # halfway: photos 0.029 / over-exposed x3 copies 0.076
        max_luminance_p5=120,      # halfway: photos 75 / washed-out copies 153
        min_sharpness=0.018),      # geometric middle: photos 0.079 / copies blurred at sigma 1% 0.0045
    # Calibration half: 73 of the 158 collectibles photo sources (428 photos); dark vinyls, white backdrops.
    "collectibles": Thresholds(
        min_luminance_p95=63,      # halfway: photos 89 / darkened x0.15 copies 38
        max_centre_clipped=0.65,   # accepting edge 0.645: white-backdrop photos overlap the over-exposed x3 copies
        max_luminance_p5=None,     # the accepting edge (238, white backdrops) is lighter than washed-out copies
                                   # (153): fitted (240) it would catch 0.2% of the held-out copies, at 220 0.8%
        min_sharpness=0.023),      # geometric middle: photos 0.049 / copies blurred at sigma 1% 0.011
}

PROBLEMS = ("too_small", "too_dark", "too_bright", "washed_out", "blurred")   # in the order they are reported


@dataclass(frozen=True)
class Quality:
    ok: bool
    problems: tuple[str, ...]   # codes of PROBLEMS, in its order
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The machine-readable `quality` field: {"ok", "problems", "metrics"}."""
        return {"ok": self.ok, "problems": list(self.problems),
                "metrics": {name: round(float(value), 4) for name, value in self.metrics.items()}}


def working_gray(photo: Image.Image) -> np.ndarray:
    """Luminance (float32, 0-255) of the photo resized to a longest side of WORK_SIDE pixels: an integer box
    reduction first (cheap on a 12 MP photo), then a bicubic resize, up or down, as load_image and the model's
    transform resize."""
    width, height = photo.size
    scale = WORK_SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    factor = int(1 / scale) // 2
    small = photo.reduce(factor) if factor > 1 else photo
    return np.asarray(small.convert("L").resize(size, Image.BICUBIC), dtype=np.float32)


def sharpness(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the variance of the luminance: how much of the photo's
    contrast is fine detail. Blur lowers it; exposure and contrast changes do not. 0 for a flat frame."""
    if min(gray.shape) < 3:
        return 0.0
    laplacian = gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4 * gray[1:-1, 1:-1]
    return float(laplacian.var() / max(float(gray.var()), 1.0))


def measure(photo: Image.Image) -> dict[str, float]:
    """The figures: min_side (px, as given), brightness (mean luminance 0-255, reported, not checked), the 95th
    and 5th percentiles of the luminance, the burnt-out share of the centre (the middle half of the width and
    height, where the subject usually is: a white wall, sky or backdrop at the edges is not over-exposure)
    and the sharpness, all but min_side on the working copy."""
    gray = working_gray(photo)
    height, width = gray.shape
    centre = gray[height // 4:height - height // 4, width // 4:width - width // 4]
    p5, p95 = np.percentile(gray, (5, 95))
    return {"min_side": float(min(photo.size)), "brightness": float(gray.mean()), "luminance_p95": float(p95),
            "luminance_p5": float(p5), "centre_clipped": float((centre >= CLIP_LEVEL).mean()),
            "sharpness": sharpness(gray)}


def problems_of(metrics: dict[str, float], limits: Thresholds) -> tuple[str, ...]:
    failed = {"too_small": metrics["min_side"] < MIN_SIDE,
              "too_dark": metrics["luminance_p95"] < limits.min_luminance_p95,
              "too_bright": metrics["centre_clipped"] > limits.max_centre_clipped,
              "washed_out": limits.max_luminance_p5 is not None and metrics["luminance_p5"] > limits.max_luminance_p5,
              "blurred": metrics["sharpness"] < limits.min_sharpness}
    return tuple(code for code in PROBLEMS if failed[code])


def check_quality(photo: Image.Image, task: str) -> Quality:
    """Check a decoded, upright RGB photo of any size against the task's thresholds."""
    if task not in THRESHOLDS:
        raise ValueError(f"no quality thresholds for task {task!r}; expected one of {', '.join(THRESHOLDS)}")
    metrics = measure(photo)
    problems = problems_of(metrics, THRESHOLDS[task])
    return Quality(ok=not problems, problems=problems, metrics=metrics)
