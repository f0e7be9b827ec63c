"""Resume files: everything an interrupted job needs to continue after its last finished epoch.

A resume file sits beside the checkpoint (``<model>.pt.resume``) and holds the model, the
optimizer, the method's extra state, the sampler's position and every random stream, so that a
resumed run is bit-identical to an uninterrupted one on a CPU. It is reused only if it was made
from the same settings and the same versions of the job's input files (its fingerprint).
"""

import copy
import hashlib
import json
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from libauc.sampler import DualSampler

from deepauc.models.checkpoints import safe_load, save_torch
from deepauc.training.job import Job
from deepauc.training.runtime import Runtime

log = logging.getLogger(__name__)


def resume_path(checkpoint: str | os.PathLike) -> Path:
    """Where the job that writes ``checkpoint`` keeps its resume file."""
    return Path(f"{checkpoint}.resume")


def journal_path(checkpoint: str | os.PathLike) -> Path:
    """Where that job's log is kept until it finishes (``deepauc.jobs.logs.logged_to``), so
    that a stopped job's rerun continues its log instead of starting a new one."""
    return Path(f"{checkpoint}.resume.log")


def fingerprint(meta: dict, settings: dict, runtime: Runtime, inputs) -> str:
    """What a resume file must match to be reused: the job's settings, its inputs' versions and
    its number of DDP processes (which decides who draws which images)."""
    stamps = []
    for path in inputs:
        stat = os.stat(path)
        stamps.append((str(path), stat.st_size, stat.st_mtime_ns))
    key = [meta, settings, runtime.seed, stamps]
    if runtime.distributed:
        key.append({"ddp_processes": runtime.world_size})
    payload = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def save_resume(
    path: Path, job: Job, runtime: Runtime, fingerprint, epoch, step, best, history, partial=None
):
    """Everything to continue after ``epoch``, or, with ``partial`` (an epoch stopped part-way:
    see ``fit``), after ``step`` of the next epoch. Under DDP, rank 0 writes it with every
    rank's own random streams (augmentation, RNGs) and its part of ``partial`` (its share of the
    epoch's order, its loss sum); the weights and optimizer are the same on all ranks."""
    own_streams = random_streams(job)
    if partial is not None:
        partial = dict(partial)
        own_streams["partial"] = partial.pop("rank")
    if runtime.distributed:
        streams = [None] * runtime.world_size
        dist.all_gather_object(streams, own_streams)
        if not runtime.is_main:
            return
    else:
        streams = [own_streams]
    state = {
        "fingerprint": fingerprint,
        "epoch": epoch,
        "step": step,
        "best": best,
        "history": history,
        "model": job.model.state_dict(),
        "optimizer": job.optimizer.state_dict(),
        "extra_state": job.extra_state.state_dict() if job.extra_state is not None else None,
        "sampler": sampler_state(job.sampler),
        "loader_generator": job.train_loader.generator.get_state(),
        "streams": streams,
        "partial": partial,
    }
    save_torch(state, path)


def random_streams(job: Job) -> dict:
    return {
        "augment_generator": job.augment_generator.get_state(),
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }


def load_resume(path: Path, fingerprint: str, device: torch.device) -> dict | None:
    if not path.exists():
        return None
    try:
        # A file that holds anything beyond tensors, numpy arrays and plain data is refused
        # (UnsafeFileError, not caught here): one that could run code is not a truncated one
        # to start over from.
        state = safe_load(path, device)
    except (OSError, RuntimeError, EOFError) as err:
        log.warning("ignoring unreadable resume file %s (%s): starting over", path, err)
        return None
    if state.get("fingerprint") != fingerprint or "streams" not in state:
        log.warning("resume file %s is from other settings or inputs: starting over", path)
        return None
    return state


def restore(job: Job, state: dict) -> None:
    """The model, optimizer, method state and sampler position of a resume file (the random
    streams: :func:`restore_streams`)."""
    job.model.load_state_dict(state["model"])
    # PESG's load_state_dict consumes its argument: hand it a copy.
    job.optimizer.load_state_dict(copy.copy(state["optimizer"]))
    if job.extra_state is not None:
        job.extra_state.load_state_dict(state["extra_state"])
    if job.sampler is not None:
        for key, value in state["sampler"].items():
            setattr(job.sampler, key, value)


def restore_streams(job: Job, state: dict, runtime: Runtime) -> None:
    """The random streams as :func:`save_resume` found them: the loader's generator, the
    augmentation's and the global ones of this rank. Apart from :func:`restore` because
    starting an epoch draws from them: a stopped epoch restores them after its start."""
    job.train_loader.generator.set_state(state["loader_generator"].cpu())
    streams = state["streams"][runtime.rank]
    job.augment_generator.set_state(streams["augment_generator"].cpu())
    rng = streams["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])


def sampler_state(sampler: DualSampler | None) -> dict | None:
    """DualSampler's position in its shuffled positives and negatives (numpy's global RNG is
    saved separately)."""
    if sampler is None:
        return None
    return {
        "pos_indices": sampler.pos_indices.copy(),
        "neg_indices": sampler.neg_indices.copy(),
        "pos_ptr": sampler.pos_ptr,
        "neg_ptr": sampler.neg_ptr,
    }
