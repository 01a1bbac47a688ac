"""TFLite / LiteRT via litert-torch: the phone artifact takes the image NHWC ([N, S, S, 3]); its signature
inputs are named `image` and `meta`. The spec is a TFLite `Metadata` entry (`melanoma_spec`) in the
flatbuffer, where the interpreter ignores it and any flatbuffer reader finds it; the standard
`TFLITE_METADATA` entry (export.tflite_metadata) describes both inputs and outputs for the ecosystem's readers
and carries the spec too. Runs with the LiteRT interpreter (ai-edge-litert)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import UserError
from core.io import atomic_path
from core.spec import ModelSpec
from export.common import (
    AFTER_MODEL_FLOAT,
    INPUT_NAMES,
    OUTPUT_NAMES,
    SPEC_KEY,
    WRAPPED,
    Conversions,
    ExportModel,
    Runner,
    calibrated_on,
    parse_embedded,
    with_precision,
    wrapper_scope,
)
from export.precision import QuantOptions
from export.tflite_metadata import embed_standard


class _NamedOutputs(nn.Module):
    """Returns a dict so that the LiteRT signature's outputs are called `logit` and `probability`."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> dict[str, torch.Tensor]:
        logit, prob = self.inner(image, meta)
        return {"logit": logit, "probability": prob}


def phone_spec(spec: ModelSpec) -> ModelSpec:
    """The spec as embedded in the NHWC artifact (only the layout differs)."""
    return dataclasses.replace(spec, image=dataclasses.replace(spec.image, layout="NHWC"))


def embed_spec(flatbuffer: bytes, spec_json: str) -> bytes:
    """Add (or replace) the `melanoma_spec` Metadata entry of a TFLite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    for held in model.buffers:
        # A buffer the quantizer stored past the flatbuffer comes back as a bytearray slice, which packing
        # writes byte by byte (the 224 px B0's fp16 flatbuffer: 6.5 s); as an array it is one copy, same bytes.
        if held.data is not None and not isinstance(held.data, np.ndarray):
            held.data = np.frombuffer(bytes(held.data), dtype=np.uint8)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(spec_json.encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = SPEC_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (SPEC_KEY, SPEC_KEY.encode())] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_embedded(flatbuffer: bytes) -> bytes | None:
    """The `melanoma_spec` Metadata bytes of a TFLite flatbuffer, None when absent."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() in (SPEC_KEY.encode(), SPEC_KEY):
            buffer = model.Buffers(entry.Buffer())
            if buffer.Offset() > 1:  # a large model keeps buffers after the flatbuffer, by offset and size
                return bytes(flatbuffer[buffer.Offset() : buffer.Offset() + buffer.Size()])
            return buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
    return None


def _scopes(tensor_name: str) -> list[list[str]]:
    """Module attribute names below the exported model for each scope in a litert-torch tensor name.

    A name joins scopes with ";", each like `.../export.common.ExportModel_inner/<pkg.Class>_model/<pkg.Class>_<attr>
    /...`: the part after ExportModel's own is the exported model (common.WRAPPED), whatever its class.
    """
    wrapper = wrapper_scope()
    out = []
    for scope in tensor_name.split(";"):
        parts = scope.split("/")
        attrs = []
        for part in parts:
            cls_attr = part.rsplit(".", 1)[-1]
            start = len(cls_attr) - len(cls_attr.lstrip("_"))
            cut = cls_attr.find("_", start)
            attrs.append(cls_attr[cut + 1 :] if cut > 0 else "")
        at = next((i for i, p in enumerate(parts) if p == wrapper or p.startswith(wrapper + "_")), None)
        if at is not None and at + 1 < len(parts) and parts[at + 1].endswith(f"_{WRAPPED}"):
            out.append(attrs[at + 2 :])
    return out


def _outside_model_regex() -> str:
    """Tensor names of ops outside the exported model (temperature, sigmoid, the NHWC permute)."""
    return rf"^(?!.*{re.escape(wrapper_scope())}[^/;]*/[^/;]*_{WRAPPED}(/|;|$)).*$"


