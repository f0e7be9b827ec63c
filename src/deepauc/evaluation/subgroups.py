"""Subgroups and studies: the test split scored per patient group (sex, age band, AP/PA) and
per study (a study's score from its views).

Studies come from the split table's ``study`` column (``results/data/test.csv``), groups from
``results/data/test_groups.csv``: CheXpert's ``Sex``, ``Age`` and ``AP/PA`` per test image
(``deepauc.data.preprocess.image_groups``).

A group with fewer than :data:`MIN_GROUP_CLASS` positives or negatives for a disease is kept
in the table, its AUC and interval shown, and marked ``small``: its interval is too wide, or its
bootstrap too degenerate, to compare with the others. Images whose value was not recorded
(Age 0, ``Sex: Unknown``) or is uncommon (AP/PA ``LL``) form groups of their own with a
``note`` (:func:`group_labels`). The largest gap of an attribute is taken over the groups that
are neither small nor noted.
"""

import numpy as np
import pandas as pd

from deepauc.evaluation.operating_points import drawn_sensitivities, sensitivity
from deepauc.evaluation.scores import val_thresholds
from deepauc.evaluation.stats import auc, bootstrap_aucs, patient_bootstrap, percentile_interval

#: Age bands (years): [lower, upper) with their labels.
AGE_BANDS = [(0, 40, "<40"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+")]
#: The groups an attribute means; other values become marked groups (:func:`group_labels`).
KNOWN_GROUPS = {"sex": ("Female", "Male"), "projection": ("AP", "PA")}
#: The group of images whose value was not recorded.
UNKNOWN = "unknown"
#: The ``note`` of a group that is not one the attribute means.
NOTES = {
    "age": "age not recorded (0 or blank)",
    "sex": "sex not recorded (blank or Unknown)",
    "projection": "AP/PA not recorded (blank)",
    "uncommon": "an uncommon value of the column, kept as its own group",
}
#: Positives (and negatives) a group needs for its interval to be read as one.
MIN_GROUP_CLASS = 10
#: The operating point subgroups are read at (its val threshold: the predictor's overall one).
SUBGROUP_OPERATING_POINT = "sens90"
#: How a study's score is made from its views' scores (evaluation.study_score).
STUDY_SCORES = ("max", "mean")

SUBGROUP_COLUMNS = [
    "architecture",
    "method",
    "disease",
    "attribute",
    "group",
    "auc",
    "auc_low",
    "auc_high",
    SUBGROUP_OPERATING_POINT,
    f"{SUBGROUP_OPERATING_POINT}_low",
    f"{SUBGROUP_OPERATING_POINT}_high",
    "n_pos",
    "n_neg",
    "small",
    "note",
    "largest_gap",
]


def group_labels(split: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per attribute found in the group table (``image`` and any of ``sex``, ``age``,
    ``projection``), each image's ``group`` and ``note``: ``sex`` (Female, Male), ``age``
    (banded: :data:`AGE_BANDS`) and ``projection`` (AP, PA).

    Real CSVs hold more than these: CheXpert writes Age 0 and ``Sex: Unknown`` where they were
    not recorded, and AP/PA values such as LL or RL for a few frontal images. None is dropped or
    binned with the others: a value not recorded (blank, ``Unknown``, an age of 0) is the group
    :data:`UNKNOWN`, any other value a group of its own, each with a ``note`` that says so
    (:data:`NOTES`); such groups stay out of the largest gap, which compares the groups the
    attribute means."""
    out = {}
    images = split.set_index("image")
    if "sex" in images:
        out["sex"] = _categories(images["sex"], KNOWN_GROUPS["sex"], "sex")
    if "age" in images:
        age = pd.to_numeric(images["age"], errors="coerce")
        band = pd.Series(pd.NA, index=images.index, dtype="string")
        for low, high, label in AGE_BANDS:
            band[(age >= low) & (age < high)] = label
        recorded = age > 0  # CheXpert's 0 is no age; blank or text reads as NaN
        band = band.where(recorded, UNKNOWN)
        note = pd.Series("", index=images.index, dtype="string")
        note[~recorded] = NOTES["age"]
        out["age"] = pd.DataFrame({"group": band.fillna(UNKNOWN), "note": note})
    if "projection" in images:
        out["projection"] = _categories(
            images["projection"], KNOWN_GROUPS["projection"], "projection"
        )
    return out


def _categories(values: pd.Series, known: tuple[str, ...], attribute: str) -> pd.DataFrame:
    """Groups of a categorical attribute: ``known`` values as they are, blank or ``Unknown`` as
    :data:`UNKNOWN`, anything else under its own name; notes for the last two."""
    text = values.astype("string").str.strip()
    missing = text.isna() | (text == "") | text.str.lower().isin(["unknown", "nan"]).fillna(False)
    group = text.where(~missing, UNKNOWN)
    note = pd.Series("", index=values.index, dtype="string")
    note[missing] = NOTES[attribute]
    note[~missing & ~text.isin(known).fillna(False)] = NOTES["uncommon"]
    return pd.DataFrame({"group": group, "note": note})


def subgroup_rows(
    table: pd.DataFrame,
    val: pd.DataFrame | None,
    split: pd.DataFrame,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One prediction table per disease, attribute and group: AUC with a patient-bootstrap
    interval, the sensitivity at the predictor's val threshold for
    :data:`SUBGROUP_OPERATING_POINT` with its interval (the threshold fixed), counts, ``small``
    and the attribute's ``largest_gap``."""
    diseases = list(dict.fromkeys(table["disease"]))
    thresholds = val_thresholds(val, diseases)[SUBGROUP_OPERATING_POINT]
    rows = []
    for attribute, groups in group_labels(split).items():
        labelled = table.assign(
            group=table["image"].map(groups["group"]), note=table["image"].map(groups["note"])
        )
        for j, disease in enumerate(diseases):
            part = labelled[(labelled["disease"] == disease) & labelled["group"].notna()]
            found = []
            ordered = sorted(part.groupby("group"), key=lambda g: _order(g[0], g[1]["note"]))
            for group, members in ordered:
                y = members["y_true"].to_numpy()
                s = members["score"].to_numpy()
                n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
                resamples = patient_bootstrap(members["patient"].to_numpy(), n_resamples, seed)
                boot = bootstrap_aucs(y[:, None].astype(float), s[:, None], resamples)[:, 0]
                low, high = percentile_interval(boot)
                draws = np.stack([np.bincount(r, minlength=len(y)) for r in resamples])
                sens_low, sens_high = percentile_interval(
                    drawn_sensitivities(y == 1, s, draws.astype(float), thresholds[j])
                )
                found.append(
                    {
                        "disease": disease,
                        "attribute": attribute,
                        "group": str(group),
                        "auc": auc(y, s),
                        "auc_low": low,
                        "auc_high": high,
                        SUBGROUP_OPERATING_POINT: sensitivity(y, s, thresholds[j]),
                        f"{SUBGROUP_OPERATING_POINT}_low": sens_low,
                        f"{SUBGROUP_OPERATING_POINT}_high": sens_high,
                        "n_pos": n_pos,
                        "n_neg": n_neg,
                        "small": min(n_pos, n_neg) < MIN_GROUP_CLASS,
                        "note": str(members["note"].iloc[0]),
                    }
                )
            usable = [
                r["auc"]
                for r in found
                if not r["small"] and not r["note"] and np.isfinite(r["auc"])
            ]
            gap = max(usable) - min(usable) if len(usable) > 1 else float("nan")
            rows += [r | {"largest_gap": gap} for r in found]
    return pd.DataFrame(rows, columns=SUBGROUP_COLUMNS[2:])


def _order(group: str, notes: pd.Series) -> tuple[int, int, str]:
    """Groups in reading order: the attribute's own (age bands youngest first, the others by
    name), then the marked ones, ``unknown`` last."""
    bands = [label for *_, label in AGE_BANDS]
    marked = int(bool(notes.iloc[0])) + int(group == UNKNOWN)
    return (marked, bands.index(group) if group in bands else len(bands), group)


def subgroup_table(
    tables: dict[tuple[str, str], pd.DataFrame],
    val_tables: dict[tuple[str, str], pd.DataFrame],
    split: pd.DataFrame,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """``subgroups.csv``: :func:`subgroup_rows` of every (predictor, method)."""
    frames = [
        subgroup_rows(table, val_tables.get(key), split, n_resamples, seed).assign(
            architecture=key[0], method=key[1]
        )
        for key, table in tables.items()
    ]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame(columns=SUBGROUP_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SUBGROUP_COLUMNS]


def study_table(table: pd.DataFrame, split: pd.DataFrame, how: str = "max") -> pd.DataFrame:
    """A prediction table of studies: per study and disease, the ``how`` (max: CheXpert's
    convention, or mean) of its views' scores, and its label (a study is positive if a view is:
    CheXpert labels studies, so its views agree). The ``image`` column then names the study."""
    if how not in STUDY_SCORES:
        raise ValueError(f"unknown study score {how!r}: use one of {', '.join(STUDY_SCORES)}")
    studies = split.set_index("image")["study"]
    rows = table.assign(study=table["image"].map(studies))
    if rows["study"].isna().any():
        missing = rows.loc[rows["study"].isna(), "image"].iloc[0]
        raise ValueError(f"image {missing!r} is in no study of the split table")
    grouped = rows.groupby(["study", "disease"], sort=False)
    out = grouped.agg(patient=("patient", "first"), y_true=("y_true", "max"), score=("score", how))
    out = out.reset_index().rename(columns={"study": "image"})
    return out[["image", "patient", "disease", "y_true", "score"]]
