"""Ensembles of prediction tables (see ``deepauc.training.predict``): same images, averaged
scores."""

import numpy as np
import pandas as pd

from deepauc.errors import InputError

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


def average_members(tables: list[pd.DataFrame], combine: str = "mean") -> pd.DataFrame:
    """Average the members' scores per image and disease.

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
    result = first.copy()
    result["score"] = sum(scores) / len(scores)
    return result
