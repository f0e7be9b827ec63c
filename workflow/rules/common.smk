import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The scripts import the deepauc library. Snakemake hands its own sys.path on to every script,
# so this also serves a plain checkout and `--sdm conda` environments, where this checkout is
# not pip-installed.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))

import shutil

from deepauc.chexpert import slug
from deepauc.settings import finetune_settings, preprocess_settings, synth_spec

validate(config, schema="../schemas/config.schema.yaml")
# Fail at parse time with the config key to fix, before any job starts.
PREPROCESS_SETTINGS = preprocess_settings(config)
SYNTHETIC = config["synthetic"]["enabled"]
if SYNTHETIC:
    synth_spec(config)
finetune_settings(config["finetune"])

SPLITS = ["train", "val", "test"]
ARCHITECTURES = config["architectures"]
SEEDS = config["seeds"]
METHODS = config["finetune"]["methods"]
DISEASE_BY_SLUG = {slug(d): d for d in config["diseases"]}


wildcard_constraints:
    seed=r"\d+",
    method="|".join(METHODS),
    disease="|".join(DISEASE_BY_SLUG),
    arch="|".join(ARCHITECTURES),


def uses_gpu():
    """1 when training jobs will run on a GPU, so schedulers and `--resources gpu=N` can count
    them. `auto` looks for the NVIDIA driver's tool rather than importing torch at parse time.
    """
    if config["device"] == "auto":
        return int(shutil.which("nvidia-smi") is not None)
    return int(config["device"] == "cuda")


def disease_name(wildcards):
    return DISEASE_BY_SLUG[wildcards.disease]


def dataset_file(name):
    """A file of the dataset folder; an absolute `name` stands for itself."""
    return os.path.join(config["data_root"], config["dataset_dir"], name)


TRAIN_CSV = dataset_file(config["train_csv"])
TEST_CSV = dataset_file(config["test_csv"])


def check_dataset_present():
    """With synthetic data off, the CSVs must exist: say which key to set if they do not."""
    for key, path in (("train_csv", TRAIN_CSV), ("test_csv", TEST_CSV)):
        if not os.path.isfile(path):
            raise WorkflowError(
                f"{path} not found (config keys data_root={config['data_root']!r}, "
                f"dataset_dir={config['dataset_dir']!r}, {key}={config[key]!r}).\n"
                "Fix: pass the folder that holds CheXpert-v1.0-small/, e.g. "
                "--config data_root=/data/chexpert, or set synthetic.enabled: true."
            )


if SYNTHETIC and (config["train_csv"], config["test_csv"]) != (
    "train.csv",
    "valid.csv",
):
    raise WorkflowError(
        "the synthetic dataset is written as train.csv and valid.csv.\n"
        "Fix: leave train_csv and test_csv at their defaults while synthetic.enabled is true."
    )
if not SYNTHETIC:
    check_dataset_present()


def data_root(wildcards):
    """The folder CSV Path values are relative to. The images themselves are not declared as
    inputs (CheXpert has 224,000 of them); the CSVs that name them are."""
    return config["data_root"]


def default_targets():
    targets = expand("results/data/{split}.csv", split=SPLITS)
    targets.append("results/data/label_audit.csv")
    if SYNTHETIC:
        targets.append("results/data/synthetic_examples.png")
    targets += expand(
        "results/models/{arch}/seed{seed}/{method}/{disease}.pt",
        arch=ARCHITECTURES,
        seed=SEEDS,
        method=METHODS,
        disease=DISEASE_BY_SLUG,
    )
    return targets
