"""Decode once: a split's images as one uint8 array on disk, read by memory map.

Training sees every image once per epoch, for many epochs and many jobs; decoding a JPEG each
time costs more CPU than a GPU step. ``build_cache`` decodes each image of a split table once,
converts it to grayscale and resizes it to the training size, and stores all of them in a ``.npy``
file of shape (images, size, size) in the table's row order. ``open_cache`` maps that file
read-only: loader workers share its pages through the OS page cache instead of each holding a
copy, so host memory stays bounded by the file's size.
"""

import errno
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from deepauc.atomic import NO_SPACE, atomic_path, no_space_error
from deepauc.errors import InputError

log = logging.getLogger(__name__)

CHUNK = 256  # images decoded between progress updates


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """The image at ``path`` as a (size, size) uint8 grayscale array.

    ``draft`` lets the JPEG decoder skip detail the resize would throw away (it decodes at 1/2,
    1/4 or 1/8 scale, never below ``size``): a full-resolution CheXpert image then decodes
    several times faster.
    """
    with Image.open(path) as image:
        image.draft("L", (size, size))
        gray = image.convert("L").resize((size, size), Image.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def build_cache(
    images: list[str], size: int, path: str | os.PathLike, workers: int = 1, label: str = ""
) -> None:
    """Decode ``images`` into the cache file ``path``, atomically (see the module docstring)."""
    path = Path(path)
    log.info(
        "caching %d images at %d px into %s with %d thread(s)", len(images), size, path, workers
    )
    with atomic_path(path) as tmp:
        # np.save would need the whole array in memory; open_memmap writes it piece by piece.
        array = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(images), size, size)
        )
        reserve_space(tmp, path)
        # Pillow releases the GIL while decoding and resizing, so threads scale over cores.
        with (
            ThreadPoolExecutor(max(1, workers)) as pool,
            tqdm(
                total=len(images), desc=f"cache {label}".strip(), unit="img", mininterval=5.0
            ) as bar,
        ):
            for start in range(0, len(images), CHUNK):
                chunk = images[start : start + CHUNK]
                for offset, pixels in enumerate(
                    pool.map(try_load_image, chunk, [size] * len(chunk))
                ):
                    if isinstance(pixels, Exception):
                        raise InputError(
                            f"cannot decode image {chunk[offset]!r}: {pixels}",
                            where=f"{label or 'split'} table, image {start + offset + 1}",
                            fix="keep check_images: true so that preprocessing finds every bad "
                            "image up front (on_bad_image: skip leaves them out).",
                        )
                    array[start + offset] = pixels
                bar.update(len(chunk))
        array.flush()
        del array
    log.info("%s: %.1f MB", path, path.stat().st_size / 1e6)


def reserve_space(tmp: Path, target: Path) -> None:
    """Give the memory-mapped file ``tmp`` its blocks before any write. ``open_memmap`` makes a
    sparse file: on a disk that fills up, a write into the map then kills the process with
    SIGBUS, no message, no cleanup. Reserved up front, a full disk is one clear error."""
    needed = tmp.stat().st_size
    free = shutil.disk_usage(tmp.parent).free
    if needed > free:
        raise no_space_error(target, needed)
    try:
        with open(tmp, "r+b") as handle:
            os.posix_fallocate(handle.fileno(), 0, needed)
    except OSError as err:
        if err.errno in NO_SPACE:
            raise no_space_error(target, needed) from err
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        # A filesystem without fallocate (some network mounts): the free-space check stands.


def try_load_image(path: str, size: int) -> np.ndarray | Exception:
    """:func:`load_image`, or the error of an image that is missing, unreadable or truncated
    (returned, not raised: the caller says which image it was)."""
    try:
        return load_image(path, size)
    except (OSError, SyntaxError, ValueError) as err:  # missing, unreadable or truncated
        return err


def open_cache(path: str | os.PathLike, rows: int, size: int) -> np.ndarray:
    """Map the cache at ``path`` read-only, checking that it holds ``rows`` images of ``size``."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise InputError(
            f"cannot read image cache {path}: {err}",
            where=str(path),
            fix="delete it and rerun: the workflow rebuilds it from the split table.",
        ) from err
    expected = (rows, size, size)
    if array.shape != expected or array.dtype != np.uint8:
        raise InputError(
            f"image cache {path} holds {array.dtype} {array.shape}, expected uint8 {expected}",
            where=str(path),
            fix="it belongs to another split table or image size: delete it and rerun.",
        )
    return array
