"""Tests for training/data.py: formats, label maps, broken files, errors and the grouped split."""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.tasks import get_task
from training.data import (DEFAULT_LABEL_MAP, DataError, Sample, _near_duplicate_groups, grouped_split,
                           image_phash, label_counts, load_dataset, load_label_map)

CAR = get_task("car")
COLLECTIBLES = get_task("collectibles")
REAL_CAR = Path("/work/shared/data/car")
REAL_COLLECTIBLES = Path("/work/shared/data/collectibles")


def make_image(path: Path, seed: int, near_duplicate: bool = False) -> Path:
    """A smooth random colour image (8x8 noise upscaled to 64x64): distinct seeds differ by > 6 pHash bits.

    ``near_duplicate`` resizes to 56 px and re-encodes as JPEG q85, which moves the pHash by only a few bits.
    """
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((64, 64), Image.BICUBIC)
    if near_duplicate:
        buffer = io.BytesIO()
        image.resize((56, 56), Image.LANCZOS).save(buffer, "JPEG", quality=85)
        image = Image.open(io.BytesIO(buffer.getvalue()))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_collectibles_folders(root: Path, per_class: int = 5) -> None:
    seed = 0
    for label in COLLECTIBLES.heads["category"]:
        for i in range(per_class):
            suffix = (".jpg", ".PNG", ".jpeg", ".webp", ".bmp")[i % 5]
            make_image(root / label / f"{label}{i}{suffix}", seed)
            seed += 1


def make_car_csv(root: Path) -> Path:
    """10 rows: 4 with cleanliness empty (unknown), 2 with damage empty, 1 with source empty."""
    rows = [
        ["images/a0.jpg", "", "damaged", "data1a"], ["images/a1.jpg", "", "intact", "data1a"],
        ["images/a2.jpg", "", "damaged", "data1a"], ["images/a3.jpg", "", "intact", "data1a"],
        ["images/b0.jpg", "clean", "intact", "stanford"], ["images/b1.jpg", "clean", "intact", ""],
        ["images/c0.jpg", "very_dirty", "", "eyewash"], ["images/c1.jpg", "slightly_dirty", "", "eyewash"],
        ["images/c2.jpg", "very_dirty", "damaged", "eyewash"], ["images/c3.jpg", "slightly_dirty", "intact", "x"],
    ]
    for seed, row in enumerate(rows, start=100):
        make_image(root / row[0], seed)
    return write_csv(root / "labels.csv", ["image", "cleanliness", "damage", "source"], rows)


def test_folder_format(tmp_path: Path) -> None:
    make_collectibles_folders(tmp_path)
    make_image(tmp_path / "coins" / "pcgs" / "nested.jpg", 999)  # nested sub-folder becomes the source
    (tmp_path / "coins" / "notes.txt").write_text("not an image")
    (tmp_path / "README.md").write_text("ignored")

    data = load_dataset(COLLECTIBLES, tmp_path)

    assert data.format == "folders"
    assert data.skipped == []
    assert label_counts(COLLECTIBLES, data.samples) == {
        "category": {"books": 5, "coins": 6, "drumsticks": 5, "stamps": 5, "vinyls": 5}}
    by_name = {s.path.name: s for s in data.samples}
    assert by_name["nested.jpg"].source == "pcgs"
    assert by_name["nested.jpg"].labels == {"category": "coins"}
    assert by_name["books1.PNG"].source == "folders"


