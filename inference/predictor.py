"""Predict one image or many: timm preprocessing, torch or onnxruntime backend, calibrated
probabilities per head and an in-domain check.

Models load once per (task, source, revision) and are reused by every request.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from inference.hub import CheckpointSource, resolve_checkpoint
from inference.images import load_image
from inference.model import DOMAIN_OUTPUT, ONNX_BATCH_DIM, ONNX_NAME, CheckpointError, create_eval_transform, \
    load_checkpoint
from inference.tasks import TaskSpec, get_task

log = logging.getLogger(__name__)

# Two cores on the Space: one intra-op pool sized to the machine, overridable.
NUM_THREADS = int(os.environ.get("INFERENCE_THREADS", min(4, os.cpu_count() or 1)))
BACKENDS = ("auto", "onnx", "torch")
BATCH_SIZE = 32
# onnxruntime runs at most this many images at once: without its memory arena (see _onnx_session),
# a batch of 32 needs buffers too big for the malloc heap and halves throughput; 8 keeps it.
ONNX_CHUNK = 8


@dataclass
class HeadPrediction:
    label: str
    confidence: float
    probabilities: dict[str, float]
    needs_review: bool = False    # below the head's review threshold: a person should check

    @property
    def top_two(self) -> list[str]:
        """The two most likely labels, most likely first."""
        return sorted(self.probabilities, key=self.probabilities.get, reverse=True)[:2]


@dataclass
class Prediction:
    task: str
    heads: dict[str, HeadPrediction]
    in_domain: bool
    ood_score: float | None

    @property
    def needs_review(self) -> bool:
        """A judged photo with at least one head a person should check."""
        return self.in_domain and any(p.needs_review for p in self.heads.values())


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def ood_probability(domain_logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The domain head's calibrated probability that a photo is NOT of the task's kind."""
    return 1.0 / (1.0 + np.exp(np.asarray(domain_logits, np.float64) / temperature))


