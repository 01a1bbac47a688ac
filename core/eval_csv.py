"""A user's own evaluation set: a CSV of cases and a folder of images, read against a model's contract and split
without leakage into a part that calibrates int8 and chooses the threshold and a part that judges parity.

    table = read_evaluation_csv(Path("eval.csv"), Path("images/"), contract)
    table["part"] = split_evaluation(table)        # "calibrate" / "judge", patient-grouped where patients exist

The CSV needs `image_name` (the file is found as .jpg / .jpeg / .png, any case), `target` (0 / 1) and every
`field` the contract's metadata features read; `patient_id` and other columns are optional and kept (subgroup
parity reads the contract's categorical fields). ISIC 2020's own train.csv works as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from core.contract import Contract
from core.errors import UserError
from core.metadata import MetadataError

SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
MIN_PER_CLASS = 5  # each part needs this many cases of each class to measure anything
PARTS = ("calibrate", "judge")


def read_evaluation_csv(csv_path: Path, images: Path, contract: Contract) -> pd.DataFrame:
    """The cases of `csv_path` with a `path` column; UserError naming the first problem."""
    if not csv_path.is_file():
        raise UserError(f"--eval-csv {csv_path} does not exist: give the CSV that lists the evaluation cases")
    if not images.is_dir():
        raise UserError(f"--eval-images {images} is not a folder: give the folder that holds the images")
    try:
        # A categorical field is text even when its values look like numbers (Fitzpatrick 1-6, sex as 0 / 1).
        text = {f.field: str for f in contract.features if f.categorical}
        table = pd.read_csv(csv_path, dtype={"image_name": str, "patient_id": str, **text})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{csv_path} is not a readable CSV ({exc.__class__.__name__}): check the file") from None
    fields = list(dict.fromkeys(f.field for f in contract.features))
    missing = [c for c in ("image_name", "target", *fields) if c not in table.columns]
    if missing:
        raise UserError(
            f"{csv_path} has no column {missing[0]!r}: it needs image_name, target and the contract's fields "
            f"({', '.join(fields) or 'none'})"
        )
    if table.empty:
        raise UserError(f"{csv_path} has a header but no rows: it lists no cases")
    table = table.drop_duplicates()  # a row repeated verbatim is one case (ISIC's own CSVs have had such rows)
    names = table["image_name"].astype("string").str.strip()
    if names.isna().any() or names.eq("").any():
        row = int(np.flatnonzero((names.isna() | names.eq("")).to_numpy())[0])
        raise UserError(f"{csv_path}, row {row + 2}: image_name is empty")
    if names.duplicated().any():
        repeated = names[names.duplicated()].iloc[0]
        raise UserError(f"{csv_path} lists {repeated!r} twice with different values: each case once")
    target = pd.to_numeric(table["target"], errors="coerce")
    bad = ~target.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{csv_path}, row {row + 2}: target must be 0 or 1, got {table['target'].iloc[row]!r}")
    table = table.assign(image_name=names.astype(str), target=target.astype(int))
    encoder = contract.encoder()
    values = table[encoder.fields].astype(object).where(table[encoder.fields].notna(), None)
    for row, case in enumerate(values.to_dict("records")):
        try:
            encoder.encode(case)
        except MetadataError as exc:  # before any image is decoded, with the row to fix
            raise UserError(f"{csv_path}, row {row + 2} ({table['image_name'].iloc[row]}): {exc}") from None
    if "patient_id" in table:
        patient = table["patient_id"].astype("string").str.strip().fillna("")
        table["patient_id"] = patient.where(~patient.str.lower().isin(["-1", "nan", "none"]), "").astype(str)
    else:
        table["patient_id"] = ""
    paths = [_image_path(images, n) for n in table["image_name"]]
    absent = [n for n, p in zip(table["image_name"], paths, strict=True) if p is None]
    if absent:
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise UserError(f"{images} has no image for {absent[0]!r}{more} (looked for {', '.join(SUFFIXES[:3])})")
    return table.assign(path=[str(p) for p in paths]).reset_index(drop=True)


def _image_path(folder: Path, name: str) -> Path | None:
    return next((folder / f"{name}{s}" for s in SUFFIXES if (folder / f"{name}{s}").is_file()), None)


def split_evaluation(table: pd.DataFrame, seed: int = 0) -> pd.Series:
    """ "calibrate" / "judge" halves, label-stratified and grouped by patient (a row without one is its own
    group), so no patient's images inform the threshold and then judge it. UserError when a half would lack
    MIN_PER_CLASS cases of a class."""
    n_pos = int(table["target"].sum())
    n_neg = len(table) - n_pos
    if min(n_pos, n_neg) < 2 * MIN_PER_CLASS:
        raise UserError(
            f"the evaluation set has {n_pos} melanoma(s) and {n_neg} benign case(s): it needs at least "
            f"{2 * MIN_PER_CLASS} of each, half to calibrate and choose the threshold, half to judge parity"
        )
    groups = np.where(table["patient_id"].eq(""), "image:" + table["image_name"], "patient:" + table["patient_id"])
    folds = StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=seed)
    _, judge = next(folds.split(np.zeros(len(table)), table["target"], groups))
    part = np.full(len(table), PARTS[0], dtype=object)
    part[judge] = PARTS[1]
    for name in PARTS:
        y = table["target"].to_numpy()[part == name]
        if min(int(y.sum()), int(len(y) - y.sum())) < MIN_PER_CLASS:
            raise UserError(
                f"the {name} half holds {int(y.sum())} melanoma(s) and {int(len(y) - y.sum())} benign case(s) once "
                f"patients are kept together: it needs {MIN_PER_CLASS} of each; add cases or patients"
            )
    return pd.Series(part, index=table.index, name="part")
