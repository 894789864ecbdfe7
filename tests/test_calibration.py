"""training/calibration.py: ECE, temperatures, the cross-fitted in-domain threshold and the review threshold."""
from __future__ import annotations

import numpy as np
import pytest

from inference.predictor import ood_probability, softmax
from training.calibration import REJECT_TARGET, crossfit_domain_threshold, crossfit_temperature, \
    expected_calibration_error, fit_domain_threshold, fit_review_threshold, fit_temperature


def sample_labels(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Draw one label per row from its probabilities."""
    return (rng.uniform(size=(len(probs), 1)) > np.cumsum(probs, axis=1)).sum(axis=1)


def test_ece_calibrated_vs_overconfident():
    rng = np.random.default_rng(0)
    n = 20000
    conf = rng.uniform(0.5, 1.0, n)
    probs = np.stack([conf, 1 - conf], axis=1)
    y_calibrated = np.where(rng.uniform(size=n) < conf, 0, 1)       # right with probability = confidence
    assert expected_calibration_error(probs, y_calibrated) < 0.02

    over = np.tile([0.99, 0.01], (n, 1))
    y_over = np.where(rng.uniform(size=n) < 0.6, 0, 1)               # right 60% of the time
    assert expected_calibration_error(over, y_over) == pytest.approx(0.39, abs=0.02)
    # unknown labels (-1) are ignored
    y_masked = np.concatenate([y_over, -np.ones(n, int)])
    assert expected_calibration_error(np.concatenate([over, over]), y_masked) == pytest.approx(
        expected_calibration_error(over, y_over))


def test_fit_temperature_recovers_known_temperature():
    rng = np.random.default_rng(1)
    t_true = 2.5
    logits = rng.normal(0, 4.0, size=(4000, 4))
    y = sample_labels(rng, softmax(logits, t_true))
    t = fit_temperature(logits, y)
    assert abs(t - t_true) < 0.3
    assert expected_calibration_error(softmax(logits, t), y) < expected_calibration_error(softmax(logits), y)
    assert fit_temperature(logits[:0], y[:0]) == 1.0
    # clamped to [0.05, 20]: labels that are independent of the logits push T up
    assert fit_temperature(rng.normal(0, 50, size=(500, 3)), rng.integers(0, 3, 500)) <= 20.0
    # one logit per row: a sigmoid's temperature
    z = rng.normal(0, 6, 4000)
    y_binary = (rng.uniform(size=4000) < 1 / (1 + np.exp(-z / 3.0))).astype(int)
    assert abs(fit_temperature(z, y_binary) - 3.0) < 0.4


def test_crossfit_temperature_reports_each_half_with_the_other_halfs_fit():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 6, size=(3000, 3))
    y = sample_labels(rng, softmax(logits, 3.0))
    halves = np.arange(3000) % 2 == 1
    fit = crossfit_temperature(logits, y, halves)
    assert abs(fit.temperature - 3.0) < 0.4 and fit.temperature == pytest.approx(fit_temperature(logits, y))
    t_a, t_b = fit_temperature(logits[~halves], y[~halves]), fit_temperature(logits[halves], y[halves])
    out_of_half = np.where(halves[:, None], softmax(logits, t_a), softmax(logits, t_b))
    assert fit.ece_after == pytest.approx(expected_calibration_error(out_of_half, y))
    assert fit.ece_after < fit.ece_before and fit.n == 3000
    assert fit.to_dict()["measured_on"] == "other half (cross-fit)"


def test_crossfit_domain_threshold_never_judges_a_half_by_its_own_threshold():
    rng = np.random.default_rng(3)
    n = 2000
    in_domain = np.arange(n) % 3 != 0
    logits = np.where(in_domain, rng.normal(4, 2, n), rng.normal(-1, 2, n))
    halves = np.arange(n) < n // 2
    logits[halves & in_domain] -= 2.0       # half B's in-domain photos look less typical
    kinds = np.where(in_domain, "photo", "negative")
    fit = crossfit_domain_threshold(logits, in_domain, kinds, halves)
    # What ships rejects at most REJECT_TARGET of the in-domain validation photos it was fitted on.
    shipped = logits < fit.min_logit
    assert 0.5 * REJECT_TARGET <= shipped[in_domain].mean() <= REJECT_TARGET
    # Half B is judged by A's fit, which never saw B's shifted photos: more of them are turned away.
    rejected_b = fit.out_of_half_rejected[halves & in_domain].mean()
    rejected_a = fit.out_of_half_rejected[~halves & in_domain].mean()
    assert rejected_b > 3 * REJECT_TARGET and rejected_a < REJECT_TARGET
    assert 0.2 < fit.out_of_half_rejected[~in_domain].mean() < 0.9   # overlapping: some outliers pass
    assert np.allclose(fit.out_of_half_scores[~halves], ood_probability(logits[~halves], fit_temperature(
        logits[halves], in_domain[halves].astype(int))))


def test_the_threshold_shares_a_wide_gap_and_holds_for_every_kind():
    rng = np.random.default_rng(4)
    scans, photos, outliers = rng.normal(6, 1, 500), rng.normal(4, 1, 300), rng.normal(-8, 1, 300)
    logits = np.r_[scans, photos, outliers]
    kinds = np.array(["scan"] * 500 + ["photo"] * 300 + ["negative"] * 300)
    in_domain = kinds != "negative"
    _, min_logit = fit_domain_threshold(logits, in_domain, kinds)
    # Midway between the photos' 2% quantile (the stricter kind here) and the nearest outlier.
    assert min_logit == pytest.approx((np.quantile(photos, REJECT_TARGET, method="lower") + outliers.max()) / 2)
    rejected = logits < min_logit
    assert rejected[kinds == "photo"].mean() < REJECT_TARGET and rejected[kinds == "scan"].mean() < REJECT_TARGET
    assert rejected[~in_domain].all()


def test_review_threshold_keeps_the_most_confident_answers_that_reach_the_target():
    # Ten answers by confidence: the top eight are right, the ninth wrong, the tenth right.
    conf = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.91, 0.90])
    probs = np.stack([conf, 1 - conf], axis=1)
    y = np.array([0] * 8 + [1, 0])
    assert fit_review_threshold(probs, y, target=1.0) == pytest.approx(0.92)   # all right down to the eighth
    assert fit_review_threshold(probs, y, target=0.9) == pytest.approx(0.90)   # 9 of 10 = 0.9 reaches it
    assert fit_review_threshold(probs, np.full(10, 1), target=0.97) == 1.0     # never right: all reviewed
    assert fit_review_threshold(probs, np.full(10, -1)) == 1.0                 # no labels: all reviewed
