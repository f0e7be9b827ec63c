"""Model files: what a finished stage leaves behind, and how the next stage reads it.

Every file this pipeline reads back (models, resume files) is loaded by :func:`safe_load`:
``torch.load(weights_only=True)`` with an explicit allow-list, numpy's plain arrays and scalars
and nothing else. A file from a shared results folder or a colleague that carries any other
pickled object (one that would run code as it is unpickled) is refused before anything in it
runs.
"""

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import torch
from numpy._core.multiarray import _reconstruct, scalar
from torch import nn

from deepauc.atomic import atomic_path
from deepauc.errors import InputError
from deepauc.models.build import create_model

FORMAT = 1
WRITE_FAILED = ("write failed", "failed writing", "unexpected pos")

#: What a model or resume file may hold beyond tensors and plain Python data: numpy's arrays
#: and scalars of numeric and boolean dtypes (random-generator states, sampler positions). An
#: object array is not among them: its items would need globals of their own.
NUMERIC_DTYPES = (
    np.bool_,
    *(np.int8, np.int16, np.int32, np.int64),
    *(np.uint8, np.uint16, np.uint32, np.uint64),
    *(np.float16, np.float32, np.float64),
)
SAFE_GLOBALS = [
    _reconstruct,
    scalar,
    np.ndarray,
    np.dtype,
    *sorted({type(np.dtype(t)) for t in NUMERIC_DTYPES}, key=lambda t: t.__name__),
]


def save_model(path: str | os.PathLike, model_state: dict, meta: dict) -> None:
    """Write a model file atomically: weights plus what is needed to rebuild the network.

    ``meta`` must hold ``arch``, ``image_size`` and ``outputs`` (the disease of each logit).
    """
    save_torch({"format": FORMAT, "state_dict": model_state, **meta}, path)


def save_torch(state: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically; a failed write (full disk) is a clear error.

    torch reports a failed write as a RuntimeError ("file write failed", or "unexpected pos"
    when the zip writer finds fewer bytes on disk than it wrote), not an OSError, so it is
    translated here into a message with the free space and the fix.
    """
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except RuntimeError as err:
        if not any(sign in str(err) for sign in WRITE_FAILED):
            raise
        free = shutil.disk_usage(Path(path).parent).free / 1e6
        raise InputError(
            f"could not write {path}: {str(err).splitlines()[-1]} ({free:.0f} MB free there)",
            where=str(path),
            fix="free space on that disk, then run the same command again: finished outputs "
            "are kept and training resumes after its last saved epoch.",
        ) from err


class UnsafeFileError(InputError):
    """A file that holds pickled objects beyond the allow-list: refused, nothing in it run."""


def safe_load(path, device: torch.device | str = "cpu"):
    """``torch.load`` of ``path`` (a file name or an open binary file) that unpickles tensors,
    plain data and ``SAFE_GLOBALS`` only.

    Raises :class:`UnsafeFileError` for a file that names any other Python object (a class,
    a function: what a pickle payload calls), before it is called; a missing or truncated
    file raises ``OSError``, ``RuntimeError`` or ``EOFError`` as torch does.
    """
    named = isinstance(path, (str, os.PathLike))
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(Path(path) if named else path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        found = next(
            (line.strip() for line in str(err).splitlines() if "got <" in line or "GLOBAL" in line),
            str(err).splitlines()[-1] if str(err) else type(err).__name__,
        )
        raise UnsafeFileError(
            f"refused to load: the file holds Python objects that are not model data and "
            f"could run code when unpickled ({found[:300]})",
            where=str(path) if named else str(getattr(path, "name", "an open file")),
            fix="only load files this pipeline wrote; if it did, delete the file and rerun the "
            "rule that makes it. Never load such a file with weights_only=False unless you "
            "trust whoever made it.",
        ) from err


def load_model(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the network saved at ``path``; returns ``(model, meta)``. Loading runs no code
    from the file (:func:`safe_load`)."""
    try:
        saved = safe_load(path, device)
    except (OSError, RuntimeError, EOFError) as err:
        raise InputError(
            f"cannot read model file ({err})",
            where=str(path),
            fix="delete it and rerun the rule that makes it.",
        ) from err
    if not isinstance(saved, dict):
        raise InputError(
            f"not a model file of this pipeline (it holds a {type(saved).__name__})",
            where=str(path),
            fix="delete it and rerun the rule that makes it.",
        )
    if saved.get("format") != FORMAT:
        raise InputError(
            f"model file format {saved.get('format')!r}, expected {FORMAT}",
            where=str(path),
            fix="delete it and rerun the rule that makes it.",
        )
    model = create_model(saved["arch"], len(saved["outputs"]), saved["image_size"])
    model.load_state_dict(saved["state_dict"])
    meta = {k: v for k, v in saved.items() if k not in ("state_dict", "format")}
    return model.to(device), meta
