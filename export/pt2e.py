"""PT2E static int8 in one format-neutral place: the XNNPACKQuantizer (with conv + ReLU6 fused), its module
filters and the calibration loop. ExecuTorch lowers the result; the sensitivity ranking simulates int8 with
it in PyTorch.

    graph = torch.export.export(ExportModel(model), (image, meta)).module()
    quantized = pt2e_int8(graph, QuantOptions(calibration, keep_float=("head",)))
"""

from __future__ import annotations

import torch

from export.common import WRAPPED
from export.precision import QuantOptions
from export.scopes import within


def module_paths(node: torch.fx.Node) -> list[str]:
    """The module paths an exported node was called inside, outermost first (none for weights)."""
    stack = node.meta.get("nn_module_stack") or {}
    return [v[0] for v in stack.values() if isinstance(v, tuple) and v]


def _outside(paths: list[str]):
    """PT2E filter: quantize a node only when it lies inside the exported model (WRAPPED) and outside every
    module path in `paths`.

    The ops after the fusion model stay float (export.common's rule for every quantized artifact).
    """

    def keep(node) -> bool:
        names = module_paths(node)
        # Weights and constants carry no module stack: they follow the op that uses them.
        inside = not names or any(within(n, [WRAPPED]) for n in names)
        return inside and not any(within(n, paths) for n in names)

    return keep


def _only(path: str):
    """PT2E filter: quantize only the nodes inside the fusion model's module at `path` (and weights)."""

    def keep(node) -> bool:
        names = module_paths(node)
        return not names or any(within(n, [f"{WRAPPED}.{path}"]) for n in names)

    return keep


def _quantizer():
    """XNNPACKQuantizer that also treats conv + ReLU6 as one fused op, as it does conv + ReLU.

    Without this, the ReLU6 (hardtanh) shares the conv output's observer: its int8 range spans the
    unclamped conv output (on EfficientNet-Lite0 up to 170 wide, a step of 0.66 for values in [0, 6]).
    Annotated like conv + ReLU, the conv output stays unquantized and the ReLU6 output gets its own
    range; XNNPACK then fuses the clamp into the quantized conv (its FuseActivationPass handles hardtanh).
    Measured on the Lite0 checkpoint, everything int8 (no module float, ExecuTorch runtime): 31
    flipped decisions -> 16. PyTorch's X86InductorQuantizer annotates conv + hardtanh the same way.

    It also makes XNNPACK's cat annotator and its range propagation obey the filter, which they ignore: a
    ShuffleNet block kept float otherwise still had its channel concatenation, and the reshapes and slices
    after it, in int8.
    """
    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer_utils as utils
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    clamps = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default, torch.ops.aten.relu6.default)
    convs = (torch.ops.aten.conv2d.default, torch.ops.aten.conv2d.padding)

    def annotated(node: torch.fx.Node) -> bool:
        annotation = node.meta.get(utils.Q_ANNOTATION_KEY)
        return bool(annotation and annotation._annotated)

    class ConvReLU6Quantizer(XNNPACKQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            config = self.global_config
            for node in model.graph.nodes:
                # XNNPACK's cat annotator, and its pass that gives reshapes, slices, pooling and means their
                # input's range, ignore the filter: every op the filter leaves out is marked done first, so
                # that nothing in a module kept float (ShuffleNet's concatenations and slices) is quantized.
                if node.op == "call_function" and self.filter_fn and not self.filter_fn(node):
                    node.meta[utils.Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
            for clamp in model.graph.nodes:
                # nn.ReLU6 is hardtanh(0, 6) in an exported graph; any hardtanh is a clamp XNNPACK can fuse.
                if clamp.op != "call_function" or clamp.target not in clamps:
                    continue
                conv = clamp.args[0]
                if not isinstance(conv, torch.fx.Node) or conv.target not in convs or len(conv.users) > 1:
                    continue
                bias = conv.args[2] if len(conv.args) > 2 and isinstance(conv.args[2], torch.fx.Node) else None
                partition = [clamp, conv, conv.args[1], *([bias] if bias is not None else [])]
                if any(annotated(n) for n in partition):  # ops the filter leaves out were marked above
                    continue
                inputs = {conv.args[0]: utils.get_input_act_qspec(config), conv.args[1]: utils.get_weight_qspec(config)}
                if bias is not None:
                    inputs[bias] = utils.get_bias_qspec(config)
                conv.meta[utils.Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
                clamp.meta[utils.Q_ANNOTATION_KEY] = QuantizationAnnotation(
                    output_qspec=utils.get_output_act_qspec(config), _annotated=True
                )
                for node in partition[2:]:
                    node.meta.setdefault(utils.Q_ANNOTATION_KEY, QuantizationAnnotation())._annotated = True
            return super().annotate(model)

    return ConvReLU6Quantizer()


def pt2e_int8(
    graph: torch.fx.GraphModule, options: QuantOptions, batch: int = 1, only: str | None = None, fold: bool = True
) -> torch.fx.GraphModule:
    """PT2E static int8 of an exported graph: XNNPACKQuantizer, calibrated `batch` images at a time (1 for
    the batch-1 graph ExecuTorch lowers; more where the graph has a dynamic batch). `only` quantizes that
    one module and nothing else; otherwise all but `options.keep_float`. `fold=False` keeps each weight
    float with its quantize / dequantize pair beside it (export.sensitivity removes pairs)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    cal = options.calibration
    if cal is None:
        raise ValueError("int8 quantization needs calibration images")
    quantizer = _quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    quantizer.set_filter_function(_only(only) if only else _outside([f"{WRAPPED}.{p}" for p in options.keep_float]))
    prepared = prepare_pt2e(graph, quantizer)
    for i in range(0, len(cal), batch):
        prepared(torch.from_numpy(cal.image[i : i + batch]), torch.from_numpy(cal.meta[i : i + batch]))
    return convert_pt2e(prepared, fold_quantize=fold)