def test_csv_format_with_unknown_cells(tmp_path: Path) -> None:
    csv_path = make_car_csv(tmp_path)
    (tmp_path / "cats").mkdir()  # sub-folders next to the single CSV are ignored: the CSV wins

    for location in (tmp_path, csv_path):
        data = load_dataset(CAR, location, min_per_class=2)
        assert data.format == "csv"
        by_name = {s.path.name: s for s in data.samples}
        assert len(by_name) == 10
        assert by_name["a0.jpg"].labels == {"cleanliness": None, "damage": "damaged"}
        assert by_name["c0.jpg"].labels == {"cleanliness": "very_dirty", "damage": None}
        assert by_name["a0.jpg"].path == tmp_path / "images" / "a0.jpg"
        assert by_name["a0.jpg"].source == "data1a"
        assert by_name["b1.jpg"].source == "unknown"
        assert label_counts(CAR, data.samples) == {
            "cleanliness": {"clean": 2, "slightly_dirty": 2, "very_dirty": 2},
            "damage": {"intact": 5, "damaged": 3}}


def test_csv_label_column_for_single_head_task(tmp_path: Path) -> None:
    rows = []
    for seed, label in enumerate(["books", "Coins", "coins", "books"]):
        rows.append([make_image(tmp_path / f"{seed}.png", 200 + seed).name, label])
    data = load_dataset(COLLECTIBLES, write_csv(tmp_path / "MANIFEST.csv", ["image", "label"], rows),
                        min_per_class=0)
    assert [s.labels["category"] for s in data.samples] == ["books", "coins", "coins", "books"]
    assert {s.source for s in data.samples} == {"csv"}


