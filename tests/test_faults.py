"""Faults a new user meets (docs/reliability.md, round two): each reproduced, each refused with a
message that names the file, line or key and the fix, and nothing partial left behind."""

import random
from pathlib import Path

import pandas as pd
import pytest
import yaml

from deepauc.chexpert import LABEL_COLUMNS, read_chexpert_csv
from deepauc.errors import InputError
from deepauc.preprocess import PreprocessSettings, prepare_splits
from deepauc.settings import check_mappings_given_as_mappings, preprocess_settings
from tests.conftest import DISEASES, TRAIN_ROWS, VALID_ROWS, write_chexpert_csv

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def train_csv(tmp_path):
    return write_chexpert_csv(tmp_path / "train.csv", TRAIN_ROWS)


def _labels(path) -> pd.DataFrame:
    return read_chexpert_csv(path, tuple(DISEASES))[list(DISEASES)]


# ---- 1. a train.csv cut in the middle of a row ----------------------------------------------


def test_a_row_cut_short_is_refused_naming_the_file_and_line(train_csv):
    text = train_csv.read_text()
    cut = text.rstrip("\n").rsplit(",", 5)[0]  # the last row loses its last five fields
    train_csv.write_text(cut)
    lines = cut.count("\n") + 1
    with pytest.raises(InputError) as caught:
        _labels(train_csv)
    message = str(caught.value)
    assert f"{train_csv}, line {lines}" in message
    assert "14 fields where the header has 19" in message and "truncated" in message
    assert "Fix:" in message


def test_a_row_with_missing_fields_inside_the_file_is_refused(train_csv):
    lines = train_csv.read_text().splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\r\n").rsplit(",", 2)[0] + "\n"
    train_csv.write_text("".join(lines))
    with pytest.raises(InputError, match=r"line 4: this row has 17 fields where the header"):
        _labels(train_csv)


def test_an_extra_field_is_refused_too(train_csv):
    lines = train_csv.read_text().splitlines(keepends=True)
    lines[2] = lines[2].rstrip("\r\n") + ",1.0\n"
    train_csv.write_text("".join(lines))
    with pytest.raises(InputError, match=r"line 3: this row has 20 fields"):
        _labels(train_csv)


def test_a_cut_right_after_the_last_comma_is_refused(train_csv):
    text = train_csv.read_text().rstrip("\n")
    train_csv.write_text(text[: text.rindex(",") + 1])  # 19 fields, the last one emptied
    with pytest.raises(InputError, match="ends in the middle of its last row"):
        _labels(train_csv)


def test_nul_bytes_from_a_failed_copy_are_refused(train_csv):
    data = train_csv.read_bytes()
    train_csv.write_bytes(data[:200] + b"\x00" * 64 + data[264:])
    with pytest.raises(InputError, match="NUL bytes"):
        _labels(train_csv)


def test_truncated_or_corrupted_train_csv_never_yields_a_different_label_table(train_csv):
    """Property: cut or damaged at random positions, the CSV either reads as the intact file's
    first rows with the same labels, or is refused naming the file and a line."""
    intact_bytes = train_csv.read_bytes()
    intact = _labels(train_csv)
    text = intact_bytes.decode()
    rng = random.Random(17)
    damages = {
        "cut": lambda t, i: t[:i],
        "line break inserted": lambda t, i: t[:i] + "\n" + t[i:],
        "byte dropped": lambda t, i: t[:i] + t[i + 1 :],
        "comma inserted": lambda t, i: t[:i] + "," + t[i:],
        "NUL block": lambda t, i: t[:i] + "\x00" * 16 + t[i + 16 :],
    }
    outcomes = {"same": 0, "refused": 0}
    header_end = text.index("\n") + 1
    for case in range(60):
        name = list(damages)[case % len(damages)]
        position = rng.randrange(header_end, len(text))
        damaged = damages[name](text, position)
        if name == "byte dropped" and text[position] in "-":
            continue  # "-1.0" -> "1.0" is a valid label: no format can tell (see reliability.md)
        train_csv.write_text(damaged)
        try:
            read = _labels(train_csv)
        except InputError as err:
            assert str(train_csv) in str(err) and "Fix:" in str(err), (name, position, err)
            outcomes["refused"] += 1
            continue
        expected = intact.iloc[: len(read)].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            read.reset_index(drop=True), expected, obj=f"{name} at byte {position}"
        )
        outcomes["same"] += 1
    assert outcomes["refused"] >= 20 and sum(outcomes.values()) >= 50, outcomes


# ---- 2. a header-only CSV --------------------------------------------------------------------


def test_a_header_only_csv_gets_a_fix(train_csv):
    train_csv.write_text(",".join(["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"]
                                  + list(LABEL_COLUMNS)) + "\n")  # fmt: skip
    with pytest.raises(InputError, match="header but no rows") as caught:
        _labels(train_csv)
    assert "Fix:" in str(caught.value)


# ---- 3. a misspelt disease under uncertainty: ------------------------------------------------


def _config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_a_misspelt_disease_under_uncertainty_is_refused_naming_the_closest():
    config = _config()
    config["uncertainty"]["Cardiomegally"] = config["uncertainty"].pop("Cardiomegaly")
    with pytest.raises(InputError) as caught:
        preprocess_settings(config)
    message = str(caught.value)
    assert "config key uncertainty.Cardiomegally" in message
    assert "did you mean 'Cardiomegaly'?" in message


def test_uncertainty_may_name_a_chexpert_label_that_is_not_trained():
    config = _config()
    config["diseases"] = ["Edema"]  # the other four policies stay, unused
    assert preprocess_settings(config).uncertainty["Cardiomegaly"] == "zeros"


# ---- 10. a test split without positives ------------------------------------------------------


def test_a_test_split_without_positives_names_test_csv_not_val_fraction(chexpert_root):
    dataset = chexpert_root / "CheXpert-v1.0-small"
    rows = [(path, view, ["0.0", *labels[1:]]) for path, view, labels in VALID_ROWS]
    write_chexpert_csv(dataset / "valid.csv", rows)  # no Cardiomegaly positive left in test
    with pytest.raises(InputError) as caught:
        prepare_splits(
            dataset / "train.csv",
            dataset / "valid.csv",
            data_root=chexpert_root,
            dataset_dir="CheXpert-v1.0-small",
            settings=PreprocessSettings(diseases=tuple(DISEASES), val_fraction=0.3),
            require_scorable=True,
        )
    message = str(caught.value)
    assert "split 'test' has 0 positive" in message and "'Cardiomegaly'" in message
    assert "config key test_csv" in message and str(dataset / "valid.csv") in message
    assert "val_fraction" not in message


# ---- 11. a mapping passed with --config as text ----------------------------------------------


def test_text_given_for_a_mapping_says_how_to_pass_one():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    config = _config() | {"uncertainty": "Edema:ones"}
    with pytest.raises(InputError) as caught:
        check_mappings_given_as_mappings(config, schema)
    message = str(caught.value)
    assert "config key uncertainty" in message and "'Edema:ones'" in message
    assert "--configfile" in message and "space after each colon" in message
    check_mappings_given_as_mappings(_config(), schema)  # the shipped config passes
