"""The Snakemake workflow end to end, on a copy of this checkout in a temporary folder."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from deepauc.config.rates import (
    grid_extension,
    lr_label,
)
from deepauc.evaluation.calibration import expected_calibration_error
from deepauc.evaluation.diagnostics import diagnostics_columns
from deepauc.evaluation.summary import VS_CONTROL, VS_WARMUP
from deepauc.methods import METHODS
from tests.conftest import TRAIN_ROWS, VALID_ROWS, copy_timm_index, write_chexpert_csv

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e

# Two of the five diseases keep the DAG small: every job pays seconds of imports.
DISEASES = ["Cardiomegaly", "Edema"]
DISEASE_SLUGS = ["cardiomegaly", "edema"]
TINY = {
    "diseases": DISEASES,
    "synthetic": {
        "enabled": True,
        "n_train_patients": 80,
        "n_valid_patients": 60,
        "image_size": [64, 64],
        "seed": 1,
    },
    "split": {"val_fraction": 0.25, "seed": 0},
    "architectures": ["resnet10t", "efficientvit_b0"],
    "evaluation": {"bootstrap_resamples": 200},
    "figures": {"dpi": 60, "showcase_images": 4},
    "image_size": 32,
    "train_threads": 2,
    "warmup": {"epochs": 1, "batch_size": 16},
    "finetune": {"epochs": 1, "batch_size": 16},
}


def checkout(tmp_path: Path, name: str) -> Path:
    """A copy of the workflow (not of results/), so tests never touch the repo's results."""
    work = tmp_path / name
    work.mkdir()
    for part in ("Snakefile", "workflow", "config", "envs", "src", "profiles"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, work / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, work / part)
    copy_timm_index(work)
    return work


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=1800,
    )


