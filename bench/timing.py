"""The benchmarks' clock, shared by bench/throughput.py, bench/ddp_steps.py and
bench/step_speed.py: a step timed the same way everywhere, and batches fed for ever."""

import time

import torch

from deepauc.training.runtime import Runtime


def synchronize(runtime: Runtime) -> None:
    """Wait for the GPU; under DDP also for the other ranks, so that all start and stop the clock
    together (bench/ddp_steps.py)."""
    if runtime.device.type == "cuda":
        torch.cuda.synchronize(runtime.device)
    if runtime.distributed:
        torch.distributed.barrier()


def seconds_of(step, steps: int, runtime: Runtime) -> float:
    """Seconds that ``steps`` calls of ``step`` take, the device waited for at both ends."""
    synchronize(runtime)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(runtime)
    return time.perf_counter() - started


def images_per_second(step, warmup_steps: int, steps: int, batch: int, runtime: Runtime) -> float:
    """Images per second of ``steps`` calls of ``step`` (``batch`` images each) after
    ``warmup_steps`` untimed ones."""
    for _ in range(warmup_steps):
        step()
    return steps * batch / seconds_of(step, steps, runtime)


def first_call_seconds(step, runtime: Runtime) -> float:
    """Seconds of one call of ``step``: the first one pays for a compile or a graph's recording."""
    return seconds_of(step, 1, runtime)


def endless(loader):
    """``loader``'s batches, epoch after epoch (a sampler with ``set_epoch`` draws a new order
    each epoch, as training does)."""
    epoch = 1
    while True:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1
