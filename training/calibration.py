"""Calibration and the in-domain threshold, fitted on one half of the validation data and reported on
the other (cross-fitting), so no figure is measured on the data that set it.

The validation photos are cut in two halves A and B by whole units (`training.splits.crossfit_halves`).
Each fitted value (a head's temperature, the domain head's temperature and threshold) is fitted on A
and applied to B, and fitted on B and applied to A; the reported figures pool those out-of-half
predictions. What ships is fitted on the whole validation split.

Label arrays use -1 (`UNKNOWN`) for "not known": those rows are ignored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from inference.predictor import ood_probability, softmax

# The in-domain threshold turns away at most this share of the in-domain scans and of the photos it is
# fitted on (the target for unseen photos is <= 3%).
REJECT_TARGET = 0.02
ECE_BINS = 15


def _known(a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, y = np.asarray(a, dtype=np.float64), np.asarray(y, dtype=int).reshape(-1)
    if len(a) != len(y):
        raise ValueError(f"expected {len(y)} rows of scores, got {len(a)}")
    keep = y >= 0
    return a[keep], y[keep]


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Equal-width confidence bins over (0, 1]: mean confidence, accuracy and count per bin."""
    probs, y = _known(probs, y)
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == y) if len(probs) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=correct.astype(float), minlength=n_bins) / count
    return {"edges": edges, "confidence": mean_conf, "accuracy": accuracy, "count": count}


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins (0 for no rows)."""
    bins = reliability_bins(probs, y, n_bins)
    total = bins["count"].sum()
    if total == 0:
        return 0.0
    used = bins["count"] > 0
    gap = np.abs(bins["accuracy"][used] - bins["confidence"][used])
    return float((gap * bins["count"][used]).sum() / total)


def fit_temperature(logits: np.ndarray, y: np.ndarray, max_iter: int = 100) -> float:
    """Temperature T minimising the NLL of softmax(logits / T), or of sigmoid(logits / T) for one logit
    per row (LBFGS on log T), clamped to [0.05, 20]; 1 with no rows."""
    logits, y = _known(logits, y)
    if len(y) == 0:
        return 1.0
    z = torch.as_tensor(logits, dtype=torch.float64)
    target = torch.as_tensor(y)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")
    lo, hi = math.log(0.05), math.log(20.0)

    def closure():
        optimizer.zero_grad()
        scaled = z / log_t.clamp(lo, hi).exp()
        loss = F.binary_cross_entropy_with_logits(scaled, target.double()) if z.ndim == 1 else \
            F.cross_entropy(scaled, target)
        loss.backward()
        return loss

    optimizer.step(closure)
    t = float(log_t.detach().exp())
    return float(min(max(t, 0.05), 20.0)) if math.isfinite(t) else 1.0


@dataclass
class HeadCalibration:
    temperature: float        # fitted on the whole validation split: what ships
    ece_before: float         # out-of-half: T = 1
    ece_after: float          # out-of-half: each half scaled by the temperature fitted on the other
    n: int

    def to_dict(self) -> dict:
        return {"temperature": round(self.temperature, 4), "ece_before": round(self.ece_before, 4),
                "ece_after": round(self.ece_after, 4), "n": self.n, "measured_on": "other half (cross-fit)"}


def crossfit_temperature(logits: np.ndarray, y: np.ndarray, halves: np.ndarray) -> HeadCalibration:
    """A head's temperature, and its ECE before / after on the half it was not fitted on."""
    scaled = np.empty_like(np.asarray(logits, dtype=np.float64))
    for half in (False, True):
        here = halves == half
        scaled[here] = np.asarray(logits)[here] / fit_temperature(logits[~here], y[~here])
    return HeadCalibration(fit_temperature(logits, y), expected_calibration_error(softmax(np.asarray(logits)), y),
                           expected_calibration_error(softmax(scaled), y), int((np.asarray(y) >= 0).sum()))


@dataclass
class DomainThreshold:
    temperature: float        # of the domain head's logit: the ood_score shown is its calibrated probability
    min_logit: float          # a photo whose domain logit is below this is turned away (not judged)
    out_of_half_scores: np.ndarray    # each row's out-of-domain probability under the other half's temperature
    out_of_half_rejected: np.ndarray  # each row judged with the other half's threshold


