"""ONNX: opset 17, inputs `image`/`meta`, outputs `logit`/`probability`, dynamic batch, simplified with
onnxslim, the spec in `metadata_props`. Runs with ONNX Runtime.

Every node is in the default ONNX domain, int8 included: static int8 is QuantizeLinear / DequantizeLinear
(QDQ) around standard ops, with uint8 activations. There is no 16-bit-activation variant: ONNX Runtime writes
it with `com.microsoft` Q/DQ below opset 21, and OpenVINO, the second ONNX runtime here, misread it in either
domain (0.98 off; 296 of 399 decisions flipped on the opset-21 one), so it would not be a portable artifact."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from core.io import atomic_path
from core.spec import ModelSpec
from export.common import (
    AFTER_MODEL_FLOAT,
    INPUT_NAMES,
    OUTPUT_NAMES,
    SPEC_KEY,
    WRAPPED,
    ExportModel,
    Runner,
    calibrated_on,
    parse_embedded,
    with_precision,
)
from export.precision import QuantOptions
from export.scopes import in_module

OPSET = 17
# Static int8 weights are 7-bit ([-64, 64], onnxruntime's reduce_range) where ONNX Runtime's uint8 x int8
# kernels saturate (core.cpu.saturating_int8_dot: x86 without VNNI), and 8-bit elsewhere. Measured on the
# EfficientNet-Lite0: on an AVX2 EPYC without VNNI, everything int8 at 128 px, 36 flipped decisions with 8-bit
# weights and 9 with 7-bit (ONNX Runtime and OpenVINO 0.14 apart on one file, 0.02 with 7-bit); on an AVX-512
# + VNNI EPYC at 224 px with the search's 3 modules float, 5 with 8-bit and 19 with 7-bit. uint8 weights do not
# saturate either, but ran 5x slower than fp32.
WEIGHT_BITS_WHY = {
    7: "reduce_range: this CPU's uint8 x int8 dot products saturate in 16 bits (x86 without VNNI)",
    8: "no saturation on this CPU (VNNI or not x86); run on x86 without VNNI it would saturate",
}


def weight_bits() -> int:
    """The static int8 weights' bits on this machine (see WEIGHT_BITS_WHY)."""
    from core.cpu import saturating_int8_dot

    return 7 if saturating_int8_dot() else 8


