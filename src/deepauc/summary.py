"""The answer tables: ``summary.csv`` (every predictor and method scored) and ``comparison.csv``
(DAM against CE on the same images)."""

import pandas as pd

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
COMPARISON_COLUMNS = ["architecture", "disease", "auc_ce", "auc_dam", "delta", "p_value"]


def summarize(
    tables: dict[tuple[str, str], pd.DataFrame], n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Score each ``(architecture, method)`` prediction table; rows in the order given."""
    frames = []
    for (architecture, method), table in tables.items():
        scored = score_predictions(table, n_resamples=n_resamples, seed=seed)
        frames.append(scored.assign(architecture=architecture, method=method))
    return pd.concat(frames, ignore_index=True)[SUMMARY_COLUMNS]


def compare_dam_with_ce(
    tables: dict[tuple[str, str], pd.DataFrame], n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """For each architecture that has both, DAM against CE: DeLong per disease, bootstrap for the
    mean. ``delta`` is AUC(DAM) - AUC(CE)."""
    frames = []
    architectures = dict.fromkeys(architecture for architecture, _ in tables)
    for architecture in architectures:
        if (architecture, "dam") not in tables or (architecture, "ce") not in tables:
            continue
        compared = compare_methods(
            tables[(architecture, "dam")],
            tables[(architecture, "ce")],
            n_resamples=n_resamples,
            seed=seed,
        )
        compared = compared.rename(columns={"auc_a": "auc_dam", "auc_b": "auc_ce"})
        frames.append(compared.assign(architecture=architecture))
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
