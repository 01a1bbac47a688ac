"""The training run: data -> split -> fresh model -> Adam with LR step-down and early stopping ->
best checkpoint restored -> thresholds and temperature on validation -> test metrics -> run directory.

Single process on CPU or one GPU, or several GPUs through `torchrun` (DistributedDataParallel). The other
jobs live beside it: the options in train/config.py, the data in train/prepare.py, the run directory and
its metrics in train/run_dir.py.

    from train.loop import TrainConfig, run
    run(TrainConfig(model="efficientnet_lite0", epochs=2, image_size=128))
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from core import zoo
from core.errors import UserError
from core.images import eval_transform
from core.io import atomic_path, load_tensors
from core.metrics import auroc, has_both_classes
from core.spec import ImageContract, state_dict_sha256
from train.config import TrainConfig, check_out_folder
from train.data import LesionDataset, SplitData, collate_skipping
from train.distributed import Dist, close_distributed, device, init_distributed, say
from train.images import train_transform
from train.prepare import BadImages, Prepared, prepare_data, write_split
from train.run_dir import RESUME_FILE, claimed, default_out_dir, finish, writes_to

__all__ = ["TrainConfig", "run"]

RESUME_FORMAT = "melanoma-train-state/1"


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train one model end to end; returns the metrics dict written to metrics.json."""
    cfg.validate()
    job = init_distributed()
    if job.world > 1 and not cfg.out:
        raise UserError("with torchrun give --out DIR, so that every process writes to the same run directory")
    out = Path(cfg.out) if cfg.out else default_out_dir(cfg)
    if not cfg.out:
        check_out_folder(out)  # validate() checked a given --out
    try:
        if not job.main:
            return _run(cfg, job, out)
        with claimed(out, cfg):
            return _run(cfg, job, out)
    finally:
        close_distributed(job)


def _run(cfg: TrainConfig, job: Dist, out: Path) -> dict[str, Any]:
    started = time.time()
    name = zoo.resolve_name(cfg.model)
    resume_state = _load_resume(out, cfg) if cfg.resume else None
    bad = BadImages(cfg.max_bad_images)
    prepared = prepare_data(cfg, job, bad)
    training = build_training(cfg, job, name, prepared)  # first: a weights file that does not fit leaves no folder
    if job.main:
        with writes_to(out, "split.csv"):
            out.mkdir(parents=True, exist_ok=True)
            write_split(out, prepared, set())
    train_epochs(cfg, job, out, training, prepared, bad, resume_state)
    val_logits = predict_logits(training.model, prepared.encoded["val"], cfg, job, "validating best", bad)
    test_logits = predict_logits(training.model, prepared.encoded["test"], cfg, job, "testing", bad)
    bad.gather(job)
    if not job.main:
        return {}
    return finish(cfg, job, out, name, prepared, training, {"val": val_logits, "test": test_logits}, bad, started)


def _load_resume(out: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    path = out / RESUME_FILE
    if (out / "metrics.json").is_file():
        raise UserError(f"{out} holds a finished run (metrics.json exists): nothing to resume; use a new --out")
    state = load_tensors(
        path,
        missing=f"nothing to resume in {out} (no {RESUME_FILE}): give the --out of an interrupted run",
        unreadable=f"{path} cannot be read: start a new run instead",
    )
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise UserError(f"{path} is not a training state written by python -m train")
    saved = state["config"]
    for key in ("model", "data", "external", "image_size", "seed", "split_seed", "synthetic_count"):
        if saved.get(key) != getattr(cfg, key):
            raise UserError(
                f"cannot resume {out}: it was trained with {key}={saved.get(key)!r}, not {getattr(cfg, key)!r}"
            )
    return state


@dataclass
class Training:
    """The model and everything that updates it."""

    model: nn.Module
    backbone: Any
    wrapped: nn.Module  # the DistributedDataParallel wrapper under torchrun, else the model
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    best_auroc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False
    initial_sha256: str = ""


def build_training(cfg: TrainConfig, job: Dist, name: str, prepared: Prepared) -> Training:
    """A fresh model for this seed (seeded before the build, so the initial weights are reproducible)."""
    where = device(job)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model, backbone = zoo.create_model(
        name, prepared.encoder.size, cfg.weights, cfg.image_size, meta_hidden=zoo.META_HIDDEN
    )
    model.to(where)
    say(
        job,
        f"model: {name} ({zoo.count_parameters(model) / 1e6:.1f} M parameters, "
        f"weights: {backbone.pretrained}) on {where}",
    )
    wrapped: nn.Module = model
    if job.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[job.local_rank] if where.type == "cuda" else None
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=cfg.lr_factor, patience=cfg.lr_patience
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and where.type == "cuda")
    criterion = nn.BCEWithLogitsLoss(pos_weight=_pos_weight(cfg, prepared.encoded["train"].targets, where))
    training = Training(model, backbone, wrapped, optimizer, scheduler, scaler, criterion)
    training.best_state = copy.deepcopy(model.state_dict())
    training.initial_sha256 = state_dict_sha256(model.state_dict())  # a study checks that each seed starts fresh
    return training


