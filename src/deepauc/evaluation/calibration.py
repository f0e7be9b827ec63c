"""Calibrated probabilities: Platt scaling fitted on val, and how well probabilities match
outcomes on test (expected calibration error, Brier score).

A model's ``score`` is a logit that ranks images; AUC losses (AUCMLoss) do not make it a
probability, and even cross-entropy's drifts once a model is fine-tuned or averaged. Platt
scaling maps it to ``sigmoid(slope * score + intercept)`` with the two numbers fitted by
logistic regression on the val split, so the test split stays unseen. The fit uses Platt's
(1999) smoothed targets, ``(n_pos + 1) / (n_pos + 2)`` for positives and ``1 / (n_neg + 2)``
for negatives: a val set that the score separates perfectly then still gives finite numbers.
The mapping is increasing (the slope is kept positive), so it changes no AUC.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Equal-width probability bins of the expected calibration error.
ECE_BINS = 10
PROBABILITY = "probability"


@dataclass(frozen=True)
class Platt:
    """``sigmoid(slope * score + intercept)``."""

    slope: float = 1.0
    intercept: float = 0.0

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return sigmoid(self.slope * np.asarray(scores, dtype=float) + self.intercept)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def fit_platt(y_true: np.ndarray, scores: np.ndarray, iterations: int = 100) -> Platt:
    """Platt scaling of ``scores`` to ``y_true`` (Newton's method on the smoothed targets).
    Without both classes there is nothing to fit: the identity (slope 1, intercept 0)."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    n_pos = float(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return Platt()
    target = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    # Centred and scaled scores keep Newton's steps well conditioned for any logit scale.
    centre, scale = float(s.mean()), float(s.std()) or 1.0
    x = (s - centre) / scale
    a, b = 1.0, float(np.log(target.mean() / (1 - target.mean())))
    for _ in range(iterations):
        p = sigmoid(a * x + b)
        weight = np.maximum(p * (1 - p), 1e-12)
        gradient = np.array([np.dot(p - target, x), np.sum(p - target)])
        hessian = np.array(
            [[np.dot(weight, x * x), np.dot(weight, x)], [np.dot(weight, x), weight.sum()]]
        )
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    a = max(a, 0.0)  # a score that ranks worse than chance on val gets no reversed mapping
    return Platt(slope=a / scale, intercept=b - a * centre / scale)


def expected_calibration_error(
    y_true: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE over ``bins`` equal-width bins of [0, 1] (the last one closed): the mean, weighted by
    each bin's share of images, of |observed rate - mean probability|. NaN for no images."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    if y.size == 0:
        return float("nan")
    which = np.minimum((p * bins).astype(int), bins - 1)
    observed = np.bincount(which, weights=y, minlength=bins)
    predicted = np.bincount(which, weights=p, minlength=bins)
    return float(np.abs(observed - predicted).sum() / y.size)


def brier_score(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    y = np.asarray(y_true, dtype=float)
    return float(np.mean((np.asarray(probabilities, dtype=float) - y) ** 2)) if y.size else np.nan


def reliability_bins(
    y_true: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> pd.DataFrame:
    """Per non-empty bin: mean probability, observed rate and count (a reliability diagram)."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    frame = pd.DataFrame({"bin": which, "p": p, "y": y}).groupby("bin")
    return pd.DataFrame(
        {"mean_probability": frame["p"].mean(), "observed": frame["y"].mean(), "n": frame.size()}
    ).reset_index()


def fit_by_disease(val: pd.DataFrame) -> dict[str, Platt]:
    """Each disease's Platt scaling, fitted on its rows of a val prediction table."""
    return {
        disease: fit_platt(rows["y_true"].to_numpy(), rows["score"].to_numpy())
        for disease, rows in val.groupby("disease", sort=False)
    }


def with_probabilities(table: pd.DataFrame, scalings: dict[str, Platt]) -> pd.DataFrame:
    """``table`` with a :data:`PROBABILITY` column from its disease's scaling."""
    missing = set(table["disease"]) - set(scalings)
    if missing:
        raise ValueError(f"no val rows to calibrate {sorted(missing)} on")
    out = table.copy()
    out[PROBABILITY] = np.nan
    for disease, scaling in scalings.items():
        rows = out["disease"] == disease
        out.loc[rows, PROBABILITY] = scaling(out.loc[rows, "score"].to_numpy())
    return out


def calibrate(val: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables with calibrated probabilities, the scaling fitted on ``val`` alone."""
    scalings = fit_by_disease(val)
    return with_probabilities(val, scalings), with_probabilities(test, scalings)


def calibration_rows(
    val: pd.DataFrame, test: pd.DataFrame, scores_are_logits: bool = True
) -> pd.DataFrame:
    """Per disease: the val-fitted scaling and test ECE and Brier before (the sigmoid of the
    logit ``score``; NaN where scores are not logits, as a rank ensemble's) and after it (the
    test table's ``probability`` column where it has one, else the scaling applied here)."""
    rows = []
    for disease, scaling in fit_by_disease(val).items():
        part = test[test["disease"] == disease]
        y, s = part["y_true"].to_numpy(), part["score"].to_numpy()
        raw = sigmoid(s) if scores_are_logits else np.full(len(s), np.nan)
        # The table's own probabilities where it has them: what a reader of it gets
        calibrated = part[PROBABILITY].to_numpy() if PROBABILITY in part else scaling(s)
        rows.append(
            {
                "disease": disease,
                "slope": scaling.slope,
                "intercept": scaling.intercept,
                "ece_before": expected_calibration_error(y, raw) if scores_are_logits else np.nan,
                "ece_after": expected_calibration_error(y, calibrated),
                "brier_before": brier_score(y, raw) if scores_are_logits else np.nan,
                "brier_after": brier_score(y, calibrated),
                "n": len(part),
            }
        )
    return pd.DataFrame(rows)


def calibration_table(
    tables: dict[tuple[str, str], pd.DataFrame],
    val_tables: dict[tuple[str, str], pd.DataFrame],
    rank_scored: frozenset[tuple[str, str]] = frozenset(),
) -> pd.DataFrame:
    """``calibration.csv``: :func:`calibration_rows` of every (predictor, method) that has a
    val table, with ``architecture`` and ``method`` columns first. ``rank_scored``: the keys
    whose scores are percentile ranks (a rank ensemble), which have no "before"."""
    frames = [
        calibration_rows(val_tables[key], table, key not in rank_scored).assign(
            architecture=key[0], method=key[1]
        )
        for key, table in tables.items()
        if key in val_tables
    ]
    columns = ["architecture", "method", *CALIBRATION_COLUMNS]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


CALIBRATION_COLUMNS = [
    "disease",
    "slope",
    "intercept",
    "ece_before",
    "ece_after",
    "brier_before",
    "brier_after",
    "n",
]
