"""Drawn pictures of nothing a user means to have judged: flat and gradient frames, noise, stripes, text
pages and app screens, plain landscapes.

No data folder holds such pictures, and a domain head that never saw them judged a blank frame or a
screenshot as a book with 98% confidence (a flat cover with a title is the nearest thing it knew). They
join the negatives when the domain head is fitted (`training/domain_head.py`).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SIZES = ((320, 240), (240, 320), (400, 400), (640, 360))
KINDS = ("flat", "gradient", "noise", "stripes", "text page", "app screen", "landscape")
WORDS = "the quick brown fox jumps over lazy dog settings account home search menu total price order".split()


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:   # linear, any direction
        angle = rng.uniform(0, 2 * np.pi)
        t = (x / w - 0.5) * np.cos(angle) + (y / h - 0.5) * np.sin(angle) + 0.5
    else:                    # radial
        t = np.hypot(x / w - rng.uniform(0.2, 0.8), y / h - rng.uniform(0.2, 0.8)) * 1.4
    return a + np.clip(t, 0, 1)[..., None] * (b - a)


def _text_lines(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int], ink) -> None:
    left, top, right, bottom = box
    for y in range(top, bottom - 10, int(rng.integers(14, 24))):
        words = " ".join(rng.choice(WORDS, int(rng.integers(2, 9))))
        draw.text((left + int(rng.integers(0, 12)), y), words, fill=ink)


def draw_outlier(kind: str, rng: np.random.Generator) -> Image.Image:
    w, h = SIZES[int(rng.integers(len(SIZES)))]
    if kind == "flat":
        return Image.new("RGB", (w, h), _colour(rng))
    if kind == "gradient":
        return Image.fromarray(np.uint8(_gradient(rng, w, h)))
    if kind == "noise":
        base = _gradient(rng, w, h) if rng.random() < 0.5 else np.full((h, w, 3), rng.uniform(40, 210), np.float32)
        channels = 3 if rng.random() < 0.5 else 1
        noise = rng.normal(0, rng.uniform(10, 80), (h, w, channels))
        return Image.fromarray(np.uint8(np.clip(base + noise, 0, 255)))
    if kind == "stripes":
        period = rng.uniform(6, 60)
        y, x = np.mgrid[0:h, 0:w]
        angle = rng.uniform(0, np.pi)
        on = (np.floor((x * np.cos(angle) + y * np.sin(angle)) / period) % 2).astype(bool)
        if rng.random() < 0.4:   # checkerboard
            on ^= (np.floor((-x * np.sin(angle) + y * np.cos(angle)) / period) % 2).astype(bool)
        return Image.fromarray(np.uint8(np.where(on[..., None], _colour(rng), _colour(rng))))
    image = Image.new("RGB", (w, h), _colour(rng, 215) if rng.random() < 0.8 else _colour(rng, 0, 50))
    draw = ImageDraw.Draw(image)
    ink = (20, 20, 20) if sum(image.getpixel((0, 0))) > 300 else (230, 230, 230)
    if kind == "text page":
        margin = int(rng.integers(8, 40))
        _text_lines(draw, rng, (margin, margin, w - margin, h - margin), ink)
        return image
    if kind == "app screen":
        bar = int(rng.integers(20, 50))
        draw.rectangle((0, 0, w, bar), fill=_colour(rng, 20, 200))
        top = bar + 8
        while top < h - 30:   # list rows, cards and buttons
            height = int(rng.integers(20, 70))
            if rng.random() < 0.5:
                draw.rounded_rectangle((10, top, w - 10, top + height), radius=6, outline=_colour(rng, 120, 220),
                                       fill=_colour(rng, 200) if rng.random() < 0.5 else None)
            _text_lines(draw, rng, (16, top + 4, w - 16, top + height), ink)
            if rng.random() < 0.3:
                draw.rectangle((w - 90, top + 4, w - 16, top + 26), fill=_colour(rng, 0, 200))
            top += height + 8
        return image
    # landscape: sky gradient, a wavy horizon, textured ground
    sky = np.array(_colour(rng, 90, 255), np.float32)
    ground = np.array(_colour(rng, 20, 160), np.float32)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    horizon = h * (rng.uniform(0.3, 0.7) + rng.uniform(0.02, 0.12) * np.sin(x / w * rng.uniform(2, 12) + rng.uniform(0, 6)))
    top = sky * (0.8 + 0.4 * y[..., None] / h)
    bottom = ground + rng.normal(0, rng.uniform(5, 30), (h, w, 3))
    return Image.fromarray(np.uint8(np.clip(np.where((y > horizon)[..., None], bottom, top), 0, 255)))


def drawn_outliers(n: int, seed: int) -> list[tuple[str, Image.Image]]:
    """`n` drawn pictures, the kinds in turn, each with its kind."""
    rng = np.random.default_rng(seed)
    return [(KINDS[i % len(KINDS)], draw_outlier(KINDS[i % len(KINDS)], rng)) for i in range(n)]
