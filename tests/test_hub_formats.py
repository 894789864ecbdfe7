"""The checkpoints as Hugging Face users load them: timm, transformers and this project's inference agree,
from the bundled folders and from a pre-filled HF cache offline; the cards validate; publish and deploy
dry runs list the right files and refuse cleanly without the Hub."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard

from inference.hub import CheckpointSource
from inference.images import load_image
from inference.model import CONFIG_NAME, HEADS_NAME, WEIGHTS_NAME
from inference.predictor import Predictor, softmax
from inference.tasks import get_task
from support import ROOT
from test_inference import fill_hf_cache

COLLECTIBLES, CAR = get_task("collectibles"), get_task("car")
TOLERANCE = 1e-4


def our_raw_probabilities(task: str, photos: list[Path]) -> tuple[list[str], np.ndarray]:
    """Top labels of predict() and the softmax of the logits before temperature scaling (what timm and
    transformers give), from the bundled checkpoint."""
    folder = get_task(task).bundled_dir
    predictor = Predictor(CheckpointSource(folder, "local", str(folder), "test"), backend="torch")
    _, logits = predictor.forward(predictor.preprocess([load_image(p) for p in photos]))
    head = predictor.spec.head_names[0]
    return [p.heads[head].label for p in predictor.predict_batch(photos)], softmax(logits[head])


def run_json(code: str, env: dict[str, str]) -> list:
    """Run `code` in a fresh interpreter (the Hub settings are read at import); its last line is JSON."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


LOADERS = r"""
import json, sys, timm, torch
from PIL import Image
from transformers import pipeline
model_id, photos = sys.argv[1], sys.argv[2:]
images = [Image.open(p).convert("RGB") for p in photos]
model = timm.create_model(model_id if model_id.startswith(("hf-hub:", "local-dir:")) else "hf-hub:" + model_id,
                          pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
with torch.no_grad():
    by_timm = model(torch.stack([transform(im) for im in images])).softmax(-1).tolist()
names = model.pretrained_cfg["label_names"]
classify = pipeline("image-classification", model=model_id.removeprefix("local-dir:").removeprefix("hf-hub:"))
by_transformers = [{r["label"]: r["score"] for r in classify(im, top_k=len(names))} for im in images]
print(json.dumps([names, by_timm, [[d[n] for n in names] for d in by_transformers]]))
"""


@pytest.fixture(scope="module")
def collectible_photos(example_images, tmp_path_factory) -> list[Path]:
    """The example photos, decoded by load_image (EXIF turned upright) and saved plainly, so every loader
    reads the same pixels."""
    folder = tmp_path_factory.mktemp("photos")
    out = []
    for path, _ in example_images["collectibles"]:
        out.append(folder / f"{path.stem}.png")
        load_image(path).save(out[-1])
    return out


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf_cache")
    for spec in (COLLECTIBLES, CAR):
        fill_hf_cache(cache, spec.hub_repo, "0" * 39 + "1", spec.bundled_dir)
    return cache


def check_agreement(names: list[str], by_timm: list, by_transformers: list, labels: list[str], ours: np.ndarray):
    assert names == list(COLLECTIBLES.heads["category"])
    for i, label in enumerate(labels):
        for probs in (by_timm[i], by_transformers[i]):
            assert names[int(np.argmax(probs))] == label
            assert np.abs(np.asarray(probs) - ours[i]).max() < TOLERANCE


def test_timm_transformers_and_predict_agree_from_the_bundled_folder(collectible_photos):
    labels, ours = our_raw_probabilities("collectibles", collectible_photos)
    names, by_timm, by_transformers = run_json(
        f"import sys; sys.argv = ['x', 'local-dir:{COLLECTIBLES.bundled_dir}', "
        f"*{[str(p) for p in collectible_photos]!r}]\n" + LOADERS, {})
    check_agreement(names, by_timm, by_transformers, labels, ours)


def test_timm_transformers_and_predict_agree_from_an_offline_hf_cache(collectible_photos, hf_cache):
    labels, ours = our_raw_probabilities("collectibles", collectible_photos)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hf_cache), "HF_HOME": str(hf_cache.parent)}
    names, by_timm, by_transformers = run_json(
        f"import sys; sys.argv = ['x', '{COLLECTIBLES.hub_repo}', *{[str(p) for p in collectible_photos]!r}]\n"
        + LOADERS, env)
    check_agreement(names, by_timm, by_transformers, labels, ours)
    # Our own loader reads the same cache, offline.
    origin = run_json("import json; from inference.hub import resolve_checkpoint; "
                      "s = resolve_checkpoint('collectibles'); print(json.dumps([s.origin, s.name]))", env)
    assert origin == ["hf-cache", COLLECTIBLES.hub_repo]


