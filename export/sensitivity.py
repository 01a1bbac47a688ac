"""Which blocks of a model int8 hurts most: a ranking for the sensitivity-guided remedy rungs.

    ranked = rank_blocks(model, calibration, images, base_keep=("head", "meta_mlp"))
    # [("backbone.net._blocks.0", 0.72), ("backbone.net._blocks.8", 1.28), ...]: error with that block float

Each candidate block is kept in float on top of `base_keep`, the rest is quantized with PT2E's
XNNPACKQuantizer (per-channel int8 weights, int8 activations, calibrated on the calibration images) and
run in PyTorch; the score is the rms difference of its logits from the fp32 model's on training images
(never the test split). The simulation is the ExecuTorch path; ONNX and TFLite round the same
tensors to the same grids, so the ranking carries over (measured: the two earliest EfficientNet-Lite0
blocks lead it and help in all three formats).
"""

from __future__ import annotations

import sys
import time

import torch
from torch import nn

from export.quantize import within

MAX_LAYERS_PER_BLOCK = 5  # a candidate block holds at most this many conv / linear layers (MBConv + SE: 5)


def _layers(module: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d | nn.Linear) for m in module.modules())


def candidate_blocks(model: nn.Module, exclude: tuple[str, ...] = ()) -> list[str]:
    """The largest modules of the backbone holding 1-5 conv / linear layers (EfficientNet's MBConv blocks,
    ResNet bottlenecks, a lone stem or head conv), minus those inside `exclude`."""
    found: list[str] = []

    def visit(path: str, module: nn.Module) -> None:
        count = _layers(module)
        if count == 0:
            return
        if count <= MAX_LAYERS_PER_BLOCK:
            if not within(path, exclude):
                found.append(path)
            return
        for name, child in module.named_children():
            visit(f"{path}.{name}", child)

    visit("backbone", model.backbone)
    return found


def _simulated_error(
    wrapper: nn.Module,
    keep: tuple[str, ...],
    calibration,
    image: torch.Tensor,
    meta: torch.Tensor,
    reference: torch.Tensor,
) -> float:
    from export.executorch_format import pt2e_int8
    from export.quantize import QuantOptions

    batch = torch.export.Dim("batch", min=1, max=4096)
    graph = torch.export.export(
        wrapper, (image[:2], meta[:2]), dynamic_shapes=({0: batch}, {0: batch}), strict=False
    ).module()
    with torch.no_grad():
        quantized = pt2e_int8(graph, QuantOptions(calibration, keep), batch=16)
        logits = torch.cat([quantized(image[i : i + 64], meta[i : i + 64])[0] for i in range(0, len(image), 64)])
    return float((logits.reshape(-1) - reference).pow(2).mean().sqrt())


def rank_blocks(
    model: nn.Module,
    calibration,
    images,
    base_keep: tuple[str, ...] = (),
    progress: bool = True,
) -> list[tuple[str, float]]:
    """Candidate blocks sorted by the simulated int8 logit error with that block (and `base_keep`) in float.

    Args:
        model: the fp32 FusionModel.
        calibration: EvalSet that calibrates the activation ranges.
        images: EvalSet the error is measured on (training images, never the test split).
        base_keep: module paths kept float in every trial.
    """
    from export.common import ExportModel

    wrapper = ExportModel(model).eval()
    image, meta = torch.from_numpy(images.image), torch.from_numpy(images.meta)
    with torch.no_grad():
        reference = wrapper(image, meta)[0].reshape(-1)
    blocks = candidate_blocks(model, base_keep)
    start = time.time()
    scores = []
    for i, block in enumerate(blocks):
        scores.append((block, _simulated_error(wrapper, (*base_keep, block), calibration, image, meta, reference)))
        if progress:
            print(
                f"  int8 sensitivity: {i + 1}/{len(blocks)} blocks ({time.time() - start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return sorted(scores, key=lambda s: (s[1], s[0]))