def _keep_float_regex(fp32: bytes, paths: tuple[str, ...]) -> str | None:
    """An exact-name alternation of the tensors produced inside the modules at `paths` (None if none).

    The fusion model's own ops (input normalisation, feature concatenation) join them: every rung that
    keeps modules float keeps the first conv and the head float, the only consumers of those ops, and a
    16-bit normalisation SUB fails LiteRT's kernel check (`input1_shift <= 0`) on some calibrations.
    """
    import re

    from ai_edge_litert.tools import flatbuffer_utils

    from export.scopes import in_module

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(fp32))
    names = {t.name.decode() if isinstance(t.name, bytes) else t.name for g in model.subgraphs for t in g.tensors}
    hits = sorted(n for n in names if any(not c or any(in_module(c, p) for p in paths) for c in _scopes(n)))
    # An op's scope is its output tensor names, each followed by ";".
    return "|".join(f"(^|;){re.escape(n)};" for n in hits) or None


def _recipe(fp32: bytes, precision: str, options: QuantOptions):
    """ai-edge-quantizer's RecipeManager for `precision` with `options` (its modules kept float)."""
    from ai_edge_quantizer import recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    manager = recipe_manager.RecipeManager()
    if precision == "fp16":
        manager.add_weight_only_config(
            regex=".*",
            operation_name=TFLOperationName.ALL_SUPPORTED,
            num_bits=16,
            algorithm_key=AlgorithmName.FLOAT_CASTING,
        )
    else:
        if precision == "int8-dynamic":
            manager.add_dynamic_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=8)
        else:
            manager.add_static_config(
                regex=".*",
                operation_name=TFLOperationName.ALL_SUPPORTED,
                activation_num_bits=options.activation_bits,
                weight_num_bits=8,
            )
        # AFTER_MODEL_FLOAT: float inputs and outputs (quantize / dequantize inside the graph), and the ops
        # after the exported model (their scopes lie outside ExportModel's WRAPPED attribute).
        for io_op in (TFLOperationName.INPUT, TFLOperationName.OUTPUT):
            manager.add_quantization_config(regex=".*", operation_name=io_op, algorithm_key=AlgorithmName.NO_QUANTIZE)
        manager.add_quantization_config(
            regex=_outside_model_regex(),
            operation_name=TFLOperationName.ALL_SUPPORTED,
            algorithm_key=AlgorithmName.NO_QUANTIZE,
        )
        keep = _keep_float_regex(fp32, options.keep_float) if options.keep_float else None
        if keep:
            manager.add_quantization_config(
                regex=keep, operation_name=TFLOperationName.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE
            )
    return manager


def _quantize(fp32: bytes, precision: str, options: QuantOptions) -> tuple[bytes, str]:
    from ai_edge_quantizer import quantizer

    if precision == "fp16":
        method = "ai-edge-quantizer float casting: float16 weights, float32 compute and I/O"
    else:
        method = (
            "ai-edge-quantizer dynamic range: per-channel int8 weights, float activations"
            if precision == "int8-dynamic"
            else f"ai-edge-quantizer static: per-channel int8 weights, int{options.activation_bits} activations, "
            f"global min-max {calibrated_on(options.calibration)}"
        ) + f"; {AFTER_MODEL_FLOAT}"
    converter = quantizer.Quantizer(fp32, _recipe(fp32, precision, options).get_quantization_recipe())
    if precision == "int8":
        result = converter.quantize(_ranges(fp32, options))
    else:
        result = converter.quantize()
    return bytes(result.quantized_model), method


PADDING_LIMIT = 3e38  # ai-edge-quantizer's min-max calibration ignores values beyond this (a -inf padding)
_RANGES: list[tuple[bytes, Any, dict]] = []  # (float flatbuffer, calibration set, its ranges): the last few


