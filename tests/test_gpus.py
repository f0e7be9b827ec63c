"""GPU slots on one machine, and how many GPUs and processes a training job takes.

The slots are plain file locks, so real concurrent processes test them on a machine with no GPU:
CUDA_VISIBLE_DEVICES stands for the machine's GPUs.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepauc.errors import InputError
from deepauc.jobs.gpus import LOCK_DIR_VARIABLE, VISIBLE, claimed_gpus
from deepauc.jobs.parallelism import FAN_OUT_NICENESS, job_parallelism
from deepauc.training.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]

HOLDER = """
import sys, time
from deepauc.jobs.gpus import claimed_gpus
slots = int(sys.argv[3]) if len(sys.argv) > 3 else 1
with claimed_gpus(int(sys.argv[1]), poll_seconds=0.05, slots=slots) as gpus:
    print("GOT", ",".join(gpus), time.time(), flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def two_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv(VISIBLE, "0,1")
    monkeypatch.setenv(LOCK_DIR_VARIABLE, str(tmp_path / "locks"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    return tmp_path


def hold(count: int, seconds: float, slots: int = 1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(count), str(seconds), str(slots)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def claim_line(process: subprocess.Popen) -> tuple[str, float]:
    words = process.stdout.readline().split()
    assert words and words[0] == "GOT", words
    return words[1], float(words[2])


def test_concurrent_jobs_get_distinct_gpus(two_gpus):
    first, second = hold(1, 1.0), hold(1, 1.0)
    assert {claim_line(first)[0], claim_line(second)[0]} == {"0", "1"}
    for process in (first, second):
        assert process.wait(timeout=30) == 0


def test_third_job_waits_until_a_gpu_is_free(two_gpus):
    holders = [hold(1, 1.5), hold(1, 1.5)]
    for process in holders:
        claim_line(process)
    started = time.time()
    waiting = hold(1, 0.0)
    _, claimed_at = claim_line(waiting)
    assert claimed_at - started >= 1.0  # it could not start before a holder ended
    for process in [*holders, waiting]:
        assert process.wait(timeout=30) == 0


def test_a_job_with_two_gpus_holds_both(two_gpus):
    with claimed_gpus(2) as gpus:
        assert gpus == ["0", "1"]
        assert os.environ[VISIBLE] == "0,1"
        waiting = hold(1, 0.0)
        time.sleep(0.5)
        assert waiting.poll() is None  # no GPU free for it
    assert claim_line(waiting)[0] in {"0", "1"}
    assert waiting.wait(timeout=30) == 0
    assert os.environ[VISIBLE] == "0,1"  # restored after the block


def test_jobs_per_gpu_lets_jobs_share_a_gpu_up_to_its_slots(two_gpus, monkeypatch):
    monkeypatch.setenv(VISIBLE, "0")
    sharing = [hold(1, 1.5, slots=2), hold(1, 1.5, slots=2)]
    assert [claim_line(p)[0] for p in sharing] == ["0", "0"]  # both on GPU 0 at once
    started = time.time()
    third = hold(1, 0.0, slots=2)
    _, claimed_at = claim_line(third)
    assert claimed_at - started >= 1.0  # the two slots were taken
    for process in [*sharing, third]:
        assert process.wait(timeout=30) == 0


def test_a_two_gpu_job_takes_slots_on_two_different_gpus(two_gpus):
    with claimed_gpus(2, slots=3) as gpus:
        assert gpus == ["0", "1"]


def test_killed_job_frees_its_gpu(two_gpus):
    holder = hold(2, 600.0)
    claim_line(holder)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with claimed_gpus(2, poll_seconds=0.05) as gpus:
        assert gpus == ["0", "1"]


def test_claimed_gpu_is_what_the_job_sees(two_gpus):
    holder = hold(1, 3.0)
    taken, _ = claim_line(holder)
    with claimed_gpus(1, poll_seconds=0.05) as gpus:
        assert gpus != [taken]
        assert os.environ[VISIBLE] == gpus[0]
    holder.wait(timeout=30)


def test_more_gpus_than_the_machine_has_names_the_key(two_gpus):
    with pytest.raises(InputError, match="gpus_per_job") as err, claimed_gpus(3):
        pass
    assert "shows 2" in str(err.value)


def test_no_gpus_and_slurm_jobs_claim_nothing(two_gpus, monkeypatch):
    with claimed_gpus(0) as gpus:
        assert gpus == [] and os.environ[VISIBLE] == "0,1"
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv(VISIBLE, "3")  # SLURM chose this job's GPU
    with claimed_gpus(1) as gpus:
        assert gpus == ["3"] and os.environ[VISIBLE] == "3"
    assert not (two_gpus / "locks").exists()


def parallelism(gpu_here=False, on_cluster=False, **keys):
    config = {"device": "auto", "gpus_per_job": "auto", "processes_per_job": "auto", **keys}
    return job_parallelism(config, gpu_here=gpu_here, on_cluster=on_cluster)


def test_job_parallelism_defaults():
    assert parallelism() == (0, 1)  # a CPU machine
    assert parallelism(gpu_here=True) == (1, 1)
    assert parallelism(on_cluster=True) == (1, 1)  # the login node may have no GPU
    assert parallelism(device="cpu", gpu_here=True) == (0, 1)
    assert parallelism(device="cuda") == (1, 1)
    assert parallelism(gpu_here=True, gpus_per_job=2) == (2, 2)  # DDP, one process per GPU
    assert parallelism(device="cpu", processes_per_job=2) == (0, 2)  # DDP over gloo


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"device": "cuda", "gpus_per_job": 0}, "gpus_per_job"),
        ({"gpus_per_job": 2, "processes_per_job": 1}, "processes_per_job"),
    ],
)
def test_job_parallelism_refuses_contradictions(keys, named):
    with pytest.raises(InputError, match=named):
        parallelism(gpu_here=True, **keys)


def test_batch_must_split_evenly_over_ranks():
    runtime = Runtime(device=Runtime.create("cpu").device, world_size=3)
    assert runtime.share_of(48, "finetune.batch_size") == 16
    with pytest.raises(InputError, match="finetune.batch_size"):
        runtime.share_of(32, "finetune.batch_size")


def test_a_fine_tune_steps_back_on_the_cpu_before_its_heavy_imports():
    # In a child process: niceness cannot be lowered again without privileges.
    code = (
        "import os, sys\n"
        "from deepauc.jobs.parallelism import step_back\n"
        "before = os.nice(0)\n"
        "after = step_back()\n"
        "print(before, after, 'torch' in sys.modules)\n"
    )
    before, after, torch_loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(after) == min(int(before) + FAN_OUT_NICENESS, 19)
    assert torch_loaded == "False"  # the step back comes before torch's seconds of import
    script = Path(__file__).parents[1] / "workflow" / "scripts" / "finetune.py"
    first_code = [
        line
        for line in script.read_text().splitlines()
        if line and not line.startswith(('"""', "#", "from deepauc.jobs.parallelism"))
    ]
    assert first_code[0] == "step_back()" or first_code[0].startswith("step_back()  #")
