"""Train / validation splits that measure what matters: photos from sources the model never saw.

`holdout_split` takes the merged samples of every data folder and assigns whole units to one side:

* units: near-duplicates (perceptual-hash distance <= 6) are joined across everything; on top of
  that a photo folder's source, a negative's (source, what) and an other-task source are each one
  unit, so a held-out source is wholly unseen;
* scans (catalogue pictures): stratified, grouped 80/20 (``StratifiedGroupKFold`` on the joined
  labels of all heads, then whole groups moved so every label held by >= 2 groups is on both sides);
* photos: whole sources held out, chosen with the seed so that every label has a held-out source and
  keeps a training source (see `_choose_held_units`). A label that in effect has one photo source
  (damaged cars) cannot lose it: that source is split inside by near-duplicate groups instead, and
  `Split.inside_source` says so;
* negatives and other-task photos: whole units held out, the same way without labels.

`crossfit_halves` then cuts the validation side in two halves by the same units, so a temperature
or threshold fitted on one half is reported on the other.
"""
from __future__ import annotations

import random
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from training.data import DataError, Sample

NEAR_DUPLICATE_BITS = 6
MIN_VAL_IMAGES = 15     # held-out photos a label should have where its sources allow
MAX_HELD_SHARE = 0.5    # a label's photos held out at most (unless its first held-out source is bigger)


@dataclass
class Split:
    train: list[Sample]
    val: list[Sample]
    unit: dict[Path, str]             # each sample's unit (what moves as one) by path
    held_out_sources: dict[str, list[str]] = field(default_factory=dict)   # kind -> held-out units
    inside_source: dict[str, str] = field(default_factory=dict)   # "head=label" -> source split inside

    def describe(self) -> dict:
        """What metrics.json records about the split."""
        return {"n_train": len(self.train), "n_val": len(self.val),
                "per_kind": {kind: {"train": sum(s.kind == kind for s in self.train),
                                    "val": sum(s.kind == kind for s in self.val)}
                             for kind in sorted({s.kind for s in self.train + self.val})},
                "held_out_sources": self.held_out_sources,
                "split_inside_source": self.inside_source}


def image_phash(path: str | Path) -> imagehash.ImageHash:
    """64-bit perceptual hash of an image, cached per path for the life of the process."""
    return _cached_phash(Path(path))


@lru_cache(maxsize=None)
def _cached_phash(path: Path) -> imagehash.ImageHash:
    with Image.open(path) as image:
        return imagehash.phash(image)


