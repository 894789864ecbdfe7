"""Training-time "photo realism" augmentation (pure PIL + numpy + scipy.ndimage).

Most training pictures are flat scans or studio shots (book covers, square album art, coins on a
plain backdrop, upscaled 64 px ImageNet drumsticks, showroom cars), but users send phone photos.
`PhotoRealism` turns a flat picture into something photo-like; it runs *before* timm's own train
transform (RandomResizedCrop, flip, colour jitter), so its outputs may be any size (~256-320 px).

Every switch of `RealismConfig` is a probability (0..1) of one step, applied in this order:

* composite    - paste the item (optionally cut out of a plain studio backdrop, see `cutout`),
                 perspective-warped and scaled to 35-90 % of the frame area, onto a procedurally
                 generated background (wood, cloth, paper, ...) with a soft drop shadow. Only then is
                 a mask of the item returned.
* multi_item   - the caller passes 1-2 other pictures of the same class (`extra_items`) with this
                 probability; when compositing they are laid, smaller, behind the main item.
* cutout       - (extra switch) when compositing, cut the item out of a uniform backdrop (coins on
                 teal/white/black, sticks on white) so the backdrop colour is no class cue.
* perspective  - perspective tilt + rotation (up to `max_rotation_deg`, ~25 deg) of the composited
                 item, or, without compositing, a perspective "crop" of the whole frame (smaller
                 rotation, `frame_rotation_deg`, and never any empty corners).
* occlusion    - a skin-toned hand (palm, fingers, thumb, arm to the frame edge) entering from one
                 side of the item, covering at most 25 % of it; the covered part leaves the mask.
* aspect_crop  - random aspect ratio in [0.5, 2]: a crop of the frame (keeping >= 50 % of it), or,
                 when compositing, a frame of that aspect, so 2:3 books / square albums lose their
                 shape cue.
* lighting     - brightness, gradient, vignette and a white-balance cast (warm/cool/tungsten/
                 fluorescent/shade) plus an occasional glare band; deliberately mild (no saturation or
                 hue shifts) and scaled by `lighting_strength` (halved for cars so dirt stays visible).
* downscale    - down-scale to a 48-160 px short side and back up, for EVERY class, so resolution and
                 blur can't identify a class (the drumsticks are upscaled 64 px pictures).
* blur         - gaussian or linear motion blur.
* noise        - sensor noise (luma + weaker chroma noise).
* jpeg         - JPEG re-compression at quality 30-90.

Presets: `RealismConfig.preset(name, task)` with name in `PRESETS` ("none", "light", "full") and task
"collectibles" or "car" (cars never composite / get more items / get occluded: they are photos
already and a hand could hide damage). All switches are CLI-switchable: train.py exposes
`--realism {none,light,full}` and `--realism-<switch> P`, applied via `RealismConfig.with_overrides`.

`photo_like_view` is the deterministic validation-time generator ("photo-like" val set): the "full"
preset, compositing always on for collectibles, and background families (`BACKGROUND_FAMILIES_PHOTO_VAL`)
disjoint from the training ones (`BACKGROUND_FAMILIES_TRAIN`).

Everything is deterministic given the numpy Generator passed in.
"""
from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

PRESETS: tuple[str, ...] = ("none", "light", "full")
TASKS: tuple[str, ...] = ("collectibles", "car")
# Probability switches, in pipeline order (`cutout` is an extra to the ones train.py exposes).
SWITCHES: tuple[str, ...] = ("composite", "multi_item", "cutout", "perspective", "occlusion", "aspect_crop",
                             "lighting", "downscale", "blur", "noise", "jpeg")
_CAR_OFF = ("composite", "multi_item", "occlusion")  # always 0 for cars


