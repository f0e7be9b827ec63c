"""What a clinician reads: operating points chosen on val, calibrated probabilities, and
ensembles weighted on val (deepauc.evaluation.operating_points, calibration, ensemble)."""

import numpy as np
import pandas as pd
import pytest

from deepauc.data.chexpert import HEADER
from deepauc.data.preprocess import image_groups
from deepauc.evaluation.calibration import (
    brier_score,
    calibrate,
    calibration_rows,
    expected_calibration_error,
    fit_platt,
    sigmoid,
)
from deepauc.evaluation.ensemble import average_members, select_members
from deepauc.evaluation.operating_points import (
    drawn_sensitivities,
    sensitivity,
    specificity,
    threshold_at_specificity,
)
from deepauc.evaluation.scores import compare_metrics, score_predictions
from deepauc.evaluation.stats import MEAN, auc, patient_bootstrap
from deepauc.evaluation.subgroups import study_table, subgroup_rows


def _table(y, scores, disease="Edema", prefix="i"):
    n = len(y)
    return pd.DataFrame(
        {
            "image": [f"{prefix}{i}" for i in range(n)],
            "patient": [f"{prefix}p{i}" for i in range(n)],
            "disease": disease,
            "y_true": np.asarray(y, dtype=float),
            "score": np.asarray(scores, dtype=float),
        }
    )


def test_threshold_and_sensitivity_by_hand():
    # val: ten negatives 1..10, two positives. 90% specificity: 9 of 10 negatives at or below
    # the threshold, the lowest such is the 9th smallest negative, 9.
    val_y = [0] * 10 + [1, 1]
    val_s = [3, 1, 2, 10, 5, 4, 6, 8, 7, 9, 9.5, 12]
    assert threshold_at_specificity(val_y, val_s, 0.90) == 9
    assert threshold_at_specificity(val_y, val_s, 0.95) == 10  # ceil(9.5) = 10th
    assert threshold_at_specificity(val_y, val_s, 0.5) == 5
    # test: positives 8.5, 9, 9.2, 11 -> above 9: 9.2 and 11 (9 itself is not above): 2 of 4
    test_y = [1, 1, 1, 1, 0, 0, 0, 0, 0]
    test_s = [8.5, 9, 9.2, 11, 1, 9, 9.1, 3, 2]
    assert sensitivity(test_y, test_s, 9) == 0.5
    assert specificity(test_y, test_s, 9) == pytest.approx(4 / 5)  # 9.1 is a false positive
    assert np.isnan(threshold_at_specificity([1, 1], [0.1, 0.2], 0.9))
    assert np.isnan(sensitivity([0, 0], [0.1, 0.2], 0.0))


def test_summary_operating_points_use_val_thresholds_and_test_counts():
    val = _table([0] * 10 + [1, 1], [3, 1, 2, 10, 5, 4, 6, 8, 7, 9, 9.5, 12], prefix="v")
    test = _table([1, 1, 1, 1, 0, 0, 0, 0, 0], [8.5, 9, 9.2, 11, 1, 9, 9.1, 3, 2])
    row = score_predictions(test, n_resamples=200, seed=0, val=val).set_index("disease")
    assert row.loc["Edema", "sens90"] == 0.5
    assert row.loc["Edema", "spec90"] == pytest.approx(0.8)
    assert row.loc["Edema", "sens95"] == 0.25  # threshold 10: only 11 is above
    assert row.loc["Edema", "sens90_low"] <= 0.5 <= row.loc["Edema", "sens90_high"]
    assert row.loc[MEAN, "sens90"] == 0.5
    without_val = score_predictions(test, n_resamples=20, seed=0).set_index("disease")
    assert np.isnan(without_val.loc["Edema", "sens90"])  # no val, no threshold: not guessed


