"""Preprocessing on the hand-made fixture download (tests/conftest.py), counts pinned."""

import logging

import pandas as pd
import pytest
from PIL import Image

from deepauc.data.chexpert import read_chexpert_csv
from deepauc.data.preprocess import PreprocessSettings, prepare_splits, write_splits
from deepauc.errors import InputError
from tests.conftest import DISEASES, TRAIN_ROWS, write_chexpert_csv

DATASET = "CheXpert-v1.0-small"


def _prepare(root, **settings):
    dataset = root / DATASET
    return prepare_splits(
        dataset / "train.csv",
        dataset / "valid.csv",
        data_root=root,
        dataset_dir=DATASET,
        settings=PreprocessSettings(**settings),
        require_scorable=False,
    )


def _totals(splits, splits_names=("train", "val")):
    audit = splits.audit[splits.audit["split"].isin(splits_names)]
    return audit.groupby("disease", sort=False)[
        ["images", "positive", "negative", "ignored", "uncertain", "blank"]
    ].sum()


# Frontal training rows of the fixture, per disease: (positive, negative, uncertain, blank) raw.
RAW_FRONTAL = {
    "Cardiomegaly": (2, 2, 2, 2),
    "Edema": (2, 2, 2, 2),
    "Consolidation": (2, 2, 1, 3),
    "Atelectasis": (2, 1, 2, 3),
    "Pleural Effusion": (3, 2, 2, 1),
}


def test_default_recipe_counts(chexpert_root):
    totals = _totals(_prepare(chexpert_root))
    # U-Zeros for Cardiomegaly, Consolidation, Effusion; U-Ones for Edema, Atelectasis; blank -> 0.
    expected = {
        "Cardiomegaly": (2, 6),
        "Edema": (4, 4),
        "Consolidation": (2, 6),
        "Atelectasis": (4, 4),
        "Pleural Effusion": (3, 5),
    }
    for disease, (positive, negative) in expected.items():
        row = totals.loc[disease]
        assert (row["images"], row["positive"], row["negative"], row["ignored"]) == (
            8,
            positive,
            negative,
            0,
        ), disease
        assert (row["uncertain"], row["blank"]) == RAW_FRONTAL[disease][2:], disease


@pytest.mark.parametrize("policy", ["ones", "zeros", "ignore"])
def test_each_policy_through_the_pipeline(chexpert_root, policy):
    splits = _prepare(chexpert_root, uncertainty={"default": policy})
    totals = _totals(splits)
    for disease, (pos, neg, unc, blank) in RAW_FRONTAL.items():
        row = totals.loc[disease]
        expected = {
            "ones": (pos + unc, neg + blank, 0),
            "zeros": (pos, neg + unc + blank, 0),
            "ignore": (pos, neg + blank, unc),
        }[policy]
        assert (row["positive"], row["negative"], row["ignored"]) == expected, disease
    train = pd.concat([splits.train, splits.val])
    ignored = train[DISEASES].isna().sum().sum()
    assert ignored == (sum(v[2] for v in RAW_FRONTAL.values()) if policy == "ignore" else 0)


def test_test_split_is_valid_csv_frontals(chexpert_root):
    splits = _prepare(chexpert_root)
    assert sorted(splits.test["patient"]) == ["patient64541", "patient64542", "patient64543"]
    test = _totals(splits, ("test",))
    assert test["positive"].to_dict() == {
        "Cardiomegaly": 1,
        "Edema": 2,
        "Consolidation": 1,
        "Atelectasis": 2,
        "Pleural Effusion": 1,
    }
    assert (test["uncertain"] == 0).all() and (test["blank"] == 0).all()


def test_frontal_filter_and_its_switch(chexpert_root):
    frontal = _prepare(chexpert_root)
    both = _prepare(chexpert_root, views=("Frontal", "Lateral"))
    assert len(frontal.train) + len(frontal.val) == 8
    assert set(pd.concat([frontal.train, frontal.val])["view"]) == {"Frontal"}
    assert len(both.train) + len(both.val) == len(TRAIN_ROWS) == 10
    assert len(both.test) == 4


def test_split_files_hold_images_patients_views_and_labels(chexpert_root, tmp_path):
    splits = _prepare(chexpert_root, val_fraction=0.3)
    names = ("train", "val", "test", "audit", "skipped")
    out = {name: tmp_path / "out" / f"{name}.csv" for name in names}
    write_splits(splits, out)
    train, val = pd.read_csv(out["train"]), pd.read_csv(out["val"])
    assert list(train.columns) == ["image", "patient", "study", "view", *DISEASES]
    assert not set(train["patient"]) & set(val["patient"])
    assert val["patient"].nunique() == 2  # round(0.3 * 7 patients)
    assert set(pd.read_csv(out["audit"])["split"]) == {"train", "val", "test"}


