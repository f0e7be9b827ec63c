"""How a training or scoring job starts: on GPUs of its own, as one process or as DDP ranks.

Rule scripts call :func:`run_training` with a typed spec (``deepauc.config.settings.WarmupSpec`` or
``FinetuneSpec``: what the job computes) and its :class:`~deepauc.config.settings.JobResources`
(how it runs), or :func:`job_runtime` to score. One process trains in the script's own process. More
than one (``processes_per_job``) are started with torchrun, each running this module's ``main``
on the same spec; torch.distributed joins them (NCCL on GPUs, gloo on the CPU), each rank draws
its share of every batch, and rank 0 alone writes checkpoints, histories and its log lines.
"""

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from deepauc.config.settings import (
    FinetuneSpec,
    JobResources,
    WarmupSpec,
    job_from_json,
    job_to_json,
)
from deepauc.errors import InputError, JobStopped
from deepauc.jobs.gpus import claimed_gpus
from deepauc.jobs.logs import FORMAT
from deepauc.training.preemption import StopRequest
from deepauc.training.runtime import Runtime
from deepauc.training.stages import run_spec

# By name, not __name__: torchrun runs this module as __main__, and the log should say who spoke.
log = logging.getLogger("deepauc.jobs.launch")


@contextlib.contextmanager
def job_runtime(resources: JobResources, seed: int = 0) -> Iterator[Runtime]:
    """A one-process :class:`Runtime` for ``resources``, on GPUs claimed for it."""
    with _claimed(resources):
        yield Runtime.for_job(resources, seed)


def run_training(spec: WarmupSpec | FinetuneSpec, resources: JobResources) -> None:
    """Train ``spec`` with ``resources``: in this process, or as ``resources.processes`` DDP
    ranks started with torchrun."""
    with _claimed(resources):
        if resources.processes == 1:
            run_spec(spec, Runtime.for_job(resources, spec.seed))
        else:
            _torchrun(spec, resources)


@contextlib.contextmanager
def _claimed(resources: JobResources) -> Iterator[None]:
    """Hold the job's GPUs (none on the CPU)."""
    gpus = 0 if resources.device == "cpu" else resources.gpus
    with claimed_gpus(gpus, slots=resources.jobs_per_gpu):
        yield


def _torchrun(spec: WarmupSpec | FinetuneSpec, resources: JobResources) -> None:
    """Start ``resources.processes`` ranks with torchrun on this machine; their output goes to
    this job's log (our stderr)."""
    folder = Path(spec.checkpoint).parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=folder, prefix=".ddp-", suffix=".json", delete=False
    ) as handle:
        handle.write(job_to_json(spec, resources))
    env = {
        **os.environ,
        # The ranks import deepauc from where this process did (a checkout's src/ included).
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep),
        "OMP_NUM_THREADS": str(resources.threads_per_process),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on a free local port: jobs side by side do not collide
        f"--nproc-per-node={resources.processes}",
        "-m",
        "deepauc.jobs.launch",
        handle.name,
    ]
    log.info("starting %d DDP processes: %s", resources.processes, " ".join(command))
    sys.stderr.flush()
    # A signal for the job reaches its ranks too (they stop at an agreed step and save it):
    # this process waits for them instead of ending first.
    with StopRequest() as stop:
        try:
            finished = subprocess.run(command, env=env, stdout=sys.stderr, stderr=sys.stderr)
        finally:
            Path(handle.name).unlink(missing_ok=True)
    if finished.returncode != 0 and stop.signum is not None:
        raise JobStopped(
            f"DDP training stopped by {stop.name} (torchrun exited with status "
            f"{finished.returncode}); the ranks' messages above say at which step. Run the "
            "same command again to continue from there.",
            stop.signum,
        )
    if finished.returncode != 0:
        raise InputError(
            f"DDP training failed: torchrun exited with status {finished.returncode}",
            fix="read the ranks' messages above in this log (the first error is the cause).",
        )


@contextlib.contextmanager
def process_group(runtime: Runtime) -> Iterator[None]:
    """This rank in the job's torch.distributed group (NCCL on GPUs, gloo on the CPU), left
    when the block ends; nothing to join for one process."""
    if not runtime.distributed:
        yield
        return
    cuda = runtime.device.type == "cuda"
    dist.init_process_group(
        "nccl" if cuda else "gloo", **({"device_id": runtime.device} if cuda else {})
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def _log_rank_devices(runtime: Runtime) -> None:
    """Rank 0 says where every rank runs: two ranks on one GPU would train at one GPU's speed
    and look like poor scaling."""
    mine = str(runtime.device)
    if runtime.device.type == "cuda":
        mine += f" ({torch.cuda.get_device_name(runtime.device)})"
    devices = [None] * runtime.world_size
    dist.all_gather_object(devices, mine)
    backend = dist.get_backend()
    log.info(
        "%d DDP ranks over %s: %s",
        runtime.world_size,
        backend,
        ", ".join(f"rank {rank} on {device}" for rank, device in enumerate(devices)),
    )
    if runtime.device.type == "cuda" and len(set(devices)) < len(devices):
        log.warning("DDP ranks share a GPU (%s): each trains at a fraction of its speed", devices)


def main(spec_path: str) -> int:
    """One DDP rank, as torchrun starts it (RANK, LOCAL_RANK and WORLD_SIZE are set)."""
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    logging.basicConfig(
        stream=sys.stderr,
        format=FORMAT.replace("%(levelname)s", f"rank {rank} %(levelname)s"),
        # Rank 0 tells the story; the others speak up only for problems.
        level=logging.INFO if rank == 0 else logging.WARNING,
    )
    spec, resources = job_from_json(Path(spec_path).read_text())
    try:
        runtime = Runtime.for_job(
            resources, spec.seed, rank=rank, world_size=world_size, local_rank=local_rank
        )
        with process_group(runtime):
            _log_rank_devices(runtime)
            run_spec(spec, runtime)
    except InputError as err:
        logging.getLogger("deepauc").error("%s", err)
        print(f"deepauc: error (rank {rank}): {err}", file=sys.stderr)
        return 1
    except JobStopped as stop:
        logging.getLogger("deepauc").warning("%s", stop)
        return stop.exit_status
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
