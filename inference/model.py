"""Backbone (timm) + one linear head per task head; save and load in the layout of a timm Hub model repo.

A checkpoint folder is a standard timm model repo, so `timm.create_model("hf-hub:<repo>", pretrained=True)`
and `transformers.pipeline("image-classification", model=<repo>)` load it too:

* `config.json`: timm's (architecture, num_classes, label_names, pretrained_cfg with the preprocessing),
  plus this project's fields: task, heads and labels, calibration temperatures, in-domain check settings;
* `model.safetensors`: the timm model with timm's key names. For a one-head task (collectibles) its
  classifier is that head; for a multi-head task (car) it is the backbone alone (num_classes=0);
* `heads.safetensors`: the other heads, `<head>.weight` / `<head>.bias` on the pooled features, and the
  domain head (`in_domain.weight`, one logit: is this a photo of the task's kind at all).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from inference.tasks import TaskSpec, get_task

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
HEADS_NAME = "heads.safetensors"
ONNX_NAME = "model.onnx"
ONNX_BATCH_DIM = "batch"   # name of model.onnx's dynamic batch dimension
DOMAIN_OUTPUT = "in_domain"   # the domain head's output among the logits (never a task head's name)
FORMAT_VERSION = 2
SAFETENSORS_METADATA = {"format": "pt"}   # what transformers expects of a PyTorch safetensors file
# This project's fields in config.json, beside timm's own.
PROJECT_FIELDS = ("task", "heads", "temperature", "review", "ood", "domain_head", "format_version")

class CheckpointError(RuntimeError):
    """A checkpoint folder that is missing, corrupt or disagrees with its config or task."""


@dataclass
class ModelConfig:
    task: str
    architecture: str
    heads: dict[str, list[str]]
    data_config: dict[str, Any]
    temperature: dict[str, float] = field(default_factory=dict)
    # Per head, the calibrated confidence below which an answer needs review (training.calibration).
    review: dict[str, float] = field(default_factory=dict)
    ood: dict[str, Any] | None = None
    domain_head: bool = False
    format_version: int = FORMAT_VERSION

    @property
    def classifier_head(self) -> str | None:
        """The head that is the timm model's own classifier: the only head of a one-head task."""
        return next(iter(self.heads)) if len(self.heads) == 1 else None

    @classmethod
    def from_file(cls, path: Path) -> "ModelConfig":
        """Read a config.json in timm's layout; the preprocessing comes from its pretrained_cfg."""
        try:
            raw = json.loads(Path(path).read_text())
            if raw.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format_version {raw.get('format_version')!r}, expected {FORMAT_VERSION}")
            data_config = timm.data.resolve_data_config(pretrained_cfg=raw["pretrained_cfg"])
            return cls(architecture=raw["architecture"], data_config=plain_config(data_config),
                       **{k: raw[k] for k in PROJECT_FIELDS if k in raw})
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise CheckpointError(f"{path}: not a valid model config ({type(err).__name__}: {err})") from err



def plain_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def create_eval_transform(data_config: dict[str, Any]):
    """The preprocessing every prediction uses (training's validation, inference, ONNX export)."""
    return timm.data.create_transform(**data_config, is_training=False)


class MultiHeadModel(nn.Module):
    """A timm model, then one linear layer per further task head and, with `domain_head`, one logit saying
    whether the photo is of the task's kind at all (trained against negatives: outlier exposure).

    For a one-head task the timm model's classifier is the head; otherwise the timm model has none.
    """

    def __init__(self, architecture: str, heads: dict[str, int], drop_rate: float = 0.2, domain_head: bool = False):
        super().__init__()
        self.classifier_head = next(iter(heads)) if len(heads) == 1 else None
        # Dropout only acts in training mode.
        self.backbone = timm.create_model(architecture, pretrained=False,
                                          num_classes=heads[self.classifier_head] if self.classifier_head else 0)
        if self.classifier_head:   # PyTorch's Linear init, as the other heads: timm's starts 16x larger
            self.backbone.classifier.reset_parameters()
        self.dropout = nn.Dropout(drop_rate)
        n = self.backbone.num_features
        extra = {h: nn.Linear(n, k) for h, k in heads.items() if h != self.classifier_head}
        if domain_head:
            extra[DOMAIN_OUTPUT] = nn.Linear(n, 1)
        self.heads = nn.ModuleDict(extra)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def classify(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per task head, plus DOMAIN_OUTPUT (in-domain logit, shape (N,)) with a domain head."""
        features = self.dropout(features)
        out = {self.classifier_head: self.backbone.classifier(features)} if self.classifier_head else {}
        for h, head in self.heads.items():
            out[h] = head(features).squeeze(1) if h == DOMAIN_OUTPUT else head(features)
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.classify(self.features(x))


def create_model(config: ModelConfig) -> MultiHeadModel:
    """The model a config describes, with untrained weights (load_checkpoint fills them)."""
    return MultiHeadModel(config.architecture, {h: len(labels) for h, labels in config.heads.items()},
                          domain_head=config.domain_head)


def check_config_matches_task(config: ModelConfig, config_path: Path) -> TaskSpec:
    spec = get_task(config.task)
    expected = {h: list(labels) for h, labels in spec.heads.items()}
    if config.heads != expected:
        raise CheckpointError(f"{config_path}: heads/labels {config.heads} do not match task "
                              f"{spec.name!r} {expected}")
    return spec


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable weights ({err})") from err


def load_checkpoint(folder: Path, task: str | None = None) -> tuple[MultiHeadModel, ModelConfig]:
    """Load a checkpoint folder strictly: config, task spec and weights must all agree."""
    folder = Path(folder)
    config_path, weights_path, heads_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME, folder / HEADS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing")
    config = ModelConfig.from_file(config_path)
    if task is not None and config.task != task:
        raise CheckpointError(f"{config_path}: checkpoint is for task {config.task!r}, not {task!r}")
    check_config_matches_task(config, config_path)
    model = create_model(config)
    state = {f"backbone.{k}": v for k, v in _read_weights(weights_path).items()}
    if model.heads:
        if not heads_path.is_file():
            raise CheckpointError(f"{heads_path}: missing (the config names heads {', '.join(model.heads)})")
        state.update({f"heads.{k}": v for k, v in _read_weights(heads_path).items()})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{folder}: weights do not fit {config_path} ({err})") from err
    return model.eval(), config
