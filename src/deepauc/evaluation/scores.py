"""One prediction table's row of ``summary.csv`` per disease and their mean: ROC-AUC, the
low-FPR metrics and the operating points, each with a 95% patient-bootstrap interval from the
same resamples, AUPRC and counts.

The operating points need the val table of the same predictor: their thresholds are chosen on
val (``deepauc.evaluation.operating_points``) and only applied to test.
"""

from functools import partial

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from deepauc.evaluation.operating_points import (
    SPECIFICITIES,
    drawn_sensitivities,
    sensitivity,
    specificity,
    threshold_at_specificity,
)
from deepauc.evaluation.partial_auc import partial_auc
from deepauc.evaluation.stats import (
    MEAN,
    auc,
    bootstrap_aucs,
    bootstrap_p_value,
    mean_over_diseases,
    patient_bootstrap,
    percentile_interval,
    wide_tables,
)

#: The low-FPR metrics beside ROC-AUC: McClish's standardized partial AUC (:func:`partial_auc`)
#: at false-positive rates up to 0.1 and 0.2, the corner a screening reader works in.
PARTIAL_AUCS = {"pauc10": 0.1, "pauc20": 0.2}


def val_thresholds(val: pd.DataFrame | None, diseases: list[str]) -> dict[str, list[float]]:
    """Per operating point of :data:`SPECIFICITIES`, each disease's val-chosen threshold (NaN
    without a val table or without val negatives)."""
    out = {}
    for name, target in SPECIFICITIES.items():
        thresholds = []
        for disease in diseases:
            rows = val[val["disease"] == disease] if val is not None else val
            thresholds.append(
                float("nan")
                if rows is None or rows.empty
                else threshold_at_specificity(rows["y_true"], rows["score"], target)
            )
        out[name] = thresholds
    return out


def score_predictions(
    table: pd.DataFrame,
    n_resamples: int = 1000,
    seed: int = 0,
    val: pd.DataFrame | None = None,
    thresholds: dict[str, list[float]] | None = None,
) -> pd.DataFrame:
    """Per disease and their mean: AUC, the partial AUCs of :data:`PARTIAL_AUCS` and, given
    the ``val`` table, the test sensitivity at each val-chosen operating point of
    :data:`SPECIFICITIES` (with the test specificity it gave), each with a 95% patient-bootstrap
    interval; AUPRC, counts. ``thresholds`` (per operating point, one per disease of
    ``table``, in its order) stand in for ``val``'s where they were chosen earlier (an exported
    predictor's).

    Columns: ``disease, auc, auc_low, auc_high, pauc10(_low, _high), pauc20(...), sens90(...),
    spec90, sens95(...), spec95, auprc, n_pos, n_neg``; the ``mean`` row averages the diseases'
    values and its intervals come from the same resamples.
    """
    y, s, diseases = wide_tables(table)
    patients = table.drop_duplicates("image").set_index("image").loc[y.index, "patient"].to_numpy()
    resamples = patient_bootstrap(patients, n_resamples, seed)
    metrics = {
        "auc": (auc, None),
        **{name: (partial(partial_auc, max_fpr=f), f) for name, f in PARTIAL_AUCS.items()},
    }
    boots = {
        name: bootstrap_aucs(y.to_numpy(), s.to_numpy(), resamples, max_fpr)
        for name, (_, max_fpr) in metrics.items()
    }
    if thresholds is None:
        thresholds = val_thresholds(val, diseases)
    boots |= {
        name: _bootstrap_sensitivities(y.to_numpy(), s.to_numpy(), resamples, thresholds[name])
        for name in SPECIFICITIES
    }
    rows = []
    for j, disease in enumerate(diseases):
        known = ~np.isnan(y.iloc[:, j].to_numpy())
        truth, score = y.iloc[:, j].to_numpy()[known], s.iloc[:, j].to_numpy()[known]
        row = {"disease": disease}
        for name, (metric, _) in metrics.items():
            low, high = percentile_interval(boots[name][:, j])
            row |= {name: metric(truth, score), f"{name}_low": low, f"{name}_high": high}
        for name, target in SPECIFICITIES.items():
            threshold = thresholds[name][j]
            low, high = percentile_interval(boots[name][:, j])
            row |= {
                name: sensitivity(truth, score, threshold),
                f"{name}_low": low,
                f"{name}_high": high,
                f"spec{round(target * 100)}": specificity(truth, score, threshold),
            }
        rows.append(
            {
                **row,
                "auprc": float(average_precision_score(truth, score)),
                "n_pos": int(truth.sum()),
                "n_neg": int((truth == 0).sum()),
            }
        )
    frame = pd.DataFrame(rows)
    mean_row = {"disease": MEAN}
    for name, boot in boots.items():
        low, high = percentile_interval(mean_over_diseases(boot))
        mean_row |= {name: frame[name].mean(), f"{name}_low": low, f"{name}_high": high}
    for target in SPECIFICITIES.values():
        column = f"spec{round(target * 100)}"
        mean_row[column] = frame[column].mean()
    mean_row |= {
        "auprc": frame["auprc"].mean(),
        "n_pos": int(frame["n_pos"].sum()),
        "n_neg": int(frame["n_neg"].sum()),
    }
    return pd.concat([frame, pd.DataFrame([mean_row])], ignore_index=True)


