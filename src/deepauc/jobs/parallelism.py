"""How many GPUs and processes each training job takes, from the config's runtime keys.

Kept free of torch: the workflow resolves it while parsing, before any job starts.
"""

import os

from deepauc.errors import InputError


def job_parallelism(config: dict, gpu_here: bool, on_cluster: bool = False) -> tuple[int, int]:
    """(GPUs, processes) of each training job, from the keys device, gpus_per_job and
    processes_per_job.

    ``gpus_per_job: auto`` is 1 where training will use a GPU: ``device: cuda``, or ``auto`` on a
    machine with an NVIDIA driver (``gpu_here``) or when jobs go to a cluster (``on_cluster``: the
    login node that plans them may have no GPU). ``processes_per_job: auto`` is one per GPU (one
    on a CPU). More than one process trains with DDP: one per GPU, or over gloo on the CPU.
    """
    device = config["device"]
    gpus = config["gpus_per_job"]
    if gpus == "auto":
        gpus = int(device == "cuda" or (device == "auto" and (gpu_here or on_cluster)))
    processes = config["processes_per_job"]
    if processes == "auto":
        processes = max(gpus, 1) if device != "cpu" else 1
    if device == "cuda" and gpus == 0:
        raise InputError(
            "device is cuda but gpus_per_job is 0",
            where="config keys device, gpus_per_job",
            fix="set gpus_per_job to 1 or more (or auto), or device: cpu.",
        )
    if device != "cpu" and gpus > 0 and processes != gpus:
        raise InputError(
            f"processes_per_job is {processes} but gpus_per_job is {gpus}: DDP runs one "
            "process per GPU",
            where="config key processes_per_job",
            fix=f"set processes_per_job: auto (or {gpus}), or device: cpu for CPU processes.",
        )
    return gpus, processes


#: How far a fan-out job (a fine-tune) steps back on the CPU: see :func:`step_back`.
FAN_OUT_NICENESS = 5


def step_back(niceness: int = FAN_OUT_NICENESS) -> int:
    """Lower this process's CPU priority; the new niceness.

    Where jobs share too few cores (the quick start: eight jobs on two), a warm-up that ten
    fine-tunes wait for would otherwise get an eighth of the CPU as soon as the other
    architecture's fine-tunes start, and the whole run would wait on it. A fine-tune that steps
    back lets the warm-ups, the DAG's fan-in points, finish first; alone on a core (a GPU
    machine, a cluster node) it changes nothing. Called before the job's heavy imports, which
    are a third of a small job's CPU time. (Quick start, 2 cores: resnet10t's warm-up took 125 s
    instead of 157 s; the whole run's time stayed within its noise.)
    """
    try:
        return os.nice(niceness)
    except OSError:  # a platform or sandbox that refuses: run at normal priority
        return 0
