"""Images and targets for training: cached splits in, model-ready batches out.

The CPU only gathers rows of a split's uint8 image cache (see ``deepauc.data.cache``); everything
else happens on the training device on whole batches (``to_model_input``): conversion to float,
random affine augmentation, grayscale to three channels, ImageNet normalisation, channels_last.
A batch crosses to the GPU as uint8, a quarter of the bytes of float. The same code runs on CPU.
"""

import functools
import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from deepauc.data.cache import open_cache

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Augmentation(Protocol):
    """What the augmentation reads: ``deepauc.config.settings.AugmentSettings`` (the config's
    ``augment`` section) is one. The image layer states what it needs rather than importing
    the configuration, which sits above it."""

    rotation: float  # degrees, drawn uniformly from [-rotation, rotation]
    translate: float  # fraction of the image side, per axis
    scale: tuple[float, float]
    hflip: bool

    @property
    def is_identity(self) -> bool: ...


@dataclass(frozen=True)
class CachedSplit:
    """A split table and its image cache: row i of the cache is the table's row i."""

    table: pd.DataFrame
    cache: str | os.PathLike

    def images(
        self, outputs: list[str], size: int, keep: np.ndarray | pd.Series | None = None
    ) -> "CachedImages":
        """The split's images with targets for ``outputs``, only the rows in ``keep`` if given."""
        return CachedImages(self, outputs, size, keep)


def collate_batch(batch):
    """A batch arrives whole from ``CachedImages.__getitems__``: nothing left to collate."""
    return batch


class CachedImages(Dataset):
    """Rows of a split's image cache with their targets (NaN where a label is ignored).

    An item is a (size, size) uint8 image and its target vector. A DataLoader fetches a whole
    batch with one gather from the memory-mapped cache (``__getitems__``); pass
    ``collate_fn=collate_batch``. After ``move_to(gpu)`` the images live in GPU memory and a
    batch is gathered there: no loader workers, no host copies, no host memory beyond the map.
    """

    def __init__(
        self,
        split: CachedSplit,
        outputs: list[str],
        size: int,
        keep: np.ndarray | pd.Series | None = None,
    ):
        keep = np.ones(len(split.table), bool) if keep is None else np.asarray(keep, bool)
        open_cache(split.cache, len(split.table), size)  # fail here, not in a loader worker
        self.cache_path, self.size, self.cache_rows = str(split.cache), size, len(split.table)
        self.rows = np.flatnonzero(keep)
        self.targets = split.table.loc[keep, outputs].to_numpy(dtype=np.float32, na_value=np.nan)
        self._images = None
        self.on_device = None  # (images, targets) on a GPU, after move_to
        # Batches also carry each item's position in this dataset: a loss that keeps state
        # per training sample (libauc's partial-AUC losses) needs them.
        self.with_index = False

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self):
        # A worker maps the file itself: pickling the map would copy the whole cache.
        return {**self.__dict__, "_images": None, "on_device": None}

    @property
    def nbytes(self) -> int:
        return len(self.rows) * self.size * self.size

    def move_to(self, device: torch.device, chunk: int = 4096) -> None:
        """Copy this dataset's images and targets into ``device`` memory, ``chunk`` images at a
        time so that host memory holds one chunk, not the cache."""
        cache = self._cache()
        images = torch.empty(
            (len(self.rows), self.size, self.size), dtype=torch.uint8, device=device
        )
        for start in range(0, len(self.rows), chunk):
            rows = self.rows[start : start + chunk]
            images[start : start + len(rows)].copy_(torch.from_numpy(cache[rows]))
        self.on_device = images, torch.tensor(self.targets, device=device)

    def _cache(self) -> np.ndarray:
        if self._images is None:
            self._images = open_cache(self.cache_path, self.cache_rows, self.size)
        return self._images

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        """(images, targets) of ``indices``, and the indices too when ``with_index``."""
        index = np.asarray(indices, dtype=np.int64)
        if self.on_device is not None:
            images, targets = self.on_device
            index = torch.from_numpy(index)
            if images.is_cuda:  # a copy from pageable memory would wait for the GPU to finish
                index = index.pin_memory().to(images.device, non_blocking=True)
            batch = images.index_select(0, index), targets.index_select(0, index)
        else:
            images = torch.from_numpy(np.ascontiguousarray(self._cache()[self.rows[index]]))
            batch = images, torch.from_numpy(self.targets[index])
            index = torch.from_numpy(index)
        return (*batch, index) if self.with_index else batch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(part[0] for part in self.__getitems__([index]))