def _bootstrap_sensitivities(
    y: np.ndarray, s: np.ndarray, resamples: list[np.ndarray], thresholds: list[float]
) -> np.ndarray:
    """Test sensitivity at each disease's fixed threshold, per resample (rows) and disease."""
    out = np.full((len(resamples), y.shape[1]), np.nan)
    for first in range(0, len(resamples), _RESAMPLES_PER_BLOCK):  # bounds the draws array
        block = resamples[first : first + _RESAMPLES_PER_BLOCK]
        draws = np.stack([np.bincount(rows, minlength=len(y)) for rows in block]).astype(float)
        for j in range(y.shape[1]):
            known = ~np.isnan(y[:, j])
            out[first : first + len(block), j] = drawn_sensitivities(
                y[known, j].astype(bool), s[known, j], draws[:, known], thresholds[j]
            )
    return out


_RESAMPLES_PER_BLOCK = 200


#: The metrics ``comparison.csv`` compares beside ROC-AUC (each arm at its own val thresholds).
COMPARED_METRICS = [*PARTIAL_AUCS, *SPECIFICITIES]


def compare_metrics(
    table_a: pd.DataFrame,
    table_b: pd.DataFrame,
    val_a: pd.DataFrame | None = None,
    val_b: pd.DataFrame | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """A against B on :data:`COMPARED_METRICS`, per disease and for their mean: per metric,
    ``{metric}_delta`` (A - B), its 95% interval ``{metric}_delta_low``/``_high`` and a
    two-sided p ``{metric}_p``, from one paired bootstrap of test patients (the same resamples
    for both arms and every metric; DeLong covers ROC-AUC only). Each arm's operating points use
    its own val thresholds; without val tables those columns are NaN."""
    y, s_a, diseases = wide_tables(table_a)
    y_b, s_b, _ = wide_tables(table_b)
    if not y.index.equals(y_b.index) or not np.array_equal(
        y.to_numpy(), y_b[diseases].to_numpy(), equal_nan=True
    ):
        raise ValueError("the two prediction tables do not hold the same images and labels")
    s_b = s_b[diseases]
    patients = table_a.drop_duplicates("image").set_index("image").loc[y.index, "patient"]
    resamples = patient_bootstrap(patients.to_numpy(), n_resamples, seed)
    thresholds = [val_thresholds(val, diseases) for val in (val_a, val_b)]
    rows = {disease: {"disease": disease} for disease in [*diseases, MEAN]}
    for name in COMPARED_METRICS:
        point, boot = [], []
        for scores, arm_thresholds in ((s_a, thresholds[0]), (s_b, thresholds[1])):
            values = scores.to_numpy()
            if name in PARTIAL_AUCS:
                full = bootstrap_aucs(y.to_numpy(), values, _whole(len(y)), PARTIAL_AUCS[name])
                drawn = bootstrap_aucs(y.to_numpy(), values, resamples, PARTIAL_AUCS[name])
            else:
                full = _bootstrap_sensitivities(
                    y.to_numpy(), values, _whole(len(y)), arm_thresholds[name]
                )
                drawn = _bootstrap_sensitivities(
                    y.to_numpy(), values, resamples, arm_thresholds[name]
                )
            point.append(full[0])
            boot.append(drawn)
        delta = point[0] - point[1]
        per_disease = boot[0] - boot[1]
        mean_delta = mean_over_diseases(boot[0]) - mean_over_diseases(boot[1])
        for j, disease in enumerate([*diseases, MEAN]):
            draws = per_disease[:, j] if disease != MEAN else mean_delta
            value = (
                delta[j]
                if disease != MEAN
                else (mean_over_diseases(point[0][None]) - mean_over_diseases(point[1][None]))[0]
            )
            low, high = percentile_interval(draws)
            rows[disease] |= {
                f"{name}_delta": float(value),
                f"{name}_delta_low": low,
                f"{name}_delta_high": high,
                f"{name}_p": bootstrap_p_value(draws),
            }
    return pd.DataFrame(list(rows.values()))


def compared_columns() -> list[str]:
    """``comparison.csv``'s columns of :func:`compare_metrics`, in order."""
    return [
        f"{name}_{part}"
        for name in COMPARED_METRICS
        for part in ("delta", "delta_low", "delta_high", "p")
    ]


def _whole(n: int) -> list[np.ndarray]:
    """The one 'resample' that draws every image once: the point estimate on the same code."""
    return [np.arange(n)]
