"""Statistics: AUC, DeLong (against a published example and a paired bootstrap), bootstrap CIs,
the two-level (seeds, then patients) bootstrap, Benjamini-Hochberg q-values, p as reported."""

from math import erf, sqrt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score

from deepauc.config.layers import load_config
from deepauc.evaluation.partial_auc import partial_auc
from deepauc.evaluation.scores import score_predictions
from deepauc.evaluation.significance import (
    benjamini_hochberg,
    format_p,
    monte_carlo_error,
    seed_t_interval,
)
from deepauc.evaluation.stats import (
    DELONG,
    MEAN,
    PATIENTS,
    SEEDS_AND_PATIENTS,
    auc,
    bootstrap_aucs,
    bootstrap_p_value,
    compare_methods,
    delong_test,
    delong_variance,
    patient_bootstrap,
)

REPO = Path(__file__).resolve().parents[1]


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
    got = bootstrap_aucs(y, scores, resamples)
    assert np.isnan(expected[:, 2]).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("max_fpr", [0.05, 0.1, 0.2, 0.5])
def test_partial_auc_is_scikit_learns_standardized_partial_auc(max_fpr):
    rng = np.random.default_rng(int(max_fpr * 100))
    for _ in range(60):
        n = int(rng.integers(6, 90))
        y = rng.random(n) < rng.uniform(0.1, 0.6)
        y[:2] = [True, False]
        scores = np.round(rng.normal(size=n) + rng.uniform(0, 2) * y, int(rng.integers(0, 3)))
        expected = roc_auc_score(y, scores, max_fpr=max_fpr)
        assert partial_auc(y, scores, max_fpr) == pytest.approx(expected, abs=1e-12)
    # chance is 0.5 and a perfect ranking 1; one class gives no area
    assert partial_auc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], max_fpr) == pytest.approx(1.0)
    assert partial_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], max_fpr) == pytest.approx(0.5)
    assert np.isnan(partial_auc([1, 1], [0.2, 0.3], max_fpr))


def test_bootstrap_partial_aucs_score_every_resample_as_scikit_learn_does():
    rng = np.random.default_rng(5)
    y = (rng.random((200, 2)) < 0.3).astype(float)
    y[rng.random((200, 2)) < 0.1] = np.nan
    scores = np.round(rng.normal(size=(200, 2)) + y, 1)
    resamples = patient_bootstrap(rng.integers(0, 80, 200), 120, 0)
    got = bootstrap_aucs(y, scores, resamples, max_fpr=0.2)
    for j in range(2):
        known = ~np.isnan(y[:, j])
        for b, rows in enumerate(resamples):
            rows = rows[known[rows]]
            expected = roc_auc_score(y[rows, j], scores[rows, j], max_fpr=0.2)
            assert got[b, j] == pytest.approx(expected, abs=1e-12)


def test_the_summary_scores_carry_partial_aucs_with_their_intervals():
    rng = np.random.default_rng(2)
    rows = []
    for i in range(120):
        for disease in ("Edema", "Atelectasis"):
            label = float(rng.random() < 0.3)
            rows.append((f"img{i}", f"p{i // 2}", disease, label, label + rng.normal()))
    table = pd.DataFrame(rows, columns=["image", "patient", "disease", "y_true", "score"])
    scored = score_predictions(table, n_resamples=200, seed=0).set_index("disease")
    for name, max_fpr in (("pauc10", 0.1), ("pauc20", 0.2)):
        for disease in ("Edema", "Atelectasis"):
            part = table[table["disease"] == disease]
            expected = roc_auc_score(part["y_true"], part["score"], max_fpr=max_fpr)
            assert scored.loc[disease, name] == pytest.approx(expected)
        assert scored.loc[MEAN, name] == pytest.approx(
            scored.loc[["Edema", "Atelectasis"], name].mean()
        )
        assert (scored[f"{name}_low"] <= scored[name]).all()
        assert (scored[name] <= scored[f"{name}_high"]).all()


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


