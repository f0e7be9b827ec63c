"""The answer tables: ``summary.csv`` (every predictor and method scored), ``comparison.csv``
(every fine-tune method against the control, CE, and against the warm-up it started from, on the
same test images) and ``seeds.csv`` (every seed on its own).

``comparison.csv``, one row per comparison, predictor, method and disease (and ``mean``):

- ``comparison``: which question the row answers. :data:`VS_CONTROL`: the method against CE,
  both fine-tuned from the same warm-up with the same epochs, sampler and rate grid (equal
  compute). :data:`VS_WARMUP`: the method against the warm-up it started from, i.e. with its
  fine-tune epochs on top (the write-up's comparison: its "CE baseline" was the warm-up, DAM got
  two more epochs). CE against the warm-up is a row too: how much of a method's gain over the
  warm-up CE gets as well.
- ``architecture`` (the predictor: an architecture or an ensemble), ``disease``, ``method``,
  ``control`` (the arm subtracted: ``ce`` or ``warmup``), ``auc``, ``auc_control``, ``delta`` =
  ``auc`` - ``auc_control``.
- ``delta_low``, ``delta_high``: the delta's 95% interval, from the same method as its p.
- ``p_value`` (two-sided) and ``p_resampling``, how it was obtained: ``none (DeLong)`` for a
  disease (DeLong's paired test and interval), ``patients`` for the mean with one seed (paired
  patient bootstrap), ``seeds+patients`` for the mean with several seeds (training seeds, then
  patients, resampled: :func:`deepauc.evaluation.stats.seed_patient_deltas`).
- ``p_reported``: the p as a table shows it (DeLong's below 0.001 as ``< 0.001``; a bootstrap
  p as its value to the resolution its resamples give, 2/1001 as 0.002:
  :func:`deepauc.evaluation.significance.format_p`).
- ``p_mc_error``: on ``mean`` rows, the bootstrap p's Monte-Carlo standard error
  (sqrt(p (1 - p) / B)): how far another resampling stream would move it.
- ``n_seeds``, ``seed_delta_low``, ``seed_delta_high``, ``seed_p``: on ``mean`` rows with
  several seeds, the seeds alone: the 95% t-interval of the per-seed differences of the mean AUC
  and the one-sample t-test's p (:func:`deepauc.evaluation.significance.seed_t_interval`). With few
  seeds the two-level bootstrap draws few distinct seed sets (10 for three), so both are
  given.
- ``q_value``: Benjamini-Hochberg q of the per-disease p-values; the family is every
  per-disease row of one (``method``, ``comparison``) pair in the file (all predictors and
  diseases together). Empty for ``mean`` rows, which are one test per predictor already.
- ``trained``: whether the compared method's fine-tunes trained (``deepauc.evaluation.caution``):
``yes``,
  ``no``, ``partly`` (some seeds or ensemble members did not), empty when unknown.

``seeds.csv``: the columns of ``summary.csv`` (no caution) for each seed's own predictions, a
``seed`` column, and per-seed paired differences on the same rows: ``auc_minus_ce`` (the row's
AUC minus the same seed's CE AUC of the predictor and disease; empty for CE and the warm-up) and
``auc_minus_warmup`` (minus the same seed's warm-up; empty for the warm-up). On ``mean`` rows
they are the seed's mean AUC minus CE's and the warm-up's. One row per predictor, method, seed
and disease, so each seed's AUCs and deltas are read off the same row.
"""

import numpy as np
import pandas as pd

from deepauc.evaluation.ensemble import average_members
from deepauc.evaluation.scores import compare_metrics, compared_columns, score_predictions
from deepauc.evaluation.significance import benjamini_hochberg
from deepauc.evaluation.stats import MEAN, compare_methods
from deepauc.evaluation.subgroups import study_table
from deepauc.methods import CONTROL, WARMUP

