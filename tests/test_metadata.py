import math

import numpy as np
import pytest

from core.errors import UserError
from core.metadata import SITES, MetadataEncoder, MetadataError


def test_feature_layout_and_values() -> None:
    enc = MetadataEncoder(age_center=50.0, age_scale=10.0)
    assert enc.size == 12
    assert enc.feature_names[:2] == ["age", "age_missing"]
    vec = enc.encode(age=70, sex="male", site="torso")
    assert vec.dtype == np.float32
    assert vec[0] == pytest.approx(2.0)
    assert vec[1] == 0
    assert vec[enc.feature_names.index("sex_male")] == 1
    assert vec[enc.feature_names.index("site_torso")] == 1
    assert vec.sum() == pytest.approx(2.0 + 2)  # age value + one sex + one site


def test_missing_values_set_flags() -> None:
    enc = MetadataEncoder()
    vec = enc.encode(age=float("nan"), sex=None, site="")
    names = enc.feature_names
    assert vec[0] == 0 and vec[names.index("age_missing")] == 1
    assert vec[names.index("sex_missing")] == 1
    assert vec[names.index("site_missing")] == 1
    assert enc.encode(age=None, sex="unknown", site="NaN")[names.index("sex_missing")] == 1


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("anterior torso", "torso"),
        ("Posterior Torso", "torso"),
        ("lateral torso", "torso"),
        ("head/neck", "head/neck"),
        ("  upper extremity ", "upper extremity"),
        ("oral/genital", "oral/genital"),
    ],
)
def test_site_aliases(raw: str, canonical: str) -> None:
    assert MetadataEncoder().canonical_site(raw) == canonical


def test_unknown_values_raise_one_clear_error() -> None:
    enc = MetadataEncoder()
    with pytest.raises(MetadataError, match='unknown body site "elbow"'):
        enc.encode(site="elbow")
    with pytest.raises(MetadataError, match="unknown sex"):
        enc.encode(sex="x")
    with pytest.raises(MetadataError, match="outside"):
        enc.encode(age=-3)
    with pytest.raises(MetadataError, match="not a number"):
        enc.encode(age="old")
    assert issubclass(MetadataError, UserError)


def test_age_is_not_destroyed_by_row_normalisation() -> None:
    # The paper's code normalised each row to unit length; ours keeps age differences intact.
    enc = MetadataEncoder(age_center=50, age_scale=20)
    young, old = enc.encode(30, "male", "torso"), enc.encode(80, "male", "torso")
    assert old[0] - young[0] == pytest.approx(2.5)


def test_fit_uses_known_ages_only() -> None:
    enc = MetadataEncoder.fit([40, 60, float("nan"), None])
    assert enc.age_center == 50 and enc.age_scale == 10
    assert MetadataEncoder.fit([float("nan")]).age_scale == 20  # degenerate -> defaults


def test_contract_round_trip_rebuilds_identical_encoder() -> None:
    enc = MetadataEncoder.fit([35, 45, 75])
    contract = enc.contract()
    assert [f["index"] for f in contract["features"]] == list(range(enc.size))
    assert contract["site"]["categories"] == list(SITES)
    again = MetadataEncoder.from_contract(contract)
    for row in [(55, "female", "anterior torso"), (None, None, None), (20, "m", "palms/soles")]:
        np.testing.assert_array_equal(enc.encode(*row), again.encode(*row))


def test_malformed_contract_is_refused() -> None:
    contract = MetadataEncoder().contract()
    contract["features"] = contract["features"][:-1]
    with pytest.raises(ValueError, match="feature list"):
        MetadataEncoder.from_contract(contract)
    with pytest.raises(ValueError, match="malformed"):
        MetadataEncoder.from_contract({"version": 1})


def test_encode_many_matches_encode() -> None:
    enc = MetadataEncoder()
    out = enc.encode_many([50, math.nan], ["male", None], ["torso", "head/neck"])
    np.testing.assert_array_equal(out[1], enc.encode(None, None, "head/neck"))


@pytest.mark.parametrize("age", [True, False, [55], {"years": 55}, b"55"])
def test_an_age_that_is_not_a_number_is_refused(age) -> None:
    """float(True) is 1.0: a checkbox value or a container must never encode as an age."""
    with pytest.raises(MetadataError, match="is not a number"):
        MetadataEncoder().encode(age=age, sex="male", site="torso")
