"""Smoke runs of the real training pipeline on a handful of real photos, plus evaluate and publish."""
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
from inference.model import WEIGHTS_NAME, atomic_write, load_checkpoint
from inference.predictor import Predictor

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
RUN_FILES = ("model.safetensors", "config.json", "ood.safetensors", "model.onnx", "metrics.json", "README.md",
             "loss.png", "accuracy.png", "reliability.png", "train.log")

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the repository")


def tiny_collectibles(tmp_path: Path, per_class: int = 8) -> Path:
    """Class folders with a few real photos per class (symlinks, nothing copied)."""
    root = tmp_path / "collectibles"
    for label in ("books", "coins", "drumsticks", "stamps", "vinyls"):
        (root / label).mkdir(parents=True)
        for photo in sorted((SHARED / "collectibles" / label).glob("*.jpg"))[:per_class]:
            (root / label / photo.name).symlink_to(photo)
    return root


def tiny_car(tmp_path: Path) -> Path:
    """A CSV manifest mixing fully and partly labelled photos (empty cell = unknown)."""
    with (SHARED / "car" / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    picked, wanted = [], {("", "damaged"): 8, ("", "intact"): 6, ("clean", "intact"): 8,
                          ("very_dirty", ""): 8, ("slightly_dirty", ""): 6}
    for row in rows:
        key = (row["cleanliness"], row["damage"])
        if wanted.get(key, 0) > 0:
            wanted[key] -= 1
            picked.append({**row, "image": str(SHARED / "car" / row["image"])})
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


def test_collectibles_smoke_run_writes_a_loadable_hub_folder_and_resumes(tmp_path):
    data, out = tiny_collectibles(tmp_path), tmp_path / "run"
    first = train("--task", "collectibles", "--data", str(data), "--out", str(out), "--epochs", "1",
                  "--ema-decay", "0.99")
    assert first.returncode == 0, first.stderr[-3000:]
    for name in RUN_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    model, config = load_checkpoint(out, task="collectibles")
    assert config.ood and config.ood["threshold"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"val", "val_photo"}
    assert metrics["training"]["epochs_run"] == 1
    assert (metrics["training"]["caches_reused"], metrics["training"]["caches"]) == (0, 3)
    assert "| books |" in (out / "README.md").read_text() or "books" in (out / "README.md").read_text()

    # The shipped weights are the moving average, not the raw weights.
    state = torch.load(out / ".work" / "last.pt", map_location="cpu", weights_only=True)
    shipped = load_file(out / WEIGHTS_NAME)
    tail = "heads.category.weight"
    assert torch.equal(shipped[tail], state["ema"][tail])
    assert not torch.equal(shipped[tail], state["model"][tail])

    # An interrupted run continues from its last finished epoch instead of starting over.
    second = train("--task", "collectibles", "--data", str(data), "--out", str(out), "--epochs", "2", "--resume",
                   "--ema-decay", "0.99")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming after epoch 1" in second.stderr
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert json.loads((out / "metrics.json").read_text())["training"]["caches_reused"] == 3
    assert "3 of 3 activation caches were reused" in (out / "README.md").read_text()

    # The report can be re-measured from the finished run without training again.
    again = train("--task", "collectibles", "--data", str(data), "--out", str(out), "--epochs", "2", "--report-only")
    assert again.returncode == 0, again.stderr[-3000:]
    rewritten = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in rewritten["history"]] == [1, 2]
    assert "--report-only" in rewritten["training"]["report_command"]
    assert "--report-only" not in rewritten["training"]["command"]

    # The run folder serves predictions through the same code as the app.
    predictor = Predictor(CheckpointSource(out, "local", str(out), "test"))
    photo = next((data / "coins").iterdir())
    assert set(predictor.predict(photo).heads["category"].probabilities) == \
        {"books", "coins", "drumsticks", "stamps", "vinyls"}

    # evaluate: the fixed JSON interface, on the same folder of photos.
    ev = subprocess.run([sys.executable, "-m", "training.evaluate", "--task", "collectibles", "--data", str(data),
                         "--weights", str(out), "--json", "--group-by", "source"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-3000:]
    report = json.loads(ev.stdout)
    assert report["task"] == "collectibles" and report["n_images"] == 40
    head = report["heads"]["category"]
    assert set(head) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "labels"}
    assert sum(map(sum, head["confusion_matrix"])) == 40
    assert set(head["per_class"]["coins"]) == {"precision", "recall", "f1", "support"}
    assert "per_source" in report


