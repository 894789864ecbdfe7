"""Smoke runs of the real training pipeline on a handful of real pictures, plus evaluate and publish."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from inference.hub import CheckpointSource
from inference.model import WEIGHTS_NAME, load_checkpoint
from training.model_builder import atomic_write
from inference.predictor import Predictor
from support import ROOT, shared

RUN_FILES = ("model.safetensors", "config.json", "model.onnx", "metrics.json", "README.md",
             "loss.png", "accuracy.png", "train.log")


def manifest_subset(source: Path, out: Path, per_group: int, key: str = "source", limit: int | None = None) -> Path:
    """A CSV manifest of at most `per_group` rows per (label, `key`) of a real manifest (absolute paths)."""
    manifest = next(source.glob("*.csv"))
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    seen: dict[tuple, int] = {}
    picked = []
    for row in rows:
        group = (row.get("label") or row.get("cleanliness", "") + row.get("damage", ""), row[key])
        if seen.get(group, 0) < per_group:
            seen[group] = seen.get(group, 0) + 1
            picked.append({**row, "image": str(source / row["image"])})
    picked = picked[:limit]
    out.mkdir(parents=True)
    with (out / manifest.name).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(picked)
    return out


def tiny_collectibles(tmp_path: Path, per_class: int = 8) -> Path:
    """Class folders with a few real scans per class (symlinks, nothing copied)."""
    root = tmp_path / "collectibles"
    for label in ("books", "coins", "drumsticks", "stamps", "vinyls"):
        (root / label).mkdir(parents=True)
        for photo in sorted((shared("collectibles") / label).glob("*.jpg"))[:per_class]:
            (root / label / photo.name).symlink_to(photo)
    return root


def tiny_car(tmp_path: Path) -> Path:
    """A CSV manifest mixing fully and partly labelled photos (empty cell = unknown)."""
    with (shared("car") / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    picked, wanted = [], {("", "damaged"): 8, ("", "intact"): 6, ("clean", "intact"): 8,
                          ("very_dirty", ""): 8, ("slightly_dirty", "intact"): 6}
    for row in rows:
        key = (row["cleanliness"], row["damage"])
        if wanted.get(key, 0) > 0:
            wanted[key] -= 1
            picked.append({**row, "image": str(shared("car") / row["image"])})
    manifest = tmp_path / "car" / "labels.csv"
    manifest.parent.mkdir()
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "cleanliness", "damage", "source"])
        writer.writeheader()
        writer.writerows(picked)
    return manifest


def train(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.train", "--views", "1", "--workers", "0",
                           "--batch-size", "16", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def collectibles_data(tmp_path_factory) -> list[str]:
    """Scans, real photos from several sources per class, negatives and car pictures: --data ... arguments."""
    tmp = tmp_path_factory.mktemp("data")
    photos = manifest_subset(shared("collectibles_photos"), tmp / "collectibles_photos", per_group=3)
    negatives = manifest_subset(shared("negatives"), tmp / "negatives", per_group=2, key="what", limit=40)
    cars = manifest_subset(shared("car_photos"), tmp / "car_photos", per_group=3)
    return ["--data", str(tiny_collectibles(tmp)), "--data", str(photos), "--negatives", str(negatives),
            "--other-task", str(cars)]


def test_collectibles_smoke_run_writes_a_loadable_hub_folder_and_resumes(tmp_path, collectibles_data):
    out = tmp_path / "run"
    first = train("--task", "collectibles", *collectibles_data, "--out", str(out), "--epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    for name in RUN_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    model, config = load_checkpoint(out, task="collectibles")
    assert config.domain_head and config.ood["method"] == "domain_head" and isinstance(config.ood["min_logit"], float)
    metrics = json.loads((out / "metrics.json").read_text())
    # Both kinds of data, with their folders and sources, and the negatives, are in the run's record.
    assert [f["kind"] for f in metrics["data"]["folders"]] == ["scan", "photo", "negative", "other_task"]
    assert set(metrics["splits"]) == {"val_scans", "val_photos"}
    assert metrics["split"]["held_out_sources"]["photo"]
    assert metrics["splits"]["val_photos"]["per_source"]
    ood = metrics["ood"]
    assert set(ood["in_domain_rejected"]) == {"scan", "photo"} and set(ood["outliers_accepted"]) == {"negative",
                                                                                                   "other_task"}
    assert "other half" in ood["measured_on"] and "other half" in metrics["calibration"]["category"]["measured_on"]
    assert metrics["training"]["epochs_run"] == 1
    assert (metrics["training"]["caches_reused"], metrics["training"]["caches"]) == (0, 2)
    card = (out / "README.md").read_text()
    assert "validation photos (held-out sources)" in card and "negative pictures accepted" in card

    # The shipped weights are the last epoch's, in timm's names (the category head is timm's classifier).
    state = torch.load(out / ".work" / "last.pt", map_location="cpu", weights_only=True)
    assert torch.equal(load_file(out / WEIGHTS_NAME)["classifier.weight"], state["model"]["backbone.classifier.weight"])

    # An interrupted run continues from its last finished epoch instead of starting over.
    second = train("--task", "collectibles", *collectibles_data, "--out", str(out), "--epochs", "2", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming after epoch 1" in second.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["training"]["caches_reused"] == 2

    # The run folder serves predictions, the in-domain check included, through the same code as the app.
    predictor = Predictor(CheckpointSource(out, "local", str(out), "test"))
    prediction = predictor.predict(next((shared("collectibles") / "coins").iterdir()))
    assert set(prediction.heads["category"].probabilities) == {"books", "coins", "drumsticks", "stamps", "vinyls"}
    assert 0.0 <= prediction.ood_score <= 1.0

    # An all-data run of the same recipe ships the held-out run's temperature, threshold and figures.
    final = tmp_path / "final"
    all_data = train("--task", "collectibles", *collectibles_data, "--out", str(final), "--epochs", "1",
                     "--val-fraction", "0", "--calibration-from", str(out), "--no-onnx")
    assert all_data.returncode == 0, all_data.stderr[-3000:]
    (_, final_config), (_, recipe_config) = load_checkpoint(final), load_checkpoint(out)
    assert final_config.ood == recipe_config.ood and final_config.temperature == recipe_config.temperature
    final_metrics = json.loads((final / "metrics.json").read_text())
    assert final_metrics["held_out_run"]["splits"] == metrics["splits"]
    assert final_metrics["training"]["n_val"] == 0


def test_car_smoke_run_masks_unknown_labels(tmp_path):
    manifest, out = tiny_car(tmp_path), tmp_path / "run"
    result = train("--task", "car", "--data", str(manifest), "--out", str(out), "--epochs", "1", "--no-onnx",
                   "--loss-weight", "damage=1.5")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["loss_weights"]["damage"] == 1.5
    assert [p.name for p in (out / ".work").glob("cache-*/train_0_*.npy")] == ["train_0_s0_plain.npy"]
    assert all(math.isfinite(h["train_loss"]) for h in metrics["history"])
    val = metrics["splits"]["val_scans"]
    # Each head is scored only on the photos whose label for it is known.
    assert val["heads"]["damage"]["n"] < val["n_images"]
    assert val["heads"]["cleanliness"]["n"] < val["n_images"]
    assert "ood" not in metrics   # no negatives given: no in-domain check
    load_checkpoint(out, task="car")


def test_training_errors_are_clear(tmp_path):
    missing = train("--task", "collectibles", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"))
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    bad = tmp_path / "bad"
    (bad / "cats").mkdir(parents=True)
    (bad / "cats" / "a.jpg").write_bytes(b"not really")
    unknown = train("--task", "collectibles", "--data", str(bad), "--out", str(tmp_path / "r2"))
    assert unknown.returncode == 2 and "cats" in unknown.stderr and "Traceback" not in unknown.stderr
    blind = train("--task", "collectibles", "--data", str(bad), "--val-fraction", "0")
    assert blind.returncode == 2 and "--calibration-from" in blind.stderr
    no_negatives = train("--task", "collectibles", "--data", str(tiny_collectibles(tmp_path)),
                         "--negatives", str(tmp_path / "none"))
    assert no_negatives.returncode == 2 and "negative folder not found" in no_negatives.stderr


def test_atomic_write_never_leaves_a_half_written_file(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"good")

    def crash(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_evaluate_compares_picture_shapes_on_held_out_sources(collectibles_data):
    ev = subprocess.run([sys.executable, "-m", "training.evaluate", "--task", "collectibles", *collectibles_data,
                         "--split", "val", "--json", "--condition", "plain", "--condition", "square",
                         "--group-by", "label:category", "--no-progress"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-3000:]
    report = json.loads(ev.stdout)
    assert report["condition"] == "plain" and report["split"] == "val"
    plain, square = report["per_condition"]["plain"], report["per_condition"]["square"]
    assert plain["heads"]["category"]["n"] == square["heads"]["category"]["n"] == report["heads"]["category"]["n"]
    assert plain["heads"]["category"]["accuracy"] == report["heads"]["category"]["accuracy"]
    assert set(report["by_kind"]) == {"scan", "photo"} and set(report["outliers"]) == {"negative", "other_task"}
    # Recall per class under each picture shape, so a shape shortcut shows as a drop.
    assert set(square["per_group"]["label:category"]) == {"books", "coins", "drumsticks", "stamps", "vinyls"}


def test_reframing_conditions_crop_to_the_named_shape():
    from training.evaluate import REFRAME_ASPECTS, centre_crop_to_aspect

    photo = Image.new("RGB", (200, 300))
    for aspect in (*REFRAME_ASPECTS.values(), 2.0):
        w, h = centre_crop_to_aspect(photo, aspect).size
        assert abs(w / h - aspect) < 0.01 and (w == 200 or h == 300)   # the largest such crop
