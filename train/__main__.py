"""Train a melanoma-vs-benign fusion model (image + age, sex, body site).

    python -m train --model efficientnet_lite0                    # embedded SYNTHETIC set, offline
    python -m train --model efficientnet --data ~/isic2020 --external ~/melanoma-external-malignant-256
    torchrun --nproc_per_node 4 -m train --model efficientnet --data ~/isic2020 --out runs/effb0-ddp

The run directory (--out, default runs/<model>/<time>-seed<N>) receives checkpoint.pt, spec.json,
metrics.json, split.csv, predictions.csv, skipped_images.csv and last.pt (the state --resume continues from).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (kept free of heavy imports so --help is fast)."""
    from train import config
    from train.config import TrainConfig

    d = TrainConfig(model="")
    p = argparse.ArgumentParser(
        prog="python -m train",
        description="Train a melanoma-vs-benign classifier that fuses a dermoscopic image with age, sex and body site.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--model",
        help="backbone name or alias (efficientnet, mnasnet, mobilenet, shufflenet, densenet, "
        "resnet, resnext, googlenet, squeezenet, vgg, standard_cnn, efficientnet_lite0, ...)",
    )
    p.add_argument("--list-models", action="store_true", help="print every registered backbone and exit")
    p.add_argument(
        "--data", default=d.data, help="'synthetic' (embedded, offline) or an ISIC 2020 folder (train.csv + train/)"
    )
    p.add_argument("--external", default=None, help="folder of the external malignant set (train_concat.csv + images)")
    p.add_argument(
        "--weights",
        default=d.weights,
        help="imagenet (torchvision; needs internet or the torch hub cache; "
        "efficientnet_lite0 works offline), none, or a PATH to a checkpoint / state dict",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=d.epochs,
        help=f"maximum epochs, at most {config.MAX_EPOCHS} (early stopping may end sooner)",
    )
    p.add_argument(
        "--image-size", type=int, default=d.image_size, help=f"square input size in pixels (32-{config.MAX_IMAGE_SIZE})"
    )
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"batch size per process (2-{config.MAX_BATCH_SIZE})"
    )
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="Adam weight decay")
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="seed of the split, the initial weights and the augmentation (0-2**32-1)",
    )
    p.add_argument(
        "--split-seed", type=int, default=None, help="seed of the patient split when it should differ from --seed"
    )
    p.add_argument("--out", default=None, help="run directory (default runs/<model>/<time>-seed<seed>)")
    p.add_argument(
        "--workers", type=int, default=d.workers, help=f"DataLoader worker processes (0-{config.MAX_WORKERS})"
    )
    p.add_argument(
        "--pos-weight",
        default=d.pos_weight,
        help=f"BCE positive-class weight: none, auto (neg/pos) or a number in (0, {config.MAX_POS_WEIGHT:g}]",
    )
    p.add_argument(
        "--patience", type=int, default=d.patience, help="early stopping: epochs without validation AUROC gain"
    )
    p.add_argument("--lr-patience", type=int, default=d.lr_patience, help="epochs without gain before the LR is cut")
    p.add_argument("--lr-factor", type=float, default=d.lr_factor, help="LR multiplier at each cut")
    p.add_argument(
        "--threshold-rule",
        choices=["sensitivity", "youden"],
        default=d.threshold_rule,
        help="how the decision threshold is chosen on validation",
    )
    p.add_argument(
        "--threshold-target",
        type=float,
        default=d.threshold_target,
        help="validation sensitivity for the sensitivity rule (its threshold is stored as sensitivity_<100 x target>)",
    )
    p.add_argument(
        "--synthetic-count",
        type=int,
        default=d.synthetic_count,
        help=f"images in the synthetic set (50-{config.MAX_SYNTHETIC_COUNT})",
    )
    p.add_argument(
        "--max-bad-images",
        type=float,
        default=d.max_bad_images,
        help="fraction of missing/unreadable images skipped before the run fails",
    )
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or interrupted run in --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m train`."""
    args = build_parser().parse_args(argv)
    from core import zoo
    from core.errors import UserError

    if args.list_models:
        for name in zoo.list_models():
            aliases = [a for a, t in zoo.ALIASES.items() if t == name]
            print(name + (f"  (alias: {', '.join(aliases)})" if aliases else ""))
        return 0
    if not args.model:
        raise UserError("--model is required: e.g. --model efficientnet_lite0 (see --list-models)")
    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR, the run directory to continue")
    from train.loop import TrainConfig, run

    cfg = TrainConfig(
        model=args.model,
        data=args.data,
        external=args.external,
        weights=args.weights,
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        split_seed=args.split_seed,
        out=args.out,
        workers=args.workers,
        pos_weight=args.pos_weight,
        patience=args.patience,
        lr_patience=args.lr_patience,
        lr_factor=args.lr_factor,
        threshold_rule=args.threshold_rule,
        threshold_target=args.threshold_target,
        synthetic_count=args.synthetic_count,
        max_bad_images=args.max_bad_images,
        amp=not args.no_amp,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
