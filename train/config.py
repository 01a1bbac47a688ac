"""What one training run depends on: `TrainConfig`, its defaults in one place, and the checks that refuse
nonsense values (one sentence each) before any work starts. Light to import: `python -m train --help`
reads its defaults from here.

    cfg = TrainConfig(model="efficientnet_lite0", epochs=2, image_size=128)
    cfg.validate()          # UserError naming the option and its allowed range
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UserError
from core.io import check_folder_path
from core.metrics import threshold_name
from core.synthetic import DEFAULT_COUNT

DEFAULT_MAX_BAD_FRACTION = 0.02
# numpy's RandomState (np.random.seed, the patient split's StratifiedGroupKFold) takes seeds in 0..2**32-1.
MAX_SEED = 2**32 - 1
# Upper bounds on sizes: past these a run only exhausts memory or disk. 1024 px is 4.6x the paper's 224 and
# above any backbone's native input here; 100 000 synthetic images are 1.1 GB of cache (11 KB each) and take
# half an hour to generate (36 s per 2000 on the README's machine).
MAX_IMAGE_SIZE = 1024
MAX_BATCH_SIZE = 4096
MAX_WORKERS = 64
MAX_EPOCHS = 1000
MAX_SYNTHETIC_COUNT = 100_000
MAX_POS_WEIGHT = 1000.0  # ISIC 2020's negatives / positives is about 56 ("auto")
THRESHOLD_RULES = ("sensitivity", "youden")


def check_range(flag: str, value: float, low: float, high: float, unit: str = "") -> None:
    """UserError unless low <= value <= high (NaN fails too), naming the flag and both bounds."""
    if not low <= value <= high:
        raise UserError(f"{flag} must be between {low} and {high}{unit} (got {value})")


def check_sizes(*, epochs: int, image_size: int, batch_size: int, synthetic_count: int) -> None:
    """The bounds `python -m train` and `python -m train.study` share."""
    check_range("--epochs", epochs, 1, MAX_EPOCHS)
    check_range("--image-size", image_size, 32, MAX_IMAGE_SIZE, " pixels")
    if batch_size < 2:
        raise UserError(f"--batch-size must be at least 2, for batch norm (got {batch_size})")
    check_range("--batch-size", batch_size, 2, MAX_BATCH_SIZE)
    check_range("--synthetic-count", synthetic_count, 50, MAX_SYNTHETIC_COUNT)


def check_seed(flag: str, seed: int) -> None:
    """A seed numpy accepts (0..2**32-1)."""
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"{flag} must be a whole number from 0 to 2**32-1 = {MAX_SEED} (numpy's limit; got {seed})")


def check_out_folder(out: Path) -> None:
    """Refuse an output folder that cannot be created or written, before any work: one that is a file, lies
    under a file, or whose nearest existing folder this user may not write into. (Writes are still guarded:
    os.access can be wrong, e.g. for root or on network file systems.)"""
    check_folder_path(out)
    existing = next(p for p in [out, *out.parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: this user may not write into {existing}: give a folder you can write to")


@dataclass
class TrainConfig:
    """Everything one training run depends on (stored in metrics.json and in the resume state).

    The metadata MLP's width is not an option: it is `core.zoo.META_HIDDEN`, recorded in the spec's
    `model_config`.
    """

    model: str
    data: str = "synthetic"
    external: str | None = None
    weights: str = "imagenet"
    epochs: int = 15
    image_size: int = 224
    batch_size: int = 32
    lr: float = 1e-3  # Adam default; with 2 epochs on the synthetic set it beats 3e-4 (0.88 vs 0.81 AUROC)
    weight_decay: float = 0.0
    seed: int = 0
    split_seed: int | None = None  # the data split's seed when it differs from `seed` (a study varies only `seed`)
    out: str | None = None
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    pos_weight: str = "none"
    patience: int = 3
    lr_patience: int = 1
    lr_factor: float = 0.4
    threshold_rule: str = "sensitivity"
    threshold_target: float = 0.95
    synthetic_count: int = DEFAULT_COUNT
    max_bad_images: float = DEFAULT_MAX_BAD_FRACTION
    amp: bool = True
    resume: bool = False
    overwrite: bool = False

    @property
    def effective_split_seed(self) -> int:
        """The seed of the patient split: `split_seed`, or `seed` when that is not set."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def threshold_name(self) -> str:
        """The primary threshold's key in metrics.json and the spec's `outputs.thresholds`."""
        return threshold_name(self.threshold_rule, self.threshold_target)

    def validate(self) -> None:
        """Refuse nonsense values with one clear sentence each."""
        from core import zoo  # here, not at the top: it imports torch, and --help reads this module

        check_sizes(
            epochs=self.epochs,
            image_size=self.image_size,
            batch_size=self.batch_size,
            synthetic_count=self.synthetic_count,
        )
        check_seed("--seed", self.seed)
        if self.split_seed is not None:
            check_seed("--split-seed", self.split_seed)
        check_range("--workers", self.workers, 0, MAX_WORKERS)
        checks = [
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number (got {self.lr})"),
            (0 <= self.weight_decay <= 1, f"--weight-decay must be between 0 and 1 (got {self.weight_decay})"),
            (self.patience >= 1, f"--patience must be at least 1 (got {self.patience})"),
            (self.lr_patience >= 0, f"--lr-patience must be at least 0 (got {self.lr_patience})"),
            (0 < self.lr_factor < 1, f"--lr-factor must be between 0 and 1 (got {self.lr_factor})"),
            (
                0 < self.threshold_target < 1,
                f"--threshold-target must be between 0 and 1 (got {self.threshold_target})",
            ),
            (
                0 <= self.max_bad_images < 1,
                f"--max-bad-images must be a fraction in [0, 1) (got {self.max_bad_images})",
            ),
            (self.threshold_rule in THRESHOLD_RULES, "--threshold-rule must be sensitivity or youden"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        self._validate_pos_weight()
        if self.external and self.data == "synthetic":
            raise UserError(
                "--external adds to ISIC 2020: give --data DIR too (the synthetic set takes no external data)"
            )
        name = zoo.resolve_name(self.model)
        if self.weights == "imagenet" and not zoo.has_imagenet_weights(name):
            raise UserError(f"{name} has no ImageNet weights: use --weights none (or a PATH)")
        if self.weights not in ("imagenet", "none"):
            path = Path(self.weights).expanduser()
            if path.is_dir():
                raise UserError(f"--weights {self.weights} is a folder: give the weights file in it")
            if not path.is_file():
                raise UserError(f"weights file {self.weights} does not exist: give --weights imagenet, none, or a file")
        if self.resume and self.overwrite:
            raise UserError("--resume continues a run and --overwrite replaces it: give one of them")
        if self.out:
            check_out_folder(Path(self.out))
        if self.data != "synthetic" and not Path(self.data).expanduser().exists():
            raise UserError(f"data folder {self.data} does not exist: give the ISIC 2020 folder, or --data synthetic")

    def _validate_pos_weight(self) -> None:
        if self.pos_weight in ("none", "auto"):
            return
        try:
            value = float(self.pos_weight)
        except ValueError:
            value = math.nan
        # NOTE: inf and nan parse as floats; both reach the loss as nan, which then read as "lower --lr".
        if not 0 < value <= MAX_POS_WEIGHT:
            raise UserError(
                f"--pos-weight must be none, auto or a number above 0 and at most {MAX_POS_WEIGHT:g} "
                f"(got {self.pos_weight})"
            )