def _ranges(fp32: bytes, options: QuantOptions) -> dict:
    """The activation ranges of `fp32` on `options.calibration`, measured once per flatbuffer and calibration
    set for every module the model has (none kept float): the calibrator runs the float model, so a tensor's
    range does not depend on which modules an artifact keeps float, and each rung of an export's int8 walk
    quantizes the same conversion with a subset of them (measured on the 224 px Lite0: 7-12 s less a rung, and
    the same bytes as a calibration of its own)."""
    for cached_fp32, cached_calibration, ranges in _RANGES:
        if cached_fp32 is fp32 and cached_calibration is options.calibration:
            return ranges
    every = dataclasses.replace(options, keep_float=(), activation_bits=8)
    ranges = _calibrate(fp32, _recipe(fp32, "int8", every), options.calibration)
    _RANGES[:] = [*_RANGES[-1:], (fp32, options.calibration, ranges)]
    return ranges


def _global_min_max(old: dict, new: dict) -> dict:
    """Running min / max over every calibration sample (a QSV update for ai-edge-quantizer's Calibrator)."""
    if not old:
        return new
    return {"min": np.minimum(old["min"], new["min"]), "max": np.maximum(old["max"], new["max"])}


def _calibrate(fp32: bytes, manager, cal, profiled: bool = True) -> dict:
    """Activation ranges over all of `cal` (the batch-1 model sees one image per step).

    ai-edge-quantizer's default update is a moving average (weight 0.95) of each sample's min / max, so
    the ranges follow the last ~20 images and clip the rest; measured on EfficientNet-Lite0 it doubled
    the flipped decisions of the static int8 artifact (21 against 10). The global min / max is what ONNX
    Runtime's MinMax calibrator uses. The Calibrator's `qsv_update_func` is its hook for this.

    `profiled`: LiteRT's C++ interpreter tracks each tensor's min / max as it runs (the calibrator's
    profiler-based mode), instead of Python reading every tensor after each image: on the 224 px B0, 4 s
    against 20 s, and the same int8 flatbuffer byte for byte, once its ranges are float32 as the tensors
    are. It cannot leave out the huge values a padding constant may hold (the Python mode ignores values
    beyond +-3e38), so ranges reaching them are measured again the Python way.
    """
    from ai_edge_quantizer import calibrator

    samples = [
        {"image": np.ascontiguousarray(cal.image[i : i + 1].transpose(0, 2, 3, 1)), "meta": cal.meta[i : i + 1]}
        for i in range(len(cal))
    ]
    mode = calibrator.CalibrationMode
    calib = calibrator.Calibrator(
        fp32,
        mode=mode.CALIBRATION_PROFILER_BASED if profiled else mode.CALIBRATION_PRESERVE_ALL_TENSORS,
        qsv_update_func=_global_min_max,
    )
    calib.calibrate({"serving_default": samples}, manager)
    ranges = {
        name: {key: np.asarray(value, np.float32) for key, value in qsv.items()}
        for name, qsv in calib.get_model_qsvs().items()
    }
    if profiled and any(np.any(~(np.abs(v) < PADDING_LIMIT)) for qsv in ranges.values() for v in qsv.values()):
        return _calibrate(fp32, manager, cal, profiled=False)
    return ranges


