"""The run directory: claimed before training (a lock, and no finished or interrupted run replaced unless
asked), then filled once the best epoch is back: temperature and thresholds on validation, test metrics,
checkpoint.pt with its spec, split.csv, predictions.csv, skipped_images.csv and, last, metrics.json (the
mark of a finished run). A write the disk refuses (full, read-only, not ours) ends in one sentence naming
the folder, and leaves no half-written file.

    with claimed(out, cfg):
        ...                                   # prepare, train (last.pt after each epoch)
        finish(cfg, job, out, name, prepared, training, logits, bad, started)
"""

from __future__ import annotations

import datetime as _dt
import errno
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from torch import nn

from core import zoo
from core.checkpoint import save_checkpoint
from core.contract import Contract
from core.errors import UserError, free_space_mb
from core.images import PILLOW_VERSION
from core.io import atomic_path, exclusive, write_json
from core.metrics import (
    auprc,
    auroc,
    binary_metrics,
    bootstrap_ci,
    calibrated_probability,
    choose_threshold,
    fit_temperature,
    has_both_classes,
    json_safe,
)
from core.spec import INTENDED_USE, ImageContract, ModelSpec, OutputContract
from train.config import TrainConfig, threshold_name
from train.distributed import Dist, device, say
from train.prepare import BadImages, Prepared, write_split

RESUME_FILE = "last.pt"
# What finish() writes; removed again when it cannot complete, so the folder holds an interrupted run.
RESULT_FILES = ("checkpoint.pt", "spec.json", "predictions.csv", BadImages.FILE, "metrics.json")
RUN_FILES = (*RESULT_FILES, "split.csv", RESUME_FILE)
# What torch.save's C++ writer says when the disk fills up under it (it raises RuntimeError, not OSError).
TORCH_WRITE_FAILURES = ("unexpected pos", "PytorchStreamWriter failed", "file write failed")


class RunInUse(UserError):
    """Another process holds the run directory's lock (a study tells this apart from a failed run)."""


class Trained(Protocol):
    """What finish() reads of the loop's `Training` (a protocol, so this module need not import the loop)."""

    model: nn.Module
    backbone: Any
    history: list[dict[str, Any]]
    best_epoch: int
    stopped_early: bool
    initial_sha256: str


def default_out_dir(cfg: TrainConfig) -> Path:
    """runs/<backbone>/<timestamp>-seed<seed>."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / zoo.resolve_name(cfg.model) / f"{stamp}-seed{cfg.seed}"


@contextmanager
def claimed(out: Path, cfg: TrainConfig) -> Iterator[None]:
    """Hold `out`'s lock for the block (RunInUse when another process holds it) and claim the folder."""
    with ExitStack() as stack:
        with writes_to(out, "the run's lock file"):
            try:
                stack.enter_context(exclusive(out, "training run"))
            except UserError as exc:  # exclusive's only UserError: the lock is held
                raise RunInUse(str(exc)) from None
            claim_run_dir(out, cfg)
        yield


def claim_run_dir(out: Path, cfg: TrainConfig) -> None:
    """Refuse to train into a folder holding a finished or interrupted run unless asked; with --overwrite,
    remove the earlier run's files first (so nothing stale is left beside the new ones)."""
    finished = [name for name in ("metrics.json", "checkpoint.pt") if (out / name).is_file()]
    if cfg.overwrite:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    elif finished and not cfg.resume:
        raise UserError(f"{out} holds a finished run ({finished[0]}): pass --overwrite to replace it, or another --out")
    elif (out / RESUME_FILE).is_file() and not cfg.resume:
        raise UserError(
            f"{out} holds an interrupted run: pass --resume to continue it, --overwrite to start over, or another --out"
        )


