"""Which blocks of a model int8 hurts most: a ranking for the sensitivity-guided remedy rungs.

    ranked = rank_blocks(model, calibration, images, exclude=("head", "meta_mlp"))
    # [("backbone.net._blocks.0", 0.39), ("backbone.net._blocks.1", 0.26), ...]: error with that block int8

A layer-wise sensitivity analysis: each candidate block alone is quantized with PT2E's XNNPACKQuantizer
(per-channel int8 weights, int8 activations at its inputs, inside it and at its output, calibrated on the
calibration images), the rest of the model stays float, and the score is the rms difference of its logits
from the fp32 model's on training images (never the test split). Blocks with the largest error come
first. The simulation is the ExecuTorch path; ONNX and TFLite round the same tensors to the same grids,
so the ranking carries over.

Quantizing one block at a time attributes the error to the block that causes it. The opposite
experiment (everything int8 but one block) cannot see a block whose error sits at its input, which stays
quantized: on EfficientNet-Lite0 it ranked `_blocks.1` 9th of 17, while quantized alone it is the second
largest source of error (0.26 rms logit, after `_blocks.0` with 0.39).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

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
    graph: torch.fx.GraphModule,
    block: str,
    calibration,
    image: torch.Tensor,
    meta: torch.Tensor,
    reference: torch.Tensor,
) -> float:
    from export.pt2e import pt2e_int8
    from export.quantize import QuantOptions

    with torch.no_grad():  # PT2E prepares in place: each block gets its own copy of the exported graph
        quantized = pt2e_int8(copy.deepcopy(graph), QuantOptions(calibration), batch=16, only=block)
        logits = torch.cat([quantized(image[i : i + 64], meta[i : i + 64])[0] for i in range(0, len(image), 64)])
    return float((logits.reshape(-1) - reference).pow(2).mean().sqrt())


def rank_blocks(
    model: nn.Module,
    calibration,
    images,
    exclude: tuple[str, ...] = (),
    progress: Callable[[str], None] | None = None,
) -> list[tuple[str, float]]:
    """Candidate blocks sorted by the simulated logit error with only that block in int8, largest first.

    Args:
        model: the fp32 FusionModel.
        calibration: EvalSet that calibrates the activation ranges.
        images: EvalSet the error is measured on (training images, never the test split).
        exclude: module paths that are not candidates (those the rungs keep float anyway).
        progress: called with a line after each block.
    """
    from export.common import ExportModel

    wrapper = ExportModel(model).eval()
    image, meta = torch.from_numpy(images.image), torch.from_numpy(images.meta)
    with torch.no_grad():
        reference = wrapper(image, meta)[0].reshape(-1)
    blocks = candidate_blocks(model, exclude)
    batch = torch.export.Dim("batch", min=1, max=4096)
    graph = torch.export.export(
        wrapper, (image[:2], meta[:2]), dynamic_shapes=({0: batch}, {0: batch}), strict=False
    ).module()
    start = time.time()
    scores = []
    for i, block in enumerate(blocks):
        scores.append((block, _simulated_error(graph, block, calibration, image, meta, reference)))
        if progress:
            progress(f"int8 sensitivity: {i + 1}/{len(blocks)} blocks ({time.time() - start:.0f} s)")
    return sorted(scores, key=lambda s: (-s[1], s[0]))
