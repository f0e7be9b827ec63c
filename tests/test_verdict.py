"""results/verdict.md: the write-up's question answered in plain words, with what weakens it."""

import pandas as pd

from deepauc.evaluation.summary import VS_CONTROL, VS_WARMUP
from deepauc.evaluation.verdict import answer, verdict

FACTS = {
    "architectures": ["convnext_tiny", "densenet169"],
    "predictors": ["convnext_tiny", "densenet169", "ensemble"],
    "seeds": [0, 1, 2, 3, 4],
    "diseases": ["Edema", "Cardiomegaly"],
    "methods": ["dam", "ce", "aucm_adam"],
    "image_size": 224,
    "pretrained": "weights/",
    "synthetic": False,
    "dataset": "train.csv (train and val), valid.csv (test)",
}


def _row(comparison, predictor, method, control, delta, low, high, **extra):
    return {
        "comparison": comparison,
        "architecture": predictor,
        "disease": "mean",
        "method": method,
        "control": control,
        "delta": delta,
        "delta_low": low,
        "delta_high": high,
        "p_reported": extra.pop("p", "0.50"),
        "p_mc_error": 0.004,
        "n_seeds": 5,
        "seed_delta_low": low + 0.001,
        "seed_delta_high": high - 0.001,
        "seed_p": 0.2,
        "trained": extra.pop("trained", "yes"),
    }


def _comparison():
    rows = []
    for predictor, dam in [
        ("convnext_tiny", (-0.010, -0.021, -0.002)),
        ("densenet169", (0.012, 0.004, 0.020)),
        ("ensemble", (-0.001, -0.008, 0.006)),
    ]:
        rows.append(_row(VS_CONTROL, predictor, "dam", "ce", *dam, p="0.020"))
        rows.append(_row(VS_CONTROL, predictor, "aucm_adam", "ce", 0.0, -0.01, 0.01))
        for method, gain in (("dam", 0.024), ("aucm_adam", 0.03), ("ce", 0.034)):
            rows.append(
                _row(VS_WARMUP, predictor, method, "warmup", gain, gain - 0.01, gain + 0.01)
            )
    return pd.DataFrame(rows)


def _audit(test_positives=7):
    """label_audit.csv: Edema with ``test_positives`` test positives, every other count ample."""
    return pd.DataFrame(
        [
            (split, disease, test_positives if (split, disease) == ("test", "Edema") else 40, 150)
            for split in ("train", "val", "test")
            for disease in FACTS["diseases"]
        ],
        columns=["split", "disease", "positive", "negative"],
    )


def _diagnostics(changes=None):
    rows = [
        {
            "architecture": arch,
            "seed": seed,
            "method": method,
            "disease": disease,
            "trained": "yes",
            "failure": "",
            "sunk_rates": 0,
            "collapsed_rates": 0,
            "weak_start": "no",
        }
        for arch in FACTS["architectures"]
        for seed in FACTS["seeds"]
        for method in FACTS["methods"]
        for disease in FACTS["diseases"]
    ]
    table = pd.DataFrame(rows)
    for (arch, method, disease), values in (changes or {}).items():
        where = (
            (table["architecture"] == arch)
            & (table["method"] == method)
            & (table["disease"] == disease)
        )
        for column, value in values.items():
            table.loc[where, column] = value
    return table


def test_answers_read_the_interval_not_the_point():
    assert answer(0.01, 0.002, 0.02) == "ahead"
    assert answer(-0.01, -0.02, -0.001) == "behind"
    assert answer(-0.01, -0.021, 0.000) == "no difference this run can detect"


def test_the_verdict_answers_for_every_predictor_and_method_beside_the_writeups_comparison():
    text = verdict(_comparison(), _diagnostics(), _audit(), FACTS)
    assert "**convnext_tiny, DAM** (5 seeds): DAM - CE = -0.010 [-0.021, -0.002]" in text
    assert "DAM is behind CE at equal compute" in text
    assert "**densenet169, DAM**" in text and "DAM is ahead of CE at equal compute" in text
    assert "no difference this run can detect between DAM and CE" in text  # the ensemble
    assert "**ensemble, AUCM + Adam**" in text
    assert "p 0.020 (+-0.004)" in text and "The seeds alone (t-interval): [-0.020, -0.003]" in text
    assert "DAM gains +0.024 [+0.014, +0.034], and CE given the same epochs +0.034" in text
    assert "from the starting weights in weights/" in text and "5 seeds" in text
    # the weakness this run has: few positives; not one seed
    assert "Edema: only 7 test positives" in text
    assert "Some of its fine-tunes did not train" not in text  # every one trained
    assert "One seed" not in text


def test_every_weakness_is_said():
    diagnostics = _diagnostics(
        {
            ("convnext_tiny", "dam", "Edema"): {
                "failure": "scores sank into the sigmoid's floor at 2 of 3 rates",
                "sunk_rates": 2,
                "weak_start": "yes",
            },
            ("densenet169", "dam", "Cardiomegaly"): {"trained": "no"},
        }
    )
    facts = {**FACTS, "seeds": [0]}
    text = verdict(_comparison(), diagnostics, _audit(), facts)
    weak = text.split("## What weakens this answer")[1].split("## What it cannot say")[0]
    assert "One seed" in weak
    assert "convnext_tiny, DAM: 5 of 10 fine-tunes failed (scores sank): Edema." in weak
    assert "densenet169, DAM: 5 of 10 fine-tunes did not train: Cardiomegaly." in weak
    assert "convnext_tiny: the warm-up barely ranks Edema" in weak
    clean = verdict(_comparison(), _diagnostics(), _audit(test_positives=40), FACTS)
    assert "Nothing this pipeline checks for was found." in clean
