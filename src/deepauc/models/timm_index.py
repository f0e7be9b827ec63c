"""timm's model names and where each one's pretrained weights live, without importing timm.

Importing timm takes seconds (it imports torch and torchvision): too slow for the workflow to do
while it plans jobs, dry runs included. So the names are listed once per installed timm version,
by a subprocess, and kept as JSON in Snakemake's own folder of the working directory
(``.snakemake/deepauc/``); planning reads that file.

Run as ``python -m deepauc.models.timm_index`` it prints the index (what the subprocess does).
"""

import difflib
import importlib.metadata
import json
import logging
import subprocess
import sys
from pathlib import Path

from deepauc.atomic import atomic_path
from deepauc.errors import InputError

log = logging.getLogger(__name__)

#: Where the index is kept, relative to the working directory: Snakemake's own folder.
INDEX_FOLDER = Path(".snakemake", "deepauc")


def timm_version() -> str | None:
    try:
        return importlib.metadata.version("timm")
    except importlib.metadata.PackageNotFoundError:
        return None


def model_index(folder: str | Path = INDEX_FOLDER) -> dict | None:
    """``{"models": [names], "weights": {name: [hf_hub_id, hf_hub_filename, url]}}`` for the
    installed timm (``weights`` has every model's default weights and every ``name.tag``);
    None where timm cannot be listed here (not installed, or broken), with a warning."""
    version = timm_version()
    if version is None:
        log.warning("timm is not installed here: architecture names are checked in the jobs")
        return None
    path = Path(folder) / f"timm-{version}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass  # a damaged index is listed again
    listed = subprocess.run(
        [sys.executable, "-m", "deepauc.models.timm_index"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],  # this checkout's deepauc, not another's
    )
    if listed.returncode != 0:
        log.warning(
            "could not list timm's models (%s): architecture names are checked in the jobs",
            listed.stderr.strip().splitlines()[-1:] or "no message",
        )
        return None
    with atomic_path(path) as tmp:
        tmp.write_text(listed.stdout)
    return json.loads(listed.stdout)


def check_architectures(names, known) -> None:
    """Refuse the first of ``names`` that is no timm model (``known``: timm's model names;
    a pretrained tag, ``convnext_tiny.fb_in1k``, is allowed), suggesting the closest ones."""
    known = set(known)
    for arch in names:
        if arch.split(".", 1)[0] in known:
            continue
        close = difflib.get_close_matches(arch, sorted(known), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise InputError(
            f"unknown timm model {arch!r}",
            where="config key architectures",
            fix=f"{hint}Use a name from timm.list_models(), e.g. convnext_tiny, densenet169, "
            "swin_tiny_patch4_window7_224, davit_tiny.",
        )


def _list_timm() -> dict:
    import timm

    def where(name: str) -> list:
        cfg = timm.get_pretrained_cfg(name)
        return [cfg.hf_hub_id, cfg.hf_hub_filename, cfg.url] if cfg else [None, None, None]

    models = sorted(timm.list_models())
    weights = {name: where(name) for name in [*models, *timm.list_pretrained()]}
    return {"timm": timm.__version__, "models": models, "weights": weights}


if __name__ == "__main__":
    json.dump(_list_timm(), sys.stdout)
