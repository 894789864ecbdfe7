"""The training loop on cached activations: trainable stages, schedule, one epoch of training or evaluation."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from inference.model import DOMAIN_OUTPUT, MultiHeadModel
from training.model_builder import forward_tail, head_layers
from training.activations import CPU_MEMORY_FORMAT, MixedViews
from training.losses import UNKNOWN, multitask_loss


def trainable_parameters(model: MultiHeadModel, frozen_blocks: int) -> list[dict]:
    """Parameter groups: the backbone tail learns slower than the freshly initialised heads."""
    b = model.backbone
    tail = [p for m in (*b.blocks[frozen_blocks:], b.conv_head, b.bn2) for p in m.parameters()]
    heads = [p for m in head_layers(model) for p in m.parameters()]
    return [{"params": tail, "lr_scale": 0.3}, {"params": heads, "lr_scale": 1.0}]


def set_train_mode(model: MultiHeadModel, frozen_blocks: int, train: bool) -> None:
    model.eval()
    if train:
        b = model.backbone
        for m in (*b.blocks[frozen_blocks:], b.conv_head, b.bn2, model.dropout, *head_layers(model)):
            m.train()


def cosine_with_warmup(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


@dataclass
class EpochResult:
    loss: float
    accuracy: dict[str, float]
    logits: dict[str, np.ndarray]
    features: np.ndarray


def run_epoch(model: MultiHeadModel, frozen_blocks: int, activations: np.ndarray | MixedViews,
              targets: dict[str, torch.Tensor], loss_weights: dict[str, float],
              weights: dict[str, torch.Tensor] | None = None, optimizer: torch.optim.Optimizer | None = None,
              scheduler=None, batch_size: int = 64, seed: int = 0, desc: str = "",
              label_smoothing: float = 0.0) -> EpochResult:
    """One pass over cached activations: trains when an optimizer is given, else evaluates."""
    train = optimizer is not None
    set_train_mode(model, frozen_blocks, train)
    n = len(activations)
    order = np.random.default_rng(seed).permutation(n) if train else np.arange(n)
    total_loss, seen = 0.0, 0
    correct = {h: 0 for h in targets}
    known = {h: int((t != UNKNOWN).sum()) for h, t in targets.items()}
    all_logits = {h: [] for h in targets}
    all_features = []
    bar = tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False)
    for start in bar:
        idx = np.sort(order[start:start + batch_size])
        x = torch.from_numpy(np.asarray(activations[idx], dtype=np.float32)).contiguous(memory_format=CPU_MEMORY_FORMAT)
        y = {h: t[idx] for h, t in targets.items()}
        with torch.set_grad_enabled(train):
            features = forward_tail(model, x, frozen_blocks)
            logits = model.classify(features)
            loss = multitask_loss(logits, y, loss_weights, weights, label_smoothing if train else 0.0)
        if train:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        else:
            all_features.append(features.numpy())
        total_loss += loss.item() * len(idx)
        seen += len(idx)
        for h, out in logits.items():
            mask = y[h] != UNKNOWN
            predicted = (out > 0).long() if h == DOMAIN_OUTPUT else out.argmax(1)
            correct[h] += int((predicted[mask] == y[h][mask]).sum())
            if not train:
                all_logits[h].append(out.detach().numpy())
        bar.set_postfix(loss=f"{total_loss / seen:.3f}",
                        **{f"acc_{h}": f"{correct[h] / max(1, known[h]):.3f}" for h in targets})
    accuracy = {h: correct[h] / max(1, known[h]) for h in targets}
    return EpochResult(total_loss / max(1, seen), accuracy,
                       {h: np.concatenate(v) for h, v in all_logits.items() if v},
                       np.concatenate(all_features) if all_features else np.empty((0,)))
