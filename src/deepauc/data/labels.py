"""Label policy: how CheXpert's uncertain and blank labels become training targets.

A policy maps each raw label (1.0, 0.0, -1.0, blank) to 1, 0 or "ignored" (NaN, masked out of the
loss and the metrics). Blank means the report did not mention the finding and always becomes 0.
Uncertain (-1.0) follows the disease's policy:

- ``ones``: uncertain counts as positive (U-Ones),
- ``zeros``: uncertain counts as negative (U-Zeros),
- ``ignore``: uncertain rows are masked for that disease.
"""

import numpy as np
import pandas as pd

from deepauc.data.chexpert import NEGATIVE, POSITIVE, UNCERTAIN
from deepauc.errors import InputError

POLICIES = ("ones", "zeros", "ignore")

#: The DAM recipe's choice (LibAUC's CheXpert setup, after Irvin et al. 2019):
#: U-Ones where uncertainty mostly hides true disease, U-Zeros elsewhere.
DEFAULT_POLICY = {
    "Cardiomegaly": "zeros",
    "Edema": "ones",
    "Consolidation": "zeros",
    "Atelectasis": "ones",
    "Pleural Effusion": "zeros",
}

_UNCERTAIN_TARGET = {"ones": POSITIVE, "zeros": NEGATIVE, "ignore": np.nan}


def policy_for(disease: str, policies: dict[str, str]) -> str:
    """The uncertainty policy of ``disease``: its own entry, else ``default``, else U-Zeros."""
    policy = policies.get(disease, policies.get("default", "zeros"))
    if policy not in POLICIES:
        raise InputError(
            f"unknown uncertainty policy {policy!r} for {disease!r}",
            where=f"config key uncertainty.{disease if disease in policies else 'default'}",
            fix=f"use one of {', '.join(POLICIES)}.",
        )
    return policy


def apply_policy(raw: pd.Series, policy: str) -> pd.Series:
    """Map raw CheXpert codes to targets: a nullable integer series of 1, 0 or <NA> (ignored)."""
    if policy not in POLICIES:
        raise InputError(f"unknown uncertainty policy {policy!r}", fix=f"use one of {POLICIES}.")
    # Build a new series rather than editing a column in place: under pandas 3's copy-on-write an
    # in-place replace on df[col] silently changes nothing, which is how LibAUC's loader breaks.
    mapped = raw.fillna(NEGATIVE).replace({UNCERTAIN: _UNCERTAIN_TARGET[policy]})
    return mapped.astype("Int64")


def audit_labels(
    raw: pd.DataFrame, mapped: pd.DataFrame, diseases: list[str], split: str
) -> pd.DataFrame:
    """Count, per disease, the raw codes and the resulting targets of one split.

    Columns: split, disease, images, positive, negative, ignored (after the policy), and
    uncertain, blank (raw, before it), and positive_rate = positive / (positive + negative).
    """
    rows = []
    for disease in diseases:
        target = mapped[disease]
        positive = int((target == 1).sum())
        negative = int((target == 0).sum())
        rows.append(
            {
                "split": split,
                "disease": disease,
                "images": len(target),
                "positive": positive,
                "negative": negative,
                "ignored": int(target.isna().sum()),
                "uncertain": int((raw[disease] == UNCERTAIN).sum()),
                "blank": int(raw[disease].isna().sum()),
                "positive_rate": positive / (positive + negative)
                if positive + negative
                else np.nan,
            }
        )
    return pd.DataFrame(rows)
