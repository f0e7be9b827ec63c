"""Beyond one process: a real SLURM cluster on this machine, and DDP over gloo.

Part of the default run (CI); ``python -m pytest -m cluster`` runs them alone. What they expect
(the local rules, the rules that ask for a GPU, the training jobs) is read from the Snakefile,
the rule files and a dry run's plan, not written here by hand.

The SLURM test stands up slurmctld, slurmd and munged from Debian's packages (installed with apt
when missing: CI runs as root), submits a tiny config through profiles/slurm, and stops the
daemons it started. It is skipped only where it cannot run: no root or apt, or a machine that has
a SLURM config of its own.
"""

import collections
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from deepauc.training.monitor import DUALS_RANK_TOLERANCE
from tests.slurm_cluster import PARTITION, LocalSlurm, install_packages
from tests.test_workflow import DISEASES, TINY, checkout, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

# One architecture and one thread per job: two jobs at once on a 2-core node.
SMALL = {
    **TINY,
    "architectures": ["resnet10t"],
    "diseases": DISEASES,
    "finetune": {**TINY["finetune"], "methods": ["dam", "ce"]},
    "train_threads": 1,
}
REPO = Path(__file__).resolve().parents[1]


def declared_localrules() -> set[str]:
    """The rules the Snakefile declares local: they run in Snakemake's own process, on a
    cluster too."""
    text = (REPO / "Snakefile").read_text()
    block = text.split("localrules:", 1)[1].split("\n\n", 1)[0]
    return {name.strip() for name in block.replace(",", "\n").splitlines() if name.strip()}


def gpu_rules() -> set[str]:
    """The rules whose resources ask for the resource ``gpu`` (SLURM's --gpus)."""
    found = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule |checkpoint )", path.read_text(), flags=re.M):
            name = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if name and re.search(r"^\s+gpu=", block, flags=re.M):
                found.add(name.group(1))
    return found


def test_the_expectations_come_from_the_workflow():
    """What the cluster tests expect is read from the Snakefile and the rule files, so a new
    local rule or GPU rule cannot leave them stale."""
    local = declared_localrules()
    assert {"all", "summarize", "select_ensemble", "model_card"} <= local
    assert not local & {"warmup", "finetune", "predict"}
    assert {"warmup", "finetune", "predict", "score_images"} <= gpu_rules()
    assert not gpu_rules() & local


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = install_packages()
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    why = why or cluster.refusal()
    if why:
        pytest.skip(why)
    try:
        cluster.start()
        yield cluster
    finally:
        pids = dict(cluster.pids)
        cluster.stop()
        assert not [
            name
            for name, pid in pids.items()
            if Path(f"/proc/{pid}").exists()
            and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
        ]