@contextmanager
def writes_to(folder: Path, what: str) -> Iterator[None]:
    """Turn a write of `what` into `folder` that the file system refuses into one sentence (UserError):
    a full disk with the space left, a folder this user may not write, any other OSError with its reason.
    The writes themselves go through core.io.atomic_path, so a failed one leaves no partial file."""
    try:
        yield
    except UserError:
        raise
    except OSError as exc:
        raise UserError(write_failure(folder, what, exc.errno, exc.strerror)) from None
    except RuntimeError as exc:
        if not any(text in str(exc) for text in TORCH_WRITE_FAILURES):
            raise
        raise UserError(write_failure(folder, what, errno.ENOSPC, None)) from None


def write_failure(folder: Path, what: str, code: int | None, reason: str | None) -> str:
    """The sentence for a failed write; how to go on depends on whether an epoch's state was saved."""
    go_on = f"then continue the run with --resume --out {folder}" if (folder / RESUME_FILE).is_file() else "then rerun"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {what} into {folder}: the disk is full ({_free_space(folder)} free); free space, {go_on}"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {what} into {folder} ({reason or 'permission denied'}): give an --out you can write to"
    return f"cannot write {what} into {folder} ({reason or f'errno {code}'}): check the disk, or give another --out"


def _free_space(folder: Path) -> str:
    mb = free_space_mb(folder)
    if mb is None:
        return "unknown space"
    return f"{mb / 1e3:.1f} GB" if mb >= 1e3 else f"{mb:.0f} MB"


def finish(
    cfg: TrainConfig,
    job: Dist,
    out: Path,
    name: str,
    prepared: Prepared,
    training: Trained,
    logits: dict[str, np.ndarray],
    bad: BadImages,
    started: float,
) -> dict[str, Any]:
    """Temperature and thresholds on validation, test metrics, then the run directory (checkpoint with its
    spec, split.csv without any image that failed to decode, predictions, skipped images, metrics)."""
    keep = {s: np.isfinite(logits[s]) for s in logits}
    y = {s: prepared.encoded[s].targets[keep[s]] for s in logits}
    for s in logits:
        if not has_both_classes(y[s]):  # prepare_data refused such a split; decode failures can still empty one
            raise UserError(
                f"the {s} images that decoded ({len(y[s])} of {len(keep[s])}) hold only one class, so no "
                f"{'threshold can be chosen' if s == 'val' else 'metric can be measured'}: check the images "
                "that failed to decode, or try another --split-seed"
            )
    temperature = fit_temperature(logits["val"][keep["val"]], y["val"])
    prob = {s: calibrated_probability(logits[s][keep[s]], temperature) for s in logits}
    thresholds = _thresholds(cfg, y["val"], prob["val"])
    primary = cfg.threshold_name
    threshold = float(thresholds[primary]["value"])
    test = binary_metrics(y["test"], prob["test"], threshold)
    test["auroc_ci95"] = list(bootstrap_ci(y["test"], prob["test"], auroc, seed=cfg.seed))
    test["auprc_ci95"] = list(bootstrap_ci(y["test"], prob["test"], auprc, seed=cfg.seed))
    test["at_youden_threshold"] = binary_metrics(y["test"], prob["test"], float(thresholds["youden"]["value"]))
    try:
        with writes_to(out, "the run's results"):
            write_split(out, prepared, bad.found_loading())
            prepared.info["skipped_images"] = len(bad.rows)
            metrics = json_safe(
                {
                    "model": name,
                    "config": asdict(cfg),
                    "data": prepared.info,
                    "device": str(device(job)),
                    "world_size": job.world,
                    "best_epoch": training.best_epoch,
                    "stopped_early": training.stopped_early,
                    "initial_weights_sha256": training.initial_sha256,
                    "temperature": temperature,
                    "threshold": {"name": primary, **thresholds[primary], "chosen_on": "validation"},
                    "val": binary_metrics(y["val"], prob["val"], threshold),
                    "test": test,
                    "history": training.history,
                    "seconds": round(time.time() - started, 1),
                }
            )
            spec = _spec(cfg, name, prepared, training, metrics, thresholds, primary)
            save_checkpoint(out / "checkpoint.pt", training.model.cpu(), spec)
            _write_predictions(out, prepared, logits, keep, temperature)
            bad.write(out)
            write_json(out / "metrics.json", metrics)  # last: its presence means "finished"
    except BaseException:
        for result in RESULT_FILES:  # no checkpoint without its metrics: the folder stays an interrupted run
            (out / result).unlink(missing_ok=True)
        raise
    t = metrics["test"]
    say(
        job,
        f"test: AUROC {t['auroc']:.4f} (95% CI {t['auroc_ci95'][0]:.3f}-{t['auroc_ci95'][1]:.3f}), "
        f"AUPRC {t['auprc']:.4f}, sensitivity {t['sensitivity']:.3f} / specificity {t['specificity']:.3f} "
        f"at threshold {threshold:.3f}; run directory {out}"
        + (f"; {len(bad.rows)} image(s) skipped, listed in {BadImages.FILE}" if bad.rows else ""),
    )
    return metrics


