"""ONNX: opset 17, inputs `image`/`meta`, outputs `logit`/`probability`, dynamic batch, simplified with
onnxslim, the spec in `metadata_props`. Runs with ONNX Runtime."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from core.spec import ModelSpec
from export.common import INPUT_NAMES, OUTPUT_NAMES, SPEC_KEY, ExportModel, Runner, atomic_output, parse_embedded

OPSET = 17


def export(model: torch.nn.Module, spec: ModelSpec, example: tuple, out_path: Path, precision: str = "fp32") -> Path:
    """Trace to ONNX, check, simplify, embed the spec, write atomically."""
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
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, spec.to_json()
    proto.producer_name = "melanoma-export"
    with atomic_output(out_path) as tmp:
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
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"ONNX Runtime cannot load {path} ({str(exc).splitlines()[0]}): re-export it") from None

    def _run(self, image: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logit, prob = self.session.run(list(OUTPUT_NAMES), {"image": image, "meta": meta})
        return logit, prob