def _pos_weight(cfg: TrainConfig, targets: np.ndarray, where: torch.device) -> torch.Tensor | None:
    if cfg.pos_weight == "none":
        return None
    if cfg.pos_weight == "auto":
        pos = max(float(targets.sum()), 1.0)
        return torch.tensor([(len(targets) - pos) / pos], device=where)
    return torch.tensor([float(cfg.pos_weight)], device=where)  # validate() kept it finite and positive


def train_epochs(
    cfg: TrainConfig,
    job: Dist,
    out: Path,
    training: Training,
    prepared: Prepared,
    bad: BadImages,
    resume_state: dict[str, Any] | None,
) -> None:
    """Epochs with LR step-down and early stopping on validation AUROC; the best epoch's weights restored."""
    start_epoch = _resume(training, resume_state) if resume_state else 1
    if resume_state:
        say(job, f"resuming {out} after epoch {start_epoch - 1} (best val AUROC {training.best_auroc:.4f})")
    train_set = LesionDataset(prepared.encoded["train"], train_transform(cfg.image_size), draft=2 * cfg.image_size)
    loader = _loader(train_set, cfg.batch_size, True, cfg.workers, job, cfg.seed + 1000 * start_epoch, drop_last=True)
    if len(loader) == 0:
        raise UserError(f"the training split ({len(train_set)} images) is smaller than one batch: lower --batch-size")
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.time()
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        loss = _train_epoch(training, loader, cfg, job, epoch, bad)
        val_logits = predict_logits(training.model, prepared.encoded["val"], cfg, job, "validating", bad)
        val_auroc = _validation_auroc(val_logits, prepared.encoded["val"], epoch)
        lr = training.optimizer.param_groups[0]["lr"]
        training.scheduler.step(val_auroc)
        improved = val_auroc > training.best_auroc
        if improved:
            training.best_auroc, training.best_epoch, training.bad_epochs = val_auroc, epoch, 0
            training.best_state = copy.deepcopy(training.model.state_dict())
        else:
            training.bad_epochs += 1
        seconds = round(time.time() - t0, 1)
        training.history.append(
            {"epoch": epoch, "train_loss": loss, "val_auroc": val_auroc, "lr": lr, "seconds": seconds}
        )
        say(
            job,
            f"epoch {epoch}/{cfg.epochs}: train loss {loss:.4f}, val AUROC {val_auroc:.4f}"
            f"{' (best)' if improved else ''}, lr {lr:.2g}, {seconds:.0f} s",
        )
        if job.main:
            with writes_to(out, f"the training state ({RESUME_FILE}) after epoch {epoch}"):
                _save_state(out, cfg, training, epoch)
        if training.bad_epochs >= cfg.patience:
            training.stopped_early = True
            say(job, f"early stop: no validation AUROC gain for {cfg.patience} epochs")
            break
    if training.best_epoch < 1:  # never the untrained initial weights under the name of a best epoch
        raise RuntimeError(f"no epoch of {out} was selected (best validation AUROC {training.best_auroc})")
    training.model.load_state_dict(training.best_state)  # the best epoch's weights, before anything is measured


def _resume(training: Training, state: dict[str, Any]) -> int:
    """Restore an interrupted run's state; returns the first epoch still to run."""
    training.model.load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.scheduler.load_state_dict(state["scheduler"])
    training.scaler.load_state_dict(state["scaler"])
    training.best_state, training.history = state["best_state"], state["history"]
    training.best_auroc, training.best_epoch, training.bad_epochs = (
        state["best_auroc"],
        state["best_epoch"],
        state["bad_epochs"],
    )
    torch.set_rng_state(state["rng"]["torch"])
    return state["epoch"] + 1


def _loader(dataset, batch_size: int, shuffle: bool, workers: int, job: Dist, seed: int, drop_last: bool = False):
    sampler = DistributedSampler(dataset, job.world, job.rank, shuffle=shuffle, seed=seed) if job.world > 1 else None
    generator = torch.Generator().manual_seed(seed + job.rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=workers > 0,
        generator=generator,
        collate_fn=collate_skipping,
    )