def test_delong_interval_excludes_zero_exactly_when_p_is_below_005():
    rng = np.random.default_rng(4)
    agree = []
    for _ in range(40):
        y = (rng.random(120) < 0.3).astype(int)
        a = rng.normal(size=120) + y * rng.uniform(0.5, 1.5)
        b = 0.6 * a + rng.normal(size=120) * 0.8 + y * rng.uniform(0.0, 1.0)
        test = delong_test(y, a, b)
        low, high = test.interval()
        assert low < test.auc_a - test.auc_b < high
        agree.append((low > 0 or high < 0) == (test.p_value < 0.05))
    assert all(agree)


def test_compare_methods_says_how_each_p_was_obtained():
    rng = np.random.default_rng(5)
    y = rng.random(200) < 0.3
    a, b = rng.normal(size=200) + y, rng.normal(size=200) + 0.5 * y
    compared = compare_methods(_table(y, a), _table(y, b), n_resamples=200).set_index("disease")
    assert compared.at["Edema", "p_resampling"] == DELONG
    assert compared.at[MEAN, "p_resampling"] == PATIENTS
    assert compared.at[MEAN, "delta_low"] < compared.at[MEAN, "delta"]
    assert compared.at[MEAN, "delta"] < compared.at[MEAN, "delta_high"]


def test_benjamini_hochberg_against_a_hand_computed_example():
    # sorted p 0.001, 0.02, 0.03, 0.04, 0.9 (m = 5) times m / rank: 0.005, 0.05, 0.05, 0.05, 0.9
    q = benjamini_hochberg([0.04, 0.001, 0.03, 0.02, 0.9])
    np.testing.assert_allclose(q, [0.05, 0.005, 0.05, 0.05, 0.9])
    # The step-up: 0.01 * 3 / 1 = 0.03 is lowered to the next one's 0.011 * 3 / 2 = 0.0165.
    np.testing.assert_allclose(benjamini_hochberg([0.011, 0.03, 0.01]), [0.0165, 0.03, 0.0165])
    # NaN (a mean row, an AUC without both classes) stays NaN and does not count in m.
    q = benjamini_hochberg([0.01, np.nan, 0.04])
    assert np.isnan(q[1]) and q[[0, 2]] == pytest.approx([0.02, 0.04])
    assert benjamini_hochberg([0.5, 0.9]).max() == 0.9 and benjamini_hochberg([0.8, 0.9]).max() <= 1


def test_benjamini_hochberg_is_monotone_and_never_below_p():
    rng = np.random.default_rng(6)
    p = rng.random(60) ** 3
    q = benjamini_hochberg(p)
    order = np.argsort(p)
    assert (np.diff(q[order]) >= 0).all()  # a smaller p never gets a larger q
    assert (q >= p).all() and (q <= 1).all()


def test_a_bootstrap_p_is_written_as_its_value_at_the_resolution_of_its_resamples():
    floor = bootstrap_p_value(np.full(1000, 0.1))  # no resample on the other side of 0
    assert floor == pytest.approx(2 / 1001)
    assert format_p(floor, resamples=1000) == "0.002"  # what was measured, not "< 0.001"
    assert format_p(bootstrap_p_value(np.full(200, -0.1)), resamples=200) == "0.010"
    assert format_p(bootstrap_p_value(np.full(10_000, 0.1)), resamples=10_000) == "0.0002"
    one_across = bootstrap_p_value(np.r_[-0.1, np.full(999, 0.1)])
    assert format_p(one_across, resamples=1000) == "0.004"  # above the limit: its value
    assert format_p(0.0394, resamples=1000) == "0.039" and format_p(0.54, resamples=1000) == "0.54"
    assert format_p(0.0004) == "< 0.001"  # DeLong
    assert [format_p(p) for p in (0.49, 0.035, 0.0081, 1.0)] == ["0.49", "0.035", "0.0081", "1.00"]
    assert format_p(float("nan")) == ""


