"""Statistics for the test split: ROC-AUC with patient-bootstrap intervals, AUPRC, DeLong's
paired test, paired bootstraps of a mean AUC difference (over patients, or over training seeds
and patients), Benjamini-Hochberg q-values and how a p-value is written.

Every function takes plain arrays or a long prediction table (one row per image and disease:
``image, patient, disease, y_true, score``) and is independent of how the scores were made.
"""

import functools
from dataclasses import dataclass
from functools import partial
from math import erf, sqrt

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from deepauc.evaluation.partial_auc import drawn_paucs
from deepauc.evaluation.significance import format_p, monte_carlo_error, seed_t_interval

MEAN = "mean"

#: How the p-value (and the delta's 95% interval) of a comparison row was obtained: DeLong's
#: variance (per disease), a paired bootstrap of test patients, or one of training seeds and
#: then test patients (several seeds: the training noise is in the interval too).
DELONG, PATIENTS, SEEDS_AND_PATIENTS = "none (DeLong)", "patients", "seeds+patients"
#: z of a two-sided 95% normal interval.
Z_95 = 1.959963984540054


def auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic with midranks for ties (equal to scikit-learn's
    ``roc_auc_score``); NaN when only one class is present."""
    y_true = np.asarray(y_true, dtype=bool)
    n_pos = int(y_true.sum())
    n_neg = y_true.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def masked_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """``auc`` over the rows whose target is not NaN (ignored labels)."""
    known = ~np.isnan(targets)
    return auc(targets[known], scores[known])


def aucs_by_column(targets: np.ndarray, scores: np.ndarray) -> list[float]:
    """``masked_auc`` of each column of two (n, k) arrays."""
    return [masked_auc(targets[:, j], scores[:, j]) for j in range(targets.shape[1])]


def _placements(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """DeLong's structural components in Sun & Xu's (2014) midrank form: per positive, the share
    of negatives it outscores (V10); per negative, the share of positives outscoring it (V01)."""
    y_true = np.asarray(y_true, dtype=bool)
    pos, neg = scores[y_true], scores[~y_true]
    m, n = pos.size, neg.size
    all_ranks = rankdata(np.concatenate([pos, neg]))
    v10 = (all_ranks[:m] - rankdata(pos)) / n
    v01 = 1.0 - (all_ranks[m:] - rankdata(neg)) / m
    return v10, v01, float(v10.mean())


def delong_variance(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """AUC and its DeLong variance (DeLong, DeLong & Clarke-Pearson 1988)."""
    v10, v01, area = _placements(y_true, np.asarray(scores, dtype=float))
    return area, float(np.var(v10, ddof=1) / v10.size + np.var(v01, ddof=1) / v01.size)


@dataclass(frozen=True)
class PairedTest:
    auc_a: float
    auc_b: float
    z: float
    p_value: float
    se: float = 0.0  # DeLong's standard error of auc_a - auc_b

    def interval(self) -> tuple[float, float]:
        """DeLong's 95% interval of auc_a - auc_b (the one that excludes 0 when p < 0.05)."""
        delta = self.auc_a - self.auc_b
        return delta - Z_95 * self.se, delta + Z_95 * self.se