@dataclass(frozen=True)
class RealismConfig:
    """Probabilities (0..1) of each realism step plus a few strength knobs; see the module docstring."""

    composite: float = 0.0      # paste the item onto a generated background with a soft drop shadow
    multi_item: float = 0.0     # caller passes 1-2 same-class items with this p; laid behind the main one
    perspective: float = 0.0    # perspective / rotation warp (item: <= max_rotation_deg; frame: smaller)
    lighting: float = 0.0       # brightness gradient / vignette / white-balance cast / glare, mild
    blur: float = 0.0           # gaussian or motion blur
    noise: float = 0.0          # sensor noise
    jpeg: float = 0.0           # JPEG re-compression, quality 30-90
    downscale: float = 0.0      # down to a downscale_min_side..downscale_max_side short side and back up
    occlusion: float = 0.0      # hand-like occluder at an item edge covering <= 25 % of the item
    aspect_crop: float = 0.0    # random aspect ratio in [0.5, 2.0] (crop, or composite frame shape)
    cutout: float = 0.0         # when compositing, cut the item out of a uniform studio backdrop
    # strength knobs (not probabilities)
    task: str = "collectibles"  # "car" forces composite / multi_item / occlusion to 0
    lighting_strength: float = 1.0   # scales gradient / vignette / cast / brightness ranges
    max_rotation_deg: float = 25.0   # rotation of a composited item
    frame_rotation_deg: float = 12.0  # rotation of a whole-frame perspective warp (it has to crop)
    downscale_min_side: int = 48
    downscale_max_side: int = 160

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for name in SWITCHES:
            p = float(getattr(self, name))
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} probability must be in [0, 1], got {p}")
            object.__setattr__(self, name, p)
        if self.task == "car":
            for name in _CAR_OFF:
                object.__setattr__(self, name, 0.0)
        if not 8 <= self.downscale_min_side <= self.downscale_max_side:
            raise ValueError("need 8 <= downscale_min_side <= downscale_max_side")

    @classmethod
    def preset(cls, name: str, task: str) -> "RealismConfig":
        """The "none", "light" or "full" preset for task "collectibles" or "car"."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {name!r}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        # cars are photos already: only camera effects, milder lighting, smaller rotations
        knobs = dict(lighting_strength=0.5, max_rotation_deg=8.0, frame_rotation_deg=8.0,
                     downscale_min_side=64) if task == "car" else {}
        if name == "none":
            return cls(task=task, **knobs)
        if task == "car":
            probs = dict(perspective=0.2, lighting=0.3, blur=0.15, noise=0.2, jpeg=0.3, downscale=0.2,
                         aspect_crop=0.15) if name == "light" else \
                dict(perspective=0.4, lighting=0.5, blur=0.3, noise=0.4, jpeg=0.5, downscale=0.35,
                     aspect_crop=0.3)
            return cls(task=task, **knobs, **probs)
        probs = dict(composite=0.35, multi_item=0.15, cutout=0.7, perspective=0.35, occlusion=0.05,
                     aspect_crop=0.2, lighting=0.35, downscale=0.2, blur=0.15, noise=0.2, jpeg=0.3) \
            if name == "light" else \
            dict(composite=0.7, multi_item=0.3, cutout=0.8, perspective=0.7, occlusion=0.2,
                 aspect_crop=0.4, lighting=0.6, downscale=0.4, blur=0.3, noise=0.4, jpeg=0.5)
        return cls(task=task, **probs)

    def with_overrides(self, **probs: float | None) -> "RealismConfig":
        """A copy with some fields replaced (None values are ignored); car-only zeros still apply."""
        known = {f.name for f in fields(self)}
        unknown = set(probs) - known
        if unknown:
            raise ValueError(f"unknown realism fields: {sorted(unknown)}")
        return replace(self, **{k: v for k, v in probs.items() if v is not None})

    @property
    def active(self) -> bool:
        return any(getattr(self, s) > 0 for s in SWITCHES)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# procedural backgrounds
# --------------------------------------------------------------------------------------------

def _resize_f(a: np.ndarray, size: tuple[int, int], resample=Image.BICUBIC) -> np.ndarray:
    """Resize a 2-D float array to size=(W, H)."""
    return np.asarray(Image.fromarray(a.astype(np.float32), "F").resize(size, resample))


def _smooth(rng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    """Smooth value noise in ~[0, 1] with about `cells` blobs along the long side."""
    s = cells / max(w, h)
    gw, gh = max(2, int(round(w * s)) + 2), max(2, int(round(h * s)) + 2)
    return np.clip(_resize_f(rng.random((gh, gw), dtype=np.float32), (w, h)), 0, 1)


def _fbm(rng: np.random.Generator, w: int, h: int, cells: Sequence[int] = (3, 7, 16, 36)) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    amp, tot = 1.0, 0.0
    for c in cells:
        out += amp * (_smooth(rng, w, h, c) - 0.5)
        tot += amp
        amp *= 0.55
    return out / tot  # ~[-0.5, 0.5]


def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]


def _light_field(rng: np.random.Generator, w: int, h: int, amount: float = 1.0) -> np.ndarray:
    """Low-frequency multiplicative illumination (gradient + blotches), mean ~1."""
    x, y = _grid(w, h)
    a = rng.uniform(0, 2 * math.pi)
    ramp = ((x / w - 0.5) * math.cos(a) + (y / h - 0.5) * math.sin(a)) * 2
    field = 1 + amount * (rng.uniform(0.05, 0.3) * ramp + rng.uniform(0.05, 0.25) * (_smooth(rng, w, h, 3) - 0.5))
    return field.astype(np.float32)


def _colour(rng: np.random.Generator, palette: Sequence[tuple[int, int, int]], jitter: float = 12) -> np.ndarray:
    c = np.asarray(palette[rng.integers(len(palette))], np.float32)
    return np.clip(c + rng.normal(0, jitter, 3), 0, 255).astype(np.float32)


def _tint(gray: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """A gray pattern (~1 mean) times an RGB colour -> H x W x 3."""
    return gray[..., None] * colour[None, None, :]


def _draw_rgb(w: int, h: int, base: np.ndarray, draw_fn: Callable[[ImageDraw.ImageDraw], None]) -> np.ndarray:
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw_fn(ImageDraw.Draw(im))
    return np.asarray(im, np.float32)


def _bg_wood(rng, w, h):
    colour = _colour(rng, [(190, 150, 100), (120, 78, 45), (215, 180, 130), (150, 140, 125), (80, 52, 34),
                           (170, 110, 70)])
    vertical = rng.random() < 0.5
    W, H = (h, w) if vertical else (w, h)  # build horizontal grain, transpose if needed
    x, y = _grid(W, H)
    plank = rng.uniform(50, 140)
    # grain lines: a 1-D profile across the grain, sampled along a slowly wandering (stretched) warp
    warp = _resize_f(rng.random((max(2, H // 25), 4), dtype=np.float32), (W, H)) * rng.uniform(10, 35)
    prof = ndimage.gaussian_filter1d(rng.standard_normal(H + 80).astype(np.float32), rng.uniform(0.7, 1.5))
    prof = prof / (prof.std() + 1e-6) + 0.8 * np.sin(np.arange(H + 80) * 2 * np.pi / rng.uniform(6, 16))
    grain = np.interp(np.clip(y + warp, 0, H + 79), np.arange(H + 80), prof).astype(np.float32)
    streak = _resize_f(rng.random((H, max(2, W // 30)), dtype=np.float32), (W, H), Image.BILINEAR)
    idx = np.floor(np.broadcast_to(y, (H, W)) / plank).astype(int)
    plank_shift = rng.uniform(-0.08, 0.08, idx.max() + 2).astype(np.float32)[idx]
    seam = (((y / plank) % 1.0) * plank < 1.5).astype(np.float32)
    g = 1 + 0.045 * grain + 0.06 * (streak - 0.5) + plank_shift - 0.35 * seam
    g = np.broadcast_to(g, (H, W))
    if vertical:
        g = g.T
    return _tint(g, colour)


def _bg_fabric(rng, w, h):
    colour = _colour(rng, [(60, 80, 120), (128, 128, 128), (200, 185, 160), (50, 80, 60), (110, 40, 50),
                           (40, 40, 45), (170, 150, 190)])
    x, y = _grid(w, h)
    p = rng.uniform(2.5, 5)
    weave = np.sin(2 * np.pi * x / p) * np.sin(2 * np.pi * y / p)
    threads = rng.normal(0, 1, (h, 1)).astype(np.float32) + rng.normal(0, 1, (1, w)).astype(np.float32)
    folds = _fbm(rng, w, h, (2, 4, 7)) * rng.uniform(0.4, 0.8)  # soft drapes
    g = 1 + 0.07 * weave + 0.03 * threads + folds
    return _tint(g, colour)


def _bg_paper(rng, w, h):
    colour = _colour(rng, [(242, 240, 232), (236, 232, 220), (250, 250, 248), (190, 160, 120)], 6)
    fibres = _smooth(rng, w, h, 60) - 0.5
    g = 1 + 0.04 * fibres + rng.normal(0, 0.012, (h, w)).astype(np.float32)
    out = _tint(g, colour)
    if rng.random() < 0.35:  # ruled / squared paper
        x, y = _grid(w, h)
        step = rng.uniform(14, 24)
        lines = np.abs((y % step) - step / 2) < 0.6
        if rng.random() < 0.5:
            lines = lines | (np.abs((x % step) - step / 2) < 0.6)
        lines = np.broadcast_to(lines, (h, w))
        out[lines] = out[lines] * 0.6 + np.array([120, 150, 200], np.float32) * 0.4
    return out


def _bg_wall(rng, w, h):
    colour = _colour(rng, [(235, 232, 225), (210, 200, 180), (180, 200, 210), (200, 210, 185), (225, 200, 190),
                           (150, 150, 155)], 8)
    g = 1 + 0.015 * (_smooth(rng, w, h, 80) - 0.5) + rng.normal(0, 0.008, (h, w)).astype(np.float32)
    out = _tint(g, colour)
    if rng.random() < 0.3:  # skirting board / edge
        y0 = int(rng.uniform(0.7, 0.95) * h)
        out[y0:] = out[y0:] * 0.8 + 20
    return out


def _bg_tiles(rng, w, h):
    colour = _colour(rng, [(230, 230, 228), (200, 190, 170), (90, 110, 130), (60, 60, 60), (170, 190, 175)])
    grout = _colour(rng, [(200, 200, 195), (120, 115, 110), (60, 60, 60)], 8)
    x, y = _grid(w, h)
    sx, sy = rng.uniform(35, 90), rng.uniform(35, 90)
    if rng.random() < 0.5:
        sy = sx
    ox, oy = rng.uniform(0, sx), rng.uniform(0, sy)
    ix, iy = np.floor((x + ox) / sx).astype(int), np.floor((y + oy) / sy).astype(int)
    var = rng.uniform(-0.05, 0.05, (iy.max() + 1, ix.max() + 1)).astype(np.float32)[iy, ix]
    gw = rng.uniform(1.2, 3)
    line = (((x + ox) % sx) < gw) | (((y + oy) % sy) < gw)
    out = _tint(1 + var, colour)
    out[line] = grout
    return out


def _bg_bokeh(rng, w, h):
    """Blurred indoor scene: dark-ish smooth base with soft out-of-focus light blobs."""
    sw, sh = max(8, w // 4), max(8, h // 4)
    base = _colour(rng, [(60, 50, 40), (90, 80, 70), (40, 45, 55), (120, 100, 80), (70, 60, 70)], 15)
    big = np.stack([_smooth(rng, sw, sh, 3) for _ in range(3)], -1) - 0.5
    arr = base[None, None] * (1 + 0.6 * big)

    def draw(d):
        for _ in range(int(rng.integers(6, 20))):
            c = tuple(int(v) for v in _colour(rng, [(255, 230, 180), (255, 200, 120), (220, 230, 255),
                                                     (255, 160, 90), (200, 255, 220)], 20))
            r = rng.uniform(2, 9)
            cx, cy = rng.uniform(0, sw), rng.uniform(0, sh)
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    lights = im.copy()
    draw(ImageDraw.Draw(lights))
    im = Image.blend(im, lights, float(rng.uniform(0.35, 0.7))).filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 3)))
    return np.asarray(im.resize((w, h), Image.BICUBIC), np.float32)


def _rotated_rect(cx, cy, rw, rh, ang):
    c, s = math.cos(ang), math.sin(ang)
    pts = [(-rw / 2, -rh / 2), (rw / 2, -rh / 2), (rw / 2, rh / 2), (-rw / 2, rh / 2)]
    return [(cx + px * c - py * s, cy + px * s + py * c) for px, py in pts]


def _bg_desk(rng, w, h):
    """Desk top with clutter: papers, notebooks, a phone, a keyboard, with soft shadows."""
    desk = _colour(rng, [(200, 170, 130), (235, 235, 230), (60, 60, 62), (140, 100, 70), (170, 170, 165)])
    base = _tint(1 + 0.03 * (_smooth(rng, w, h, 30) - 0.5), desk)
    shapes = []
    for _ in range(int(rng.integers(2, 7))):
        kind = rng.integers(4)
        rw, rh = {0: (0.45, 0.6), 1: (0.3, 0.4), 2: (0.12, 0.24), 3: (0.7, 0.22)}[int(kind)]
        col = [(245, 245, 240), (int(rng.integers(40, 220)), int(rng.integers(40, 220)), int(rng.integers(40, 220))),
               (20, 20, 22), (90, 90, 95)][int(kind)]
        sc = rng.uniform(0.6, 1.2) * min(w, h)
        shapes.append((_rotated_rect(rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h, rw * sc, rh * sc,
                                     rng.uniform(-0.5, 0.5)), col))
    shadow = Image.new("L", (w, h), 0)
    sd = ImageDraw.Draw(shadow)
    dx, dy = rng.uniform(-6, 6), rng.uniform(2, 8)
    for poly, _ in shapes:
        sd.polygon([(x + dx, y + dy) for x, y in poly], fill=255)
    shadow = np.asarray(shadow.filter(ImageFilter.GaussianBlur(4)), np.float32) / 255
    base = base * (1 - 0.35 * shadow[..., None])

    def draw(d):
        for poly, col in shapes:
            d.polygon(poly, fill=col)
    out = _draw_rgb(w, h, base, draw)
    return np.asarray(Image.fromarray(out.astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8)), np.float32)


def _bg_carpet(rng, w, h):
    colour = _colour(rng, [(120, 120, 120), (170, 150, 120), (130, 50, 50), (60, 70, 110), (90, 100, 80)])
    n = rng.normal(0, 1, (h, w, 3)).astype(np.float32)
    n = 0.7 * n[..., :1] + 0.3 * n  # mostly luminance speckle
    n = ndimage.uniform_filter(n, size=(2, 2, 1))
    mott = _smooth(rng, w, h, 12) - 0.5
    return colour[None, None] * (1 + 0.12 * n + 0.12 * mott[..., None])


# ---- photo-validation families (different textures / scenes) --------------------------------

def _bg_shelf(rng, w, h):
    """Bookshelf: vertical spines of random widths/heights and a wooden shelf board."""
    arr = np.empty((h, w, 3), np.float32)
    inside = _colour(rng, [(40, 30, 25), (70, 60, 50), (30, 30, 35)], 10)
    arr[:] = inside
    board = _colour(rng, [(150, 110, 70), (200, 190, 170), (90, 60, 40), (230, 230, 225)], 10)
    x = 0.0
    shelf_y = int(h * rng.uniform(0.8, 0.97))
    while x < w:
        sw = rng.uniform(6, 26)
        top = int(shelf_y - rng.uniform(0.55, 0.95) * shelf_y)
        grey = rng.uniform(40, 200)
        col = np.clip(grey + (rng.uniform(20, 230, 3) - grey) * rng.uniform(0.2, 0.8), 0, 255)  # muted
        x0, x1 = int(x), int(min(w, x + sw))
        t = np.linspace(-1, 1, max(1, x1 - x0), dtype=np.float32)
        shade = (0.7 + 0.35 * np.sqrt(np.clip(1 - t ** 2, 0, 1)))[None, :, None]  # rounded spine
        arr[top:shelf_y, x0:x1] = col * shade
        if rng.random() < 0.6:  # title band on the spine
            ty = int(rng.uniform(top, shelf_y - 10))
            arr[ty:ty + int(rng.integers(5, 14)), x0 + 2:max(x0 + 2, x1 - 2)] = \
                np.clip(255 - col * rng.uniform(0.3, 1), 0, 255)
        x += sw + rng.uniform(0, 1.5)
    arr[shelf_y:] = board
    arr[shelf_y:shelf_y + 2] *= 0.6
    top_shadow = np.clip(np.linspace(0.55, 1.1, h, dtype=np.float32), 0, 1)[:, None, None]
    arr = np.clip(arr * top_shadow, 0, 255).astype(np.uint8)  # behind the item: out of focus
    return np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 2.0))), np.float32)


def _bg_album_page(rng, w, h):
    """Stamp-album page: black or cream card with clear mounting strips or a printed grid."""
    dark = rng.random() < 0.5
    page = _colour(rng, [(25, 25, 28)] if dark else [(238, 232, 212), (245, 245, 240), (225, 225, 215)], 6)
    g = 1 + 0.02 * (_smooth(rng, w, h, 50) - 0.5)
    out = _tint(g, page)
    x, y = _grid(w, h)
    if rng.random() < 0.6:  # horizontal clear strips with a glossy top line
        step, strip = rng.uniform(40, 70), rng.uniform(18, 32)
        yy = np.broadcast_to((y + rng.uniform(0, step)) % step, (h, w))
        in_strip = yy < strip
        out[in_strip] = out[in_strip] * 0.93 + (18 if dark else 4)
        out[(yy < 1.2)] = out[(yy < 1.2)] * 0.7 + 70
    else:  # printed square grid
        step = rng.uniform(8, 14)
        line = (((x % step) < 0.8) | ((y % step) < 0.8))
        line = np.broadcast_to(line, (h, w))
        out[line] = out[line] * 0.75 + (35 if dark else 0)
    return out


def _bg_tablecloth(rng, w, h):
    """Gingham check tablecloth with a faint weave and soft folds."""
    c = _colour(rng, [(200, 40, 45), (40, 70, 160), (40, 130, 70), (30, 30, 30), (230, 150, 40)], 10)
    white = np.array([245, 243, 238], np.float32)
    x, y = _grid(w, h)
    p = rng.uniform(12, 36)
    a = rng.uniform(-0.4, 0.4)
    u, v = x * math.cos(a) + y * math.sin(a), -x * math.sin(a) + y * math.cos(a)
    sx, sy = ((u % p) < p / 2).astype(np.float32), ((v % p) < p / 2).astype(np.float32)
    k = (0.45 * sx + 0.45 * sy)[..., None]  # 0 white, 0.45 stripe, 0.9 crossing
    out = white * (1 - k) + c * k
    weave = np.sin(2 * np.pi * x / 3) * np.sin(2 * np.pi * y / 3)
    folds = np.sin(2 * np.pi * _fbm(rng, w, h, (2, 4)) * 2)
    return out * (1 + 0.04 * weave + 0.08 * folds)[..., None]


def _bg_marble(rng, w, h):
    base = _colour(rng, [(235, 235, 232), (60, 60, 62), (200, 195, 185), (70, 100, 85)], 6)
    vein = _colour(rng, [(120, 120, 125), (200, 200, 200), (160, 140, 110)], 10)
    x, y = _grid(w, h)
    a = rng.uniform(0, math.pi)
    turb = _fbm(rng, w, h, (2, 5, 11, 25))
    v = np.sin((x * math.cos(a) + y * math.sin(a)) / rng.uniform(25, 60) + rng.uniform(6, 12) * turb)
    veins = np.exp(-np.abs(v) * rng.uniform(5, 12))[..., None]
    cloud = 1 + 0.06 * (_smooth(rng, w, h, 8) - 0.5)[..., None]
    return (base * (1 - 0.7 * veins) + vein * 0.7 * veins) * cloud


def _bg_concrete(rng, w, h):
    grey = rng.uniform(110, 190)
    colour = np.array([grey, grey * rng.uniform(0.97, 1.02), grey * rng.uniform(0.93, 1.0)], np.float32)
    g = 1 + 0.18 * _fbm(rng, w, h, (4, 10, 25, 60)) + rng.normal(0, 0.035, (h, w)).astype(np.float32)
    pores = rng.random((h, w)) < 0.004
    pores = ndimage.binary_dilation(pores, iterations=1) if rng.random() < 0.5 else pores
    g = np.where(pores, g * 0.55, g)
    return _tint(g, colour)


def _bg_stage(rng, w, h):
    """Dark stage with coloured spotlights and a floor gradient (drum-kit / concert photos)."""
    x, y = _grid(w, h)
    out = np.full((h, w, 3), rng.uniform(8, 30), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        c = _colour(rng, [(255, 220, 160), (120, 140, 255), (255, 80, 160), (255, 255, 255), (120, 255, 200)], 20)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.15, 0.45) * w, rng.uniform(0.15, 0.45) * h
        spot = np.exp(-(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2))
        out += c * rng.uniform(0.3, 0.8) * spot[..., None]
    haze = _smooth(rng, w, h, 4)[..., None]
    return out * (0.8 + 0.4 * haze)


_BACKGROUNDS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "wood": _bg_wood, "fabric": _bg_fabric, "paper": _bg_paper, "wall": _bg_wall, "tiles": _bg_tiles,
    "bokeh": _bg_bokeh, "desk": _bg_desk, "carpet": _bg_carpet,
    "shelf": _bg_shelf, "album_page": _bg_album_page, "tablecloth": _bg_tablecloth, "marble": _bg_marble,
    "concrete": _bg_concrete, "stage": _bg_stage,
}
BACKGROUND_FAMILIES_TRAIN: tuple[str, ...] = ("wood", "fabric", "paper", "wall", "tiles", "bokeh", "desk", "carpet")
BACKGROUND_FAMILIES_PHOTO_VAL: tuple[str, ...] = ("shelf", "album_page", "tablecloth", "marble", "concrete", "stage")


def make_background(rng: np.random.Generator, size: tuple[int, int], family: str | None = None) -> Image.Image:
    """A procedural photo-like background of size (width, height), RGB.

    `family` is one of the keys of BACKGROUND_FAMILIES_TRAIN / _PHOTO_VAL; None picks a training family.
    Every texture gets low-frequency illumination variation and a little fine noise.
    """
    w, h = int(size[0]), int(size[1])
    if family is None:
        family = BACKGROUND_FAMILIES_TRAIN[int(rng.integers(len(BACKGROUND_FAMILIES_TRAIN)))]
    if family not in _BACKGROUNDS:
        raise ValueError(f"unknown background family {family!r}")
    arr = _BACKGROUNDS[family](rng, w, h)
    arr = arr * _light_field(rng, w, h)[..., None] + rng.normal(0, 1.5, (h, w, 1)).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------

def _perspective_coeffs(dst: Sequence[tuple[float, float]], src: Sequence[tuple[float, float]]) -> tuple:
    """PIL PERSPECTIVE data mapping output points `dst` to input points `src` (4 pairs)."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(dst, src)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        b[2 * i], b[2 * i + 1] = u, v
    return tuple(np.linalg.solve(a, b))


