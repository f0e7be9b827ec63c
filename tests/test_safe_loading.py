"""Loading a model or resume file runs no code from it (issue 30, item 4)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from deepauc.errors import InputError
from deepauc.models.build import create_model
from deepauc.models.checkpoints import UnsafeFileError, load_model, safe_load, save_model
from deepauc.training.resume import load_resume


class Payload:
    """Unpickling this calls os.system: what a booby-trapped model file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def booby_trapped(tmp_path: Path, name: str, state: dict) -> tuple[Path, Path]:
    marker = tmp_path / f"{name}.ran"
    path = tmp_path / name
    torch.save({**state, "payload": Payload(marker)}, path)
    return path, marker


def test_a_model_file_with_a_pickle_payload_is_refused_and_runs_nothing(tmp_path):
    model = create_model("resnet10t", 1, 32)
    meta = {"format": 1, "arch": "resnet10t", "image_size": 32, "outputs": ["Edema"]}
    path, marker = booby_trapped(tmp_path, "edema.pt", {**meta, "state_dict": model.state_dict()})
    with pytest.raises(UnsafeFileError) as refused:
        load_model(path)
    assert str(path) in str(refused.value)
    assert "posix.system" in str(refused.value) or "system" in str(refused.value)
    assert "Fix:" in str(refused.value)
    assert not marker.exists()


def test_a_resume_file_with_a_pickle_payload_is_refused_and_runs_nothing(tmp_path):
    path, marker = booby_trapped(tmp_path, "edema.pt.resume", {"fingerprint": "x"})
    with pytest.raises(InputError, match="refused to load"):
        load_resume(path, "x", torch.device("cpu"))
    assert not marker.exists()


def test_what_the_pipeline_writes_loads_safely(tmp_path):
    """A model file round-trips, and a resume file's numpy states are on the allow-list."""
    model = create_model("resnet10t", 1, 32)
    meta = {"arch": "resnet10t", "image_size": 32, "outputs": ["Edema"], "val_auc": 0.7}
    save_model(tmp_path / "m.pt", model.state_dict(), meta)
    loaded, got = load_model(tmp_path / "m.pt")
    assert got["outputs"] == ["Edema"] and got["val_auc"] == 0.7
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    state = {
        "numpy": np.random.get_state(),
        "indices": np.arange(7, dtype=np.int64),
        "scalars": [np.float64(0.5), np.float32(1.5), np.int64(3), np.bool_(True)],
    }
    torch.save(state, tmp_path / "r.pt")
    back = safe_load(tmp_path / "r.pt")
    assert np.array_equal(back["numpy"][1], state["numpy"][1])
    assert back["scalars"] == state["scalars"]


def test_an_object_array_is_not_on_the_allow_list(tmp_path):
    torch.save({"items": np.array([{"a": 1}], dtype=object)}, tmp_path / "o.pt")
    with pytest.raises(UnsafeFileError):
        safe_load(tmp_path / "o.pt")