#: ``comparison.csv``'s ``comparison`` values: what each row compares, said so that the two
#: cannot be read one for the other.
VS_CONTROL = "vs CE, equal compute"
VS_WARMUP = "vs warm-up, extra epochs (write-up's comparison)"
COMPARISONS = (VS_CONTROL, VS_WARMUP)

#: summary.csv's ``level`` values: rows scoring images, and rows scoring studies (a study's
#: score made from its views': ``deepauc.evaluation.subgroups.study_table``).
IMAGE_LEVEL, STUDY_LEVEL = "image", "study"
SUMMARY_COLUMNS = [
    "architecture",
    "method",
    "disease",
    "level",
    "auc",
    "auc_low",
    "auc_high",
    "pauc10",
    "pauc10_low",
    "pauc10_high",
    "pauc20",
    "pauc20_low",
    "pauc20_high",
    "sens90",
    "sens90_low",
    "sens90_high",
    "spec90",
    "sens95",
    "sens95_low",
    "sens95_high",
    "spec95",
    "auprc",
    "n_pos",
    "n_neg",
]
#: What ``summarize``'s script adds: ``deepauc.evaluation.caution.trained_marks`` and
#: ``summary_cautions``.
ANNOTATION_COLUMNS = ["trained", "caution"]
COMPARISON_COLUMNS = [
    "comparison",
    "architecture",
    "disease",
    "method",
    "control",
    "auc",
    "auc_control",
    "delta",
    "delta_low",
    "delta_high",
    "p_value",
    "p_resampling",
    "p_reported",
    "p_mc_error",
    "n_seeds",
    "seed_delta_low",
    "seed_delta_high",
    "seed_p",
    "q_value",
    *compared_columns(),
    "trained",
]
#: ``seeds.csv``'s per-seed differences (see the module docstring).
MINUS_CONTROL = f"auc_minus_{CONTROL}"
MINUS_WARMUP = f"auc_minus_{WARMUP}"

#: (predictor, method, disease) -> ``yes`` / ``no`` / ``partly`` / '' (deepauc.evaluation.caution).
TrainedMarks = dict[tuple[str, str, str], str]
#: (predictor, method) -> that predictor's per-seed tables in seed order, on the scale the seed
#: ensemble averages (:func:`per_seed_tables`).
SeedTables = dict[tuple[str, str], list[pd.DataFrame]]


def summarize(
    tables: dict[tuple[str, str], pd.DataFrame],
    n_resamples: int = 1000,
    seed: int = 0,
    val_tables: dict[tuple[str, str], pd.DataFrame] | None = None,
    level: str = IMAGE_LEVEL,
) -> pd.DataFrame:
    """Score each ``(architecture, method)`` prediction table; rows in the order given. The
    operating points take their thresholds from the same key's ``val_tables``."""
    frames, val_tables = [], val_tables or {}
    for (architecture, method), table in tables.items():
        scored = score_predictions(
            table, n_resamples=n_resamples, seed=seed, val=val_tables.get((architecture, method))
        )
        frames.append(scored.assign(architecture=architecture, method=method, level=level))
    return pd.concat(frames, ignore_index=True)[SUMMARY_COLUMNS]


def per_seed_tables(
    tables: dict[tuple[str, str, int], pd.DataFrame], combine: str = "mean"
) -> SeedTables:
    """Each predictor's and method's per-seed tables (keys ``(predictor, method, seed)``), in
    seed order, with the scores on the scale rule ensemble_seeds averages (``combine``: logits
    for ``mean``, each seed's percentile ranks for ``rank``), so that their mean is the final
    table and a resample of seeds can be averaged the same way."""
    grouped: dict[tuple[str, str], dict[int, pd.DataFrame]] = {}
    for (predictor, method, run_seed), table in tables.items():
        grouped.setdefault((predictor, method), {})[int(run_seed)] = average_members(
            [table], combine
        )
    return {key: [by_seed[s] for s in sorted(by_seed)] for key, by_seed in grouped.items()}


