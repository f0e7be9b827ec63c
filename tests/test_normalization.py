"""PESG's mode from a network's normalization layers: counting, the rule, and the cached index.

Real timm models are built in this process on the meta device (fast); the subprocess that
planning uses is run for real only twice (each one imports timm: seconds), elsewhere it is
replaced by one that runs :func:`deepauc.models.normalization._report` here.
"""

import json
import subprocess

import pytest
from torch import nn

from deepauc.errors import InputError
from deepauc.models import normalization
from deepauc.models.normalization import (
    auto_modes,
    count_normalization,
    describe,
    normalization_index,
    pesg_mode,
)
from deepauc.models.timm_index import timm_version

EXPECTED_MODES = {
    "convnext_atto": "adam",
    "resnet10t": "sgd",
    "densenet121": "sgd",
    "vit_tiny_patch16_224": "adam",
    "swin_tiny_patch4_window7_224": "adam",
    "davit_tiny": "adam",
}


@pytest.fixture(scope="module")
def timm_records() -> dict:
    return normalization._inspect([*EXPECTED_MODES, "no_such_model_xyz"])


@pytest.mark.parametrize("arch", list(EXPECTED_MODES))
def test_timm_models_get_the_measured_mode(timm_records, arch):
    record = timm_records[arch]
    assert record["mode"] == EXPECTED_MODES[arch]
    kind_used = "layernorm" if EXPECTED_MODES[arch] == "adam" else "batchnorm"
    other_kind = "batchnorm" if kind_used == "layernorm" else "layernorm"
    assert record[kind_used] > 0
    assert record[other_kind] == 0


def test_an_unknown_name_is_an_error_record_not_a_crash(timm_records):
    assert "no_such_model_xyz" in timm_records["no_such_model_xyz"]["error"]
    assert timm_records["convnext_atto"]["mode"] == "adam"  # the others are still listed


def test_timm_norm_layers_are_counted_as_their_kind():
    from timm.layers import BatchNormAct2d, GroupNorm1, LayerNorm2d, RmsNorm, SimpleNorm

    model = nn.Sequential(
        BatchNormAct2d(4), LayerNorm2d(4), GroupNorm1(4), RmsNorm(4), SimpleNorm(4)
    )
    assert count_normalization(model) == {"layernorm": 4, "batchnorm": 1}


def test_group_norm_only_is_adam():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.ReLU(), nn.GroupNorm(4, 8))
    counts = count_normalization(model)
    assert counts == {"layernorm": 2, "batchnorm": 0}
    assert pesg_mode(counts) == "adam"


def test_no_normalization_is_sgd():
    counts = count_normalization(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1)))
    assert counts == {"layernorm": 0, "batchnorm": 0}
    assert pesg_mode(counts) == "sgd"


def test_more_batch_norm_than_layer_norm_is_sgd():
    model = nn.Sequential(
        nn.BatchNorm1d(4),
        nn.SyncBatchNorm(4),
        nn.BatchNorm2d(4),
        nn.BatchNorm3d(4),
        nn.LayerNorm(4),
        nn.InstanceNorm2d(4),  # sample-wise: LayerNorm-like
        nn.LocalResponseNorm(2),  # in no kind: not counted
    )
    counts = count_normalization(model)
    assert counts == {"layernorm": 2, "batchnorm": 4}
    assert pesg_mode(counts) == "sgd"


def test_a_tie_is_sgd():
    assert pesg_mode({"layernorm": 3, "batchnorm": 3}) == "sgd"
    assert pesg_mode({"layernorm": 4, "batchnorm": 3}) == "adam"


def test_describe_says_mode_and_why():
    line = describe("convnext_atto", {"layernorm": 20, "batchnorm": 0, "mode": "adam"})
    assert line == (
        "convnext_atto: PESG mode adam (normalized by LayerNorm-like layers: 20, BatchNorm: 0)"
    )
    assert "PESG mode sgd" in describe("mlp", {"layernorm": 0, "batchnorm": 0})
    assert "BatchNorm: 14" in describe("resnet10t", {"layernorm": 0, "batchnorm": 14})


