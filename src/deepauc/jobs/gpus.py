"""Which GPUs a job uses, when several jobs share the GPUs of one machine.

Snakemake's local executor counts GPUs (``--resources gpu=N``) but does not say which job gets
which: every job would start on GPU 0. So a job claims its own GPUs before CUDA starts: it takes
an exclusive ``flock`` on one lock file per GPU, in a folder all jobs of the machine share, and
sets ``CUDA_VISIBLE_DEVICES`` to the GPUs it holds (its DDP ranks inherit it). The kernel drops
a lock when its process ends, however it ends, so a killed job frees its GPUs.

With ``jobs_per_gpu: N`` a GPU has N lock files (slots), so up to N small jobs share it: their
start-up, cuDNN's first-epoch timing and evaluation overlap with the others' training.

A scheduler that gives each job its own GPUs (SLURM with ``--gpus``) has set
``CUDA_VISIBLE_DEVICES`` already; inside a SLURM job nothing is claimed.
"""

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from deepauc.errors import InputError

log = logging.getLogger(__name__)

VISIBLE = "CUDA_VISIBLE_DEVICES"
# Overrides the lock folder, e.g. to share it between containers on one machine.
LOCK_DIR_VARIABLE = "DEEPAUC_GPU_LOCK_DIR"


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_VARIABLE) or Path(tempfile.gettempdir(), "deepauc-gpus"))


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them, without starting
    CUDA (after CUDA starts, changing CUDA_VISIBLE_DEVICES has no effect)."""
    if VISIBLE in os.environ:
        return [name.strip() for name in os.environ[VISIBLE].split(",") if name.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        return []
    return [line.strip() for line in listing.stdout.splitlines() if line.strip()]


@contextlib.contextmanager
def claimed_gpus(count: int, poll_seconds: float = 1.0, slots: int = 1) -> Iterator[list[str]]:
    """Hold ``count`` GPUs of this machine for the block, with CUDA_VISIBLE_DEVICES set to them:
    one of each GPU's ``slots`` (``jobs_per_gpu``), on ``count`` different GPUs.

    Waits while other jobs hold them. ``count`` 0, or a job SLURM placed, claims nothing.
    """
    if count <= 0:
        yield []
        return
    if "SLURM_JOB_ID" in os.environ:
        yield visible_gpus()
        return
    candidates = visible_gpus()
    if len(candidates) < count:
        shown = ", ".join(candidates) or "none"
        raise InputError(
            f"this job asks for {count} GPU(s) but the machine shows {len(candidates)} ({shown})",
            where="config key gpus_per_job",
            fix="set gpus_per_job to at most the number of GPUs (or device: cpu), or check "
            f"nvidia-smi and {VISIBLE}.",
        )
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        folder.chmod(0o1777)  # jobs of other users on this machine share the locks
    held = _wait_for(folder, candidates, count, poll_seconds, max(1, int(slots)))
    previous = os.environ.get(VISIBLE)
    os.environ[VISIBLE] = ",".join(name for name, _ in held)
    log.info("using GPU(s) %s (%s set for this job)", os.environ[VISIBLE], VISIBLE)
    try:
        yield [name for name, _ in held]
    finally:
        for _, handle in held:
            handle.close()  # closing the file releases its lock
        if previous is None:
            os.environ.pop(VISIBLE, None)
        else:
            os.environ[VISIBLE] = previous


def _wait_for(folder: Path, candidates: list[str], count: int, poll_seconds: float, slots: int):
    waited_since = None
    while True:
        held = _try_claim(folder, candidates, count, slots)
        if held is not None:
            if waited_since is not None:
                log.info("waited %.0f s for a free GPU", time.monotonic() - waited_since)
            return held
        if waited_since is None:
            waited_since = time.monotonic()
            log.info(
                "all %d GPU(s) (%s) are in use by other jobs: waiting for %d to come free",
                len(candidates),
                ", ".join(candidates),
                count,
            )
        time.sleep(poll_seconds)


def _try_claim(folder: Path, candidates: list[str], count: int, slots: int = 1):
    """A slot on each of ``count`` GPUs, or none at all: holding some while waiting for more
    could deadlock two jobs that each wait for the other's GPU."""
    held = []
    for name in candidates:
        handle = _claim_a_slot(folder, name, slots)
        if handle is None:
            continue
        held.append((name, handle))
        if len(held) == count:
            return held
    for _, handle in held:
        handle.close()
    return None


def _claim_a_slot(folder: Path, name: str, slots: int):
    """The locked file of a free slot of GPU ``name``, or None when all are taken."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    for slot in range(slots):
        path = folder / (f"gpu-{safe}.lock" if slot == 0 else f"gpu-{safe}.slot{slot}.lock")
        handle = open(path, "a+")  # noqa: SIM115 - kept open: the lock lives as long as the file
        with contextlib.suppress(PermissionError):
            path.chmod(0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return handle
    return None
