"""Statistics: AUC, DeLong (against a published example and a paired bootstrap), bootstrap CIs."""

from math import erf, sqrt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from deepauc.stats import (
    _bootstrap_aucs,
    auc,
    bootstrap_p_value,
    compare_methods,
    delong_test,
    delong_variance,
    patient_bootstrap,
    score_predictions,
)


def _normal_cdf(x):
    return 0.5 * (1 + erf(x / sqrt(2)))


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(200) < 0.3
    scores = np.round(rng.random(200) + 0.5 * y, 1)  # rounding makes many ties
    assert auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert np.isnan(auc(np.ones(5), np.arange(5)))


def test_hanley_mcneil_worked_example():
    """Hanley & McNeil (1982), Radiology 143:29-36, table 1: 109 CT images rated on 5 levels.
    Published: AUC 0.893 with standard error 0.032 (their exponential approximation; DeLong's
    nonparametric estimate of the same quantity is close to it)."""
    normal, abnormal = [33, 6, 6, 11, 2], [3, 2, 2, 11, 33]
    y = np.r_[np.zeros(58), np.ones(51)]
    ratings = np.r_[np.repeat(np.arange(1, 6), normal), np.repeat(np.arange(1, 6), abnormal)]
    area, variance = delong_variance(y, ratings)
    assert round(area, 3) == 0.893
    assert sqrt(variance) == pytest.approx(0.032, abs=0.002)


def _delong_by_definition(y, a, b):
    """DeLong, DeLong & Clarke-Pearson (1988), eqs. for V10, V01 and S, written out in O(mn)."""
    pos, neg = y == 1, y == 0

    def psi(x, z):
        return (x > z) + 0.5 * (x == z)

    components = []
    for s in (a, b):
        kernel = psi(s[pos][:, None], s[neg][None, :])
        components.append((kernel.mean(axis=1), kernel.mean(axis=0), kernel.mean()))
    s10 = np.cov([components[0][0], components[1][0]])
    s01 = np.cov([components[0][1], components[1][1]])
    s = s10 / pos.sum() + s01 / neg.sum()
    z = (components[0][2] - components[1][2]) / sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    return z, 2 * (1 - _normal_cdf(abs(z)))


@pytest.mark.parametrize("seed", range(3))
def test_delong_matches_its_definition(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(150) < 0.3).astype(int)
    a = np.round(rng.normal(size=150) + y, 1)
    b = np.round(a + rng.normal(scale=1.0, size=150), 1)
    test = delong_test(y, a, b)
    z, p = _delong_by_definition(y, a, b)
    assert test.z == pytest.approx(z, rel=1e-9)
    assert test.p_value == pytest.approx(p, rel=1e-9)


def test_delong_variance_agrees_with_a_paired_bootstrap():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(int)
    a = rng.normal(size=400) + 1.2 * y
    b = 0.7 * a + rng.normal(size=400) * 0.8 + 0.2 * y
    test = delong_test(y, a, b)
    deltas = []
    for _ in range(2000):
        rows = rng.integers(0, 400, size=400)
        deltas.append(auc(y[rows], a[rows]) - auc(y[rows], b[rows]))
    bootstrap_sd = np.std(deltas)
    delong_sd = abs(test.auc_a - test.auc_b) / abs(test.z)
    assert delong_sd == pytest.approx(bootstrap_sd, rel=0.1)


def test_identical_scores_give_no_difference():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.7])
    test = delong_test(y, s, s)
    assert (test.z, test.p_value) == (0.0, 1.0)


def _table(y, scores, patients=None, disease="Edema"):
    n = len(y)
    return pd.DataFrame(
        {
            "image": [f"img{i}" for i in range(n)],
            "patient": patients if patients is not None else [f"p{i}" for i in range(n)],
            "disease": disease,
            "y_true": y.astype(float),
            "score": scores,
        }
    )


