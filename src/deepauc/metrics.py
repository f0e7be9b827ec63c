"""Metrics. ROC-AUC is scikit-learn's; this module adds masking and averaging over diseases."""

import numpy as np
from sklearn.metrics import roc_auc_score


def masked_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC over the rows whose target is not NaN; NaN when only one class is present."""
    keep = ~np.isnan(targets)
    y = targets[keep]
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, scores[keep]))


def aucs_by_column(targets: np.ndarray, scores: np.ndarray) -> list[float]:
    """``masked_auc`` of each column of two (n, k) arrays."""
    return [masked_auc(targets[:, j], scores[:, j]) for j in range(targets.shape[1])]
