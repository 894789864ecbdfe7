"""The fast CPU mode's cache: the frozen front of the backbone runs once over several augmented views
of every training picture, and training reads those activations instead of the pictures."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset as TorchDataset
from tqdm.auto import tqdm

from inference.images import load_image
from inference.model import MultiHeadModel
from training.model_builder import forward_front
from training.data import Sample

# On CPU, oneDNN runs EfficientNet's convolutions faster on channels-last tensors (collectibles with
# --frozen-blocks 4: epochs 82 -> 44 s, caching 601 -> 408 s); saved weights are made contiguous.
CPU_MEMORY_FORMAT = torch.channels_last


class ImageViews(TorchDataset):
    """Decoded pictures, optionally through a phone camera's effects first, then `transform`ed to tensors."""

    def __init__(self, samples: Sequence[Sample], transform: Callable, camera: Callable | None = None):
        self.samples, self.transform, self.camera = list(samples), transform, camera

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = load_image(self.samples[i].path)
        return self.transform(self.camera(image) if self.camera is not None else image)


def cache_front(model: MultiHeadModel, frozen_blocks: int, dataset: TorchDataset, path: Path,
                desc: str, batch_size: int = 32, workers: int = 1) -> np.ndarray:
    """Run the frozen front over a dataset once and keep the activations (float16) on disk.

    A finished cache (marked by a `.done` file) is reused, so an interrupted run resumes fast.
    """
    done = path.with_suffix(".done")
    if done.exists():
        return np.load(path, mmap_mode="r")
    path.parent.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    out = None
    model.eval()
    start = 0
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, unit="batch", leave=False):
            act = forward_front(model, batch.contiguous(memory_format=CPU_MEMORY_FORMAT), frozen_blocks).half().numpy()
            if out is None:
                out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16,
                                                shape=(len(dataset), *act.shape[1:]))
            out[start:start + len(act)] = act
            start += len(act)
    out.flush()
    done.touch()
    return np.load(path, mmap_mode="r")


class MixedViews:
    """Each photo's activations from a randomly chosen one of its cached views, drawn anew per batch."""

    def __init__(self, views: Sequence[np.ndarray], seed: int):
        self.views, self.rng = list(views), np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.views[0])

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        choice = self.rng.integers(len(self.views), size=len(idx))
        out = np.empty((len(idx), *self.views[0].shape[1:]), dtype=self.views[0].dtype)
        for v, view in enumerate(self.views):
            picked = choice == v
            if picked.any():
                out[picked] = view[idx[picked]]
        return out