def write_labelstudio(root: Path, tasks: list[dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.json").write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")


def ls_task(task_id: int, image: str, *annotations: list[tuple[str, str]]) -> dict:
    """A Label Studio task; each annotation is a list of (type, raw label) results."""
    return {"id": task_id, "data": {"image": image}, "annotations": [
        {"id": task_id * 10 + k, "was_cancelled": False,
         "created_at": f"2024-01-0{k + 1}T00:00:00Z",
         "result": [{"type": kind, "value": {kind: [raw]}} for kind, raw in results]}
        for k, results in enumerate(annotations)]}


def test_labelstudio_export(tmp_path: Path) -> None:
    root = tmp_path / "export"
    for seed, name in enumerate(["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg", "p4.jpg"], start=300):
        make_image(root / "images" / name, seed)
    write_labelstudio(root, [
        # Upload prefix stripped; choice + damage rectangle.
        ls_task(1, "/data/upload/3/1a2b3c4d-p0.jpg", [("choices", "Чистый"), ("rectanglelabels", "Битый")]),
        # URL with ?d=; no damage rectangle -> damage unknown, not intact.
        ls_task(2, "http://localhost:8080/data/local-files/?d=images%2Fp1.jpg", [("choices", " пыльный ")]),
        # Conflicting cleanliness labels -> the more severe one; "ё" spelling.
        ls_task(3, "images/p2.jpg", [("choices", "Чистый"), ("choices", "Грязный"),
                                     ("rectanglelabels", "Повреждённый")]),
        # The latest annotation wins over an older one.
        ls_task(4, "p3.jpg", [("choices", "Грязный")], [("choices", "Чистый"), ("choices", "Целый")]),
        # A cancelled latest annotation is ignored; the earlier one is used.
        {"id": 5, "data": {"image": "/data/upload/3/deadbeef-p4.jpg"}, "annotations": [
            {"was_cancelled": False, "created_at": "2024-01-01", "result": [
                {"type": "choices", "value": {"choices": ["Целый"]}}]},
            {"was_cancelled": True, "created_at": "2024-02-01", "result": [
                {"type": "choices", "value": {"choices": ["Битый"]}}]}]},
        # Never annotated: ignored.
        {"id": 6, "data": {"image": "/data/upload/3/00000000-p0.jpg"}, "annotations": []},
    ])

    data = load_dataset(CAR, root, min_per_class=0)

    assert data.format == "labelstudio"
    assert data.skipped == []
    assert data.conflicts == 1
    labels = {s.path.name: s.labels for s in data.samples}
    assert labels == {
        "p0.jpg": {"cleanliness": "clean", "damage": "damaged"},
        "p1.jpg": {"cleanliness": "slightly_dirty", "damage": None},
        "p2.jpg": {"cleanliness": "very_dirty", "damage": "damaged"},
        "p3.jpg": {"cleanliness": "clean", "damage": "intact"},
        "p4.jpg": {"cleanliness": None, "damage": "intact"},
    }
    assert all(s.path.parent == root / "images" for s in data.samples)
    assert {s.source for s in data.samples} == {"labelstudio"}


def test_label_map_override(tmp_path: Path) -> None:
    root = tmp_path / "export"
    for seed in range(4):
        make_image(root / "images" / f"q{seed}.jpg", 400 + seed)
    write_labelstudio(root, [
        ls_task(1, "q0.jpg", [("choices", "Muddy")]),
        ls_task(2, "q1.jpg", [("choices", "Чистый"), ("rectanglelabels", "coin")]),  # 'category' head ignored
        ls_task(3, "q2.jpg", [("rectanglelabels", "Scratch")]),
        ls_task(4, "q3.jpg", [("choices", "clean")]),
    ])
    with pytest.raises(DataError, match=r"task 1: label 'Muddy' is not in the label map"):
        load_dataset(CAR, root, min_per_class=0)

    map_file = tmp_path / "map.json"
    map_file.write_text(json.dumps({"muddy": ["cleanliness", "very_dirty"], "SCRATCH": ["damage", "damaged"],
                                    "чистый": ["cleanliness", "slightly_dirty"]}, ensure_ascii=False))
    label_map = load_label_map(map_file)
    assert label_map["Битый"] == ("damage", "damaged")  # defaults kept
    assert label_map["muddy"] == ("cleanliness", "very_dirty")

    data = load_dataset(CAR, root, label_map=label_map, min_per_class=0)
    labels = {s.path.name: s.labels for s in data.samples}
    assert labels == {
        "q0.jpg": {"cleanliness": "very_dirty", "damage": None},
        "q1.jpg": {"cleanliness": "slightly_dirty", "damage": None},  # override beats default "Чистый"
        "q2.jpg": {"cleanliness": None, "damage": "damaged"},
        "q3.jpg": {"cleanliness": "clean", "damage": None},
    }

    map_file.write_text(json.dumps({"muddy": "very_dirty"}))
    with pytest.raises(DataError, match=r"entry 'muddy' must be"):
        load_label_map(map_file)
    map_file.write_text(json.dumps({"muddy": ["cleanliness", "filthy"]}))
    with pytest.raises(DataError, match=r"'filthy'.*clean, slightly_dirty, very_dirty"):
        load_dataset(CAR, root, label_map=load_label_map(map_file), min_per_class=0)


def test_default_label_map_covers_documented_labels() -> None:
    assert DEFAULT_LABEL_MAP["Пыльный"] == ("cleanliness", "slightly_dirty")
    assert DEFAULT_LABEL_MAP["dirty"] == ("cleanliness", "very_dirty")
    assert DEFAULT_LABEL_MAP["record"] == ("category", "vinyls")
    for head, label in DEFAULT_LABEL_MAP.values():
        assert label in {**CAR.heads, **COLLECTIBLES.heads}[head]


def test_corrupt_and_missing_files_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_collectibles_folders(tmp_path)
    (tmp_path / "books" / "empty.jpg").write_bytes(b"")
    (tmp_path / "books" / "text.jpg").write_text("this is not a JPEG")
    whole = (tmp_path / "books" / "books0.jpg").read_bytes()
    (tmp_path / "books" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    broken = {"empty.jpg", "text.jpg", "truncated.jpg"}

    with caplog.at_level(logging.WARNING, logger="training.data"):
        data = load_dataset(COLLECTIBLES, tmp_path)

    assert {p.name for p, _ in data.skipped} == broken
    assert all(reason.startswith("unreadable image") for _, reason in data.skipped)
    assert len(data.samples) == 25 and not broken & {s.path.name for s in data.samples}
    assert "skipped 3 image(s)" in caplog.text and "truncated.jpg" in caplog.text

    # Without decoding, broken files stay in; missing files from a CSV are still skipped.
    rows = [[f"books/books{i}.jpg", "books"] for i in (0, 5)] + [["books/truncated.jpg", "books"]]
    manifest = write_csv(tmp_path / "MANIFEST.csv", ["image", "label"], rows)
    data = load_dataset(COLLECTIBLES, manifest, min_per_class=0, check_images=False)
    assert [(p.name, r) for p, r in data.skipped] == [("books5.jpg", "file not found")]
    assert [s.path.name for s in data.samples] == ["books0.jpg", "truncated.jpg"]


def test_missing_and_empty_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found: .*nowhere"):
        load_dataset(COLLECTIBLES, tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"no labelled images found in .*expected a folder of class sub-folders"):
        load_dataset(COLLECTIBLES, tmp_path)
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "bad.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"no labelled images.*1 file\(s\) skipped"):
        load_dataset(COLLECTIBLES, tmp_path)


def test_unknown_labels(tmp_path: Path) -> None:
    make_collectibles_folders(tmp_path / "folders", per_class=1)
    make_image(tmp_path / "folders" / "cats" / "cat.jpg", 500)
    with pytest.raises(DataError, match=r"cats.*allowed folder names: books, coins, drumsticks, stamps, vinyls"):
        load_dataset(COLLECTIBLES, tmp_path / "folders")

    make_image(tmp_path / "car" / "x.jpg", 501)
    write_csv(tmp_path / "car" / "labels.csv", ["image", "cleanliness", "damage"],
              [["x.jpg", "clean", "intact"], ["x.jpg", "muddy", "intact"]])
    with pytest.raises(DataError, match=r"line 3 \(x\.jpg\): 'muddy'.*allowed: clean, slightly_dirty, very_dirty"):
        load_dataset(CAR, tmp_path / "car")

    write_csv(tmp_path / "car" / "labels.csv", ["image", "cleanliness"], [["x.jpg", "clean"]])
    with pytest.raises(DataError, match=r"missing column\(s\) damage"):
        load_dataset(CAR, tmp_path / "car")

    with pytest.raises(DataError, match=r"single-head tasks"):
        load_dataset(CAR, tmp_path / "folders")


def test_too_few_images_and_unknown_heads(tmp_path: Path) -> None:
    make_collectibles_folders(tmp_path, per_class=5)
    for extra in (tmp_path / "drumsticks").iterdir():
        if extra.name != "drumsticks0.jpg":
            extra.unlink()
    with pytest.raises(DataError, match=r"need at least 5\): category=drumsticks: 1$"):
        load_dataset(COLLECTIBLES, tmp_path)
    assert len(load_dataset(COLLECTIBLES, tmp_path, min_per_class=1).samples) == 21

    car = tmp_path / "car"
    make_image(car / "y.jpg", 600)
    write_csv(car / "labels.csv", ["image", "cleanliness", "damage"], [["y.jpg", "", "intact"]])
    with pytest.raises(DataError, match=r"no image in .* has a 'cleanliness' label"):
        load_dataset(CAR, car, min_per_class=0)


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

    train, val = grouped_split(samples, seed=0)
    again_train, again_val = grouped_split(samples, seed=0)
    other_train, other_val = grouped_split(samples, seed=1)

    assert [s.path for s in val] == [s.path for s in again_val]
    assert [s.path for s in train] == [s.path for s in again_train]
    assert {s.path for s in val} != {s.path for s in other_val}
    assert len(train) + len(val) == len(samples) == 90
    assert not {s.path for s in train} & {s.path for s in val}
    for v in (val, other_val):
        assert 0.15 <= len(v) / len(samples) <= 0.25
        val_paths = {s.path for s in v}
        for family in families:  # near-duplicates never straddle train and val
            assert len({p in val_paths for p in family}) == 1
    for part in (train, val):
        counts = label_counts(COLLECTIBLES, part)["category"]
        assert all(n > 0 for n in counts.values()), counts
    # Stratified: every class contributes 2-4 of its 18 images to val.
    assert all(2 <= n <= 4 for n in label_counts(COLLECTIBLES, val)["category"].values())


def test_grouped_split_puts_rare_labels_on_both_sides(tmp_path: Path) -> None:
    samples = []
    for i in range(40):
        cleanliness = "slightly_dirty" if i < 2 else None  # only 2 images: one must go to each side
        damage = ("intact", "damaged")[i % 2] if i >= 2 else None
        samples.append(Sample(make_image(tmp_path / f"{i}.png", 2000 + i),
                              {"cleanliness": cleanliness, "damage": damage}, "test"))
    for seed in range(4):
        train, val = grouped_split(samples, seed=seed)
        for part in (train, val):
            assert sum(s.labels["cleanliness"] == "slightly_dirty" for s in part) == 1
            assert {s.labels["damage"] for s in part} >= {"intact", "damaged"}


def test_near_duplicate_groups_are_transitive_and_vectorised() -> None:
    hashes = np.random.default_rng(0).integers(0, 2**63, 3500, dtype=np.uint64)
    hashes[10] = hashes[5] ^ np.uint64(0b111111)  # 6 bits from 5
    hashes[3000] = hashes[10] ^ np.uint64(0b111111 << 20)  # 6 bits from 10, 12 from 5: joined via 10
    hashes[20] = hashes[5] ^ np.uint64(0b1111111 << 40)  # 7 bits: not a near-duplicate
    groups = _near_duplicate_groups(hashes, max_distance=6)
    assert groups[5] == groups[10] == groups[3000]
    assert groups[20] != groups[5]
    assert len(set(groups.tolist())) == 3500 - 2


@pytest.mark.skipif(not (REAL_CAR / "labels.csv").is_file(), reason="shared car data not present")
def test_real_car_manifest_masks() -> None:
    data = load_dataset(CAR, REAL_CAR, check_images=False)
    assert data.format == "csv" and data.skipped == []
    assert len(data.samples) == 2763
    data1a = [s for s in data.samples if s.source == "data1a"]
    assert len(data1a) == 1914
    assert all(s.labels["cleanliness"] is None and s.labels["damage"] in ("intact", "damaged") for s in data1a)
    eyewash = [s for s in data.samples if s.source == "eyewash"]
    assert sum(s.labels["damage"] is None for s in eyewash) == 95
    assert label_counts(CAR, data.samples) == {
        "cleanliness": {"clean": 371, "slightly_dirty": 17, "very_dirty": 106},
        "damage": {"intact": 1319, "damaged": 1321}}


@pytest.mark.skipif(not (REAL_COLLECTIBLES / "MANIFEST.csv").is_file(), reason="shared collectibles data not present")
def test_real_collectibles_folder_prefers_manifest() -> None:
    data = load_dataset(COLLECTIBLES, REAL_COLLECTIBLES, check_images=False)
    assert data.format == "csv"
    assert len(data.samples) == 3535
    assert label_counts(COLLECTIBLES, data.samples)["category"]["drumsticks"] == 491


def test_multitask_loss_is_a_weighted_mean_per_head_and_skips_unknown_labels():
    import torch
    import torch.nn.functional as F

    from training.engine import UNKNOWN, multitask_loss

    g = torch.Generator().manual_seed(0)
    logits = {"cleanliness": torch.randn(6, 3, generator=g), "damage": torch.randn(6, 2, generator=g)}
    targets = {"cleanliness": torch.tensor([0, 0, 0, 1, 2, UNKNOWN]),
               "damage": torch.tensor([UNKNOWN, 1, 0, 1, 0, 1])}
    weights = {"cleanliness": torch.tensor([0.4, 1.8, 0.8]), "damage": torch.tensor([1.0, 1.0])}
    loss_weights = {"cleanliness": 1.0, "damage": 1.2}

    def head(h: str) -> torch.Tensor:   # PyTorch's own weighted mean over the photos with a label
        known = targets[h] != UNKNOWN
        return F.cross_entropy(logits[h][known], targets[h][known], weight=weights[h], label_smoothing=0.1)

    expected = 1.0 * head("cleanliness") + 1.2 * head("damage")
    got = multitask_loss(logits, targets, loss_weights, weights, label_smoothing=0.1)
    assert torch.allclose(got, expected, atol=1e-6)
    # Photo weights of 1 change nothing; doubling every photo's weight leaves a weighted mean unchanged.
    ones = {h: torch.ones(6) for h in logits}
    twos = {h: torch.full((6,), 2.0) for h in logits}
    assert torch.allclose(multitask_loss(logits, targets, loss_weights, weights, 0.1, ones), expected, atol=1e-6)
    assert torch.allclose(multitask_loss(logits, targets, loss_weights, weights, 0.1, twos), expected, atol=1e-6)
    # A photo whose label is unknown for a head does not move that head's loss.
    moved = {**logits, "damage": logits["damage"].clone()}
    moved["damage"][0] += 5.0
    assert torch.allclose(multitask_loss(moved, targets, loss_weights, weights, 0.1), expected, atol=1e-6)


def test_activation_mix_cuts_or_blends_the_reversed_batch_and_reports_the_label_share():
    import torch

    from training.engine import ActivationMix, reversed_batch

    x = torch.arange(2 * 3 * 14 * 14, dtype=torch.float32).reshape(2, 3, 14, 14)  # the two photos differ everywhere
    np.random.seed(0)
    shares = []
    for _ in range(20):
        mixed, lam = ActivationMix(1.0, cutmix_share=1.0)(x)
        from_partner = mixed == x.flip(0)
        assert torch.equal(mixed[~from_partner], x[~from_partner])
        # lam is exactly the share of each photo's own activations that survive the box.
        assert from_partner.float().mean().item() == pytest.approx(1 - lam)
        shares.append(lam)
    assert len(set(shares)) > 5 and 0 < np.mean(shares) < 1
    blended, lam = ActivationMix(1.0, cutmix_share=0.0)(x)
    assert 0 < lam < 1 and torch.allclose(blended, lam * x + (1 - lam) * x.flip(0))
    assert ActivationMix(0.0)(x)[1] == 1.0 and ActivationMix(0.0)(x)[0] is x
    assert torch.equal(reversed_batch({"damage": torch.tensor([0, 1, -1])})["damage"], torch.tensor([-1, 1, 0]))
    assert reversed_batch(None) is None


def test_wide_crop_ratio_lets_training_see_whole_book_covers():
    """Inference squashes a whole 2:3 cover to the square input; with the default 3:4..4:3 crops training
    never sees the whole cover (title and author at the edges are always cut), with --crop-ratio 0.5 2 it can."""
    import random

    import torch

    from inference.model import ModelConfig
    from inference.tasks import DEFAULT_ARCHITECTURE
    from training.engine import DEFAULT_CROP_RATIO, create_train_transform

    cover = np.full((300, 200, 3), 128, np.uint8)
    cover[:10, :, 0], cover[-10:, :, 2] = 255, 255  # a red top edge and a blue bottom edge
    image = Image.fromarray(cover)
    data_config = ModelConfig.for_task(get_task("collectibles"), DEFAULT_ARCHITECTURE, 224).data_config

    def whole_covers(crop_ratio: tuple[float, float]) -> int:
        transform = create_train_transform(data_config, "collectibles", crop_ratio)
        random.seed(0)
        torch.manual_seed(0)
        views = [transform(image) for _ in range(150)]
        return sum(bool(v[0, 0].mean() > v[2, 0].mean() + 0.5 and v[2, -1].mean() > v[0, -1].mean() + 0.5)
                   for v in views)

    assert whole_covers(DEFAULT_CROP_RATIO) == 0
    assert whole_covers((0.5, 2.0)) >= 5  # 10 of 150 with this seed
