from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core import datasets
from core.errors import UserError
from core.images import eval_transform, load_rgb
from core.metadata import MetadataEncoder
from core.spec import ImageContract
from tests.conftest import write_external_fixture, write_isic_fixture
from train import data as D
from train.images import train_transform


def test_isic_loader_reads_the_real_layout(isic_dir: Path) -> None:
    table = datasets.load_isic2020(isic_dir)
    assert list(table.columns) == datasets.COLUMNS
    # 40 written, one repeated row dropped, ISIC_0000009 dropped as the duplicate of ISIC_0000008.
    assert len(table) == 39
    assert "ISIC_0000009" not in set(table["image_name"])
    row = table.set_index("image_name")
    assert row.loc["ISIC_0000004", "site"] == "torso"  # "anterior torso" (2019) -> "torso"
    assert pd.isna(row.loc["ISIC_0000005", "site"])
    assert pd.isna(row.loc["ISIC_0000007", "age_approx"])
    assert pd.isna(row.loc["ISIC_0000005", "sex"])
    assert row.loc["ISIC_0000003", "path"].endswith(".png")
    assert all(Path(p).is_file() for p in table["path"])


def test_images_decode_to_rgb_whatever_they_are(isic_dir: Path) -> None:
    table = datasets.load_isic2020(isic_dir).set_index("image_name")
    for name in ["ISIC_0000001", "ISIC_0000002", "ISIC_0000003", "ISIC_0000004", "ISIC_0000006"]:
        image = load_rgb(table.loc[name, "path"])
        assert image.mode == "RGB"
    rotated = load_rgb(table.loc["ISIC_0000006", "path"])
    assert rotated.size == (32, 48)  # stored 48 wide x 32 high with EXIF "rotate 90" -> shown 32 x 48
    rgba = np.asarray(load_rgb(table.loc["ISIC_0000003", "path"]))
    assert rgba[0, 0].min() > 200  # half-transparent light skin over white stays light
    gray16 = np.asarray(load_rgb(table.loc["ISIC_0000004", "path"]))
    assert 100 < gray16.mean() < 230  # 16-bit values rescaled, not clipped to white


def test_transforms_give_float_rgb_in_unit_range(isic_dir: Path) -> None:
    image = load_rgb(datasets.load_isic2020(isic_dir)["path"][0])
    for tf in (eval_transform(ImageContract(size=40)), train_transform(40)):
        x = tf(image)
        assert x.shape == (3, 40, 40) and x.dtype == torch.float32
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_external_set_merges_without_duplicates(tmp_path: Path) -> None:
    isic = write_isic_fixture(tmp_path / "isic")
    write_external_fixture(tmp_path / "ext", isic["image_name"].tolist(), n_new=6)
    table = datasets.load_isic2020(tmp_path / "isic")
    external = datasets.load_external(tmp_path / "ext")
    assert set(external["site"]) == {"torso"}  # "posterior torso" mapped
    assert (external["patient_id"] == "").sum() == 1  # -1 means "no patient id"
    merged = datasets.merge_external(table, external)
    assert merged["image_name"].is_unique
    added = merged[merged["source"] == "external"]
    assert len(added) == 3 and added["target"].eq(1).all()
    assert not set(added["image_name"]) & set(table["image_name"])


def test_patient_split_never_shares_a_patient(tmp_path: Path) -> None:
    write_isic_fixture(tmp_path / "isic", n=200, odd_images=False)
    table = datasets.load_isic2020(tmp_path / "isic")
    table.loc[table.index[:10], "patient_id"] = ""  # rows without patient id are their own group
    split = D.patient_split(table, seed=3)
    assert set(split) == {"train", "val", "test"}
    owners = table.assign(split=split).query("patient_id != ''").groupby("patient_id")["split"].nunique()
    assert owners.max() == 1
    fractions = split.value_counts(normalize=True)
    assert 0.5 < fractions["train"] < 0.7 and 0.12 < fractions["test"] < 0.28
    for s in ("train", "val", "test"):
        assert table["target"][split == s].sum() > 0  # stratified: melanomas everywhere
    assert split.equals(D.patient_split(table, seed=3))
    assert not split.equals(D.patient_split(table, seed=4))