def card_snippet(card: Path) -> str:
    """The card's code block that runs the model without this project (the first Python block)."""
    blocks = re.findall(r"```python\n(.*?)```", card.read_text(), flags=re.S)
    assert blocks, card
    return blocks[0]


def test_the_car_cards_snippet_runs_without_this_project(example_images, hf_cache, tmp_path):
    photo = tmp_path / "car.png"
    load_image(example_images["car"][0][0]).save(photo)
    snippet = card_snippet(CAR.bundled_dir / "README.md").replace('"car.jpg"', repr(str(photo)))
    assert f'repo = "{CAR.hub_repo}"' in snippet and "inference" not in snippet
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hf_cache), "HF_HOME": str(hf_cache.parent)}
    code = ("import io, contextlib, json\nbuffer = io.StringIO()\nwith contextlib.redirect_stdout(buffer):\n"
            + "".join(f"    {line}\n" for line in snippet.splitlines())
            + "print(json.dumps(buffer.getvalue().splitlines()))")
    printed = run_json(code, env)
    folder = CAR.bundled_dir
    predictor = Predictor(CheckpointSource(folder, "local", str(folder), "test"), backend="torch")
    _, logits = predictor.forward(predictor.preprocess([load_image(photo)]))
    for line in printed:
        head, _, probs = line.partition(" ")
        got = ast.literal_eval(probs)   # the snippet prints a dict of floats
        want = dict(zip(CAR.heads[head], softmax(logits[head])[0]))
        assert max(abs(got[k] - want[k]) for k in want) < TOLERANCE, (head, got, want)
    assert [line.split()[0] for line in printed] == list(CAR.heads)


@pytest.mark.parametrize("task", ["collectibles", "car"])
def test_the_model_card_validates_and_carries_the_metrics(task):
    spec = get_task(task)
    card = ModelCard.load(spec.bundled_dir / "README.md")
    assert card.data.library_name == "timm" and card.data.pipeline_tag == "image-classification"
    metrics = json.loads((spec.bundled_dir / "metrics.json").read_text())
    figures = metrics.get("held_out_run") or metrics
    results = {(r.dataset_name, r.metric_name): r.metric_value for r in card.data.eval_results}
    for split, title in (("val_photos", "validation photos (held-out sources)"), ("val_scans", "validation scans")):
        for head, m in figures["splits"][split]["heads"].items():
            assert results[(f"{task} {title}", f"{head} accuracy")] == m["accuracy"]
            assert results[(f"{task} {title}", f"{head} macro F1")] == m["macro_f1"]


def test_publish_and_deploy_dry_runs_list_the_files(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)

    space = run("scripts.deploy_space", "--repo-id", "me/space", "--dry-run")
    assert space.returncode == 0, space.stderr
    listed = {line.split()[0] for line in space.stdout.splitlines()[1:] if line.startswith("  ")}
    assert {"app.py", "serve.py", "rest_api.py", "requirements.txt", "README.md", "inference/predictor.py",
            "examples/car/labels.csv", "inference/files.py"} <= listed
    assert not any(name.startswith(("checkpoints/", "training/", "tests/", "scripts/")) for name in listed)
    assert "sdk gradio" in space.stdout and "the app downloads them from" in space.stdout
    with_weights = run("scripts.deploy_space", "--repo-id", "me/space", "--dry-run", "--with-checkpoints")
    assert f"checkpoints/car/{WEIGHTS_NAME}" in with_weights.stdout

    model = run("training.publish", "--folder", str(CAR.bundled_dir), "--repo-id", "me/car", "--dry-run")
    assert model.returncode == 0, model.stderr
    listed = {line.split()[0] for line in model.stdout.splitlines()[1:]}
    assert {CONFIG_NAME, WEIGHTS_NAME, HEADS_NAME, "README.md", "metrics.json"} <= listed


def test_publish_and_deploy_refuse_with_one_clear_line_without_the_hub():
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_dummy"}
    for args in (["scripts.deploy_space", "--repo-id", "me/space"],
                 ["training.publish", "--folder", str(CAR.bundled_dir), "--repo-id", "me/car"]):
        out = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env=env)
        assert out.returncode == 2, out.stderr
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Hugging Face Hub" in errors[0] and "Traceback" not in out.stderr