def test_bootstrap_interval_covers_the_true_auc_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    shift = 1.0
    true_auc = _normal_cdf(shift / sqrt(2))  # binormal with unit variances
    covered, trials = 0, 120
    for trial in range(trials):
        y = rng.random(150) < 0.3
        scores = rng.normal(size=150) + shift * y
        row = score_predictions(_table(y, scores), n_resamples=300, seed=trial).iloc[0]
        covered += row["auc_low"] <= true_auc <= row["auc_high"]
    assert 0.88 <= covered / trials <= 0.99


@pytest.mark.parametrize("seed", range(3))
def test_bootstrap_aucs_score_every_resample_as_auc_ranks_it(seed):
    # The resamples are scored all at once from how often they draw each image; every number
    # must be the one ranking that resample gives: ties, ignored labels, blocks of resamples
    # and a resample without positives included.
    rng = np.random.default_rng(seed)
    y = (rng.random((300, 3)) < 0.3).astype(float)
    y[rng.random((300, 3)) < 0.1] = np.nan  # ignored labels
    y[:, 2] = 0.0
    y[:3, 2] = 1.0  # rare: some resamples draw no positive
    scores = np.round(rng.normal(size=(300, 3)) + y, 1)  # rounding makes ties
    resamples = patient_bootstrap(rng.integers(0, 120, 300), 450, seed)
    expected = np.full((450, 3), np.nan)
    for j in range(3):
        known = ~np.isnan(y[:, j])
        for b, rows in enumerate(resamples):
            rows = rows[known[rows]]
            expected[b, j] = auc(y[rows, j], scores[rows, j])
    got = _bootstrap_aucs(y, scores, resamples)
    assert np.isnan(expected[:, 2]).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, equal_nan=True)


def test_patient_bootstrap_moves_a_patients_images_together():
    patients = np.array(["a", "a", "a", "b", "c", "c"])
    for rows in patient_bootstrap(patients, 50, seed=0):
        drawn = patients[rows]
        for patient, size in (("a", 3), ("c", 2)):
            assert (drawn == patient).sum() % size == 0


def test_score_predictions_rows_and_mean():
    rng = np.random.default_rng(2)
    y1, y2 = rng.random(80) < 0.4, rng.random(80) < 0.3
    s1, s2 = rng.random(80) + y1, rng.random(80) + 0.2 * y2
    table = pd.concat([_table(y1, s1, disease="Edema"), _table(y2, s2, disease="Atelectasis")])
    scored = score_predictions(table, n_resamples=200).set_index("disease")
    assert list(scored.index) == ["Edema", "Atelectasis", "mean"]
    assert scored.at["Edema", "auc"] == pytest.approx(roc_auc_score(y1, s1))
    assert scored.at["mean", "auc"] == pytest.approx(
        (roc_auc_score(y1, s1) + roc_auc_score(y2, s2)) / 2
    )
    assert scored.at["Edema", "n_pos"] == y1.sum() and scored.at["Edema", "n_neg"] == (~y1).sum()
    assert (scored["auc_low"] <= scored["auc"]).all() and (
        scored["auc"] <= scored["auc_high"]
    ).all()


def test_compare_methods_uses_delong_per_disease_and_bootstrap_for_the_mean():
    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.3
    strong, weak = rng.normal(size=300) + 1.5 * y, rng.normal(size=300) + 0.3 * y
    compared = compare_methods(_table(y, strong), _table(y, weak), n_resamples=300)
    edema, mean = compared.iloc[0], compared.iloc[1]
    assert edema["p_value"] == pytest.approx(delong_test(y, strong, weak).p_value)
    assert edema["delta"] > 0.2 and edema["p_value"] < 1e-4
    assert mean["disease"] == "mean" and mean["p_value"] < 0.01
    with pytest.raises(ValueError, match="same images"):
        compare_methods(_table(y, strong), _table(y[:-1], weak[:-1]))


def test_bootstrap_p_value_is_two_sided_and_bounded():
    assert bootstrap_p_value(np.full(999, 0.1)) == pytest.approx(2 / 1000)
    assert bootstrap_p_value(np.r_[np.full(500, -0.1), np.full(500, 0.1)]) == 1.0
