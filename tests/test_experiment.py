"""A results folder belongs to one experiment (deepauc.config.experiment): recorded by its first
run, compared with every later command, a different one refused unless accepted."""

import copy
from pathlib import Path

import pytest
import yaml

from deepauc.config.experiment import (
    RECORD,
    claim_results,
    differences,
    experiment_of,
)
from deepauc.config.layers import load_config
from deepauc.config.settings import RUNTIME_KEYS
from deepauc.errors import InputError

REPO = Path(__file__).resolve().parents[1]
QUICK = load_config(REPO / "config" / "config.yaml")
CHEXPERT = load_config(REPO / "config" / "chexpert.yaml")


def _csvs(folder: Path, text: str = "Path\na.jpg\n") -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", "valid.csv"):
        (folder / name).write_text(text)
    return {"train_csv": str(folder / "train.csv"), "test_csv": str(folder / "valid.csv")}


def _finished(folder: Path) -> None:
    """results/ as a run leaves it: outputs beside the record."""
    (folder / "results" / "models").mkdir(parents=True, exist_ok=True)
    (folder / "results" / "summary.csv").write_text("architecture\n")


def test_runtime_figure_and_inference_keys_are_not_part_of_the_experiment():
    changed = copy.deepcopy(CHEXPERT)
    for key in RUNTIME_KEYS:
        changed[key] = "something else"
    changed["evaluation"]["batch_size"] = 7
    changed["figures"]["dpi"] = 50
    changed["inference"]["image_sets"] = {"ward": {"csv": "/data/ward.csv"}}
    changed["accept_changes"] = True
    assert differences(experiment_of(CHEXPERT), experiment_of(changed)) == []


def test_every_other_key_is_data_or_protocol():
    record = experiment_of(CHEXPERT)
    assert {"data_root", "synthetic", "diseases", "uncertainty", "split"} <= set(record["data"])
    assert {"architectures", "seeds", "finetune", "warmup", "ensemble"} <= set(record["protocol"])
    assert "batch_size" not in record["protocol"]["evaluation"]
    changed = copy.deepcopy(CHEXPERT)
    changed["finetune"]["ce"]["lr"] = 1e-3
    changed["seeds"] = [0]
    assert differences(record, experiment_of(changed)) == [
        "finetune.ce.lr: [3.0e-05, 0.0001, 0.0003] -> 0.001",
        "seeds: [0, 1, 2] -> [0]",
    ]


def test_the_quick_start_differs_from_a_chexpert_run_in_its_data_and_protocol():
    found = differences(experiment_of(CHEXPERT), experiment_of(QUICK))
    keys = {line.split(":")[0] for line in found}
    assert {"data_root", "synthetic.enabled", "architectures", "image_size"} <= keys


def test_a_moved_download_with_the_same_csvs_is_the_same_data(tmp_path):
    first = experiment_of(CHEXPERT, _csvs(tmp_path / "a"))
    moved = {**CHEXPERT, "data_root": str(tmp_path / "b")}
    assert differences(first, experiment_of(moved, _csvs(tmp_path / "b"))) == []
    edited = experiment_of(moved, _csvs(tmp_path / "c", "Path\nb.jpg\n"))
    keys = {line.split(":")[0] for line in differences(first, edited)}
    assert keys == {"csv_sha256.train_csv", "csv_sha256.test_csv", "data_root"}


def test_the_first_run_records_and_the_same_experiment_passes(tmp_path):
    experiment = experiment_of(CHEXPERT, _csvs(tmp_path / "data"))
    made = ["config/protocol.yaml", "config/chexpert.yaml", "config/config.yaml"]
    claim = claim_results(experiment, made, folder=tmp_path)
    assert "recorded" in claim.note
    assert not (tmp_path / "results").exists()  # written when jobs start, not before
    claim.write()
    record = yaml.safe_load((tmp_path / RECORD).read_text())
    assert record["configs"] == made and record["experiment"] == experiment
    _finished(tmp_path)
    assert claim_results(experiment, made, folder=tmp_path) is None


def test_a_different_experiment_is_refused_with_what_differs_and_the_fix(tmp_path):
    made = ["config/protocol.yaml", "config/chexpert.yaml", "config/config.yaml"]
    claim_results(experiment_of(CHEXPERT, _csvs(tmp_path / "data")), made, folder=tmp_path).write()
    _finished(tmp_path)
    before = (tmp_path / RECORD).read_text()
    with pytest.raises(InputError) as refused:
        claim_results(experiment_of(QUICK), ["config/protocol.yaml"], folder=tmp_path)
    message = str(refused.value)
    assert "config/chexpert.yaml" in message and "synthetic.enabled: False -> True" in message
    assert "deepauc init" in message and "--directory" in message
    assert "--config accept_changes=True" in message
    assert (tmp_path / RECORD).read_text() == before


def test_an_accepted_change_is_written_into_the_record(tmp_path):
    claim_results(experiment_of(CHEXPERT), ["a.yaml"], folder=tmp_path).write()
    _finished(tmp_path)
    changed = copy.deepcopy(CHEXPERT)
    changed["finetune"]["epochs"] = 3
    new = experiment_of(changed)
    claim = claim_results(new, ["a.yaml"], accept=True, folder=tmp_path)
    assert "finetune.epochs: 2 -> 3" in claim.note
    with pytest.raises(InputError):  # accepted only once written, by a command that ran jobs
        claim_results(new, ["a.yaml"], folder=tmp_path)
    claim.write()
    record = yaml.safe_load((tmp_path / RECORD).read_text())
    assert record["experiment"] == new
    assert record["changes"][-1]["changed"] == ["finetune.epochs: 2 -> 3"]
    assert claim_results(new, ["a.yaml"], folder=tmp_path) is None


def test_a_folder_without_outputs_takes_the_new_experiment(tmp_path):
    """A first command that failed before any job finished leaves only the record and logs:
    nothing is lost by recording the next one."""
    claim_results(experiment_of(QUICK), ["config/config.yaml"], folder=tmp_path).write()
    (tmp_path / "results" / "logs").mkdir()
    claim = claim_results(experiment_of(CHEXPERT), ["config/chexpert.yaml"], folder=tmp_path)
    assert "held no outputs" in claim.note
    claim.write()
    record = yaml.safe_load((tmp_path / RECORD).read_text())
    assert record["experiment"] == experiment_of(CHEXPERT)


def test_a_damaged_record_is_named_with_the_fix(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / RECORD).write_text("experiment: [unclosed\n")
    with pytest.raises(InputError, match="experiment.yaml: cannot be read"):
        claim_results(experiment_of(QUICK), ["x"], folder=tmp_path)
