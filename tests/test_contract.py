"""core.contract: the melanoma-contract/1 schema (issue 20's groundwork). Today's age / sex / site encoding stated
in the schema encodes exactly like core.metadata; each feature kind, the L2 group and every bad contract the
issue names end in one sentence naming the field."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from core.contract import Contract, ContractError
from core.metadata import SITE_ALIASES, SITES, MetadataEncoder, MetadataError

EXAMPLE = {  # the example contract, verbatim in shape
    "contract": "melanoma-contract/1",
    "name": "my-effnet-b3",
    "image": {
        "size": 512,
        "channels": "BGR",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "resize": "bilinear",
    },
    "metadata": [
        {"name": "sex", "kind": "code", "field": "sex", "codes": {"male": 1, "female": 0}, "missing": -1},
        {"name": "age", "kind": "number", "field": "age_approx", "offset": 0, "scale": 90, "missing": 0},
        {"name": "n_images", "kind": "number", "field": "n_images", "transform": "log1p", "missing": 0},
        {
            "name": "site",
            "kind": "one_hot",
            "field": "anatom_site_general_challenge",
            "categories": ["head/neck", "torso", "anterior torso"],
            "aliases": {},
            "missing": "column",
        },
    ],
    "normalize": [{"kind": "l2", "features": ["sex", "age", "site"]}],
    "output": {"kind": "softmax", "classes": 9, "positive": [6]},
    "decision": {"rule": "sensitivity", "target": 0.95},
}


def test_todays_encoding_stated_in_the_schema_encodes_identically() -> None:
    legacy = MetadataEncoder(age_center=48.7, age_scale=14.2)
    encoder = Contract.from_metadata_encoder(legacy, "efficientnet_lite0", 128).encoder()
    assert encoder.size == legacy.size
    ages = [None, float("nan"), "", 0, 17.5, "55", 90, 120]
    sexes = [None, "male", "FEMALE", "m", " f ", "unknown"]
    sites = [None, *SITES, *SITE_ALIASES, "Head_Neck", "n/a"]
    checked = 0
    for age in ages:
        for sex in sexes:
            for site in sites:
                case = {"age_approx": age, "sex": sex, "anatom_site_general_challenge": site}
                expected = legacy.encode(age, sex, site)
                assert np.array_equal(encoder.encode(case), expected), case
                checked += 1
    assert checked > 400


def test_every_kind_and_the_l2_group() -> None:
    encoder = Contract.from_dict(EXAMPLE).encoder()
    assert encoder.entries == [
        "sex",
        "age",
        "n_images",
        "site_head/neck",
        "site_torso",
        "site_anterior torso",
        "site_missing",
    ]
    got = encoder.encode({"sex": "male", "age_approx": 45, "n_images": 12, "anatom_site_general_challenge": "torso"})
    raw = np.array([1.0, 0.5, 0.0, 1.0, 0.0, 0.0])  # sex, age, the site's 4 entries
    grouped = raw / np.linalg.norm(raw)
    expected = [grouped[0], grouped[1], math.log1p(12), *grouped[2:]]
    assert np.allclose(got, np.array(expected, dtype=np.float32), atol=1e-7)
    # An explicit category wins over an alias; missing values take the contract's own numbers.
    missing = encoder.encode({"anatom_site_general_challenge": "anterior torso"})
    assert missing[0] < 0 and missing[2] == 0 and missing[5] > 0 and missing[6] == 0
    assert encoder.encode({})[-1] > 0  # the missing column


@pytest.mark.parametrize("value", [True, [3], "many"])
def test_a_number_feature_refuses_what_is_not_a_number(value) -> None:
    with pytest.raises(MetadataError, match="not a number"):
        Contract.from_dict(EXAMPLE).encoder().encode({"n_images": value})


def test_unknown_categories_and_codes_are_refused() -> None:
    encoder = Contract.from_dict(EXAMPLE).encoder()
    with pytest.raises(MetadataError, match='unknown site "elbow"'):
        encoder.encode({"anatom_site_general_challenge": "elbow"})
    with pytest.raises(MetadataError, match='unknown sex "other"'):
        encoder.encode({"sex": "other"})


def _broken(path: str, value) -> dict:
    data = copy.deepcopy(EXAMPLE)
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is KeyError:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        ("metadata.0.kind", "ordinal", "metadata[0].kind is 'ordinal'"),
        ("metadata.1.scale", KeyError, None),  # optional: scale defaults to 1 by the schema, not refused
        ("metadata.1.missing", KeyError, "metadata[1] has no 'missing'"),
        ("metadata.3.categories", [], "metadata[3].categories must be a non-empty list"),
        ("output.positive", [9], "out of range for 9 classes"),
        ("image.size", 100000, "image.size must be"),
        ("image.channels", "RGBA", "image.channels is 'RGBA'"),
        ("image.std", None, "both be given, or both be null"),
        ("decision", {"threshold": 1.5}, "decision.threshold must be a probability"),
        ("normalize.0.features", ["height"], "normalize[0].features"),
        ("metadata.3.aliases", {"chest": "thorax"}, "points at 'thorax'"),
        ("contract", "melanoma-contract/9", "this toolkit reads"),
        ("surprise", 1, "unknown field 'surprise'"),
        ("name", KeyError, "has no 'name'"),
    ],
)
def test_bad_contracts_are_one_sentence_naming_the_field(path: str, value, words: str | None) -> None:
    data = _broken(path, value)
    if words is None:
        Contract.from_dict(data)
        return
    with pytest.raises(ContractError) as caught:
        Contract.from_dict(data)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_contract_file_that_is_not_json_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(ContractError, match="not a readable JSON contract"):
        Contract.load(tmp_path / "c.json")
    with pytest.raises(ContractError, match="does not exist"):
        Contract.load(tmp_path / "absent.json")
    (tmp_path / "ok.json").write_text(json.dumps(EXAMPLE))
    assert Contract.load(tmp_path / "ok.json").encoder().size == 7


def test_bilinear_resize_is_opencv_inter_linear_bit_for_bit() -> None:
    """core.images.resize_bilinear against cv2.resize(INTER_LINEAR) on random up-, down- and odd-scaled sizes."""
    import cv2

    from core.images import resize_bilinear

    rng = np.random.default_rng(7)
    for _ in range(40):
        height, width = (int(v) for v in rng.integers(1, 900, 2))
        out_h, out_w = (int(v) for v in rng.integers(1, 520, 2))
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        expected = cv2.resize(pixels, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(resize_bilinear(pixels, out_w, out_h), expected), (height, width, out_h, out_w)
    square = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)  # an exact 2x downscale (cv2 takes INTER_AREA)
    assert np.array_equal(resize_bilinear(square, 256, 256), cv2.resize(square, (256, 256)))