def _unit_quad(rng: np.random.Generator, w: float, h: float, rot_deg: float, tilt: bool) -> np.ndarray:
    """Corners (TL, TR, BR, BL) of a w x h rectangle centred at 0, tilted in perspective and rotated."""
    q = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]], np.float64)
    if tilt:
        t = rng.uniform(0.04, 0.22)  # foreshortening: one edge shorter, the other axis squashed
        axis = int(rng.integers(2))
        far = int(rng.integers(2))  # which end is far
        if axis == 0:   # top or bottom edge shorter
            rows = [0, 1] if far == 0 else [2, 3]
            q[rows, 0] *= 1 - t
            q[:, 1] *= 1 - t / 2
        else:           # left or right edge shorter
            rows = [0, 3] if far == 0 else [1, 2]
            q[rows, 1] *= 1 - t
            q[:, 0] *= 1 - t / 2
        q += rng.uniform(-0.025, 0.025, q.shape) * np.array([w, h])
    ang = math.radians(rng.uniform(-rot_deg, rot_deg))
    c, s = math.cos(ang), math.sin(ang)
    return q @ np.array([[c, s], [-s, c]])


def _quad_area(q: np.ndarray) -> float:
    x, y = q[:, 0], q[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _warp_item(item: Image.Image, quad: np.ndarray) -> tuple[Image.Image, int, int]:
    """Warp an RGBA item onto the quad (output coords); returns the patch and its top-left offset."""
    x0, y0 = np.floor(quad.min(0)).astype(int)
    x1, y1 = np.ceil(quad.max(0)).astype(int)
    w, h = item.size
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    coeffs = _perspective_coeffs([tuple(p - (x0, y0)) for p in quad], src)
    patch = item.transform((int(x1 - x0), int(y1 - y0)), Image.PERSPECTIVE, coeffs, Image.BILINEAR)
    return patch, int(x0), int(y0)


def _cutout(image: Image.Image) -> Image.Image | None:
    """Cut a single compact object off a uniform studio backdrop; None if the picture isn't one.

    Book covers with white margins etc. are protected: the border must be uniform, the object must be
    one solid, convex-ish blob (>= 93 % of its convex hull) holding >= 97 % of the foreground (no stray text).
    """
    w, h = image.size
    s = 96 / max(w, h)
    sw, sh = max(8, round(w * s)), max(8, round(h * s))
    a = np.asarray(image.resize((sw, sh), Image.BILINEAR), np.float32)
    border = np.concatenate([a[:2].reshape(-1, 3), a[-2:].reshape(-1, 3), a[:, :2].reshape(-1, 3),
                             a[:, -2:].reshape(-1, 3)])
    bg = np.median(border, 0)
    spread = np.percentile(np.linalg.norm(border - bg, axis=1), 90)
    if spread > 22:  # the object may touch the edges (a coin filling the frame): try the four corners
        k = max(3, min(sw, sh) // 14)
        corners = [a[:k, :k], a[:k, -k:], a[-k:, :k], a[-k:, -k:]]
        meds = np.array([np.median(c.reshape(-1, 3), 0) for c in corners])
        bg = np.median(meds, 0)
        pix = np.concatenate([c.reshape(-1, 3) for c in corners])
        spread = max(np.percentile(np.linalg.norm(pix - bg, axis=1), 90),
                     np.linalg.norm(meds - bg, axis=1).max())
        if spread > 22:
            return None
    dist = np.linalg.norm(a - bg, axis=2)
    raw = ndimage.binary_opening(dist > max(28.0, 2.5 * spread))
    if raw.sum() < 0.05 * raw.size:
        return None
    fg = ndimage.binary_fill_holes(ndimage.binary_closing(raw, iterations=2, border_value=0))
    lab, n = ndimage.label(fg)
    if n == 0:
        return None
    sizes = ndimage.sum_labels(fg, lab, index=np.arange(1, n + 1))
    keep = np.isin(lab, 1 + np.flatnonzero(sizes >= 0.3 * sizes.max()))
    if raw[keep].sum() < 0.97 * raw.sum() or not 0.05 <= keep.mean() <= 0.9:
        return None  # scattered content (text on a plain cover) or nothing to cut
    pts = np.argwhere(keep).astype(np.float64)  # solidity: blob area vs. its convex hull
    try:
        if keep.sum() < 0.93 * ConvexHull(pts[:: max(1, len(pts) // 4000)]).volume:
            return None  # several items / crossed sticks: keep the rectangle
    except QhullError:
        return None
    keep = ndimage.binary_erosion(keep)  # drop the backdrop-tinted rim of anti-aliased edge pixels
    alpha = Image.fromarray((keep * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    alpha = alpha.filter(ImageFilter.GaussianBlur(max(0.6, 0.6 / s)))
    out = image.convert("RGBA")
    out.putalpha(alpha)
    return out.crop(alpha.point(lambda v: 255 if v > 20 else 0).getbbox())


# --------------------------------------------------------------------------------------------
# hand occluder
# --------------------------------------------------------------------------------------------

_SKIN = [(255, 219, 172), (241, 194, 145), (224, 172, 125), (198, 134, 90), (141, 85, 56), (92, 58, 42)]


def _ellipse_poly(cx, cy, a, b, ang, n=20):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = math.cos(ang), math.sin(ang)
    x, y = a * np.cos(t), b * np.sin(t)
    return list(zip(cx + x * c - y * s, cy + x * s + y * c))


def _hand_mask(w: int, h: int, p: np.ndarray, d: np.ndarray, u: float, rng: np.random.Generator
               ) -> tuple[Image.Image, Image.Image]:
    """Hand silhouette (L) and a finger-outline map (L) for a hand whose fingers point along unit
    vector d, with the finger base near point p; u = palm width in px."""
    n = np.array([-d[1], d[0]])
    ang = math.atan2(d[1], d[0])
    mask, lines = Image.new("L", (w, h), 0), Image.new("L", (w, h), 0)
    dm, dl = ImageDraw.Draw(mask), ImageDraw.Draw(lines)
    palm = p - d * 0.45 * u
    far = palm - d * 3 * (w + h)  # arm runs off-frame
    arm = [tuple(palm + n * 0.38 * u), tuple(palm - n * 0.38 * u),
           tuple(far - n * 0.45 * u), tuple(far + n * 0.45 * u)]
    dm.polygon(arm, fill=255)
    dm.polygon(_ellipse_poly(*palm, 0.55 * u, 0.5 * u, ang), fill=255)
    nf = int(rng.integers(2, 5))
    fw = 0.5 * u / 2.2
    offs = np.linspace(-0.33, 0.33, 4)[:nf] if rng.random() < 0.5 else np.linspace(-0.33, 0.33, 4)[-nf:]
    for o in offs:
        length = u * rng.uniform(0.45, 0.75) * (1 - 0.5 * abs(o))
        c = palm + d * (0.35 * u + length / 2) + n * o * u
        poly = _ellipse_poly(*c, length / 2 + fw / 2, fw / 2 * 1.05, ang + rng.uniform(-0.15, 0.15))
        dm.polygon(poly, fill=255)
        dl.polygon(poly, outline=255)
    side = 1 if rng.random() < 0.5 else -1  # thumb
    tc = palm + n * side * 0.55 * u + d * 0.2 * u
    dm.polygon(_ellipse_poly(*tc, 0.35 * u, 0.13 * u, ang + side * 0.7), fill=255)
    return mask, lines


def _occlude(img: Image.Image, item_mask: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, np.ndarray]:
    """Draw a hand entering from one side of the item's bbox, covering <= 25 % of the item."""
    w, h = img.size
    ys, xs = np.nonzero(item_mask)
    if len(xs) == 0:
        return img, np.zeros((h, w), bool)
    bx0, bx1, by0, by1 = xs.min(), xs.max(), ys.min(), ys.max()
    side = int(rng.integers(4))  # 0 left, 1 right, 2 top, 3 bottom
    t = rng.uniform(0.2, 0.8)
    p, d = {0: ((bx0, by0 + t * (by1 - by0)), (1, 0)), 1: ((bx1, by0 + t * (by1 - by0)), (-1, 0)),
            2: ((bx0 + t * (bx1 - bx0), by0), (0, 1)), 3: ((bx0 + t * (bx1 - bx0), by1), (0, -1))}[side]
    a = math.atan2(d[1], d[0]) + rng.uniform(-0.45, 0.45)
    d = np.array([math.cos(a), math.sin(a)])
    p = np.array(p, float)
    item_area = item_mask.sum()
    u = float(rng.uniform(0.35, 0.6) * min(bx1 - bx0, by1 - by0))
    for _ in range(5):
        hand, lines = _hand_mask(w, h, p, d, u, rng)
        hm = np.asarray(hand) > 127
        if (hm & item_mask).sum() <= 0.25 * item_area:
            break
        u *= 0.75
        p = p - d * 0.08 * u
    else:
        return img, np.zeros((h, w), bool)
    base = np.asarray(img, np.float32)
    # the hand's shadow on the scene first
    off = (rng.uniform(-0.08, 0.08) * u, rng.uniform(0.02, 0.1) * u)
    sh = hand.transform(hand.size, Image.AFFINE, (1, 0, -off[0], 0, 1, -off[1]))
    sh = sh.filter(ImageFilter.GaussianBlur(0.08 * u + 1))
    base *= 1 - 0.35 * (np.asarray(sh, np.float32) / 255)[..., None]
    skin = np.asarray(_SKIN[int(rng.integers(len(_SKIN)))], np.float32) * rng.uniform(0.85, 1.05)
    soft = np.asarray(hand.filter(ImageFilter.GaussianBlur(0.12 * u)), np.float32) / 255  # rounded shading
    ln = np.asarray(lines.filter(ImageFilter.GaussianBlur(0.8)), np.float32) / 255
    x, y = _grid(w, h)
    grad = 1 + 0.12 * (((x - p[0]) * -d[1] + (y - p[1]) * d[0]) / max(u, 1))
    mottle = 1 + 0.08 * (_smooth(rng, w, h, 10) - 0.5) + rng.normal(0, 0.015, (h, w)).astype(np.float32)
    shade = (0.65 + 0.4 * soft ** 1.5) * np.clip(grad, 0.8, 1.2) * (1 - 0.4 * ln) * mottle
    col = skin[None, None] * shade[..., None]
    alpha = (np.asarray(hand.filter(ImageFilter.GaussianBlur(0.7)), np.float32) / 255)[..., None]
    out = base * (1 - alpha) + col * alpha
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)), hm


# --------------------------------------------------------------------------------------------
# camera effects
# --------------------------------------------------------------------------------------------

def _lighting(img: Image.Image, rng: np.random.Generator, strength: float, glare: bool) -> Image.Image:
    a = np.asarray(img, np.float32)
    h, w = a.shape[:2]
    x, y = _grid(w, h)
    field = np.full((h, w), math.exp(rng.uniform(-0.3, 0.15) * strength), np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    ramp = ((x / w - 0.5) * math.cos(ang) + (y / h - 0.5) * math.sin(ang)) * 2
    field = field * (1 + rng.uniform(0, 0.3) * strength * ramp)
    if rng.random() < 0.5:  # vignette
        r2 = ((x / w - 0.5) ** 2 + (y / h - 0.5) ** 2) * 2
        field = field * (1 - rng.uniform(0.1, 0.4) * strength * r2)
    kind = int(rng.integers(6))  # neutral, warm, cool, tungsten, fluorescent, shade
    k = rng.uniform(0.03, 0.1) * strength
    gains = [(1, 1, 1), (1 + k, 1 + k / 3, 1 - k), (1 - k, 1, 1 + k), (1 + 1.6 * k, 1 + 0.4 * k, 1 - 1.8 * k),
             (1 - k / 2, 1 + k / 2, 1 - k / 3), (1 - k / 2, 1, 1 + 0.6 * k)][kind]
    gains = np.asarray(gains, np.float32)
    gains /= gains @ np.array([0.299, 0.587, 0.114], np.float32)  # keep luminance
    out = a * field[..., None] * gains[None, None]
    if glare and rng.random() < 0.3:  # soft glare band from a window / lamp
        ga = rng.uniform(0, math.pi)
        dist = (x - rng.uniform(0, w)) * math.cos(ga) + (y - rng.uniform(0, h)) * math.sin(ga)
        band = np.exp(-(dist / (rng.uniform(0.05, 0.2) * max(w, h))) ** 2)
        out = out + (255 - out) * (rng.uniform(0.1, 0.3) * strength * band)[..., None]
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _motion_blur(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(img, np.float32)
    length = int(rng.integers(3, 10))
    ang = rng.uniform(0, math.pi)
    offs = {(int(round(t * math.cos(ang))), int(round(t * math.sin(ang))))
            for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, length)}
    pad = length
    ap = np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = a.shape[:2]
    out = np.zeros_like(a)
    for dx, dy in offs:
        out += ap[pad + dy:pad + dy + h, pad + dx:pad + dx + w]
    return Image.fromarray(np.clip(out / len(offs), 0, 255).astype(np.uint8))


def _noise(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(img, np.float32)
    h, w = a.shape[:2]
    sigma = rng.uniform(2, 9)
    luma = rng.standard_normal((h, w, 1), dtype=np.float32) * sigma
    chroma = rng.standard_normal((h, w, 3), dtype=np.float32) * (sigma * rng.uniform(0.2, 0.5))
    # shot noise: darker areas noisier relative to signal -> scale a bit with (1 - brightness)
    scale = 1.3 - 0.6 * a.mean(2, keepdims=True) / 255
    return Image.fromarray(np.clip(a + (luma + chroma) * scale, 0, 255).astype(np.uint8))


def _jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(30, 91)))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _downscale(img: Image.Image, rng: np.random.Generator, lo: int, hi: int) -> Image.Image:
    w, h = img.size
    short = min(w, h)
    target = int(rng.integers(lo, hi + 1))
    if target >= short:
        target = max(8, int(short * 0.6))
    s = target / short
    small = img.resize((max(1, round(w * s)), max(1, round(h * s))),
                       (Image.BILINEAR, Image.BOX, Image.BICUBIC)[int(rng.integers(3))])
    return small.resize((w, h), (Image.BILINEAR, Image.BICUBIC)[int(rng.integers(2))])


def crop_size_for_aspect(w: int, h: int, aspect: float) -> tuple[int, int]:
    """Size of the largest crop of a w x h picture with width / height = `aspect`."""
    return (w, max(1, round(w / aspect))) if aspect > w / h else (max(1, round(h * aspect)), h)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# --------------------------------------------------------------------------------------------
# the augmentation
# --------------------------------------------------------------------------------------------

class PhotoRealism:
    """Make a flat scan / studio picture look like a phone photo; see the module docstring."""

    def __init__(self, config: RealismConfig, backgrounds: tuple[str, ...] = BACKGROUND_FAMILIES_TRAIN):
        unknown = [b for b in backgrounds if b not in _BACKGROUNDS]
        if unknown or not backgrounds:
            raise ValueError(f"unknown background families: {unknown}")
        self.config, self.backgrounds = config, tuple(backgrounds)

    def __repr__(self) -> str:
        return f"PhotoRealism({self.config!r}, backgrounds={self.backgrounds})"

    def __call__(self, image: Image.Image, rng: np.random.Generator,
                 extra_items: Sequence[Image.Image] = ()) -> tuple[Image.Image, np.ndarray | None]:
        """Returns the augmented image and, when the item was composited, a bool mask (H x W of the
        output) of where the main item is visible (None otherwise). `extra_items` (1-2 pictures of the
        same class, passed by the caller with probability `config.multi_item`) are used when compositing."""
        cfg = self.config
        img = image if image.mode == "RGB" else image.convert("RGB")
        if not cfg.active:
            return img.copy(), None
        hit = lambda p: p > 0 and rng.random() < p  # noqa: E731
        mask = None
        if hit(cfg.composite):
            extras = list(extra_items)[:2] if cfg.multi_item > 0 else []
            img, mask = self._composite(img, rng, extras, perspective=hit(cfg.perspective),
                                        wide=hit(cfg.aspect_crop), cutout=hit(cfg.cutout))
            if hit(cfg.occlusion):
                img, hand = _occlude(img, mask, rng)
                mask = mask & ~hand
        else:
            if hit(cfg.perspective):
                img = self._frame_warp(img, rng)
            if hit(cfg.aspect_crop):
                img = self._aspect_crop(img, rng)
            if hit(cfg.occlusion):
                img, _ = _occlude(img, np.ones((img.height, img.width), bool), rng)
        if hit(cfg.lighting):
            img = _lighting(img, rng, cfg.lighting_strength, glare=cfg.task != "car")
        if hit(cfg.downscale):
            img = _downscale(img, rng, cfg.downscale_min_side, cfg.downscale_max_side)
        if hit(cfg.blur):
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.8))) if rng.random() < 0.6 \
                else _motion_blur(img, rng)
        if hit(cfg.noise):
            img = _noise(img, rng)
        if hit(cfg.jpeg):
            img = _jpeg(img, rng)
        return img, mask

    # -- steps ---------------------------------------------------------------------------------
    def _composite(self, item: Image.Image, rng: np.random.Generator, extras: list[Image.Image],
                   perspective: bool, wide: bool, cutout: bool) -> tuple[Image.Image, np.ndarray]:
        cfg = self.config
        long = int(rng.integers(256, 321))
        aspect = _log_uniform(rng, 0.5, 2.0) if wide else _log_uniform(rng, 0.66, 1.5)  # W / H
        W, H = (long, max(64, round(long / aspect))) if aspect >= 1 else (max(64, round(long * aspect)), long)
        family = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        scene = make_background(rng, (W, H), family)
        shadow = Image.new("L", (W, H), 0)
        sdx, sdy = rng.uniform(-0.04, 0.04) * long, rng.uniform(0.005, 0.05) * long  # one light source
        blur = rng.uniform(2, 8)
        darkness = rng.uniform(0.3, 0.6)
        mask = np.zeros((H, W), bool)

        def prepare(im: Image.Image) -> Image.Image:
            im = im if im.mode == "RGB" else im.convert("RGB")
            cut = _cutout(im) if cutout else None
            return cut if cut is not None else im.convert("RGBA")

        layers = []
        for ex in extras:  # behind the main item, smaller, may run off the frame
            it = prepare(ex)
            q = _unit_quad(rng, it.width, it.height, cfg.max_rotation_deg, perspective)
            q *= math.sqrt(rng.uniform(0.12, 0.35) * W * H / _quad_area(q))
            q += np.array([rng.uniform(0, W), rng.uniform(0, H)])
            layers.append((it, q, False))
        it = prepare(item)
        rot = cfg.max_rotation_deg if perspective else min(3.0, cfg.max_rotation_deg)
        for attempt in range(4):
            q = _unit_quad(rng, it.width, it.height, rot, perspective)
            span = q.max(0) - q.min(0)
            s_fit = min(0.97 * W / span[0], 0.97 * H / span[1])
            s = min(math.sqrt(rng.uniform(0.35, 0.9) * W * H / _quad_area(q)), s_fit)
            if s * s * _quad_area(q) >= 0.35 * W * H or attempt == 3:
                break
            rot *= 0.5  # too rotated to fit large enough: straighten
        q *= s
        lo, hi = q.min(0), q.max(0)
        q += np.array([rng.uniform(-lo[0], W - hi[0]), rng.uniform(-lo[1], H - hi[1])])
        layers.append((it, q, True))

        patches = [(_warp_item(it, q), main) for it, q, main in layers]
        for (patch, x0, y0), _ in patches:  # one soft shadow from all items' warped silhouettes
            shadow.paste(255, (int(x0 + sdx), int(y0 + sdy)), patch.getchannel("A"))
        shadow_a = np.asarray(shadow.filter(ImageFilter.GaussianBlur(blur)), np.float32) / 255
        base = np.asarray(scene, np.float32) * (1 - darkness * shadow_a)[..., None]
        scene = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        for (patch, x0, y0), main in patches:
            scene.paste(patch, (x0, y0), patch)
            if main:
                a = np.asarray(patch.getchannel("A")) > 127
                ys, xs = slice(max(0, y0), min(H, y0 + a.shape[0])), slice(max(0, x0), min(W, x0 + a.shape[1]))
                mask[ys, xs] = a[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        return scene, mask

    def _frame_warp(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Perspective view of the whole frame: map a tilted/rotated quad inside it to the full output."""
        w, h = img.size
        q = _unit_quad(rng, w, h, self.config.frame_rotation_deg, tilt=True)
        half = np.abs(q).max(0)
        s = min(w / 2 / half[0], h / 2 / half[1]) * rng.uniform(0.9, 1.0)
        q *= s
        slack = np.array([w / 2, h / 2]) - np.abs(q).max(0)
        c = np.array([w / 2, h / 2]) + rng.uniform(-1, 1, 2) * np.maximum(slack, 0)
        src = [tuple(p) for p in q + c]
        coeffs = _perspective_coeffs([(0, 0), (w, 0), (w, h), (0, h)], src)
        return img.transform((w, h), Image.PERSPECTIVE, coeffs, Image.BICUBIC)

    @staticmethod
    def _aspect_crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Crop to a random aspect in [0.5, 2] (W/H), keeping >= 50 % of the frame."""
        w, h = img.size
        src = w / h
        lo, hi = max(0.5, src / 2), min(2.0, src * 2)
        if lo >= hi:  # strips wider than 4:1 (or taller): only crops towards square are possible
            lo, hi = (src / 2, src) if src > 1 else (src, src * 2)
        target = src
        for _ in range(8):  # want a clearly different aspect
            target = _log_uniform(rng, lo, hi)
            if abs(math.log(target / src)) > 0.15:
                break
        cw, ch = crop_size_for_aspect(w, h, target)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return img.crop((x0, y0, x0 + cw, y0 + ch))


_PHOTO_VAL_SALT = 0x9E3779B1


def photo_like_view(image: Image.Image, task: str, seed: int,
                    extra_items: Sequence[Image.Image] = ()) -> tuple[Image.Image, np.ndarray | None]:
    """Deterministic "photo-like" validation view: "full" preset for the task, backgrounds from
    BACKGROUND_FAMILIES_PHOTO_VAL, compositing always on for collectibles; same seed -> same output."""
    cfg = RealismConfig.preset("full", task)
    if task != "car":
        cfg = cfg.with_overrides(composite=1.0, multi_item=1.0)  # extras: caller decides
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFF, _PHOTO_VAL_SALT]))
    return PhotoRealism(cfg, BACKGROUND_FAMILIES_PHOTO_VAL)(image, rng, extra_items)
