"""The model card (README.md of a checkpoint folder), built with huggingface_hub's ModelCard.

Every number in the card comes from the run's metrics.json. The YAML header (`ModelCardData`) carries
library_name, pipeline_tag, datasets, metrics and the evaluation results (`EvalResult`: accuracy and
macro F1 per head on the validation scans and on the photos of held-out sources). A checkpoint trained
on all the data has no held-out figures of its own: its card shows those of the held-out run of the
same recipe and says so.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from inference.render import markdown_table
from inference.model import HEADS_NAME, ModelConfig
from inference.tasks import TaskSpec

KIND_TITLES = {"val_scans": "validation scans", "val_photos": "validation photos (held-out sources)"}
DATASET_PREFIX = "image-understanding-space/"   # the project's data folders, named as Hub dataset ids
@dataclass(frozen=True)
class CardText:
    """The prose of a task's model card: who it is for, what to watch for, and the system it replaces
    (../shared/docs/SEEDS.md: accuracy on that system's own validation split)."""
    intended_use: str
    limitations: tuple[str, ...]
    earlier_system: str
    earlier_accuracy: dict[str, float]


CARD_TEXT = {
    "collectibles": CardText(
        intended_use=(
            "Collectors and resellers sorting phone photos of their items into books, coins, drumsticks, stamps "
            "and vinyl records, for example before listing them for sale or cataloguing a collection. The model "
            "answers one of the five categories and says when a photo does not look like any of them."),
        limitations=(
            "Flat printed art is confusable: book covers, album sleeves and stamps that show a portrait or lettering.",
            "Most drumstick pictures are small (64 px) ImageNet photos; few sharp photos of sticks were available.",
            "One item per photo is assumed: a photo with several kinds of items gets one answer.",
        ),
        earlier_system="Keras CNN + Flask app (3 conv layers, 224 px, 20 epochs)",
        earlier_accuracy={"category": 0.75},
    ),
    "car": CardText(
        intended_use=(
            "Fleet operators of a ride-hailing service checking the phone photos drivers send: is the car clean, "
            "slightly dirty or very dirty (a reminder to wash it), and is there visible damage (a reason to have the "
            "car inspected). It supports people; it does not replace an inspection, and a `damaged` answer should "
            "be confirmed by a person."),
        limitations=(
            "Shadows can be taken for dirt, and dirt in shadow can be missed (a known failure of the earlier system).",
            "Small or distant scratches and dents are easy to miss; photograph damage from close by.",
            "`slightly_dirty` has few photos and one person's judgement behind it, so it is the least reliable label; "
            "cleanliness is ordinal (clean < slightly_dirty < very_dirty) and most errors are between neighbours.",
            "Almost all photos of damaged cars come from one source (salvage lots): damage in other settings is "
            "measured on few photos.",
        ),
        earlier_system="EfficientNet-B4 multi-task + Streamlit app (224 px, 15 epochs)",
        earlier_accuracy={"cleanliness": 0.873, "damage": 0.912},
    ),
}


RECIPE_ARGS = ("arch", "image_size", "frozen_blocks", "epochs", "views", "plain_views", "lr", "batch_size",
               "label_smoothing", "val_fraction", "seed")


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.1f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return markdown_table(header, [[_fmt(v) for v in row] for row in rows], align=["l"] * len(header))


def _dataset_id(folder: Mapping[str, Any]) -> str:
    return DATASET_PREFIX + Path(folder["path"]).name.replace("_", "-")


def card_data(spec: TaskSpec, metrics: Mapping[str, Any]) -> ModelCardData:
    figures = metrics.get("held_out_run") or metrics
    folders = (metrics.get("data") or {}).get("folders", [])
    labelled = [f for f in folders if f["kind"] in ("scan", "photo")]
    results = []
    for split, summary in (figures.get("splits") or {}).items():
        kind = "photo" if split == "val_photos" else "scan"
        dataset = next((f for f in labelled if f["kind"] == kind), None)
        for head, m in summary["heads"].items():
            for key, metric in (("accuracy", "accuracy"), ("macro_f1", "f1")):
                if m.get(key) is not None:
                    results.append(EvalResult(
                        task_type="image-classification", task_name="Image classification",
                        dataset_type=_dataset_id(dataset) if dataset else "imagefolder",
                        dataset_name=f"{spec.name} {KIND_TITLES.get(split, split)}", dataset_split="validation",
                        metric_type=metric, metric_value=float(m[key]),
                        metric_name=f"{head} {'accuracy' if key == 'accuracy' else 'macro F1'}"))
    return ModelCardData(library_name="timm", license="apache-2.0", pipeline_tag="image-classification",
                         tags=["image-classification", "timm", spec.name], metrics=["accuracy", "f1"],
                         datasets=[_dataset_id(f) for f in folders] or None, model_name=spec.hub_repo.split("/")[-1],
                         eval_results=results or None)


def _results(spec: TaskSpec, metrics: Mapping[str, Any]) -> list[str]:
    held = metrics.get("held_out_run")
    figures = held or metrics
    splits = figures.get("splits") or {}
    out = ["## Results", ""]
    if held:
        out += [f"This checkpoint was trained on all the data, the validation photos included, so it has no held-out "
                f"figures of its own. The figures below are those of the run that chose its recipe, with whole photo "
                f"sources held out (`{held['command']}`); its temperatures and in-domain threshold ship here too.", ""]
    if not splits:
        return out + ["No evaluation results were stored."]
    split = figures.get("split") or {}
    photo_sources = (split.get("held_out_sources") or {}).get("photo")
    if photo_sources:
        out += [f"Held-out photo sources (never seen in training): {', '.join(f'`{s}`' for s in photo_sources)}."]
    for key, source in (split.get("split_inside_source") or {}).items():
        out += [f"`{key}` has in effect one photo source (`{source}`): that source is split inside, by "
                "near-duplicate groups, so its validation photos come from a source training saw."]
    names = list(splits)
    rows = []
    for head in spec.heads:
        row = [head, CARD_TEXT[spec.name].earlier_accuracy.get(head)]
        for s in names:
            m = splits[s]["heads"][head]
            weakest = min(((c["recall"], label) for label, c in m["per_class"].items() if c["support"]), default=None)
            row += [f"{_fmt(m['accuracy'])} (n={m['n']})", m["macro_f1"],
                    f"{weakest[1]} {weakest[0]:.2f}" if weakest else None]
        rows.append(row)
    header = ["head", "earlier system"] + [f"{KIND_TITLES.get(s, s)}: {col}" for s in names
                                           for col in ("accuracy", "macro F1", "weakest recall")]
    out += ["", _table(header, rows), "",
            f"The earlier system ({CARD_TEXT[spec.name].earlier_system}) reported its accuracy on its own validation split."]
    for head, labels in spec.heads.items():
        header = ["class"] + [f"{KIND_TITLES.get(s, s)} {col}" for s in names for col in ("precision", "recall", "support")]
        rows = [[f"`{label}`"] + [c for s in names for c in
                                  (lambda c: (c["precision"], c["recall"], c["support"]))(
                                      splits[s]["heads"][head]["per_class"][label])] for label in labels]
        out += ["", f"**{head}, per class**", "", _table(header, rows)]
    per_source = (splits.get("val_photos") or {}).get("per_source") or {}
    if per_source:
        rows = [[source, g["n_images"], *(f"{_fmt(g['heads'][h]['accuracy'])} ({g['heads'][h]['n']})"
                                          for h in spec.heads)] for source, g in per_source.items()]
        out += ["", "**Validation photos per source** (accuracy, photos with a known label in brackets)", "",
                _table(["source", "photos", *spec.heads], rows)]
    return out


def _in_domain(spec: TaskSpec, metrics: Mapping[str, Any]) -> list[str]:
    ood = (metrics.get("held_out_run") or metrics).get("ood")
    if not ood:
        return []
    n = ood.get("n") or {}
    rows = [[f"{kind}s of the task rejected", n.get(kind), _pct(v)] for kind, v in ood["in_domain_rejected"].items()]
    rows += [[f"{kind.replace('_', '-')} pictures accepted", n.get(kind), _pct(v)]
             for kind, v in ood["outliers_accepted"].items()]
    accepted = sorted(((v["accepted"], g) for groups in (ood.get("per_group_accepted") or {}).values()
                       for g, v in groups.items() if v["accepted"] > 0), reverse=True)[:8]
    out = ["## In-domain check", "",
           f"A photo unlike the task's photos is not judged (`in_domain: false`; the app says \"{spec.ood_message}\"). "
           f"{ood['method'].capitalize()}: one more logit on the pooled features, trained against negatives and the "
           f"other task's pictures. A photo is turned away when that logit is below {_fmt(ood['min_logit'])} (its "
           f"out-of-domain probability, shown as `ood_score`, uses temperature {_fmt(ood['temperature'])}); the "
           f"threshold turns away at most 2% of the validation scans and of the photos it is fitted on.", "",
           f"Measured on {ood['measured_on']}; AUROC {_fmt(ood.get('auroc'))}.", "",
           _table(["held-out validation pictures", "n", "share"], rows)]
    if accepted:
        out += ["", "Held-out outliers most often accepted: " + ", ".join(f"{g} ({_pct(a)})" for a, g in accepted) + "."]
    return out


def _calibration(metrics: Mapping[str, Any]) -> list[str]:
    cal = (metrics.get("held_out_run") or metrics).get("calibration")
    if not cal:
        return []
    rows = [[head, c["temperature"], c["ece_before"], c["ece_after"]] for head, c in cal.items()]
    return ["## Calibration", "",
            "Temperature scaling per head (stored in `config.json`, applied by this project's inference). The "
            "expected calibration error (15 bins) is measured on the other half of the validation split from the "
            "one each temperature was fitted on (cross-fit):", "",
            _table(["head", "temperature", "ECE before", "ECE after (other half)"], rows)]


def _review(metrics: Mapping[str, Any]) -> list[str]:
    review = (metrics.get("held_out_run") or metrics).get("review")
    if not review:
        return []
    rows = []
    for head, r in review.items():
        for kind in ("photos", "scans"):
            f = r.get(f"val_{kind}")
            if f and f["n"]:
                rows.append([head, kind, r["min_confidence"], f["n"], _pct(f["coverage"]),
                             _fmt(f["automatic_accuracy"]), _fmt(f["accuracy"]), _fmt(f["ece"])])
    return ["## Needs review", "",
            "Each answer carries `needs_review` per head: its calibrated confidence is below the head's threshold "
            "(`review` in `config.json`), the lowest confidence from which the validation photos' answers were "
            "still right 97% of the time. The app then says \"Unsure - please check\" with the two most likely "
            "labels. Figures on the other half of validation from the one the temperature and threshold were "
            "fitted on (cross-fit):", "",
            _table(["head", "pictures", "threshold (shipped)", "n", "answered automatically",
                    "accuracy of automatic answers", "accuracy of all answers", "ECE"], rows)]


def _usage(spec: TaskSpec, config: ModelConfig) -> list[str]:
    repo = spec.hub_repo
    out = ["## How to use", ""]
    if config.classifier_head:
        labels = ", ".join(config.heads[config.classifier_head])
        out += ["The folder is a timm model repo: timm and transformers load it as they load any other "
                f"(classes: {labels}).", "", "```python",
                "import timm, torch",
                "from PIL import Image",
                "",
                f'model = timm.create_model("hf-hub:{repo}", pretrained=True).eval()',
                "transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))",
                "with torch.no_grad():",
                '    probs = model(transform(Image.open("photo.jpg").convert("RGB"))[None]).softmax(-1)[0]',
                'print(dict(zip(model.pretrained_cfg["label_names"], probs.tolist())))',
                "```", "", "```python",
                "from transformers import pipeline",
                "",
                f'classify = pipeline("image-classification", model="{repo}")',
                'print(classify("photo.jpg", top_k=5))',
                "```", "",
                "Both give the raw softmax (temperature 1). This project's `inference` divides the logits by the "
                "calibration temperature in `config.json` and adds the in-domain check (the domain head in "
                f"`{HEADS_NAME}`), so its probabilities differ from theirs while the top label is the same."]
    else:
        out += ["`model.safetensors` is the timm backbone (num_classes=0: pooled features); the heads are linear "
                f"layers in `{HEADS_NAME}` (below). Without this project's code:", "", "```python",
                "import timm, torch",
                "from huggingface_hub import hf_hub_download",
                "from PIL import Image",
                "from safetensors.torch import load_file",
                "",
                f'repo = "{repo}"',
                'backbone = timm.create_model(f"hf-hub:{repo}", pretrained=True).eval()',
                f'heads = load_file(hf_hub_download(repo, "{HEADS_NAME}"))',
                "transform = timm.data.create_transform(**timm.data.resolve_data_config(model=backbone))",
                "with torch.no_grad():",
                '    features = backbone(transform(Image.open("car.jpg").convert("RGB"))[None])',
                f"for head, labels in {json.dumps(config.heads)}.items():",
                '    logits = features @ heads[f"{head}.weight"].T + heads[f"{head}.bias"]',
                "    print(head, dict(zip(labels, logits.softmax(-1)[0].tolist())))",
                "```", "",
                "That is the raw softmax (temperature 1); this project's `inference` divides each head's logits by "
                "its temperature in `config.json` and adds the in-domain check."]
    out += ["", "With this project's code (what the Space runs):", "", "```python",
            "from inference import load_model",
            "",
            f'model = load_model("{spec.name}")        # the Hub repo, else the HF cache, else the bundled copy',
            'prediction = model.predict("photo.jpg")',
            "print(prediction.in_domain, {h: (p.label, p.confidence) for h, p in prediction.heads.items()})",
            "```"]
    return out


def _layout(spec: TaskSpec, config: ModelConfig) -> list[str]:
    rows = [["config.json", "timm's config (architecture, num_classes, label_names, pretrained_cfg with the "
             "preprocessing: the whole photo squashed to the input size) plus task, heads, temperatures and the "
             "in-domain threshold"],
            ["model.safetensors", "the timm model, timm's key names" + (
                f"; its classifier is the `{config.classifier_head}` head" if config.classifier_head else
                " (backbone only, num_classes=0)")]]
    heads = [h for h in config.heads if h != config.classifier_head]
    described = [f"`{h}.weight` ({len(config.heads[h])} x features) and `{h}.bias`: {', '.join(config.heads[h])}"
                 for h in heads]
    if config.domain_head:
        described.append("`in_domain.weight` (1 x features), `in_domain.bias`: the domain logit (> 0: of the "
                         "task's kind)")
    if described:
        rows.append([HEADS_NAME, "; ".join(described)])
    rows.append(["model.onnx", "the same model for onnxruntime: outputs features, " + ", ".join(
        [*config.heads, *(["in_domain"] if config.domain_head else [])])])
    return ["## Files", "", _table(["file", "what it holds"], rows)]


def _training(metrics: Mapping[str, Any], notes: str | None) -> list[str]:
    tr = metrics.get("training") or {}
    out = ["## Training data and recipe", ""]
    folders = (metrics.get("data") or {}).get("folders") or []
    if folders:
        out += [_table(["folder", "kind", "pictures"], [[f"`{Path(f['path']).name}`", f["kind"], f["n_images"]]
                                                       for f in folders]), ""]
    split = metrics.get("split") or {}
    if split.get("per_kind"):
        out += ["Pictures per side: " + "; ".join(f"{k} {v['train']} train / {v['val']} validation"
                                                   for k, v in split["per_kind"].items()) + ".", ""]
    args = tr.get("args") or {}
    if args:
        out += ["Recipe: " + ", ".join(f"`{k}={args[k]}`" for k in RECIPE_ARGS if k in args) + ". The frozen front "
                "of the ImageNet backbone runs once over the cached augmented views; the last stages and the heads "
                "train for a fixed number of epochs (cosine schedule) and the last epoch ships.", ""]
    if tr.get("seconds") is not None:
        out += [f"Whole run, caching included, on 2 CPU cores: {tr['seconds'] / 60:.1f} min "
                f"(caching {tr.get('cache_seconds', 0) / 60:.1f} min, {tr.get('caches_reused', 0)} of "
                f"{tr.get('caches', 0)} caches reused; {tr.get('seconds_per_epoch')} s per epoch)."]
    finish = tr.get("finished_with")
    if finish:   # a run finished again by --resume after its epochs (a later final step)
        out += ["", f"Finished afterwards with `{finish['command']}` ({finish['seconds'] / 60:.1f} min): {finish['why']}."]
    if notes:
        out += ["", "### Why this recipe", "", notes.strip()]
    return out


def _worst_errors(metrics: Mapping[str, Any]) -> list[str]:
    errors = (metrics.get("held_out_run") or metrics).get("worst_errors")
    if not errors:
        return []
    rows = [[e["kind"], e["head"], f"`{e['image']}`", e["source"], e["true"], e["predicted"], e["confidence"]]
            for e in errors]
    return ["## Most confident mistakes (validation)", "",
            _table(["kind", "head", "image", "source", "true", "predicted", "confidence"], rows)]


def _plots(out_dir: Path) -> list[str]:
    captions = [("loss.png", "Training and validation loss"), ("accuracy.png", "Accuracy per head")]
    captions += [(p.name, f"Confusion matrix: {p.stem.removeprefix('confusion_').replace('_', ' ')}")
                 for p in sorted(out_dir.glob("confusion_*.png"))]
    captions.append(("reliability.png", "Reliability before and after temperature scaling"))
    present = [(name, cap) for name, cap in captions if (out_dir / name).is_file()]
    if not present:
        return []
    return ["## Plots", ""] + [line for name, cap in present for line in (f"**{cap}**", "", f"![{cap}]({name})", "")]


def build_model_card(out_dir: Path, spec: TaskSpec, config: ModelConfig, metrics: Mapping[str, Any],
                     notes: str | None = None) -> ModelCard:
    heads = "; ".join(f"{h} ({', '.join(labels)})" for h, labels in spec.heads.items())
    sections = [
        f"# {spec.title} (`{spec.name}`)",
        f"An image classifier for the {spec.title.lower()} tab of the Image Understanding Space. Heads: {heads}. "
        f"`{config.architecture}` (timm, ImageNet weights) fine-tuned on a CPU; input "
        f"{config.data_config['input_size'][1]} px. Generated by `training/model_card.py` from `metrics.json`.",
        "\n".join(_results(spec, metrics)), "\n".join(_in_domain(spec, metrics)), "\n".join(_calibration(metrics)),
        "\n".join(_review(metrics)), "\n".join(_usage(spec, config)), "\n".join(_layout(spec, config)), "\n".join(_training(metrics, notes)),
        "\n".join(_worst_errors(metrics)), "\n".join(_plots(Path(out_dir))),
        "## Intended use\n\n" + CARD_TEXT[spec.name].intended_use,
        "## Limitations\n\n" + "\n".join(f"- {item}" for item in CARD_TEXT[spec.name].limitations),
        "## Reproduce\n\n```bash\n" + str((metrics.get("training") or {}).get("command", "")) + "\n```\n\n"
        "Measure it again on held-out sources (the same data arguments and seed as the held-out run):\n\n```bash\n"
        f"python -m training.evaluate --task {spec.name} --data DATA_DIR ... --split val --weights THIS_FOLDER --json\n"
        "```",
    ]
    body = "\n\n".join(s.rstrip() for s in sections if s.strip())
    return ModelCard(f"---\n{card_data(spec, metrics).to_yaml()}\n---\n\n{body}\n")


def write_model_card(out_dir: Path, spec: TaskSpec, config: ModelConfig, metrics: Mapping[str, Any],
                     notes: str | None = None) -> Path:
    path = Path(out_dir) / "README.md"
    build_model_card(out_dir, spec, config, metrics, notes).save(path)
    return path
