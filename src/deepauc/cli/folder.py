"""A working folder of your own: the layout ``snakedeploy deploy-workflow`` writes, from a clone.

``deepauc init <folder> --data-root <dir>`` writes

- ``workflow/Snakefile``: this checkout's workflow used as a Snakemake module;
- ``config/config.yaml``: the user's experiment, standing on ``chexpert.yaml`` (``extends:``),
  with ``data_root`` and, for ``--trial``, the keys of a small first run;
- ``config/``: copies of the checkout's other configs (the protocol the experiment stands on);
- ``profiles/``: the local and SLURM profiles.

Snakemake finds ``workflow/Snakefile``, ``config/config.yaml`` and ``profiles/default`` by
itself, so every command in the folder is plain (``snakemake results/summary.csv --cores 8``,
``snakemake --report results/report.html``): the folder's config is the experiment's, and its
``results/`` belong to it (:mod:`deepauc.config.experiment`).
"""

import shutil
from pathlib import Path

import deepauc
from deepauc.atomic import atomic_path
from deepauc.data.locate import check_dataset_files
from deepauc.errors import InputError

#: The checkout this library belongs to (an editable install or PYTHONPATH of a clone).
CHECKOUT = Path(deepauc.__file__).resolve().parents[2]
#: The dataset folder inside data_root, as the protocol names it.
DATASET_DIR = "CheXpert-v1.0-small"
#: Keys of a first, small run: one architecture, one seed, two diseases.
TRIAL = """\
# A trial: one architecture, one seed, two diseases, at the protocol's grids and epochs. For the
# full protocol, make a folder of its own without --trial (a results folder holds one experiment).
architectures: [convnext_tiny]
ensemble: {subsets: {}}  # the protocol's convnext+swin subset needs swin
seeds: [0]
diseases: [Cardiomegaly, Edema]
"""
SNAKEFILE = """\
# A folder of your own for deepauc, made by `deepauc init` (the layout `snakedeploy
# deploy-workflow` writes): the workflow is used as a module from its checkout, the config and
# results live here. Run Snakemake in this folder, e.g. `snakemake results/summary.csv --cores 8`.
configfile: "config/config.yaml"


module deepauc:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from deepauc
"""


def make_folder(
    folder: str | Path,
    data_root: str | Path,
    *,
    trial: bool = False,
    pretrained: str | Path | None = None,
    dataset_dir: str = DATASET_DIR,
    checkout: Path = CHECKOUT,
) -> list[Path]:
    """Write a working folder for a CheXpert-format dataset under ``data_root`` (the folder
    holding ``dataset_dir``, e.g. ``CheXpert-v1.0-small/``); returns the files written.
    Refuses a folder that holds anything, a ``data_root`` without the CSVs, and a library that
    is not a checkout."""
    folder = Path(folder).absolute()
    if not (checkout / "Snakefile").is_file() or not (checkout / "config").is_dir():
        raise InputError(
            f"this deepauc ({checkout}) is not a clone of the repository: there is no workflow "
            "to use",
            where="deepauc init",
            fix="install from a clone (git clone ...; pip install -e <clone>) and run its "
            "deepauc init.",
        )
    if folder.exists() and any(folder.iterdir()):
        raise InputError(
            f"{folder} is not empty",
            where="deepauc init",
            fix="give a new or empty folder: a folder's results/ hold one experiment.",
        )
    data_root = Path(data_root).expanduser().absolute()
    check_dataset_files(
        data_root, dataset_dir, {"train_csv": "train.csv", "test_csv": "valid.csv"}, "--data-root"
    )
    config = [
        "# Your experiment: CheXpert at the protocol (chexpert.yaml, which extends protocol.yaml:",
        "# both copied beside this file). State here only the keys you change; every key is in",
        f"# {checkout / 'config' / 'README.md'}.",
        "extends: chexpert.yaml",
        "",
        f"data_root: {data_root}",
    ]
    if dataset_dir != DATASET_DIR:
        config += [f"dataset_dir: {dataset_dir}"]
    if pretrained is not None:
        weights = Path(pretrained).expanduser().absolute()
        config += [f"pretrained: {weights}  # a folder of <architecture>.safetensors"]
    if trial:
        config += ["", TRIAL.rstrip("\n")]
    written = []
    for source in sorted((checkout / "config").glob("*.yaml")):
        if source.name != "config.yaml":  # the quick start's; this folder's is the user's own
            written.append(_copy(source, folder / "config" / source.name))
    written.append(_write(folder / "config" / "config.yaml", "\n".join(config) + "\n"))
    for source in sorted((checkout / "profiles").rglob("*.yaml")):
        relative = source.relative_to(checkout)
        written.append(_copy(source, folder / relative))
    snakefile = SNAKEFILE.format(snakefile=checkout / "Snakefile")
    written.append(_write(folder / "workflow" / "Snakefile", snakefile))
    return written


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def _write(target: Path, text: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return target
