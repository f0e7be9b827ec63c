"""Operating points: the threshold that gives a target specificity on val, and the sensitivity
it gives on test (what a screening user gets when the threshold is fixed before test data).

An image counts as positive when its score is above the threshold. The threshold for a target
specificity is the k-th smallest val negative score, k = ceil(target x val negatives): at least
that share of val negatives is then at or below it, and it is the lowest such threshold.
"""

import math

import numpy as np

#: summary.csv's operating points: column prefix -> target specificity on val.
SPECIFICITIES = {"sens90": 0.90, "sens95": 0.95}


def threshold_at_specificity(y_true: np.ndarray, scores: np.ndarray, specificity: float) -> float:
    """The lowest threshold whose specificity on (``y_true``, ``scores``) is at least
    ``specificity``; NaN without negatives."""
    negatives = np.sort(np.asarray(scores, dtype=float)[np.asarray(y_true) == 0])
    if negatives.size == 0:
        return float("nan")
    k = max(1, math.ceil(specificity * negatives.size - 1e-9))
    return float(negatives[k - 1])


def sensitivity(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Share of positives scored above ``threshold``; NaN without positives or threshold."""
    positive = np.asarray(y_true) == 1
    if not positive.any() or not np.isfinite(threshold):
        return float("nan")
    return float(np.mean(np.asarray(scores, dtype=float)[positive] > threshold))


def specificity(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Share of negatives at or below ``threshold``."""
    negative = np.asarray(y_true) == 0
    if not negative.any() or not np.isfinite(threshold):
        return float("nan")
    return float(np.mean(np.asarray(scores, dtype=float)[negative] <= threshold))


def drawn_sensitivities(
    positive: np.ndarray, scores: np.ndarray, draws: np.ndarray, threshold: float
) -> np.ndarray:
    """:func:`sensitivity` at a fixed ``threshold`` of each resample that draws sample i
    ``draws[b, i]`` times (the threshold is val's: resampling test does not move it)."""
    if not np.isfinite(threshold):
        return np.full(len(draws), np.nan)
    flagged = (positive & (scores > threshold)).astype(float)
    n_pos = draws @ positive.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pos > 0, (draws @ flagged) / n_pos, np.nan)
