import numpy as np
import pandas as pd
import pytest

from deepauc.errors import InputError
from deepauc.evaluation.ensemble import assemble_diseases, average_members
from deepauc.evaluation.summary import (
    COMPARISON_COLUMNS,
    SUMMARY_COLUMNS,
    compare_with_control,
    summarize,
    summarize_by_seed,
)


def _member(scores, diseases=("Edema", "Atelectasis"), y=None):
    rows = []
    for d in diseases:
        for i, s in enumerate(scores):
            label = y[i] if y is not None else i % 2
            rows.append(
                {"image": f"i{i}", "patient": f"p{i}", "disease": d, "y_true": label, "score": s}
            )
    return pd.DataFrame(rows)


def test_mean_and_rank_combine():
    a = _member([0.1, 0.2, 0.9, 0.4])
    b = _member([0.3, 0.0, 0.5, 0.4])
    mean = average_members([a, b], "mean")
    assert mean["score"].tolist()[:4] == pytest.approx([0.2, 0.1, 0.7, 0.4])
    ranked = average_members([a, b.assign(score=b["score"] * 100)], "rank")
    same = average_members([a, b], "rank")
    np.testing.assert_allclose(ranked["score"], same["score"])  # ranks ignore the scale


def test_members_are_aligned_by_image_and_the_first_order_is_kept():
    a = _member([0.1, 0.2, 0.9, 0.4])
    shuffled = a.sample(frac=1, random_state=0)
    result = average_members([a, shuffled])
    assert result[["image", "disease"]].equals(a[["image", "disease"]])
    np.testing.assert_allclose(result["score"], a["score"])


def test_members_on_other_images_are_refused():
    with pytest.raises(InputError, match="different images"):
        average_members([_member([0.1, 0.2]), _member([0.1, 0.2, 0.3])])
    with pytest.raises(InputError, match="combine"):
        average_members([_member([0.1])], "median")


def test_assemble_refuses_a_disease_scored_twice():
    edema = _member([0.1, 0.2], diseases=("Edema",))
    assert len(assemble_diseases([edema, _member([0.3, 0.4], diseases=("Atelectasis",))])) == 4
    with pytest.raises(InputError, match="two tables score 'Edema'"):
        assemble_diseases([edema, edema])


def test_summary_and_comparison_tables_have_the_promised_columns():
    rng = np.random.default_rng(0)
    y = (rng.random(60) < 0.4).astype(int)
    tables = {
        (arch, method): _member(rng.random(60) + y * (0.5 if method == "dam" else 0.2), y=y)
        for arch in ("resnet10t", "ensemble")
        for method in ("warmup", "ce", "dam")
    }
    summary = summarize(tables, n_resamples=100)
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary) == 2 * 3 * 3  # (2 diseases + mean) per architecture and method
    comparison = compare_with_control(tables, "ce", n_resamples=100)
    assert list(comparison.columns) == COMPARISON_COLUMNS
    assert set(comparison["architecture"]) == {"resnet10t", "ensemble"}
    # Every method but the control and the warm-up is compared with the control.
    assert set(comparison["method"]) == {"dam"} and set(comparison["control"]) == {"ce"}
    np.testing.assert_allclose(comparison["delta"], comparison["auc"] - comparison["auc_control"])
    assert (comparison.loc[comparison["disease"] != "mean", "delta"] > 0).all()


def test_seed_summary_keeps_each_seed_apart():
    rng = np.random.default_rng(1)
    y = (rng.random(40) < 0.5).astype(int)
    tables = {("resnet10t", "dam", s): _member(rng.random(40) + y * s, y=y) for s in (0, 1)}
    by_seed = summarize_by_seed(tables, n_resamples=100)
    assert list(by_seed.columns) == [*SUMMARY_COLUMNS, "seed"]
    means = by_seed[by_seed["disease"] == "mean"].set_index("seed")["auc"]
    assert means[1] > means[0]  # seed 1's scores carry the signal, seed 0's are noise