def delong_test(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> PairedTest:
    """DeLong's test that two scores of the same cases have equal AUC (two-sided)."""
    y_true = np.asarray(y_true, dtype=bool)
    v10_a, v01_a, auc_a = _placements(y_true, np.asarray(scores_a, dtype=float))
    v10_b, v01_b, auc_b = _placements(y_true, np.asarray(scores_b, dtype=float))
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    cov = s10 / v10_a.size + s01 / v01_a.size
    variance = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    if variance <= 0:  # identical rankings: no evidence of a difference
        return PairedTest(auc_a, auc_b, 0.0, 1.0)
    z = (auc_a - auc_b) / sqrt(variance)
    p_value = 2 * (1 - 0.5 * (1 + erf(abs(z) / sqrt(2))))
    return PairedTest(auc_a, auc_b, float(z), float(p_value), sqrt(variance))


def patient_bootstrap(patients: np.ndarray, n_resamples: int, seed: int) -> list[np.ndarray]:
    """Row indices of ``n_resamples`` resamples that draw patients (not images) with replacement,
    so that correlated images of one patient move together. The same patients, count and seed
    give the same resamples, so they are drawn once (every predictor of a run, and every
    subgroup of it, is scored on the same test patients); callers only read them."""
    return _patient_bootstrap(tuple(pd.Series(patients).astype(str)), n_resamples, seed)


@functools.lru_cache(maxsize=64)
def _patient_bootstrap(patients: tuple, n_resamples: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    codes, unique = pd.factorize(pd.Series(patients))
    rows_of = [np.flatnonzero(codes == k) for k in range(len(unique))]
    resamples = []
    for _ in range(n_resamples):
        drawn = rng.integers(0, len(unique), size=len(unique))
        resamples.append(np.concatenate([rows_of[k] for k in drawn]))
    return resamples


def wide_tables(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Per image: y_true and score as (image x disease) frames, NaN where a label is ignored."""
    diseases = list(dict.fromkeys(table["disease"]))
    y = table.pivot(index="image", columns="disease", values="y_true")[diseases]
    s = table.pivot(index="image", columns="disease", values="score")[diseases]
    return y, s, diseases


def compare_methods(
    table_a: pd.DataFrame,
    table_b: pd.DataFrame,
    n_resamples: int = 1000,
    seed: int = 0,
    seeds_a: list[pd.DataFrame] | None = None,
    seeds_b: list[pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """A (e.g. DAM) against B (e.g. CE) on the same test images, per disease and for the mean.

    Per disease: DeLong's paired test and DeLong's 95% interval of the difference. For the mean
    AUC, which DeLong does not cover: a paired bootstrap of the difference (two-sided p from
    :func:`bootstrap_p_value`, percentile interval). Given ``seeds_a`` and ``seeds_b``, each
    arm's per-seed tables (more than one, the same seeds in the same order, on the scale the
    seed ensemble averages: ``table_a`` and ``table_b`` must be their means), the bootstrap
    resamples training seeds and then patients (:func:`seed_patient_deltas`), so the mean's
    interval and p carry training noise; otherwise it resamples patients.

    Columns: disease, auc_a, auc_b, delta (a - b), delta_low, delta_high (its 95% interval),
    p_value, p_resampling (:data:`DELONG`, :data:`PATIENTS` or :data:`SEEDS_AND_PATIENTS`),
    p_reported (:func:`deepauc.evaluation.significance.format_p`); on the mean row also
    p_mc_error (``significance.monte_carlo_error``) and, from the seeds alone, n_seeds,
    seed_delta_low, seed_delta_high and seed_p (``significance.seed_t_interval``; NaN with one
    seed).
    """
    y_a, s_a, diseases = wide_tables(table_a)
    y_b, s_b, _ = wide_tables(table_b)
    if not y_a.index.equals(y_b.index) or not np.array_equal(
        y_a.to_numpy(), y_b.to_numpy(), equal_nan=True
    ):
        raise ValueError("the two prediction tables do not hold the same images and labels")
    s_b = s_b[diseases]
    rows = []
    for j, disease in enumerate(diseases):
        known = ~np.isnan(y_a.iloc[:, j].to_numpy())
        test = delong_test(
            y_a.iloc[:, j].to_numpy()[known],
            s_a.iloc[:, j].to_numpy()[known],
            s_b.iloc[:, j].to_numpy()[known],
        )
        low, high = test.interval()
        rows.append(
            {
                "disease": disease,
                "auc_a": test.auc_a,
                "auc_b": test.auc_b,
                "delta": test.auc_a - test.auc_b,
                "delta_low": low,
                "delta_high": high,
                "p_value": test.p_value,
                "p_resampling": DELONG,
                "p_reported": format_p(test.p_value),
            }
        )
    frame = pd.DataFrame(rows)
    patients = table_a.drop_duplicates("image").set_index("image").loc[y_a.index, "patient"]
    y = y_a.to_numpy()
    if seeds_a is not None and seeds_b is not None and len(seeds_a) > 1:
        if len(seeds_a) != len(seeds_b):
            raise ValueError("the two arms have per-seed tables of different seeds")
        per_seed_a = np.stack([_aligned_scores(t, y_a, diseases) for t in seeds_a])
        per_seed_b = np.stack([_aligned_scores(t, y_a, diseases) for t in seeds_b])
        _check_seed_mean(per_seed_a, s_a.to_numpy())
        _check_seed_mean(per_seed_b, s_b.to_numpy())
        deltas = seed_patient_deltas(
            y, per_seed_a, per_seed_b, patients.to_numpy(), n_resamples, seed
        )
        resampling = SEEDS_AND_PATIENTS
        per_seed = seed_level_deltas(y, per_seed_a, per_seed_b)
    else:
        resamples = patient_bootstrap(patients.to_numpy(), n_resamples, seed)
        boot_a = np.nanmean(bootstrap_aucs(y, s_a.to_numpy(), resamples), axis=1)
        boot_b = np.nanmean(bootstrap_aucs(y, s_b.to_numpy(), resamples), axis=1)
        deltas = boot_a - boot_b
        resampling = PATIENTS
        per_seed = np.array([np.nan])
    low, high = percentile_interval(deltas)
    p_value = bootstrap_p_value(deltas)
    finite = int(np.isfinite(deltas).sum())
    mean_row = {
        "disease": MEAN,
        "auc_a": frame["auc_a"].mean(),
        "auc_b": frame["auc_b"].mean(),
        "delta": frame["auc_a"].mean() - frame["auc_b"].mean(),
        "delta_low": low,
        "delta_high": high,
        "p_value": p_value,
        "p_resampling": resampling,
        "p_reported": format_p(p_value, resamples=finite),
        "p_mc_error": monte_carlo_error(p_value, finite),
        **seed_t_interval(per_seed),
    }
    return pd.concat([frame, pd.DataFrame([mean_row])], ignore_index=True)


def seed_level_deltas(y: np.ndarray, seeds_a: np.ndarray, seeds_b: np.ndarray) -> np.ndarray:
    """Per training seed, that seed's mean AUC over diseases of A minus B's, on the whole test
    split: the seed-level differences a t-interval is computed from."""
    return np.array(
        [
            mean_over_diseases(bootstrap_aucs(y, a, [np.arange(len(y))]))[0]
            - mean_over_diseases(bootstrap_aucs(y, b, [np.arange(len(y))]))[0]
            for a, b in zip(seeds_a, seeds_b, strict=True)
        ]
    )


def seed_patient_deltas(
    y: np.ndarray,
    seeds_a: np.ndarray,
    seeds_b: np.ndarray,
    patients: np.ndarray,
    n_resamples: int,
    seed: int,
) -> np.ndarray:
    """Mean-AUC differences (A - B) of ``n_resamples`` two-level paired resamples.

    Each resample draws the training seeds with replacement, averages each arm's scores over
    the drawn seeds (a seed drawn twice counts twice, as if the seed ensemble had been trained
    with it twice), then scores both arms on one patient resample. Both levels are paired: the
    same seeds and patients for A and B, because a seed's fine-tunes share its warm-up and the
    arms share the test images. ``seeds_a``, ``seeds_b``: (seeds, images, diseases) scores;
    ``y``: (images, diseases) labels, NaN where ignored.
    """
    n_seeds = seeds_a.shape[0]
    resamples = patient_bootstrap(patients, n_resamples, seed)
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the patient draws stay fixed
    counts = np.stack(
        [np.bincount(rng.integers(0, n_seeds, n_seeds), minlength=n_seeds) for _ in resamples]
    )
    deltas = np.full(n_resamples, np.nan)
    # Resamples that drew the same seeds share one averaged table, and there are few distinct
    # draws (10 for three seeds): each is averaged once and scored over all its patient draws.
    draws, which = np.unique(counts, axis=0, return_inverse=True)
    which = which.ravel()
    for k, weights in enumerate(draws):
        members = np.flatnonzero(which == k)
        block = [resamples[b] for b in members]
        mean_a = np.tensordot(weights / n_seeds, seeds_a, axes=1)
        mean_b = np.tensordot(weights / n_seeds, seeds_b, axes=1)
        deltas[members] = mean_over_diseases(bootstrap_aucs(y, mean_a, block)) - (
            mean_over_diseases(bootstrap_aucs(y, mean_b, block))
        )
    return deltas


def mean_over_diseases(aucs: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN (a resample without a class for a disease); NaN for none."""
    finite = np.isfinite(aucs)
    counts = finite.sum(axis=1)
    sums = np.where(finite, aucs, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _aligned_scores(table: pd.DataFrame, y_ref: pd.DataFrame, diseases: list[str]) -> np.ndarray:
    """A per-seed table's scores as an (image x disease) array in ``y_ref``'s order, checked to
    hold the images and labels of the final table it belongs to."""
    y, s, _ = wide_tables(table)
    if not y.index.sort_values().equals(y_ref.index.sort_values()) or set(y.columns) != set(
        diseases
    ):
        raise ValueError("a per-seed table does not hold the images and diseases of the final one")
    y, s = y.loc[y_ref.index, diseases], s.loc[y_ref.index, diseases]
    if not np.array_equal(y.to_numpy(), y_ref.to_numpy(), equal_nan=True):
        raise ValueError("a per-seed table disagrees with the final table on the test labels")
    return s.to_numpy(dtype=float)


def _check_seed_mean(per_seed: np.ndarray, final: np.ndarray) -> None:
    """The seed-averaged scores the bootstrap recomputes must be the final table's: otherwise
    the interval would describe another predictor than the point estimate."""
    if not np.allclose(per_seed.mean(axis=0), final, rtol=1e-6, atol=1e-9, equal_nan=True):
        raise ValueError(
            "the per-seed tables do not average to the final prediction table "
            "(another ensemble combine, or tables of another run?)"
        )


def bootstrap_p_value(deltas: np.ndarray) -> float:
    """Two-sided p-value that the bootstrapped differences are centred on zero."""
    deltas = deltas[np.isfinite(deltas)]
    if deltas.size == 0:
        return float("nan")
    below = (np.sum(deltas <= 0) + 1) / (deltas.size + 1)
    above = (np.sum(deltas >= 0) + 1) / (deltas.size + 1)
    return float(min(1.0, 2 * min(below, above)))


def bootstrap_aucs(
    y: np.ndarray, s: np.ndarray, resamples: list[np.ndarray], max_fpr: float | None = None
) -> np.ndarray:
    """AUC (or, given ``max_fpr``, McClish's standardized partial AUC:
    ``deepauc.evaluation.partial_auc``) of each resample (rows) and disease (columns); NaN
    where a resample lacks a class.

    Each resample is read as how often it draws each image, and all resamples of a block are
    scored at once (:func:`_drawn_aucs`): the same numbers as ranking every resample, at a
    fraction of the time (a thousand resamples x five diseases x a dozen tables made
    ``summarize`` the quick start's slowest step).
    """
    out = np.full((len(resamples), y.shape[1]), np.nan)
    score = _drawn_aucs if max_fpr is None else partial(drawn_paucs, max_fpr=max_fpr)
    for first in range(0, len(resamples), _RESAMPLES_PER_BLOCK):
        block = resamples[first : first + _RESAMPLES_PER_BLOCK]
        draws = np.stack([np.bincount(rows, minlength=len(y)) for rows in block]).astype(float)
        for j in range(y.shape[1]):
            known = ~np.isnan(y[:, j])
            out[first : first + len(block), j] = score(
                y[known, j].astype(bool), s[known, j], draws[:, known]
            )
    return out


#: Resamples scored together: bounds the (resamples x images) arrays on a large test split.
_RESAMPLES_PER_BLOCK = 200


def _drawn_aucs(positive: np.ndarray, scores: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The AUC of each resample that draws sample i ``draws[b, i]`` times: the Mann-Whitney
    statistic over its (positive, negative) pairs, a tie counted half, as :func:`auc` ranks it."""
    if scores.size == 0:
        return np.full(len(draws), np.nan)
    order = np.argsort(scores, kind="stable")
    ordered, positive, draws = scores[order], positive[order], draws[:, order]
    groups = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # runs of tied scores
    pos = np.add.reduceat(draws * positive, groups, axis=1)
    neg = np.add.reduceat(draws * ~positive, groups, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
