"""What several test modules share: where the shared data is, and how a missing part is reported.

Locally a missing part (the example images, ../shared/data, the browser) skips the tests that need it,
with the reason; in CI (CI=true) it fails them, so a run can never pass by skipping what it should test.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(present: bool, what: str) -> None:
    """Skip (locally) or fail (in CI) the calling test when `what` is not `present`."""
    if not present:
        (pytest.fail if IN_CI else pytest.skip)(f"{what} is missing")


def shared(*parts: str) -> Path:
    """A path under ../shared/data, required to exist."""
    path = SHARED_DATA.joinpath(*parts)
    require(path.exists(), f"{path} (../shared/data beside the repository)")
    return path


def generated_photos(seed: int = 0, size: tuple[int, int] = (320, 240)) -> list[Image.Image]:
    """Pictures of neither task, drawn here: blank frames, noise, a gradient, landscapes, screenshots."""
    rng = np.random.default_rng(seed)
    w, h = size
    photos = [Image.new("RGB", size, c) for c in ((255, 255, 255), (0, 0, 0), (128, 128, 128), (40, 90, 200))]
    photos.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
    ramp = np.linspace(0, 255, w, dtype=np.float32)
    photos.append(Image.fromarray(np.uint8(np.stack([np.tile(ramp, (h, 1)), np.tile(ramp[::-1], (h, 1)),
                                                     np.full((h, w), 128)], -1))))
    for _ in range(3):  # landscapes: sky gradient, hills, grass texture
        y = np.arange(h)[:, None]
        horizon = h * (0.45 + 0.1 * np.sin(np.arange(w) / w * rng.uniform(3, 9) + rng.uniform(0, 6)))
        sky = np.stack([120 + 0.4 * y, 170 + 0.3 * y, 235 - 0.1 * y], -1) * np.ones((h, w, 1))
        grass = np.stack([40 + rng.normal(0, 12, (h, w)), 120 + rng.normal(0, 18, (h, w)), 40 + 0 * y * np.ones((h, w))], -1)
        photos.append(Image.fromarray(np.uint8(np.clip(np.where((y > horizon)[..., None], grass, sky), 0, 255))))
    for _ in range(3):  # screenshots: title bar, text lines, buttons
        shot = Image.new("RGB", size, (248, 248, 250))
        draw = ImageDraw.Draw(shot)
        draw.rectangle((0, 0, w, 28), fill=tuple(int(v) for v in rng.integers(30, 120, 3)))
        for line in range(int(rng.integers(6, 12))):
            top = 40 + line * 18
            draw.text((12, top), "Lorem ipsum dolor sit amet " * 2, fill=(30, 30, 30))
        draw.rectangle((w - 110, h - 40, w - 12, h - 12), fill=(40, 120, 220))
        photos.append(shot)
    return photos