def _thresholds(cfg: TrainConfig, y_val: np.ndarray, val_prob: np.ndarray) -> dict[str, dict[str, Any]]:
    """Both rules' validation thresholds, each under the name its rule and target give (sensitivity_95 ...)."""
    return {
        threshold_name("sensitivity", cfg.threshold_target): {
            "value": choose_threshold(y_val, val_prob, "sensitivity", cfg.threshold_target),
            "rule": f"highest threshold with validation sensitivity >= {cfg.threshold_target}",
        },
        threshold_name("youden", cfg.threshold_target): {
            "value": choose_threshold(y_val, val_prob, "youden"),
            "rule": "validation threshold maximising sensitivity + specificity - 1",
        },
    }


def _spec(
    cfg: TrainConfig,
    name: str,
    prepared: Prepared,
    training: Trained,
    metrics: dict[str, Any],
    thresholds: dict[str, dict[str, Any]],
    primary: str,
) -> ModelSpec:
    backbone = training.backbone
    decision = {"rule": cfg.threshold_rule} | (
        {"target": cfg.threshold_target} if cfg.threshold_rule == "sensitivity" else {}
    )
    return ModelSpec.for_contract(
        Contract.from_metadata_encoder(prepared.encoder, name, cfg.image_size, decision),
        architecture=f"{name} + metadata MLP fusion (Kim & Rocheteau 2020)",
        # The fusion model normalises inside itself: the graph's input is RGB in [0, 1] like the contract's.
        image=ImageContract(
            size=cfg.image_size, mean=backbone.mean, std=backbone.std, resize_library_version=PILLOW_VERSION
        ),
        outputs=OutputContract(
            temperature=metrics["temperature"],
            threshold=float(thresholds[primary]["value"]),
            threshold_rule=str(thresholds[primary]["rule"]),
            thresholds=thresholds,
        ),
        model_config=zoo.model_config(name, prepared.encoder.size, cfg.image_size, meta_hidden=zoo.META_HIDDEN),
        provenance={
            "data": prepared.info,
            "pretrained": backbone.pretrained,
            "intended_use": INTENDED_USE.format(data=prepared.info["name"]),
            "training": {k: metrics["config"][k] for k in ("epochs", "batch_size", "lr", "seed", "pos_weight")}
            | {"best_epoch": training.best_epoch},
            "metrics": {
                "val": {k: metrics["val"][k] for k in ("auroc", "auprc")},
                "test": {k: metrics["test"][k] for k in ("auroc", "auprc", "auroc_ci95")},
            },
        },
    )


def _write_predictions(out: Path, prepared: Prepared, logits: dict, keep: dict, temperature: float) -> None:
    frames = []
    for s in ("val", "test"):
        table = prepared.encoded[s].table[["image_name", "patient_id", "target"]][keep[s]]
        lg = logits[s][keep[s]]
        frames.append(table.assign(split=s, logit=lg, probability=calibrated_probability(lg, temperature)))
    with atomic_path(out / "predictions.csv") as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