def random_affine(
    images: torch.Tensor, settings: Augmentation, generator: torch.Generator
) -> torch.Tensor:
    """Each image of a (B, C, H, W) float batch rotated, scaled, shifted (and flipped) at random,
    with the ranges of ``settings``, drawn from ``generator``."""
    draws = torch.rand(images.shape[0], 5, generator=generator, device=images.device)
    low, high = settings.scale
    return affine(
        images,
        angle=(2 * draws[:, 0] - 1) * settings.rotation,
        scale=low + (high - low) * draws[:, 1],
        shift=(2 * draws[:, 2:4] - 1) * settings.translate,
        flip=(draws[:, 4] < 0.5) & settings.hflip,
    )


def affine(
    images: torch.Tensor,
    angle: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    flip: torch.Tensor,
) -> torch.Tensor:
    """Per image of a (B, C, H, W) batch: rotate by ``angle`` degrees and scale by ``scale``
    about the centre, shift by ``shift`` (B, 2: x and y, as fractions of the image side), and
    mirror where ``flip``. torchvision's ``affine`` convention, for a whole batch in one
    ``affine_grid`` + ``grid_sample``; pixels from outside the image are black.
    """
    radians = torch.deg2rad(angle)
    cos, sin = torch.cos(radians) / scale, torch.sin(radians) / scale
    # The grid maps each output pixel to where it samples the input: the inverse transform.
    inverse = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)
    # In grid coordinates the image spans [-1, 1]: a shift of a fraction t of its side is 2t.
    offset = -(inverse @ (2 * shift).unsqueeze(2))
    theta = torch.cat([inverse, offset], 2)
    theta[:, 0] *= torch.where(flip, -1.0, 1.0).to(theta)[:, None]
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_model_input(
    images: torch.Tensor,
    device: torch.device,
    augment: Augmentation | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A (B, H, W) uint8 batch as normalised three-channel float input on ``device``.

    With ``augment`` (and its ``generator``, on ``device``) the batch is augmented first.
    """
    pixels = images.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)
    if augment is not None and not augment.is_identity:
        pixels = random_affine(pixels, augment, generator)
    # (x - mean) / std per channel, broadcast from one gray channel to three in one kernel.
    gain, bias = _normalisation(device)
    batch = torch.addcmul(bias, pixels, gain)
    if device.type == "cuda":
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def normalisation_tensors(device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """1/std and -mean/std as (1, 3, 1, 1) tensors on ``device``: ``gain * pixels + bias`` is
    ImageNet's normalisation of a [0, 1] gray batch, broadcast to three channels."""
    gain = [1 / s for s in IMAGENET_STD]
    bias = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    return tuple(torch.tensor(v, device=device).view(1, 3, 1, 1) for v in (gain, bias))


@functools.cache
def _normalisation(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`normalisation_tensors` on ``device``, made once: building them from Python lists
    each step would copy from pageable memory, which waits for the GPU."""
    return normalisation_tensors(device)


def augment_generator(device: torch.device, seed: int) -> torch.Generator:
    """The augmentation's own random stream, on the device that augments. Offset from the
    loader's seed so that shuffling and augmentation do not draw the same numbers."""
    return torch.Generator(device=device).manual_seed(seed + 1)
