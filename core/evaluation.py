"""A split of a checkpoint's own data, rebuilt from its run directory's `split.csv` (checked against what
the checkpoint's spec recorded at training time) and preprocessed exactly as the spec says: the test split
every runner is compared on, and the training images that calibrate and rank int8."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from core.datasets import load_external, load_isic2020, merge_external
from core.errors import UserError
from core.images import load_rgb, preprocess
from core.io import sha256_file
from core.metadata import SITE_COLUMN
from core.spec import ModelSpec


@dataclass
class EvalSet:
    """Preprocessed cases of one split (image NCHW, meta, target) with their table (for subgroups)."""

    table: pd.DataFrame  # image_name, target, path and the contract's fields (+ patient_id, ...)
    image: np.ndarray  # float32 [N, 3, S, S]
    meta: np.ndarray  # float32 [N, K]
    target: np.ndarray  # int [N]

    def __len__(self) -> int:
        return len(self.target)


def _source_table(spec: ModelSpec) -> pd.DataFrame:
    data = spec.provenance.get("data", {})
    if data.get("synthetic"):
        from core.synthetic import ensure_synthetic

        # The set is deterministic: ensure_synthetic checks this machine's cache against its manifest and
        # regenerates it when it is absent or damaged (deleted images, an overwritten train.csv).
        if "synthetic_count" not in data:
            raise UserError(
                "the checkpoint's spec says it was trained on the synthetic set but not on how many "
                "images (provenance.data.synthetic_count): retrain it with python -m train"
            )
        return load_isic2020(ensure_synthetic(int(data["synthetic_count"]), seed=0))
    path = data.get("path")
    if not path or not Path(path).exists():
        raise UserError(
            f"the checkpoint was trained on {data.get('name', 'unknown data')} at {path}, which is not here: "
            "run export.all where that data is, so parity is measured on the real test split"
        )
    table = load_isic2020(Path(path))
    if data.get("external_path"):
        table = merge_external(table, load_external(Path(data["external_path"])))
    return table


def decoded(path: str | Path, what: str) -> Image.Image:
    """load_rgb, with a missing, damaged or truncated image as one sentence (parity needs every case)."""
    try:
        return load_rgb(path)
    except UserError:
        raise
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{what} image {path} cannot be decoded ({exc.__class__.__name__}: {str(exc)[:80]}): restore it from "
            "the data set (a synthetic set is regenerated when its cache folder is deleted)"
        ) from None


def check_split(split_csv: Path, frame: pd.DataFrame, spec: ModelSpec) -> None:
    """Refuse a split.csv that is not the one the checkpoint was trained with (hash and per-split counts)."""
    data = spec.provenance.get("data", {})
    fix = "restore the run's own split.csv (python -m train wrote it beside the checkpoint)"
    recorded = data.get("split_sha256")
    if recorded and sha256_file(split_csv) != recorded:
        raise UserError(f"{split_csv} is not the split this checkpoint was trained with (its sha256 differs): {fix}")
    counts = frame["split"].value_counts() if "split" in frame else pd.Series(dtype=int)
    for name, recorded_counts in data.get("splits", {}).items():
        found = int(counts.get(name, 0))
        if found != recorded_counts.get("images", found):
            raise UserError(
                f"{split_csv} lists {found} {name} images but the checkpoint was trained with "
                f"{recorded_counts['images']}: {fix}"
            )


def load_split(
    checkpoint: Path,
    spec: ModelSpec,
    split: str = "test",
    limit: int | None = None,
    select=None,
) -> EvalSet:
    """Rebuild the checkpoint's `split` rows and preprocess them per the spec.

    Args:
        checkpoint: the run's checkpoint.pt (its folder holds split.csv).
        spec: the checkpoint's spec (data provenance, image size, metadata contract).
        split: "train", "val" or "test".
        limit: keep only the first N rows.
        select: optional function table -> table applied before any image is decoded.
    """
    split_csv = checkpoint.parent / "split.csv"
    if not split_csv.is_file():
        raise UserError(f"{split_csv} is missing: parity needs the run directory that python -m train wrote")
    frame = pd.read_csv(split_csv, dtype={"image_name": str})
    check_split(split_csv, frame, spec)
    names = frame.query("split == @split")["image_name"]
    table = _source_table(spec).set_index("image_name")
    missing = sorted(set(names) - set(table.index))
    if missing:
        raise UserError(f"{len(missing)} {split} image(s) of {split_csv} are not in the data (e.g. {missing[0]})")
    table = table.loc[names.tolist()].reset_index()
    if select is not None:
        table = select(table).reset_index(drop=True)
    if limit:
        table = table.head(limit)
    return prepared(table.assign(**{SITE_COLUMN: table["site"]}), spec, split)


def cases(table: pd.DataFrame, fields: list[str]) -> list[dict[str, Any]]:
    """Each row as the case the contract's encoder reads (field -> raw value, NaN read as missing)."""
    columns = table[fields].astype(object).where(table[fields].notna(), None)
    return columns.to_dict("records")


def prepared(table: pd.DataFrame, spec: ModelSpec, what: str) -> EvalSet:
    """Decode, resize and encode every row of `table` (a `path`, `target` and the contract's fields each) as
    `spec` says: the images by its resize rule, the metadata by its contract's features."""
    images = [preprocess(decoded(p, what), spec.image, layout="NCHW") for p in table["path"]]
    size = spec.image.size
    image = np.stack(images) if images else np.zeros((0, 3, size, size), np.float32)
    encoder = spec.encoder()
    meta = encoder.encode_many(cases(table, encoder.fields))
    return EvalSet(table, image, meta, table["target"].to_numpy(dtype=int))


def load_test_split(checkpoint: Path, spec: ModelSpec, limit: int | None = None) -> EvalSet:
    """The held-out test split every artifact is compared on."""
    return load_split(checkpoint, spec, "test", limit)
