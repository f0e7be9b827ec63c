"""The synthetic CheXpert: its format, its determinism, and that its signs can be learned."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deepauc.data.chexpert import HEADER, read_chexpert_csv
from deepauc.data.synth import SynthSpec, generate_dataset
from tests.conftest import DISEASES

DATASET = "CheXpert-v1.0-small"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    spec = SynthSpec(n_train_patients=600, n_valid_patients=40, image_size=(64, 64), seed=7)
    generate_dataset(root, spec, workers=2)
    return root, spec


def _digest(root):
    digest = hashlib.sha256()
    for path in sorted((root / DATASET).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_csvs_follow_chexpert_conventions(synthetic):
    root, _ = synthetic
    train = pd.read_csv(root / DATASET / "train.csv", dtype=str, keep_default_na=False)
    valid = pd.read_csv(root / DATASET / "valid.csv", dtype=str, keep_default_na=False)
    for frame, split in ((train, "train"), (valid, "valid")):
        assert tuple(frame.columns) == HEADER
        assert (
            frame["Path"]
            .str.match(rf"{DATASET}/{split}/patient\d{{5}}/study\d+/view\d_(frontal|lateral)\.jpg$")
            .all()
        )
        assert set(frame["Sex"]) <= {"Male", "Female"}
        lateral = frame["Frontal/Lateral"] == "Lateral"
        assert (frame.loc[lateral, "AP/PA"] == "").all()
        assert set(frame.loc[~lateral, "AP/PA"]) <= {"AP", "PA"}
        assert frame["Path"].str.contains("lateral").eq(lateral).all()
    assert set(train[DISEASES].stack()) == {"1.0", "0.0", "-1.0", ""}
    assert set(valid[list(HEADER[5:])].stack()) <= {"1.0", "0.0"}
    assert not set(train["Path"].str.extract(r"(patient\d+)")[0]) & set(
        valid["Path"].str.extract(r"(patient\d+)")[0]
    )


def test_cohort_shape_resembles_chexpert(synthetic):
    root, _ = synthetic
    train = read_chexpert_csv(root / DATASET / "train.csv", tuple(DISEASES))
    lateral_share = (train["Frontal/Lateral"] == "Lateral").mean()
    assert 0.10 < lateral_share < 0.20
    assert train.groupby("patient")["study"].nunique().mean() > 1.5
    positive = (train[DISEASES] == 1.0).mean()
    assert positive["Pleural Effusion"] > positive["Edema"] > positive["Consolidation"]
    assert positive["Consolidation"] < 0.12
    assert ((train[DISEASES] == -1.0).mean() > 0).all()
    assert (train[DISEASES].isna().mean() > 0.2).all()
    # Heart failure: cardiomegaly, edema and effusion co-occur more than by chance.
    cardio, edema = train["Cardiomegaly"] == 1.0, train["Edema"] == 1.0
    assert (cardio & edema).mean() > cardio.mean() * edema.mean()


def test_images_are_grayscale_jpegs_of_the_configured_size(synthetic):
    root, spec = synthetic
    path = pd.read_csv(root / DATASET / "train.csv")["Path"].iloc[0]
    with Image.open(root / path) as image:
        assert image.format == "JPEG" and image.mode == "L"
        assert image.size == (spec.image_size[1], spec.image_size[0])


def test_images_rendered_small_are_saved_at_the_size_asked_for(tmp_path):
    spec = SynthSpec(n_train_patients=3, n_valid_patients=2, image_size=(24, 24), seed=3)
    generate_dataset(tmp_path, spec, saved_size=(40, 48))
    paths = pd.read_csv(tmp_path / DATASET / "valid.csv")["Path"]
    sizes = set()
    for path in paths:
        with Image.open(tmp_path / path) as image:
            sizes.add(image.size)
    assert sizes == {(48, 40)}  # PIL: (width, height)


def test_generation_is_deterministic_by_seed(tmp_path):
    spec = SynthSpec(n_train_patients=12, n_valid_patients=4, image_size=(48, 48), seed=3)
    generate_dataset(tmp_path / "a", spec, workers=1)
    generate_dataset(tmp_path / "b", spec, workers=2)
    generate_dataset(tmp_path / "c", SynthSpec(**{**spec.__dict__, "seed": 4}))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def _hand_features(path):
    image = np.asarray(Image.open(path), dtype=np.float32)
    # Normalise away exposure, then summarise 8x8 blocks by their mean and their brightest pixel.
    image = (image - np.median(image)) / (
        np.percentile(image, 90) - np.percentile(image, 10) + 1e-6
    )
    blocks = image.reshape(8, image.shape[0] // 8, 8, image.shape[1] // 8)
    return np.concatenate([blocks.mean(axis=(1, 3)).ravel(), blocks.max(axis=(1, 3)).ravel()])


def test_each_sign_is_learnable_from_the_report_labels(synthetic):
    root, _ = synthetic
    train = read_chexpert_csv(root / DATASET / "train.csv", tuple(DISEASES))
    frontal = train[train["Frontal/Lateral"] == "Frontal"]
    features = np.stack([_hand_features(root / p) for p in frontal["Path"]])
    for disease in DISEASES:
        labels = frontal[disease].fillna(0.0).to_numpy()
        known = labels != -1.0
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))
        scores = cross_val_predict(
            model, features[known], labels[known], cv=5, method="predict_proba"
        )[:, 1]
        auc = roc_auc_score(labels[known], scores)
        assert auc > 0.6, f"{disease}: cross-validated AUC {auc:.3f} from hand features"


def test_labels_are_noisy_so_even_an_oracle_stays_below_one(synthetic):
    root, _ = synthetic
    valid = pd.read_csv(root / DATASET / "valid.csv")
    truth = pd.read_csv(root / DATASET / "synthetic_truth.csv")
    merged = valid.merge(truth, on="Path")
    train = pd.read_csv(root / DATASET / "train.csv").merge(truth, on="Path")
    for disease in DISEASES:
        labels = train[disease].fillna(0.0)
        known = labels != -1.0
        oracle = roc_auc_score(labels[known], train.loc[known, f"severity:{disease}"])
        assert 0.75 < oracle < 0.97, f"{disease}: oracle AUC {oracle:.3f} on training labels"
    assert len(merged) == len(valid)
