"""ExecuTorch: a `.pte` program lowered to the XNNPACK delegate. The spec is embedded as the constant
method `melanoma_spec` (a string the runtime returns) and also written beside it as the sidecar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from core.spec import ModelSpec
from export.common import SPEC_KEY, ExportModel, Runner, atomic_output, parse_embedded, with_precision
from export.quantize import QuantOptions, within


def _module_paths(node: torch.fx.Node) -> list[str]:
    """The module paths an exported node was called inside, outermost first (none for weights)."""
    stack = node.meta.get("nn_module_stack") or {}
    return [v[0] for v in stack.values() if isinstance(v, tuple) and v]


def _outside(paths: list[str]):
    """PT2E filter: quantize a node only when it lies inside the fusion model (`model`) and outside every
    module path in `paths`.

    The ops after the fusion model (logit / temperature, sigmoid) always stay float: an int8 probability
    has a resolution of 1/256, coarser than the gap between many cases and the decision threshold.
    """

    def keep(node) -> bool:
        names = _module_paths(node)
        # Weights and constants carry no module stack: they follow the op that uses them.
        inside = not names or any(n == "model" or n.startswith("model.") for n in names)
        return inside and not any(within(n, paths) for n in names)

    return keep


def _only(path: str):
    """PT2E filter: quantize only the nodes inside the fusion model's module at `path` (and weights)."""

    def keep(node) -> bool:
        names = _module_paths(node)
        return not names or any(within(n, [f"model.{path}"]) for n in names)

    return keep


def _quantizer():
    """XNNPACKQuantizer that also treats conv + ReLU6 as one fused op, as it does conv + ReLU.

    Without this, the ReLU6 (hardtanh) shares the conv output's observer: its int8 range spans the
    unclamped conv output (on EfficientNet-Lite0 up to 170 wide, a step of 0.66 for values in [0, 6]).
    Annotated like conv + ReLU, the conv output stays unquantized and the ReLU6 output gets its own
    range; XNNPACK then fuses the clamp into the quantized conv (its FuseActivationPass handles hardtanh).
    Measured on the Lite0 checkpoint, everything int8 (the ladder's first rung, ExecuTorch runtime): 31
    flipped decisions -> 16. PyTorch's X86InductorQuantizer annotates conv + hardtanh the same way.
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
            for clamp in model.graph.nodes:
                # nn.ReLU6 is hardtanh(0, 6) in an exported graph; any hardtanh is a clamp XNNPACK can fuse.
                if clamp.op != "call_function" or clamp.target not in clamps:
                    continue
                conv = clamp.args[0]
                if not isinstance(conv, torch.fx.Node) or conv.target not in convs or len(conv.users) > 1:
                    continue
                bias = conv.args[2] if len(conv.args) > 2 and isinstance(conv.args[2], torch.fx.Node) else None
                partition = [clamp, conv, conv.args[1], *([bias] if bias is not None else [])]
                if any(annotated(n) for n in partition) or (self.filter_fn and not all(map(self.filter_fn, partition))):
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
    graph: torch.fx.GraphModule, options: QuantOptions, batch: int = 1, only: str | None = None
) -> torch.fx.GraphModule:
    """PT2E static int8 of an exported graph: XNNPACKQuantizer, calibrated `batch` images at a time (1 for
    the batch-1 graph ExecuTorch lowers; more where the graph has a dynamic batch). `only` quantizes that
    one module and nothing else (the sensitivity analysis); otherwise all but `options.keep_float`."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    cal = options.calibration
    if cal is None:
        raise ValueError("int8 quantization needs calibration images")
    quantizer = _quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    quantizer.set_filter_function(_only(only) if only else _outside([f"model.{p}" for p in options.keep_float]))
    prepared = prepare_pt2e(graph, quantizer)
    for i in range(0, len(cal), batch):
        prepared(torch.from_numpy(cal.image[i : i + batch]), torch.from_numpy(cal.meta[i : i + batch]))
    return convert_pt2e(prepared)


def export(
    model: torch.nn.Module,
    spec: ModelSpec,
    example: tuple,
    out_path: Path,
    precision: str = "fp32",
    options: QuantOptions | None = None,
) -> Path:
    """torch.export (batch 1) -> [PT2E int8] -> edge -> XNNPACK partition -> ExecuTorch program."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    options = options or QuantOptions()
    wrapper = ExportModel(model, spec.outputs.temperature).eval()
    args = tuple(t[:1] for t in example)
    with torch.no_grad():
        program = torch.export.export(wrapper, args, strict=False)
        if precision == "int8":
            program = torch.export.export(pt2e_int8(program.module(), options), args, strict=False)
            cal = options.calibration
            method = (
                "PT2E XNNPACKQuantizer (conv + ReLU6 fused): per-channel symmetric int8 weights, int8 "
                f"activations, calibrated on {len(cal)} training images ({int(cal.target.sum())} melanomas); "
                "float32 I/O"
            )
            spec = with_precision(spec, "int8", method, options)
        elif precision != "fp32":
            raise ValueError(f"ExecuTorch has no {precision} path here")
    lowered = to_edge_transform_and_lower(
        program, partitioner=[XnnpackPartitioner()], constant_methods={SPEC_KEY: spec.to_json()}
    )
    et_program = lowered.to_executorch()
    with atomic_output(out_path) as tmp:
        tmp.write_bytes(et_program.buffer)
    return out_path


def _program(path: Path):
    from executorch.runtime import Runtime

    try:
        return Runtime.get().load_program(str(path))
    except Exception as exc:  # noqa: BLE001 - the runtime raises RuntimeError/ValueError on damage
        raise UserError(f"the ExecuTorch runtime cannot load {path} ({exc.__class__.__name__}): re-export it") from None


def read_spec(path: Path) -> ModelSpec:
    """The spec returned by the program's `melanoma_spec` constant method."""
    program = _program(path)
    if SPEC_KEY not in program.method_names:
        return parse_embedded(None, path)
    value = program.load_method(SPEC_KEY).execute([])
    return parse_embedded(value[0] if isinstance(value, list | tuple) else value, path)


class ExecuTorchRunner(Runner):
    """The ExecuTorch runtime's `forward` method (XNNPACK delegate)."""

    format = "executorch"
    static_batch = 1

    def __init__(self, path: Path, spec: ModelSpec, threads: int | None = None):
        super().__init__(path, spec)
        self.method = _program(path).load_method("forward")

    def _run(self, image: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logit, prob = self.method.execute([torch.from_numpy(image), torch.from_numpy(meta)])
        return logit.numpy(), prob.numpy()
