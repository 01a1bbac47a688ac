"""TFLite / LiteRT via litert-torch: the phone artifact takes the image NHWC ([N, S, S, 3]); its signature
inputs are named `image` and `meta`. The spec is a TFLite `Metadata` entry (`melanoma_spec`) in the
flatbuffer, where the interpreter ignores it and any flatbuffer reader finds it. Runs with the LiteRT
interpreter (ai-edge-litert)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import UserError
from core.spec import ModelSpec
from export.common import SPEC_KEY, ExportModel, Runner, atomic_output, parse_embedded


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
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def export(model: torch.nn.Module, spec: ModelSpec, example: tuple, out_path: Path, precision: str = "fp32") -> Path:
    """Convert with litert-torch (batch 1, NHWC image), embed the spec, write atomically."""
    import litert_torch

    image, meta = (t[:1] for t in example)
    wrapper = _NamedOutputs(ExportModel(model, spec.outputs.temperature, nhwc=True)).eval()
    edge = litert_torch.convert(wrapper, sample_kwargs={"image": image.permute(0, 2, 3, 1).contiguous(), "meta": meta})
    data = embed_spec(edge.model_content(), phone_spec(spec).to_json())
    with atomic_output(out_path) as tmp:
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
        if set(details) != {"image", "meta"}:
            raise UserError(f"{path}'s signature has inputs {sorted(details)}, not image and meta")
        self.nhwc = spec.image.layout == "NHWC"

    def _run(self, image: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.nhwc:
            image = np.ascontiguousarray(image.transpose(0, 2, 3, 1))
        out = self.runner(image=image, meta=meta)
        if "logit" in out:
            return out["logit"], out["probability"]
        return out["output_0"], out["output_1"]  # positional outputs, in OUTPUT_NAMES order
