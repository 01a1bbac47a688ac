"""Int8-aware weight fine-tuning: the last remedy a format tries after the int8 search's decision.

Rounding every weight to its per-channel int8 grid moves each layer's output by about 1 %; through a deep
network that is enough to push cases near the decision threshold across it. This step nudges the weights so
that the model *with rounded weights* reproduces the fp32 model's logits (distillation on training images),
then leaves every weight exactly on that grid:

    tuned, report = finetune_for_int8(model, images.image, images.meta, keep_float=("head",), steps=200)

1. Batch norms are folded into the convolution / linear layer before them (eval mode, exact), so the
   grid is the one the runtimes see: ONNX, TFLite and ExecuTorch all fold them the same way.
2. Each conv / linear weight outside `keep_float` is fake-quantized in the forward pass (symmetric,
   per output channel, scale = max |w| / 127, straight-through gradients: `torch.fake_quantize_per_channel_affine`).
3. Adam minimises the mean squared difference of logits to the fp32 model's (teacher) on the images and
   their mirror images; activations stay float, each format still calibrates its own activation ranges.
4. The weights are replaced by their rounded values, so each format's own per-channel int8 quantizer
   (ONNX Runtime, ai-edge-quantizer, PT2E) reproduces them exactly.

The result is a different float model: every artifact made from it is still judged against the
original fp32 model by the same parity gates, and the spec says that the weights were fine-tuned.
"""

from __future__ import annotations

import copy
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from export.scopes import within

DEFAULT_STEPS = 200
DEFAULT_LR = 1e-5
DEFAULT_BATCH = 32
QMAX = 127  # symmetric int8 weights use [-127, 127] in every format here


def _weight_path(node: Any) -> str | None:
    target = str(node.target) if node.op == "get_attr" else ""
    return target[: -len(".weight")] if target.endswith(".weight") else None


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def fold_batchnorm(model: nn.Module, example: tuple[torch.Tensor, ...]) -> tuple[nn.Module, int]:
    """A copy of `model` (eval mode) with every batch norm that directly follows a conv / linear layer
    folded into it (the batch norm becomes Identity). Returns (copy, number of folds).

    The pairs are read from the graph `torch.export` traces, so any backbone works, including ones that
    call their layers through helper methods.
    """
    folded = copy.deepcopy(model).eval()
    graph = torch.export.export(folded, example, strict=False).module().graph
    pairs = []
    for node in graph.nodes:
        if node.op != "call_function" or "batch_norm" not in str(node.target):
            continue
        src = node.args[0]
        if src.op == "call_function" and len(src.users) == 1 and any(k in str(src.target) for k in ("conv", "linear")):
            layer, norm = _weight_path(src.args[1]), _weight_path(node.args[1])
            if layer and norm:
                pairs.append((layer, norm))
    count = 0
    for layer_path, norm_path in pairs:
        layer, norm = folded.get_submodule(layer_path), folded.get_submodule(norm_path)
        if isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            fused = fuse_conv_bn_eval(layer, norm)
        elif isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
            fused = fuse_linear_bn_eval(layer, norm)
        else:
            continue
        _set_submodule(folded, layer_path, fused)
        _set_submodule(folded, norm_path, nn.Identity())
        count += 1
    return folded, count


def grid_scale(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scale of symmetric int8 weights: max |w| / 127."""
    return (weight.detach().reshape(weight.shape[0], -1).abs().amax(1) / QMAX).clamp_min(1e-12).float()


class _Int8Weight(nn.Module):
    """Parametrization: the weight as the runtime will see it (rounded to its int8 grid)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = grid_scale(weight)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -QMAX, QMAX)


def _logits(net: nn.Module, image: torch.Tensor, meta: torch.Tensor, mirror: bool = False) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(image), 64):
            batch = image[i : i + 64]
            out.append(net(batch.flip(3) if mirror else batch, meta[i : i + 64]).reshape(-1))
    return torch.cat(out)


def finetune_for_int8(
    model: nn.Module,
    images: np.ndarray,
    meta: np.ndarray,
    keep_float: tuple[str, ...] = (),
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    batch: int = DEFAULT_BATCH,
    seed: int = 0,
    progress: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune `model` (a FusionModel) so that its int8-rounded weights reproduce its fp32 logits.

    Args:
        model: the fp32 model (not modified: a copy is tuned).
        images, meta: preprocessed training images [N, 3, S, S] and metadata [N, K].
        keep_float: module paths whose weights stay float in the artifact (not rounded here either).
        steps, lr, batch, seed: the optimisation (Adam, mean squared logit difference).

    Returns the tuned model (batch norms folded, rounded weights on their grid) and a report with the
    logit error of the rounded model on `images` before and after; when tuning did not lower it, the
    weights are those of plain rounding.
    """
    torch.manual_seed(seed)
    image_t, meta_t = torch.from_numpy(images), torch.from_numpy(meta)
    teacher = model.eval()
    targets = (_logits(teacher, image_t, meta_t), _logits(teacher, image_t, meta_t, mirror=True))
    student, folds = fold_batchnorm(model, (image_t[:2], meta_t[:2]))
    layers = [
        (name, m)
        for name, m in student.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear) and not within(name, keep_float)
    ]
    for _, layer in layers:
        parametrize.register_parametrization(layer, "weight", _Int8Weight())

    def rms_error() -> float:
        return float((_logits(student, image_t, meta_t) - targets[0]).pow(2).mean().sqrt())

    before = rms_error()
    initial = copy.deepcopy(student.state_dict())
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    start = time.time()
    for step in range(steps):
        index = torch.from_numpy(rng.choice(len(image_t), min(batch, len(image_t)), replace=False))
        mirror = bool(rng.random() < 0.5)
        x = image_t[index].flip(3) if mirror else image_t[index]
        loss = (student(x, meta_t[index]).reshape(-1) - targets[int(mirror)][index]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if progress and (step + 1) % max(steps // 5, 1) == 0:
            print(
                f"  int8-aware fine-tuning: step {step + 1}/{steps}, loss {loss.item():.4f} "
                f"({time.time() - start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    after = rms_error()
    if after >= before:  # never hand on a model that matches the fp32 one worse than plain rounding
        student.load_state_dict(initial)
        after = before
    for _, layer in layers:
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    student.eval()
    report = {
        "steps": steps,
        "lr": lr,
        "batch": batch,
        "images": len(image_t),
        "batch_norms_folded": folds,
        "layers_rounded": len(layers),
        "rms_logit_error_before": round(before, 5),
        "rms_logit_error_after": round(after, 5),
        "seconds": round(time.time() - start, 1),
    }
    return student, report