def job_counts(work: Path, *args: str) -> collections.Counter:
    """Jobs per rule that a dry run plans."""
    run = snakemake(work, "--dry-run", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    table = (run.stdout + run.stderr).split("Job stats:")[1].split("total")[0]
    counts = collections.Counter()
    for line in table.splitlines():
        words = line.split()
        if len(words) == 2 and words[1].isdigit():
            counts[words[0]] = int(words[1])
    return counts


# Large enough to learn (the warm-up reaches a test AUC near 0.8), so that one and two processes
# are compared on models that are more than noise. The test predictions as targets (not the
# summary, its ensembles and bootstraps) keep the DAGs short. One run of it, in one process on
# this machine, is what the SLURM run and the two-process run are compared with.
DDP = {
    **SMALL,
    "synthetic": {**TINY["synthetic"], "n_train_patients": 300, "n_valid_patients": 150},
    "image_size": 32,
    "train_threads": 2,
    "device": "cpu",
    "warmup": {"epochs": 8, "batch_size": 32},
    # DAM: the method with state to keep equal across ranks (the AUC loss's a, b, alpha)
    "finetune": {"methods": ["dam"], "epochs": 2, "batch_size": 32, "dam": {"lr": 0.03}},
}
METHODS = ["warmup", *DDP["finetune"]["methods"]]
TARGETS = [f"results/predictions/resnet10t/seed0/{method}.csv" for method in METHODS]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The config run here, one process per job, no GPU asked for."""
    work = checkout(tmp_path_factory.mktemp("local"), "processes1")
    (work / "ddp.yaml").write_text(yaml.safe_dump({**DDP, "processes_per_job": 1}))
    run = snakemake(work, "--configfile", "ddp.yaml", "--", *TARGETS)
    assert run.returncode == 0, run.stderr[-3000:]
    return work


def test_the_slurm_profile_submits_every_job_and_trains_what_one_process_trains(
    tmp_path, slurm, one_process
):
    # device cpu with a GPU per job: jobs ask SLURM for one of the node's fake GPUs, run on the CPU.
    config = {**DDP, "processes_per_job": 1, "gpus_per_job": 1}
    work = checkout(tmp_path, "cluster")
    (work / "tiny.yaml").write_text(yaml.safe_dump(config))
    profile = work / "profiles" / "slurm" / "config.yaml"
    settings = yaml.safe_load(profile.read_text())
    # What a user edits for their cluster: partition and limits, in this one file.
    settings["default-resources"].update(slurm_partition=PARTITION, mem_mb=1000, runtime=30)
    for resources in settings["set-resources"].values():
        resources["mem_mb"] = 1000
        if "slurm_partition" in resources:  # the GPU rules' partition: one for all here
            resources["slurm_partition"] = PARTITION
    settings["max-threads"] = slurm.cpus
    settings["slurm-init-seconds-before-status-checks"] = 2
    settings["seconds-between-status-checks"] = 2  # a test's jobs take seconds, not hours
    profile.write_text(yaml.safe_dump(settings))
    target = ["--configfile", "tiny.yaml", "--", *TARGETS]
    planned = job_counts(work, *target)

    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm", *target],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, (
        run.stderr[-4000:] + "\nslurmctld:\n" + slurm.log("slurmctld")[-2000:]
    )

    # Every rule but the local ones ran as a SLURM job, each job once, and all completed.
    jobs = slurm.jobs()
    assert {job["state"] for job in jobs} == {"COMPLETED"}, jobs
    submitted = collections.Counter(
        re.sub(r"^rule_", "", job["comment"]).split("_wildcards_")[0] for job in jobs
    )
    local = declared_localrules()
    assert submitted == {r: n for r, n in planned.items() if r not in local}
    assert {"warmup", "finetune", "predict"} <= set(submitted)
    assert set(planned) & local  # and some ran locally
    for rule in set(planned) & local:
        assert f"localrule {rule}:" in run.stderr, rule
    # GPU rules asked SLURM for a GPU (the profile maps resource gpu to --gpus); others did not.
    for job in jobs:
        rule = job["comment"].removeprefix("rule_").split("_wildcards_")[0]
        assert ("gpu:1" in job["tres"]) == (rule in gpu_rules()), job
    logs = list((work / "results" / "logs" / "slurm").rglob("*.log"))
    assert len(logs) == len(jobs)

    # GPUs asked for and SLURM's jobs change where the work runs, not what it computes.
    for target in TARGETS:
        pd.testing.assert_frame_equal(pd.read_csv(work / target), pd.read_csv(one_process / target))


def mean_test_auc(table: pd.DataFrame) -> float:
    return float(
        np.mean([roc_auc_score(t["y_true"], t["score"]) for _, t in table.groupby("disease")])
    )


def test_two_gloo_processes_train_like_one(tmp_path, one_process):
    work = checkout(tmp_path, "processes2")
    (work / "ddp.yaml").write_text(yaml.safe_dump({**DDP, "processes_per_job": 2}))
    planned = job_counts(work, "--configfile", "ddp.yaml", "--", *TARGETS)
    run = snakemake(work, "--configfile", "ddp.yaml", "--", *TARGETS)
    assert run.returncode == 0, run.stderr[-3000:]
    works = {1: one_process, 2: work}
    results = work / "results"

    # Every training job ran as two ranks; rank 0 alone logged its progress and wrote its files.
    logs = sorted((results / "logs" / "warmup").rglob("*.log"))
    logs += sorted((results / "logs" / "finetune").rglob("*.log"))
    assert len(logs) == planned["warmup"] + planned["finetune"] > 1
    for log in logs:
        text = log.read_text()
        assert "starting 2 DDP processes" in text, log
        assert "rank 0 INFO" in text and "rank 1 INFO" not in text, log
        assert text.count(" -> results/models/") == 1, log  # one checkpoint written, by rank 0
    models = results / "models" / "resnet10t" / "seed0"
    histories = [models / "warmup.history.csv", *models.glob("*/*.history.csv")]
    assert len(histories) == len(logs)
    for path in histories:
        epochs = DDP["warmup" if path.parent == models else "finetune"]["epochs"]
        history = pd.read_csv(path)
        # step 0, then each epoch
        assert history["epoch"].tolist() == list(range(epochs + 1)), path
        if "dam" in path.parts:  # the AUC loss's a, b, alpha stayed equal on both ranks
            assert history["duals_rank_spread"].max() <= DUALS_RANK_TOLERANCE, path
    for pattern in (".ddp-*.json", "*.resume", ".*.tmp*"):  # launcher specs, resume, temp files
        assert not list(results.rglob(pattern)), pattern

    # Same global batch, same epochs: the test AUCs agree with one process's.
    means = {
        processes: {
            method: mean_test_auc(pd.read_csv(folder / target))
            for method, target in zip(METHODS, TARGETS, strict=True)
        }
        for processes, folder in works.items()
    }
    assert means[1]["warmup"] > 0.7  # the comparison is between models that learned
    for method in METHODS:
        assert abs(means[2][method] - means[1][method]) <= 0.05, (method, means)
