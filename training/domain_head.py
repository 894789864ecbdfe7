"""The domain head's final fit: logistic regression on the trained model's pooled features, the task's
own training pictures against the negatives, the other task's pictures and drawn outliers.

The head trained with the epochs shapes the features, but it never sees a picture no data folder has:
it judged a blank frame or a screenshot a book at 98%. Refitted with drawn outliers
(`training/outliers.py`), it turns those away while the held-out pictures fare about as before
(runs/c_l1, cross-fit: negatives accepted 27.0% -> 24.0%, in-class photos rejected 2.9% -> 4.1%, scans
1.6% -> 1.4%; the tests' drawn pictures accepted 12 of 12 -> 0; docs/experiments.md).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from inference.model import DOMAIN_OUTPUT, MultiHeadModel, ModelConfig, create_eval_transform
from training.activations import CPU_MEMORY_FORMAT
from training.outliers import drawn_outliers

N_DRAWN = 700


def drawn_features(model: MultiHeadModel, config: ModelConfig, n: int, seed: int, batch_size: int = 32) -> np.ndarray:
    """Pooled features of `n` drawn outliers through the whole model, preprocessed as inference does."""
    transform = create_eval_transform(config.data_config)
    images = [image for _, image in drawn_outliers(n, seed)]
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = torch.stack([transform(im) for im in images[start:start + batch_size]])
            out.append(model.features(batch.contiguous(memory_format=CPU_MEMORY_FORMAT)).numpy())
    return np.concatenate(out)


def refit_domain_head(model: MultiHeadModel, features: np.ndarray, in_domain: np.ndarray,
                      outlier_features: np.ndarray) -> dict:
    """Replace the domain head's weights by a balanced logistic regression (scikit-learn's defaults)."""
    x = np.concatenate([features, outlier_features])
    y = np.concatenate([in_domain.astype(int), np.zeros(len(outlier_features), int)])
    fit = LogisticRegression(class_weight="balanced", max_iter=5000).fit(x, y)
    head = model.heads[DOMAIN_OUTPUT]
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(fit.coef_.astype(np.float32)))
        head.bias.copy_(torch.from_numpy(fit.intercept_.astype(np.float32)))
    return {"fit": "logistic regression (balanced, C=1) on the trained model's pooled features",
            "in_domain_pictures": int(in_domain.sum()), "outlier_pictures": int((~in_domain).sum()),
            "drawn_outliers": len(outlier_features)}
