"""Finding the download (deepauc.data.locate): a missing CSV is refused with what was looked
for, what the folder holds, and the setting that finds it when it is one level up or down."""

from pathlib import Path

import pytest

from deepauc.data.locate import check_dataset_files
from deepauc.errors import InputError


def _download(root: Path, folder: str = "CheXpert-v1.0-small") -> Path:
    for name in ("train.csv", "valid.csv"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_text("Path\n")
    return root


CSVS = {"train_csv": "train.csv", "test_csv": "valid.csv"}


@pytest.mark.parametrize(
    "given, want",
    [
        # data_root names the dataset folder itself: the folder above holds it
        ("data/CheXpert-v1.0-small", "set data_root: {tmp}/data in my.yaml"),
        # one level too high: the folder below holds it
        (".", "set data_root: {tmp}/data in my.yaml"),
        # one level too deep
        ("data/CheXpert-v1.0-small/train", None),
    ],
)
def test_a_missing_download_says_what_was_looked_for_and_where_it_is(tmp_path, given, want):
    _download(tmp_path / "data")
    (tmp_path / "data" / "CheXpert-v1.0-small" / "train").mkdir()
    with pytest.raises(InputError) as caught:
        check_dataset_files(tmp_path / given, "CheXpert-v1.0-small", CSVS, "my.yaml")
    message = str(caught.value)
    looked = tmp_path / given / "CheXpert-v1.0-small" / "train.csv"
    assert f"{looked} not found" in message
    assert "data_root is set in my.yaml" in message
    assert " holds " in message  # what the folder holds
    if want:
        assert want.format(tmp=tmp_path) in message
    check_dataset_files(tmp_path / "data", "CheXpert-v1.0-small", CSVS)  # the right root passes


def test_another_release_folder_is_found_and_named(tmp_path):
    _download(tmp_path, "CheXpert-v1.0")
    with pytest.raises(InputError, match="dataset_dir: CheXpert-v1.0 in"):
        check_dataset_files(tmp_path, "CheXpert-v1.0-small", CSVS)


def test_a_data_root_that_does_not_exist_lists_its_nearest_parent(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(InputError) as caught:
        check_dataset_files(tmp_path / "nope" / "deeper", "CheXpert-v1.0-small", CSVS)
    assert f"{tmp_path / 'nope' / 'deeper'} does not exist ({tmp_path} holds elsewhere/)" in str(
        caught.value
    )
