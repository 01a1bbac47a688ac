"""Figure 4 for one checkpoint: integrated gradients of the fusion model's logit (captum), the image
attributions as heat maps over the lesion and the metadata attributions (age, sex, site) as bars, for a few
test melanomas and benign lesions, plus the mean |attribution| per metadata feature over the test split.

    python -m train.explain --checkpoint runs/.../checkpoint.pt --cases 8
    python -m train.explain --checkpoint runs/.../checkpoint.pt --cases 4 --mean-cases 64 --out figures/

Baselines: a black image and the metadata of a patient about whom nothing is known (age, sex and site all
missing), so each attribution says how much a feature moved the logit away from "no information". Writes
figure4.png and attributions.json to --out (default: an `explain/` folder beside the checkpoint).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError, run_cli

STEPS = 128  # integration steps: fewer left a completeness error of ~0.1 logit on a small model here


def metadata_groups(feature_names: list[str]) -> dict[str, list[int]]:
    """`meta` indices per patient attribute: age (value + missing flag), sex, site."""
    groups: dict[str, list[int]] = {"age": [], "sex": [], "site": []}
    for i, name in enumerate(feature_names):
        groups[name.split("_")[0]].append(i)
    return groups


def attribute(model: Any, image: np.ndarray, meta: np.ndarray, baseline_meta: np.ndarray, steps: int = STEPS):
    """Integrated gradients of the logit for each case: (image attributions [N,3,S,S], meta ones [N,K],
    convergence delta [N] = how far the attributions' sum is from logit(x) - logit(baseline))."""
    import torch
    from captum.attr import IntegratedGradients

    model.eval()
    x = (torch.from_numpy(image), torch.from_numpy(meta))
    base = (torch.zeros_like(x[0]), torch.from_numpy(np.repeat(baseline_meta[None], len(meta), axis=0)))
    ig = IntegratedGradients(model)
    (image_attr, meta_attr), delta = ig.attribute(
        x, baselines=base, target=0, n_steps=steps, internal_batch_size=max(steps, 8), return_convergence_delta=True
    )
    return image_attr.detach().numpy(), meta_attr.detach().numpy(), delta.detach().numpy()


def pick(target: np.ndarray, count: int) -> list[int]:
    """Up to `count` test cases, melanomas first then benign lesions, half each where both exist."""
    positives, negatives = np.flatnonzero(target == 1), np.flatnonzero(target == 0)
    half = min(len(positives), max(count // 2, 1))
    chosen = list(positives[:half]) + list(negatives[: count - half])
    return [int(i) for i in chosen[:count]]


def figure(data: Any, cases: list[int], image_attr: np.ndarray, meta_attr: np.ndarray, groups: dict, prob) -> bytes:
    """One row per case: the image, its attribution heat map over it, and the metadata bars."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(cases), 3, figsize=(10, 2.8 * len(cases)), dpi=100, squeeze=False)
    for row, (i, ia, ma) in enumerate(zip(cases, image_attr, meta_attr, strict=True)):
        picture = data.image[i].transpose(1, 2, 0)
        heat = np.abs(ia).sum(axis=0)
        heat = heat / (heat.max() or 1.0)
        truth = "melanoma" if data.target[i] else "benign"
        name = data.table["image_name"].iloc[i]
        axes[row, 0].imshow(picture)
        axes[row, 0].set_title(f"{name} ({truth}), p = {prob[row]:.2f}", fontsize=8)
        axes[row, 1].imshow(picture)
        axes[row, 1].imshow(heat, cmap="inferno", alpha=0.6)
        axes[row, 1].set_title("|image attribution| (integrated gradients)", fontsize=8)
        for ax in axes[row, :2]:
            ax.axis("off")
        values = [float(ma[idx].sum()) for idx in groups.values()]
        axes[row, 2].barh(list(groups), values, color=["#e76f51" if v > 0 else "#2a9d8f" for v in values])
        axes[row, 2].axvline(0, color="0.5", lw=0.8)
        axes[row, 2].set_title("metadata attribution (logit; + toward melanoma)", fontsize=8)
        axes[row, 2].invert_yaxis()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def mean_bars(names: list[str], mean_abs: np.ndarray, count: int) -> bytes:
    """Mean |attribution| per metadata feature over `count` test cases."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.2), dpi=100)
    ax.barh(names, mean_abs, color="#264653")
    ax.invert_yaxis()
    ax.set_xlabel(f"mean |integrated-gradients attribution| over {count} test cases (logit units)")
    ax.set_title("Which metadata features the model uses")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def explain(checkpoint: Path, out: Path, cases: int = 8, mean_cases: int = 64, say=print) -> dict[str, Any]:
    """Write figure4.png, figure4_metadata.png and attributions.json for `checkpoint` into `out`."""
    import torch

    from core.checkpoint import load_checkpoint
    from core.evaluation import load_test_split
    from core.io import write_json, write_with
    from core.metrics import calibrated_probability, json_safe

    model, spec = load_checkpoint(checkpoint)
    data = load_test_split(checkpoint, spec)
    encoder = spec.encoder()
    baseline = encoder.encode({})  # every field missing
    chosen = pick(data.target, cases)
    pool = chosen + [i for i in range(len(data)) if i not in chosen][: max(mean_cases - len(chosen), 0)]
    say(f"integrated gradients ({STEPS} steps) for {len(pool)} test cases of {spec.name} ...")
    image_attr, meta_attr, delta = attribute(model, data.image[pool], data.meta[pool], baseline)
    with torch.no_grad():
        logits = model(torch.from_numpy(data.image[chosen]), torch.from_numpy(data.meta[chosen])).numpy().reshape(-1)
    prob = calibrated_probability(logits, spec.outputs.temperature)
    groups = metadata_groups(encoder.entries)
    out.mkdir(parents=True, exist_ok=True)
    png = figure(data, chosen, image_attr[: len(chosen)], meta_attr[: len(chosen)], groups, prob)
    write_with(out / "figure4.png", lambda tmp: tmp.write_bytes(png))
    mean_abs = np.abs(meta_attr).mean(axis=0)
    bars = mean_bars(encoder.entries, mean_abs, len(pool))
    write_with(out / "figure4_metadata.png", lambda tmp: tmp.write_bytes(bars))
    result = json_safe(
        {
            "checkpoint": str(checkpoint),
            "model": spec.name,
            "method": f"captum IntegratedGradients on the logit, {STEPS} steps, baselines: black image and the "
            "all-missing patient",
            "cases": [
                {
                    "image_name": data.table["image_name"].iloc[i],
                    "label": int(data.target[i]),
                    "probability": float(p),
                    "metadata": {g: float(meta_attr[k][idx].sum()) for g, idx in groups.items()},
                    "image_total": float(image_attr[k].sum()),
                    "convergence_delta": float(delta[k]),
                }
                for k, (i, p) in enumerate(zip(chosen, prob, strict=True))
            ],
            "mean_abs_metadata": dict(zip(encoder.entries, map(float, mean_abs), strict=True)),
            "mean_over_cases": len(pool),
            "max_abs_convergence_delta": float(np.abs(delta).max()),
        }
    )
    write_json(out / "attributions.json", result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m train.explain`."""
    p = argparse.ArgumentParser(
        prog="python -m train.explain",
        description="Integrated-gradients attributions (Figure 4) of one trained fusion model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by python -m train")
    p.add_argument("--cases", type=int, default=8, help="test cases shown (melanomas and benign lesions)")
    p.add_argument("--mean-cases", type=int, default=64, help="test cases the mean |attribution| is taken over")
    p.add_argument("--out", default=None, help="output folder (default: explain/ beside the checkpoint)")
    args = p.parse_args(argv)
    if not 1 <= args.cases <= 32 or args.mean_cases < 1:
        raise UserError("--cases must be between 1 and 32 and --mean-cases at least 1")
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else checkpoint.parent / "explain"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder: give a folder path")
    result = explain(checkpoint, out, args.cases, args.mean_cases, say=lambda m: print(m, file=sys.stderr))
    print(f"wrote {out / 'figure4.png'} ({len(result['cases'])} cases) and {out / 'attributions.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