def _train_epoch(training: Training, loader: DataLoader, cfg: TrainConfig, job: Dist, epoch: int, bad: BadImages):
    """One pass over the training split; returns the mean loss. Undecodable images are skipped and counted."""
    where = device(job)
    split = loader.dataset.data
    training.wrapped.train()
    total, seen = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not job.main or None, file=sys.stderr)
    for image, meta, target, _, failed in bar:
        bad.add(split, failed)
        if len(target) < 2:  # every image of the batch (or all but one) failed: batch norm needs two
            if job.world > 1:
                raise UserError(f"a whole training batch failed to decode at epoch {epoch}: check the images")
            continue
        image, meta, target = (t.to(where, non_blocking=True) for t in (image, meta, target))
        training.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(where.type, dtype=torch.float16, enabled=training.scaler.is_enabled()):
            loss = training.criterion(training.wrapped(image, meta).float(), target)
        if not torch.isfinite(loss):
            # NOTE: validate() refuses a non-finite --pos-weight, so what is left is divergence.
            amp = " or pass --no-amp" if training.scaler.is_enabled() else ""
            raise UserError(
                f"the training loss became {loss.item()} at epoch {epoch}: the model diverged; lower --lr "
                f"(now {training.optimizer.param_groups[0]['lr']:g}){amp}"
            )
        training.scaler.scale(loss).backward()
        training.scaler.step(training.optimizer)
        training.scaler.update()
        total += loss.item() * len(target)
        seen += len(target)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / max(seen, 1)


@torch.no_grad()
def predict_logits(
    model: nn.Module, split: SplitData, cfg: TrainConfig, job: Dist, desc: str, bad: BadImages
) -> np.ndarray:
    """Logits for every row of `split`, NaN where the image failed to decode (recorded in `bad`); each rank
    scores a shard and the shards are gathered on all ranks. UserError when the model's outputs are not
    finite (a diverged model), so that a NaN never passes for an image that failed to decode."""
    where = device(job)
    indices = np.arange(len(split.table))[job.rank :: job.world]
    dataset = LesionDataset(split, eval_transform(ImageContract(size=cfg.image_size)))
    subset = torch.utils.data.Subset(dataset, indices.tolist())
    loader = DataLoader(
        subset,
        batch_size=cfg.batch_size * 2,
        num_workers=cfg.workers,
        pin_memory=where.type == "cuda",
        collate_fn=collate_skipping,
    )
    model.eval()
    logits = np.full(len(split.table), np.nan, dtype=np.float32)
    use_amp = cfg.amp and where.type == "cuda"
    for image, meta, _, rows, failed in tqdm(loader, desc=desc, leave=False, disable=not job.main or None):
        bad.add(split, failed)
        if len(rows):
            with torch.autocast(where.type, dtype=torch.float16, enabled=use_amp):
                logit = model(image.to(where, non_blocking=True), meta.to(where, non_blocking=True)).float()
            if not torch.isfinite(logit).all():
                raise UserError(f"the model's outputs became NaN or infinite ({desc}): it diverged; lower --lr")
            logits[rows.numpy()] = logit.cpu().numpy().reshape(-1)
    if job.world == 1:
        return logits
    gathered: list[Any] = [None] * job.world
    dist.all_gather_object(gathered, (indices, logits[indices]))
    for idx, values in gathered:
        logits[idx] = values
    return logits


def _validation_auroc(logits: np.ndarray, split: SplitData, epoch: int) -> float:
    """Validation AUROC over the images that decoded; UserError when it is undefined (a NaN must never
    select an epoch, or leave the untrained weights as the best)."""
    keep = np.isfinite(logits)
    targets = split.targets[keep]
    if not has_both_classes(targets):
        missing = "melanoma" if not targets.sum() else "benign lesion"
        raise UserError(
            f"validation AUROC is undefined at epoch {epoch}: the {int(keep.sum())} validation images that "
            f"decoded ({int((~keep).sum())} failed) hold no {missing}; check the images, or try another --split-seed"
        )
    return auroc(targets, logits[keep])


def _save_state(out: Path, cfg: TrainConfig, training: Training, epoch: int) -> None:
    state = {
        "format": RESUME_FORMAT,
        "config": asdict(cfg),
        "epoch": epoch,
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
        "scaler": training.scaler.state_dict(),
        "best_state": training.best_state,
        "best_auroc": training.best_auroc,
        "best_epoch": training.best_epoch,
        "bad_epochs": training.bad_epochs,
        "history": training.history,
        "rng": _rng_state(),
    }
    with atomic_path(out / RESUME_FILE) as tmp:
        torch.save(state, tmp)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state
