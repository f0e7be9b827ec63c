import pandas as pd
import pytest

from deepauc.data.splits import split_by_patient
from deepauc.errors import InputError


def _images(n_patients=200, per_patient=3):
    return pd.DataFrame(
        {
            "patient": [f"patient{p:05d}" for p in range(n_patients) for _ in range(per_patient)],
            "image": range(n_patients * per_patient),
        }
    )


def test_no_patient_on_both_sides_and_nothing_lost():
    frame = _images()
    train, val = split_by_patient(frame, 0.2, seed=3)
    assert not set(train["patient"]) & set(val["patient"])
    assert sorted(pd.concat([train, val])["image"]) == list(frame["image"])
    assert val["patient"].nunique() == 40


def test_split_is_seeded_and_ignores_row_order():
    frame = _images()
    _, val_a = split_by_patient(frame, 0.1, seed=1)
    _, val_b = split_by_patient(frame.sample(frac=1, random_state=0), 0.1, seed=1)
    _, val_c = split_by_patient(frame, 0.1, seed=2)
    assert set(val_a["patient"]) == set(val_b["patient"])
    assert set(val_a["patient"]) != set(val_c["patient"])


def test_tiny_sets_keep_a_patient_on_each_side():
    train, val = split_by_patient(_images(n_patients=2), 0.01, seed=0)
    assert train["patient"].nunique() == 1 and val["patient"].nunique() == 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_fraction_names_the_key(fraction):
    with pytest.raises(InputError, match="split.val_fraction"):
        split_by_patient(_images(), fraction, seed=0)