def _float_proto(model: torch.nn.Module, spec: ModelSpec, example: tuple):
    import onnx
    import onnxslim

    wrapper = ExportModel(model, spec.outputs.temperature).eval()
    buffer = io.BytesIO()
    dynamic = {name: {0: "batch"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
    with torch.no_grad():
        # NOTE: the TorchScript-based exporter (dynamo=False) is exact and takes about a second here;
        # dynamo=True also works but is ~10x slower and writes external data by default.
        torch.onnx.export(
            wrapper,
            example,
            buffer,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    proto = onnxslim.slim(proto)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _calibration_reader(calibration):
    """An ONNX Runtime CalibrationDataReader over preprocessed training images, 8 at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class TrainingImages(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                {"image": calibration.image[i : i + 8], "meta": calibration.meta[i : i + 8]}
                for i in range(0, len(calibration), 8)
            )

        def get_next(self):
            return next(self.batches, None)

    return TrainingImages()


def _quantize(proto, precision: str, options: QuantOptions):
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if precision == "int8" and options.activation_bits != 8:
        raise ValueError("ONNX int8 has 8-bit activations only (see the module docstring)")
    bits = weight_bits()
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "q.onnx"))
        onnx.save(proto, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        names = [n.name for n in onnx.load(str(pre)).graph.node]

        def scope(node_name: str) -> list[str]:
            # "/model/backbone/features/features.0/features.0.0/Conv" -> [backbone, features, 0, 0]
            parts = [p.split(".")[-1] for p in node_name.split("/")[1:-1]]
            return parts[1:] if parts[:1] == [WRAPPED] else []

        # The ops after the fusion model ("/Div" by the temperature, "/Sigmoid") stay float (AFTER_MODEL_FLOAT).
        after_model = [n for n in names if n.startswith("/") and not n.startswith(f"/{WRAPPED}/")]
        kept = [n for n in names if any(in_module(scope(n), p) for p in options.keep_float)]
        exclude = after_model + [n for n in kept if n not in after_model]
        if precision == "int8-dynamic":
            # NOTE: uint8 weights: ONNX Runtime's CPU ConvInteger has no int8-weight kernel.
            quantize_dynamic(
                str(pre), str(dst), weight_type=QuantType.QUInt8, per_channel=False, nodes_to_exclude=exclude
            )
            method = "onnxruntime quantize_dynamic: uint8 weights, activations quantized at run time; "
            method += AFTER_MODEL_FLOAT
        else:
            if options.calibration is None:
                raise ValueError("int8 static quantization needs calibration images")
            quantize_static(
                str(pre),
                str(dst),
                _calibration_reader(options.calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
                reduce_range=bits == 7,
            )
            method = (
                f"onnxruntime quantize_static, QDQ: per-channel {bits}-bit weights ({WEIGHT_BITS_WHY[bits]}), "
                f"uint8 activations, MinMax {calibrated_on(options.calibration)}; "
                f"{AFTER_MODEL_FLOAT}"
            )
        return onnx.load(str(dst)), method, len(kept), bits if precision == "int8" else None


def topologically_sorted(proto):
    """The model with its graph's nodes in an order where every input is produced before it is used.

    onnxruntime's float16 converter appends the casts that keep float32 inputs and outputs after the nodes
    that use them: ONNX Runtime sorts on load, but the ONNX checker (and stricter consumers) refuse it.
    """
    graph = proto.graph
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        runnable = [n for n in pending if all(i in ready for i in n.input)]
        if not runnable:
            raise ValueError("the ONNX graph has a cycle or an input no node produces")
        for node in runnable:
            ordered.append(node)
            ready.update(node.output)
        pending = [n for n in pending if all(n is not r for r in runnable)]
    del graph.node[:]
    graph.node.extend(ordered)
    return proto


def check(path: Path) -> None:
    """The ONNX checker at its strictest (full check: shape and type inference too)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"{path.name} fails the ONNX checker (full check): {first}") from None


def export(
    model: torch.nn.Module,
    spec: ModelSpec,
    example: tuple,
    out_path: Path,
    precision: str = "fp32",
    options: QuantOptions | None = None,
) -> Path:
    """Trace to ONNX, check, simplify, convert to `precision`, embed the spec, write atomically."""
    import onnx

    options = options or QuantOptions()
    proto = _float_proto(model, spec, example)
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        proto = topologically_sorted(convert_float_to_float16(proto, keep_io_types=True))
        spec = with_precision(spec, "fp16", "onnxruntime float16 conversion, float32 inputs and outputs kept")
    elif precision in ("int8-dynamic", "int8"):
        proto, method, excluded, bits = _quantize(proto, precision, options)
        extra = {"weight_bits": bits} if bits else {}  # (dynamic int8's uint8 weights never saturate)
        spec = with_precision(spec, precision, method, options, excluded_nodes=excluded, **extra)
    elif precision != "fp32":
        raise ValueError(f"ONNX has no {precision} path")
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, spec.to_json()
    proto.producer_name = "melanoma-export"
    with atomic_path(out_path) as tmp:
        onnx.save(proto, str(tmp))
    return out_path


def read_spec(path: Path) -> ModelSpec:
    """The spec from the ONNX file's metadata_props."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a damaged file
        raise UserError(f"{path} is not a readable ONNX model ({exc.__class__.__name__}): re-export it") from None
    props = {p.key: p.value for p in proto.metadata_props}
    return parse_embedded(props.get(SPEC_KEY), path)


class OnnxRunner(Runner):
    """ONNX Runtime, CPU execution provider."""

    format = "onnx"

    def __init__(self, path: Path, spec: ModelSpec, threads: int | None = None):
        super().__init__(path, spec)
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # NOTE: without this, idle worker threads spin after each run and steal the CPU from whatever runs
        # next (another artifact in an interleaved benchmark); phones prefer it off too.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"ONNX Runtime cannot load {path} ({str(exc).splitlines()[0]}): re-export it") from None
        if spec.precision.get("weight_bits") == 8 and weight_bits() == 7:
            warnings.warn(
                f"{path.name} has 8-bit int8 weights, which ONNX Runtime's integer kernels on this CPU (x86 without "
                "VNNI) add in saturating 16-bit pairs: its results here can differ from those its parity gate "
                "judged; export it on this machine for 7-bit weights",
                stacklevel=2,
            )

    def io_shapes(self) -> dict[str, list[int | None]]:
        ends = [*self.session.get_inputs(), *self.session.get_outputs()]
        return {t.name: [d if isinstance(d, int) else None for d in t.shape] for t in ends}

    def _run(self, image: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logit, prob = self.session.run(list(OUTPUT_NAMES), {"image": image, "meta": meta})
        return logit, prob


def foreign_domains(path: Path) -> dict[str, int]:
    """Nodes outside the default ONNX domain, counted by `domain:op` (empty when every node is standard)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.domain not in ("", "ai.onnx"):
            key = f"{node.domain}:{node.op_type}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def int8_tensors(path: Path) -> tuple[int, int]:
    """(8-bit weight initializers with 2+ dimensions, quantize nodes of activations) of an .onnx file, so an
    "int8" artifact whose quantizer scope matched nothing cannot pass for one."""
    import onnx

    proto = onnx.load(str(path))
    eight = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    weights = sum(1 for w in proto.graph.initializer if w.data_type in eight and len(w.dims) >= 2)
    activations = sum(1 for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear"))
    return weights, activations
