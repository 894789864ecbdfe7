"""training/data.py: formats, label maps, several folders with their kinds, negatives, broken files, errors."""
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
from support import shared
from training.data import (DEFAULT_LABEL_MAP, DataError, DataFolder, label_counts, load_dataset, load_label_map,
                           load_outliers, load_sources)

CAR = get_task("car")
COLLECTIBLES = get_task("collectibles")


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


def test_real_car_manifest_masks() -> None:
    data = load_dataset(CAR, shared("car"), check_images=False)
    assert data.format == "csv" and data.skipped == []
    assert len(data.samples) == 2763
    data1a = [s for s in data.samples if s.source == "data1a"]
    assert len(data1a) == 1914
    assert all(s.labels["cleanliness"] is None and s.labels["damage"] in ("intact", "damaged") for s in data1a)
    eyewash = [s for s in data.samples if s.source == "eyewash"]
    assert sum(s.labels["damage"] is None for s in eyewash) == 28   # filled in by eye on 2026-12-05
    assert label_counts(CAR, data.samples) == {
        "cleanliness": {"clean": 371, "slightly_dirty": 17, "very_dirty": 106},
        "damage": {"intact": 1399, "damaged": 1323}}


def test_real_collectibles_folder_prefers_manifest() -> None:
    data = load_dataset(COLLECTIBLES, shared("collectibles"), check_images=False)
    assert data.format == "csv"
    assert len(data.samples) == 3535
    assert label_counts(COLLECTIBLES, data.samples)["category"]["drumsticks"] == 491


def test_data_folder_kinds() -> None:
    assert DataFolder.parse("../shared/data/car_photos").kind == "photo"
    assert DataFolder.parse("../shared/data/car").kind == "scan"
    assert DataFolder.parse("photo=../x/studio") == DataFolder(Path("../x/studio"), "photo")
    assert DataFolder.parse("scan=../x/photos").kind == "scan"
    with pytest.raises(DataError, match="unknown data kind"):
        load_dataset(CAR, shared("car"), kind="drawing")


def test_several_data_folders_merge_with_sources_and_kinds() -> None:
    samples, record = load_sources(COLLECTIBLES, [DataFolder.parse(str(shared("collectibles"))),
                                                  DataFolder.parse(str(shared("collectibles_photos")))],
                                   check_images=False)
    assert [(r["kind"], r["n_images"]) for r in record] == [("scan", 3535), ("photo", 901)]
    assert len(samples) == 3535 + 901
    photos = [s for s in samples if s.kind == "photo"]
    assert {s.source for s in photos} >= {"bk_jival23", "jordancoin", "hartwell"}
    assert all(s.kind == "scan" for s in samples[:3535])
    assert {s.holdout_group for s in photos if s.source == "jordancoin"} == {"jordancoin"}
    assert all(s.holdout_group is None and s.in_domain for s in samples[:3535])
    # The merged set is checked as a whole: a photos folder may lack a class on its own.
    car_photos, _ = load_sources(CAR, [DataFolder.parse(str(shared("car_photos")))], check_images=False,
                                 min_per_class=0)
    assert {s.source for s in car_photos} == {"openalpr", "hemil", "dstaroff", "karad", "edsauto", "d716", "automind"}


def test_negatives_and_other_task_pictures_are_outliers() -> None:
    negatives = load_outliers(COLLECTIBLES, shared("negatives"), "negative", check_images=False)
    assert len(negatives) == 1617
    banknotes = [s for s in negatives if s.source == "banknotes_jordan"]
    assert len(banknotes) == 110 and {s.holdout_group for s in banknotes} == {"banknotes_jordan/banknote"}
    assert all(not s.in_domain and s.labels == {"category": None} for s in negatives)
    cars = load_outliers(COLLECTIBLES, shared("car"), "other_task", check_images=False, per_source=60)
    per_source = {src: sum(s.source == src for s in cars) for src in {s.source for s in cars}}
    assert per_source == {"data1a": 60, "tqvcd": 60, "vds": 60, "stanford": 60, "eyewash": 60, "dwdw2": 60}
    assert cars == load_outliers(COLLECTIBLES, shared("car"), "other_task", check_images=False, per_source=60)
    with pytest.raises(DataError, match="unknown outlier kind"):
        load_outliers(COLLECTIBLES, shared("negatives"), "photo")


def test_outliers_from_a_plain_image_folder(tmp_path: Path) -> None:
    make_image(tmp_path / "kitchen" / "a.jpg", 1)
    make_image(tmp_path / "b.png", 2)
    (tmp_path / "notes.txt").write_text("not an image")
    found = load_outliers(CAR, tmp_path, "negative")
    assert sorted((s.path.name, s.source) for s in found) == [("a.jpg", "kitchen"), ("b.png", tmp_path.name)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_outliers(CAR, tmp_path / "empty", "negative")
    with pytest.raises(DataError, match="negative folder not found"):
        load_outliers(CAR, tmp_path / "missing", "negative")


def test_multitask_loss_is_a_weighted_mean_per_head_and_skips_unknown_labels():
    import torch
    import torch.nn.functional as F

    from training.losses import UNKNOWN, multitask_loss

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
    # A photo whose label is unknown for a head does not move that head's loss.
    moved = {**logits, "damage": logits["damage"].clone()}
    moved["damage"][0] += 5.0
    assert torch.allclose(multitask_loss(moved, targets, loss_weights, weights, 0.1), expected, atol=1e-6)


def test_the_domain_head_is_a_class_weighted_binary_cross_entropy_over_every_picture():
    import torch
    import torch.nn.functional as F

    from inference.model import DOMAIN_OUTPUT
    from training.losses import UNKNOWN, class_weights, multitask_loss, targets_for
    from training.data import Sample

    samples = [Sample(Path(f"{i}.jpg"), {"category": "coins" if i < 4 else None}, "s",
                      "photo" if i < 4 else "negative") for i in range(6)]
    targets = targets_for(COLLECTIBLES, samples, domain=True)
    assert targets[DOMAIN_OUTPUT].tolist() == [1, 1, 1, 1, 0, 0]
    assert targets["category"].tolist() == [1, 1, 1, 1, UNKNOWN, UNKNOWN]   # negatives: no category
    weights = class_weights(COLLECTIBLES, targets)
    assert weights[DOMAIN_OUTPUT][0] > weights[DOMAIN_OUTPUT][1]            # the rarer side weighs more
    logits = {"category": torch.randn(6, 5, generator=torch.Generator().manual_seed(1)),
              DOMAIN_OUTPUT: torch.tensor([2.0, 1.0, -0.5, 3.0, -2.0, 0.5])}
    y = targets[DOMAIN_OUTPUT].float()
    w = weights[DOMAIN_OUTPUT][targets[DOMAIN_OUTPUT]]
    bce = (F.binary_cross_entropy_with_logits(logits[DOMAIN_OUTPUT], y, reduction="none") * w).sum() / w.sum()
    category = F.cross_entropy(logits["category"][:4], targets["category"][:4], weight=weights["category"])
    got = multitask_loss(logits, targets, {"category": 1.0, DOMAIN_OUTPUT: 0.5}, weights)
    assert torch.allclose(got, category + 0.5 * bce, atol=1e-6)
