"""Batches for training and scoring: DataLoaders over cached images, and the samplers.

Where the images live is decided explicitly (:func:`place_images`), not as a side effect of
building a loader: a loader then only reads what it is given, from GPU or host memory.
"""

import logging
import time

import numpy as np
import torch
from libauc.sampler import DistributedDualSampler, DualSampler
from torch.utils.data import DataLoader, RandomSampler, Sampler

from deepauc.data.images import CachedImages, collate_batch
from deepauc.training.preemption import ignore_stop_signals
from deepauc.training.runtime import Runtime

log = logging.getLogger(__name__)

# A split's uint8 images go to GPU memory when they take at most this share of its free memory
# (CheXpert's training split at 224 px: 8.6 GB). Gathering a batch there costs no host work.
GPU_IMAGE_SHARE = 0.4


def sampling_rate_for(labels: np.ndarray, setting: float | str) -> float:
    """DualSampler's share of positives per batch.

    ``auto`` follows LibAUC's advice (a rate slightly above the positive share): twice the
    training prevalence, kept within [0.1, 0.5]. Rare diseases then see a few positives in every
    batch, which AUCMLoss needs, without an epoch repeating each positive many times over.
    """
    if setting == "auto":
        return float(np.clip(2.0 * labels.mean(), 0.1, 0.5))
    return float(setting)


def dual_sampler(
    images: CachedImages, labels: np.ndarray, rate: float, batch_size: int, runtime: Runtime
) -> DualSampler:
    """LibAUC's DualSampler: batches holding ``rate`` positives. Under DDP, LibAUC's
    DistributedDualSampler draws the same global batches and hands each rank every
    world_size-th image of them, so each rank sees its share of the positives.

    DualSampler reseeds numpy's global generator: build it before anything else draws from it.
    """
    if runtime.distributed:
        sampler_class, batch_key = DistributedDualSampler, "batch_size_per_gpu"
    else:
        sampler_class, batch_key = DualSampler, "batch_size"
    return sampler_class(
        images,
        labels=labels,
        sampling_rate=rate,
        random_seed=runtime.seed,
        **{batch_key: batch_size},
    )


class EpochOrder(Sampler):
    """A training sampler whose order of each epoch is kept (``order``), so that an epoch
    stopped part-way can be continued where it stopped (:meth:`continue_from`) on a rerun.

    The wrapped sampler runs as it would inside the DataLoader, once per epoch, drawing the
    same random numbers at the same points (DualSampler computes its whole epoch at once;
    RandomSampler draws its permutation when the epoch's first batch is asked for)."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.order: np.ndarray | None = None
        self._continue: tuple[np.ndarray, int] | None = None

    def __iter__(self):
        if self._continue is not None:  # the rest of a stopped epoch; nothing is drawn
            self.order, start = self._continue
            self._continue = None
            return iter(self.order[start:].tolist())
        self.order = np.fromiter(iter(self.sampler), dtype=np.int64)
        return iter(self.order.tolist())

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):  # DDP samplers: a new order per epoch
            self.sampler.set_epoch(epoch)

    def continue_from(self, order, start: int) -> None:
        """The next epoch is the rest of ``order``, from its ``start``-th index on."""
        self._continue = (np.asarray(order, dtype=np.int64), int(start))


def training_loader(
    images: CachedImages,
    runtime: Runtime,
    batch_size: int,
    generator: torch.Generator,
    sampler=None,
    drop_last: bool = False,
) -> DataLoader:
    """A training DataLoader: ``sampler`` (a shuffle drawn from ``generator`` if None) in an
    :class:`EpochOrder`."""
    if sampler is None:
        sampler = RandomSampler(images, generator=generator)
    return make_loader(
        images,
        runtime,
        batch_size=batch_size,
        sampler=EpochOrder(sampler),
        drop_last=drop_last,
        generator=generator,
    )


def eval_loader(images: CachedImages, batch_size: int, runtime: Runtime) -> DataLoader:
    """``images`` in order, for scoring; a DDP rank's share is every world_size-th of them."""
    share = range(runtime.rank, len(images), runtime.world_size) if runtime.distributed else None
    return make_loader(
        images,
        runtime,
        batch_size=batch_size,
        sampler=share,
        # Its own generator, so evaluating never moves the training random streams.
        generator=torch.Generator().manual_seed(0),
    )


def make_loader(images: CachedImages, runtime: Runtime, **options) -> DataLoader:
    """A DataLoader over ``images``: batches gathered in GPU memory if :func:`place_images` put
    them there, else read from the host cache (by worker processes on a GPU machine)."""
    on_device = images.on_device is not None
    workers = 0 if on_device else runtime.loader_workers
    return DataLoader(
        images,
        num_workers=workers,
        collate_fn=collate_batch,
        # Pinned host memory lets the copy to the GPU run while the GPU computes.
        pin_memory=runtime.device.type == "cuda" and not on_device,
        persistent_workers=workers > 0,
        **({"prefetch_factor": 4, "worker_init_fn": ignore_stop_signals} if workers else {}),
        **options,
    )


def place_images(images: CachedImages, runtime: Runtime) -> CachedImages:
    """Move ``images`` into GPU memory if the runtime allows it and they take at most
    ``GPU_IMAGE_SHARE`` of the free GPU memory; otherwise workers read them from the host.
    Returns ``images``."""
    if runtime.device.type != "cuda" or runtime.images_on_gpu == "never":
        return images
    free, _ = torch.cuda.mem_get_info(runtime.device)
    gigabytes = images.nbytes / 1e9
    if images.nbytes > GPU_IMAGE_SHARE * free:
        log.info(
            "%d images (%.1f GB) stay in host memory: more than %.0f%% of the GPU's free %.1f GB",
            len(images),
            gigabytes,
            100 * GPU_IMAGE_SHARE,
            free / 1e9,
        )
        return images
    started = time.perf_counter()
    images.move_to(runtime.device)
    log.info(
        "%d images (%.2f GB) copied to GPU memory in %.1f s",
        len(images),
        gigabytes,
        time.perf_counter() - started,
    )
    return images
