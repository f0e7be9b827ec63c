"""Model files: what a finished stage leaves behind, and how the next stage reads it."""

import os
import shutil
from pathlib import Path

import torch
from torch import nn

from deepauc.atomic import atomic_path
from deepauc.errors import InputError
from deepauc.models.build import create_model

FORMAT = 1
WRITE_FAILED = ("write failed", "failed writing", "unexpected pos")


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


def load_model(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the network saved at ``path``; returns ``(model, meta)``."""
    try:
        saved = torch.load(Path(path), map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        raise InputError(
            f"cannot read model file ({err})",
            where=str(path),
            fix="delete it and rerun the rule that makes it.",
        ) from err
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
