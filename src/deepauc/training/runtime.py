"""Where and how a training or scoring process runs: device, threads, DDP rank, autocast.

Chosen once, at the top of a job (as nanoGPT does), and handed to everything that runs on it.
"""

import contextlib
import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from deepauc.config.settings import JobResources
from deepauc.errors import InputError
from deepauc.training.graphs import graphs_apply


@dataclass(frozen=True)
class Runtime:
    """Where and how a job runs: chosen once, at the top."""

    device: torch.device
    seed: int = 0
    threads: int = 1
    compile: bool = False  # torch.compile the training forward and backward
    cuda_graphs: bool = False  # replay the training forward and backward from a CUDA graph
    images_on_gpu: str = "auto"  # "auto": a split's images go to GPU memory when they fit
    rank: int = 0  # this process's DDP rank; rank 0 writes the job's files
    world_size: int = 1  # DDP processes of the job
    # Keyword options for torch's DistributedDataParallel (e.g. broadcast_buffers=False): none
    # in the workflow; bench/ddp_steps.py measures variants through them.
    ddp_options: dict = field(default_factory=dict)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def loader_workers(self) -> int:
        # Workers only gather rows of the memory-mapped cache (decoding and augmentation are
        # done already or happen on the GPU): a few keep a GPU fed. On a CPU the same cores
        # also train, so gathering stays in the training process.
        if self.device.type == "cuda":
            return min(self.threads, 4)
        return 0

    @classmethod
    def create(
        cls,
        device: str = "auto",
        seed: int = 0,
        threads: int = 1,
        compile: bool = False,
        images_on_gpu: str = "auto",
        rank: int = 0,
        world_size: int = 1,
        local_rank: int = 0,
        cuda_graphs: str | bool = False,
    ) -> "Runtime":
        """Choose the device and set torch's CPU threads to the job's share. A DDP rank gets
        its own GPU: the ``local_rank``-th of those the job holds."""
        # Snakemake's --cores may exceed the machine's; more torch threads than cores only thrash.
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        chosen = choose_device(device)
        if chosen.type == "cuda" and world_size > 1:
            chosen = torch.device("cuda", local_rank)
            torch.cuda.set_device(chosen)
        runtime = cls(
            chosen,
            seed=seed,
            threads=max(1, min(threads, available)),
            compile=bool(compile),
            cuda_graphs=graphs_apply(cuda_graphs, chosen, world_size > 1, bool(compile)),
            images_on_gpu=images_on_gpu,
            rank=rank,
            world_size=world_size,
        )
        torch.set_num_threads(runtime.threads)
        return runtime

    @classmethod
    def for_job(
        cls, resources: JobResources, seed: int, rank: int = 0, world_size: int = 1, **kwargs
    ) -> "Runtime":
        """:meth:`create` from a job's resources; under DDP each rank gets its share of the
        job's threads."""
        return cls.create(
            device=resources.device,
            seed=seed,
            threads=resources.threads_per_process,
            compile=resources.compile,
            cuda_graphs=resources.cuda_graphs,
            images_on_gpu=resources.images_on_gpu,
            rank=rank,
            world_size=world_size,
            **kwargs,
        )

    def share_of(self, batch_size: int, key: str) -> int:
        """Each rank's part of a global batch: the batch, and so the compute per step, stays
        what the config says whatever the number of processes."""
        if batch_size % self.world_size:
            raise InputError(
                f"batch size {batch_size} does not split evenly over {self.world_size} DDP "
                "processes",
                where=f"config key {key}",
                fix=f"use a multiple of {self.world_size} (or another processes_per_job).",
            )
        return batch_size // self.world_size

    def autocast(self):
        if self.device.type == "cuda":
            # A CUDA graph must not record casts from autocast's cache (torch's requirement).
            return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not self.cuda_graphs)
        return contextlib.nullcontext()


def choose_device(preference: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` and ``cpu`` are taken as asked."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "device: cuda was asked for but torch sees no GPU",
            where="config key device",
            fix="set device: auto (or cpu), or run on a machine with a CUDA GPU.",
        )
    return torch.device(preference)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