@pytest.mark.parametrize("seed", range(3))
def test_drawn_sensitivities_equal_each_resample_scored_alone(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(80) < 0.4
    s = np.round(rng.normal(size=80) + y, 1)
    resamples = patient_bootstrap(np.arange(80), 50, seed)
    draws = np.stack([np.bincount(r, minlength=80) for r in resamples]).astype(float)
    got = drawn_sensitivities(y, s, draws, 0.3)
    want = [sensitivity(y[r], s[r], 0.3) for r in resamples]
    np.testing.assert_allclose(got, want)


def _miscalibrated(n, seed):
    """Outcomes drawn from sigmoid(z), scored 4 z + 2: overconfident and shifted."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    y = (rng.random(n) < sigmoid(z)).astype(float)
    return y, 4 * z + 2


def test_platt_scaling_recovers_the_true_mapping_and_lowers_ece_and_brier():
    y_val, s_val = _miscalibrated(4000, 0)
    y_test, s_test = _miscalibrated(4000, 1)
    platt = fit_platt(y_val, s_val)
    assert platt.slope == pytest.approx(0.25, abs=0.03)
    assert platt.intercept == pytest.approx(-0.5, abs=0.1)
    before, after = sigmoid(s_test), platt(s_test)
    assert (
        expected_calibration_error(y_test, after)
        < 0.03
        < expected_calibration_error(y_test, before)
    )
    assert brier_score(y_test, after) < brier_score(y_test, before)
    assert auc(y_test, after) == pytest.approx(auc(y_test, s_test))  # ranks unchanged


def test_calibration_tables_fit_on_val_only():
    y_val, s_val = _miscalibrated(600, 2)
    y_test, s_test = _miscalibrated(600, 3)
    val, test = _table(y_val, s_val, prefix="v"), _table(y_test, s_test)
    val_p, test_p = calibrate(val, test)
    # A test split of other outcomes changes nothing of the fit: it was not used.
    _, other = calibrate(val, test.assign(y_true=1 - test["y_true"]))
    np.testing.assert_allclose(other["probability"], test_p["probability"])
    assert set(val_p.columns) == {*val.columns, "probability"}
    row = calibration_rows(val, test).iloc[0]
    assert row["ece_after"] < row["ece_before"]
    assert row["brier_after"] < row["brier_before"]


def test_platt_is_finite_on_separable_val_and_identity_without_a_class():
    separable = fit_platt([0, 0, 0, 1, 1, 1], [-3, -2, -1, 1, 2, 3])
    assert np.isfinite([separable.slope, separable.intercept]).all() and separable.slope > 0
    one_class = fit_platt([1, 1, 1], [0.1, 0.2, 0.3])
    assert (one_class.slope, one_class.intercept) == (1.0, 0.0)


def test_ece_by_hand():
    # bins of width 0.1: {0.05, 0.05} observed 0.5 -> |0.5-0.05|*2; {0.95} observed 1 -> 0.05
    got = expected_calibration_error([0, 1, 1], [0.05, 0.05, 0.95])
    assert got == pytest.approx((2 * 0.45 + 0.05) / 3)
    assert expected_calibration_error([1], [1.0]) == 0.0  # 1.0 falls in the last bin


def _members_where_the_mean_hurts(seed):
    """Member 0 ranks val well; member 1 is noise on a large scale, which drowns member 0 in
    the plain mean of logits."""
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.3
    good = y + rng.normal(scale=0.7, size=300)
    noise = rng.normal(scale=20, size=300)
    return y, [_table(y, good, prefix="v"), _table(y, noise, prefix="v")]


@pytest.mark.parametrize("seed", range(4))
def test_val_selected_ensemble_is_never_below_its_best_member_on_val(seed):
    y, members = _members_where_the_mean_hurts(seed)
    best = max(auc(y, m["score"]) for m in members)
    plain = average_members(members, "mean")
    assert auc(y, plain["score"]) < best - 0.05  # the case the issue names
    weights = select_members(members, "mean")
    selected = average_members(members, "mean", weights)
    assert auc(y, selected["score"]) >= best
    np.testing.assert_allclose(weights["Edema"], [1.0, 0.0])


@pytest.mark.parametrize("seed", range(6))
def test_selection_never_loses_to_the_best_member_on_random_members(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(120) < 0.4
    members = [
        _table(y, y * rng.random() + rng.normal(scale=rng.uniform(0.3, 3), size=120), prefix="v")
        for _ in range(4)
    ]
    for combine in ("mean", "rank"):
        weights = select_members(members, combine)
        assert weights["Edema"].sum() == pytest.approx(1.0)
        selected = average_members(members, combine, weights)
        best = max(auc(y, average_members([m], combine)["score"]) for m in members)
        assert auc(y, selected["score"]) >= best - 1e-12


def test_compare_metrics_of_a_table_with_itself_is_zero_and_sees_a_better_one():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    weak = _table(y, y + rng.normal(scale=2, size=300))
    strong = _table(y, y + rng.normal(scale=0.3, size=300))
    val = _table(y, y + rng.normal(scale=1, size=300), prefix="v")
    same = compare_metrics(weak, weak, val, val, n_resamples=100).set_index("disease")
    assert (same.filter(like="_delta") == 0).all().all()
    better = compare_metrics(strong, weak, val, val, n_resamples=200).set_index("disease")
    assert better.loc["Edema", "pauc20_delta"] > 0.1
    assert better.loc["Edema", "pauc20_p"] < 0.01
    assert better.loc[MEAN, "pauc20_delta"] == better.loc["Edema", "pauc20_delta"]


def test_a_study_scores_as_the_max_over_its_two_views():
    split = pd.DataFrame(
        {
            "image": ["s1_frontal", "s1_lateral", "s2_frontal"],
            "study": ["p1/study1", "p1/study1", "p2/study1"],
        }
    )
    table = pd.DataFrame(
        {
            "image": ["s1_frontal", "s1_lateral", "s2_frontal"],
            "patient": ["p1", "p1", "p2"],
            "disease": "Edema",
            "y_true": [1.0, 1.0, 0.0],
            "score": [-0.5, 2.0, 0.3],
        }
    )
    studies = study_table(table, split).set_index("image")
    assert list(studies.index) == ["p1/study1", "p2/study1"]
    assert studies.loc["p1/study1", "score"] == 2.0  # the lateral view's, the larger
    assert studies.loc["p1/study1", "y_true"] == 1.0
    assert study_table(table, split, "mean").set_index("image").loc["p1/study1", "score"] == 0.75
    with pytest.raises(ValueError, match="no study"):
        study_table(table, split.iloc[:2])


def test_a_subgroup_with_too_few_positives_is_kept_and_marked_and_left_out_of_the_gap():
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.3).astype(float)
    female = np.arange(n) < 200
    y[~female] = 0
    y[np.flatnonzero(~female)[:5]] = 1  # five male positives: too few for a usable interval
    ages = rng.integers(20, 95, n)
    score = y + rng.normal(scale=0.8, size=n)
    test = _table(y, score)
    groups = pd.DataFrame(
        {
            "image": test["image"],
            "sex": np.where(female, "Female", "Male"),
            "age": ages,
            "projection": np.where(np.arange(n) % 2 == 0, "AP", "PA"),
        }
    )
    val = _table(y, y + rng.normal(scale=0.8, size=n), prefix="v")
    rows = subgroup_rows(test, val, groups, n_resamples=100).set_index(["attribute", "group"])
    male, female_row = rows.loc[("sex", "Male")], rows.loc[("sex", "Female")]
    assert male["n_pos"] == 5 and bool(male["small"])  # kept, marked
    assert not bool(female_row["small"])
    assert female_row["sens90_low"] <= female_row["sens90"] <= female_row["sens90_high"]
    assert np.isnan(male["largest_gap"])  # one usable group: no gap to take
    assert list(rows.loc["age"].index) == ["<40", "40-59", "60-79", "80+"]
    usable = rows.loc["projection"]
    assert usable["largest_gap"].iloc[0] == pytest.approx(usable["auc"].max() - usable["auc"].min())
    in_group = test["image"].isin(groups.loc[groups["sex"] == "Female", "image"])
    assert female_row["auc"] == pytest.approx(
        auc(test.loc[in_group, "y_true"], test.loc[in_group, "score"])
    )


def test_unrecorded_and_uncommon_values_of_real_csvs_form_marked_groups(tmp_path):
    """CheXpert's own quirks, read from a CSV as image_groups reads it: Age 0 and blank ages,
    ``Sex: Unknown``, frontal images with AP/PA ``LL`` or ``RL``. Each becomes a group of its
    own with a note, none is dropped or binned with the young, and none enters the gap."""
    rng = np.random.default_rng(1)
    n = 600
    sex = rng.choice(["Female", "Male"], n).astype(object)
    age = rng.integers(20, 90, n).astype(object)
    projection = rng.choice(["AP", "PA"], n).astype(object)
    sex[:30], sex[30:40] = "Unknown", ""
    age[40:70], age[70:80] = 0, ""
    projection[80:100], projection[100:110] = "LL", "RL"
    projection[110:120] = ""
    paths = [f"CheXpert-v1.0-small/valid/patient{i:05d}/study1/view1_frontal.jpg" for i in range(n)]
    y = (rng.random(n) < 0.4).astype(float)
    record = dict.fromkeys(HEADER, "")
    rows = [
        {**record, "Path": p, "Sex": s, "Age": a, "AP/PA": v, "Frontal/Lateral": "Frontal"}
        | {"Edema": f"{label:.1f}"}
        for p, s, a, v, label in zip(paths, sex, age, projection, y, strict=True)
    ]
    csv = tmp_path / "CheXpert-v1.0-small" / "valid.csv"
    csv.parent.mkdir()
    pd.DataFrame(rows, columns=HEADER).to_csv(csv, index=False)
    groups = image_groups(csv, tmp_path, "CheXpert-v1.0-small", ("Edema",))
    test = _table(y, y + rng.normal(scale=1.0, size=n))
    test["image"] = groups["image"]
    val = _table(y, y + rng.normal(scale=1.0, size=n), prefix="v")
    table = subgroup_rows(test, val, groups, n_resamples=50)
    counts = table.set_index(["attribute", "group"])[["n_pos", "n_neg"]].sum(axis=1)
    # every image is in exactly one group of each attribute
    assert (table.groupby("attribute")[["n_pos", "n_neg"]].sum().sum(axis=1) == n).all()
    assert counts[("sex", "unknown")] == 40  # "Unknown" and blank
    assert counts[("age", "unknown")] == 40  # Age 0 and blank, not "<40"
    recorded = np.array([a not in (0, "") for a in age])
    assert counts[("age", "<40")] == (age[recorded].astype(int) < 40).sum()
    assert counts[("projection", "LL")] == 20 and counts[("projection", "RL")] == 10
    assert counts[("projection", "unknown")] == 10
    noted = table.set_index(["attribute", "group"])["note"].fillna("")
    assert {g for g, note in noted.items() if note} == {
        ("sex", "unknown"),
        ("age", "unknown"),
        ("projection", "LL"),
        ("projection", "RL"),
        ("projection", "unknown"),
    }
    assert "not recorded" in noted[("age", "unknown")]
    assert "uncommon" in noted[("projection", "LL")]
    # the gap compares the groups the attribute means, and the marked ones come last
    projection_rows = table[table["attribute"] == "projection"]
    usable = projection_rows[projection_rows["group"].isin(["AP", "PA"])]
    assert projection_rows["largest_gap"].iloc[0] == pytest.approx(
        usable["auc"].max() - usable["auc"].min()
    )
    assert list(projection_rows["group"]) == ["AP", "PA", "LL", "RL", "unknown"]
