"""The SLURM profile as a SLURM user expects it, checked without a cluster: what a dry run shows
each job asking for, and the sbatch call the executor plugin makes of it. (tests/test_cluster.py
runs the profile on a real single-node SLURM.)"""

import pytest
import yaml

from tests.test_workflow import TINY, checkout, snakemake

pytestmark = pytest.mark.e2e

GPU_RULES = {"warmup", "finetune", "predict"}
CPU_RULES = {"synthesize_dataset", "preprocess", "cache_images"}


def planned_resources(work, *args: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run through profiles/slurm plans."""
    run = snakemake(work, "--dry-run", "--workflow-profile", "profiles/slurm", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = []
    for line in (run.stdout + run.stderr).splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("rule", "localrule") and words[1].endswith(":"):
            jobs.append((words[1].rstrip(":"), {}))
        elif jobs and line.strip().startswith("resources:"):
            pairs = line.split(":", 1)[1].split(", ")
            jobs[-1][1].update(pair.strip().split("=", 1) for pair in pairs)
    return jobs


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = checkout(tmp_path_factory.mktemp("slurm"), "profile")
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (work / "two.yaml").write_text(yaml.safe_dump({**TINY, "gpus_per_job": 2}))
    return work


def test_a_dry_run_shows_the_gpus_and_partition_each_job_asks_for(work):
    jobs = planned_resources(work, "--configfile", "tiny.yaml", "--", "results/summary.csv")
    rules = {rule for rule, _ in jobs}
    assert rules >= GPU_RULES | CPU_RULES
    for rule, resources in jobs:
        assert "tasks" not in resources, (rule, resources)  # see test below
        if rule in GPU_RULES:  # gpus_per_job: auto is one GPU a job on a cluster
            assert resources["gpu"] == "1", (rule, resources)
            assert resources["slurm_partition"] == "gpu", rule
        elif rule in CPU_RULES:
            assert resources.get("gpu", "0") == "0", (rule, resources)
            assert resources["slurm_partition"] == "cpu", rule

    two = planned_resources(work, "--configfile", "two.yaml", "--", "results/summary.csv")
    asked = {rule: (r.get("gpu"), r.get("ddp_processes")) for rule, r in two}
    assert asked["warmup"] == asked["finetune"] == ("2", "2")  # DDP over two GPUs
    assert asked["predict"][0] == "1"  # scoring is one process on one GPU


class _Resources(dict):
    __getattr__ = dict.get


class _Job:
    def __init__(self, resources: dict, threads: int):
        self.resources = _Resources(resources)
        self.threads = threads


def _sbatch(resources: dict) -> str:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = _Job(resources, threads=8)
    params = {
        "run_uuid": "run",
        "slurm_logfile": "job.log",
        "comment_str": "rule_warmup",
        "account": "",
        "partition": f"-p {resources['slurm_partition']}",
        "workdir": ".",
    }
    return get_submit_command(job, params) + set_gres_string(job)


def test_a_two_gpu_job_is_one_task_that_holds_both_gpus(work):
    """The plugin turns a `tasks` resource of a GPU job into --ntasks-per-gpu: one task per GPU,
    each bound to one GPU, and the job started once per task (its issue #459)."""
    jobs = planned_resources(work, "--configfile", "two.yaml", "--", "results/summary.csv")
    warmup = next(resources for rule, resources in jobs if rule == "warmup")
    resources = {key: int(value) if value.isdigit() else value for key, value in warmup.items()}
    call = _sbatch(resources)
    assert "--gpus=2" in call and "-p gpu" in call
    assert "--ntasks-per-gpu" not in call and "--ntasks=" not in call, call
    # what the profile's former `tasks: 1` default did:
    assert "--ntasks-per-gpu=1" in _sbatch({**resources, "tasks": 1})