def compare_with_control(
    tables: dict[tuple[str, str], pd.DataFrame],
    control: str = CONTROL,
    n_resamples: int = 1000,
    seed: int = 0,
    seed_tables: SeedTables | None = None,
    trained: TrainedMarks | None = None,
    val_tables: dict[tuple[str, str], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Every fine-tune method against ``control`` on the same test images (:data:`VS_CONTROL`),
    for each architecture that has both. The warm-up is the starting point of both, not a
    contender here. Columns: :data:`COMPARISON_COLUMNS` (see the module docstring)."""
    pairs = [
        (architecture, method, control)
        for architecture, method in tables
        if method not in (control, WARMUP) and (architecture, control) in tables
    ]
    return _compare(tables, pairs, VS_CONTROL, n_resamples, seed, seed_tables, trained, val_tables)


def compare_with_warmup(
    tables: dict[tuple[str, str], pd.DataFrame],
    n_resamples: int = 1000,
    seed: int = 0,
    seed_tables: SeedTables | None = None,
    trained: TrainedMarks | None = None,
    val_tables: dict[tuple[str, str], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Every fine-tune method, the control included, against the warm-up it started from
    (:data:`VS_WARMUP`): what its extra epochs bought. Columns: :data:`COMPARISON_COLUMNS`."""
    pairs = [
        (architecture, method, WARMUP)
        for architecture, method in tables
        if method != WARMUP and (architecture, WARMUP) in tables
    ]
    return _compare(tables, pairs, VS_WARMUP, n_resamples, seed, seed_tables, trained, val_tables)


def comparison_table(
    tables: dict[tuple[str, str], pd.DataFrame],
    control: str = CONTROL,
    n_resamples: int = 1000,
    seed: int = 0,
    seed_tables: SeedTables | None = None,
    trained: TrainedMarks | None = None,
    val_tables: dict[tuple[str, str], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """``comparison.csv``: the rows :data:`VS_CONTROL`, then the rows :data:`VS_WARMUP`.

    ``seed_tables`` (several seeds): the mean rows' intervals and p-values resample seeds,
    then patients; without them, patients. ``trained`` fills the ``trained`` column."""
    frames = [
        compare_with_control(tables, control, n_resamples, seed, seed_tables, trained, val_tables),
        compare_with_warmup(tables, n_resamples, seed, seed_tables, trained, val_tables),
    ]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    return pd.concat(frames, ignore_index=True)[COMPARISON_COLUMNS]


def _compare(
    tables, pairs, label, n_resamples, seed, seed_tables, trained, val_tables=None
) -> pd.DataFrame:
    """The rows of one comparison ``label``: each (predictor, method, control) of ``pairs``,
    its q-values within the comparison (the family is one method and comparison), and the
    low-FPR metrics' paired deltas (``deepauc.evaluation.scores.compare_metrics``)."""
    frames, marks, val_tables = [], trained or {}, val_tables or {}
    for architecture, method, control in pairs:
        arms = [(architecture, method), (architecture, control)]
        per_seed = [seed_tables.get(arm) if seed_tables else None for arm in arms]
        compared = compare_methods(
            tables[arms[0]],
            tables[arms[1]],
            n_resamples=n_resamples,
            seed=seed,
            seeds_a=per_seed[0],
            seeds_b=per_seed[1],
        )
        compared = compared.rename(columns={"auc_a": "auc", "auc_b": "auc_control"})
        others = compare_metrics(
            tables[arms[0]],
            tables[arms[1]],
            val_tables.get(arms[0]),
            val_tables.get(arms[1]),
            n_resamples,
            seed,
        )
        compared = compared.merge(others, on="disease", how="left", validate="one_to_one")
        compared["trained"] = [marks.get((architecture, method, d), "") for d in compared.disease]
        frames.append(
            compared.assign(
                comparison=label, architecture=architecture, method=method, control=control
            )
        )
    if not frames:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    frame = pd.concat(frames, ignore_index=True)
    frame["q_value"] = q_values(frame)
    return frame[COMPARISON_COLUMNS]


def q_values(comparison: pd.DataFrame) -> pd.Series:
    """Benjamini-Hochberg q of each per-disease row, within its (method, comparison) family
    (every predictor and disease of the family together); NaN for ``mean`` rows."""
    q = pd.Series(float("nan"), index=comparison.index)
    per_disease = comparison[comparison["disease"] != MEAN]
    for _, family in per_disease.groupby(["method", "comparison"], sort=False):
        q[family.index] = benjamini_hochberg(family["p_value"].to_numpy())
    return q


def summarize_by_seed(
    tables: dict[tuple[str, str, int], pd.DataFrame],
    n_resamples: int = 1000,
    seed: int = 0,
    val_tables: dict[tuple[str, str, int], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """``summarize`` of each ``(architecture, method, seed)`` table alone (its operating points
    from the same key's val table), plus a seed column."""
    val_tables = val_tables or {}
    frames = [
        summarize(
            {key[:2]: table},
            n_resamples,
            seed,
            {key[:2]: val_tables[key]} if key in val_tables else None,
        ).assign(seed=key[2])
        for key, table in tables.items()
    ]
    return pd.concat(frames, ignore_index=True)


def seed_deltas(by_seed: pd.DataFrame) -> pd.DataFrame:
    """``by_seed`` (:func:`summarize_by_seed`) with :data:`MINUS_CONTROL` and
    :data:`MINUS_WARMUP`: each row's AUC minus the same seed's CE and warm-up AUC of its
    predictor and disease (empty for the arm itself and, vs CE, for the warm-up)."""
    keys = ["architecture", "seed", "disease"]
    out = by_seed.copy()
    for column, baseline, skip in (
        (MINUS_CONTROL, CONTROL, {CONTROL, WARMUP}),
        (MINUS_WARMUP, WARMUP, {WARMUP}),
    ):
        reference = by_seed.loc[by_seed["method"] == baseline, [*keys, "auc"]]
        matched = by_seed[keys].merge(reference, on=keys, how="left", validate="many_to_one")
        delta = by_seed["auc"].to_numpy() - matched["auc"].to_numpy()
        delta[by_seed["method"].isin(skip).to_numpy()] = np.nan
        out[column] = delta
    return out


def seeds_table(
    tables: dict[tuple[str, str, int], pd.DataFrame],
    n_resamples: int = 1000,
    seed: int = 0,
    val_tables: dict[tuple[str, str, int], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """``seeds.csv``: every seed's own summary and its paired differences (module docstring)."""
    return seed_deltas(summarize_by_seed(tables, n_resamples, seed, val_tables))


def image_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The image-level rows of a summary (all rows of one written before study rows existed)."""
    if "level" not in summary:
        return summary
    return summary[summary["level"] == IMAGE_LEVEL]


def study_rows(
    summary: pd.DataFrame,
    tables: dict[tuple[str, str], pd.DataFrame],
    val_tables: dict[tuple[str, str], pd.DataFrame],
    splits: dict[str, pd.DataFrame],
    how: str = "max",
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The summary's rows of the same predictors scored per study (``how`` of its views'
    scores; thresholds from val studies), their annotation columns copied from the image rows
    of the same predictor, method and disease (what a model's training was does not change
    with how it is scored)."""
    studies = summarize(
        {key: study_table(table, splits["test"], how) for key, table in tables.items()},
        n_resamples,
        seed,
        {key: study_table(table, splits["val"], how) for key, table in val_tables.items()},
        level=STUDY_LEVEL,
    )
    keys = ["architecture", "method", "disease"]
    annotations = [c for c in ANNOTATION_COLUMNS if c in summary]
    if annotations:
        studies = studies.merge(
            image_rows(summary)[keys + annotations], on=keys, how="left", validate="one_to_one"
        )
    return studies


def read_tables(keys, paths) -> dict[tuple, pd.DataFrame]:
    """The prediction tables at ``paths``, each under its key (a rule's params list them in
    the same order as its inputs)."""
    return {tuple(key): pd.read_csv(path) for key, path in zip(keys, paths, strict=True)}