class Predictor:
    """One loaded checkpoint: transform, torch model, optional ONNX session and in-domain check."""

    def __init__(self, source: CheckpointSource, backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        self.source = source
        self.model, self.config = load_checkpoint(source.folder)
        self.spec: TaskSpec = get_task(self.config.task)
        self.transform = create_eval_transform(self.config.data_config)
        if self.config.ood and self.config.ood.get("method") != "domain_head":
            raise CheckpointError(f"{source.folder}: in-domain check {self.config.ood.get('method')!r} is not "
                                  "supported (format 2 checkpoints use the domain head)")
        # One photo at a time is the common call: a session fixed to batch 1 runs it faster than the
        # dynamic-batch one (measured in turns: 5.3 against 7.0 ms idle, 9.4 against 10.9 busy; same
        # outputs). The dynamic one is made on the first call with several photos, so idle memory stays.
        self.session = self._onnx_session(source.folder / ONNX_NAME, batch=1) if backend != "torch" else None
        if backend == "onnx" and self.session is None:
            raise CheckpointError(f"{source.folder / ONNX_NAME}: missing or unusable")
        self.backend = "onnx" if self.session is not None else "torch"
        self._batch_session = None
        self._batch_session_lock = threading.Lock()
        self.explain_lock = threading.Lock()   # Grad-CAM hooks are per model: one at a time

    def batch_session(self):
        """The onnxruntime session for several photos (dynamic batch), made on first use; None with torch."""
        if self.session is None:
            return None
        with self._batch_session_lock:
            if self._batch_session is None:
                self._batch_session = self._onnx_session(self.source.folder / ONNX_NAME)
            return self._batch_session

    @staticmethod
    def _onnx_session(path: Path, batch: int | None = None):
        """An onnxruntime session, or None (torch serves) when there is no usable export. With `batch`,
        the export's dynamic batch dimension is fixed to that size."""
        if not path.is_file():
            return None
        try:
            import onnxruntime as ort
        except ImportError:
            log.warning("onnxruntime not installed: using torch")
            return None
        options = ort.SessionOptions()
        options.intra_op_num_threads = NUM_THREADS
        options.inter_op_num_threads = 1
        # Without the arena, memory a batch needed goes back to the system afterwards; with it, one
        # batch of 32 kept ~0.8 GB per model resident (measured; same batch-1 latency).
        options.enable_cpu_mem_arena = False
        # Idle workers must not spin: on 2 cores they took the CPU from the next request's Python
        # and torch work (torch after an onnxruntime call: 25 ms spinning, 11 ms not; measured).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if batch is not None:
            options.add_free_dimension_override_by_name(ONNX_BATCH_DIM, batch)
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # a corrupt export must not take the service down: torch still works
            log.warning("%s: cannot load ONNX model (%s); using torch", path, err)
            return None

    def preprocess(self, photos: Sequence[Image.Image]) -> torch.Tensor:
        """Decoded RGB photos -> the model's input batch (timm's eval transform)."""
        return torch.stack([self.transform(photo) for photo in photos])

    def forward(self, batch: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Pooled features and raw logits per head for a preprocessed batch."""
        session = self.session if len(batch) == 1 else self.batch_session()
        if session is not None:
            parts = [session.run(None, {"image": chunk.numpy()}) for chunk in batch.split(ONNX_CHUNK)]
            outputs = [np.concatenate(columns) for columns in zip(*parts)]
            return outputs[0], dict(zip(self.output_names, outputs[1:]))
        with torch.inference_mode():
            features = self.model.features(batch)
            logits = self.model.classify(features)
        return features.numpy(), {h: v.numpy() for h, v in logits.items()}

    def predict_photos(self, photos: Sequence[Image.Image]) -> list[Prediction]:
        """Decoded RGB photos (inference.images.load_image) -> one Prediction each, in chunks of BATCH_SIZE."""
        results: list[Prediction] = []
        for start in range(0, len(photos), BATCH_SIZE):
            features, logits = self.forward(self.preprocess(photos[start:start + BATCH_SIZE]))
            probs = {h: softmax(logits[h], self.config.temperature.get(h, 1.0)) for h in self.config.heads}
            scores = self.ood_scores(logits)
            for i in range(len(features)):
                heads = {}
                for h, labels in self.config.heads.items():
                    p = probs[h][i]
                    best = int(p.argmax())
                    heads[h] = HeadPrediction(labels[best], float(p[best]),
                                              {label: float(v) for label, v in zip(labels, p)},
                                              bool(p[best] < self.config.review.get(h, 0.0)))
                score = None if scores is None else float(scores[i])
                in_domain = self.in_domain(score, {h: v[i] for h, v in logits.items()})
                results.append(Prediction(self.spec.name, heads, in_domain, score))
        return results

    @property
    def output_names(self) -> list[str]:
        """The logits the model returns, in order: the task heads, then the domain head if it has one."""
        return [*self.config.heads, *([DOMAIN_OUTPUT] if self.config.domain_head else [])]

    def ood_scores(self, logits: dict[str, np.ndarray]) -> np.ndarray | None:
        """How unlike the task's photos each image is (higher = less familiar); None without a check."""
        if not self.config.ood:
            return None
        return ood_probability(logits[DOMAIN_OUTPUT], self.config.ood["temperature"])

    def in_domain(self, score: float | None, logits: dict[str, np.ndarray]) -> bool:
        """Whether a photo is judged: its domain logit reaches the threshold chosen in training."""
        if score is None:
            return True
        return bool(logits[DOMAIN_OUTPUT] >= self.config.ood["min_logit"])

    def predict_batch(self, images: Sequence[Any]) -> list[Prediction]:
        """Undecoded images (paths, bytes, PIL images): decoded here, then predicted."""
        return self.predict_photos([load_image(image) for image in images])

    def predict(self, image: Any) -> Prediction:
        return self.predict_batch([image])[0]

    @cached_property
    def description(self) -> str:
        return f"{self.spec.title}: {self.source.describe()}, {self.backend} backend"


_predictors: dict[tuple, Predictor] = {}
_load_lock = threading.Lock()


def load_model(task: str, source: str | os.PathLike | None = None, revision: str | None = None,
               backend: str = "auto") -> Predictor:
    """The predictor for a task, loaded once and reused (thread-safe)."""
    get_task(task)
    backend = os.environ.get("INFERENCE_BACKEND", backend)
    key = (task, str(source) if source else None, revision, backend)
    with _load_lock:
        if key not in _predictors:
            torch.set_num_threads(NUM_THREADS)
            checkpoint = resolve_checkpoint(task, source, revision)
            predictor = Predictor(checkpoint, backend)
            if predictor.config.task != task:
                raise CheckpointError(f"{checkpoint.folder}: holds a {predictor.config.task!r} model, not {task!r}")
            log.info("serving %s", predictor.description)
            _predictors[key] = predictor
        return _predictors[key]


def predict(task: str, image: Any) -> Prediction:
    """One photo (path, bytes, PIL image or array) through the task's served model."""
    return load_model(task).predict(image)


def predict_batch(task: str, images: Sequence[Any]) -> list[Prediction]:
    """Several photos through the task's served model, in chunks of BATCH_SIZE."""
    return load_model(task).predict_batch(images)
