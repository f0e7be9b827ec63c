"""Patient-level splitting: no patient's images on both sides of a split; and when a split has
too few cases of a class for its AUC to mean much."""

import numpy as np
import pandas as pd

from deepauc.errors import InputError


def split_by_patient(
    frame: pd.DataFrame, val_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into (train, val) so that every patient lands wholly in one of them.

    ``val_fraction`` is the share of patients (not images) sent to val, rounded, at least one.
    The assignment depends only on the set of patient ids and ``seed``, not on row order.
    """
    if not 0.0 < val_fraction < 1.0:
        raise InputError(
            f"val_fraction must lie strictly between 0 and 1, got {val_fraction}",
            where="config key split.val_fraction",
        )
    patients = np.array(sorted(frame["patient"].unique()))
    if len(patients) < 2:
        raise InputError(
            f"only {len(patients)} patient(s) in the training CSV: cannot split by patient",
            fix="use a training CSV with at least two patients.",
        )
    n_val = min(len(patients) - 1, max(1, round(val_fraction * len(patients))))
    rng = np.random.default_rng(seed)
    val_patients = set(rng.permutation(patients)[:n_val])
    in_val = frame["patient"].isin(val_patients)
    return frame[~in_val].reset_index(drop=True), frame[in_val].reset_index(drop=True)


#: A split with fewer positives (or negatives) than this for a disease is marked.
MIN_CASES = 10


def few_cases(split: str, positive: int, negative: int) -> str:
    """The caution for a split's class counts of one disease ('' when there are enough)."""
    if min(positive, negative) >= MIN_CASES:
        return ""
    kind, count = ("positives", positive) if positive <= negative else ("negatives", negative)
    return f"only {count} {split} {kind}"