def fit_domain_threshold(domain_logits: np.ndarray, in_domain: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """The domain head's temperature (on all rows) and the threshold on its logit (kept as a logit: a
    probability this close to 0 or 1 would not survive rounding).

    The threshold turns away at most `REJECT_TARGET` of each group of in-domain rows (`groups`: their
    kind, scan or photo) and, of those thresholds, lets through as few outliers as possible: it lies midway
    between the strictest group's quantile and the next outlier below it, so a wide gap between the two is
    shared instead of being spent on one side.
    """
    t = fit_temperature(domain_logits, in_domain.astype(int))
    logits = np.asarray(domain_logits, np.float64)
    if not in_domain.any():
        return t, 0.0
    cut = min(float(np.quantile(logits[in_domain & (groups == g)], REJECT_TARGET, method="lower"))
              for g in np.unique(groups[in_domain]))
    below = logits[~in_domain & (logits < cut)]
    return t, (cut + float(below.max())) / 2 if len(below) else cut


def crossfit_domain_threshold(domain_logits: np.ndarray, in_domain: np.ndarray, groups: np.ndarray,
                              halves: np.ndarray) -> DomainThreshold:
    scores = np.empty(len(domain_logits))
    rejected = np.empty(len(domain_logits), dtype=bool)
    for half in (False, True):
        here, other = halves == half, halves != half
        t, min_logit = fit_domain_threshold(domain_logits[other], in_domain[other], groups[other])
        scores[here] = ood_probability(domain_logits[here], t)
        rejected[here] = domain_logits[here] < min_logit
    t, min_logit = fit_domain_threshold(domain_logits, in_domain, groups)
    return DomainThreshold(t, min_logit, scores, rejected)


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """How well a score (higher = less familiar) ranks out-of-domain pictures above in-domain ones."""
    y = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    return round(float(roc_auc_score(y, np.r_[in_scores, out_scores])), 4)


# An automatic answer (not flagged for review) should be right at least this often.
REVIEW_ACCURACY = 0.97


def fit_review_threshold(probs: np.ndarray, y: np.ndarray, target: float = REVIEW_ACCURACY) -> float:
    """The lowest confidence from which a head's answers are left automatic: the most answers, taken from
    the most confident down, whose accuracy still reaches `target`. Answers below it need review. With
    no labelled rows, 1.0 (every answer is checked by a person)."""
    probs, y = _known(probs, y)
    if not len(y):
        return 1.0
    conf = probs.max(axis=1)
    order = np.argsort(-conf, kind="stable")
    correct = (probs.argmax(axis=1) == y)[order]
    running = np.cumsum(correct) / np.arange(1, len(y) + 1)
    reaching = np.nonzero(running >= target)[0]
    if not len(reaching):
        return 1.0
    return float(conf[order][reaching[-1]])


@dataclass
class ReviewFit:
    """A head's shipped review threshold and, per validation row, what the other half's fit says of it."""
    min_confidence: float                  # fitted on the fit rows of the whole validation split: what ships
    out_of_half_probs: np.ndarray          # each row scaled by the temperature fitted on the other half
    out_of_half_threshold: np.ndarray      # each row's threshold, fitted on the other half

    def figures(self, y: np.ndarray, rows: np.ndarray) -> dict:
        """Out-of-half figures on `rows` with a known label: share automatic, their accuracy, ECE."""
        rows = rows & (np.asarray(y) >= 0)
        if not rows.any():
            return {"n": 0, "coverage": None, "automatic_accuracy": None, "accuracy": None, "ece": None}
        probs, labels = self.out_of_half_probs[rows], np.asarray(y)[rows]
        automatic = probs.max(axis=1) >= self.out_of_half_threshold[rows]
        correct = probs.argmax(axis=1) == labels
        return {"n": int(rows.sum()), "coverage": round(float(automatic.mean()), 4),
                "automatic_accuracy": round(float(correct[automatic].mean()), 4) if automatic.any() else None,
                "accuracy": round(float(correct.mean()), 4),
                "ece": round(expected_calibration_error(probs, labels), 4)}


def crossfit_review(logits: np.ndarray, y: np.ndarray, halves: np.ndarray, fit_rows: np.ndarray,
                    temperature: float) -> ReviewFit:
    """A head's review threshold fitted on `fit_rows` (the validation photos): each half judged by the
    temperature (fitted on every labelled row, as the shipped `temperature` is) and the threshold fitted on
    the other half; what ships uses the shipped `temperature`."""
    logits, y = np.asarray(logits, np.float64), np.asarray(y)
    probs, threshold = np.empty_like(logits), np.empty(len(y))
    for half in (False, True):
        here, other = halves == half, halves != half
        t = fit_temperature(logits[other], y[other])
        probs[here] = softmax(logits[here], t)
        threshold[here] = fit_review_threshold(softmax(logits[other & fit_rows], t), y[other & fit_rows])
    shipped = fit_review_threshold(softmax(logits[fit_rows], temperature), y[fit_rows])
    return ReviewFit(shipped, probs, threshold)
