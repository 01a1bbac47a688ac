"""A run's data, before any training: the table of usable images (ISIC 2020, the external set or the synthetic
set, bad images skipped and counted), its patient-grouped split, the metadata encoder fitted on the training
split, and split.csv with its counts.

    bad = BadImages(cfg.max_bad_images)
    prepared = prepare_data(cfg, job, bad)
    write_split(out, prepared, excluded=set())
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch.distributed as dist

from core.datasets import load_external, load_isic2020, merge_external
from core.io import atomic_path, sha256_file
from core.metadata import MetadataEncoder
from core.synthetic import ensure_synthetic
from train.config import TrainConfig
from train.data import SPLIT_NAMES, SplitData, check_images, encode_split, patient_split, too_many_bad
from train.distributed import Dist, barrier, say


class BadImages:
    """Every image skipped in this run, by the pre-scan or when its pixels failed to decode (a truncated
    JPEG with an intact header): counted against --max-bad-images and written to skipped_images.csv."""

    FILE = "skipped_images.csv"

    def __init__(self, max_fraction: float):
        self.max_fraction = max_fraction
        self.rows: list[dict] = []
        self.listed = 0

    def add(self, split: SplitData, indices: list[int]) -> None:
        """Record rows of `split` whose image failed to decode; UserError once too many images are bad."""
        for i in indices:
            name, path = split.table["image_name"].iloc[i], split.table["path"].iloc[i]
            if all(r["image_name"] != name for r in self.rows):
                self.rows.append({"image_name": name, "path": path, "reason": "failed to decode", "found": "loading"})
        error = too_many_bad([r["image_name"] for r in self.rows], self.listed, self.max_fraction)
        if error:
            raise error

    def found_loading(self) -> set[str]:
        """The images that passed the pre-scan but failed to decode."""
        return {r["image_name"] for r in self.rows if r["found"] == "loading"}

    def gather(self, job: Dist) -> None:
        """Merge what every process found (each decodes its own shard)."""
        if job.world > 1:
            everyone: list[Any] = [None] * job.world
            dist.all_gather_object(everyone, self.rows)
            merged = {r["image_name"]: r for rows in everyone for r in rows}
            self.rows = list(merged.values())

    def write(self, out: Path) -> None:
        """skipped_images.csv: image_name, path, reason, found (pre-scan or loading)."""
        frame = pd.DataFrame(self.rows, columns=["image_name", "path", "reason", "found"])
        with atomic_path(out / self.FILE) as tmp:
            frame.to_csv(tmp, index=False)


def prepare_data(cfg: TrainConfig, job: Dist, bad: BadImages) -> Prepared:
    """Load and check the data, split it by patient (refused when a split would lack a class), fit the
    metadata encoder on the training split."""
    table, info = load_table(cfg, job, bad.rows)
    bad.listed = info["listed"]
    split = patient_split(table, cfg.effective_split_seed)
    parts = {s: table[split.to_numpy() == s] for s in SPLIT_NAMES}
    encoder = MetadataEncoder.fit(parts["train"]["age_approx"].tolist())
    encoded = {s: encode_split(parts[s], encoder) for s in SPLIT_NAMES}
    info.update(
        images=len(table),
        malignant=int(table["target"].sum()),
        prevalence=round(float(table["target"].mean()), 4),
        split_seed=cfg.effective_split_seed,
        split_rule="patient-grouped, label-stratified 60/20/20 (StratifiedGroupKFold, 5 folds: 0 test, 1 val)",
    )
    prepared = Prepared(table, split, encoder, encoded, info)
    counts = split_counts(prepared, set())
    say(
        job,
        f"data: {info['name']}: {len(table)} images, {info['malignant']} malignant; "
        + ", ".join(f"{s} {c['images']} ({c['malignant']} mal.)" for s, c in counts.items()),
    )
    return prepared


def load_table(cfg: TrainConfig, job: Dist, skipped: list[dict]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The merged, checked table of every usable image, and a description of the data. Images the pre-scan
    finds missing or unreadable are appended to `skipped`; `info["listed"]` counts every row before it."""
    if cfg.data == "synthetic":
        if job.main:  # generated (or repaired) once, by one process; the others wait for it
            root = ensure_synthetic(cfg.synthetic_count, seed=0)
        barrier(job)
        root = ensure_synthetic(cfg.synthetic_count, seed=0)
        table = load_isic2020(root)
        info: dict[str, Any] = {
            "name": "synthetic",
            "synthetic_count": cfg.synthetic_count,
            "synthetic": True,
            "path": str(root),
            "description": "SYNTHETIC procedurally generated lesions (core/synthetic.py)",
        }
    else:
        root = Path(cfg.data).expanduser()
        table = load_isic2020(root)
        info = {"name": "ISIC 2020", "synthetic": False, "path": str(root)}
        if cfg.external:
            table = merge_external(table, load_external(Path(cfg.external).expanduser()))
            info["name"] = "ISIC 2020 + external malignant set"
            info["external_path"] = str(Path(cfg.external).expanduser())
    info["listed"] = len(table)
    return check_images(table, cfg.max_bad_images, skipped), info


@dataclass
class Prepared:
    """The data of one run: every usable row, its split, the fitted encoder and the encoded splits."""

    table: pd.DataFrame
    split: pd.Series
    encoder: MetadataEncoder
    encoded: dict[str, SplitData]
    info: dict[str, Any]


def split_counts(prepared: Prepared, excluded: set[str]) -> dict[str, dict[str, int]]:
    """Images, melanomas and patients per split, without the `excluded` images."""
    frame = _split_frame(prepared, excluded)
    return {
        s: {
            "images": int((frame["split"] == s).sum()),
            "malignant": int(frame.loc[frame["split"] == s, "target"].sum()),
            "patients": int(frame.loc[frame["split"] == s, "patient_id"].replace("", np.nan).nunique()),
        }
        for s in SPLIT_NAMES
    }


def write_split(out: Path, prepared: Prepared, excluded: set[str]) -> None:
    """split.csv without the `excluded` images; its sha256 and per-split counts go to `prepared.info`
    (export refuses a split.csv that does not match them)."""
    with atomic_path(out / "split.csv") as tmp:
        _split_frame(prepared, excluded).to_csv(tmp, index=False)
    prepared.info["split_sha256"] = sha256_file(out / "split.csv")
    prepared.info["splits"] = split_counts(prepared, excluded)


def _split_frame(prepared: Prepared, excluded: set[str]) -> pd.DataFrame:
    frame = prepared.table[["image_name", "patient_id", "target", "source"]].assign(split=prepared.split.to_numpy())
    return frame[~frame["image_name"].isin(excluded)]
