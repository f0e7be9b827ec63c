"""Ensembles of prediction tables (see ``deepauc.training.predict``): same images, averaged
scores, either every member alike (the plain mean) or weighted by a selection on val.

A combined table holds ``score`` only: its ``probability`` is calibrated again, on the
ensemble's own val table (``deepauc.evaluation.calibration``).
"""

import numpy as np
import pandas as pd

from deepauc.errors import InputError
from deepauc.evaluation.stats import auc

COMBINES = ("mean", "rank")
KEYS = ["image", "disease"]


def assemble_diseases(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The disease-specific models of one architecture, read together as one predictor of all
    diseases: the write-up's ensemble of disease-specific models."""
    combined = pd.concat(tables, ignore_index=True)
    duplicated = combined.duplicated(KEYS)
    if duplicated.any():
        row = combined[duplicated].iloc[0]
        raise InputError(f"two tables score {row['disease']!r} for image {row['image']!r}")
    return combined


def average_members(
    tables: list[pd.DataFrame], combine: str = "mean", weights: dict[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """Average the members' scores per image and disease (weighted, given ``weights``: per
    disease, one weight per member, summing to 1).

    ``mean`` averages scores (logits: the mean of log-odds). ``rank`` first turns each member's
    scores into percentile ranks within each disease, so a member with compressed or shifted
    scores (as AUC losses produce: AUCMLoss does not calibrate) weighs as much as the others.
    """
    if combine not in COMBINES:
        raise InputError(
            f"unknown ensemble combine {combine!r}",
            where="config key ensemble.combine",
            fix=f"use one of {', '.join(COMBINES)}.",
        )
    if not tables:
        raise InputError("an ensemble needs at least one member", where="config key ensemble")
    # Align every member to the first one's row order, which keeps the configured disease order.
    first = tables[0].reset_index(drop=True)
    order = pd.MultiIndex.from_frame(first[KEYS])
    scores = []
    for table in tables:
        member = table.set_index(KEYS)
        if len(member) != len(first) or not member.index.isin(order).all():
            raise InputError(
                "ensemble members were scored on different images or diseases",
                fix="rebuild the predictions from the same results/data/test.csv.",
            )
        member = member.loc[order].reset_index()
        if not np.array_equal(member["y_true"].to_numpy(), first["y_true"].to_numpy()):
            raise InputError(
                "ensemble members disagree on the test labels",
                fix="rebuild the predictions from the same results/data/test.csv.",
            )
        score = member["score"]
        if combine == "rank":
            score = member.groupby("disease")["score"].rank(pct=True)
        scores.append(score.to_numpy())
    result = first.drop(columns=["probability"], errors="ignore")
    if weights is None:
        result["score"] = sum(scores) / len(scores)
    else:
        per_row = np.stack([weights[d] for d in result["disease"]])  # (rows, members)
        result["score"] = (np.stack(scores, axis=1) * per_row).sum(axis=1)
    return result


#: Forward-selection steps at most: enough for a handful of members to find their weights,
#: few enough that the selection cannot fit val noise by hundreds of small steps.
MAX_SELECTION_STEPS = 20


def select_members(
    val_tables: list[pd.DataFrame], combine: str = "mean", max_steps: int = MAX_SELECTION_STEPS
) -> dict[str, np.ndarray]:
    """Per disease, members' weights chosen on val by greedy forward selection with
    replacement (Caruana et al. 2004): start from the member with the best val AUC, then add
    (again, possibly) the member whose addition raises the ensemble's val AUC most, while one
    does. The weights are how often each member was picked. The ensemble starts as its best
    member and only takes steps that raise val AUC, so on val it is never below that member,
    whatever the plain mean does there."""
    if not val_tables:
        raise InputError("an ensemble needs at least one member", where="config key ensemble")
    first = average_members(val_tables[:1], combine)
    diseases = list(dict.fromkeys(first["disease"]))
    # (members, rows): each member's scores on the combine scale, in the first one's row order
    scores = np.stack([_aligned(first, table, combine) for table in val_tables])
    weights = {}
    for disease in diseases:
        rows = (first["disease"] == disease).to_numpy()
        y = first.loc[rows, "y_true"].to_numpy()
        member_scores = scores[:, rows]
        counts = np.zeros(len(val_tables))
        single = [auc(y, member) for member in member_scores]
        best = int(np.nanargmax(single)) if np.isfinite(single).any() else 0
        counts[best] = 1
        current = single[best]
        for _ in range(max_steps - 1):
            trials = [
                auc(y, (counts @ member_scores + member) / (counts.sum() + 1))
                for member in member_scores
            ]
            pick = int(np.nanargmax(trials)) if np.isfinite(trials).any() else 0
            if not trials[pick] > current:
                break
            counts[pick] += 1
            current = trials[pick]
        weights[disease] = counts / counts.sum()
    return weights


def _aligned(first: pd.DataFrame, table: pd.DataFrame, combine: str) -> np.ndarray:
    """A member's scores (on the combine scale) in ``first``'s row order."""
    both = average_members(
        [first, table], combine, {d: np.array([0.0, 1.0]) for d in first["disease"].unique()}
    )
    return both["score"].to_numpy()


def weight_rows(weights: dict[str, np.ndarray], members: list[str]) -> pd.DataFrame:
    """The chosen weights as a table: ``disease, member, weight`` (members of weight 0 too)."""
    return pd.DataFrame(
        [
            {"disease": disease, "member": member, "weight": float(w)}
            for disease, row in weights.items()
            for member, w in zip(members, row, strict=True)
        ]
    )


def ensemble_weights_table(weights: dict[tuple[str, str, int], pd.DataFrame]) -> pd.DataFrame:
    """``ensemble_weights.csv``: each val-weighted ensemble's weights (:func:`weight_rows`) per
    (predictor, method, seed)."""
    columns = ["architecture", "method", "seed", "disease", "member", "weight"]
    frames = [
        table.assign(architecture=predictor, method=method, seed=int(seed))
        for (predictor, method, seed), table in weights.items()
    ]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]
