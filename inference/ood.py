"""Out-of-distribution score: Mahalanobis distance of pooled backbone features.

Fitted on the training split's features (PCA to a few dimensions, class means per label of the
first head, one shared covariance); the threshold is a high percentile of the validation split's
scores, so about that share of in-domain photos is accepted. Needs no extra labelled data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


@dataclass
class MahalanobisDetector:
    pca_mean: np.ndarray        # (D,)
    components: np.ndarray      # (K, D)
    class_means: np.ndarray     # (C, K)
    precision: np.ndarray       # (K, K)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, dims: int = 64) -> "MahalanobisDetector":
        features = features.astype(np.float64)
        mean = features.mean(axis=0)
        _, _, vt = np.linalg.svd(features - mean, full_matrices=False)
        components = vt[:dims]
        z = (features - mean) @ components.T
        classes = np.unique(labels)
        class_means = np.stack([z[labels == c].mean(axis=0) for c in classes])
        centred = z - class_means[np.searchsorted(classes, labels)]
        cov = np.cov(centred, rowvar=False) + 1e-3 * np.eye(components.shape[0])
        return cls(mean.astype(np.float32), components.astype(np.float32),
                   class_means.astype(np.float32), np.linalg.inv(cov).astype(np.float32))

    def score(self, features: np.ndarray) -> np.ndarray:
        """Distance to the nearest class mean (higher = less like the training data)."""
        z = (np.asarray(features, np.float32) - self.pca_mean) @ self.components.T
        diff = z[:, None, :] - self.class_means[None]
        d2 = np.einsum("nck,kl,ncl->nc", diff, self.precision, diff)
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))

    def save(self, path: Path) -> None:
        save_file({"pca_mean": self.pca_mean, "components": self.components,
                   "class_means": self.class_means, "precision": self.precision}, str(path))

    @classmethod
    def load(cls, path: Path) -> "MahalanobisDetector":
        return cls(**load_file(str(path)))
