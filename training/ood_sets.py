"""Photos that belong to neither task, for measuring out-of-distribution rejection.

Generated pictures (blank frames, noise, a landscape, a screenshot, ...) plus the sample photos
scikit-image ships (a face, a cat, a coffee cup, a rocket, ...). Nothing here is stored in the
repository; everything is made or read from installed packages at run time.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field",
                  "immunohistochemistry", "page", "text", "horse", "clock", "moon", "brick", "grass",
                  "gravel", "colorwheel", "cell", "retina")


def skimage_photos() -> list[Image.Image]:
    import skimage.data
    photos = []
    for name in SKIMAGE_PHOTOS:
        try:
            array = getattr(skimage.data, name)()
        except Exception:  # a sample that needs a download is simply left out
            continue
        photos.append(Image.fromarray(array).convert("RGB"))
    return photos


def generated_photos(seed: int = 0, size: tuple[int, int] = (320, 240)) -> list[Image.Image]:
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


def ood_photo_sets(seed: int = 0) -> dict[str, list[Image.Image]]:
    return {"skimage_photos": skimage_photos(), "generated": generated_photos(seed)}
