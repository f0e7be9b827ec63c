"""Shared fixtures and helpers: a small hand-made CheXpert download whose label counts are known
exactly, a CheXpert-format JPEG tree, a read-only view of it and its fingerprint."""

import contextlib
import csv
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from deepauc.data.chexpert import HEADER
from deepauc.data.synth import SynthSpec, generate_dataset
from deepauc.models.normalization import normalization_index
from deepauc.models.timm_index import INDEX_FOLDER, model_index

DISEASES = ["Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion"]

# (Path, view, labels for DISEASES). Codes as CheXpert writes them; "" is blank.
# Both release prefixes appear, as in CSVs shared between the small and the full download.
TRAIN_ROWS = [
    (
        "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
        "Frontal",
        ["1.0", "-1.0", "", "0.0", "1.0"],
    ),
    (
        "CheXpert-v1.0-small/train/patient00001/study1/view2_lateral.jpg",
        "Lateral",
        ["1.0", "-1.0", "", "0.0", "1.0"],
    ),
    (
        "CheXpert-v1.0-small/train/patient00001/study2/view1_frontal.jpg",
        "Frontal",
        ["-1.0", "", "0.0", "-1.0", ""],
    ),
    (
        "CheXpert-v1.0/train/patient00002/study1/view1_frontal.jpg",
        "Frontal",
        ["0.0", "1.0", "", "", "-1.0"],
    ),
    (
        "CheXpert-v1.0/train/patient00003/study1/view1_frontal.jpg",
        "Frontal",
        ["", "0.0", "1.0", "1.0", "0.0"],
    ),
    (
        "CheXpert-v1.0/train/patient00003/study1/view2_lateral.jpg",
        "Lateral",
        ["", "", "", "", "-1.0"],
    ),
    (
        "CheXpert-v1.0-small/train/patient00004/study1/view1_frontal.jpg",
        "Frontal",
        ["-1.0", "-1.0", "-1.0", "-1.0", "-1.0"],
    ),
    (
        "CheXpert-v1.0-small/train/patient00005/study1/view1_frontal.jpg",
        "Frontal",
        ["", "", "", "", "1.0"],
    ),
    (
        "CheXpert-v1.0-small/train/patient00006/study1/view1_frontal.jpg",
        "Frontal",
        ["1.0", "1.0", "1.0", "1.0", "1.0"],
    ),
    (
        "CheXpert-v1.0-small/train/patient00007/study1/view1_frontal.jpg",
        "Frontal",
        ["0.0", "0.0", "0.0", "", "0.0"],
    ),
]
VALID_ROWS = [
    (
        "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg",
        "Frontal",
        ["1.0", "1.0", "1.0", "1.0", "1.0"],
    ),
    (
        "CheXpert-v1.0-small/valid/patient64542/study1/view1_frontal.jpg",
        "Frontal",
        ["0.0", "0.0", "0.0", "0.0", "0.0"],
    ),
    (
        "CheXpert-v1.0-small/valid/patient64542/study1/view2_lateral.jpg",
        "Lateral",
        ["0.0", "0.0", "0.0", "0.0", "0.0"],
    ),
    (
        "CheXpert-v1.0-small/valid/patient64543/study1/view1_frontal.jpg",
        "Frontal",
        ["0.0", "1.0", "0.0", "1.0", "0.0"],
    ),
]


def write_chexpert_csv(path: Path, rows) -> Path:
    """Write rows in CheXpert's exact 19-column format (other labels blank)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for image, view, labels in rows:
            record = dict.fromkeys(HEADER, "")
            record.update(Path=image, Sex="Female", Age="50", **{"Frontal/Lateral": view})
            record["AP/PA"] = "AP" if view == "Frontal" else ""
            record.update(zip(DISEASES, labels, strict=True))
            writer.writerow([record[c] for c in HEADER])
    return path


@pytest.fixture
def chexpert_root(tmp_path) -> Path:
    """A data_root holding CheXpert-v1.0-small/ with the fixture CSVs and tiny JPEGs."""
    dataset = tmp_path / "CheXpert-v1.0-small"
    write_chexpert_csv(dataset / "train.csv", TRAIN_ROWS)
    write_chexpert_csv(dataset / "valid.csv", VALID_ROWS)
    for image, _, _ in TRAIN_ROWS + VALID_ROWS:
        relative = image.split("/", 1)[1]
        (dataset / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), color=128).save(dataset / relative)
    return tmp_path


@functools.cache
def timm_index_folder() -> Path:
    """The timm model index and the tests' networks' normalization, listed once a session."""
    folder = Path(tempfile.mkdtemp(prefix="deepauc-timm-index-"))
    model_index(folder)
    normalization_index(["resnet10t", "convnext_atto", "efficientvit_b0"], folder)  # tests' nets
    return folder


def copy_timm_index(work: Path) -> None:
    """Give a workflow copy the timm model index and the networks' normalization a first run
    would list (seconds of importing timm, once per test session instead of once per copy)."""
    shutil.copytree(timm_index_folder(), work / INDEX_FOLDER, dirs_exist_ok=True)


def chexpert_tree(root: Path) -> Path:
    """A CheXpert-v1.0-small download under ``root`` (CSVs and JPEGs); returns ``root``."""
    spec = SynthSpec(n_train_patients=80, n_valid_patients=60, image_size=(64, 64), seed=1)
    generate_dataset(root, spec)
    return root


def fingerprint(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: content digest, size, mode and mtime."""
    found = {}
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        entry = (stat.st_mode, stat.st_mtime_ns)
        if path.is_file():
            entry += (stat.st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        found[str(path.relative_to(root))] = entry
    return found


@contextlib.contextmanager
def read_only(tree: Path, tmp_path: Path):
    """``tree`` as the workflow should see a user's download: a read-only bind mount where
    this is root (so any write fails loudly), else its files and folders made read-only."""
    if os.geteuid() == 0 and shutil.which("mount"):
        view = tmp_path / "read_only_view"
        view.mkdir()
        bound = subprocess.run(["mount", "--bind", str(tree), str(view)], capture_output=True)
        if bound.returncode == 0:
            try:
                remounted = subprocess.run(
                    ["mount", "-o", "remount,ro,bind", str(view)], capture_output=True
                )
                if remounted.returncode == 0:
                    yield view
                    return
            finally:
                subprocess.run(["umount", "-l", str(view)], check=False)
    modes = {path: path.stat().st_mode for path in [tree, *tree.rglob("*")]}
    for path in sorted(modes, key=lambda p: -len(p.parts)):
        path.chmod(modes[path] & ~0o222)
    try:
        yield tree
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
