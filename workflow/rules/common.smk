import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The scripts import the deepauc library. Snakemake hands its own sys.path on to every script,
# so this also serves a plain checkout and `--sdm conda` environments, where this checkout is
# not pip-installed.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from deepauc.settings import preprocess_settings, synth_spec

validate(config, schema="../schemas/config.schema.yaml")
# Fail at parse time with the config key to fix, before any job starts.
PREPROCESS_SETTINGS = preprocess_settings(config)
SYNTHETIC = config["synthetic"]["enabled"]
if SYNTHETIC:
    synth_spec(config)

SPLITS = ["train", "val", "test"]


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
    return targets
