"""The low-FPR corner of the ROC curve: McClish's standardized partial AUC, for one table and
for many bootstrap resamples at once (``deepauc.evaluation.stats`` scores the summary with it)."""

import numpy as np


def partial_auc(y_true: np.ndarray, scores: np.ndarray, max_fpr: float) -> float:
    """McClish's standardized partial AUC over false-positive rates up to ``max_fpr``: the area
    under the ROC curve left of ``max_fpr``, mapped so that chance is 0.5 and a perfect ranking
    1 (equal to scikit-learn's ``roc_auc_score(max_fpr=...)``); NaN for one class. What a
    screening reader cares about: how the ranking does where few negatives are flagged."""
    y_true = np.asarray(y_true, dtype=bool)
    return float(
        drawn_paucs(y_true, np.asarray(scores, float), np.ones((1, y_true.size)), max_fpr)[0]
    )


def drawn_paucs(
    positive: np.ndarray, scores: np.ndarray, draws: np.ndarray, max_fpr: float
) -> np.ndarray:
    """:func:`partial_auc` of each resample that draws sample i ``draws[b, i]`` times: the ROC
    curve from the highest score down (tied scores one step, so a tie is a diagonal), its area
    left of ``max_fpr`` by trapezoids (the last one cut at ``max_fpr``), then standardized."""
    if scores.size == 0:
        return np.full(len(draws), np.nan)
    order = np.argsort(-scores, kind="stable")
    ordered, positive, draws = scores[order], positive[order], draws[:, order]
    groups = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    pos = np.add.reduceat(draws * positive, groups, axis=1)
    neg = np.add.reduceat(draws * ~positive, groups, axis=1)
    n_pos, n_neg = pos.sum(axis=1, keepdims=True), neg.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.cumsum(pos, axis=1) / n_pos
        fpr = np.cumsum(neg, axis=1) / n_neg
    zeros = np.zeros((len(draws), 1))
    tpr, fpr = np.hstack([zeros, tpr]), np.hstack([zeros, fpr])
    start, end = fpr[:, :-1], fpr[:, 1:]
    width = np.clip(np.minimum(end, max_fpr) - start, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(end > start, width / (end - start), 0.0)
    cut = tpr[:, :-1] + (tpr[:, 1:] - tpr[:, :-1]) * share  # the tpr where each piece stops
    area = (width * (tpr[:, :-1] + cut) / 2).sum(axis=1)
    least, most = 0.5 * max_fpr**2, max_fpr  # the area of chance, and of a perfect ranking
    standardized = 0.5 * (1 + (area - least) / (most - least))
    valid = (n_pos[:, 0] > 0) & (n_neg[:, 0] > 0)
    return np.where(valid, standardized, np.nan)
