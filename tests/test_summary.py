"""The answer tables: both comparisons labelled, q-values per family, fine-tunes that did not
train marked in summary.csv and comparison.csv, and seeds.csv's per-seed differences."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from deepauc.evaluation.caution import summary_cautions, trained_marks
from deepauc.evaluation.ensemble import average_members
from deepauc.evaluation.plots import plot_auc_by_architecture
from deepauc.evaluation.significance import benjamini_hochberg
from deepauc.evaluation.stats import MEAN, PATIENTS, SEEDS_AND_PATIENTS
from deepauc.evaluation.summary import (
    COMPARISON_COLUMNS,
    MINUS_CONTROL,
    MINUS_WARMUP,
    VS_CONTROL,
    VS_WARMUP,
    comparison_table,
    per_seed_tables,
    seeds_table,
    summarize,
)

DISEASES = ["Edema", "Atelectasis", "Consolidation"]
ARCHS = ["resnet10t", "convnext_atto"]
MEMBERS = {"ensemble": ARCHS}
#: How much of the latent signal each method's scores carry: every arm differs from the others.
STRENGTH = {"warmup": 0.6, "ce": 1.2, "dam": 0.9}
N = 160


def _table(y: dict, scores: dict) -> pd.DataFrame:
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "image": [f"i{i}" for i in range(N)],
                    "patient": [f"p{i // 2}" for i in range(N)],
                    "disease": disease,
                    "y_true": y[disease],
                    "score": scores[disease],
                }
            )
            for disease in DISEASES
        ],
        ignore_index=True,
    )


@pytest.fixture(scope="module")
def study():
    """Per-seed tables of two architectures and their ensemble, two seeds, and the final
    (seed-averaged) tables, as rules ensemble_architectures and ensemble_seeds make them."""
    rng = np.random.default_rng(0)
    y = {d: (rng.random(N) < 0.3).astype(float) for d in DISEASES}
    latent = {d: y[d] + rng.normal(size=N) for d in DISEASES}
    per_seed = {}
    for arch in ARCHS:
        for seed in (0, 1):
            for method, strength in STRENGTH.items():
                scores = {d: strength * latent[d] + rng.normal(size=N) for d in DISEASES}
                per_seed[(arch, method, seed)] = _table(y, scores)
    for seed in (0, 1):
        for method in STRENGTH:
            members = [per_seed[(arch, method, seed)] for arch in ARCHS]
            per_seed[("ensemble", method, seed)] = average_members(members)
    final = {
        (predictor, method): average_members([per_seed[(predictor, method, s)] for s in (0, 1)])
        for predictor in [*ARCHS, "ensemble"]
        for method in STRENGTH
    }
    return per_seed, final


def test_both_comparisons_are_labelled_and_their_deltas_are_the_summarys(study):
    _, final = study
    summary = summarize(final, n_resamples=50)
    comparison = comparison_table(final, n_resamples=50)
    assert list(comparison.columns) == COMPARISON_COLUMNS
    vs_ce = comparison[comparison["comparison"] == VS_CONTROL]
    vs_warmup = comparison[comparison["comparison"] == VS_WARMUP]
    assert len(vs_ce) + len(vs_warmup) == len(comparison)
    assert set(vs_ce["method"]) == {"dam"} and set(vs_ce["control"]) == {"ce"}
    # CE against the warm-up is a row too: how much of a method's gain CE gets as well.
    assert set(vs_warmup["method"]) == {"ce", "dam"} and set(vs_warmup["control"]) == {"warmup"}
    assert len(vs_warmup) == 3 * 2 * (len(DISEASES) + 1)  # predictors x methods x rows
    auc = summary.set_index(["architecture", "method", "disease"])["auc"]
    for row in comparison.itertuples():
        expected = auc[(row.architecture, row.method, row.disease)]
        expected -= auc[(row.architecture, row.control, row.disease)]
        assert row.delta == pytest.approx(expected, abs=1e-12), row
        assert row.delta_low <= row.delta <= row.delta_high, row
    # The arms differ by construction: CE carries the most signal, the warm-up the least.
    means = comparison[comparison["disease"] == MEAN].set_index(["comparison", "method"])
    assert (means.loc[(VS_CONTROL, "dam"), "delta"] < 0).all()
    assert (means.loc[(VS_WARMUP, "ce"), "delta"] > 0).all()


def test_q_values_adjust_each_method_and_comparison_family_over_predictors(study):
    _, final = study
    comparison = comparison_table(final, n_resamples=50)
    per_disease = comparison[comparison["disease"] != MEAN]
    assert comparison.loc[comparison["disease"] == MEAN, "q_value"].isna().all()
    families = per_disease.groupby(["method", "comparison"])
    assert len(families) == 3  # dam vs CE, dam vs warm-up, CE vs warm-up
    for _, family in families:
        assert len(family) == 3 * len(DISEASES)  # every predictor's diseases together
        expected = benjamini_hochberg(family["p_value"].to_numpy())
        np.testing.assert_allclose(family["q_value"], expected)
        assert (family["q_value"] >= family["p_value"]).all()


def test_several_seeds_resample_seeds_for_the_mean_and_one_seed_patients(study):
    per_seed, final = study
    one = comparison_table(final, n_resamples=60)
    two = comparison_table(final, n_resamples=60, seed_tables=per_seed_tables(per_seed))
    assert set(one.loc[one["disease"] == MEAN, "p_resampling"]) == {PATIENTS}
    assert set(two.loc[two["disease"] == MEAN, "p_resampling"]) == {SEEDS_AND_PATIENTS}
    np.testing.assert_allclose(one["delta"], two["delta"])  # the same point estimates
    for frame in (one, two):
        assert frame["p_reported"].str.len().gt(0).all()


def test_rank_combined_seed_tables_average_to_the_rank_ensemble(study):
    per_seed, _ = study
    key = ("resnet10t", "dam")
    ranked = per_seed_tables(per_seed, "rank")[key]
    ensemble = average_members([per_seed[(*key, s)] for s in (0, 1)], "rank")
    np.testing.assert_allclose((ranked[0]["score"] + ranked[1]["score"]) / 2, ensemble["score"])


def _diagnostics(untrained: set[tuple[str, int, str, str]], methods=("ce", "dam")):
    rows = [
        {
            "architecture": arch,
            "seed": seed,
            "method": method,
            "disease": disease,
            "backbone_drift": 0.001 if (arch, seed, method, disease) in untrained else 0.05,
            "trained": "no" if (arch, seed, method, disease) in untrained else "yes",
        }
        for arch in ARCHS
        for seed in (0, 1)
        for method in methods
        for disease in DISEASES
    ]
    return pd.DataFrame(rows)


AUDIT = pd.DataFrame(
    {"split": "val", "disease": DISEASES, "positive": [30, 30, 30], "negative": [90, 90, 90]}
)
STEPS = {arch: {0: 40, 1: 40} for arch in ARCHS}
NOTE = "did not train (kept the warm-up or backbone drift < 0.005)"


def _marked(final, diagnostics):
    summary = summarize(final, n_resamples=30)
    summary["trained"] = trained_marks(summary, diagnostics, MEMBERS)
    summary["caution"] = summary_cautions(summary, AUDIT, STEPS, MEMBERS, diagnostics, 0.005)
    return summary.set_index(["architecture", "method", "disease"])


def test_fine_tunes_that_did_not_train_are_marked_with_their_seeds_and_members(study):
    _, final = study
    diagnostics = _diagnostics(
        {
            ("resnet10t", 1, "dam", "Edema"),
            ("convnext_atto", 0, "dam", "Edema"),
            ("convnext_atto", 1, "dam", "Edema"),
            ("convnext_atto", 0, "dam", "Consolidation"),
        }
    )
    marked = _marked(final, diagnostics)
    trained, caution = marked["trained"], marked["caution"]
    assert trained[("resnet10t", "dam", "Edema")] == "partly"
    assert caution[("resnet10t", "dam", "Edema")] == f"{NOTE} on seed 1"
    assert trained[("convnext_atto", "dam", "Edema")] == "no"
    assert caution[("convnext_atto", "dam", "Edema")] == f"{NOTE} on seeds 0, 1"
    assert trained[("ensemble", "dam", "Edema")] == "partly"
    assert caution[("ensemble", "dam", "Edema")] == (
        f"{NOTE} for members resnet10t (seed 1), convnext_atto (seeds 0, 1)"
    )
    assert (
        caution[("ensemble", "dam", "Consolidation")] == f"{NOTE} for member convnext_atto (seed 0)"
    )
    assert (
        trained[("resnet10t", "dam", "Atelectasis")],
        caution[("resnet10t", "dam", "Atelectasis")],
    ) == ("yes", "")
    # A mean row counts its diseases that rest on fine-tunes that did not train.
    assert trained[("resnet10t", "dam", MEAN)] == "partly"
    assert caution[("resnet10t", "dam", MEAN)] == (
        "mean includes 1 of 3 diseases whose fine-tune did not train: Edema"
    )
    assert caution[("convnext_atto", "dam", MEAN)] == (
        "mean includes 2 of 3 diseases whose fine-tune did not train: Edema, Consolidation"
    )
    assert (trained[("ensemble", "ce", MEAN)], caution[("ensemble", "ce", MEAN)]) == ("yes", "")
    # The warm-up is no fine-tune: never marked.
    warmup = marked.xs("warmup", level="method")
    assert (warmup["trained"] == "").all() and (warmup["caution"] == "").all()
    # comparison.csv carries the compared method's mark.
    comparison = comparison_table(
        final, n_resamples=30, trained=marked["trained"].to_dict()
    ).set_index(["comparison", "architecture", "method", "disease"])["trained"]
    assert comparison[(VS_CONTROL, "convnext_atto", "dam", "Edema")] == "no"
    assert comparison[(VS_WARMUP, "ensemble", "dam", "Edema")] == "partly"
    assert comparison[(VS_WARMUP, "convnext_atto", "ce", "Edema")] == "yes"


def test_fine_tunes_without_diagnostics_rows_are_left_unmarked(study):
    _, final = study
    only_dam = _diagnostics({("resnet10t", 0, "dam", "Edema")}, methods=("dam",))
    marked = _marked(final, only_dam)
    assert (marked.xs("ce", level="method")["trained"] == "").all()
    assert (marked.xs("ce", level="method")["caution"] == "").all()
    assert marked.at[("resnet10t", "dam", "Edema"), "trained"] == "partly"
    # Diagnostics of an older run have no trained column: nothing is marked.
    older = _marked(final, only_dam.drop(columns=["trained"]))
    assert (older["trained"] == "").all() and (older["caution"] == "").all()
    # One seed: the caution does not name it.
    one_seed = _diagnostics({("resnet10t", 0, "dam", "Edema")})
    one_seed = one_seed[one_seed["seed"] == 0]
    assert _marked(final, one_seed).at[("resnet10t", "dam", "Edema"), "caution"] == NOTE


def test_seeds_table_deltas_are_differences_of_per_seed_mean_aucs(study):
    per_seed, _ = study
    seeds = seeds_table(per_seed, n_resamples=30)
    rows = seeds.set_index(["architecture", "method", "seed", "disease"])

    def mean_auc(predictor, method, seed):
        table = per_seed[(predictor, method, seed)]
        return np.mean(
            [roc_auc_score(part["y_true"], part["score"]) for _, part in table.groupby("disease")]
        )

    for predictor in [*ARCHS, "ensemble"]:
        for seed in (0, 1):
            dam, ce, warmup = (mean_auc(predictor, m, seed) for m in ("dam", "ce", "warmup"))
            assert rows.at[(predictor, "dam", seed, MEAN), MINUS_CONTROL] == pytest.approx(dam - ce)
            assert rows.at[(predictor, "dam", seed, MEAN), MINUS_WARMUP] == pytest.approx(
                dam - warmup
            )
            assert rows.at[(predictor, "ce", seed, MEAN), MINUS_WARMUP] == pytest.approx(
                ce - warmup
            )
            assert np.isnan(rows.at[(predictor, "ce", seed, MEAN), MINUS_CONTROL])
            assert np.isnan(rows.at[(predictor, "warmup", seed, MEAN), MINUS_WARMUP])
    # Seed 0 and seed 1 are different training runs: their deltas differ.
    dam = rows.xs(("resnet10t", "dam", MEAN), level=["architecture", "method", "disease"])
    assert dam[MINUS_CONTROL].nunique() == 2


def test_the_auc_figure_names_both_comparisons_and_marks_untrained_rows(study, tmp_path):
    _, final = study
    one_predictor = {key: table for key, table in final.items() if key[0] == "resnet10t"}
    summary = summarize(one_predictor, n_resamples=30)
    comparison = comparison_table(one_predictor, n_resamples=30)

    def drawn(untrained: set) -> str:
        diagnostics = _diagnostics(untrained)
        summary["trained"] = trained_marks(summary, diagnostics, MEMBERS)
        marks = summary.set_index(["architecture", "method", "disease"])["trained"].to_dict()
        compared = comparison.assign(
            trained=[
                marks[k]
                for k in zip(
                    comparison.architecture, comparison.method, comparison.disease, strict=True
                )
            ]
        )
        svg = tmp_path / "auc.svg"
        plot_auc_by_architecture(summary, [svg], dpi=40, comparison=compared)
        return svg.read_text()

    all_trained = drawn(set())
    for label in (VS_CONTROL, VS_WARMUP, "AUC minus CE", "AUC minus warm-up"):
        assert f"<!-- {label} -->" in all_trained, label
    assert "did not train" not in all_trained
    one_untrained = drawn({("resnet10t", s, "dam", "Edema") for s in (0, 1)})
    assert "<!-- did not train -->" in one_untrained
