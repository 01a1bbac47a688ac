"""Which blocks of a model int8 hurts most, and what int8 with some of them in float does: the PyTorch
simulation that export.quantize's search ranks and probes with.

    ranked = rank_blocks(model, calibration, images, exclude=("head", "meta_mlp"))
    # [("backbone.net._blocks.0", 0.39), ("backbone.net._blocks.1", 0.26), ...]: error with that block int8

A layer-wise sensitivity analysis: each candidate block alone is quantized as PT2E's XNNPACKQuantizer
quantizes it (per-channel int8 weights, int8 activations at its inputs, inside it and at its output), the
rest of the model stays float, and the score is the rms difference of its logits from the fp32 model's on
training images (never the test split). Blocks with the largest error come first. The simulation is the
graph ExecuTorch lowers; TFLite and ONNX round about the same tensors to the same grids (ONNX's weights to 7 bits
on x86 without VNNI, export.onnx_format), so the ranking carries over while the number of float modules a format
needs may differ.

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
a pass per block (ShuffleNet V2 at 224 px: 148 s -> 40 s). The search's probes cut the same graph the other
way (`with_float`: everything int8 but the blocks it keeps float), so a probe is one pass over the judge cases.
"""

from __future__ import annotations

import copy
import itertools
import operator
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from export.common import WRAPPED
from export.scopes import within

_aten = torch.ops.aten
FUSED_ACTIVATIONS = (_aten.hardtanh.default, _aten.hardtanh_.default, _aten.relu6.default, _aten.relu.default)
FUSED_ACTIVATIONS += (_aten.relu_.default,)
LAYERS = (_aten.conv2d.default, _aten.conv2d.padding, _aten.linear.default)
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


def _cut(
    converted: torch.fx.GraphModule, blocks: tuple[str, ...], drop: Callable[[bool, bool, list[bool]], bool]
) -> torch.fx.GraphModule:
    """A copy of `converted` (PT2E-converted with fold_quantize=False) without the quantize / dequantize pairs
    for which `drop(source inside blocks, source is a weight or input, [each user inside blocks])` holds."""
    from export.pt2e import module_paths

    graph_module = copy.deepcopy(converted)
    graph = graph_module.graph
    scopes = [f"{WRAPPED}.{b}" for b in blocks]

    def inside(node: object) -> bool:
        if not isinstance(node, torch.fx.Node):
            return False
        if any(within(p, scopes) for p in module_paths(node)):
            return True
        # An activation fused into the conv or linear it follows belongs to that layer's module, as it does for
        # the quantizer (export.pt2e annotates the pair as one op): EfficientNet-Lite0's stem and head conv
        # share one ReLU6 module outside both, whose output otherwise stayed int8 with the stem float.
        source = node.args[0] if node.op == "call_function" and node.target in FUSED_ACTIVATIONS else None
        layer = isinstance(source, torch.fx.Node) and source.target in LAYERS and len(source.users) == 1
        return layer and inside(source)

    for dq in [n for n in graph.nodes if _is_op(n, "dequantize")]:
        q = dq.args[0]
        if not (isinstance(q, torch.fx.Node) and _is_op(q, "quantize")):
            continue
        source = q.args[0]
        constant = isinstance(source, torch.fx.Node) and not module_paths(source)
        if drop(inside(source), constant, [inside(user) for user in dq.users]):
            dq.replace_all_uses_with(source)
            graph.erase_node(dq)
    for q in [n for n in graph.nodes if _is_op(n, "quantize") and not n.users]:
        graph.erase_node(q)
    graph.lint()
    graph_module.recompile()
    return graph_module


def only_block(converted: torch.fx.GraphModule, block: str) -> torch.fx.GraphModule:
    """A copy of `converted` (PT2E-converted with fold_quantize=False) in which only the quantize /
    dequantize pairs that feed an op of `block` or leave one stay: that block alone in int8."""
    return _cut(converted, (block,), lambda source, _, users: not source and not any(users))


