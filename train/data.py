"""Training data: the bad-image scan, the patient-grouped split, the Dataset. The tables themselves (ISIC 2020,
the external set, the synthetic set) are read by core.datasets, which export shares.

    table = load_isic2020(Path("~/isic2020").expanduser())      # core.datasets
    split = patient_split(table, seed=0)        # Series: "train" / "val" / "test"
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import StratifiedGroupKFold
from torch.utils.data import Dataset

from core.errors import UserError
from core.images import load_rgb
from core.metadata import MetadataEncoder
from train.config import DEFAULT_MAX_BAD_FRACTION

SPLIT_NAMES = ("train", "val", "test")
# Pillow refuses to open an image whose header claims more than 2x Image.MAX_IMAGE_PIXELS (a decompression
# bomb: a small file that would decode to gigabytes); the warning below that limit is raised when warnings are
# errors (python -W error). Either way the image is bad, like a truncated one.
TOO_LARGE = (Image.DecompressionBombError, Image.DecompressionBombWarning)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def too_many_bad(bad: Sequence[str], total: int, max_bad_fraction: float) -> UserError | None:
    """The one-sentence failure when more than `max_bad_fraction` of `total` images are bad, else None."""
    fraction = len(bad) / max(total, 1)
    if fraction <= max_bad_fraction:
        return None
    names = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
    return UserError(
        f"{len(bad)} of {total} images ({fraction:.1%}) are missing or unreadable ({names}): more than the "
        f"{max_bad_fraction:.0%} allowed; check the image folder (or raise --max-bad-images)"
    )


def check_images(
    table: pd.DataFrame, max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION, skipped: list[dict] | None = None
) -> pd.DataFrame:
    """Drop rows whose image is missing or unreadable (a header check: fast, so a file truncated after its
    header passes here and is caught when it is decoded, see LesionDataset), failing when too many are.

    Returns the table without the bad rows; prints how many were skipped and the first few names, and
    appends {image_name, path, reason, found} rows to `skipped` when given.
    """

    def problem(path: str) -> str:
        if not path:
            return "missing"
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - reading the header is the check
            return ""
        except TOO_LARGE as exc:
            return f"too large ({exc.__class__.__name__})"
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            return f"unreadable ({exc.__class__.__name__})"

    with ThreadPoolExecutor(max_workers=8) as pool:
        problems = list(pool.map(problem, table["path"].tolist()))
    good = np.array([not p for p in problems], dtype=bool)
    bad = table.loc[~good, "image_name"].tolist()
    error = too_many_bad(bad, len(table), max_bad_fraction)
    if error:
        raise error
    if bad:
        more = " ..." if len(bad) > 5 else ""
        _say(f"skipping {len(bad)} missing or unreadable image(s): {', '.join(bad[:5])}{more}")
    if skipped is not None:
        for (name, path), reason in zip(table[["image_name", "path"]].itertuples(index=False), problems, strict=True):
            if reason:
                skipped.append({"image_name": name, "path": path, "reason": reason, "found": "pre-scan"})
    return table.loc[good].reset_index(drop=True)


def patient_split(table: pd.DataFrame, seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> pd.Series:
    """Patient-grouped, label-stratified train/val/test split (60/20/20 by default).

    Rows without a patient id are their own group. Returns a Series of split names aligned with `table`.
    Raises UserError when a split would hold no melanoma or no benign lesion (say every melanoma belongs to
    one patient): such a split can neither select epochs nor thresholds nor measure anything.
    """
    if fractions != (0.6, 0.2, 0.2):
        raise ValueError("only the paper's 60/20/20 split is supported")
    n_pos = int(table["target"].sum())
    if len(table) < 10 or n_pos < 5 or len(table) - n_pos < 5:
        raise UserError(
            f"too little data to split: {len(table)} images, {n_pos} malignant; need at least 10 images "
            "with 5 of each class"
        )
    groups = np.where(table["patient_id"].eq(""), "image:" + table["image_name"], "patient:" + table["patient_id"])
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    split = np.full(len(table), "train", dtype=object)
    for fold, (_, idx) in enumerate(folds.split(np.zeros(len(table)), table["target"], groups)):
        if fold == 0:
            split[idx] = "test"
        elif fold == 1:
            split[idx] = "val"
    _check_classes(table["target"].to_numpy(), split, groups, seed)
    return pd.Series(split, index=table.index, name="split")


def _check_classes(target: np.ndarray, split: np.ndarray, groups: np.ndarray, seed: int) -> None:
    """UserError naming the first split that lacks a class, why (patient grouping) and the fix."""
    for label, what in ((1, "melanoma"), (0, "benign lesion")):
        owners = len(set(groups[target == label]))
        for name in SPLIT_NAMES:
            if ((split == name) & (target == label)).any():
                continue
            fix = f"add data with {what}s from more patients"
            # NOTE: with fewer owners than the 3 splits no seed can help, so suggest one only when it might.
            fix += ", or try another --split-seed" if owners >= len(SPLIT_NAMES) else ""
            raise UserError(
                f"the patient-grouped split (seed {seed}) leaves the {name} split with no {what}: a patient's "
                f"images are never divided between splits, and the {int((target == label).sum())} {what}s "
                f"belong to {owners} patient(s); {fix}"
            )


@dataclass
class SplitData:
    """One split's rows, encoded metadata and labels."""

    table: pd.DataFrame
    meta: np.ndarray
    targets: np.ndarray


def encode_split(table: pd.DataFrame, encoder: MetadataEncoder) -> SplitData:
    """Encode a split's metadata with the (training-fitted) encoder."""
    meta = encoder.encode_many(table["age_approx"].tolist(), table["sex"].tolist(), table["site"].tolist())
    return SplitData(table.reset_index(drop=True), meta, table["target"].to_numpy(dtype=np.float32))


class LesionDataset(Dataset):
    """(image [3,S,S] float in [0,1] or None, meta [K], target [1], row index) for one split.

    An image that cannot be decoded (a JPEG truncated after an intact header, say) gives None instead of
    raising inside a DataLoader worker; `collate_skipping` drops it from the batch and reports its index.
    """

    def __init__(self, data: SplitData, transform, draft: int | None = None):
        self.data = data
        self.paths = data.table["path"].tolist()
        self.meta = torch.from_numpy(data.meta)
        self.targets = torch.from_numpy(data.targets).view(-1, 1)
        self.transform = transform
        self.draft = draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, int]:
        try:
            image = self.transform(load_rgb(self.paths[index], draft=self.draft))
        except (OSError, UnidentifiedImageError, ValueError):
            image = None
        return image, self.meta[index], self.targets[index], index


def collate_skipping(items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Batch the decodable items; return (image, meta, target, row indices, indices of undecodable rows)."""
    from torch.utils.data import default_collate

    good = [item for item in items if item[0] is not None]
    bad = [int(item[3]) for item in items if item[0] is None]
    if not good:
        empty = torch.zeros(0)
        return empty, empty, empty, torch.zeros(0, dtype=torch.long), bad
    image, meta, target, index = default_collate(good)
    return image, meta, target, index, bad