# The 2 x 2's other cells, aucm_adam and bce_pesg, are each a module of deepauc/methods/ and a
# grid in protocol.yaml, nothing else: the DAG, the summary, the comparison and the figures must
# all take them in. One rate each keeps the DAG small.
TWO_BY_TWO = ["dam", "ce", "aucm_adam", "bce_pesg"]
NEW_COLOR = METHODS["aucm_adam"].color
WITH_2X2 = {
    **TINY,
    "finetune": {
        **TINY["finetune"],
        "methods": TWO_BY_TWO,
        "aucm_adam": {"lr": 1e-4},
        "bce_pesg": {"lr": {"adam": 3e-4, "sgd": 0.03}},
    },
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The tiny DAG (default targets, so figures too), run once, with the 2 x 2's methods."""
    work = checkout(tmp_path_factory.mktemp("dag"), "quick")
    (work / "tiny.yaml").write_text(yaml.safe_dump(WITH_2X2))
    run = snakemake(work, "--configfile", "tiny.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    return work


def copy_of(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished run (results and Snakemake's records, times kept) for a test
    that changes or reruns something."""
    work = tmp_path / "copy"
    shutil.copytree(finished, work, symlinks=True)
    return work


def test_whole_dag_writes_splits_models_and_logs(finished):
    data = finished / "results" / "data"
    splits = {s: pd.read_csv(data / f"{s}.csv") for s in ("train", "val", "test")}
    assert list(splits["train"].columns) == ["image", "patient", "study", "view", *DISEASES]
    assert not set(splits["train"]["patient"]) & set(splits["val"]["patient"])
    assert (data / "synthetic_examples.png").stat().st_size > 10_000
    audit = pd.read_csv(data / "label_audit.csv")
    assert len(audit) == 3 * len(DISEASES)
    for split, table in splits.items():
        counts = audit[audit["split"] == split].set_index("disease")
        assert (counts["images"] == len(table)).all()
        assert (counts["positive"] == table[DISEASES].sum()).all()
    models = finished / "results" / "models" / "resnet10t" / "seed0"
    assert (models / "warmup.pt").exists()
    for method in TWO_BY_TWO:
        for disease in DISEASE_SLUGS:
            assert (models / method / f"{disease}.pt").exists(), (method, disease)
            history = pd.read_csv(models / method / f"{disease}.history.csv")
            assert history["val_auc"].between(0, 1).all()
            assert history["step"].iloc[0] == 0  # the starting model is scored too
    assert not list(models.rglob("*.resume"))
    rate = 0.03  # the quick start's PESG sgd rate: resnet10t normalizes with BatchNorm
    log = (finished / f"results/logs/finetune/resnet10t/seed0/dam/lr{rate:g}/edema.log").read_text()
    assert "PESG mode sgd at lr 0.03" in log
    assert "epoch 1/1: train loss" in log
    assert "dual variables from class means" in log
    diagnostics = pd.read_csv(finished / "results" / "diagnostics.csv")
    assert list(diagnostics.columns) == diagnostics_columns()
    assert len(diagnostics) == 2 * 4 * len(DISEASES)  # architectures x methods x diseases
    assert set(diagnostics["collapsed"]) <= {"yes", "no"}
    assert diagnostics.loc[diagnostics["method"] == "ce", "a"].isna().all()
    assert "Nothing to be done" in snakemake(finished, "--configfile", "tiny.yaml").stderr


def test_summary_and_comparison_hold_every_registered_method(finished):
    check_summary(finished)


def test_every_figure_draws_the_new_methods(finished):
    figures = finished / "results" / "figures"
    # drawn in the method's colour
    assert NEW_COLOR in (figures / "auc_by_architecture.svg").read_text()
    # ROC curves tell methods by line style and name each curve with its AUC in the legend
    roc = (figures / "roc_edema.svg").read_text()
    assert re.search(r"<!-- resnet10t, AUCM \+ Adam fine-tune: AUC 0\.\d{3} -->", roc)
    # The training curves colour diseases and tell methods by line style: the legend names it.
    assert "<!-- Edema bce_pesg -->" in (figures / "training_resnet10t.svg").read_text()


def test_the_verdict_answers_for_each_architecture_and_names_the_runs_weakness(finished):
    """results/verdict.md (a default target): each architecture's and the ensemble's answer
    for every method against CE, and the weakness planted in the tiny run, its one seed."""
    text = (finished / "results" / "verdict.md").read_text()
    answers = text.split("## The answer")[1].split("## Every number")[0]
    for predictor in [*TINY["architectures"], "ensemble"]:
        for label in ("DAM", "AUCM + Adam", "BCE + PESG"):
            assert f"**{predictor}, {label}** (1 seed): {label} - CE = " in answers, (
                predictor,
                label,
            )
    comparison = pd.read_csv(finished / "results" / "comparison.csv")
    row = comparison[
        (comparison["comparison"] == VS_CONTROL)
        & (comparison["architecture"] == "resnet10t")
        & (comparison["method"] == "dam")
        & (comparison["disease"] == "mean")
    ].iloc[0]
    assert (
        f"DAM - CE = {row['delta']:+.3f} [{row['delta_low']:+.3f}, {row['delta_high']:+.3f}]"
        in (answers)
    )
    weaknesses = text.split("## What weakens this answer")[1]
    assert "One seed: the intervals carry test-patient noise only" in weaknesses


def test_report_is_written(finished, tmp_path):
    work = copy_of(finished, tmp_path)
    report = snakemake(work, "--configfile", "tiny.yaml", "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    html = (work / "results" / "report.html").read_text()
    assert len(html) > 10_000
    for table in ("summary.csv", "comparison.csv", "calibration.csv", "subgroups.csv"):
        assert table in html, table  # the tables, not only the figures
    assert "model_card.md" in html and "saliency_resnet10t.png" in html
    assert "verdict.md" in html


def test_model_card_and_saliency_figures_are_written(finished):
    results = finished / "results"
    card = (results / "model_card.md").read_text()
    audit = pd.read_csv(results / "data" / "label_audit.csv")
    test_images = int(audit.loc[audit["split"] == "test", "images"].iloc[0])
    for part in (
        "## Data",
        f"| test | Edema | {test_images} |",
        "U-Ones",
        "## Test metrics: `ensemble`, DAM fine-tune",
        "### Calibration",
        "### Subgroups",
        "## Training health",
        "Trained and tested on synthetic phantoms",
        "Trained from scratch",
    ):
        assert part in card, part
    summary = pd.read_csv(results / "summary.csv")
    row = summary[
        (summary["architecture"] == "ensemble")
        & (summary["method"] == "dam")
        & (summary["disease"] == "Edema")
        & (summary["level"] == "image")
    ].iloc[0]
    assert f"{row['auc']:.3f} [{row['auc_low']:.3f}, {row['auc_high']:.3f}]" in card
    for arch in ("resnet10t", "efficientvit_b0"):
        assert (results / "figures" / f"saliency_{arch}.png").stat().st_size > 20_000
        assert "Grad-CAM" in (results / "figures" / f"saliency_{arch}.svg").read_text()


def test_new_images_are_scored_and_a_model_exported_without_retraining(finished, tmp_path):
    """An image set through the exported predictors: its scores are the pipeline's own test
    scores of the same images, unreadable images are listed, labels give metrics, the export
    passes parity and its TorchScript file gives the same numbers. Nothing retrains."""
    work = copy_of(finished, tmp_path)
    test = pd.read_csv(work / "results" / "data" / "test.csv")
    chosen = test[test["Edema"].notna()].head(10)
    rows = [
        {"Path": image, "Edema": int(label)}
        for image, label in zip(chosen["image"], chosen["Edema"], strict=True)
    ]
    (work / "broken.png").write_bytes(b"not an image")
    rows += [{"Path": "broken.png", "Edema": 1}, {"Path": "missing.png", "Edema": 0}]
    pd.DataFrame(rows).to_csv(work / "new_images.csv", index=False)
    overlay = {
        "inference": {
            "predictors": ["resnet10t", "ensemble-selected"],
            "methods": ["dam"],
            "image_sets": {
                "new": {"csv": "new_images.csv"},
                # the dataset's own test CSV as a new set: it must give back the summary
                "again": {"csv": f"{SYNTHETIC_ROOT}/{DATASET}/valid.csv", "root": SYNTHETIC_ROOT},
            },
        }
    }
    (work / "use.yaml").write_text(yaml.safe_dump(overlay))
    target = "results/inference/new.csv"
    args = ("--configfile", "tiny.yaml", "use.yaml", "--", target, "results/inference/again.csv")
    planned = jobs_to_run(work, *args)
    assert planned == {"export_predictor", "score_images"}, planned
    run = snakemake(work, *args)
    assert run.returncode == 0, run.stderr[-3000:]
    scores = pd.read_csv(work / target)
    unreadable = pd.read_csv(work / "results" / "inference" / "new.skipped.csv")
    assert sorted(Path(p).name for p in unreadable["image"]) == ["broken.png", "missing.png"]
    assert scores["image"].nunique() == len(chosen)
    assert set(scores["predictor"]) == {"resnet10t", "ensemble-selected"}
    assert {"probability", "sens90", "sens95"} <= set(scores.columns)
    for predictor in ("resnet10t", "ensemble-selected"):
        pipeline = pd.read_csv(work / f"results/predictions/{predictor}/seed0/dam.csv")
        want = pipeline.set_index(["image", "disease"])
        mine = scores[scores["predictor"] == predictor]
        for row in mine.itertuples():
            key = (os.path.normpath(row.image), row.disease)
            assert row.score == pytest.approx(want.at[key, "score"], abs=1e-4), key
            assert row.probability == pytest.approx(want.at[key, "probability"], abs=1e-4)
    metrics = pd.read_csv(work / "results" / "inference" / "new.metrics.csv")
    assert set(metrics["disease"]) == {"Edema", "mean"}
    assert metrics["auc"].between(0, 1).all()
    again = pd.read_csv(work / "results" / "inference" / "again.metrics.csv")
    summary = pd.read_csv(work / "results" / "summary.csv")
    summary = summary[(summary["level"] == "image") & (summary["method"] == "dam")]
    for predictor in ("resnet10t", "ensemble-selected"):
        mine = again[again["predictor"] == predictor].set_index("disease")
        want = summary[summary["architecture"] == predictor].set_index("disease")
        for column in ("auc", "auc_low", "auc_high", "pauc10", "sens90", "spec90", "n_pos"):
            np.testing.assert_allclose(mine[column], want.loc[mine.index, column], atol=1e-6)
    export = work / "results" / "export" / "ensemble-selected" / "dam"
    parity = pd.read_csv(export / "parity.csv")
    assert (parity["max_abs_difference"] <= 1e-4).all()
    assert len(parity) >= 2 * len(DISEASES)  # every network's logit and the combined scores
    card = yaml.safe_load((export / "card.json").read_text())  # JSON is YAML
    assert card["diseases"] == DISEASES and card["image_size"] == TINY["image_size"]
    assert {n["arch"] for n in card["networks"]} == {"resnet10t", "efficientvit_b0"}
    assert all(len(n["sha256"]) == 64 and "val_auc" in n["training"] for n in card["networks"])
    import torch

    script = torch.jit.load(str(export / "predictor.torchscript.pt"))
    cache = np.load(work / "results" / "data" / "cache" / f"test_{TINY['image_size']}px.npy")
    with torch.no_grad():
        traced = script(torch.from_numpy(cache[:8]))[0].numpy()
    pipeline = pd.read_csv(work / "results/predictions/ensemble-selected/seed0/dam.csv")
    want = pipeline.set_index(["image", "disease"])["score"]
    for i, image in enumerate(test["image"][:8]):
        for j, disease in enumerate(DISEASES):
            if (image, disease) in want.index:
                assert traced[i, j] == pytest.approx(want[(image, disease)], abs=1e-4)


SYNTHETIC_ROOT = "results/synthetic"
DATASET = "CheXpert-v1.0-small"
SUMMARY = "results/summary.csv"
TRAINING_RULES = {"warmup", "finetune", "predict"}
RUNTIME_CHANGES = {
    "compile": {"compile": True},
    "images_on_gpu": {"images_on_gpu": "never"},
    "train_threads": {"train_threads": 1},
    "gpus_per_job 0 -> 1": {"gpus_per_job": 1},
    "processes_per_job": {"processes_per_job": 1},
    "device": {"device": "cpu"},
    "evaluation batch size": {"evaluation": {"batch_size": 16}},
}


@pytest.mark.parametrize("case", list(RUNTIME_CHANGES))
def test_a_runtime_key_change_reruns_no_training(finished, tmp_path, case):
    (tmp_path / "change.yaml").write_text(yaml.safe_dump(RUNTIME_CHANGES[case]))
    planned = jobs_to_run(
        finished, "--configfile", "tiny.yaml", str(tmp_path / "change.yaml"), "--", SUMMARY
    )
    assert not planned & TRAINING_RULES, planned


def _planned_finetunes(finished, tmp_path, change: dict) -> dict[str, set[str]]:
    """The rules a dry run plans after ``change`` to the tiny config, and the methods of the
    fine-tunes among them."""
    config = yaml.safe_load(yaml.safe_dump(WITH_2X2))
    for section, values in change.items():
        for key, value in values.items():
            if isinstance(value, dict):
                config[section][key] = {**config[section].get(key, {}), **value}
            else:
                config[section][key] = value
    config["accept_changes"] = True  # a change of the finished run's experiment, on purpose
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(finished, "--configfile", str(tmp_path / "changed.yaml"), "--", SUMMARY)
    return {
        "rules": {rule for rule, _ in jobs},
        "finetune": {w["method"] for rule, w in jobs if rule == "finetune"},
        "finetune_jobs": sum(rule == "finetune" for rule, _ in jobs),
        "warmup_jobs": sum(rule == "warmup" for rule, _ in jobs),
    }


def test_a_method_setting_reruns_that_method_only(finished, tmp_path):
    ce = _planned_finetunes(finished, tmp_path, {"finetune": {"ce": {"lr": 3e-4}}})
    assert ce["finetune"] == {"ce"} and ce["finetune_jobs"] == 2 * len(DISEASE_SLUGS)
    assert {"predict", "summarize"} <= ce["rules"] and "warmup" not in ce["rules"]
    dam = _planned_finetunes(finished, tmp_path, {"finetune": {"dam": {"lr": 0.05}}})
    assert dam["finetune"] == {"dam"}
    new = _planned_finetunes(finished, tmp_path, {"finetune": {"aucm_adam": {"margin": 0.5}}})
    assert new["finetune"] == {"aucm_adam"}


def test_a_shared_setting_reruns_all_training(finished, tmp_path):
    warmup = _planned_finetunes(finished, tmp_path, {"warmup": {"lr": 3e-3}})
    assert warmup["warmup_jobs"] == 2
    assert warmup["finetune_jobs"] == 2 * 4 * len(DISEASE_SLUGS)  # archs x methods x diseases
    shared = _planned_finetunes(finished, tmp_path, {"finetune": {"epochs": 2}})
    assert shared["warmup_jobs"] == 0 and shared["finetune_jobs"] == 2 * 4 * len(DISEASE_SLUGS)


def test_a_plot_change_reruns_the_plot_and_nothing_upstream(finished, tmp_path):
    work = copy_of(finished, tmp_path)
    plots = work / "src" / "deepauc" / "evaluation" / "plots.py"
    plots.write_text(plots.read_text() + "\n# a change to the plotting code\n")
    figure = "results/figures/auc_by_architecture.png"
    assert jobs_to_run(work, "--configfile", "tiny.yaml", "--", figure) == {
        "plot_auc_by_architecture"
    }
    (work / "dpi.yaml").write_text(yaml.safe_dump({"figures": {"dpi": 80}}))
    run = snakemake(work, "--configfile", "tiny.yaml", "dpi.yaml", "--", figure)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "localrule plot_auc_by_architecture" in run.stderr
    assert "localrule summarize" not in run.stderr and "rule predict" not in run.stderr


def test_a_command_that_forgets_the_runs_overlay_is_refused(finished):
    """The finished run was made with tiny.yaml: the quick start's config alone (the overlay
    forgotten) is another experiment, refused before anything is planned or written."""
    record = (finished / "results" / "experiment.yaml").read_bytes()
    for args in (["--dry-run"], []):
        run = snakemake(finished, *args, "--", SUMMARY)
        output = run.stdout + run.stderr
        assert run.returncode != 0 and "results/ belong to the experiment" in output
        assert "architectures: [resnet10t, efficientvit_b0] -> [resnet10t, convnext_atto]" in output
    assert (finished / "results" / "experiment.yaml").read_bytes() == record


def test_a_copied_or_moved_results_folder_reruns_nothing(finished, tmp_path):
    """`cp -a` of a finished run (workflow, results and Snakemake's records), then a move of
    the copy: a dry run of the default targets plans no job in either."""
    work = copy_of(finished, tmp_path)
    assert planned_jobs(work, "--configfile", "tiny.yaml") == []
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    work.rename(moved)
    assert planned_jobs(moved, "--configfile", "tiny.yaml") == []


def test_same_config_and_seed_give_byte_identical_answers(finished, tmp_path):
    """One architecture's chain again from the data up (synthetic images, splits, caches,
    warm-up, fine-tunes, test scores), on a CPU: byte-identical predictions."""
    work = copy_of(finished, tmp_path)
    target = "results/predictions/resnet10t/seed0/dam.csv"
    first = (work / target).read_bytes()
    again = snakemake(
        work, "--configfile", "tiny.yaml", "--forcerun", "synthesize_dataset", "--", target
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "rule warmup" in again.stderr and "rule finetune" in again.stderr
    assert (work / target).read_bytes() == first


def test_chexpert_config_reads_the_same_download_into_the_same_splits(finished, tmp_path):
    """The synthetic download through config/chexpert.yaml, as a user with real CheXpert would
    run it."""
    real = checkout(tmp_path, "real")
    (real / "split.yaml").write_text(yaml.safe_dump({"split": TINY["split"], "diseases": DISEASES}))
    downloaded = finished / "results" / "synthetic"
    run = snakemake(
        real,
        "--configfile",
        "config/chexpert.yaml",
        "split.yaml",
        "--config",
        f"data_root={downloaded}",
        "--",
        "results/data/train.csv",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for split in ("train", "val", "test"):
        again = pd.read_csv(real / "results" / "data" / f"{split}.csv")
        expected = pd.read_csv(finished / "results" / "data" / f"{split}.csv")
        assert again.drop(columns="image").equals(expected.drop(columns="image")), split


def test_a_best_rate_on_an_edge_of_its_grid_plans_one_more_rate(finished, tmp_path):
    """A grid of two rates: whichever wins lies on an edge, so the search adds one rate past
    it, and a dry run plans that one fine-tune (the grid's own already ran)."""
    work = copy_of(finished, tmp_path)
    grid = yaml.safe_load(yaml.safe_dump(WITH_2X2))
    grid["finetune"].update(methods=["ce"], grid_extensions=1, ce={"lr": [1e-4, 3e-4]})
    grid["figures"]["showcase_method"] = "ce"
    grid["accept_changes"] = True  # the finished run's experiment, changed on purpose
    (work / "grid.yaml").write_text(yaml.safe_dump(grid))
    search = "results/models/resnet10t/seed0/ce/search/edema.round0.csv"
    run = snakemake(work, "--configfile", "grid.yaml", "--", search)
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(work / search)
    assert list(table["lr"]) == [1e-4, 3e-4] and (table["added_in_round"] == 0).all()
    chosen = float(table.loc[table["chosen"], "lr"].iloc[0])
    extra = grid_extension([1e-4, 3e-4], chosen)
    assert extra == (3e-5 if chosen == 1e-4 else 1e-3)  # one step of the grid past its edge
    model = "results/models/resnet10t/seed0/ce/edema.pt"
    jobs = planned_jobs(work, "--configfile", "grid.yaml", "--", model)
    assert [w["lr"] for rule, w in jobs if rule == "finetune"] == [lr_label(extra)]
    assert {rule for rule, _ in jobs} == {"finetune", "select_lr"}
    # run, the rates table records the extension; at the cap, the grid grows no further
    run = snakemake(work, "--configfile", "grid.yaml", "--", model)
    assert run.returncode == 0, run.stderr[-3000:]
    changes = yaml.safe_load((work / "results" / "experiment.yaml").read_text())["changes"]
    assert "finetune.methods: [dam, ce, aucm_adam, bce_pesg] -> [ce]" in changes[-1]["changed"]
    rates = pd.read_csv(work / "results/models/resnet10t/seed0/ce/edema.rates.csv")
    assert dict(zip(rates["lr"], rates["added_in_round"], strict=True))[extra] == 1
    assert len(rates) == 3 and rates["chosen"].sum() == 1


def jobs_to_run(work: Path, *args: str) -> set[str]:
    """The rules a dry run would execute."""
    run = snakemake(work, "--dry-run", "--quiet", "rules", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = (run.stdout + run.stderr).splitlines()
    counts = [
        line.split() for line in lines if len(line.split()) == 2 and line.split()[1].isdigit()
    ]
    return {name for name, _ in counts if name != "total"}


def check_summary(work: Path) -> None:
    """summary.csv has the promised schema, and each AUC is recomputed from its predictions."""
    results = work / "results"
    summary = pd.read_csv(results / "summary.csv")
    assert list(summary.columns) == [
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
        "trained",
        "caution",
    ]
    predictors = {"resnet10t", "efficientvit_b0", "ensemble", "ensemble-selected"}
    assert set(summary["architecture"]) == predictors
    # study rows after the image rows, the same predictors (one frontal view per study here)
    assert list(dict.fromkeys(summary["level"])) == ["image", "study"]
    studies = summary[summary["level"] == "study"]
    summary = summary[summary["level"] == "image"]
    assert len(studies) == len(summary)
    # a row whose test split has fewer than ten cases of a class says so
    summary["caution"] = summary["caution"].fillna("")
    for row in summary[summary["disease"] != "mean"].itertuples():
        few = min(row.n_pos, row.n_neg) < 10
        assert few == ("test positives" in row.caution or "test negatives" in row.caution), row
    assert set(summary["method"]) == {"warmup", *TWO_BY_TWO}
    assert set(summary["disease"]) == {*DISEASES, "mean"}
    for column in ("auc", "auc_low", "auc_high", "pauc10", "pauc20_high", "auprc"):
        assert summary[column].between(0, 1).all(), column
    assert (summary["auc_low"] <= summary["auc"]).all() and (
        summary["auc"] <= summary["auc_high"]
    ).all()
    for row in summary[summary["disease"] != "mean"].itertuples():
        table = pd.read_csv(
            results / "predictions" / row.architecture / "seed0" / f"{row.method}.csv"
        )
        table = table[table["disease"] == row.disease]
        assert row.auc == pytest.approx(roc_auc_score(table["y_true"], table["score"]))
        assert row.pauc10 == pytest.approx(
            roc_auc_score(table["y_true"], table["score"], max_fpr=0.1)
        )
        assert (row.n_pos, row.n_neg) == (
            int(table["y_true"].sum()),
            int((table["y_true"] == 0).sum()),
        )
        # sensitivity at the threshold that gave 90% specificity on val, by hand
        val = pd.read_csv(
            results / "predictions" / row.architecture / "seed0" / f"{row.method}.val.csv"
        )
        val = val[val["disease"] == row.disease]
        negatives = np.sort(val.loc[val["y_true"] == 0, "score"].to_numpy())
        threshold = negatives[int(np.ceil(0.9 * len(negatives) - 1e-9)) - 1]
        positives = table.loc[table["y_true"] == 1, "score"]
        assert row.sens90 == pytest.approx((positives > threshold).mean())
        assert row.sens90_low <= row.sens90 <= row.sens90_high
        # probabilities: increasing in the score (calibration keeps every AUC) and in [0, 1]
        ordered = table.sort_values("score")
        assert ordered["probability"].is_monotonic_increasing
        assert ordered["probability"].between(0, 1).all()
    comparison = pd.read_csv(results / "comparison.csv")
    assert list(comparison.columns) == [
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
        *[
            f"{metric}_{part}"
            for metric in ("pauc10", "pauc20", "sens90", "sens95")
            for part in ("delta", "delta_low", "delta_high", "p")
        ],
        "trained",
    ]
    assert comparison["p_value"].between(0, 1).all()
    assert comparison["pauc20_p"].between(0, 1).all()
    assert set(comparison["method"]) == set(TWO_BY_TWO)
    assert set(comparison["control"]) == {"ce", "warmup"}
    # both comparisons, each named: against CE (dam, aucm_adam, bce_pesg), against the warm-up
    # (all four)
    assert set(comparison["comparison"]) == {VS_CONTROL, VS_WARMUP}
    assert len(comparison) == 4 * (3 + 4) * (len(DISEASES) + 1)  # predictors x pairs x rows
    ours = summary.set_index(["architecture", "method", "disease"])["auc"]
    for row in comparison.itertuples():
        assert row.auc == pytest.approx(ours[(row.architecture, row.method, row.disease)])
        assert row.auc_control == pytest.approx(ours[(row.architecture, row.control, row.disease)])
        assert row.delta_low <= row.delta <= row.delta_high
        pauc = summary.set_index(["architecture", "method", "disease"])["pauc20"]
        got = pauc[(row.architecture, row.method, row.disease)]
        against = pauc[(row.architecture, row.control, row.disease)]
        assert row.pauc20_delta == pytest.approx(got - against)
    check_clinical_tables(results, summary)
    for name in (
        "auc_by_architecture",
        "showcase_grid",
        "roc_edema",
        "training_resnet10t",
        "reliability",
        "subgroups",
    ):
        assert (results / "figures" / f"{name}.png").stat().st_size > 5_000, name
    assert (results / "figures" / "auc_by_architecture.svg").exists()


def check_clinical_tables(results: Path, summary: pd.DataFrame) -> None:
    """calibration.csv recomputed from the tables, ensemble weights that pick the members on val,
    subgroups with their small groups marked."""
    calibration = pd.read_csv(results / "calibration.csv")
    assert len(calibration) == len(summary[summary["disease"] != "mean"])
    for row in calibration.itertuples():
        table = pd.read_csv(
            results / "predictions" / row.architecture / "seed0" / f"{row.method}.csv"
        )
        table = table[table["disease"] == row.disease]
        # the tables hold probabilities to the precision CSV writes them
        assert row.ece_after == pytest.approx(
            expected_calibration_error(table["y_true"], table["probability"]), abs=1e-4
        )
        assert row.brier_before == pytest.approx(
            float(np.mean((1 / (1 + np.exp(-table["score"])) - table["y_true"]) ** 2)), abs=1e-6
        )
    weights = pd.read_csv(results / "ensemble_weights.csv")
    assert set(weights["member"]) == {"resnet10t", "efficientvit_b0"}
    sums = weights.groupby(["architecture", "method", "seed", "disease"])["weight"].sum()
    assert np.allclose(sums, 1.0)
    for (method, disease), rows in weights.groupby(["method", "disease"]):
        # on val, the val-weighted ensemble is never below its best member
        val = {
            name: pd.read_csv(results / "predictions" / name / "seed0" / f"{method}.val.csv")
            for name in ("ensemble-selected", *rows["member"])
        }
        val = {k: v[v["disease"] == disease] for k, v in val.items()}
        aucs = {k: roc_auc_score(v["y_true"], v["score"]) for k, v in val.items()}
        assert aucs["ensemble-selected"] >= max(aucs["resnet10t"], aucs["efficientvit_b0"]) - 1e-12
    subgroups = pd.read_csv(results / "subgroups.csv")
    assert set(subgroups["attribute"]) == {"sex", "age", "projection"}
    small = subgroups[["n_pos", "n_neg"]].min(axis=1) < 10
    assert (subgroups["small"] == small).all()


def planned_jobs(work: Path, *args: str) -> list[tuple[str, dict[str, str]]]:
    """The jobs a dry run would execute: (rule, wildcards) each."""
    run = snakemake(work, "--dry-run", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    jobs, rule = [], None
    for line in (run.stdout + run.stderr).splitlines():
        words = line.split()
        if (
            len(words) == 2
            and words[0] in ("rule", "localrule", "checkpoint", "localcheckpoint")
            and words[1].endswith(":")
        ):
            rule = words[1].rstrip(":")
            jobs.append((rule, {}))
        elif rule and line.strip().startswith("wildcards:"):
            pairs = line.split(":", 1)[1].split(",")
            jobs[-1][1].update(pair.strip().split("=", 1) for pair in pairs)
        elif not line.strip():
            rule = None
    return jobs


def test_missing_download_says_which_key_to_set(tmp_path):
    work = checkout(tmp_path, "missing")
    run = snakemake(
        work, "--configfile", "config/chexpert.yaml", "--config", f"data_root={tmp_path / 'nope'}"
    )
    assert run.returncode != 0
    assert "CheXpert-v1.0-small/train.csv not found" in run.stderr
    assert "--config data_root=" in run.stderr


def test_bad_label_fails_cleanly_without_partial_outputs(tmp_path):
    root = tmp_path / "download"
    bad = [
        *TRAIN_ROWS[:4],
        (TRAIN_ROWS[4][0], "Frontal", ["1.0", "2.0", "", "", ""]),
        *TRAIN_ROWS[5:],
    ]
    write_chexpert_csv(root / "CheXpert-v1.0-small" / "train.csv", bad)
    write_chexpert_csv(root / "CheXpert-v1.0-small" / "valid.csv", VALID_ROWS)
    work = checkout(tmp_path, "bad")
    run = snakemake(
        work,
        "--configfile",
        "config/chexpert.yaml",
        "--config",
        f"data_root={root}",
        "check_images=False",  # Snakemake reads True/False (capitalised) as booleans
        "--",
        "results/data/train.csv",
    )
    assert run.returncode != 0
    assert "train.csv, line 6: column 'Edema' holds '2.0'" in run.stderr
    assert "Traceback" not in (work / "results" / "logs" / "preprocess.log").read_text()
    assert not (work / "results" / "data").exists()


def test_seeds_and_subsets_add_their_ensembles_to_the_dag(tmp_path):
    work = checkout(tmp_path, "seeds")
    config = {
        **TINY,
        "seeds": [0, 1],
        "ensemble": {"subsets": {"ensemble_small": ["resnet10t"]}},
    }
    (work / "seeds.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(work, "--configfile", "seeds.yaml", "--dry-run")
    assert run.returncode == 0, run.stderr[-3000:]
    for expected in (
        "results/seeds.csv",
        "results/predictions/ensemble/seeds/dam.csv",
        "results/predictions/ensemble_small/seed1/ce.csv",
        "results/models/efficientvit_b0/seed1/warmup.pt",
    ):
        assert expected in run.stdout + run.stderr, expected


def test_ensemble_subset_of_unknown_architectures_is_refused(tmp_path):
    work = checkout(tmp_path, "subsets")
    (work / "bad.yaml").write_text(
        yaml.safe_dump({**TINY, "ensemble": {"subsets": {"pair": ["resnet10t", "vgg99"]}}})
    )
    run = snakemake(work, "--configfile", "bad.yaml", "--dry-run")
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "config key ensemble.subsets.pair" in output and "vgg99" in output


WARMUP_TARGET = "results/models/resnet10t/seed0/warmup.pt"


def _default_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def _interrupt_after_first_epoch(tmp_path: Path, signum: int) -> tuple[Path, list[str]]:
    """Start Snakemake on a 6-epoch warm-up and send ``signum`` to it and its jobs (the process
    group) once the first epoch's resume file is saved. Returns the workflow copy and the
    command to run it again. (With 3 epochs the two left could finish before the signal
    landed on a quiet machine: the job ended and the test found its model.)"""
    work = checkout(tmp_path, "interrupted")
    config = {**TINY, "architectures": ["resnet10t"], "warmup": {"epochs": 6, "batch_size": 16}}
    (work / "tiny.yaml").write_text(yaml.safe_dump(config))
    resume = work / (WARMUP_TARGET + ".resume")
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "tiny.yaml"]
    process = subprocess.Popen(
        [*command, "--", WARMUP_TARGET],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # As from a terminal: Ctrl-C's default action. An ignored SIGINT is inherited (a shell
        # without job control ignores it in `pytest ... &`), Python then never raises
        # KeyboardInterrupt, and the job ran to its end: this test failed in such runs only.
        preexec_fn=_default_signals,
    )
    try:
        deadline = time.monotonic() + 300
        while not resume.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert resume.exists(), "the job never finished an epoch"
        os.killpg(process.pid, signum)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert not (work / WARMUP_TARGET).exists()
    assert resume.exists()
    return work, command


def _assert_resumed_and_finished(work: Path, signum: int) -> None:
    log = (work / "results/logs/warmup/resnet10t/seed0.log").read_text()
    # the rerun's log holds the first run's epoch too (Snakemake deleted the log in between)
    assert "warmup resnet10t epoch 1/6: train loss" in log
    assert log.index("epoch 1/6") < log.index("this job starts again") < log.index("epoch 6/6")
    if signum == signal.SIGKILL:
        assert "resuming after epoch" in log
    else:  # stopped at its step (or between two epochs), and continued from there
        stopped = re.search(
            rf"stopped by {signal.Signals(signum).name} after step (\d+) \((.*?)\)", log
        )
        assert stopped, log[-3000:]
        step, where = stopped.groups()
        if where.startswith("epoch"):
            assert f"resuming at step {step} ({where.replace('batch', 'after batch')} of" in log
        else:
            assert "resuming after epoch" in log
    history = pd.read_csv(work / "results/models/resnet10t/seed0/warmup.history.csv")
    assert history["epoch"].tolist() == list(range(7))  # step 0, then each of 6 epochs
    assert (work / WARMUP_TARGET).exists()
    assert not (work / (WARMUP_TARGET + ".resume")).exists()


def test_killed_training_job_resumes_after_its_last_epoch(tmp_path):
    # SIGKILL, as a cluster's OOM killer or a power cut would.
    work, _ = _interrupt_after_first_epoch(tmp_path, signal.SIGKILL)

    # A killed Snakemake leaves its lock: README's recovery is --unlock, then the same command.
    assert snakemake(work, "--configfile", "tiny.yaml", "--unlock").returncode == 0
    run = snakemake(work, "--configfile", "tiny.yaml", "--rerun-incomplete", "--", WARMUP_TARGET)
    assert run.returncode == 0, run.stderr[-3000:]
    _assert_resumed_and_finished(work, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_snakemake_resumes_with_the_same_command(tmp_path, signum):
    """Ctrl-C, or a scheduler's SIGTERM, to Snakemake and its jobs (the process group)
    mid-training: the same command again finishes the job from its last epoch, no unlock needed.
    (SIGTERM to Snakemake alone lets the running job finish: nothing is lost either way.)"""
    work, command = _interrupt_after_first_epoch(tmp_path, signum)
    run = subprocess.run(
        [*command, "--", WARMUP_TARGET], cwd=work, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    _assert_resumed_and_finished(work, signum)


def test_unknown_architecture_is_refused_before_any_job(tmp_path):
    work = checkout(tmp_path, "arch")
    (work / "bad.yaml").write_text(yaml.safe_dump({**TINY, "architectures": ["densenet_169"]}))
    run = snakemake(work, "--configfile", "bad.yaml", "--", "results/summary.csv")
    assert run.returncode != 0
    assert "config key architectures: unknown timm model 'densenet_169'" in run.stderr
    assert "did you mean densenet169" in run.stderr
    assert not (work / "results").exists()  # not even the synthetic data was started


def _real_data(root: Path, valid: bool = True) -> Path:
    write_chexpert_csv(root / "CheXpert-v1.0-small" / "train.csv", TRAIN_ROWS)
    if valid:
        write_chexpert_csv(root / "CheXpert-v1.0-small" / "valid.csv", VALID_ROWS)
    return root


BAD_CONFIGS = {
    "epochs not positive": ({"warmup": {"epochs": 0}}, ["epochs", "minimum"]),
    "sampling rate outside (0, 1)": ({"finetune": {"sampling_rate": 1.5}}, ["sampling_rate"]),
    "unknown disease": ({"diseases": ["Edemaa"]}, ["'Edemaa' is not one of", "['diseases']"]),
    "unknown uncertainty policy": (
        {"uncertainty": {"Edema": "maybe"}},
        ["uncertainty", "maybe"],
    ),
    "missing data root": (
        {"synthetic": {"enabled": False}, "data_root": "{tmp}/nowhere"},
        ["train.csv not found", "data_root"],
    ),
    "empty data root": (
        {"synthetic": {"enabled": False}, "data_root": "{tmp}/empty"},
        ["train.csv not found", "data_root"],
    ),
    "unknown fine-tune method": (
        {"finetune": {"methods": ["dam", "focal"]}},
        [
            "unknown fine-tune method 'focal'",
            "finetune.methods",
            "registered methods: aucm_adam, bce_pesg, ce, compositional, dam, pauc",
        ],
    ),
    "section of no method": (
        {"finetune": {"methods": ["dam"], "damm": {"lr": 0.1}}},
        ["config key finetune.damm", "unknown setting 'damm'", "did you mean 'dam'?"],
    ),
    "a misspelt key in a section of sections": (
        {"finetune": {"epoch": 2}},
        ["config key finetune.epoch", "in section finetune", "did you mean 'epochs'?"],
    ),
    "a misspelt key in an override": (
        {"finetune": {"overrides": {"resnet10t": {"dam": {"lrr": 0.1}}}}},
        ["finetune.overrides.resnet10t.dam.lrr", "did you mean 'lr'?"],
    ),
    "test CSV missing": (
        {"synthetic": {"enabled": False}, "data_root": "{tmp}/no_valid"},
        ["valid.csv not found", "test_csv"],
    ),
    "an inference predictor not trained": (
        {"inference": {"predictors": ["convnext_tiny"]}},
        ["config key inference", "'convnext_tiny'", "ensemble-selected"],
    ),
    "an image set with neither csv nor folder": (
        {"inference": {"image_sets": {"ward": {"root": "/data"}}}},
        ["inference.image_sets.ward", "csv", "folder"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_refused_before_any_job_with_the_key_named(tmp_path, case):
    (tmp_path / "empty").mkdir()
    _real_data(tmp_path / "no_valid", valid=False)
    override, expected = BAD_CONFIGS[case]
    override = yaml.safe_load(yaml.safe_dump(override).replace("{tmp}", str(tmp_path)))
    work = checkout(tmp_path, "config")
    config = {**TINY, **override}
    if "synthetic" in override:
        config["synthetic"] = {**TINY["synthetic"], **override["synthetic"]}
    (work / "bad.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(work, "--configfile", "bad.yaml", "--", "results/summary.csv")
    assert run.returncode != 0
    for words in expected:
        assert words in run.stderr, (words, run.stderr[-2000:])
    assert not (work / "results").exists()