def joined_groups(n: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Each of `n` indices' group: the smallest index it is joined to, directly or through others, by `pairs`
    (scipy's connected components of the pairs' graph)."""
    rows, cols = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
    graph = coo_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    smallest = np.full(component.max(initial=-1) + 1, n)
    np.minimum.at(smallest, component, np.arange(n))
    return smallest[component]


def near_duplicate_groups(hashes: np.ndarray, max_distance: int = NEAR_DUPLICATE_BITS,
                          block: int = 512) -> np.ndarray:
    """Group ids joining (transitively) every pair of uint64 hashes within `max_distance` bits."""
    pairs = []
    for start in range(0, len(hashes), block):
        rows = hashes[start:start + block]
        distances = np.bitwise_count(rows[:, None] ^ hashes[None, start:])
        i, j = np.nonzero(distances <= max_distance)   # j is relative to `start` like i
        pairs += zip((start + i).tolist(), (start + j).tolist())
    return joined_groups(len(hashes), pairs)


def phash_groups(samples: Sequence[Sample], max_distance: int = NEAR_DUPLICATE_BITS) -> np.ndarray:
    bits = []
    for sample in samples:
        try:
            bits.append(image_phash(sample.path).hash.flatten())
        except Exception as exc:  # noqa: BLE001 - PIL raises many exception types
            raise DataError(f"cannot read {sample.path} for near-duplicate grouping ({exc})") from exc
    packed = np.packbits(np.array(bits, dtype=bool).reshape(len(samples), 64), axis=1)
    return near_duplicate_groups(packed.view(">u8").ravel().astype(np.uint64), max_distance)


def _label_keys(sample: Sample) -> set[str]:
    return {f"{h}={v}" for h, v in sample.labels.items() if v is not None}


def grouped_split(samples: Sequence[Sample], groups: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Stratified grouped split: a boolean "in validation" per sample, groups kept whole."""
    n_splits = round(1 / val_fraction)
    if len(set(groups.tolist())) < n_splits:
        raise DataError(f"need at least {n_splits} distinct images (after grouping near-duplicates) "
                        f"for a {val_fraction:.0%} validation split, got {len(set(groups.tolist()))}")
    strata = ["|".join(v or "?" for v in s.labels.values()) for s in samples]
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        _, val_idx = next(folds.split(np.zeros(len(samples)), strata, groups))
    in_val = np.zeros(len(samples), dtype=bool)
    in_val[val_idx] = True
    _cover_both_sides(samples, groups, in_val)
    return in_val


def _cover_both_sides(samples: Sequence[Sample], groups: np.ndarray, in_val: np.ndarray) -> None:
    """Move whole groups (in place) until each label held by >= 2 groups is in train and in val."""
    members: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(groups.tolist()):
        members[group].append(index)
    group_labels = {g: set().union(*(_label_keys(samples[i]) for i in idx)) for g, idx in members.items()}
    side = {g: bool(in_val[idx[0]]) for g, idx in members.items()}
    label_groups = Counter(key for keys in group_labels.values() for key in keys)
    eligible = {key for key, count in label_groups.items() if count >= 2}
    counts = {False: Counter(), True: Counter()}
    for g, keys in group_labels.items():
        counts[side[g]].update(keys)

    def gain(g: int) -> int:
        """How many (label, side) gaps moving group g closes, minus how many it opens."""
        here = side[g]
        return sum((counts[not here][k] == 0) - (counts[here][k] == 1) for k in group_labels[g] & eligible)

    while any(counts[s][k] == 0 for k in eligible for s in (False, True)):
        best = max(members, key=lambda g: (gain(g), -len(members[g]), -g))
        if gain(best) <= 0:
            break
        counts[side[best]].subtract(group_labels[best])
        side[best] = not side[best]
        counts[side[best]].update(group_labels[best])
        in_val[members[best]] = side[best]


def _unit_ids(samples: Sequence[Sample], phash: np.ndarray) -> list[str]:
    """Each sample's unit name: its near-duplicate family joined with its holdout group, if any."""
    first: dict[str, int] = {}
    pairs = [(i, first.setdefault(f"{sample.kind}:{sample.holdout_group}", i))
             for i, sample in enumerate(samples) if sample.holdout_group is not None]
    roots = joined_groups(len(samples), pairs + list(enumerate(phash.tolist())))
    names: dict[int, str] = {}
    for i, sample in enumerate(samples):   # name a unit after its first holdout group, else its first image
        if sample.holdout_group is not None:
            names.setdefault(roots[i], f"{sample.kind}:{sample.holdout_group}")
    return [names.get(r, f"image:{samples[r].path.name}") for r in roots]


def _choose_held_units(unit_counts: dict[str, Counter], val_fraction: float, rng: random.Random
                       ) -> tuple[set[str], dict[str, str]]:
    """Held-out units among whole-source units, and the labels that have to be split inside a source.

    A label whose other sources together hold less than `val_fraction` of its photos has, in effect,
    one source: that source is split inside instead (returned as label -> source). For every other
    label, greedily and seeded: in random label order, a unit that brings the label's held-out count
    closer to its target (`val_fraction` of its photos, at least `MIN_VAL_IMAGES` where the label has
    twice that) is held out, as long as no label's share passes `MAX_HELD_SHARE` and every label keeps
    a training source. A label still without a held-out source then gets the one that makes the worst
    label's share least lopsided.
    """
    label_units: dict[str, list[str]] = defaultdict(list)
    totals: Counter = Counter()
    for unit in sorted(unit_counts):
        for key, n in unit_counts[unit].items():
            totals[key] += n
            label_units[key].append(unit)
    dominant = {key: max(units, key=lambda u: (unit_counts[u][key], u)) for key, units in label_units.items()}
    inside = {key: dominant[key] for key in totals
              if totals[key] - unit_counts[dominant[key]][key] < val_fraction * totals[key]}
    target = {key: max(val_fraction * n, min(MIN_VAL_IMAGES, n / 2)) for key, n in totals.items()}
    held: set[str] = set()

    def held_count(key: str, extra: str | None = None) -> int:
        return sum(unit_counts[u][key] for u in held) + (unit_counts[extra][key] if extra else 0)

    def allowed(unit: str, capped: bool = True) -> bool:
        """Not held yet, not a label's dominant source, every label keeps a training source."""
        if unit in held or unit in inside.values():
            return False
        for key in unit_counts[unit]:
            if key in inside:
                continue
            if not any(u not in held and u != unit for u in label_units[key]):
                return False
            if capped and held_count(key, unit) > MAX_HELD_SHARE * totals[key]:
                return False
        return True

    def improves(key: str, unit: str) -> bool:
        now, after = held_count(key), held_count(key, unit)
        if now < min(MIN_VAL_IMAGES, target[key]):
            return True
        return abs(after - target[key]) < abs(now - target[key])

    def closeness(key: str, unit: str) -> float:
        return abs(held_count(key, unit) - target[key])

    # Pictures without labels (negatives, other-task photos): many small units in random order, for variety.
    for key in sorted(k for k in totals if k.startswith("kind=")):
        for unit in rng.sample(label_units[key], len(label_units[key])):
            if held_count(key) >= target[key]:
                break
            if held_count(key, unit) <= 1.25 * target[key] and allowed(unit):
                held.add(unit)
    keys = sorted(k for k in totals if k not in inside and not k.startswith("kind="))
    progress = True
    while progress:
        progress = False
        for key in rng.sample(keys, len(keys)):
            better = [u for u in label_units[key] if allowed(u) and improves(key, u)]
            if better:
                best = min(closeness(key, u) for u in better)
                held.add(rng.choice([u for u in better if closeness(key, u) == best]))
                progress = True
    for key in keys:
        if not any(u in held for u in label_units[key]):
            candidates = [u for u in label_units[key] if allowed(u, capped=False)]
            if candidates:
                held.add(min(candidates, key=lambda u: (max(held_count(k, u) / totals[k] for k in unit_counts[u]), u)))
    return held, inside


def holdout_split(samples: Sequence[Sample], val_fraction: float = 0.2, seed: int = 0) -> Split:
    """The split described in the module docstring, deterministic for a given seed."""
    if not 0 < val_fraction <= 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5], got {val_fraction}")
    samples = list(samples)
    units = _unit_ids(samples, phash_groups(samples))
    unit_of = dict(zip((s.path for s in samples), units))
    in_val = np.zeros(len(samples), dtype=bool)
    rng = random.Random(seed)
    split = Split([], [], unit_of)

    whole = [i for i, u in enumerate(units) if not u.startswith("image:")]
    unit_counts: dict[str, Counter] = defaultdict(Counter)
    for i in whole:
        unit_counts[units[i]].update(_label_keys(samples[i]) or {f"kind={samples[i].kind}"})
    held, inside_of = _choose_held_units(unit_counts, val_fraction, rng)
    inside = set(inside_of.values())
    for i in whole:
        in_val[i] = units[i] in held
    # Scans (no holdout group), and each source split inside, by near-duplicate groups.
    for part in ("image:", *sorted(inside)):
        members = [i for i, u in enumerate(units) if (u.startswith(part) if part == "image:" else u == part)]
        if members:
            part_samples = [samples[i] for i in members]
            in_val[members] = grouped_split(part_samples, phash_groups(part_samples), val_fraction, seed)

    for i, sample in enumerate(samples):
        (split.val if in_val[i] else split.train).append(sample)
    by_kind: dict[str, set[str]] = defaultdict(set)
    for unit in held:
        kind, _, name = unit.partition(":")
        by_kind[kind].add(name)
    split.held_out_sources = {k: sorted(v) for k, v in sorted(by_kind.items())}
    split.inside_source = {key: unit.partition(":")[2] for key, unit in sorted(inside_of.items())}
    return split


def crossfit_halves(val: Sequence[Sample], unit_of: dict[Path, str], seed: int) -> np.ndarray:
    """Half A (False) or B (True) per validation sample, whole units per half, balanced per kind."""
    sizes: dict[str, Counter] = defaultdict(Counter)
    for s in val:
        sizes[s.kind][unit_of[s.path]] += 1
    half_of: dict[str, bool] = {}
    rng = random.Random(seed + 1)
    for kind in sorted(sizes):
        totals = [0, 0]
        units = sorted(sizes[kind], key=lambda u: (-sizes[kind][u], rng.random()))
        for unit in units:   # largest first, each to the lighter half
            half = totals[1] < totals[0] or (totals[0] == totals[1] and rng.random() < 0.5)
            half_of[unit] = half
            totals[half] += sizes[kind][unit]
    return np.array([half_of[unit_of[s.path]] for s in val])
