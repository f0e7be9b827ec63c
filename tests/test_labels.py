import numpy as np
import pandas as pd
import pytest

from deepauc.data.labels import apply_policy, audit_labels, policy_for
from deepauc.errors import InputError

RAW = pd.Series([1.0, 0.0, -1.0, np.nan, -1.0, 1.0])


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("ones", [1, 0, 1, 0, 1, 1]),
        ("zeros", [1, 0, 0, 0, 0, 1]),
        ("ignore", [1, 0, None, 0, None, 1]),
    ],
)
def test_each_policy_maps_uncertain_and_blank(policy, expected):
    mapped = apply_policy(RAW, policy)
    assert mapped.tolist() == [pd.NA if v is None else v for v in expected]
    assert str(mapped.dtype) == "Int64"


def test_apply_policy_leaves_its_input_untouched():
    raw = RAW.copy()
    apply_policy(raw, "ones")
    pd.testing.assert_series_equal(raw, RAW)


def test_policy_falls_back_to_default_then_zeros():
    assert policy_for("Edema", {"Edema": "ones", "default": "ignore"}) == "ones"
    assert policy_for("Fracture", {"default": "ignore"}) == "ignore"
    assert policy_for("Fracture", {}) == "zeros"


def test_unknown_policy_names_the_config_key():
    with pytest.raises(InputError, match=r"(?s)uncertainty\.Edema.*ones, zeros, ignore"):
        policy_for("Edema", {"Edema": "maybe"})


def test_audit_counts_raw_codes_and_targets():
    raw = pd.DataFrame({"Edema": RAW})
    mapped = pd.DataFrame({"Edema": apply_policy(RAW, "ignore")})
    row = audit_labels(raw, mapped, ["Edema"], "train").iloc[0]
    assert (row["images"], row["positive"], row["negative"], row["ignored"]) == (6, 2, 2, 2)
    assert (row["uncertain"], row["blank"]) == (2, 1)
    assert row["positive_rate"] == pytest.approx(0.5)
