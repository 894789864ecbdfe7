"""training/splits.py: near-duplicate groups, the grouped scan split, whole photo sources held out."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from inference.tasks import get_task
from support import shared
from test_data import make_image
from training.data import DataFolder, Sample, label_counts, load_outliers, load_sources
from training.splits import crossfit_halves, grouped_split, holdout_split, image_phash, near_duplicate_groups, \
    phash_groups

CAR, COLLECTIBLES = get_task("car"), get_task("collectibles")


def split_fixture(root: Path) -> tuple[list[Sample], list[list[Path]]]:
    """5 classes x 12 distinct images; the first 3 of each class get 2 near-duplicates each (90 images)."""
    samples, families, seed = [], [], 1000
    for label in COLLECTIBLES.heads["category"]:
        for i in range(12):
            family = [make_image(root / label / f"{i}.png", seed)]
            if i < 3:
                family += [make_image(root / label / f"{i}_dup{k}.jpg", seed, near_duplicate=True) for k in range(2)]
            samples += [Sample(p, {"category": label}, "test") for p in family]
            families.append(family)
            seed += 1
    return samples, families


def test_grouped_split(tmp_path: Path) -> None:
    samples, families = split_fixture(tmp_path)
    for family in families[:3]:
        assert all(image_phash(family[0]) - image_phash(p) <= 6 for p in family[1:])
    groups = phash_groups(samples)
    val = grouped_split(samples, groups, 0.2, seed=0)
    assert np.array_equal(val, grouped_split(samples, groups, 0.2, seed=0))
    assert not np.array_equal(val, grouped_split(samples, groups, 0.2, seed=1))
    assert 0.15 <= val.mean() <= 0.25
    paths = {s.path for s, v in zip(samples, val) if v}
    for family in families:  # near-duplicates never straddle train and val
        assert len({p in paths for p in family}) == 1
    # Stratified: every class contributes 2-4 of its 18 images to val.
    counts = label_counts(COLLECTIBLES, [s for s, v in zip(samples, val) if v])["category"]
    assert all(2 <= n <= 4 for n in counts.values()), counts


def test_grouped_split_puts_rare_labels_on_both_sides(tmp_path: Path) -> None:
    samples = []
    for i in range(40):
        cleanliness = "slightly_dirty" if i < 2 else None  # only 2 images: one must go to each side
        damage = ("intact", "damaged")[i % 2] if i >= 2 else None
        samples.append(Sample(make_image(tmp_path / f"{i}.png", 2000 + i),
                              {"cleanliness": cleanliness, "damage": damage}, "test"))
    groups = phash_groups(samples)
    for seed in range(4):
        val = grouped_split(samples, groups, 0.2, seed)
        for side in (True, False):
            part = [s for s, v in zip(samples, val) if v == side]
            assert sum(s.labels["cleanliness"] == "slightly_dirty" for s in part) == 1
            assert {s.labels["damage"] for s in part} >= {"intact", "damaged"}


def test_near_duplicate_groups_are_transitive_and_vectorised() -> None:
    hashes = np.random.default_rng(0).integers(0, 2**63, 3500, dtype=np.uint64)
    hashes[10] = hashes[5] ^ np.uint64(0b111111)  # 6 bits from 5
    hashes[3000] = hashes[10] ^ np.uint64(0b111111 << 20)  # 6 bits from 10, 12 from 5: joined via 10
    hashes[20] = hashes[5] ^ np.uint64(0b1111111 << 40)  # 7 bits: not a near-duplicate
    groups = near_duplicate_groups(hashes, max_distance=6)
    assert groups[5] == groups[10] == groups[3000]
    assert groups[20] != groups[5]
    assert len(set(groups.tolist())) == 3500 - 2


@pytest.fixture(scope="module")
def collectibles_pictures() -> list[Sample]:
    """Every real collectibles photo, every fifth scan and every third negative (the split's real inputs)."""
    scans, _ = load_sources(COLLECTIBLES, [DataFolder.parse(str(shared("collectibles")))], check_images=False)
    photos, _ = load_sources(COLLECTIBLES, [DataFolder.parse(str(shared("collectibles_photos")))],
                             check_images=False, min_per_class=0)
    negatives = load_outliers(COLLECTIBLES, shared("negatives"), "negative", check_images=False)
    return scans[::5] + photos + negatives[::3]


def sides(split, kind: str) -> dict[str, set[bool]]:
    """For each source of `kind`: the sides (True = validation) its pictures are on."""
    val = {s.path for s in split.val}
    out: dict[str, set[bool]] = {}
    for s in split.train + split.val:
        if s.kind == kind:
            out.setdefault(s.holdout_group, set()).add(s.path in val)
    return out


def test_photo_sources_are_held_out_whole_for_every_class(collectibles_pictures) -> None:
    split = holdout_split(collectibles_pictures, 0.2, seed=0)
    assert sorted(s.path for s in split.train + split.val) == sorted(s.path for s in collectibles_pictures)
    for kind in ("photo", "negative"):
        placed = sides(split, kind)
        assert all(len(v) == 1 for v in placed.values()), [k for k, v in placed.items() if len(v) > 1]
        assert set(split.held_out_sources[kind]) == {k for k, v in placed.items() if v == {True}}
    assert split.inside_source == {}
    for part in (split.train, split.val):   # every class has photos on both sides
        photos = [s for s in part if s.kind == "photo"]
        assert all(n >= 5 for n in label_counts(COLLECTIBLES, photos)["category"].values())
    share = sum(s.kind == "photo" for s in split.val) / sum(s.kind == "photo" for s in collectibles_pictures)
    assert 0.15 <= share <= 0.4
    # Scans are split by near-duplicate groups, stratified.
    scans_val = [s for s in split.val if s.kind == "scan"]
    assert 0.15 <= len(scans_val) / sum(s.kind == "scan" for s in collectibles_pictures) <= 0.25

    again = holdout_split(collectibles_pictures, 0.2, seed=0)
    assert [s.path for s in again.val] == [s.path for s in split.val]
    other = holdout_split(collectibles_pictures, 0.2, seed=1)
    assert other.held_out_sources["photo"] != split.held_out_sources["photo"]


def test_a_label_with_one_photo_source_is_split_inside_it_and_said_so() -> None:
    photos, _ = load_sources(CAR, [DataFolder.parse(str(shared("car_photos")))], check_images=False, min_per_class=0)
    split = holdout_split(photos, 0.2, seed=0)
    # Damaged cars come (but for two) from one source: it cannot be held out whole, so it is split inside.
    assert split.inside_source == {"damage=damaged": "hemil"}
    assert sides(split, "photo")["hemil"] == {True, False}
    assert all(len(v) == 1 for k, v in sides(split, "photo").items() if k != "hemil")
    val_labels = Counter(s.labels["cleanliness"] for s in split.val)
    assert val_labels["slightly_dirty"] and val_labels["very_dirty"] and val_labels["clean"]
    assert "damage=damaged" in split.describe()["split_inside_source"]


def test_crossfit_halves_keep_units_whole(collectibles_pictures) -> None:
    split = holdout_split(collectibles_pictures, 0.2, seed=0)
    halves = crossfit_halves(split.val, split.unit, seed=0)
    assert np.array_equal(halves, crossfit_halves(split.val, split.unit, seed=0))
    by_unit: dict[str, set[bool]] = {}
    for s, h in zip(split.val, halves):
        by_unit.setdefault(split.unit[s.path], set()).add(bool(h))
    assert all(len(v) == 1 for v in by_unit.values())
    for kind in ("scan", "photo", "negative"):
        rows = np.array([s.kind == kind for s in split.val])
        assert 0.25 <= halves[rows].mean() <= 0.75, kind
