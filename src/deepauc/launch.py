"""How a training or scoring job starts: on GPUs of its own, as one process or as DDP ranks.

Rule scripts call :func:`run_training` (or :func:`job_runtime` to score) with plain values: file
paths and the config's sections. One process trains in the script's own process. More than one
(``processes_per_job``) are started with torchrun, each running this module's ``main`` on the same
job description; torch.distributed joins them (NCCL on GPUs, gloo on the CPU), each rank draws its
share of every batch, and rank 0 alone writes checkpoints, histories and its log lines.
"""

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import torch.distributed as dist

from deepauc.data import AugmentSettings, CachedSplit
from deepauc.errors import InputError
from deepauc.gpus import claimed_gpus
from deepauc.logs import FORMAT
from deepauc.train import (
    FinetuneSettings,
    Runtime,
    WarmupSettings,
    run_finetune,
    run_warmup,
)

log = logging.getLogger(__name__)

STAGES = {
    "warmup": (run_warmup, WarmupSettings),
    "finetune": (run_finetune, FinetuneSettings),
}


@contextlib.contextmanager
def job_runtime(runtime: dict) -> Iterator[Runtime]:
    """A one-process :class:`Runtime` from the rule's runtime values, on GPUs claimed for it."""
    with _claimed(runtime) as options:
        yield Runtime.create(**options)


def run_training(stage: str, arguments: dict, runtime: dict) -> None:
    """Run ``stage`` (warmup or finetune) with ``arguments``: the keyword arguments of
    ``run_warmup``/``run_finetune``, with ``train`` and ``val`` as ``{"table", "cache"}`` paths and
    ``settings`` and ``augment`` as config sections. ``runtime``: Runtime.create's keywords plus
    ``gpus`` and ``processes``."""
    processes = int(runtime.get("processes", 1))
    with _claimed(runtime) as options:
        if processes == 1:
            run_stage(stage, arguments, Runtime.create(**options))
        else:
            _torchrun(stage, arguments, options, processes)


@contextlib.contextmanager
def _claimed(runtime: dict) -> Iterator[dict]:
    """Hold the job's GPUs (none on the CPU) and yield Runtime.create's keywords."""
    options = {k: v for k, v in runtime.items() if k not in ("gpus", "processes")}
    gpus = 0 if options.get("device") == "cpu" else int(runtime.get("gpus", 0))
    with claimed_gpus(gpus):
        yield options


def run_stage(stage: str, arguments: dict, runtime: Runtime):
    """Build the stage's typed inputs from plain values and train."""
    runner, settings_class = STAGES[stage]
    typed = dict(arguments)
    for split in ("train", "val"):
        paths = arguments[split]
        typed[split] = CachedSplit(pd.read_csv(paths["table"]), paths["cache"])
    typed["settings"] = settings_class.from_config(arguments["settings"])
    typed["augment"] = AugmentSettings.from_config(arguments["augment"])
    return runner(**typed, runtime=runtime)


def _torchrun(stage: str, arguments: dict, runtime: dict, processes: int) -> None:
    """Start ``processes`` ranks with torchrun on this machine; their output goes to this job's
    log (our stderr)."""
    folder = Path(arguments["checkpoint"]).parent
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"stage": stage, "arguments": arguments, "runtime": runtime}
    with tempfile.NamedTemporaryFile(
        "w", dir=folder, prefix=".ddp-", suffix=".json", delete=False
    ) as handle:
        json.dump(spec, handle)
    threads = max(1, int(runtime.get("threads", 1)) // processes)
    env = {
        **os.environ,
        # The ranks import deepauc from where this process did (a checkout's src/ included).
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep),
        "OMP_NUM_THREADS": str(threads),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on a free local port: jobs side by side do not collide
        f"--nproc-per-node={processes}",
        "-m",
        "deepauc.launch",
        handle.name,
    ]
    log.info("starting %d DDP processes: %s", processes, " ".join(command))
    sys.stderr.flush()
    try:
        finished = subprocess.run(command, env=env, stdout=sys.stderr, stderr=sys.stderr)
    finally:
        Path(handle.name).unlink(missing_ok=True)
    if finished.returncode != 0:
        raise InputError(
            f"DDP training failed: torchrun exited with status {finished.returncode}",
            fix="read the ranks' messages above in this log (the first error is the cause).",
        )


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
    spec = json.loads(Path(spec_path).read_text())
    options = dict(spec["runtime"])
    options["threads"] = max(1, int(options.get("threads", 1)) // world_size)
    try:
        runtime = Runtime.create(**options, rank=rank, world_size=world_size, local_rank=local_rank)
        dist.init_process_group(
            "nccl" if runtime.device.type == "cuda" else "gloo",
            **({"device_id": runtime.device} if runtime.device.type == "cuda" else {}),
        )
        try:
            run_stage(spec["stage"], spec["arguments"], runtime)
        finally:
            dist.destroy_process_group()
    except InputError as err:
        logging.getLogger("deepauc").error("%s", err)
        print(f"deepauc: error (rank {rank}): {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