def test_dataset_items(isic_dir: Path) -> None:
    table = datasets.load_isic2020(isic_dir)
    enc = MetadataEncoder.fit(table["age_approx"])
    ds = D.LesionDataset(D.encode_split(table, enc), eval_transform(ImageContract(size=24)))
    image, meta, target, index = ds[0]
    assert image.shape == (3, 24, 24) and meta.shape == (12,) and target.shape == (1,) and index == 0


# ---- bad input -------------------------------------------------------------------------------------


def test_missing_columns(tmp_path: Path) -> None:
    write_isic_fixture(tmp_path / "isic", n=12, odd_images=False)
    frame = pd.read_csv(tmp_path / "isic" / "train.csv").drop(columns=["age_approx", "target"])
    frame.to_csv(tmp_path / "isic" / "train.csv", index=False)
    with pytest.raises(UserError, match="lacks the column"):
        datasets.load_isic2020(tmp_path / "isic")


def test_folder_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        datasets.load_isic2020(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"has no train\.csv"):
        datasets.load_isic2020(tmp_path / "empty")


def test_unknown_site_and_bad_target(tmp_path: Path) -> None:
    write_isic_fixture(tmp_path / "isic", n=12, odd_images=False)
    csv = tmp_path / "isic" / "train.csv"
    frame = pd.read_csv(csv)
    frame.loc[3, "anatom_site_general_challenge"] = "elbow"
    frame.to_csv(csv, index=False)
    with pytest.raises(UserError, match=r'row 5, column anatom_site_general_challenge: unknown body site "elbow"'):
        datasets.load_isic2020(tmp_path / "isic")
    frame.loc[3, "anatom_site_general_challenge"] = "torso"
    frame.loc[2, "target"] = 7
    frame.to_csv(csv, index=False)
    with pytest.raises(UserError, match="target must be 0 or 1"):
        datasets.load_isic2020(tmp_path / "isic")


def test_missing_and_unreadable_images_are_skipped_then_fail(tmp_path: Path, capsys) -> None:
    write_isic_fixture(tmp_path / "isic", n=60, odd_images=False)
    folder = tmp_path / "isic" / "jpeg" / "train"
    (folder / "ISIC_0000010.jpg").unlink()
    (folder / "ISIC_0000011.jpg").write_bytes(b"\x00garbage")
    table = datasets.load_isic2020(tmp_path / "isic")
    kept = D.check_images(table, max_bad_fraction=0.05)
    assert len(kept) == len(table) - 2
    assert "skipping 2 missing or unreadable" in capsys.readouterr().err
    with pytest.raises(UserError, match="more than the 1% allowed"):
        D.check_images(table, max_bad_fraction=0.01)


def test_images_not_found_at_all(tmp_path: Path) -> None:
    write_isic_fixture(tmp_path / "isic", n=12, odd_images=False)
    for f in (tmp_path / "isic" / "jpeg" / "train").iterdir():
        f.unlink()
    with pytest.raises(UserError, match="cannot find the images"):
        datasets.load_isic2020(tmp_path / "isic")


def test_too_little_data_to_split(tmp_path: Path) -> None:
    write_isic_fixture(tmp_path / "isic", n=8, odd_images=False)
    with pytest.raises(UserError, match="too little data"):
        D.patient_split(datasets.load_isic2020(tmp_path / "isic"), seed=0)


def test_not_a_csv(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.csv").write_bytes(Image.new("RGB", (4, 4)).tobytes() + b"\xff\xfe\x00")
    with pytest.raises(UserError):
        datasets.load_isic2020(tmp_path / "d")