# ---- the cached index: the real subprocess, twice in all ----


def test_index_is_written_once_and_extended_for_new_archs(tmp_path, monkeypatch):
    records = normalization_index(["convnext_atto", "resnet10t"], tmp_path)
    assert {arch: r["mode"] for arch, r in records.items()} == {
        "convnext_atto": "adam",
        "resnet10t": "sgd",
    }
    path = tmp_path / f"normalization-{timm_version()}.json"
    kept = json.loads(path.read_text())
    assert kept["timm"] == timm_version()
    assert kept["models"]["resnet10t"] == records["resnet10t"]

    real_run = subprocess.run

    def refused(*args, **kwargs):
        raise AssertionError("the cached index should have been read, not rebuilt")

    monkeypatch.setattr(subprocess, "run", refused)
    assert normalization_index(["resnet10t", "convnext_atto"], tmp_path) == records
    assert auto_modes(["resnet10t"], tmp_path) == {"resnet10t": "sgd"}

    commands = []

    def recorded(command, **kwargs):
        commands.append(command)
        return real_run(command, **kwargs)

    monkeypatch.setattr(subprocess, "run", recorded)
    modes = auto_modes(["convnext_atto", "davit_tiny", "resnet10t"], tmp_path)
    assert modes == {"convnext_atto": "adam", "davit_tiny": "adam", "resnet10t": "sgd"}
    assert len(commands) == 1
    assert commands[0][1:] == ["-m", "deepauc.models.normalization", "davit_tiny"]
    assert set(json.loads(path.read_text())["models"]) == {
        "convnext_atto",
        "resnet10t",
        "davit_tiny",
    }


# ---- the cached index: the subprocess replaced by one run in this process ----


@pytest.fixture
def in_process_run(monkeypatch) -> list:
    """Replace the subprocess by :func:`normalization._report` run here; the list it returns
    collects the architectures each call was asked for."""
    calls = []

    def run(command, **kwargs):
        archs = command[3:]
        calls.append(archs)
        report = json.dumps(normalization._report(archs))
        return subprocess.CompletedProcess(command, 0, stdout=report, stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    return calls


def test_an_unknown_arch_is_an_input_error_naming_it(tmp_path, in_process_run):
    with pytest.raises(InputError) as raised:
        normalization_index(["resnet10t", "no_such_model_xyz"], tmp_path)
    assert "no_such_model_xyz" in str(raised.value)
    assert raised.value.where == "config key architectures"
    assert raised.value.fix
    # The architecture that could be built is kept; the unknown one is not.
    assert normalization_index(["resnet10t"], tmp_path)["resnet10t"]["mode"] == "sgd"
    assert in_process_run == [["resnet10t", "no_such_model_xyz"]]


def test_a_damaged_index_is_rebuilt(tmp_path, in_process_run):
    path = tmp_path / f"normalization-{timm_version()}.json"
    path.write_text('{"timm": "1.0", "models": {"resnet10t": ')
    assert auto_modes(["resnet10t"], tmp_path) == {"resnet10t": "sgd"}
    assert json.loads(path.read_text())["models"]["resnet10t"]["batchnorm"] > 0
    assert in_process_run == [["resnet10t"]]


def test_a_failing_subprocess_is_an_input_error(tmp_path, monkeypatch):
    def crashed(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="ImportError: no timm")

    monkeypatch.setattr(subprocess, "run", crashed)
    with pytest.raises(InputError, match="convnext_atto.*ImportError: no timm"):
        normalization_index(["convnext_atto"], tmp_path)
    assert not list(tmp_path.iterdir())


def test_without_timm_the_mode_must_be_set(tmp_path, monkeypatch):
    monkeypatch.setattr(normalization, "timm_version", lambda: None)
    with pytest.raises(InputError) as raised:
        auto_modes(["convnext_atto"], tmp_path)
    assert "finetune.dam.mode: sgd or adam" in raised.value.fix
