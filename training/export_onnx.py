"""Export a checkpoint folder to ONNX (`model.onnx` beside the weights) for onnxruntime.

    python -m training.export_onnx checkpoints/car [checkpoints/collectibles ...]

Outputs: `features` (pooled backbone features), then one logits tensor per head in the task's head
order, then the domain head's logit when the model has one. Batch size is dynamic.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from inference.model import DOMAIN_OUTPUT, ONNX_BATCH_DIM, ONNX_NAME, MultiHeadModel, load_checkpoint
from training.model_builder import atomic_write


class OnnxOutputs(nn.Module):
    def __init__(self, model: MultiHeadModel):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        features = self.model.features(image)
        logits = self.model.classify(features)
        return (features, *logits.values())


def export_onnx(folder: Path) -> Path:
    folder = Path(folder)
    model, config = load_checkpoint(folder)
    dummy = torch.zeros(2, *config.data_config["input_size"])
    heads = [*config.heads, *([DOMAIN_OUTPUT] if config.domain_head else [])]
    out = folder / ONNX_NAME

    def write(tmp: str) -> None:
        torch.onnx.export(OnnxOutputs(model), (dummy,), tmp, input_names=["image"],
                          output_names=["features", *heads], opset_version=17, dynamo=False,
                          dynamic_axes={name: {0: ONNX_BATCH_DIM} for name in ["image", "features", *heads]})

    atomic_write(out, write)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="checkpoint folders (Hub layout)")
    args = p.parse_args(argv)
    for folder in args.folders:
        print(export_onnx(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