def test_the_monte_carlo_error_says_how_far_another_stream_moves_a_bootstrap_p():
    assert monte_carlo_error(0.05, 1000) == pytest.approx(0.00987, abs=1e-5)
    protocol = load_config(REPO / "config" / "protocol.yaml")["evaluation"]["bootstrap_resamples"]
    assert monte_carlo_error(0.05, protocol) <= 0.005  # the protocol's p: stable to 0.005
    # measured: p near 0.05 from independent streams of B resamples spreads about that much
    rng = np.random.default_rng(0)
    for resamples in (1000, 4000):
        ps = [bootstrap_p_value(rng.normal(0.02, 0.0102, resamples)) for _ in range(300)]
        assert np.std(ps) == pytest.approx(monte_carlo_error(np.mean(ps), resamples), rel=0.15)


def test_the_seed_level_t_interval_is_the_textbook_one():
    per_seed = np.array([-0.012, -0.008, -0.015, -0.004, -0.011])
    got = seed_t_interval(per_seed)
    mean, error = per_seed.mean(), per_seed.std(ddof=1) / np.sqrt(5)
    assert got["n_seeds"] == 5
    assert got["seed_delta_low"] == pytest.approx(mean - 2.776445 * error, rel=1e-5)
    assert got["seed_delta_high"] == pytest.approx(mean + 2.776445 * error, rel=1e-5)
    t_stat = mean / error
    assert got["seed_p"] == pytest.approx(2 * scipy_stats.t.sf(abs(t_stat), 4))
    assert np.isnan(seed_t_interval(np.array([0.01]))["seed_p"])  # one seed: no interval
    assert seed_t_interval(np.array([0.01]))["n_seeds"] == 1


def _seeded_tables(y, seed_scores, patients):
    """Per-seed tables of one arm and their mean (the seed ensemble's final table)."""
    tables = [_table(y, s, patients) for s in seed_scores]
    return tables, _table(y, np.mean(seed_scores, axis=0), patients)


def test_two_level_bootstrap_carries_the_seeds_disagreement():
    # Arm A's two seeds disagree strongly (one has the signal, the other has none), arm B's
    # agree. Patients alone see one averaged predictor; resampling seeds also sees A with two
    # copies of either seed, so the mean difference's interval widens.
    rng = np.random.default_rng(7)
    n = 400
    y = rng.random(n) < 0.3
    patients = np.array([f"p{i // 2}" for i in range(n)])
    latent = y + rng.normal(size=n)
    good, bad = latent + 0.3 * rng.normal(size=n), rng.normal(size=n)
    steady = [latent + 0.8 * rng.normal(size=n) for _ in range(2)]
    seeds_a, final_a = _seeded_tables(y, [good, bad], patients)
    seeds_b, final_b = _seeded_tables(y, steady, patients)
    one = compare_methods(final_a, final_b, n_resamples=400, seed=0).iloc[-1]
    two = compare_methods(final_a, final_b, 400, 0, seeds_a, seeds_b).iloc[-1]
    assert (one["p_resampling"], two["p_resampling"]) == (PATIENTS, SEEDS_AND_PATIENTS)
    assert two["delta"] == pytest.approx(one["delta"])  # the point estimate is the final table's
    assert two["delta_high"] - two["delta_low"] > 2 * (one["delta_high"] - one["delta_low"])
    assert two["p_value"] >= one["p_value"]


def test_two_level_bootstrap_refuses_seeds_that_do_not_average_to_the_final_table():
    rng = np.random.default_rng(8)
    y = rng.random(60) < 0.4
    patients = np.array([f"p{i}" for i in range(60)])
    seeds_a, final_a = _seeded_tables(y, [rng.random(60), rng.random(60)], patients)
    seeds_b, final_b = _seeded_tables(y, [rng.random(60), rng.random(60)], patients)
    with pytest.raises(ValueError, match="do not average"):
        compare_methods(final_a, final_b, 50, 0, seeds_a, seeds_b[::-1][:1] + seeds_a[:1])
