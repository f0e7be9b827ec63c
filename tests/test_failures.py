"""DAM's failure modes, caught: scores sunk into the sigmoid's floor or ceiling, collapse, a
method that kept step 0 at every rate while CE trained, and a warm-up that barely ranks (the
fine-tunes' precondition, checked before they run). Each detector fires on a constructed case
and stays quiet on a healthy fine-tune."""

import logging

import numpy as np
import pandas as pd

from deepauc.evaluation.caution import summary_cautions
from deepauc.evaluation.diagnostics import (
    diagnostics_table,
    is_collapsed,
    score_diagnostics,
    sunk,
    weak_start,
    weak_warmup,
)
from deepauc.jobs.logs import logged_to
from deepauc.training.stages import _check_start


def _scores(pos_mean, neg_mean, spread, n=200, seed=0):
    """Logits whose probabilities have these class means, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n // 4), np.zeros(n - n // 4)]
    means = np.where(labels == 1, pos_mean, neg_mean)
    probabilities = np.clip(means + spread * rng.standard_normal(n), 1e-6, 1 - 1e-6)
    return np.log(probabilities / (1 - probabilities))[:, None], labels[:, None]


# the case: a warm-up at 0.131 +- 0.002 that DAM sank to 0.0070 +- 0.0009
WEAK_START = score_diagnostics(*_scores(0.132, 0.130, 0.002))
SANK = score_diagnostics(*_scores(0.0071, 0.0069, 0.0009))
HEALTHY_START = score_diagnostics(*_scores(0.34, 0.17, 0.15))
HEALTHY_END = score_diagnostics(*_scores(0.59, 0.24, 0.13))


def test_scores_sunk_into_the_floor_or_risen_to_the_ceiling_are_caught():
    assert sunk(SANK, WEAK_START) == "floor"
    ceiling = score_diagnostics(*_scores(0.995, 0.993, 0.001))
    assert sunk(ceiling, HEALTHY_START) == "ceiling"


def test_a_healthy_fine_tune_and_a_rare_disease_that_started_low_have_not_sunk():
    assert sunk(HEALTHY_END, HEALTHY_START) == ""
    assert not is_collapsed(HEALTHY_END, HEALTHY_START)
    rare = score_diagnostics(*_scores(0.012, 0.008, 0.004))  # a warm-up already near 0
    assert sunk(score_diagnostics(*_scores(0.011, 0.007, 0.004)), rare) == ""
    # a row without the score columns (an older history) is not judged
    assert sunk({"val_auc": 0.7}, {"val_auc": 0.7}) == ""


def test_a_warmup_that_barely_ranks_is_caught_by_its_auc_or_its_spread():
    assert weak_start(0.53, 0.15) == "val AUC 0.53 < 0.65"
    assert weak_start(0.78, 0.002) == "score spread 0.002 < 0.01"
    assert (
        weak_start(0.776, 0.0187) == ""
    )  # the healthiest-looking start of the DAM study's weakest
    best = pd.Series(
        {
            "val_auc:Cardiomegaly": 0.67,
            "score_std:Cardiomegaly": 0.002,
            "val_auc:Edema": 0.81,
            "score_std:Edema": 0.09,
            "val_auc:Atelectasis": 0.53,
            "score_std:Atelectasis": 0.05,
        }
    )
    weak = weak_warmup(best, ["Cardiomegaly", "Edema", "Atelectasis"])
    assert weak == {
        "Cardiomegaly": "score spread 0.002 < 0.01",
        "Atelectasis": "val AUC 0.53 < 0.65",
    }
    # an older history without spreads is judged on its AUCs alone
    assert weak_warmup(pd.Series({"val_auc:Edema": 0.8}), ["Edema"]) == {}


def test_the_precondition_warning_reaches_the_console_and_the_log(tmp_path, capsys):
    best = pd.Series(
        {
            "val_auc:Edema": 0.52,
            "score_std:Edema": 0.001,
            "val_auc:Cardiomegaly": 0.9,
            "score_std:Cardiomegaly": 0.2,
        }
    )
    with logged_to(tmp_path / "warmup.log"):
        _check_start("warmup convnext_tiny seed 0", best, ["Cardiomegaly", "Edema"])
        logging.getLogger("deepauc.quiet").warning("only in the log")
    console = capsys.readouterr().err
    log = (tmp_path / "warmup.log").read_text()
    assert "barely ranks Edema (val AUC 0.52 < 0.65, score spread 0.001 < 0.01)" in console
    assert "Cardiomegaly" not in console.split("barely ranks")[1].split(".")[0]
    assert "barely ranks Edema" in log and "only in the log" not in console
    # a warm-up that ranks every disease says nothing
    with logged_to(tmp_path / "good.log"):
        _check_start("warmup", best.drop(["val_auc:Edema", "score_std:Edema"]), ["Cardiomegaly"])
    assert "barely" not in capsys.readouterr().err


def _history(pos, neg, aucs, steps=(0, 10, 20), spread=0.05):
    rows = []
    for step, p, n, auc in zip(steps, pos, neg, aucs, strict=True):
        rows.append(
            {
                "step": step,
                "val_auc": auc,
                "pos_mean": p,
                "neg_mean": n,
                "score_std": spread,
                "collapsed": False,
                "drift": 0.0 if step == 0 else 0.05,
            }
        )
    return pd.DataFrame(rows)


AUDIT = pd.DataFrame({"split": ["val"], "disease": ["Edema"], "positive": [30], "negative": [90]})


def _table(runs):
    return diagnostics_table(runs, AUDIT, {"convnext_tiny": {0: 5}}).set_index("method")


def test_diagnostics_name_each_failure_and_leave_a_healthy_fine_tune_alone():
    healthy = _history([0.34, 0.5, 0.6], [0.17, 0.2, 0.22], [0.78, 0.8, 0.82], spread=0.15)
    sinking = _history([0.13, 0.02, 0.007], [0.13, 0.02, 0.007], [0.70, 0.66, 0.60], spread=0.002)
    stuck = _history([0.13, 0.12, 0.12], [0.13, 0.12, 0.12], [0.70, 0.69, 0.68], spread=0.002)
    key = ("convnext_tiny", 0)
    runs = {
        (*key, "ce", "Edema", 3e-4): healthy,
        (*key, "dam", "Edema", 1e-4): stuck,
        (*key, "dam", "Edema", 3e-4): sinking,
        (*key, "dam", "Edema", 1e-3): sinking,
    }
    table = _table(runs)
    ce, dam = table.loc["ce"], table.loc["dam"]
    assert (ce["sunk"], ce["sunk_rates"], ce["failure"], ce["weak_start"]) == ("no", 0, "", "no")
    assert ce["caution"] == ""
    assert (dam["sunk"], dam["sunk_rates"], dam["kept_step0_rates"]) == ("no", 2, 3)
    assert dam["weak_start"] == "yes"
    assert dam["failure"] == (
        "scores sank into the sigmoid's floor or ceiling at 2 of 3 rates; "
        "kept step 0 at every rate of its grid (3) while ce trained"
    )
    assert (
        "started from a warm-up that barely ranks Edema (score spread 0.002 < 0.01)"
        in (dam["caution"])
    )
    # kept step 0 everywhere is a failure only while CE moved: both stuck is a weak start
    runs[(*key, "ce", "Edema", 3e-4)] = stuck
    assert "kept step 0" not in _table(runs).loc["dam", "failure"]


def test_the_summary_marks_the_failed_rows_and_their_mean():
    diagnostics = pd.DataFrame(
        [
            ("convnext_tiny", seed, method, disease, failure, weak, "yes")
            for seed in (0, 1)
            for method, disease, failure, weak in [
                ("dam", "Edema", "scores sank into the sigmoid's floor at its chosen rate", "yes"),
                ("dam", "Cardiomegaly", "", "no"),
                ("ce", "Edema", "", "yes"),
                ("ce", "Cardiomegaly", "", "no"),
            ]
        ],
        columns=["architecture", "seed", "method", "disease", "failure", "weak_start", "trained"],
    )
    summary = pd.DataFrame(
        [
            ("convnext_tiny", method, disease, 40, 200)
            for method in ("dam", "ce")
            for disease in ("Edema", "Cardiomegaly", "mean")
        ],
        columns=["architecture", "method", "disease", "n_pos", "n_neg"],
    )
    audit = pd.DataFrame(
        {
            "split": ["val"] * 2,
            "disease": ["Edema", "Cardiomegaly"],
            "positive": [30, 30],
            "negative": [90, 90],
        }
    )
    caution = summary_cautions(summary, audit, {"convnext_tiny": {0: 5, 1: 5}}, {}, diagnostics)
    dam_edema, dam_cardio, dam_mean, ce_edema, ce_cardio, ce_mean = caution.tolist()
    assert dam_edema == (
        "started from a warm-up that barely ranks Edema (seed 0, seed 1); "
        "seed 0: scores sank into the sigmoid's floor at its chosen rate; "
        "seed 1: scores sank into the sigmoid's floor at its chosen rate"
    )
    assert dam_cardio == "" and ce_cardio == ""
    assert dam_mean == (
        "the warm-up barely ranks Edema; mean includes 1 of 2 diseases where a fine-tune sank, "
        "collapsed or kept step 0 at some rate: Edema"
    )
    assert ce_edema.startswith("started from a warm-up that barely ranks Edema")
    assert "sank" not in ce_mean


def test_diagnostics_of_an_older_run_without_the_columns_add_no_caution():
    diagnostics = pd.DataFrame(
        [("convnext_tiny", 0, "dam", "Edema", "yes")],
        columns=["architecture", "seed", "method", "disease", "trained"],
    )
    summary = pd.DataFrame(
        [("convnext_tiny", "dam", "Edema", 40, 200)],
        columns=["architecture", "method", "disease", "n_pos", "n_neg"],
    )
    audit = pd.DataFrame(
        {"split": ["val"], "disease": ["Edema"], "positive": [30], "negative": [90]}
    )
    assert summary_cautions(summary, audit, {}, {}, diagnostics).tolist() == [""]
