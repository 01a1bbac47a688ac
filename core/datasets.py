"""The tables every data source is read into: ISIC 2020 as distributed, the external malignant set, and the
synthetic set (written in the ISIC 2020 layout, read by the same loader). Training reads them to split and
learn; export reads them to rebuild a run's held-out split. Each becomes one table with the columns in
`COLUMNS` (`site` is already the ISIC 2020 name or empty).

    table = load_isic2020(Path("~/isic2020").expanduser())
    table = merge_external(table, load_external(Path("~/melanoma-external-malignant-256").expanduser()))
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError
from core.metadata import AGE_COLUMN, SEX_COLUMN, SITE_COLUMN, MetadataEncoder, MetadataError

COLUMNS = ["image_name", "patient_id", "sex", "age_approx", "site", "target", "path", "source"]
ISIC_REQUIRED = ["image_name", "patient_id", SEX_COLUMN, AGE_COLUMN, SITE_COLUMN, "target"]
ISIC_CSV_NAMES = ("train.csv", "ISIC_2020_Training_GroundTruth_v2.csv", "ISIC_2020_Training_GroundTruth.csv")
ISIC_IMAGE_DIRS = ("train", "jpeg/train", "ISIC_2020_Training_JPEG/train", "ISIC_2020_Training_JPEG", ".")
EXTERNAL_CSV_NAMES = ("train_concat.csv",)
EXTERNAL_IMAGE_DIRS = ("train/train", "train", "jpeg/train", "images", ".")
DUPLICATES_CSV = "ISIC_2020_Training_Duplicates.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={"image_name": str, "patient_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable CSV ({exc.__class__.__name__}): check the file") from None
    if len(frame.columns) == 1 and ";" in str(frame.columns[0]):
        raise UserError(
            f"{path} looks semicolon-separated (its header is one column, {str(frame.columns[0])[:60]!r}): "
            "save it comma-separated, as ISIC distributes it"
        )
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(
            f"{path} lacks the column(s) {', '.join(missing)}: it needs {', '.join(required)} "
            "(the ISIC 2020 train.csv layout)"
        )
    if frame.empty:
        raise UserError(f"{path} has a header but no rows: it lists no images")
    return frame


def _find_csv(root: Path, names: Sequence[str], what: str) -> Path:
    if root.is_file() and root.suffix.lower() == ".csv":
        return root
    if not root.is_dir():
        raise UserError(f"{what} folder {root} does not exist: give the folder that holds {names[0]}")
    for name in names:
        if (root / name).is_file():
            return root / name
    raise UserError(f"{root} has no {' or '.join(names)}: give the {what} folder as distributed")


def _find_image_dir(root: Path, candidates: Sequence[str], names: Sequence[str]) -> Path:
    """The first candidate folder that holds the first few listed images."""
    probe = [n for n in names[:20]]
    for rel in candidates:
        folder = (root / rel).resolve()
        if folder.is_dir() and any(_image_path(folder, n) is not None for n in probe):
            return folder
    tried = ", ".join(str(root / c) for c in candidates)
    raise UserError(f"cannot find the images listed in the CSV under {root} (looked in {tried})")


def _image_path(folder: Path, name: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _clean(frame: pd.DataFrame, folder: Path, source: str, csv_path: Path) -> pd.DataFrame:
    """Validate and normalise a loaded CSV into the common table."""
    encoder = MetadataEncoder()
    out = pd.DataFrame()
    out["image_name"] = frame["image_name"].astype(str).str.strip()
    if out["image_name"].eq("").any() or frame["image_name"].isna().any():
        raise UserError(f"{csv_path} has rows without an image_name: fix or remove them")
    patient = frame["patient_id"].astype("string").str.strip().fillna("")
    # NOTE: older ISIC years in the external CSV use -1 for "no patient id"; such rows are their own group.
    out["patient_id"] = patient.where(~patient.str.lower().isin(["-1", "nan", "none"]), "").astype(str)

    def canon(values: pd.Series, fn, column: str) -> list:
        result = []
        for row, value in zip(frame.index, values, strict=True):
            try:
                result.append(fn(value))
            except MetadataError as exc:
                raise UserError(f"{csv_path}, row {row + 2}, column {column}: {exc}") from None
        return result

    out["sex"] = canon(frame[SEX_COLUMN], encoder.canonical_sex, SEX_COLUMN)
    out["age_approx"] = canon(frame[AGE_COLUMN], encoder.check_age, AGE_COLUMN)
    out["site"] = canon(frame[SITE_COLUMN], encoder.canonical_site, SITE_COLUMN)
    target = pd.to_numeric(frame["target"], errors="coerce")
    bad = ~target.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{csv_path}, row {row + 2}: target must be 0 or 1, got {frame['target'].iloc[row]}")
    out["target"] = target.astype(int).to_numpy()
    out["path"] = [str(_image_path(folder, n) or "") for n in out["image_name"]]
    out["source"] = source
    return out


def load_isic2020(root: Path) -> pd.DataFrame:
    """Read ISIC 2020 as distributed (train.csv + train/ or jpeg/train/), honouring the duplicates list."""
    csv_path = _find_csv(root, ISIC_CSV_NAMES, "ISIC 2020")
    frame = _read_csv(csv_path, ISIC_REQUIRED)
    folder = _find_image_dir(csv_path.parent, ISIC_IMAGE_DIRS, frame["image_name"].astype(str).tolist())
    table = _clean(frame, folder, "isic2020", csv_path)
    duplicates = csv_path.parent / DUPLICATES_CSV
    if duplicates.is_file():
        pairs = _read_csv(duplicates, ["image_name_1", "image_name_2"])
        drop = set(pairs["image_name_2"].astype(str).str.strip()) - set(pairs["image_name_1"].astype(str).str.strip())
        before = len(table)
        table = table[~table["image_name"].isin(drop)]
        _say(f"ISIC 2020: dropped {before - len(table)} duplicate image(s) listed in {DUPLICATES_CSV}")
    before = len(table)
    table = table.drop_duplicates("image_name")
    if len(table) < before:
        _say(f"ISIC 2020: dropped {before - len(table)} repeated image_name row(s)")
    return table.reset_index(drop=True)


def load_external(root: Path) -> pd.DataFrame:
    """Read the external malignant set (train_concat.csv + 256 px JPEGs in a sub-folder)."""
    csv_path = _find_csv(root, EXTERNAL_CSV_NAMES, "external set")
    frame = _read_csv(csv_path, ISIC_REQUIRED)
    folder = _find_image_dir(csv_path.parent, EXTERNAL_IMAGE_DIRS, frame["image_name"].astype(str).tolist())
    return _clean(frame, folder, "external", csv_path).drop_duplicates("image_name").reset_index(drop=True)


def merge_external(isic: pd.DataFrame, external: pd.DataFrame, only_malignant: bool = True) -> pd.DataFrame:
    """Add external rows not already in ISIC 2020 (by image name); by default only the malignant ones.

    The external set's CSV repeats ISIC 2020 itself and older ISIC years; keeping only new malignant
    rows is what it is for (more melanomas), and avoids counting an ISIC 2020 image twice.
    """
    extra = external[~external["image_name"].isin(set(isic["image_name"]))]
    dropped = len(external) - len(extra)
    if only_malignant:
        extra = extra[extra["target"] == 1]
    _say(
        f"external set: {dropped} row(s) already in ISIC 2020 dropped, "
        f"{len(extra)} {'malignant ' if only_malignant else ''}row(s) added"
    )
    return pd.concat([isic, extra], ignore_index=True)
