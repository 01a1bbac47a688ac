"""Which blocks of a model int8 hurts most: a ranking for the sensitivity-guided remedy rungs.

    ranked = rank_blocks(model, calibration, images, exclude=("head", "meta_mlp"))
    # [("backbone.net._blocks.0", 0.39), ("backbone.net._blocks.1", 0.26), ...]: error with that block int8

A layer-wise sensitivity analysis: each candidate block alone is quantized as PT2E's XNNPACKQuantizer
quantizes it (per-channel int8 weights, int8 activations at its inputs, inside it and at its output), the
rest of the model stays float, and the score is the rms difference of its logits from the fp32 model's on
training images (never the test split). Blocks with the largest error come first. The simulation is the
ExecuTorch path; ONNX and TFLite round the same tensors to the same grids, so the ranking carries over.

Quantizing one block at a time attributes the error to the block that causes it. The opposite
experiment (everything int8 but one block) cannot see a block whose error sits at its input, which stays
quantized: on EfficientNet-Lite0 it ranked `_blocks.1` 9th of 17, while quantized alone it is the second
largest source of error (0.26 rms logit, after `_blocks.0` with 0.39).

The model is prepared and calibrated once, with every candidate quantized, and converted with its
quantize / dequantize pairs left unfolded; each block's model is then a copy of that graph with the
pairs that neither feed nor leave the block removed. An observer sees float activations whichever blocks
are quantized, so each block gets the ranges it would get quantized alone (except at the few edges where
XNNPACK shares one range across a block's boundary: a concatenation's inputs, the reshapes after it). This
costs one calibration, then one pass over the images per block, instead of a preparation, a calibration and
a pass per block (ShuffleNet V2 at 224 px: 148 s -> 40 s).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from export.common import WRAPPED
from export.scopes import within

MAX_LAYERS_PER_BLOCK = 5  # a candidate block holds at most this many conv / linear layers (MBConv + SE: 5)


def _layers(module: nn.Module, path: str = "", exclude: tuple[str, ...] = ()) -> int:
    """Conv / linear layers in `module` (at `path`), not counting those inside `exclude`."""
    return sum(
        isinstance(m, nn.Conv2d | nn.Linear) and not within(f"{path}.{name}".strip("."), exclude)
        for name, m in module.named_modules()
    )


def candidate_blocks(model: nn.Module, exclude: tuple[str, ...] = ()) -> list[str]:
    """The largest modules of the backbone holding 1-5 conv / linear layers (EfficientNet's MBConv blocks,
    ResNet bottlenecks, a lone stem or head conv), minus those whose every layer lies inside `exclude` (a
    stem block around an excluded first conv would only repeat it)."""
    found: list[str] = []

    def visit(path: str, module: nn.Module) -> None:
        count = _layers(module)
        if count == 0:
            return
        bearing = [child for child in module.children() if _layers(child)]
        # A Sequential of several layer-bearing parts is a container, not a block (a plain CNN's layers).
        container = isinstance(module, nn.Sequential) and len(bearing) > 1
        if count <= MAX_LAYERS_PER_BLOCK and path and not container:
            if _layers(module, path, exclude):
                found.append(path)
            return
        for name, child in module.named_children():
            visit(f"{path}.{name}" if path else name, child)

    # A model `python -m train` made has its blocks in `backbone`; one trained elsewhere is searched whole.
    backbone = getattr(model, "backbone", None)
    visit(*(("backbone", backbone) if isinstance(backbone, nn.Module) else ("", model)))
    return found


def _is_op(node: torch.fx.Node, prefix: str) -> bool:
    return node.op == "call_function" and str(node.target).startswith(f"quantized_decomposed.{prefix}")


def only_block(converted: torch.fx.GraphModule, block: str) -> torch.fx.GraphModule:
    """A copy of `converted` (PT2E-converted with fold_quantize=False) in which only the quantize /
    dequantize pairs that feed an op of `block` or leave one stay: that block alone in int8."""
    from export.pt2e import module_paths

    graph_module = copy.deepcopy(converted)
    graph = graph_module.graph

    def inside(node: object) -> bool:
        return isinstance(node, torch.fx.Node) and any(within(p, [f"{WRAPPED}.{block}"]) for p in module_paths(node))

    for dq in [n for n in graph.nodes if _is_op(n, "dequantize")]:
        q = dq.args[0]
        if not (isinstance(q, torch.fx.Node) and _is_op(q, "quantize")):
            continue
        source = q.args[0]
        if not inside(source) and not any(inside(user) for user in dq.users):
            dq.replace_all_uses_with(source)
            graph.erase_node(dq)
    for q in [n for n in graph.nodes if _is_op(n, "quantize") and not n.users]:
        graph.erase_node(q)
    graph.lint()
    graph_module.recompile()
    return graph_module


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
    from export.precision import QuantOptions
    from export.pt2e import pt2e_int8

    wrapper = ExportModel(model).eval()
    image, meta = torch.from_numpy(images.image), torch.from_numpy(images.meta)
    blocks = candidate_blocks(model, exclude)
    batch = torch.export.Dim("batch", min=1, max=4096)
    start = time.time()
    with torch.no_grad():
        reference = wrapper(image, meta)[0].reshape(-1)
        graph = torch.export.export(
            wrapper, (image[:2], meta[:2]), dynamic_shapes=({0: batch}, {0: batch}), strict=False
        ).module()
        converted = pt2e_int8(graph, QuantOptions(calibration, keep_float=exclude), batch=32, fold=False)
    scores = []
    for i, block in enumerate(blocks):
        quantized = only_block(converted, block)
        with torch.no_grad():
            logits = torch.cat([quantized(image[j : j + 64], meta[j : j + 64])[0] for j in range(0, len(image), 64)])
        scores.append((block, float((logits.reshape(-1) - reference).pow(2).mean().sqrt())))
        if progress:
            progress(f"int8 sensitivity: {i + 1}/{len(blocks)} blocks ({time.time() - start:.0f} s)")
    return sorted(scores, key=lambda s: (-s[1], s[0]))
