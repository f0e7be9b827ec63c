"""Stopping a training job when asked, at its current step, so that a rerun continues there.

A scheduler that preempts a job or reaches its time limit sends SIGTERM and kills the job a
while later (SLURM: ``KillWait``, 30 s by default); Ctrl-C sends SIGINT. At CheXpert scale an
epoch takes many minutes, so stopping at the last finished epoch would lose them. While
:class:`StopRequest` is active, either signal only records that a stop was asked for; the
training loop checks after every step, saves a resume file at that step and raises
:class:`~deepauc.errors.JobStopped`.

DDP ranks must stop at the same step (they meet in every step's gradient all-reduce, and the
resume file is gathered from all of them), so under DDP the ranks agree every
:data:`DDP_POLL_STEPS` steps, by one all-reduce of their flags, instead of reading their own
flag after each step.

Loader worker processes ignore both signals (:func:`ignore_stop_signals`): they only gather
rows, and a worker killed mid-epoch would make the loader raise before the step is saved. They
end with the job.
"""

import signal
import threading

import torch
import torch.distributed as dist

from deepauc.training.runtime import Runtime

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Under DDP, the ranks compare their stop flags every this many steps (one host sync).
DDP_POLL_STEPS = 20


class StopRequest:
    """While active (``with StopRequest() as stop``), SIGTERM and SIGINT set ``stop.signum``
    instead of ending the process. Outside the main thread (where Python cannot take signals)
    it does nothing."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _record(self, signum, frame) -> None:
        if self.signum is None:  # a repeat (Ctrl-C twice, torchrun forwarding it) changes nothing
            self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def agreed(self, runtime: Runtime, step: int | None = None) -> bool:
        """Whether to stop now. One process: whether a signal came. DDP ranks: whether one
        came to any rank, asked of all ranks at once at every :data:`DDP_POLL_STEPS`-th
        ``step`` and wherever ``step`` is None (an epoch boundary); False elsewhere. Every rank
        must call it at the same points."""
        if not runtime.distributed:
            return self.signum is not None
        if step is not None and step % DDP_POLL_STEPS:
            return False
        flag = torch.tensor([self.signum or 0], dtype=torch.int64)
        if runtime.device.type == "cuda":  # NCCL moves CUDA tensors only
            flag = flag.to(runtime.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        received = int(flag.item())
        if received and self.signum is None:
            self.signum = received  # another rank's signal: this rank stops with it
        return bool(received)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """A DataLoader worker's ``worker_init_fn``: see the module docstring."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
