"""The Snakemake workflow end to end, on a copy of this checkout in a temporary folder."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from tests.conftest import DISEASES, TRAIN_ROWS, VALID_ROWS, write_chexpert_csv

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e

TINY = {
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
    return work


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_whole_dag_on_a_tiny_config(tmp_path):
    work = checkout(tmp_path, "quick")
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run = snakemake(work, "--configfile", "tiny.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    data = work / "results" / "data"
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
    models = work / "results" / "models" / "resnet10t" / "seed0"
    assert (models / "warmup.pt").exists()
    for method in ("dam", "ce"):
        for disease in (
            "cardiomegaly",
            "edema",
            "consolidation",
            "atelectasis",
            "pleural_effusion",
        ):
            assert (models / method / f"{disease}.pt").exists(), (method, disease)
            history = pd.read_csv(models / method / f"{disease}.history.csv")
            assert history["val_auc"].between(0, 1).all()
    assert not list(models.rglob("*.resume"))
    log = (work / "results/logs/finetune/resnet10t/seed0/dam/edema.log").read_text()
    assert "epoch 1/1: train loss" in log
    check_summary(work)
    assert "Nothing to be done" in snakemake(work, "--configfile", "tiny.yaml").stderr

    # A change to the plotting code or a plot setting reruns the plot rule and nothing upstream.
    plots = work / "src" / "deepauc" / "plots.py"
    plots.write_text(plots.read_text() + "\n# a change to the plotting code\n")
    figure = "results/figures/auc_by_architecture.png"
    assert jobs_to_run(work, "--configfile", "tiny.yaml", "--", figure) == {
        "plot_auc_by_architecture"
    }
    (work / "dpi.yaml").write_text(yaml.safe_dump({"figures": {"dpi": 80}}))
    run = snakemake(work, "--configfile", "tiny.yaml", "dpi.yaml", "--", figure)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "localrule plot_auc_by_architecture" in run.stderr
    assert "localrule summarize" not in run.stderr and "localrule predict" not in run.stderr

    report = snakemake(work, "--configfile", "tiny.yaml", "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    assert (work / "results" / "report.html").stat().st_size > 10_000

    # Same config and seed on CPU: every job again from the data up, byte-identical answers.
    first = {
        name: (work / "results" / name).read_bytes() for name in ("summary.csv", "comparison.csv")
    }
    again = snakemake(
        work,
        "--configfile",
        "tiny.yaml",
        "--forcerun",
        "synthesize_dataset",
        "--",
        "results/summary.csv",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "localrule warmup" in again.stderr
    for name, content in first.items():
        assert (work / "results" / name).read_bytes() == content, name

    # The same download through config/chexpert.yaml, as a user with real CheXpert would run it.
    real = checkout(tmp_path, "real")
    (real / "split.yaml").write_text(yaml.safe_dump({"split": TINY["split"]}))
    downloaded = work / "results" / "synthetic"
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
        assert again.drop(columns="image").equals(splits[split].drop(columns="image")), split


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
        "auc",
        "auc_low",
        "auc_high",
        "auprc",
        "n_pos",
        "n_neg",
    ]
    assert set(summary["architecture"]) == {"resnet10t", "efficientvit_b0", "ensemble"}
    assert set(summary["method"]) == {"warmup", "ce", "dam"}
    assert set(summary["disease"]) == {*DISEASES, "mean"}
    for column in ("auc", "auc_low", "auc_high", "auprc"):
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
        assert (row.n_pos, row.n_neg) == (
            int(table["y_true"].sum()),
            int((table["y_true"] == 0).sum()),
        )
    comparison = pd.read_csv(results / "comparison.csv")
    assert list(comparison.columns) == [
        "architecture",
        "disease",
        "auc_ce",
        "auc_dam",
        "delta",
        "p_value",
    ]
    assert comparison["p_value"].between(0, 1).all()
    for name in ("auc_by_architecture", "showcase_grid", "roc_edema", "training_resnet10t"):
        assert (results / "figures" / f"{name}.png").stat().st_size > 5_000, name
    assert (results / "figures" / "auc_by_architecture.svg").exists()


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
    assert "ensemble 'pair'" in output and "vgg99" in output


WARMUP_TARGET = "results/models/resnet10t/seed0/warmup.pt"


def _interrupt_after_first_epoch(tmp_path: Path, signum: int) -> tuple[Path, list[str]]:
    """Start Snakemake on a 3-epoch warm-up and send ``signum`` to it and its jobs (the process
    group) once the first epoch's resume file is saved. Returns the workflow copy and the
    command to run it again."""
    work = checkout(tmp_path, "interrupted")
    config = {**TINY, "architectures": ["resnet10t"], "warmup": {"epochs": 3, "batch_size": 16}}
    (work / "tiny.yaml").write_text(yaml.safe_dump(config))
    resume = work / (WARMUP_TARGET + ".resume")
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "tiny.yaml"]
    process = subprocess.Popen(
        [*command, "--", WARMUP_TARGET],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
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


def _assert_resumed_and_finished(work: Path) -> None:
    log = (work / "results/logs/warmup/resnet10t/seed0.log").read_text()
    assert "resuming after epoch" in log
    history = pd.read_csv(work / "results/models/resnet10t/seed0/warmup.history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert (work / WARMUP_TARGET).exists()
    assert not (work / (WARMUP_TARGET + ".resume")).exists()


def test_killed_training_job_resumes_after_its_last_epoch(tmp_path):
    # SIGKILL, as a cluster's OOM killer or a power cut would.
    work, _ = _interrupt_after_first_epoch(tmp_path, signal.SIGKILL)

    # A killed Snakemake leaves its lock: README's recovery is --unlock, then the same command.
    assert snakemake(work, "--configfile", "tiny.yaml", "--unlock").returncode == 0
    run = snakemake(work, "--configfile", "tiny.yaml", "--rerun-incomplete", "--", WARMUP_TARGET)
    assert run.returncode == 0, run.stderr[-3000:]
    _assert_resumed_and_finished(work)


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
    _assert_resumed_and_finished(work)


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
    "test CSV missing": (
        {"synthetic": {"enabled": False}, "data_root": "{tmp}/no_valid"},
        ["valid.csv not found", "test_csv"],
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
