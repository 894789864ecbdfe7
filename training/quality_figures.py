"""The photo quality check's figures: how many in-class photos each check turns away, and whether it catches
degraded copies.

    python -m training.quality_figures [--json PATH]

The shared photo folders (car_photos, collectibles_photos) are split by `source` (seeded, each source whole
on one side). Each fitted limit of inference.quality.Thresholds comes from the calibration half alone: halfway
between the accepting edge (the value that turns away `BUDGET` of its photos) and the catching edge (the value
that catches `CATCH` of their copies with the check's target degradation), or the accepting edge where the
two overlap; rounded to two significant figures in the accepting direction. The script prints them beside the
ones inference/quality.py ships and warns when they differ. Turn-away rates are then reported with the
shipped thresholds on the held-out half (photos the thresholds never saw), on all photos (labelled so) and on
the scan folders (car, collectibles; never used for fitting), and catch rates on degraded copies (darkened,
over-exposed, washed out, blurred, downscaled) of the photos.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from inference.images import load_image
from inference.quality import PROBLEMS, THRESHOLDS, Quality, check_quality
from inference.tasks import REPO_ROOT

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
PHOTO_FOLDERS = {"car": ("car_photos", "labels.csv"), "collectibles": ("collectibles_photos", "MANIFEST.csv")}
SCAN_FOLDERS = {"car": ("car", "labels.csv"), "collectibles": ("collectibles", "MANIFEST.csv")}
SEED = 0
BUDGET = 0.003   # share of the calibration photos each fitted check may turn away (4 checks + too_small <= 2%)
CATCH = 0.99     # share of the target degradation's copies each fitted check should catch
CODES = PROBLEMS


# Degradations: what a retake should fix, applied to a decoded RGB photo (also used by tests/test_quality.py).

def darken(photo: Image.Image, factor: float = 0.15) -> Image.Image:
    return Image.fromarray(np.uint8(np.asarray(photo, np.float32) * factor))


def overexpose(photo: Image.Image, gain: float = 3.0) -> Image.Image:
    return Image.fromarray(np.uint8(np.clip(np.asarray(photo, np.float32) * gain, 0, 255)))


def wash_out(photo: Image.Image, white: float = 0.6) -> Image.Image:
    """A veil of light over the photo (flare, a smeared lens): `white` of every pixel is white."""
    return Image.fromarray(np.uint8(np.asarray(photo, np.float32) * (1 - white) + 255 * white))


def blur(photo: Image.Image, sigma_share: float = 0.01) -> Image.Image:
    """Gaussian blur with sigma = `sigma_share` of the longest side (1%: 40 px on a 4000 px photo)."""
    return photo.filter(ImageFilter.GaussianBlur(sigma_share * max(photo.size)))


def downscale(photo: Image.Image, short_side: int = 48) -> Image.Image:
    """The photo made smaller, to `short_side` pixels on its shorter side (a thumbnail)."""
    scale = short_side / min(photo.size)
    return photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))), Image.BILINEAR)


# name -> (degradation, the problem code it should raise)
DEGRADATIONS: dict[str, tuple[Callable[[Image.Image], Image.Image], str]] = {
    "darkened x0.15": (darken, "too_dark"),
    "darkened x0.3": (lambda p: darken(p, 0.3), "too_dark"),
    "over-exposed x3": (overexpose, "too_bright"),
    "over-exposed x2": (lambda p: overexpose(p, 2.0), "too_bright"),
    "washed out (60% white)": (wash_out, "washed_out"),
    "blurred, sigma 1% of the side": (blur, "blurred"),
    "blurred, sigma 0.5% of the side": (lambda p: blur(p, 0.005), "blurred"),
    "downscaled to a 48 px side": (downscale, "too_small"),
}
# Field of Thresholds (min_: the photo fails below it, max_: above) -> (the metric it limits, the degradation it
# must catch, halfway on a log scale?)
FITTED_LIMITS = {
    "min_luminance_p95": ("luminance_p95", "darkened x0.15", False),
    "max_centre_clipped": ("centre_clipped", "over-exposed x3", False),
    "max_luminance_p5": ("luminance_p5", "washed out (60% white)", False),
    "min_sharpness": ("sharpness", "blurred, sigma 1% of the side", True),
}


@dataclass
class Measured:
    task: str
    source: str
    calibration: bool              # a photo of the half the thresholds are fitted on
    quality: Quality
    degraded: dict[str, Quality]   # degradation name -> the degraded copy's check


def read_rows(folder: str, csv_name: str, data: Path) -> list[tuple[Path, str]]:
    with open(data / folder / csv_name, newline="") as f:
        return [(data / folder / row["image"], row["source"]) for row in csv.DictReader(f)]


def calibration_sources(sources: list[str], seed: int) -> set[str]:
    """Sources in seeded random order, each to the half with fewer photos so far; the first half calibrates."""
    counts = Counter(sources)
    order = sorted(counts)
    random.Random(seed).shuffle(order)
    halves: tuple[list[str], list[str]] = ([], [])
    sizes = [0, 0]
    for source in order:
        side = 0 if sizes[0] <= sizes[1] else 1
        halves[side].append(source)
        sizes[side] += counts[source]
    return set(halves[0])


def measure_folder(task: str, kind: str, rows: list[tuple[Path, str]], calibration: set[str],
                   degrade: bool) -> list[Measured]:
    """Each image decoded as the app decodes it (load_image: JPEGs drafted to scale, EXIF upright) and checked,
    with its degraded copies when `degrade`."""
    measured = []
    for path, source in tqdm(rows, desc=f"{task} {kind}", unit="img"):
        photo = load_image(path)
        degraded = {name: check_quality(fn(photo), task) for name, (fn, _) in DEGRADATIONS.items()} if degrade else {}
        measured.append(Measured(task, source, source in calibration, check_quality(photo, task), degraded))
    return measured


def round_accepting(value: float, upper: bool) -> float:
    """Two significant figures, rounded so the limit accepts at least what the fitted value did."""
    step = 10 ** (math.floor(math.log10(abs(value))) - 1) if value else 1.0
    return round((math.ceil if upper else math.floor)(value / step) * step, 10)


def fit_limit(in_class: np.ndarray, degraded: np.ndarray, fails_below: bool, log_scale: bool) -> dict[str, float]:
    """Halfway between the accepting edge (the in-class photos' BUDGET quantile) and the catching edge (the
    CATCH quantile of the degraded copies); the accepting edge itself when the two overlap."""
    accept_edge = float(np.quantile(in_class, BUDGET if fails_below else 1 - BUDGET))
    catch_edge = float(np.quantile(degraded, CATCH if fails_below else 1 - CATCH))
    if (catch_edge >= accept_edge) if fails_below else (catch_edge <= accept_edge):
        limit = accept_edge
    else:
        limit = math.sqrt(accept_edge * catch_edge) if log_scale else (accept_edge + catch_edge) / 2
    return {"accept_edge": accept_edge, "catch_edge": catch_edge,
            "limit": round_accepting(limit, upper=not fails_below)}


def fit_thresholds(calibration: list[Measured]) -> dict[str, dict[str, float]]:
    """Each fitted limit of Thresholds from the calibration photos and their degraded copies."""
    return {limit: fit_limit(np.array([m.quality.metrics[metric] for m in calibration]),
                             np.array([m.degraded[degradation].metrics[metric] for m in calibration]),
                             fails_below=limit.startswith("min_"), log_scale=log_scale)
            for limit, (metric, degradation, log_scale) in FITTED_LIMITS.items()}


def turn_away(items: list[Measured]) -> dict:
    n = len(items)
    shares = {code: sum(code in m.quality.problems for m in items) / n for code in CODES}
    return {"n": n, **shares, "any": sum(not m.quality.ok for m in items) / n}


def catch_rates(items: list[Measured]) -> dict[str, dict[str, float]]:
    """Per degradation: the share of copies flagged with the expected code, and with any problem."""
    return {name: {"expected": sum(code in m.degraded[name].problems for m in items) / len(items),
                   "any": sum(not m.degraded[name].ok for m in items) / len(items)}
            for name, (_, code) in DEGRADATIONS.items()}


def cost_ms(photo: Image.Image, size: tuple[int, int], runs: int = 20) -> float:
    """Median time of check_quality on `photo` enlarged to `size`, in ms."""
    big = photo.resize(size, Image.BICUBIC)
    check_quality(big, "car")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        check_quality(big, "car")
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def figures(data: Path, seed: int) -> dict:
    photos: list[Measured] = []
    scans: list[Measured] = []
    split = {}
    for task, (folder, csv_name) in PHOTO_FOLDERS.items():
        rows = read_rows(folder, csv_name, data)
        calibration = calibration_sources([source for _, source in rows], seed)
        photos += measure_folder(task, "photos", rows, calibration, degrade=True)
        split[task] = {"calibration_sources": sorted(calibration),
                       "held_out_sources": sorted({s for _, s in rows} - calibration)}
    for task, (folder, csv_name) in SCAN_FOLDERS.items():
        scans += measure_folder(task, "scans", read_rows(folder, csv_name, data), set(), degrade=False)

    result: dict = {"seed": seed, "budget": BUDGET, "catch": CATCH, "split": split, "fitted": {}, "shipped": {},
                    "turn_away": {}, "caught": {}}
    for task in PHOTO_FOLDERS:
        mine = [m for m in photos if m.task == task]
        held_out = [m for m in mine if not m.calibration]
        result["fitted"][task] = fit_thresholds([m for m in mine if m.calibration])
        result["shipped"][task] = asdict(THRESHOLDS[task])
        result["turn_away"][f"{task} photos, held-out half"] = turn_away(held_out)
        result["turn_away"][f"{task} photos, calibration half"] = turn_away([m for m in mine if m.calibration])
        result["turn_away"][f"{task} photos, all"] = turn_away(mine)
        result["turn_away"][f"{task} scans, all (never fitted on)"] = turn_away([m for m in scans if m.task == task])
        result["caught"][f"{task} held-out"] = catch_rates(held_out)
        result["caught"][f"{task} all"] = catch_rates(mine)
    result["turn_away"]["both tasks photos, held-out half"] = turn_away([m for m in photos if not m.calibration])
    result["turn_away"]["both tasks photos, all"] = turn_away(photos)
    result["turn_away"]["both tasks scans, all"] = turn_away(scans)
    example = load_image(read_rows(*PHOTO_FOLDERS["car"], data)[0][0])
    result["cost_ms"] = {"12 MP (4000 x 3000)": cost_ms(example, (4000, 3000)),
                         "1024 x 768 (load_image's largest)": cost_ms(example, (1024, 768))}
    return result


def print_figures(result: dict) -> None:
    print(f"Split: seed {result['seed']}, sources kept whole")
    for task, sides in result["split"].items():
        held_out = sides["held_out_sources"]
        print(f"  {task}: {len(sides['calibration_sources'])} calibration sources, {len(held_out)} held out "
              f"({', '.join(held_out[:6])}{', ...' if len(held_out) > 6 else ''})")
    print(f"\nThresholds fitted on the calibration half: halfway between the accepting edge (the photos' "
          f"{result['budget']:.1%} quantile)\nand the catching edge (the target degradation's {result['catch']:.0%} "
          f"quantile), or the accepting edge where they overlap")
    for task, fitted in result["fitted"].items():
        for name, fit in fitted.items():
            shipped = result["shipped"][task][name]
            note = "not checked" if shipped is None else "" if shipped == fit["limit"] else "WARNING: differs"
            print(f"  {task:12s} {name:18s} accept {fit['accept_edge']:<9.4g} catch {fit['catch_edge']:<9.4g} "
                  f"-> {fit['limit']:<7g} shipped {shipped}  {note}".rstrip())
    print(f"\nTurned away (share of in-class photos){'':22s}" + " ".join(f"{c:>10s}" for c in (*CODES, "any")))
    for group, row in result["turn_away"].items():
        print(f"  {group:44s} n={row['n']:<5d} " + " ".join(f"{row[c]:10.2%}" for c in (*CODES, "any")))
    groups = list(result["caught"])
    print("\nDegraded copies caught with the expected code (with any code)\n"
          f"  {'':32s}" + "".join(f"{g:>26s}" for g in groups))
    for name, (_, code) in DEGRADATIONS.items():
        cells = [result["caught"][g][name] for g in groups]
        print(f"  {name:32s}" + "".join(f"{c['expected']:>17.1%} ({c['any']:6.1%})" for c in cells))
    print("\nCost of check_quality (median, ms): "
          + ", ".join(f"{size}: {ms:.1f}" for size, ms in result["cost_ms"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the source split")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    result = figures(args.data, args.seed)
    print_figures(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
