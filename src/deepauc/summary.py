"""The answer tables: ``summary.csv`` (every predictor and method scored) and ``comparison.csv``
(every fine-tune method against the control, CE, on the same images)."""

import pandas as pd

from deepauc.methods import CONTROL, WARMUP
from deepauc.stats import compare_methods, score_predictions

SUMMARY_COLUMNS = [
    "architecture",
    "method",
    "disease",
    "auc",
    "auc_low",
    "auc_high",
    "auprc",
    "n_pos",
    "n_neg",
]
COMPARISON_COLUMNS = [
    "architecture",
    "disease",
    "method",
    "control",
    "auc",
    "auc_control",
    "delta",
    "p_value",
]


def summarize(
    tables: dict[tuple[str, str], pd.DataFrame], n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Score each ``(architecture, method)`` prediction table; rows in the order given."""
    frames = []
    for (architecture, method), table in tables.items():
        scored = score_predictions(table, n_resamples=n_resamples, seed=seed)
        frames.append(scored.assign(architecture=architecture, method=method))
    return pd.concat(frames, ignore_index=True)[SUMMARY_COLUMNS]


def compare_with_control(
    tables: dict[tuple[str, str], pd.DataFrame],
    control: str = CONTROL,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every fine-tune method against ``control`` on the same test images, for each
    architecture that has both: DeLong per disease, a paired patient bootstrap for the mean.
    Long form, one row per architecture, disease and method; ``delta`` is AUC(method) -
    AUC(control). The warm-up is the starting point of both, not a contender."""
    frames = []
    for (architecture, method), table in tables.items():
        if method in (control, WARMUP) or (architecture, control) not in tables:
            continue
        compared = compare_methods(
            table, tables[(architecture, control)], n_resamples=n_resamples, seed=seed
        )
        compared = compared.rename(columns={"auc_a": "auc", "auc_b": "auc_control"})
        frames.append(compared.assign(architecture=architecture, method=method, control=control))
    if not frames:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    return pd.concat(frames, ignore_index=True)[COMPARISON_COLUMNS]


def summarize_by_seed(
    tables: dict[tuple[str, str, int], pd.DataFrame], n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """``summarize`` of each ``(architecture, method, seed)`` table alone, plus a seed column."""
    frames = [
        summarize({(architecture, method): table}, n_resamples, seed).assign(seed=run_seed)
        for (architecture, method, run_seed), table in tables.items()
    ]
    return pd.concat(frames, ignore_index=True)
