"""core.eval_csv: a user's evaluation CSV + images read against a contract and split without patient leakage
(issue 20 groundwork); ISIC 2020's own train.csv layout works as it is."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.contract import Contract
from core.errors import UserError
from core.eval_csv import read_evaluation_csv, split_evaluation
from core.metadata import MetadataEncoder
from tests.conftest import write_isic_fixture

CONTRACT = Contract.from_metadata_encoder(MetadataEncoder(), "m", 64)


def test_isic_train_csv_works_as_it_is(tmp_path: Path) -> None:
    write_isic_fixture(tmp_path / "isic", n=60, odd_images=False)
    table = read_evaluation_csv(tmp_path / "isic" / "train.csv", tmp_path / "isic" / "jpeg" / "train", CONTRACT)
    assert len(table) == 60 and all(Path(p).is_file() for p in table["path"])
    part = split_evaluation(table)
    assert set(part) == {"calibrate", "judge"}
    by_patient = table.assign(part=part).groupby("patient_id")["part"].nunique()
    assert (by_patient[by_patient.index != ""] == 1).all()  # no patient on both sides
    for name in ("calibrate", "judge"):
        y = table["target"][part == name]
        assert y.sum() >= 5 and (1 - y).sum() >= 5


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda f: f.drop(columns=["sex"]), "has no column 'sex'"),
        (lambda f: f.assign(target=["2"] + list(f["target"].astype(str))[1:-1] + ["2"]), "target must be 0 or 1"),
        (lambda f: f.head(0), "no rows"),
        (lambda f: pd.concat([f, f.head(1).assign(target=1 - f.head(1)["target"])]), "twice with different"),
        (lambda f: f.assign(image_name=["ISIC_missing"] + list(f["image_name"])[1:]), "has no image for"),
    ],
)
def test_a_bad_evaluation_csv_is_one_sentence(tmp_path: Path, edit, words: str) -> None:
    frame = write_isic_fixture(tmp_path / "isic", n=30, odd_images=False)
    edit(frame).to_csv(tmp_path / "eval.csv", index=False)
    with pytest.raises(UserError) as caught:
        read_evaluation_csv(tmp_path / "eval.csv", tmp_path / "isic" / "jpeg" / "train", CONTRACT)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_too_few_cases_of_a_class_is_refused_before_any_image_is_read(tmp_path: Path) -> None:
    write_isic_fixture(tmp_path / "isic", n=20, odd_images=False)
    table = read_evaluation_csv(tmp_path / "isic" / "train.csv", tmp_path / "isic" / "jpeg" / "train", CONTRACT)
    with pytest.raises(UserError, match="needs at least 10 of each"):
        split_evaluation(table)
