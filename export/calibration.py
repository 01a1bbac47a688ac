"""Calibration data for static quantization: real training images, class-stratified, never random tensors.

calib = calibration_set(checkpoint, spec, size=128)     # EvalSet of preprocessed training images
images = training_images(checkpoint, spec, size=1024)   # a random subset, for int8-aware fine-tuning
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from core.evaluation import EvalSet, load_split
from core.spec import ModelSpec

DEFAULT_SIZE = 128
MIN_POSITIVES = 10


def stratified_pick(table: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """Up to `size` rows with melanomas over-represented (up to half), the rest benign; deterministic."""
    rng = np.random.default_rng(seed)
    pos = table.index[table["target"] == 1].to_numpy()
    neg = table.index[table["target"] == 0].to_numpy()
    n_pos = min(len(pos), max(size // 2, 1))
    n_neg = min(len(neg), size - n_pos)
    n_pos = min(len(pos), size - n_neg)  # fill from melanomas when benign lesions run short
    chosen = np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)])
    return table.loc[np.sort(chosen)]


def calibration_set(checkpoint: Path, spec: ModelSpec, size: int = DEFAULT_SIZE, seed: int = 0) -> EvalSet:
    """Preprocessed, class-stratified images (+ metadata) from the checkpoint's training split."""
    data = load_split(checkpoint, spec, "train", select=lambda t: stratified_pick(t, size, seed))
    positives = int(data.target.sum())
    if positives < MIN_POSITIVES:
        warnings.warn(
            f"only {positives} melanoma(s) among {len(data)} calibration images; int8 ranges may not "
            "cover malignant lesions well (raise --calibration-size or add data)",
            stacklevel=2,
        )
    return data


def training_images(checkpoint: Path, spec: ModelSpec, size: int, seed: int = 0) -> EvalSet:
    """Up to `size` preprocessed images from the checkpoint's training split, drawn at random (so in the
    split's own class balance): what int8-aware fine-tuning distils on."""

    return load_split(checkpoint, spec, "train", select=lambda t: random_pick(t, size, seed))


def random_pick(table: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """Up to `size` rows drawn at random (so in the table's own class balance), in table order; deterministic."""
    if len(table) <= size:
        return table
    return table.loc[np.sort(np.random.default_rng(seed).choice(table.index.to_numpy(), size, replace=False))]


def training_split(checkpoint: Path, spec: ModelSpec, size: int, seed: int = 0, stratified: bool = False) -> EvalSet:
    """`calibration_set` when `stratified`, else `training_images` (what the int8 remedy rungs draw on)."""
    pick = calibration_set if stratified else training_images
    return pick(checkpoint, spec, size, seed)
