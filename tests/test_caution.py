"""Results that mean little are said to: few cases of a class, a warm-up that never learned."""

import numpy as np
import pandas as pd
import pytest

from deepauc.data.splits import MIN_CASES, few_cases
from deepauc.evaluation.caution import summary_cautions
from deepauc.evaluation.diagnostics import untrained_note, warmup_best_steps
from deepauc.text import compared


def test_a_class_with_fewer_than_ten_cases_is_marked_whichever_class_it_is():
    assert MIN_CASES == 10
    assert few_cases("test", 9, 200) == "only 9 test positives"
    assert few_cases("val", 150, 4) == "only 4 val negatives"
    assert few_cases("test", 10, 10) == ""


def _summary(rows):
    columns = ["architecture", "method", "disease", "n_pos", "n_neg"]
    return pd.DataFrame(rows, columns=columns)


def test_summary_rows_carry_their_cautions_and_the_mean_names_its_diseases():
    summary = _summary(
        [
            ("resnet10t", "dam", "Edema", 40, 200),
            ("resnet10t", "dam", "Consolidation", 7, 233),
            ("resnet10t", "dam", "mean", 47, 433),
            ("convnext_atto", "ce", "Edema", 40, 200),
            ("convnext_atto", "ce", "Consolidation", 7, 233),
            ("convnext_atto", "ce", "mean", 47, 433),
            ("ensemble", "ce", "Edema", 40, 200),
            ("ensemble", "ce", "mean", 40, 200),
        ]
    )
    audit = pd.DataFrame(
        {
            "split": ["val", "val", "test"],
            "disease": ["Edema", "Consolidation", "Edema"],
            "positive": [30, 6, 40],
            "negative": [90, 114, 200],
        }
    )
    steps = {"resnet10t": {0: 40, 1: 40}, "convnext_atto": {0: 0, 1: 60}}
    members = {"ensemble": ["resnet10t", "convnext_atto"]}
    caution = summary_cautions(summary, audit, steps, members).tolist()
    never = "seed 0's warm-up never learned (best val AUC at step 0)"
    assert caution == [
        "",
        "only 7 test positives; only 6 val positives",
        "includes Consolidation, with few cases",
        never,
        f"only 7 test positives; only 6 val positives; {never}",
        f"{never}; includes Consolidation, with few cases",
        f"convnext_atto: {never}",
        f"convnext_atto: {never}",
    ]


def test_a_warmups_best_step_is_its_first_best_evaluation(tmp_path):
    learned, never = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame({"step": [0, 10, 20], "val_auc": [0.5, 0.7, 0.7]}).to_csv(learned, index=False)
    pd.DataFrame({"step": [0, 10], "val_auc": [0.6, 0.55]}).to_csv(never, index=False)
    steps = warmup_best_steps([("a", 0), ("a", 1)], [learned, never])
    assert steps == {"a": {0: 10, 1: 0}}


def test_a_caution_number_keeps_the_digits_that_make_it_true():
    assert untrained_note({"chosen_step": 3, "backbone_drift": 0.00496}) == (
        "did not train: backbone drift 0.00496 < 0.005"
    )
    assert compared(0.0123, "<", 0.05) == "0.012 < 0.05"  # two digits where they suffice


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_a_printed_comparison_reads_as_the_real_one(op):
    rng = np.random.default_rng(0)
    limits = 10.0 ** rng.integers(-6, 3, 300) * rng.choice([1, 2.5, 5], 300)
    values = limits * (1 + rng.choice([-1, 1], 300) * 10.0 ** rng.integers(-9, 0, 300))
    truth = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}[op]
    for value, limit in zip(values, limits, strict=True):
        shown, shown_op, shown_limit = compared(value, op, limit).split(" ")
        assert shown_op == op
        assert truth(float(shown), float(shown_limit)) == truth(value, limit), (value, limit)
