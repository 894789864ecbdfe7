"""Tests for the photo-realism augmentation (training/augment.py). Synthetic images only."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from training.augment import (BACKGROUND_FAMILIES_PHOTO_VAL, BACKGROUND_FAMILIES_TRAIN, PRESETS, SWITCHES,
                              PhotoRealism, RealismConfig, make_background, photo_like_view)


def _item(seed: int = 0, size: tuple[int, int] = (171, 256)) -> Image.Image:
    """A busy flat 'scan': smooth colour blobs, a few sharp rectangles and fine texture."""
    rng = np.random.default_rng(seed)
    w, h = size
    low = np.asarray(Image.fromarray(rng.integers(0, 255, (4, 3, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC),
                     np.float32)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        low[y0:y0 + rng.integers(5, 40), x0:x0 + rng.integers(5, 60)] = rng.integers(0, 255, 3)
    low += rng.normal(0, 8, low.shape)
    return Image.fromarray(np.clip(low, 0, 255).astype(np.uint8))


def _solid(colour: tuple[int, int, int], size=(180, 240)) -> Image.Image:
    return Image.new("RGB", size, colour)


def _bytes(im: Image.Image) -> bytes:
    return im.tobytes() + repr(im.size).encode()


def _is_red(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.int32)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    return (r > 90) & (r > 2.5 * np.maximum(g, b) + 30)  # strongly red, whatever the exposure


def _laplacian_var(im: Image.Image) -> float:
    return float(ndimage.laplace(np.asarray(im.convert("L"), np.float32)).var())


FULL = RealismConfig.preset("full", "collectibles")
CAR_FULL = RealismConfig.preset("full", "car")


# ---------------------------------------------------------------------------------- config
def test_presets_and_overrides():
    assert PRESETS == ("none", "light", "full")
    for task in ("collectibles", "car"):
        none, light, full = (RealismConfig.preset(p, task) for p in PRESETS)
        assert not none.active and all(getattr(none, s) == 0 for s in SWITCHES)
        for s in SWITCHES:
            assert 0 <= getattr(light, s) <= getattr(full, s) <= 1, (task, s)
        assert full.active
    car = RealismConfig.preset("full", "car")
    assert car.composite == car.multi_item == car.occlusion == 0
    assert car.lighting_strength < FULL.lighting_strength
    # overrides: copy, validated, car zeros still enforced
    o = FULL.with_overrides(blur=0.0, jpeg=1.0, noise=None)
    assert (o.blur, o.jpeg, o.noise) == (0.0, 1.0, FULL.noise) and FULL.blur > 0
    assert car.with_overrides(composite=1.0, occlusion=1.0).composite == 0
    with pytest.raises(ValueError):
        FULL.with_overrides(bogus=0.5)
    with pytest.raises(ValueError):
        FULL.with_overrides(blur=1.5)
    with pytest.raises(ValueError):
        RealismConfig.preset("heavy", "car")


def test_none_preset_returns_image_unchanged():
    im = _item(1)
    for task in ("collectibles", "car"):
        out, mask = PhotoRealism(RealismConfig.preset("none", task))(im, np.random.default_rng(0))
        assert mask is None and out.mode == "RGB" and _bytes(out) == _bytes(im)


# ---------------------------------------------------------------------------------- determinism / shape
def test_deterministic_given_seed_and_seeds_differ():
    im, extra = _item(2), [_item(3, (256, 256))]
    aug = PhotoRealism(FULL.with_overrides(composite=1.0, occlusion=0.5))
    for seed in range(4):
        a, ma = aug(im, np.random.default_rng(seed), extra)
        b, mb = aug(im, np.random.default_rng(seed), extra)
        assert _bytes(a) == _bytes(b) and np.array_equal(ma, mb)
    outs = {_bytes(aug(im, np.random.default_rng(s))[0]) for s in range(6)}
    assert len(outs) == 6
    for task in ("collectibles", "car"):
        v1, v2 = photo_like_view(im, task, seed=7)[0], photo_like_view(im, task, seed=7)[0]
        assert _bytes(v1) == _bytes(v2)
        assert _bytes(photo_like_view(im, task, seed=8)[0]) != _bytes(v1)


def test_output_mode_and_sizes():
    im = _item(4)
    aug = PhotoRealism(FULL)
    for seed in range(25):
        out, mask = aug(im, np.random.default_rng(seed))
        assert out.mode == "RGB"
        w, h = out.size
        assert 60 <= min(w, h) and max(w, h) <= 340
        assert 0.45 <= w / h <= 2.1
        if mask is not None:  # composite frame: 256-320 px long side
            assert 256 <= max(w, h) <= 320 and mask.shape == (h, w) and mask.dtype == bool


def test_photo_like_view_always_composites_collectibles_never_cars():
    im = _item(5)
    for seed in range(8):
        out, mask = photo_like_view(im, "collectibles", seed)
        assert mask is not None and mask.shape == (out.height, out.width)
        assert photo_like_view(im, "car", seed)[1] is None


# ---------------------------------------------------------------------------------- mask
def test_mask_alignment_with_pure_red_item():
    """A pure red item: pixels under the mask are red, pixels outside are not (hand removed from mask)."""
    cfg = RealismConfig(composite=1.0, perspective=1.0, occlusion=1.0, lighting=1.0, noise=1.0, jpeg=1.0,
                        cutout=1.0)
    aug = PhotoRealism(cfg)
    red = _solid((255, 0, 0))
    for seed in range(12):
        out, mask = aug(red, np.random.default_rng(seed))
        assert mask is not None and mask.shape == (out.height, out.width)
        frac = mask.mean()
        assert 0.10 <= frac <= 0.95, frac
        is_red = _is_red(np.asarray(out))
        assert is_red[mask].mean() > 0.9, (seed, is_red[mask].mean())          # mask lies on the item
        assert is_red[~mask].mean() < 0.05, (seed, is_red[~mask].mean())       # nothing red outside
        assert (is_red & mask).sum() / is_red.sum() > 0.95                    # and covers the item


def test_occlusion_covers_at_most_a_quarter_of_the_item():
    """The item is a convex quad, so (hull of visible mask) - mask ~ the part the hand hides."""
    from scipy.spatial import ConvexHull
    aug = PhotoRealism(RealismConfig(composite=1.0, occlusion=1.0, perspective=1.0))
    hidden = []
    for seed in range(16):
        out, mask = aug(_solid((255, 0, 0)), np.random.default_rng(seed))
        hull = ConvexHull(np.argwhere(mask)).volume
        frac = 1 - mask.sum() / hull
        assert frac <= 0.27, (seed, frac)
        hidden.append(frac)
        a = np.asarray(out)
        assert not _is_red(a)[~mask].any() or _is_red(a)[~mask].mean() < 0.01
    assert np.mean(np.array(hidden) > 0.02) >= 0.5  # the hand usually does cover part of the item


def test_occlusion_guard_shrinks_an_oversized_hand(monkeypatch):
    """Even a hand drawn 4x too big ends up covering <= 25 % of the item (shrunk or dropped)."""
    import training.augment as A
    orig_hand, orig_occlude, seen = A._hand_mask, A._occlude, []
    monkeypatch.setattr(A, "_hand_mask", lambda w, h, p, d, u, rng: orig_hand(w, h, p, d, u * 4, rng))

    def recording_occlude(img, item_mask, rng):
        out, hand = orig_occlude(img, item_mask, rng)
        seen.append((hand & item_mask).sum() / item_mask.sum())
        return out, hand
    monkeypatch.setattr(A, "_occlude", recording_occlude)
    aug = A.PhotoRealism(RealismConfig(composite=1.0, occlusion=1.0))
    for seed in range(6):
        aug(_solid((255, 0, 0)), np.random.default_rng(seed))
    assert len(seen) == 6 and max(seen) <= 0.25 and max(seen) > 0.02, seen


def test_mask_marks_main_item_not_extra_items():
    aug = PhotoRealism(FULL.with_overrides(composite=1.0, multi_item=1.0, blur=0.0, downscale=0.0))
    red, blue = _solid((255, 0, 0)), _solid((0, 0, 255), (200, 200))
    seen_blue = 0
    for seed in range(10):
        out, mask = aug(red, np.random.default_rng(seed), [blue, blue])
        a = np.asarray(out).astype(np.int32)
        is_blue = (a[..., 2] > 140) & (a[..., 2] > a[..., 0] + 100) & (a[..., 2] > a[..., 1] + 60)
        seen_blue += is_blue.sum() > 200
        assert is_blue[mask].mean() < 0.05
        assert _is_red(a)[mask].mean() > 0.8
    assert seen_blue >= 5  # the extras really are in the picture


def test_mask_with_full_preset_is_plausible():
    aug = PhotoRealism(FULL.with_overrides(composite=1.0))
    red = _solid((255, 0, 0), (256, 256))
    for seed in range(15):
        out, mask = aug(red, np.random.default_rng(100 + seed))
        assert mask.shape == (out.height, out.width) and 0.10 <= mask.mean() <= 0.95
        assert _is_red(np.asarray(out))[mask].mean() > 0.75


def test_cutout_removes_uniform_backdrop():
    """A disc on a teal backdrop is cut out: no teal under or around it in the composite."""
    im = Image.new("RGB", (256, 256), (0, 128, 128))
    from PIL import ImageDraw
    ImageDraw.Draw(im).ellipse([20, 20, 236, 236], fill=(230, 200, 40))
    aug = PhotoRealism(RealismConfig(composite=1.0, cutout=1.0), backgrounds=("wall",))
    out, mask = aug(im, np.random.default_rng(0))
    a = np.asarray(out).astype(np.int32)
    teal = (a[..., 1] > a[..., 0] + 60) & (a[..., 2] > a[..., 0] + 60)
    assert teal.mean() < 0.01
    ys, xs = np.nonzero(mask)  # a disc fills ~pi/4 of its bounding box
    assert 0.7 < mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)) < 0.86


# ---------------------------------------------------------------------------------- car
def test_car_preset_never_composites_and_keeps_colour():
    rng0 = np.random.default_rng(0)
    base = np.zeros((192, 256, 3), np.float32) + np.array([150, 120, 90], np.float32)  # dusty brown
    base += rng0.normal(0, 12, base.shape)
    car = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    mean0 = np.asarray(car, np.float32).reshape(-1, 3).mean(0)
    aug = PhotoRealism(CAR_FULL.with_overrides(composite=1.0, occlusion=1.0, multi_item=1.0, lighting=1.0))
    shifts = []
    for seed in range(30):
        out, mask = aug(car, np.random.default_rng(seed), [car])
        assert mask is None
        m = np.asarray(out, np.float32).reshape(-1, 3).mean(0)
        assert np.abs(m - mean0).max() < 40, (seed, m, mean0)
        chroma = (m - m.mean()) - (mean0 - mean0.mean())  # colour cast beyond a brightness change
        assert np.abs(chroma).max() < 10, (seed, chroma)
        shifts.append(np.abs(chroma).max())
    assert max(shifts) > 0.5  # lighting actually did something


# ---------------------------------------------------------------------------------- single switches
def test_downscale_reduces_high_frequency_detail():
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    v0 = _laplacian_var(im)
    aug = PhotoRealism(RealismConfig(downscale=1.0))
    for seed in range(10):
        out, _ = aug(im, np.random.default_rng(seed))
        assert out.size == im.size
        assert _laplacian_var(out) < 0.3 * v0


def test_aspect_crop_changes_aspect_ratio():
    im = _item(6, (170, 256))  # 2:3 book
    aug = PhotoRealism(RealismConfig(aspect_crop=1.0))
    src = im.width / im.height
    for seed in range(15):
        out, _ = aug(im, np.random.default_rng(seed))
        r = out.width / out.height
        assert 0.5 - 0.01 <= r <= 2.0 + 0.01
        assert abs(np.log(r / src)) > 0.1, (seed, r)
        assert out.width * out.height >= 0.49 * im.width * im.height


def test_perspective_frame_warp_has_no_empty_corners():
    im = Image.new("RGB", (200, 256), (200, 180, 40))
    aug = PhotoRealism(RealismConfig(perspective=1.0))
    for seed in range(10):
        out, _ = aug(im, np.random.default_rng(seed))
        a = np.asarray(out)
        assert out.size == im.size and a.min(axis=(0, 1))[0] > 150  # no black fill anywhere


def test_jpeg_noise_blur_change_image_but_keep_size():
    im = _item(7)
    for sw in ("jpeg", "noise", "blur", "lighting"):
        out, _ = PhotoRealism(RealismConfig(**{sw: 1.0}))(im, np.random.default_rng(1))
        assert out.size == im.size and out.mode == "RGB" and _bytes(out) != _bytes(im), sw


# ---------------------------------------------------------------------------------- backgrounds
def test_background_families_disjoint_and_valid():
    assert set(BACKGROUND_FAMILIES_TRAIN).isdisjoint(BACKGROUND_FAMILIES_PHOTO_VAL)
    assert len(BACKGROUND_FAMILIES_TRAIN) >= 6 and len(BACKGROUND_FAMILIES_PHOTO_VAL) >= 5
    for fam in BACKGROUND_FAMILIES_TRAIN + BACKGROUND_FAMILIES_PHOTO_VAL:
        bg = make_background(np.random.default_rng(3), (300, 220), fam)
        assert bg.mode == "RGB" and bg.size == (300, 220), fam
        a = np.asarray(bg, np.float32)
        assert a.std() > 3, fam  # not flat
        blocks = a.mean(2).reshape(4, 55, 4, 75).mean((1, 3))
        assert blocks.std() > 0.5, fam  # some low-frequency variation
        assert _bytes(make_background(np.random.default_rng(3), (300, 220), fam)) == _bytes(bg)
    with pytest.raises(ValueError):
        make_background(np.random.default_rng(0), (64, 64), "moon")
    with pytest.raises(ValueError):
        PhotoRealism(FULL, backgrounds=("moon",))


def test_photo_val_uses_only_photo_val_backgrounds():
    """The training families never appear in photo-like views: compare against a red item's
    surroundings is impossible, so check the PhotoRealism instance choice instead."""
    import training.augment as A
    used = []
    orig = A.make_background

    def spy(rng, size, family=None):
        used.append(family)
        return orig(rng, size, family)
    A.make_background = spy
    try:
        for seed in range(12):
            photo_like_view(_item(8), "collectibles", seed)
        PhotoRealism(FULL.with_overrides(composite=1.0))(_item(8), np.random.default_rng(0))
    finally:
        A.make_background = orig
    assert set(used[:-1]) <= set(BACKGROUND_FAMILIES_PHOTO_VAL) and len(set(used[:-1])) >= 3
    assert used[-1] in BACKGROUND_FAMILIES_TRAIN


# ---------------------------------------------------------------------------------- speed
def test_speed_full_preset():
    ims = [_item(s, (256, 256) if s % 2 else (171, 256)) for s in range(20)]
    aug = PhotoRealism(FULL)
    rng = np.random.default_rng(0)
    aug(ims[0], rng)  # warm-up
    t = time.perf_counter()
    for im in ims:
        aug(im, rng, [ims[0]])
    ms = (time.perf_counter() - t) / len(ims) * 1000
    print(f"\nfull preset: {ms:.1f} ms / image")
    assert ms < 60


@pytest.mark.parametrize("size", [(1200, 100), (100, 1200)])
def test_aspect_crop_handles_extreme_strips(size):
    """Stamp strips wider than 4:1 (and their tall twins) must not crash the aspect crop."""
    from training.augment import PhotoRealism, RealismConfig

    config = RealismConfig.preset("none", "collectibles").with_overrides(aspect_crop=1.0)
    strip = Image.new("RGB", size, (200, 30, 30))
    for seed in range(10):
        out, _ = PhotoRealism(config)(strip, np.random.default_rng(seed))
        w, h = out.size
        assert w * h >= 0.5 * size[0] * size[1] * 0.99
        assert abs(np.log((w / h) / (size[0] / size[1]))) <= np.log(2) + 1e-6