def test_both_path_prefixes_resolve_to_the_dataset_folder(chexpert_root):
    splits = _prepare(chexpert_root, views=("Frontal", "Lateral"))
    images = pd.concat([splits.train, splits.val])["image"]
    assert all(path.startswith(str(chexpert_root / DATASET / "train")) for path in images)
    assert images.map(lambda p: __import__("os").path.isfile(p)).all()
    full_release = [r for r in TRAIN_ROWS if r[0].startswith("CheXpert-v1.0/")]
    assert len(full_release) == 3


def test_missing_image_names_the_file_and_the_fix(chexpert_root):
    (chexpert_root / DATASET / "train/patient00003/study1/view1_frontal.jpg").unlink()
    with pytest.raises(
        InputError,
        match=r"(?s)line 6: 1 of 8 image\(s\) cannot be used.*patient00003.*missing.*data_root",
    ):
        _prepare(chexpert_root)
    assert len(_prepare(chexpert_root, check_images=False).train) > 0


def test_bad_label_names_file_line_and_column(tmp_path):
    rows = [*TRAIN_ROWS[:3], (TRAIN_ROWS[3][0], "Frontal", ["0.0", "yes", "", "", ""])]
    path = write_chexpert_csv(tmp_path / "train.csv", rows)
    with pytest.raises(InputError, match=r"train.csv, line 5: column 'Edema' holds 'yes'"):
        read_chexpert_csv(path, tuple(DISEASES))


def test_missing_disease_column_lists_what_is_there(tmp_path):
    path = write_chexpert_csv(tmp_path / "train.csv", TRAIN_ROWS)
    frame = pd.read_csv(path).drop(columns=["Edema"])
    frame.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"missing column\(s\) 'Edema'.*Cardiomegaly"):
        read_chexpert_csv(path, tuple(DISEASES))


def test_unknown_disease_names_the_config_key():
    with pytest.raises(InputError, match="config key diseases"):
        PreprocessSettings(diseases=("Cardiomegaly", "Pneumonitis"))


def test_unscorable_val_split_is_an_error(chexpert_root):
    dataset = chexpert_root / DATASET
    with pytest.raises(InputError, match="AUC is undefined"):
        prepare_splits(
            dataset / "train.csv",
            dataset / "valid.csv",
            data_root=chexpert_root,
            dataset_dir=DATASET,
            settings=PreprocessSettings(val_fraction=0.1),
        )


def test_truncated_jpeg_is_caught_and_can_be_skipped(chexpert_root):
    image = chexpert_root / DATASET / "train/patient00002/study1/view1_frontal.jpg"
    Image.new("L", (64, 64), color=90).save(image, quality=90)
    image.write_bytes(image.read_bytes()[:200])  # a download cut short
    with pytest.raises(InputError, match=r"(?s)line 5: 1 of 8 image\(s\).*unreadable.*skip"):
        _prepare(chexpert_root)
    splits = _prepare(chexpert_root, on_bad_image="skip")
    assert len(splits.train) + len(splits.val) == 7
    assert splits.skipped[["line", "Path"]].values.tolist() == [
        [5, "CheXpert-v1.0/train/patient00002/study1/view1_frontal.jpg"]
    ]
    assert splits.skipped["reason"].str.startswith("unreadable").all()
    lost = splits.audit[splits.audit["split"] == "skipped"]
    assert lost["images"].tolist() == [1] * len(lost) and len(lost) == 5  # one row per disease


def test_duplicate_image_rows_are_refused(tmp_path):
    rows = [*TRAIN_ROWS, TRAIN_ROWS[2]]
    write_chexpert_csv(tmp_path / DATASET / "train.csv", rows)
    write_chexpert_csv(tmp_path / DATASET / "valid.csv", TRAIN_ROWS[:1])
    with pytest.raises(InputError, match=r"appear more than once.*lines \[4, 12\]"):
        prepare_splits(
            tmp_path / DATASET / "train.csv",
            tmp_path / DATASET / "valid.csv",
            data_root=tmp_path,
            dataset_dir=DATASET,
            settings=PreprocessSettings(check_images=False),
        )


def test_split_empty_after_the_view_filter_names_the_file_and_the_key(tmp_path):
    frontal = [row for row in TRAIN_ROWS if row[1] == "Frontal"]
    write_chexpert_csv(tmp_path / DATASET / "train.csv", frontal)
    write_chexpert_csv(tmp_path / DATASET / "valid.csv", frontal)
    with pytest.raises(InputError, match=r"(?s)train.csv: no rows left after keeping views.*views"):
        _prepare(tmp_path, views=("Lateral",), check_images=False)


def test_a_split_with_few_cases_of_a_disease_is_warned_about(chexpert_root, caplog):
    """The fixture's test CSV has 4 images: every disease has fewer than ten of each class."""
    with caplog.at_level(logging.WARNING, logger="deepauc"):
        _prepare(chexpert_root, val_fraction=0.3)
    assert "only 1 test positives for Cardiomegaly: its AUC means little" in caplog.text
    assert "results/summary.csv marks it in column caution" in caplog.text