def _io_quantization(data: bytes) -> dict:
    """Inputs and outputs that are not float32, with their scale and zero point (for the spec)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=data).get_signature_runner()
    io = {}
    for kind, details in (("input", runner.get_input_details()), ("output", runner.get_output_details())):
        for name, d in details.items():
            if d["dtype"] != np.float32:
                scale, zero = d["quantization"]
                io[name] = {
                    "kind": kind,
                    "dtype": np.dtype(d["dtype"]).name,
                    "scale": float(scale),
                    "zero_point": int(zero),
                    "rule": "q = round(x / scale) + zero_point, clipped to the dtype; x = (q - zero_point) * scale",
                }
    return io


_CONVERSIONS = Conversions(keep=4)  # float conversions: the model, and fine-tuned models of a walk


def _converted(model: torch.nn.Module, temperature: float, example: tuple) -> bytes:
    """The float flatbuffer of `model` (litert-torch, batch 1, NHWC image), converted once per model object
    and input size: every precision and remedy rung of an export quantizes the same conversion, which at
    224 px takes tens of seconds."""
    import litert_torch

    image, meta = (t[:1] for t in example)

    def convert() -> bytes:
        wrapper = _NamedOutputs(ExportModel(model, temperature, nhwc=True)).eval()
        nhwc = image.permute(0, 2, 3, 1).contiguous()
        return litert_torch.convert(wrapper, sample_kwargs={"image": nhwc, "meta": meta}).model_content()

    return _CONVERSIONS.get(model, (temperature, *image.shape, *meta.shape), convert)


def export(
    model: torch.nn.Module,
    spec: ModelSpec,
    example: tuple,
    out_path: Path,
    precision: str = "fp32",
    options: QuantOptions | None = None,
) -> Path:
    """Convert with litert-torch (batch 1, NHWC image), quantize, embed the spec, write atomically."""
    options = options or QuantOptions()
    data = _converted(model, spec.outputs.temperature, example)
    spec = phone_spec(spec)
    if precision != "fp32":
        if precision not in ("fp16", "int8-dynamic", "int8"):
            raise ValueError(f"TFLite has no {precision} path")
        data, method = _quantize(data, precision, options)
        spec = with_precision(
            spec, precision, method, options if precision == "int8" else None, io=_io_quantization(data)
        )
    data = embed_standard(embed_spec(data, spec.to_json()), spec)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(data)
    return out_path


def read_spec(path: Path) -> ModelSpec:
    """The spec from the flatbuffer's Metadata."""
    data = path.read_bytes()
    try:
        text = read_embedded(data)
    except Exception as exc:  # noqa: BLE001 - flatbuffers raise IndexError/struct.error on damage
        raise UserError(f"{path} is not a readable TFLite model ({exc.__class__.__name__}): re-export it") from None
    return parse_embedded(text, path)


def check(path: Path) -> None:
    """What LiteRT offers as a checker: the interpreter verifies the flatbuffer and plans every tensor."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        Interpreter(model_path=str(path)).allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{path.name} fails the LiteRT interpreter's checks: {str(exc).splitlines()[0]}") from None


class TFLiteRunner(Runner):
    """The LiteRT interpreter through the model's signature (`image` NHWC, `meta`)."""

    format = "tflite"
    static_batch = 1

    def __init__(self, path: Path, spec: ModelSpec, threads: int | None = None):
        super().__init__(path, spec)
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            signatures = self.interpreter.get_signature_list()
            self.runner = self.interpreter.get_signature_runner(next(iter(signatures)))
        except (ValueError, RuntimeError, StopIteration) as exc:
            raise UserError(f"the LiteRT interpreter cannot load {path} ({exc}): re-export it") from None
        details = self.runner.get_input_details()
        if set(details) != set(INPUT_NAMES):
            raise UserError(f"{path}'s signature has inputs {sorted(details)}, not image and meta")
        self.nhwc = spec.image.layout == "NHWC"

    def io_shapes(self) -> dict[str, list[int | None]]:
        ends = self.runner.get_input_details() | self.runner.get_output_details()
        return {name: [int(d) for d in ends[name]["shape"]] for name in (*INPUT_NAMES, *OUTPUT_NAMES) if ends.get(name)}

    def _run(self, image: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.nhwc:
            image = np.ascontiguousarray(image.transpose(0, 2, 3, 1))
        inputs = self.runner.get_input_details()
        out = self.runner(image=_to_input(image, inputs["image"]), meta=_to_input(meta, inputs["meta"]))
        outputs = self.runner.get_output_details()
        return tuple(_from_output(out[n], outputs[n]) for n in OUTPUT_NAMES)


def _to_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Quantize a float input for an int8/uint8 input tensor (full-int8 artifacts), else pass it through."""
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def _from_output(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def int8_tensors(path: Path) -> tuple[int, int]:
    """(int8 constant tensors with 2+ dimensions: weights; int8 or int16 (16x8) tensors computed at run time:
    activations) of a .tflite file, so an "int8" artifact whose quantizer scope matched nothing cannot pass for one."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    int8, int16 = 9, 7  # the TFLite schema's TensorType.INT8 and INT16
    weights = activations = 0
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            if tensor.type not in (int8, int16):
                continue
            constant = bool(tensor.buffer) and model.buffers[tensor.buffer].data is not None
            weights += constant and len(tensor.shape) >= 2 and tensor.type == int8
            activations += not constant
    return weights, activations
