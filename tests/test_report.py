"""training.metrics, training.plots, training.model_card and the training.evaluate CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.tasks import CAR, COLLECTIBLES
from huggingface_hub import ModelCard

from training.model_builder import new_config
from training.metrics import group_accuracy, head_metrics, summarize_heads
from training.model_card import write_model_card
from training.plots import plot_confusion_matrices, plot_history, plot_reliability

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def one_hot_probs(pred: list[int], n_classes: int) -> np.ndarray:
    p = np.full((len(pred), n_classes), 0.1 / max(n_classes - 1, 1))
    p[np.arange(len(pred)), pred] = 0.9
    return p


# ---------------------------------------------------------------------------- metrics

def test_head_metrics_known_example():
    labels = ["a", "b", "c"]
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = head_metrics(y_true, y_pred, labels)
    assert m["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert m["accuracy"] == round(4 / 6, 4)
    assert m["labels"] == labels
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # a: P 2/2, R 2/3 -> F1 0.8; b: P 1/2, R 1/2 -> 0.5; c: P 1/2, R 1 -> 2/3
    pc = m["per_class"]
    assert pc["a"] == {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3}
    assert pc["b"]["f1"] == 0.5 and pc["b"]["support"] == 2
    assert pc["c"]["f1"] == 0.6667 and pc["c"]["recall"] == 1.0
    assert m["macro_f1"] == round((0.8 + 0.5 + 2 / 3) / 3, 4)


def test_head_metrics_absent_label_and_empty():
    m = head_metrics([0, 1], [0, 1], ["x", "y", "z"])
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert m["per_class"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0   # an absent class does not count as F1 0
    empty = head_metrics([], [], ["x", "y"])
    assert empty["accuracy"] is None and empty["confusion_matrix"] == [[0, 0], [0, 0]]
    with pytest.raises(ValueError):
        head_metrics([0, 3], [0, 1], ["x", "y"])


def test_summarize_masks_unknown_labels_per_head():
    true = [
        {"cleanliness": "clean", "damage": "intact"},
        {"cleanliness": None, "damage": "damaged"},          # counts for damage only
        {"cleanliness": "very_dirty", "damage": None},       # counts for cleanliness only
        {"cleanliness": "slightly_dirty", "damage": "damaged"},
    ]
    # predictions: clean, (very_dirty), very_dirty, clean  |  intact, damaged, (intact), intact
    probs = {"cleanliness": one_hot_probs([0, 2, 2, 0], 3), "damage": one_hot_probs([0, 1, 0, 0], 2)}
    s = summarize_heads(CAR, true, probs, ["s1", "s1", "s2", "s2"])
    assert s["n_images"] == 4
    c, d = s["heads"]["cleanliness"], s["heads"]["damage"]
    assert c["n"] == 3 and d["n"] == 3
    assert c["accuracy"] == round(2 / 3, 4) and d["accuracy"] == round(2 / 3, 4)
    assert sum(map(sum, c["confusion_matrix"])) == 3
    assert c["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 0, 1]]
    assert d["confusion_matrix"] == [[1, 0], [1, 1]]
    assert set(c) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "labels", "n"}
    ps = s["per_source"]
    assert ps["s1"] == {"n_images": 2, "heads": {"cleanliness": {"accuracy": 1.0, "n": 1},
                                                 "damage": {"accuracy": 1.0, "n": 2}}}
    assert ps["s2"] == {"n_images": 2, "heads": {"cleanliness": {"accuracy": 0.5, "n": 2},
                                                 "damage": {"accuracy": 0.0, "n": 1}}}
    json.dumps(s)   # JSON-serialisable as is


def test_group_accuracy_empty_head_and_shape_checks():
    true = [{"cleanliness": None, "damage": "intact"}]
    probs = {"cleanliness": one_hot_probs([1], 3), "damage": one_hot_probs([0], 2)}
    g = group_accuracy(CAR, true, probs, ["only"])
    assert g["only"]["heads"]["cleanliness"] == {"accuracy": None, "n": 0}
    assert g["only"]["heads"]["damage"] == {"accuracy": 1.0, "n": 1}
    with pytest.raises(ValueError):
        summarize_heads(CAR, true, {"cleanliness": one_hot_probs([1, 1], 3), "damage": probs["damage"]}, ["x"])
    with pytest.raises(ValueError):
        summarize_heads(CAR, [{"cleanliness": "spotless", "damage": "intact"}], probs, ["x"])


# ---------------------------------------------------------------------------- plots

def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def history_rows(n=3):
    return [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e,
             "train_acc": {"cleanliness": 0.5 + 0.1 * e, "damage": 0.6 + 0.1 * e},
             "val_acc": {"scan": {"cleanliness": 0.45 + 0.1 * e, "damage": 0.55 + 0.1 * e},
                         "photo": {"cleanliness": 0.4 + 0.1 * e, "damage": 0.5 + 0.1 * e}}}
            for e in range(1, n + 1)]


def car_summary():
    true = [{"cleanliness": c, "damage": d} for c, d in
            [("clean", "intact"), ("slightly_dirty", "damaged"), ("very_dirty", "intact"),
             (None, "damaged"), ("clean", "damaged"), ("very_dirty", "intact")]]
    probs = {"cleanliness": one_hot_probs([0, 0, 2, 1, 0, 2], 3), "damage": one_hot_probs([0, 1, 0, 1, 0, 0], 2)}
    return summarize_heads(CAR, true, probs, ["a", "a", "b", "b", "b", "a"])


def test_plots_write_pngs(tmp_path):
    paths = plot_history(history_rows(), tmp_path)
    assert [p.name for p in paths] == ["loss.png", "accuracy.png"]
    for p in paths:
        assert_png(p)
    assert plot_history([], tmp_path / "none") == []

    paths = plot_confusion_matrices(car_summary(), tmp_path)
    assert sorted(p.name for p in paths) == ["confusion_cleanliness.png", "confusion_damage.png"]
    for p in paths:
        assert_png(p)

    rng = np.random.default_rng(3)
    logits = {"cleanliness": rng.normal(0, 5, (300, 3)), "damage": rng.normal(0, 5, (300, 2))}
    y = {"cleanliness": rng.integers(-1, 3, 300), "damage": rng.integers(0, 2, 300)}
    out = plot_reliability(logits, y, {"cleanliness": 2.0, "damage": 1.5}, tmp_path / "reliability.png")
    assert_png(out)


# ---------------------------------------------------------------------------- model card

def full_metrics():
    summary = car_summary()
    photo = summarize_heads(CAR, [{"cleanliness": "clean", "damage": "intact"}, {"cleanliness": "very_dirty", "damage": "damaged"}],
                      {"cleanliness": one_hot_probs([0, 1], 3), "damage": one_hot_probs([0, 1], 2)},
                      ["photo_src", "photo_src"])
    return {
        "task": "car", "architecture": "tf_efficientnet_lite0",
        "splits": {"val_scans": summary, "val_photos": photo},
        "calibration": {"cleanliness": {"temperature": 1.4321, "ece_before": 0.0812, "ece_after": 0.0234},
                        "damage": {"temperature": 1.1234, "ece_before": 0.0456, "ece_after": 0.0178}},
        "ood": {"method": "domain head", "temperature": 0.8765, "min_logit": -0.6543, "auroc": 0.9876,
                "in_domain_rejected": {"scan": 0.0049, "photo": 0.0213}, "outliers_accepted": {"negative": 0.0412},
                "n": {"scan": 408, "photo": 94, "negative": 217}, "measured_on": "the other half (cross-fit)",
                "per_group_accepted": {"negative": {"chima/phone": {"n": 20, "accepted": 0.35}}}},
        "data": {"folders": [{"path": "../shared/data/car", "kind": "scan", "n_images": 2763},
                             {"path": "../shared/data/car_photos", "kind": "photo", "n_images": 414},
                             {"path": "../shared/data/negatives", "kind": "negative", "n_images": 1084}]},
        "split": {"per_kind": {"scan": {"train": 2209, "val": 554}}, "held_out_sources": {"photo": ["dstaroff"]},
                  "split_inside_source": {"damage=damaged": "hemil"}},
        "training": {"command": "python -m training.train --task car --data ../shared/data/car --epochs 7",
                     "args": {"epochs": 7, "lr": 0.001, "frozen_blocks": 5}, "epochs_run": 7, "seconds": 812.5,
                     "seconds_per_epoch": 98.7, "cache_seconds": 120.0, "n_train": 1650, "n_val": 412},
        "history": history_rows(),
    }


CONFIG = new_config(CAR)
CONFIG.domain_head = True


def test_model_card_full(tmp_path):
    metrics = full_metrics()
    plot_history(metrics["history"], tmp_path)
    plot_confusion_matrices(metrics["splits"]["val_photos"], tmp_path, "confusion_photos")
    path = write_model_card(tmp_path, CAR, CONFIG, metrics, notes="Two stages fine-tuned: **measured** best.")
    text = path.read_text()
    card = ModelCard.load(path)   # huggingface_hub parses (and so validates) the YAML it wrote
    assert card.data.library_name == "timm" and card.data.license == "apache-2.0"
    assert card.data.pipeline_tag == "image-classification" and {"image-classification", "timm", "car"} <= set(card.data.tags)
    assert card.data.datasets == ["image-understanding-space/car", "image-understanding-space/car-photos",
                                  "image-understanding-space/negatives"]
    results = {(r.dataset_name, r.metric_name): r.metric_value for r in card.data.eval_results}
    photos = metrics["splits"]["val_photos"]["heads"]
    assert results[("car validation photos (held-out sources)", "damage accuracy")] == photos["damage"]["accuracy"]
    assert results[("car validation scans", "cleanliness macro F1")] == metrics["splits"]["val_scans"]["heads"][
        "cleanliness"]["macro_f1"]
    assert {r.dataset_type for r in card.data.eval_results} == {"image-understanding-space/car",
                                                                  "image-understanding-space/car-photos"}
    for number in [f"{photos['damage']['accuracy']:.4f}", "1.4321", "0.0812", "0.0234", "0.9876", "2.1%", "4.1%",
                   "-0.6543", "0.873", "0.912", "photo_src", "`dstaroff`", "`hemil`", "13.5 min", "chima/phone (35.0%)"]:
        assert number in text, number
    assert metrics["training"]["command"] in text and "**measured** best" in text
    for heading in ("## Results", "## In-domain check", "## Calibration", "## How to use", "## Files",
                    "## Training data and recipe", "### Why this recipe", "## Plots", "## Intended use",
                    "## Limitations", "## Reproduce"):
        assert heading in text, heading
    assert "(confusion_photos_damage.png)" in text and "(loss.png)" in text
    assert "reliability.png" not in text   # file absent: not embedded
    assert "heads.safetensors" in text and '"cleanliness": ["clean"' in text and "Shadows" in text


def test_model_card_of_an_all_data_run_shows_the_held_out_runs_figures(tmp_path):
    held = full_metrics()
    metrics = {"task": "car", "data": held["data"], "training": {"command": "python -m training.train --val-fraction 0"},
               "held_out_run": {"command": "python -m training.train --task car", **{k: held[k] for k in (
                   "splits", "calibration", "ood", "split")}}}
    text = write_model_card(tmp_path, CAR, CONFIG, metrics).read_text()
    assert "trained on all the data" in text and "python -m training.train --task car" in text
    assert f"{held['splits']['val_photos']['heads']['damage']['accuracy']:.4f}" in text and "0.6543" in text
    assert ModelCard.load(tmp_path / "README.md").data.eval_results


def test_model_card_minimal(tmp_path):
    summary = summarize_heads(COLLECTIBLES, [{"category": "coins"}, {"category": "books"}],
                        {"category": one_hot_probs([1, 1], 5)}, ["x", "y"])
    config = new_config(COLLECTIBLES)
    path = write_model_card(tmp_path, COLLECTIBLES, config, {"task": "collectibles", "splits": {"val_photos": summary}})
    text = path.read_text()
    assert ModelCard.load(path).data.eval_results[0].metric_value == 0.5
    assert "0.5000" in text and "0.750" in text and "pipeline(\"image-classification\"" in text
    assert "## Calibration" not in text and "## In-domain check" not in text and "## Plots" not in text
    # changing a metric changes the card: no hard-coded figures
    summary["heads"]["category"]["accuracy"] = 0.8765
    path = write_model_card(tmp_path, COLLECTIBLES, config, {"task": "collectibles", "splits": {"val_photos": summary}})
    assert "0.8765" in path.read_text()


# ---------------------------------------------------------------------------- evaluate CLI

def make_car_checkpoint(folder: Path) -> Path:
    from inference.model import create_model
    from training.model_builder import save_checkpoint
    config = new_config(CAR, image_size=64)
    save_checkpoint(create_model(config), config, folder)
    return folder


def make_car_dataset(root: Path) -> Path:
    rows = [("clean", "intact", "a"), ("slightly_dirty", "damaged", "a"), ("very_dirty", "intact", "b"),
            ("", "damaged", "b"), ("clean", "damaged", "b"), ("very_dirty", "intact", "a")]
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(4)
    lines = ["image,cleanliness,damage,source"]
    for i, (c, d, s) in enumerate(rows):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "images" / f"{i}.jpg")
        lines.append(f"images/{i}.jpg,{c},{d},{s}")
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    lines.append("images/broken.jpg,clean,intact,a")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def car_eval_setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("evaluate")
    return make_car_dataset(base / "data"), make_car_checkpoint(base / "ckpt")


def test_evaluate_json_shape(car_eval_setup, capsys):
    from training.evaluate import main
    data, ckpt = car_eval_setup
    code = main(["--task", "car", "--data", str(data), "--weights", str(ckpt), "--json", "--batch-size", "4",
                 "--group-by", "source", "--group-by", "label:damage", "--backend", "torch"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)          # exactly one JSON object on stdout
    assert result["task"] == "car" and result["n_images"] == 6
    assert "broken.jpg" in err
    assert set(result) >= {"task", "n_images", "heads", "per_source", "in_domain_rate", "checkpoint", "per_group"}
    assert set(result["heads"]) == {"cleanliness", "damage"}
    for head, n in (("cleanliness", 5), ("damage", 6)):
        m = result["heads"][head]
        assert set(m) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "labels"}
        assert m["labels"] == list(CAR.heads[head]) and m["n"] == n
        assert sum(map(sum, m["confusion_matrix"])) == n
        assert set(m["per_class"]) == set(CAR.heads[head])
        assert set(m["per_class"]["clean" if head == "cleanliness" else "intact"]) == {"precision", "recall", "f1", "support"}
        assert 0.0 <= m["accuracy"] <= 1.0
    assert set(result["per_source"]) == {"a", "b"}
    assert result["per_source"]["b"]["heads"]["cleanliness"]["n"] == 2
    assert set(result["per_group"]) == {"source", "label:damage"}
    assert set(result["per_group"]["label:damage"]) == {"intact", "damaged"}
    assert result["in_domain_rate"] == 1.0          # no OOD detector in this checkpoint
    assert str(ckpt) in result["checkpoint"]


def test_evaluate_reports_scans_photos_and_outliers_apart(car_eval_setup, tmp_path, capsys):
    from training.evaluate import main
    data, ckpt = car_eval_setup
    negatives = tmp_path / "negatives"
    negatives.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 60, 3), 40 * i, np.uint8)).save(negatives / f"n{i}.png")
    code = main(["--task", "car", "--data", str(data), "--data", f"photo={data}", "--negatives", str(negatives),
                 "--weights", str(ckpt), "--json", "--no-progress", "--backend", "torch"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert set(result["by_kind"]) == {"scan", "photo"}
    for kind in ("scan", "photo"):
        assert result["by_kind"][kind]["n_images"] == 6
        assert result["by_kind"][kind]["heads"]["damage"]["n"] == 6 and result["by_kind"][kind]["per_source"]
    assert result["n_images"] == 12      # every labelled picture; the negatives only count as outliers
    assert result["outliers"] == {"negative": {"n": 3, "accepted": 1.0}}   # this checkpoint has no in-domain check
    assert main(["--task", "car", "--data", f"photo={data}", "--weights", str(ckpt), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "photos per source" in table and "scans per source" not in table


def test_evaluate_table_output(car_eval_setup, capsys):
    from training.evaluate import main
    data, ckpt = car_eval_setup
    assert main(["--task", "car", "--data", str(data), "--weights", str(ckpt), "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    assert "cleanliness: accuracy" in out and "slightly_dirty" in out and "scans per source" in out


def test_evaluate_clear_errors(car_eval_setup, tmp_path, capsys):
    from training.evaluate import main
    data, ckpt = car_eval_setup
    assert main(["--task", "car", "--data", str(data), "--weights", str(tmp_path / "nope"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "weights folder not found" in err and "Traceback" not in err

    assert main(["--task", "car", "--data", str(tmp_path / "missing"), "--weights", str(ckpt), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "error:" in err

    bad = tmp_path / "bad_ckpt"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    (bad / "model.safetensors").write_bytes(b"junk")
    assert main(["--task", "car", "--data", str(data), "--weights", str(bad), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "checkpoint" in err

    # a collectibles checkpoint is not a car checkpoint
    assert main(["--task", "collectibles", "--data", str(data), "--weights", str(ckpt), "--json"]) == 2
    assert capsys.readouterr().out == ""


def test_evaluate_set_without_some_classes(car_eval_setup, tmp_path, capsys):
    """A small evaluation set need not hold every class (here no slightly_dirty and no damaged)."""
    from training.evaluate import main
    data, ckpt = car_eval_setup
    lines = ["image,cleanliness,damage,source",
             f"{data / 'images' / '0.jpg'},clean,intact,a", f"{data / 'images' / '2.jpg'},very_dirty,intact,b"]
    (tmp_path / "few.csv").write_text("\n".join(lines) + "\n")
    assert main(["--task", "car", "--data", str(tmp_path / "few.csv"), "--weights", str(ckpt), "--json",
                 "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_images"] == 2
    assert result["heads"]["damage"]["per_class"]["damaged"]["support"] == 0
    assert result["heads"]["cleanliness"]["confusion_matrix"][1] == [0, 0, 0]