def test_car_smoke_run_masks_unknown_labels(tmp_path):
    manifest, out = tiny_car(tmp_path), tmp_path / "run"
    # Mixed batches (CutMix/Mixup on activations) pair photos whose labels are unknown for a head too.
    result = train("--task", "car", "--data", str(manifest), "--out", str(out), "--epochs", "1", "--no-onnx",
                   "--loss-weight", "damage=1.5", "--mix-prob", "1", "--drop-path", "0.1", "--crop-ratio", "0.5", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["loss_weights"] == {"cleanliness": 1.0, "damage": 1.5}
    assert (metrics["training"]["args"]["mix_prob"], metrics["training"]["args"]["drop_path"]) == (1.0, 0.1)
    assert metrics["training"]["args"]["crop_ratio"] == [0.5, 2.0]
    assert [p.name for p in (out / ".work").glob("cache-*/train_0_*.npy")] == ["train_0_plain_crop0.5-2.npy"]
    assert all(math.isfinite(h["train_loss"]) for h in metrics["history"])
    val = metrics["splits"]["val"]
    # Each head is scored only on the photos whose label for it is known.
    assert val["heads"]["damage"]["n"] < val["n_images"]
    assert val["heads"]["cleanliness"]["n"] < val["n_images"]
    load_checkpoint(out, task="car")


def test_training_errors_are_clear(tmp_path):
    missing = train("--task", "collectibles", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"))
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    bad = tmp_path / "bad"
    (bad / "cats").mkdir(parents=True)
    (bad / "cats" / "a.jpg").write_bytes(b"not really")
    unknown = train("--task", "collectibles", "--data", str(bad), "--out", str(tmp_path / "r2"))
    assert unknown.returncode == 2 and "cats" in unknown.stderr and "Traceback" not in unknown.stderr
    crop = train("--task", "collectibles", "--data", str(bad), "--crop-ratio", "2", "0.5")
    assert crop.returncode == 2 and "--crop-ratio needs 0 < LO <= HI" in crop.stderr


def test_push_to_hub_fails_with_a_clear_message(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / WEIGHTS_NAME).write_bytes(b"x")
    result = subprocess.run([sys.executable, "-m", "training.publish", "--folder", str(out), "--repo-id",
                             "someone/some-model"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_dummy"})
    assert result.returncode == 2
    assert "could not publish" in result.stderr and "Traceback" not in result.stderr


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


def test_evaluate_compares_plain_and_photo_like_conditions(tmp_path):
    data = tiny_collectibles(tmp_path, per_class=3)
    ev = subprocess.run([sys.executable, "-m", "training.evaluate", "--task", "collectibles", "--data", str(data),
                         "--json", "--condition", "plain", "--condition", "photo_like", "--condition", "square",
                         "--group-by", "label:category", "--no-progress"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-3000:]
    report = json.loads(ev.stdout)
    assert report["condition"] == "plain"
    plain, photo = report["per_condition"]["plain"], report["per_condition"]["photo_like"]
    assert plain["heads"]["category"]["n"] == photo["heads"]["category"]["n"] == 15
    assert plain["heads"]["category"]["accuracy"] == report["heads"]["category"]["accuracy"]
    assert set(photo["per_source"]) == set(report["per_source"])
    # Recall per class under each picture shape, so a shape shortcut shows as a drop.
    square = report["per_condition"]["square"]["per_group"]["label:category"]
    assert set(square) == {"books", "coins", "drumsticks", "stamps", "vinyls"}


def test_reframing_conditions_crop_to_the_named_shape():
    from training.evaluate import REFRAME_ASPECTS, centre_crop_to_aspect

    photo = Image.new("RGB", (200, 300))
    for aspect in (*REFRAME_ASPECTS.values(), 2.0):
        w, h = centre_crop_to_aspect(photo, aspect).size
        assert abs(w / h - aspect) < 0.01 and (w == 200 or h == 300)   # the largest such crop