def with_float(converted: torch.fx.GraphModule, blocks: tuple[str, ...]) -> torch.fx.GraphModule:
    """A copy of `converted` (PT2E-converted with fold_quantize=False) with the modules at `blocks` in float:
    the quantize / dequantize pairs between two of their ops, and those of the weights and inputs only they
    use, are removed. A pair on a border stays: one that a quantized op puts on its own output where a float
    block reads it (its output annotation), and one a quantized op puts on its input where it reads a float
    block's output (its input annotation), as PT2E does when those blocks are left out of the quantizer."""
    return _cut(converted, blocks, lambda source, constant, users: (source or constant) and bool(users) and all(users))


def _fake_quantize_channels(weight, scales, zero_points, axis, quant_min, quant_max):
    """Per-channel int8 rounding of a weight in one pass (what quantize + dequantize_per_channel do in two)."""
    return torch.fake_quantize_per_channel_affine(
        weight, scales.float(), zero_points.to(torch.int32), axis, quant_min, quant_max
    )


def _fake_quantize_tensor(x: torch.Tensor, inverse: float, scale: float, low: int, high: int) -> torch.Tensor:
    """Per-tensor int8 rounding of an activation: quantize_per_tensor + dequantize (round(x / scale) + zero,
    clamped to the integer range, minus zero, times scale) with the zero point folded into the clamp bounds
    (`low` = quant_min - zero, `high` = quant_max - zero), in one new tensor and passes in place. The same
    values as torch.fake_quantize_per_tensor_affine, which ran 4x slower (12 vs 3 ms on a 4x96x112x112
    tensor, AMD EPYC with AVX-512, 2 threads): its kernel also writes the mask its backward pass needs."""
    return x.mul(inverse).round_().clamp_(low, high).mul_(scale)


def fused(converted: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """`converted` (or a cut of it) with every quantize / dequantize pair as one rounding op: the same values
    with one new tensor per activation instead of one per step (the decomposed pair's), so a pass over the
    judge cases takes a fraction of the time. A weight's pair is evaluated once, here: the graph then reads
    the rounded weight as a constant. Changes `converted` in place."""
    graph = converted.graph
    rounded_weights = itertools.count()

    def constant(node: object) -> torch.Tensor | None:
        if not (isinstance(node, torch.fx.Node) and node.op == "get_attr"):
            return None
        value = operator.attrgetter(str(node.target))(converted)
        return value if isinstance(value, torch.Tensor) else None

    per_tensor = (torch.ops.quantized_decomposed.dequantize_per_tensor.default,)
    per_channel = (torch.ops.quantized_decomposed.dequantize_per_channel.default,)
    for dq in list(graph.nodes):
        if dq.op != "call_function" or dq.target not in (*per_tensor, *per_channel):
            continue
        q = dq.args[0]
        if not (isinstance(q, torch.fx.Node) and _is_op(q, "quantize")):
            continue
        with graph.inserting_before(dq):
            if dq.target in per_tensor:
                source, scale, zero, low, high = q.args[:5]
                if not all(isinstance(v, float | int) for v in (scale, zero, low, high)):
                    continue
                bounds = (int(low) - int(zero), int(high) - int(zero))
                node = graph.call_function(_fake_quantize_tensor, (source, 1.0 / float(scale), float(scale), *bounds))
            else:
                source, scales, zeros, axis, low, high = q.args[:6]
                weight, scale_values, zero_values = (constant(n) for n in (source, scales, zeros))
                if weight is None or scale_values is None or zero_values is None:
                    node = graph.call_function(_fake_quantize_channels, (source, scales, zeros, axis, low, high))
                else:
                    with torch.no_grad():
                        rounded = _fake_quantize_channels(weight, scale_values, zero_values, axis, low, high)
                    name = f"_rounded_weight_{next(rounded_weights)}"
                    converted.register_buffer(name, rounded)
                    node = graph.get_attr(name)
        dq.replace_all_uses_with(node)
        graph.erase_node(dq)
    for q in [n for n in graph.nodes if _is_op(n, "quantize") and not n.users]:
        graph.erase_node(q)
    graph.lint()
    converted.recompile()
    return converted


def simulation(model: nn.Module, calibration, exclude: tuple[str, ...] = ()) -> torch.fx.GraphModule:
    """The model (in export.common.ExportModel, temperature 1) exported with a dynamic batch, PT2E-quantized
    everywhere but `exclude` with the quantize / dequantize pairs unfolded, calibrated on `calibration`: what
    `only_block` and `with_float` cut from. Its outputs are (logit, sigmoid(logit)). A single calibration
    image is repeated to trace the batch dimension as dynamic."""
    from export.common import ExportModel
    from export.executorch_format import splits_as_slices
    from export.precision import QuantOptions
    from export.pt2e import pt2e_int8

    wrapper = ExportModel(model).eval()
    pick = np.resize(np.arange(len(calibration)), 2)  # two cases, even from a calibration set of one
    image, meta = torch.from_numpy(calibration.image[pick]), torch.from_numpy(calibration.meta[pick])
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.export.export(wrapper, (image, meta), dynamic_shapes=({0: batch}, {0: batch}), strict=False)
        graph = splits_as_slices(program).module()  # the graph ExecuTorch lowers (ShuffleNet's splits as slices)
        return pt2e_int8(graph, QuantOptions(calibration, keep_float=exclude), batch=8, fold=False)


# Cases per forward pass of a simulation: on this 2-core CPU, EfficientNet-Lite0 at 224 px ran 37 ms per image
# in batches of 4 and 102 ms in batches of 64 (the activations of a large batch overflow the caches).
BATCH = 4


def logits(
    graph: Callable,
    image: np.ndarray,
    meta: np.ndarray,
    batch: int = BATCH,
    stop: Callable[[np.ndarray], bool] | None = None,
) -> np.ndarray:
    """The logits [N] of an exported (or simulated) graph, `batch` cases at a time. `stop(logits so far)`,
    when given, is asked after each batch: True ends the pass early (the shorter array is returned)."""
    out: list[torch.Tensor] = []
    with torch.no_grad():
        for i in range(0, len(image), batch):
            part = graph(torch.from_numpy(image[i : i + batch]), torch.from_numpy(meta[i : i + batch]))[0]
            out.append(part.reshape(-1))
            if stop is not None and i + batch < len(image) and stop(torch.cat(out).numpy()):
                break
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def rank_blocks(
    model: nn.Module,
    calibration,
    images,
    exclude: tuple[str, ...] = (),
    progress: Callable[[str], None] | None = None,
    converted: torch.fx.GraphModule | None = None,
    blocks: list[str] | None = None,
) -> list[tuple[str, float]]:
    """Candidate blocks sorted by the simulated logit error with only that block in int8, largest first.

    Args:
        model: the fp32 model.
        calibration: EvalSet that calibrates the activation ranges.
        images: EvalSet the error is measured on (training images, never the judge cases).
        exclude: module paths that are not candidates (those kept float anyway).
        progress: called with a line after each block.
        converted: `simulation(model, calibration, exclude)` when the caller made it already.
        blocks: the candidates (default: `candidate_blocks(model, exclude)`).
    """
    from export.common import ExportModel

    blocks = candidate_blocks(model, exclude) if blocks is None else blocks
    start = time.time()
    with torch.no_grad():
        reference = logits(ExportModel(model).eval(), images.image, images.meta)
    converted = simulation(model, calibration, exclude) if converted is None else converted
    scores = []
    for i, block in enumerate(blocks):
        error = logits(fused(only_block(converted, block)), images.image, images.meta) - reference
        scores.append((block, float(np.sqrt(np.mean(error**2)))))
        if progress:
            progress(f"int8 sensitivity: {i + 1}/{len(blocks)} blocks ({time.time() - start:.0f} s)")
    return sorted(scores, key=lambda s: (-s[1], s[0]))
